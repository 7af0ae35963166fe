//! question-answering: the best context spans over overlapping windows
//! (transformers' QuestionAnsweringPipeline with a fast tokenizer).

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{json, Value};

use super::text::CharIndex;
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

pub(super) fn run(p: &Pipeline, o: &QuestionAnsweringOptions, value: &Value) -> Result<Answer> {
    let input: QaInput = parse(value, r#"{"question": ..., "context": ...}"#)?;
    non_empty("question", &input.question)?;
    non_empty("context", &input.context)?;
    let limit = p.config().max_position_embeddings;
    let max_seq_len = o.max_seq_len.unwrap_or(p.max_length.min(384));
    if max_seq_len < 4 || max_seq_len > limit {
        return Err(Error::Input(format!(
            "max_seq_len {max_seq_len} must be between 4 and the model's {limit} positions"
        )));
    }
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
    let opts = EncodeOptions {
        max_length: Some(max_seq_len),
        truncation: Truncation::OnlySecond,
        stride: doc_stride,
        overflow: true,
        from_left: false,
    };
    let windows = p
        .tokenizer()
        .windows(&input.question, Some(&input.context), opts)?;
    let mut spans = Spans {
        context: CharIndex::new(&input.context),
        top_k: match o.top_k {
            None => 1,
            Some(TopK::K(k)) => k,
            Some(TopK::All) => usize::MAX,
        },
        max_answer_len,
        align: o.align_to_words.unwrap_or(true),
        cls: p.tokenizer().specials().cls,
        min_null: f64::INFINITY,
        answers: Vec::new(),
        seen: HashMap::new(),
    };
    // Windows run batch_size at a time; only the candidate answers are kept.
    let batch = p.input.batch_size();
    for first in (0..windows.len()).step_by(batch) {
        let encs = (first..(first + batch).min(windows.len()))
            .map(|i| windows.get(i))
            .collect::<Result<Vec<_>>>()?;
        let out = p.forward(&encs.iter().collect::<Vec<_>>())?;
        for (w, enc) in encs.iter().enumerate() {
            let n = enc.len();
            let start = &row(&out, "start_logits", w)?[..n];
            let end = &row(&out, "end_logits", w)?[..n];
            spans.add_window(enc, start, end);
        }
    }
    let impossible = o.handle_impossible_answer.unwrap_or(false);
    let value = spans.answer(impossible);
    Ok(Answer::new(value))
}

/// The answers found so far over a context's windows.
struct Spans<'t> {
    context: CharIndex<'t>,
    top_k: usize,
    max_answer_len: usize,
    align: bool,
    cls: u32,
    /// The lowest null-answer score of any window.
    min_null: f64,
    /// Distinct answers in the order found.
    answers: Vec<Span>,
    /// Index in `answers` of each lowercased answer text.
    seen: HashMap<String, usize>,
}

impl Spans<'_> {
    /// Scores one window's spans and adds its best candidates.
    fn add_window(&mut self, enc: &Encoding, start_logits: &[f32], end_logits: &[f32]) {
        let n = enc.len();
        // Context tokens and [CLS] may hold the answer; everything else is pushed out
        // of the softmax with -10000, as transformers does.
        let allowed: Vec<bool> = (0..n)
            .map(|i| enc.sequence_ids[i] == Some(1) || enc.ids[i] == self.cls)
            .collect();
        let masked = |logits: &[f32]| -> Vec<f64> {
            let xs: Vec<f32> = (0..n)
                .map(|i| if allowed[i] { logits[i] } else { -10000.0 })
                .collect();
            softmax(&xs)
        };
        let mut start = masked(start_logits);
        let mut end = masked(end_logits);
        self.min_null = self.min_null.min(start[0] * end[0]);
        start[0] = 0.0;
        end[0] = 0.0;
        let mut candidates: Vec<(f64, usize, usize)> = Vec::new();
        for i in (0..n).filter(|&i| allowed[i]) {
            let last = n.min(i.saturating_add(self.max_answer_len));
            for j in (i..last).filter(|&j| allowed[j]) {
                let score = start[i] * end[j];
                if score > 0.0 {
                    candidates.push((score, i, j));
                }
            }
        }
        candidates.sort_by(|a, b| b.0.total_cmp(&a.0));
        let keep = match self.align {
            true => self.top_k.saturating_mul(2).saturating_add(10),
            false => self.top_k,
        };
        for &(score, s, e) in candidates.iter().take(keep) {
            let aligned = match (self.align, enc.word_ids[s], enc.word_ids[e]) {
                (true, Some(ws), Some(we)) => word_chars(enc, ws).zip(word_chars(enc, we)),
                _ => None,
            };
            let (cs, ce) =
                aligned.map_or((enc.offsets[s].0, enc.offsets[e].1), |(a, b)| (a.0, b.1));
            let text = self.context.slice(cs, ce).to_string();
            match self.seen.get(&text.to_lowercase()) {
                Some(&i) => self.answers[i].score += score,
                None => {
                    self.seen.insert(text.to_lowercase(), self.answers.len());
                    self.answers.push(Span {
                        score,
                        start: cs,
                        end: ce,
                        answer: text,
                    });
                }
            }
        }
    }

    /// The best answers (one, or a list), with the empty answer when allowed.
    fn answer(mut self, impossible: bool) -> Value {
        if impossible {
            self.answers.push(Span {
                score: self.min_null,
                start: 0,
                end: 0,
                answer: String::new(),
            });
        }
        self.answers.sort_by(|a, b| b.score.total_cmp(&a.score));
        self.answers.truncate(self.top_k);
        let mut values: Vec<Value> = self
            .answers
            .into_iter()
            .map(|a| json!({"score": a.score, "start": a.start, "end": a.end, "answer": a.answer}))
            .collect();
        match values.len() {
            1 => values.remove(0),
            _ => Value::Array(values),
        }
    }
}
