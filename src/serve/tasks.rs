//! The tasks TEI lacks: POST /fill-mask, /token-classification, /question-answering,
//! /multiple-choice, /next-sentence, /generate (and /text-classification, /embeddings
//! in `bertrt run`'s shape). The body is what `bertrt run` reads: one line's object, or
//! a list of them; or, as the Hugging Face Inference API sends it, `{"inputs": ...,
//! "parameters": {task options}}` where a plain string stands for `{"text": ...}`. The
//! answer is what `bertrt run` answers: one answer for one input (its error fails the
//! request), a list for a list (a failed input's place holds `{"error": ...}`).

use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};

use super::error::{ApiError, ErrorType};
use super::extract::{Body, Picked};
use super::state::{run, AppState, Input};
use super::tei::{raw_list, raw_reply, Reply};
use crate::pipelines::{Task, TaskOptions};
use axum::http::HeaderMap;

/// The lines, whether they came as a list, and the options.
fn lines(body: Value) -> Result<(Vec<Value>, bool, Value), ApiError> {
    let line = |v: Value| match v {
        Value::String(s) => json!({ "text": s }),
        other => other,
    };
    match body {
        Value::Object(mut o) if o.contains_key("inputs") => {
            let params = o.remove("parameters").unwrap_or(Value::Null);
            if let Some(k) = o.keys().find(|k| k.as_str() != "inputs") {
                return Err(ApiError::new(
                    ErrorType::Validation,
                    format!("unknown field `{k}` (expected inputs and parameters)"),
                ));
            }
            match o.remove("inputs").unwrap_or(Value::Null) {
                Value::Array(a) => Ok((a.into_iter().map(line).collect(), true, params)),
                one => Ok((vec![line(one)], false, params)),
            }
        }
        Value::Array(a) => Ok((a, true, Value::Null)),
        one => Ok((vec![one], false, Value::Null)),
    }
}

/// Answers a task route.
pub(super) async fn answer(
    task: Task,
    state: Arc<AppState>,
    model: Picked,
    body: Result<Body<Value>, ApiError>,
) -> Reply {
    let (headers, text) = answer_text(task, state, model, body).await?;
    raw_reply(headers, text)
}

/// A task route's answer as JSON text: the answers' own text, joined.
pub(super) async fn answer_text(
    task: Task,
    state: Arc<AppState>,
    model: Picked,
    body: Result<Body<Value>, ApiError>,
) -> Result<(HeaderMap, String), ApiError> {
    let start = Instant::now();
    let Picked(model) = model;
    let Body(body) = body?;
    let (lines, listed, params) = lines(body)?;
    state.check_batch(lines.len())?;
    let (options, mut input) = TaskOptions::from_json(task, &params)?;
    if input.no_truncate.is_none() {
        input.no_truncate = Some(!state.options.auto_truncate);
    }
    let pipeline = state.pipeline(&model, options, input)?;
    let inputs = lines.into_iter().map(Input::Line).collect();
    let ran = run(&state, &model, pipeline, inputs, start).await?;
    let headers = ran.timing.headers();
    if !listed {
        let answer = ran
            .results
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::new(ErrorType::Empty, "Batch is empty"))??;
        for w in &answer.warnings {
            tracing::warn!("{}: {w}", task.name());
        }
        return Ok((headers, answer.into_json()));
    }
    let list: Vec<String> = ran
        .results
        .into_iter()
        .map(|r| match r {
            Ok(a) => a.into_json(),
            Err(e) => crate::lines::error_json(&e.to_string()),
        })
        .collect();
    Ok((headers, raw_list(list.iter().map(String::as_str))))
}
