//! token-classification: a label per token, optionally folded into words and grouped into
//! entities, over overlapping windows for long texts (transformers'
//! TokenClassificationPipeline).

use serde::Deserialize;
use serde_json::{json, Value};

use super::{row, softmax, Answer, Pipeline, TextInput};
use crate::error::{Error, Result};
use crate::tokenizer::{EncodeOptions, Truncation};

/// Token-classification aggregation (transformers' `aggregation_strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Aggregation {
    /// One entry per token.
    #[default]
    None,
    /// Adjacent tokens with the same tag merge.
    Simple,
    /// Words take their first sub-token's label.
    First,
    /// Words take the label of their mean score vector.
    Average,
    /// Words take the label of their most confident sub-token.
    Max,
}

/// token-classification's options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenClassificationOptions {
    /// How tokens merge into entities (none).
    pub aggregation_strategy: Option<Aggregation>,
    /// Labels dropped from the output (default ["O"]).
    pub ignore_labels: Option<Vec<String>>,
    /// Overlap of windows over long texts (not with aggregation none).
    pub stride: Option<usize>,
}

/// A token with its label scores (transformers' "pre-entity").
struct Token {
    word: String,
    scores: Vec<f64>,
    start: usize,
    end: usize,
    index: usize,
    is_subword: bool,
}

/// A labelled token or word before grouping.
#[derive(Clone)]
struct Entity {
    entity: String,
    score: f64,
    index: usize,
    word: String,
    start: usize,
    end: usize,
}

fn argmax(v: &[f64]) -> usize {
    (0..v.len()).fold(0, |b, i| if v[i] > v[b] { i } else { b })
}

/// Characters start..end of `text`, given the byte index of every character
/// (`bytes[c]`, plus text.len() at the end).
fn char_slice<'t>(text: &'t str, bytes: &[usize], start: usize, end: usize) -> &'t str {
    let at = |c: usize| bytes.get(c).copied().unwrap_or(text.len());
    &text[at(start)..at(end).max(at(start))]
}

pub(super) fn run(p: &Pipeline, o: &TokenClassificationOptions, value: &Value) -> Result<Answer> {
    let input = TextInput::parse(value)?;
    let text = input.text.as_str();
    let aggregation = o.aggregation_strategy.unwrap_or_default();
    let ignore = o.ignore_labels.clone().unwrap_or_else(|| vec!["O".into()]);
    let mut warnings = Vec::new();
    let windows = match o.stride {
        Some(stride) => {
            if aggregation == Aggregation::None {
                return Err(Error::Input(
                    "stride needs an aggregation strategy other than none".into(),
                ));
            }
            if stride >= p.max_length {
                return Err(Error::Input(format!(
                    "stride {stride} must be smaller than the window length {}",
                    p.max_length
                )));
            }
            let opts = EncodeOptions {
                max_length: Some(p.max_length),
                truncation: Truncation::LongestFirst,
                stride,
                overflow: true,
            };
            p.tokenizer().encode(text, None, opts)?
        }
        None => vec![p.encode_one(text, None, &mut warnings)?],
    };
    let refs: Vec<_> = windows.iter().collect();
    let out = p.forward(&refs)?;
    let labels = p.config().num_labels();
    let config = p.config();
    let unk = p.tokenizer().specials().unk;
    let char_bytes: Vec<usize> = text.char_indices().map(|(b, _)| b).collect();
    let mut entities: Vec<Value> = Vec::new();
    let mut spans: Vec<(usize, usize, f64, Value)> = Vec::new();
    for (w, enc) in windows.iter().enumerate() {
        let logits = row(&out, "logits", w)?;
        let mut tokens = Vec::new();
        for i in 0..enc.len() {
            if enc.sequence_ids[i].is_none() {
                continue;
            }
            let (start, end) = enc.offsets[i];
            let word_ref = char_slice(text, &char_bytes, start, end);
            let mut word = enc.tokens[i].clone();
            let mut is_subword = word.chars().count() != word_ref.chars().count();
            if enc.ids[i] == unk {
                word = word_ref.to_string();
                is_subword = false;
            }
            tokens.push(Token {
                word,
                scores: softmax(&logits[i * labels..(i + 1) * labels]),
                start,
                end,
                index: i,
                is_subword,
            });
        }
        let labelled: Vec<Entity> = match aggregation {
            Aggregation::None | Aggregation::Simple => tokens
                .iter()
                .map(|t| {
                    let best = argmax(&t.scores);
                    Entity {
                        entity: config.label(best),
                        score: t.scores[best],
                        index: t.index,
                        word: t.word.clone(),
                        start: t.start,
                        end: t.end,
                    }
                })
                .collect(),
            _ => words(p, &tokens, aggregation)?,
        };
        if aggregation == Aggregation::None {
            for e in labelled.into_iter().filter(|e| !ignore.contains(&e.entity)) {
                let v = json!({"entity": e.entity, "score": e.score, "index": e.index,
                               "word": e.word, "start": e.start, "end": e.end});
                spans.push((e.start, e.end, e.score, v));
            }
        } else {
            for (group, score) in group_entities(p, &labelled)? {
                if ignore.contains(&group.entity) {
                    continue;
                }
                let v = json!({"entity_group": group.entity, "score": score,
                               "word": group.word, "start": group.start, "end": group.end});
                spans.push((group.start, group.end, score, v));
            }
        }
    }
    if windows.len() > 1 {
        spans = resolve_overlaps(spans);
    }
    entities.extend(spans.into_iter().map(|s| s.3));
    Ok(Answer {
        value: Value::Array(entities),
        warnings,
    })
}

/// Folds sub-words into words (first, average or max).
fn words(p: &Pipeline, tokens: &[Token], how: Aggregation) -> Result<Vec<Entity>> {
    let mut groups: Vec<Vec<&Token>> = Vec::new();
    for t in tokens {
        match groups.last_mut() {
            Some(g) if t.is_subword => g.push(t),
            _ => groups.push(vec![t]),
        }
    }
    let config = p.config();
    groups
        .into_iter()
        .map(|g| {
            let word_tokens: Vec<String> = g.iter().map(|t| t.word.clone()).collect();
            let (label, score) = match how {
                Aggregation::First => {
                    let s = &g[0].scores;
                    (argmax(s), s[argmax(s)])
                }
                Aggregation::Max => {
                    let best = g.iter().fold(g[0], |b, t| {
                        let m = |t: &Token| t.scores.iter().cloned().fold(f64::MIN, f64::max);
                        if m(t) > m(b) {
                            t
                        } else {
                            b
                        }
                    });
                    (argmax(&best.scores), best.scores[argmax(&best.scores)])
                }
                _ => {
                    let n = g[0].scores.len();
                    let mean: Vec<f64> = (0..n)
                        .map(|j| g.iter().map(|t| t.scores[j]).sum::<f64>() / g.len() as f64)
                        .collect();
                    (argmax(&mean), mean[argmax(&mean)])
                }
            };
            Ok(Entity {
                entity: config.label(label),
                score,
                index: g[0].index,
                word: p.tokenizer().tokens_to_string(&word_tokens)?,
                start: g[0].start,
                end: g[g.len() - 1].end,
            })
        })
        .collect()
}

/// (B|I, tag) of a label; labels without a B-/I- prefix continue ("I").
fn tag(label: &str) -> (bool, &str) {
    match (label.strip_prefix("B-"), label.strip_prefix("I-")) {
        (Some(t), _) => (true, t),
        (_, Some(t)) => (false, t),
        _ => (false, label),
    }
}

/// Merges adjacent entities with the same tag unless the next one begins (B-).
fn group_entities(p: &Pipeline, entities: &[Entity]) -> Result<Vec<(Entity, f64)>> {
    let mut out = Vec::new();
    let mut current: Vec<&Entity> = Vec::new();
    let mut flush = |current: &mut Vec<&Entity>| -> Result<()> {
        if let Some(first) = current.first() {
            let name = first
                .entity
                .split_once('-')
                .map_or(first.entity.as_str(), |(_, t)| t);
            let words: Vec<String> = current.iter().map(|e| e.word.clone()).collect();
            let score = current.iter().map(|e| e.score).sum::<f64>() / current.len() as f64;
            out.push((
                Entity {
                    entity: name.to_string(),
                    score,
                    index: first.index,
                    word: p.tokenizer().tokens_to_string(&words)?,
                    start: first.start,
                    end: current[current.len() - 1].end,
                },
                score,
            ));
        }
        current.clear();
        Ok(())
    };
    for e in entities {
        if let Some(last) = current.last() {
            let (begins, t) = tag(&e.entity);
            let (_, last_t) = tag(&last.entity);
            if t != last_t || begins {
                flush(&mut current)?;
            }
        }
        current.push(e);
    }
    flush(&mut current)?;
    Ok(out)
}

/// Where entities from overlapping windows overlap, the longer span wins, then the
/// higher score.
fn resolve_overlaps(mut spans: Vec<(usize, usize, f64, Value)>) -> Vec<(usize, usize, f64, Value)> {
    spans.sort_by_key(|s| s.0);
    let mut iter = spans.into_iter();
    let Some(mut prev) = iter.next() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for s in iter {
        if prev.0 <= s.0 && s.0 < prev.1 {
            let (len, prev_len) = (s.1 - s.0, prev.1 - prev.0);
            if len > prev_len || (len == prev_len && s.2 > prev.2) {
                prev = s;
            }
        } else {
            out.push(std::mem::replace(&mut prev, s));
        }
    }
    out.push(prev);
    out
}
