//! text-classification: labels with scores from sigmoid, softmax or raw logits
//! (transformers' TextClassificationPipeline).

use serde::Deserialize;
use serde_json::{json, Value};

use super::{ranked, row, softmax, Pipeline, TopK};
use crate::config::ProblemType;
use crate::error::Result;
use crate::model::Outputs;

/// How classification scores are squashed (transformers' `function_to_apply`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScoreFunction {
    /// 1 / (1 + e^-x) per label.
    Sigmoid,
    /// Normalised over labels.
    Softmax,
    /// Raw logits.
    None,
}

/// text-classification's options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextClassificationOptions {
    /// Labels to return (default: the best only; a number, or "all").
    pub top_k: Option<TopK>,
    /// Score function (default from the config's problem_type and labels).
    pub function_to_apply: Option<ScoreFunction>,
}

/// The score function transformers picks from the config.
fn default_function(p: &Pipeline) -> ScoreFunction {
    let c = p.config();
    match c.problem().ok().flatten() {
        Some(ProblemType::Regression) => ScoreFunction::None,
        Some(ProblemType::MultiLabel) => ScoreFunction::Sigmoid,
        _ if c.num_labels() == 1 => ScoreFunction::Sigmoid,
        _ => ScoreFunction::Softmax,
    }
}

/// The labels and scores of row `r`.
pub(super) fn finish(
    p: &Pipeline,
    o: &TextClassificationOptions,
    out: &Outputs,
    r: usize,
) -> Result<Value> {
    let function = o.function_to_apply.unwrap_or_else(|| default_function(p));
    let config = p.config();
    let logits = row(out, "logits", r)?;
    let scores: Vec<f64> = match function {
        ScoreFunction::Softmax => softmax(logits),
        ScoreFunction::Sigmoid => logits
            .iter()
            .map(|&x| 1.0 / (1.0 + (-(x as f64)).exp()))
            .collect(),
        ScoreFunction::None => logits.iter().map(|&x| x as f64).collect(),
    };
    let take = match o.top_k {
        None => 1,
        Some(TopK::K(k)) => k,
        Some(TopK::All) => scores.len(),
    };
    let best: Vec<Value> = ranked(&scores)
        .into_iter()
        .take(take)
        .map(|i| json!({"label": config.label(i), "score": scores[i]}))
        .collect();
    Ok(Value::Array(best))
}
