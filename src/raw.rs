//! Raw mode: one JSON request in, every head output out, under transformers' names.
//!
//! Request: `{"input_ids": [[...]], "attention_mask": [[...]], "token_type_ids": [[...]]}`
//! (the last two optional; [batch][choices][seq] for multiple choice). Response: the
//! [`Outputs`](crate::Outputs) object, or `{"error": "..."}`.

use serde::Deserialize;

use crate::batch::Batch;
use crate::error::{Error, Result};
use crate::model::{ForwardOptions, Head, Model};

/// Ids as sent: rows of a batch, or [batch][choices][seq] for multiple choice.
#[derive(Deserialize)]
#[serde(untagged)]
enum Ids {
    Rows(Vec<Vec<i64>>),
    Choices(Vec<Vec<Vec<i64>>>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    input_ids: Ids,
    #[serde(default)]
    attention_mask: Option<Ids>,
    #[serde(default)]
    token_type_ids: Option<Ids>,
}

fn rows(name: &str, ids: Ids, choices: bool) -> Result<Vec<Vec<i64>>> {
    match (ids, choices) {
        (Ids::Rows(r), false) => Ok(r),
        (Ids::Choices(c), true) => Ok(c.into_iter().flatten().collect()),
        (Ids::Rows(_), true) => Err(Error::Input(format!(
            "{name}: the multiple-choice head takes [batch][choices][seq] lists"
        ))),
        (Ids::Choices(_), false) => Err(Error::Input(format!(
            "{name}: [batch][choices][seq] lists are only for the multiple-choice head"
        ))),
    }
}

/// Parses one request line into a batch for `head`.
pub fn parse_request(line: &str, head: Head) -> Result<Batch> {
    let request: Request = serde_json::from_str(line)
        .map_err(|e| Error::Input(format!("invalid request JSON: {e}")))?;
    let choices = head == Head::MultipleChoice;
    let mut batch = match request.input_ids {
        Ids::Choices(c) if choices => Batch::multiple_choice(c)?,
        ids => Batch::new(rows("input_ids", ids, choices)?)?,
    };
    if let Some(mask) = request.attention_mask {
        batch = batch.with_attention_mask(rows("attention_mask", mask, choices)?)?;
    }
    if let Some(types) = request.token_type_ids {
        batch = batch.with_token_type_ids(rows("token_type_ids", types, choices)?)?;
    }
    Ok(batch)
}

/// Answers one request line with one JSON line (no newline): the outputs object, or
/// `{"error": ...}`. The bool says whether it succeeded.
pub fn answer(model: &Model, line: &str, opts: ForwardOptions) -> (String, bool) {
    let result = parse_request(line, model.head())
        .and_then(|batch| model.forward(&batch, opts))
        .and_then(|out| {
            serde_json::to_string(&out)
                .map_err(|e| Error::Input(format!("cannot encode outputs: {e}")))
        });
    match result {
        Ok(json) => (json, true),
        Err(e) => (error_line(&e.to_string()), false),
    }
}

/// `{"error": message}` as one JSON line.
pub fn error_line(message: &str) -> String {
    serde_json::json!({ "error": message }).to_string()
}
