//! Raw mode: one JSON request in, every head output out, under transformers' names.
//!
//! Request: `{"input_ids": [[...]], "attention_mask": [[...]], "token_type_ids": [[...]]}`
//! (the last two optional; [batch][choices][seq] for multiple choice). Response: the
//! [`Outputs`](crate::Outputs) object, or `{"error": "..."}`.

use serde::Deserialize;
use serde_json::Value;

use crate::batch::Batch;
use crate::error::{Error, Result};
use crate::lines::{Answer, Answerer};
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

/// Parses one request into a batch for `head`.
pub fn parse_request(request: &Value, head: Head) -> Result<Batch> {
    let request =
        Request::deserialize(request).map_err(|e| Error::Input(format!("invalid request: {e}")))?;
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

/// Raw mode over a model: each request runs one head with these options.
pub struct Raw<'a> {
    /// The model.
    pub model: &'a Model,
    /// The head (None: the model's default) and the extra outputs.
    pub opts: ForwardOptions,
}

impl Raw<'_> {
    fn answer_one(&self, request: &Value) -> Result<Answer> {
        let head = self.opts.head.unwrap_or(self.model.head());
        let batch = parse_request(request, head)?;
        let out = self.model.forward(&batch, self.opts)?;
        let value = serde_json::to_value(&out)
            .map_err(|e| Error::Internal(format!("cannot encode outputs: {e}")))?;
        Ok(Answer::new(value))
    }
}

impl Answerer for Raw<'_> {
    fn answer(&self, requests: &[Value]) -> Vec<Result<Answer>> {
        requests.iter().map(|r| self.answer_one(r)).collect()
    }
}
