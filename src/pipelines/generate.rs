//! generate: greedy decoding with BertLMHeadModel and the key/value cache.

use serde::Deserialize;
use serde_json::{json, Value};

use super::{parse, Answer, Pipeline};
use crate::batch::Batch;
use crate::error::{Error, Result};
use crate::model::{ForwardOptions, Head};

/// Default number of new tokens.
const DEFAULT_NEW_TOKENS: usize = 20;

/// generate's options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateOptions {
    /// Tokens to add (20); an input's own `max_new_tokens` wins.
    pub max_new_tokens: Option<usize>,
}

/// A prompt, with its own number of new tokens.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GenerateInput {
    text: String,
    #[serde(default)]
    text_pair: Option<String>,
    #[serde(default)]
    max_new_tokens: Option<usize>,
}

pub(super) fn run(p: &Pipeline, o: &GenerateOptions, value: &Value) -> Result<Answer> {
    let input: GenerateInput = parse(
        value,
        r#"{"text": ..., "text_pair"?: ..., "max_new_tokens"?: ...}"#,
    )?;
    if !p.config().is_decoder {
        return Err(Error::Unsupported(
            "generate needs a decoder checkpoint (is_decoder = true)".into(),
        ));
    }
    let mut warnings = Vec::new();
    let enc = p.encode_one(&input.text, input.text_pair.as_deref(), &mut warnings)?;
    // The prompt ends before its closing [SEP]: generation continues the text.
    let mut prompt: Vec<i64> = enc.ids.iter().map(|&i| i as i64).collect();
    if prompt.last() == Some(&(p.tokenizer().specials().sep as i64)) {
        prompt.pop();
    }
    let wanted = input
        .max_new_tokens
        .or(o.max_new_tokens)
        .unwrap_or(DEFAULT_NEW_TOKENS);
    let room = p
        .config()
        .max_position_embeddings
        .saturating_sub(prompt.len());
    let steps = if wanted > room {
        warnings.push(format!(
            "max_new_tokens {wanted} cut to {room}: the model holds {} positions",
            p.config().max_position_embeddings
        ));
        room
    } else {
        wanted
    };
    let vocab = p.config().vocab_size;
    let model = p.text.model();
    let mut cache = model.new_cache(1)?;
    let mut next_input = prompt;
    let mut new_ids: Vec<u32> = Vec::with_capacity(steps);
    for _ in 0..steps {
        let batch = Batch::new(vec![next_input])?;
        let out = model.forward_cached(&batch, &mut cache, ForwardOptions::head(Head::LmHead))?;
        let logits = out
            .get("logits")
            .ok_or_else(|| Error::Internal("the model returned no logits".into()))?;
        let last = &logits.data()[logits.len() - vocab..];
        let best = last
            .iter()
            .enumerate()
            .fold(
                (0, f32::NEG_INFINITY),
                |b, (i, &v)| if v > b.1 { (i, v) } else { b },
            )
            .0 as u32;
        new_ids.push(best);
        next_input = vec![best as i64];
    }
    Ok(Answer::new(json!({
        "generated_text": p.tokenizer().decode(&new_ids, true)?,
        "token_ids": new_ids,
    }))
    .with_warnings(warnings))
}
