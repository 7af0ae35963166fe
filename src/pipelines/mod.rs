//! Text in, answers out: every task with Hugging Face pipeline semantics
//! (../shared/PIPELINES.md has the contract).
//!
//! A [`TextModel`] is one loaded checkpoint (the model with every head its weights hold,
//! the tokenizer, the sentence-transformers files), shared through an `Arc` by any
//! number of [`Pipeline`]s: one per task and set of options. `run` answers a slice of
//! inputs (JSON objects as the CLI reads them); inputs that fit in one window are batched
//! into one forward call.

mod embed;
mod fill_mask;
mod generate;
mod options;
mod pairs;
mod prepared;
mod question_answering;
mod text;
mod text_classification;
mod text_model;
mod token_classification;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use crate::backend::Target;
use crate::batch::Batch;
use crate::error::{Error, Result};
use crate::model::{ForwardOptions, Head, Outputs};
use crate::tokenizer::{BertTokenizer, EncodeOptions, Encoding};

pub use crate::lines::Answer;
pub use embed::{EmbedOptions, Pooling};
pub use fill_mask::FillMaskOptions;
pub use generate::GenerateOptions;
pub use options::{InputOptions, NoOptions, TaskOptions, TopK, TruncationDirection};
pub use prepared::{answered, execute, Prepared};
pub use question_answering::QuestionAnsweringOptions;
pub use text_classification::{ScoreFunction, TextClassificationOptions};
pub use text_model::TextModel;
pub use token_classification::{Aggregation, TokenClassificationOptions};
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
    /// Sparse (SPLADE) embeddings from the masked-LM head.
    SparseEmbed,
}

const TASKS: [(Task, &str, Head); 9] = [
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
    (Task::SparseEmbed, "embed-sparse", Head::MaskedLm),
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

/// A task with its options over a shared [`TextModel`].
pub struct Pipeline {
    text: Arc<TextModel>,
    options: TaskOptions,
    input: InputOptions,
    /// Longest encoding, special tokens included.
    max_length: usize,
}

impl Pipeline {
    /// A pipeline for `options`' task over a loaded model; an error if the model has no
    /// weights for the task's head.
    pub fn new(text: Arc<TextModel>, options: TaskOptions, input: InputOptions) -> Result<Self> {
        let task = options.task();
        let head = task.head();
        if !text.model().has_head(head) {
            return Err(Error::Unsupported(format!(
                "{} needs {head}, and this checkpoint has no weights for it (its heads: {})",
                task.name(),
                text.model().head_names()
            )));
        }
        let max_length = text.max_length(task, input.max_length)?;
        if input.from_left() && matches!(task, Task::QuestionAnswering | Task::TokenClassification)
        {
            return Err(Error::Input(format!(
                "{} splits long inputs into windows: truncation_direction Left is for the \
                 tasks that cut them",
                task.name()
            )));
        }
        Ok(Pipeline {
            text,
            options,
            input,
            max_length,
        })
    }

    /// Loads a checkpoint folder or packed file for one task (its head the model's
    /// default), with `options` as defaults for every input.
    pub fn load(
        dir: &Path,
        options: TaskOptions,
        target: impl Into<Target>,
        input: InputOptions,
    ) -> Result<Pipeline> {
        let text = TextModel::load(dir, Some(options.task().head()), target)?;
        Pipeline::new(Arc::new(text), options, input)
    }

    /// The task.
    pub fn task(&self) -> Task {
        self.options.task()
    }

    /// The task's options.
    pub fn options(&self) -> &TaskOptions {
        &self.options
    }

    /// The loaded model this pipeline runs on.
    pub fn text_model(&self) -> &Arc<TextModel> {
        &self.text
    }

    /// Answers each input (a JSON object as the CLI reads it); one result per input:
    /// [`Pipeline::prepare`] then [`execute`], `batch_size` inputs to a forward call.
    pub fn run(&self, inputs: &[Value]) -> Vec<Result<Answer>> {
        if !self.batches() {
            return inputs.iter().map(|v| self.run_whole(v)).collect();
        }
        let mut results: Vec<Option<Result<Answer>>> = (0..inputs.len()).map(|_| None).collect();
        let mut ready = Vec::new();
        let mut places = Vec::new();
        for (i, input) in inputs.iter().enumerate() {
            match self.prepare(input) {
                Ok(p) => {
                    ready.push((self, p));
                    places.push(i);
                }
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        for (i, r) in places
            .into_iter()
            .zip(execute(ready, self.input.batch_size()))
        {
            results[i] = Some(r);
        }
        prepared::answered(results)
    }

    /// Whether the task's inputs are single windows that [`execute`] batches.
    fn batches(&self) -> bool {
        matches!(
            self.options,
            TaskOptions::Embed(_)
                | TaskOptions::FillMask(_)
                | TaskOptions::TextClassification(_)
                | TaskOptions::NextSentence
                | TaskOptions::SparseEmbed
        )
    }

    /// Answers an input of a task that runs its own forward calls.
    fn run_whole(&self, input: &Value) -> Result<Answer> {
        match &self.options {
            TaskOptions::TokenClassification(o) => token_classification::run(self, o, input),
            TaskOptions::QuestionAnswering(o) => question_answering::run(self, o, input),
            TaskOptions::MultipleChoice => pairs::run_multiple_choice(self, input),
            TaskOptions::Generate(o) => generate::run(self, o, input),
            _ => Err(Error::Internal(format!(
                "{} inputs are batched, not run whole",
                self.task().name()
            ))),
        }
    }

    fn tokenizer(&self) -> &BertTokenizer {
        self.text.tokenizer()
    }

    fn config(&self) -> &crate::config::BertConfig {
        self.text.model().config()
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
            from_left: self.input.from_left(),
            ..Default::default()
        };
        let enc = self.tokenizer().encode(text, pair, opts)?.remove(0);
        if enc.truncated {
            if self.input.no_truncate == Some(true) {
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

    /// Whether the model can take this encoding (ids, type ids and length), with the
    /// error it would give in a batch.
    fn check(&self, enc: &Encoding) -> Result<()> {
        crate::batch::check_tokens(&enc.ids, &enc.type_ids, enc.len(), self.config(), 0)
    }

    /// Runs the task's head on encodings padded to one length.
    fn forward(&self, encodings: &[&Encoding]) -> Result<Outputs> {
        self.forward_batch(&pad(encodings, self.tokenizer().specials().pad)?)
    }

    /// Runs the task's head on a batch.
    fn forward_batch(&self, batch: &Batch) -> Result<Outputs> {
        let opts = ForwardOptions::head(self.task().head());
        self.text.model().forward(batch, opts)
    }
}

/// The text and optional pair most tasks read.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TextInput {
    text: String,
    #[serde(default)]
    text_pair: Option<String>,
}

impl TextInput {
    fn parse(value: &Value) -> Result<TextInput> {
        // An empty (or blank) text is an input like any other, as in transformers and
        // sentence-transformers: it encodes as [CLS] [SEP].
        parse(value, r#"{"text": ..., "text_pair"?: ...}"#)
    }
}

/// Row `row` of a [rows, ...] output tensor.
fn row<'a>(out: &'a Outputs, name: &str, row: usize) -> Result<&'a [f32]> {
    let t = out
        .get(name)
        .ok_or_else(|| Error::Internal(format!("the model returned no `{name}`")))?;
    let per = t.len() / t.shape().first().copied().unwrap_or(1).max(1);
    Ok(&t.data()[row * per..(row + 1) * per])
}

impl crate::lines::Answerer for Pipeline {
    fn answer(&self, requests: &[Value]) -> Vec<Result<Answer>> {
        self.run(requests)
    }
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
