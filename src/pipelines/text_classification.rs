//! text-classification: labels with scores from sigmoid, softmax or raw logits
//! (transformers' TextClassificationPipeline).

use serde_json::{json, Value};

use super::{batched, ranked, row, softmax, Answer, Pipeline, ScoreFunction, TopK};
use crate::config::ProblemType;
use crate::error::Result;

/// The score function transformers picks from the config.
fn default_function(p: &Pipeline) -> ScoreFunction {
    let c = p.model.config();
    match c.problem().ok().flatten() {
        Some(ProblemType::Regression) => ScoreFunction::None,
        Some(ProblemType::MultiLabel) => ScoreFunction::Sigmoid,
        _ if c.num_labels() == 1 => ScoreFunction::Sigmoid,
        _ => ScoreFunction::Softmax,
    }
}

pub(super) fn run(p: &Pipeline, inputs: &[Value]) -> Vec<Result<Answer>> {
    let function = p
        .options
        .function_to_apply
        .unwrap_or_else(|| default_function(p));
    let config = p.model.config();
    batched(
        p,
        inputs,
        |v, warnings| Ok((p.encode_text(v, warnings)?, ())),
        |out, r, _, ()| {
            let logits = row(out, "logits", r)?;
            let scores: Vec<f64> = match function {
                ScoreFunction::Softmax => softmax(logits),
                ScoreFunction::Sigmoid => logits
                    .iter()
                    .map(|&x| 1.0 / (1.0 + (-(x as f64)).exp()))
                    .collect(),
                ScoreFunction::None => logits.iter().map(|&x| x as f64).collect(),
            };
            let take = match p.options.top_k {
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
        },
    )
}
