//! OpenAI's embeddings route: POST /v1/embeddings (and /embeddings), as the `openai`
//! client sends it; errors in OpenAI's shape.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::Json;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiError;
use super::extract::Body;
use super::state::AppState;
use super::tei::{embedded, Inputs, Reply};
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
    let (timing, lists) = embedded(&state, model, items, options, None, None, start)
        .await
        .map_err(ApiError::openai)?;
    let data: Vec<Value> = lists
        .into_iter()
        .enumerate()
        .map(|(index, list)| {
            let embedding = match req.encoding_format {
                Format::Float => list,
                Format::Base64 => {
                    let bytes: Vec<u8> = list
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .flat_map(|x| (x.as_f64().unwrap_or(0.0) as f32).to_le_bytes())
                                .collect()
                        })
                        .unwrap_or_default();
                    json!(base64::engine::general_purpose::STANDARD.encode(bytes))
                }
            };
            json!({"object": "embedding", "embedding": embedding, "index": index})
        })
        .collect();
    let body = json!({
        "object": "list",
        "data": data,
        "model": model.name,
        "usage": {"prompt_tokens": timing.tokens, "total_tokens": timing.tokens},
    });
    Ok((timing.headers(), Json(body)))
}
