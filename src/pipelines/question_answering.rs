//! question-answering: the best context spans over overlapping windows
//! (transformers' QuestionAnsweringPipeline with a fast tokenizer).

use serde::Deserialize;
use serde_json::{json, Value};

use super::{non_empty, parse, row, softmax, Answer, Pipeline, TopK};
use crate::error::{Error, Result};
use crate::tokenizer::{EncodeOptions, Encoding, Truncation};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QaInput {
    question: String,
    context: String,
}

/// question-answering's options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuestionAnsweringOptions {
    /// Answers to return (1).
    pub top_k: Option<TopK>,
    /// Overlap of context windows (min(max_seq_len / 2, 128)).
    pub doc_stride: Option<usize>,
    /// Longest answer in tokens (15).
    pub max_answer_len: Option<usize>,
    /// Window length (min(model max, 384)).
    pub max_seq_len: Option<usize>,
    /// Accepted for compatibility; fast tokenizers ignore it.
    pub max_question_len: Option<usize>,
    /// Allow the empty answer.
    pub handle_impossible_answer: Option<bool>,
    /// Snap answers to word boundaries (true).
    pub align_to_words: Option<bool>,
}

struct Span {
    score: f64,
    start: usize,
    end: usize,
    answer: String,
}

/// Character range of word `word` of the context within one window.
fn word_chars(enc: &Encoding, word: u32) -> Option<(usize, usize)> {
    let tokens: Vec<usize> = (0..enc.len())
        .filter(|&i| enc.sequence_ids[i] == Some(1) && enc.word_ids[i] == Some(word))
        .collect();
    Some((
        enc.offsets[*tokens.first()?].0,
        enc.offsets[*tokens.last()?].1,
    ))
}

fn char_slice(text: &str, start: usize, end: usize) -> String {
    text.chars()
        .skip(start)
        .take(end.saturating_sub(start))
        .collect()
}

pub(super) fn run(p: &Pipeline, o: &QuestionAnsweringOptions, value: &Value) -> Result<Answer> {
    let input: QaInput = parse(value, r#"{"question": ..., "context": ...}"#)?;
    non_empty("question", &input.question)?;
    non_empty("context", &input.context)?;
    let max_seq_len = o.max_seq_len.unwrap_or(p.max_length.min(384));
    let doc_stride = o.doc_stride.unwrap_or((max_seq_len / 2).min(128));
    if doc_stride > max_seq_len {
        return Err(Error::Input(format!(
            "doc_stride ({doc_stride}) is larger than max_seq_len ({max_seq_len})"
        )));
    }
    let max_answer_len = o.max_answer_len.unwrap_or(15);
    if max_answer_len == 0 {
        return Err(Error::Input("max_answer_len must be positive".into()));
    }
    let top_k = match o.top_k {
        None => 1,
        Some(TopK::K(k)) => k,
        Some(TopK::All) => usize::MAX,
    };
    let impossible = o.handle_impossible_answer.unwrap_or(false);
    let align = o.align_to_words.unwrap_or(true);
    let opts = EncodeOptions {
        max_length: Some(max_seq_len),
        truncation: Truncation::OnlySecond,
        stride: doc_stride,
        overflow: true,
    };
    let windows = p
        .tokenizer()
        .encode(&input.question, Some(&input.context), opts)?;
    let refs: Vec<_> = windows.iter().collect();
    let out = p.forward(&refs)?;
    let cls = p.tokenizer().specials().cls;
    let mut min_null = f64::INFINITY;
    let mut answers: Vec<Span> = Vec::new();
    for (w, enc) in windows.iter().enumerate() {
        let n = enc.len();
        // Context tokens and [CLS] may hold the answer; everything else is pushed out
        // of the softmax with -10000, as transformers does.
        let allowed: Vec<bool> = (0..n)
            .map(|i| enc.sequence_ids[i] == Some(1) || enc.ids[i] == cls)
            .collect();
        let masked = |logits: &[f32]| -> Vec<f64> {
            let xs: Vec<f32> = (0..n)
                .map(|i| if allowed[i] { logits[i] } else { -10000.0 })
                .collect();
            softmax(&xs)
        };
        let mut start = masked(&row(&out, "start_logits", w)?[..n]);
        let mut end = masked(&row(&out, "end_logits", w)?[..n]);
        if impossible {
            min_null = min_null.min(start[0] * end[0]);
        }
        start[0] = 0.0;
        end[0] = 0.0;
        let mut candidates: Vec<(f64, usize, usize)> = Vec::new();
        for i in (0..n).filter(|&i| allowed[i]) {
            for j in (i..n.min(i + max_answer_len)).filter(|&j| allowed[j]) {
                let score = start[i] * end[j];
                if score > 0.0 {
                    candidates.push((score, i, j));
                }
            }
        }
        candidates.sort_by(|a, b| b.0.total_cmp(&a.0));
        let keep = if align {
            top_k.saturating_mul(2).saturating_add(10)
        } else {
            top_k
        };
        for &(score, s, e) in candidates.iter().take(keep) {
            let aligned = match (align, enc.word_ids[s], enc.word_ids[e]) {
                (true, Some(ws), Some(we)) => word_chars(enc, ws).zip(word_chars(enc, we)),
                _ => None,
            };
            let (cs, ce) =
                aligned.map_or((enc.offsets[s].0, enc.offsets[e].1), |(a, b)| (a.0, b.1));
            let text = char_slice(&input.context, cs, ce);
            match answers
                .iter_mut()
                .find(|a| a.answer.to_lowercase() == text.to_lowercase())
            {
                Some(a) => a.score += score,
                None => answers.push(Span {
                    score,
                    start: cs,
                    end: ce,
                    answer: text,
                }),
            }
        }
    }
    if impossible {
        answers.push(Span {
            score: min_null,
            start: 0,
            end: 0,
            answer: String::new(),
        });
    }
    answers.sort_by(|a, b| b.score.total_cmp(&a.score));
    answers.truncate(top_k);
    let mut values: Vec<Value> = answers
        .into_iter()
        .map(|a| json!({"score": a.score, "start": a.start, "end": a.end, "answer": a.answer}))
        .collect();
    let value = match values.len() {
        1 => values.remove(0),
        _ => Value::Array(values),
    };
    Ok(Answer {
        value,
        warnings: Vec::new(),
    })
}
