//! fill-mask: softmax over the vocabulary at each mask token, the k best candidates with
//! the sequence they complete (transformers' FillMaskPipeline).

use serde_json::{json, Value};

use serde::Deserialize;

use super::prepared::Extra;
use super::{ranked, softmax, Pipeline, TextInput, TopK};
use crate::error::{Error, Result};
use crate::tokenizer::Encoding;

/// fill-mask's options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FillMaskOptions {
    /// Candidates per mask (5).
    pub top_k: Option<TopK>,
    /// Restrict predictions to these tokens.
    pub targets: Option<Vec<String>>,
}

/// Target ids, after replacing out-of-vocabulary targets by their first sub-token.
fn target_ids(p: &Pipeline, targets: &[String], warnings: &mut Vec<String>) -> Result<Vec<u32>> {
    let mut ids = Vec::new();
    for target in targets {
        match p.tokenizer().token_to_id(target) {
            Some(id) => ids.push(id),
            None => {
                let first = p.tokenizer().tokenize(target)?.ids.first().copied();
                match first {
                    Some(id) => {
                        let token = p.tokenizer().id_to_token(id).unwrap_or_default();
                        warnings.push(format!(
                            "target {target:?} is not in the vocabulary; using its first sub-token {token:?}"
                        ));
                        ids.push(id);
                    }
                    None => warnings.push(format!(
                        "target {target:?} is not in the vocabulary and has no sub-token; ignoring it"
                    )),
                }
            }
        }
    }
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() && !targets.is_empty() {
        return Err(Error::Input(
            "no usable target: every target was ignored".into(),
        ));
    }
    Ok(ids)
}

/// A fill-mask input: its encoding, the mask positions and the target ids.
pub(super) fn prepare(
    p: &Pipeline,
    o: &FillMaskOptions,
    v: &Value,
    warnings: &mut Vec<String>,
) -> Result<(Encoding, Extra)> {
    let input = TextInput::parse(v)?;
    let mask = p
        .tokenizer()
        .specials()
        .mask
        .ok_or_else(|| Error::Unsupported("this tokenizer has no mask token".into()))?;
    let targets = match &o.targets {
        Some(t) => Some(target_ids(p, t, warnings)?),
        None => None,
    };
    let enc = p.encode_one(&input.text, input.text_pair.as_deref(), warnings)?;
    let masks: Vec<usize> = (0..enc.len()).filter(|&i| enc.ids[i] == mask).collect();
    if masks.is_empty() {
        let token = &p.tokenizer().specials().mask_token;
        let written = input.text.contains(token.as_str())
            || input
                .text_pair
                .as_deref()
                .is_some_and(|t| t.contains(token.as_str()));
        return Err(Error::Input(match enc.truncated && written {
            true => format!(
                "the mask token ({token}) was cut off: the input is longer than the {} \
                 tokens kept",
                enc.len()
            ),
            false => format!("no mask token ({token}) in the input"),
        }));
    }
    Ok((enc, Extra::Masks { masks, targets }))
}

/// The candidates at each mask, from each mask's vocabulary logits.
pub(super) fn finish(
    p: &Pipeline,
    o: &FillMaskOptions,
    per_mask: &[&[f32]],
    enc: &Encoding,
    masks: &[usize],
    targets: Option<&[u32]>,
) -> Result<Value> {
    let pad = p.tokenizer().specials().pad;
    let vocab = p.config().vocab_size;
    let top_k = match o.top_k {
        Some(TopK::K(k)) => k,
        Some(TopK::All) => vocab,
        None => 5,
    };
    let single = masks.len() == 1;
    let mut answers = Vec::new();
    for (&m, logits) in masks.iter().zip(per_mask) {
        let probs = softmax(logits);
        let (cands, scores): (Vec<u32>, Vec<f64>) = match targets {
            Some(ids) => (
                ids.to_vec(),
                ids.iter().map(|&i| probs[i as usize]).collect(),
            ),
            None => ((0..vocab as u32).collect(), probs),
        };
        let mut results = Vec::new();
        for i in ranked(&scores).into_iter().take(top_k) {
            let token = cands[i];
            let mut ids = enc.ids.clone();
            ids[m] = token;
            // transformers drops padding ids (even a predicted [PAD]) first.
            ids.retain(|&id| id != pad);
            let sequence = p.tokenizer().decode(&ids, single)?;
            results.push(json!({
                "score": scores[i],
                "token": token,
                "token_str": p.tokenizer().decode(&[token], false)?,
                "sequence": sequence,
            }));
        }
        answers.push(Value::Array(results));
    }
    Ok(match single {
        true => answers.remove(0),
        false => Value::Array(answers),
    })
}
