//! Tasks on sentence pairs: next-sentence prediction and multiple choice.

use serde::Deserialize;
use serde_json::{json, Value};

use super::{f32_list, non_empty, parse, row, softmax, Answer, Pipeline, TextInput};
use crate::error::{Error, Result};
use crate::model::Outputs;
use crate::tokenizer::Encoding;

/// A next-sentence input: `text` and `text_pair`, encoded as a pair.
pub(super) fn prepare_next_sentence(
    p: &Pipeline,
    v: &Value,
    warnings: &mut Vec<String>,
) -> Result<Encoding> {
    let input = TextInput::parse(v)?;
    let pair = input
        .text_pair
        .ok_or_else(|| Error::Input("next-sentence needs `text_pair`".into()))?;
    p.encode_one(&input.text, Some(&pair), warnings)
}

/// Whether row `r`'s pair follows on: the probability and the logits.
pub(super) fn finish_next_sentence(out: &Outputs, r: usize) -> Result<Value> {
    let logits = row(out, "logits", r)?;
    Ok(json!({"is_next": softmax(logits)[0], "logits": f32_list(logits)}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChoiceInput {
    prompt: String,
    choices: Vec<String>,
}

/// multiple-choice: the prompt paired with each choice; softmax over the choices.
pub(super) fn run_multiple_choice(p: &Pipeline, value: &Value) -> Result<Answer> {
    let input: ChoiceInput = parse(value, r#"{"prompt": ..., "choices": [...]}"#)?;
    non_empty("prompt", &input.prompt)?;
    if input.choices.is_empty() {
        return Err(Error::Input("`choices` is empty".into()));
    }
    let mut warnings = Vec::new();
    let encs = input
        .choices
        .iter()
        .map(|c| {
            non_empty("choices", c)?;
            p.encode_one(&input.prompt, Some(c), &mut warnings)
        })
        .collect::<Result<Vec<_>>>()?;
    // One example: the prompt paired with each choice, a sequence per choice.
    let refs: Vec<_> = encs.iter().collect();
    let batch = super::pad(&refs, p.tokenizer().specials().pad)?.with_choices(encs.len())?;
    let out = p.forward_batch(&batch)?;
    let logits = row(&out, "logits", 0)?;
    let scores = softmax(logits);
    let best = super::ranked(&scores)[0];
    Ok(
        Answer::new(json!({"scores": scores, "best": best, "logits": f32_list(logits)}))
            .with_warnings(warnings),
    )
}
