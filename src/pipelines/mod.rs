//! Text in, answers out: every task with Hugging Face pipeline semantics
//! (../shared/PIPELINES.md has the contract).
//!
//! A [`Pipeline`] owns a model loaded with the head its task needs, the checkpoint's
//! tokenizer and the task options. `run` answers a slice of inputs (JSON objects as the CLI
//! reads them); inputs that fit in one window are batched into one forward call.

mod embed;
mod fill_mask;
mod generate;
mod pairs;
mod question_answering;
mod text_classification;
mod token_classification;

use std::path::Path;
use std::str::FromStr;

use serde::Deserialize;
use serde_json::Value;

use crate::backend::Target;
use crate::batch::Batch;
use crate::error::{Error, Result};
use crate::model::{ForwardOptions, Head, Model, Outputs};
use crate::tokenizer::{BertTokenizer, EncodeOptions, Encoding};
use crate::weights::ModelSource;

pub use embed::Pooling;

/// The tasks a pipeline runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// Sentence embeddings (or raw token states with pooling none).
    Embed,
    /// Masked-token prediction.
    FillMask,
    /// Sequence classification (texts or pairs).
    TextClassification,
    /// Per-token labels (NER).
    TokenClassification,
    /// Extractive question answering.
    QuestionAnswering,
    /// Pick the best continuation among choices.
    MultipleChoice,
    /// Does text_pair follow text?
    NextSentence,
    /// Greedy decoding with BertLMHeadModel.
    Generate,
}

const TASKS: [(Task, &str, Head); 8] = [
    (Task::Embed, "embed", Head::Bert),
    (Task::FillMask, "fill-mask", Head::MaskedLm),
    (
        Task::TextClassification,
        "text-classification",
        Head::SequenceClassification,
    ),
    (
        Task::TokenClassification,
        "token-classification",
        Head::TokenClassification,
    ),
    (
        Task::QuestionAnswering,
        "question-answering",
        Head::QuestionAnswering,
    ),
    (
        Task::MultipleChoice,
        "multiple-choice",
        Head::MultipleChoice,
    ),
    (Task::NextSentence, "next-sentence", Head::NextSentence),
    (Task::Generate, "generate", Head::LmHead),
];

impl Task {
    /// The CLI name.
    pub fn name(self) -> &'static str {
        TASKS.iter().find(|t| t.0 == self).map_or("", |t| t.1)
    }

    /// The head the task runs.
    pub fn head(self) -> Head {
        TASKS
            .iter()
            .find(|t| t.0 == self)
            .map_or(Head::Bert, |t| t.2)
    }

    /// Every task name, for messages.
    pub fn names() -> Vec<&'static str> {
        TASKS.iter().map(|t| t.1).collect()
    }
}

impl FromStr for Task {
    type Err = Error;
    fn from_str(s: &str) -> Result<Task> {
        let alias = match s {
            "feature-extraction" | "embeddings" => "embed",
            "ner" => "token-classification",
            "qa" => "question-answering",
            "sentiment-analysis" => "text-classification",
            other => other,
        };
        TASKS
            .iter()
            .find(|t| t.1 == alias)
            .map(|t| t.0)
            .ok_or_else(|| {
                Error::Unsupported(format!(
                    "unknown task {s:?}; expected raw or one of {}",
                    Task::names().join(", ")
                ))
            })
    }
}

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

/// `top_k`: a number, or every candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopK {
    /// The k best.
    K(usize),
    /// All of them, best first.
    All,
}

impl<'de> Deserialize<'de> for TopK {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Null => Ok(TopK::All),
            Value::String(s) if s == "all" => Ok(TopK::All),
            Value::Number(n) => match n.as_u64() {
                Some(k) if k > 0 => Ok(TopK::K(k as usize)),
                _ => Err(serde::de::Error::custom(
                    "top_k must be a positive integer or \"all\"",
                )),
            },
            other => Err(serde::de::Error::custom(format!(
                "top_k: expected a number or \"all\", got {other}"
            ))),
        }
    }
}

/// Task options; each task reads the ones it understands. Unset options take
/// transformers' defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// Results to return (fill-mask 5, text-classification: the best only, QA 1).
    pub top_k: Option<TopK>,
    /// fill-mask: restrict predictions to these tokens.
    pub targets: Option<Vec<String>>,
    /// text-classification: score function (default from problem_type).
    pub function_to_apply: Option<ScoreFunction>,
    /// token-classification: how tokens merge into entities.
    pub aggregation_strategy: Option<Aggregation>,
    /// token-classification: labels dropped from the output (default ["O"]).
    pub ignore_labels: Option<Vec<String>>,
    /// token-classification: overlap of windows over long texts.
    pub stride: Option<usize>,
    /// question-answering: overlap of context windows.
    pub doc_stride: Option<usize>,
    /// question-answering: longest answer in tokens (15).
    pub max_answer_len: Option<usize>,
    /// question-answering: window length (min(model max, 384)).
    pub max_seq_len: Option<usize>,
    /// question-answering: accepted for compatibility; fast tokenizers ignore it.
    pub max_question_len: Option<usize>,
    /// question-answering: allow the empty answer.
    pub handle_impossible_answer: Option<bool>,
    /// question-answering: snap answers to word boundaries (true).
    pub align_to_words: Option<bool>,
    /// generate: tokens to add (default 20).
    pub max_new_tokens: Option<usize>,
    /// embed: pooling (default from the sentence-transformers files, else mean).
    pub pooling: Option<Pooling>,
    /// embed: L2-normalise (default from modules.json).
    pub normalize: Option<bool>,
    /// Longest input in tokens (default: the model's limit).
    pub max_length: Option<usize>,
    /// Refuse over-long inputs instead of truncating them.
    pub no_truncate: Option<bool>,
    /// Inputs per forward call for batchable tasks (default 32).
    pub batch_size: Option<usize>,
}

/// One answer and the warnings it produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The task's JSON result.
    pub value: Value,
    /// Things the user should know (truncation, replaced targets).
    pub warnings: Vec<String>,
}

/// A model, its tokenizer and a task.
pub struct Pipeline {
    task: Task,
    model: Model,
    tokenizer: BertTokenizer,
    options: Options,
    embed: embed::EmbedConfig,
    max_length: usize,
}

impl Pipeline {
    /// Loads a checkpoint folder or packed file for `task` with `options` as defaults for every input.
    pub fn load(
        dir: &Path,
        task: Task,
        target: impl Into<Target>,
        options: Options,
    ) -> Result<Pipeline> {
        let source = ModelSource::open(dir)?;
        let model = Model::from_source(&source, Some(task.head()), target)?;
        let tokenizer = BertTokenizer::from_source(&source)?;
        let embed = embed::EmbedConfig::from_source(&source)?;
        let model_max = model.config().max_position_embeddings;
        let mut max_length = tokenizer
            .model_max_length()
            .map_or(model_max, |m| m.min(model_max));
        if task == Task::Embed {
            if let Some(st) = embed.max_seq_length {
                max_length = max_length.min(st);
            }
        }
        if let Some(m) = options.max_length {
            if m < 2 || m > model_max {
                return Err(Error::Input(format!(
                    "max_length {m} must be between 2 and max_position_embeddings = {model_max}"
                )));
            }
            max_length = m;
        }
        Ok(Pipeline {
            task,
            model,
            tokenizer,
            options,
            embed,
            max_length,
        })
    }

    /// The task.
    pub fn task(&self) -> Task {
        self.task
    }

    /// The model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &BertTokenizer {
        &self.tokenizer
    }

    /// Answers each input (a JSON object as the CLI reads it); one result per input.
    pub fn run(&self, inputs: &[Value]) -> Vec<Result<Answer>> {
        match self.task {
            Task::Embed => embed::run(self, inputs),
            Task::FillMask => fill_mask::run(self, inputs),
            Task::TextClassification => text_classification::run(self, inputs),
            Task::NextSentence => pairs::run_next_sentence(self, inputs),
            Task::TokenClassification => each(inputs, |v| token_classification::run(self, v)),
            Task::QuestionAnswering => each(inputs, |v| question_answering::run(self, v)),
            Task::MultipleChoice => each(inputs, |v| pairs::run_multiple_choice(self, v)),
            Task::Generate => each(inputs, |v| generate::run(self, v)),
        }
    }

    /// Encodes one text (or pair), truncated to the model's limit with a warning (or an
    /// error with `no_truncate`).
    fn encode_one(
        &self,
        text: &str,
        pair: Option<&str>,
        warnings: &mut Vec<String>,
    ) -> Result<Encoding> {
        let opts = EncodeOptions {
            max_length: Some(self.max_length),
            ..Default::default()
        };
        let enc = self.tokenizer.encode(text, pair, opts)?.remove(0);
        if enc.truncated {
            if self.options.no_truncate == Some(true) {
                return Err(Error::Input(format!(
                    "input is longer than {} tokens (truncation is off)",
                    self.max_length
                )));
            }
            warnings.push(format!("input truncated to {} tokens", self.max_length));
        }
        Ok(enc)
    }

    /// Parses a `{"text", "text_pair"?}` input and encodes it (see `encode_one`).
    fn encode_text(&self, value: &Value, warnings: &mut Vec<String>) -> Result<Encoding> {
        let input = TextInput::parse(value)?;
        self.encode_one(&input.text, input.text_pair.as_deref(), warnings)
    }

    /// Runs the model on encodings padded to one length.
    fn forward(&self, encodings: &[&Encoding]) -> Result<Outputs> {
        self.model.forward(
            &pad(encodings, self.tokenizer.specials().pad)?,
            ForwardOptions::default(),
        )
    }
}

/// Answers single-window inputs in batches: `prepare` turns an input into an encoding
/// (and its warnings), inputs are grouped by length, each group runs in one forward call,
/// and `finish` reads row `r` of the group's outputs.
fn batched<P>(
    p: &Pipeline,
    inputs: &[Value],
    prepare: impl Fn(&Value, &mut Vec<String>) -> Result<(Encoding, P)>,
    finish: impl Fn(&Outputs, usize, &Encoding, &P) -> Result<Value>,
) -> Vec<Result<Answer>> {
    let mut results: Vec<Option<Result<Answer>>> = (0..inputs.len()).map(|_| None).collect();
    let mut ready = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        let mut warnings = Vec::new();
        match prepare(input, &mut warnings) {
            Ok((enc, extra)) => ready.push((i, enc, extra, warnings)),
            Err(e) => results[i] = Some(Err(e)),
        }
    }
    // Group by length so that little padding is computed.
    ready.sort_by_key(|r| r.1.len());
    let size = p.options.batch_size.unwrap_or(32).max(1);
    for group in ready.chunks(size) {
        let encs: Vec<&Encoding> = group.iter().map(|r| &r.1).collect();
        match p.forward(&encs) {
            Ok(out) => {
                for (row, (i, enc, extra, warnings)) in group.iter().enumerate() {
                    results[*i] = Some(finish(&out, row, enc, extra).map(|value| Answer {
                        value,
                        warnings: warnings.clone(),
                    }));
                }
            }
            Err(e) => {
                for (i, ..) in group {
                    results[*i] = Some(Err(Error::Input(e.to_string())));
                }
            }
        }
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(Error::Input("input was not processed".into()))))
        .collect()
}

/// The text and optional pair most tasks read.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TextInput {
    text: String,
    #[serde(default)]
    text_pair: Option<String>,
    #[serde(default)]
    max_new_tokens: Option<usize>,
}

impl TextInput {
    fn parse(value: &Value) -> Result<TextInput> {
        let input: TextInput = parse(value, r#"{"text": ..., "text_pair"?: ...}"#)?;
        non_empty("text", &input.text)?;
        if let Some(pair) = &input.text_pair {
            non_empty("text_pair", pair)?;
        }
        Ok(input)
    }
}

/// Row `row` of a [rows, ...] output tensor.
fn row<'a>(out: &'a Outputs, name: &str, row: usize) -> Result<&'a [f32]> {
    let t = out
        .get(name)
        .ok_or_else(|| Error::Unsupported(format!("the model returned no `{name}`")))?;
    let per = t.len() / t.shape().first().copied().unwrap_or(1).max(1);
    Ok(&t.data()[row * per..(row + 1) * per])
}

fn each(inputs: &[Value], f: impl Fn(&Value) -> Result<Answer>) -> Vec<Result<Answer>> {
    inputs.iter().map(f).collect()
}

/// Right-pads encodings into one batch.
fn pad(encodings: &[&Encoding], pad_id: u32) -> Result<Batch> {
    let len = encodings.iter().map(|e| e.len()).max().unwrap_or(0);
    let row = |f: &dyn Fn(&Encoding) -> Vec<i64>, fill: i64| -> Vec<Vec<i64>> {
        encodings
            .iter()
            .map(|e| {
                let mut r = f(e);
                r.resize(len, fill);
                r
            })
            .collect()
    };
    Batch::new(row(
        &|e| e.ids.iter().map(|&i| i as i64).collect(),
        pad_id as i64,
    ))?
    .with_attention_mask(row(&|e| vec![1; e.len()], 0))?
    .with_token_type_ids(row(&|e| e.type_ids.iter().map(|&i| i as i64).collect(), 0))
}

/// Parses an input object into the task's input type.
fn parse<T: for<'de> Deserialize<'de>>(value: &Value, expected: &str) -> Result<T> {
    T::deserialize(value).map_err(|e| Error::Input(format!("expected {expected}: {e}")))
}

/// Rejects empty texts with a message naming the field.
fn non_empty(field: &str, text: &str) -> Result<()> {
    if text.trim().is_empty() {
        return Err(Error::Input(format!("`{field}` is empty")));
    }
    Ok(())
}

/// An f32 as a JSON number with its shortest decimal form (not the f64 widening's digits).
fn f32_json(x: f32) -> Value {
    x.to_string()
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

/// f32 values as a JSON list.
fn f32_list(xs: &[f32]) -> Value {
    Value::Array(xs.iter().map(|&x| f32_json(x)).collect())
}

/// Numerically stable softmax in f64.
fn softmax(xs: &[f32]) -> Vec<f64> {
    let max = xs.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
    let exps: Vec<f64> = xs.iter().map(|&x| (x as f64 - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

/// Indices of `scores` from highest to lowest (stable for ties).
fn ranked(scores: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    idx
}
