//! token-classification: a label per token, optionally folded into words and grouped into
//! entities, over overlapping windows for long texts (transformers'
//! TokenClassificationPipeline).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::text::CharIndex;
use super::{row, softmax, Answer, Pipeline, TextInput};
use crate::error::{Error, Result};
use crate::tokenizer::{EncodeOptions, Encoding, Truncation};

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
    /// The label (of its first token, for a group).
    label: usize,
    score: f64,
    index: usize,
    word: String,
    start: usize,
    end: usize,
}

fn argmax(v: &[f64]) -> usize {
    (0..v.len()).fold(0, |b, i| if v[i] > v[b] { i } else { b })
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
                from_left: false,
            };
            Some(p.tokenizer().windows(text, None, opts)?)
        }
        None => None,
    };
    let count = windows.as_ref().map_or(1, |w| w.len());
    let index = CharIndex::new(text);
    let mut spans: Vec<Found> = Vec::new();
    // Windows run batch_size at a time; only their entities are kept.
    let batch = p.input.batch_size();
    for first in (0..count).step_by(batch) {
        let encs = match &windows {
            Some(w) => (first..(first + batch).min(count))
                .map(|i| w.get(i))
                .collect::<Result<Vec<_>>>()?,
            None => vec![p.encode_one(text, None, &mut warnings)?],
        };
        let out = p.forward(&encs.iter().collect::<Vec<_>>())?;
        for (w, enc) in encs.iter().enumerate() {
            let logits = row(&out, "logits", w)?;
            spans.extend(window_entities(
                p,
                enc,
                logits,
                &index,
                aggregation,
                &ignore,
            )?);
        }
    }
    // The tokens go before the answer is written.
    drop(windows);
    if count > 1 {
        spans = resolve_overlaps(spans);
    }
    Ok(Answer::from_json(to_json(p, &spans))?.with_warnings(warnings))
}

/// A token or entity found: compact, as a long text may have millions.
struct Found {
    start: usize,
    end: usize,
    score: f64,
    /// The token's index in its window; None for a group.
    index: Option<usize>,
    /// The label (of the group's first token).
    label: usize,
    word: Box<str>,
}

#[derive(Serialize)]
struct TokenJson<'a> {
    end: usize,
    entity: &'a str,
    index: usize,
    score: f64,
    start: usize,
    word: &'a str,
}

#[derive(Serialize)]
struct GroupJson<'a> {
    end: usize,
    entity_group: &'a str,
    score: f64,
    start: usize,
    word: &'a str,
}

/// The answer's JSON list, written one entity at a time (keys in alphabetical order,
/// as for every other answer).
fn to_json(p: &Pipeline, found: &[Found]) -> String {
    let labels: Vec<String> = (0..p.config().num_labels())
        .map(|i| p.config().label(i))
        .collect();
    let label = |i: usize| labels.get(i).map_or("", String::as_str);
    let mut out = Vec::with_capacity(found.len() * 96 + 2);
    out.push(b'[');
    for (i, f) in found.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let written = match f.index {
            Some(index) => serde_json::to_writer(
                &mut out,
                &TokenJson {
                    end: f.end,
                    entity: label(f.label),
                    index,
                    score: f.score,
                    start: f.start,
                    word: &f.word,
                },
            ),
            None => serde_json::to_writer(
                &mut out,
                &GroupJson {
                    end: f.end,
                    entity_group: group_name(label(f.label)),
                    score: f.score,
                    start: f.start,
                    word: &f.word,
                },
            ),
        };
        // Writing to memory fails only on a non-finite score, which JSON writes as null.
        if written.is_err() {
            out.extend_from_slice(b"null");
        }
    }
    out.push(b']');
    // serde_json writes UTF-8; the lossy path only guards the impossible.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// A label without its B- / I- prefix.
fn group_name(label: &str) -> &str {
    label.split_once('-').map_or(label, |(_, t)| t)
}

/// One window's entities, labels in `ignore` left out.
fn window_entities(
    p: &Pipeline,
    enc: &Encoding,
    logits: &[f32],
    text: &CharIndex,
    aggregation: Aggregation,
    ignore: &[String],
) -> Result<Vec<Found>> {
    let labels = p.config().num_labels();
    let config = p.config();
    let unk = p.tokenizer().specials().unk;
    let mut tokens = Vec::new();
    for i in 0..enc.len() {
        if enc.sequence_ids[i].is_none() {
            continue;
        }
        let (start, end) = enc.offsets[i];
        let word_ref = text.slice(start, end);
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
                    label: best,
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
    let mut spans = Vec::new();
    if aggregation == Aggregation::None {
        for e in labelled.into_iter().filter(|e| !ignore.contains(&e.entity)) {
            spans.push(Found {
                start: e.start,
                end: e.end,
                score: e.score,
                index: Some(e.index),
                label: e.label,
                word: e.word.into(),
            });
        }
    } else {
        for (group, score) in group_entities(p, &labelled)? {
            if ignore.contains(&group.entity) {
                continue;
            }
            spans.push(Found {
                start: group.start,
                end: group.end,
                score,
                index: None,
                label: group.label,
                word: group.word.into(),
            });
        }
    }
    Ok(spans)
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
                label,
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
            let name = group_name(&first.entity);
            let words: Vec<String> = current.iter().map(|e| e.word.clone()).collect();
            let score = current.iter().map(|e| e.score).sum::<f64>() / current.len() as f64;
            out.push((
                Entity {
                    entity: name.to_string(),
                    label: first.label,
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
fn resolve_overlaps(mut spans: Vec<Found>) -> Vec<Found> {
    spans.sort_by_key(|s| s.start);
    let mut iter = spans.into_iter();
    let Some(mut prev) = iter.next() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for s in iter {
        if prev.start <= s.start && s.start < prev.end {
            let (len, prev_len) = (s.end - s.start, prev.end - prev.start);
            if len > prev_len || (len == prev_len && s.score > prev.score) {
                prev = s;
            }
        } else {
            out.push(std::mem::replace(&mut prev, s));
        }
    }
    out.push(prev);
    out
}
