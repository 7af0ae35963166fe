//! OpenAI's embeddings route: POST /v1/embeddings (and /embeddings), as the `openai`
//! client sends it; errors in OpenAI's shape.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use base64::Engine;
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::error::ErrorType;
use super::extract::Body;
use super::state::AppState;
use super::tei::{embedded, raw_list, raw_reply, Inputs, Reply};
use crate::pipelines::EmbedOptions;

#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(super) enum Format {
    #[default]
    Float,
    Base64,
}

#[derive(Deserialize)]
pub(super) struct EmbeddingsRequest {
    input: Inputs,
    model: Option<String>,
    #[serde(default)]
    encoding_format: Format,
    dimensions: Option<usize>,
    #[allow(dead_code)]
    user: Option<String>,
}

/// The model `model` names; with a single model served, any name is that model (as
/// TEI does).
fn pick<'a>(
    state: &'a AppState,
    model: Option<&str>,
) -> Result<&'a Arc<super::state::Served>, ApiError> {
    match (model, state.models.len()) {
        (Some(name), n) if n > 1 || state.models.iter().any(|m| m.name == name) => {
            state.model(Some(name))
        }
        _ => state.default_model(),
    }
}

pub(super) async fn embeddings(
    State(state): State<Arc<AppState>>,
    body: Result<Body<EmbeddingsRequest>, ApiError>,
) -> Reply {
    let start = Instant::now();
    let Body(req) = body.map_err(ApiError::openai)?;
    let model = pick(&state, req.model.as_deref()).map_err(ApiError::openai)?;
    let options = EmbedOptions {
        normalize: Some(true),
        dimensions: req.dimensions,
        ..Default::default()
    };
    let items = req.input.into_vec();
    let (timing, lists) = embedded(
        &state,
        model,
        items,
        options,
        (None, Default::default()),
        None,
        start,
    )
    .await
    .map_err(ApiError::openai)?;
    // The float lists go out as the answers wrote them (no parse and re-serialisation).
    let mut data = Vec::with_capacity(lists.len());
    for (index, list) in lists.into_iter().enumerate() {
        let embedding = match req.encoding_format {
            Format::Float => list,
            Format::Base64 => {
                let values: Vec<f32> = serde_json::from_str(&list)
                    .map_err(|e| ApiError::new(ErrorType::Backend, e.to_string()).openai())?;
                let bytes: Vec<u8> = values.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes)).to_string()
            }
        };
        data.push(format!(
            r#"{{"object":"embedding","embedding":{embedding},"index":{index}}}"#
        ));
    }
    let body = format!(
        r#"{{"object":"list","data":{},"model":{},"usage":{}}}"#,
        raw_list(data.iter().map(String::as_str)),
        json!(model.name),
        json!({"prompt_tokens": timing.tokens, "total_tokens": timing.tokens}),
    );
    raw_reply(timing.headers(), body)
}
