//! Task options: each task's own struct (in its file), the options every task reads,
//! and the parsing of a JSON object of options for a task.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::embed::EmbedOptions;
use super::fill_mask::FillMaskOptions;
use super::generate::GenerateOptions;
use super::question_answering::QuestionAnsweringOptions;
use super::text_classification::TextClassificationOptions;
use super::token_classification::TokenClassificationOptions;
use super::Task;
use crate::error::{Error, Result};

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

/// What every task reads: how inputs are encoded and batched. Unset options take
/// transformers' defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputOptions {
    /// Longest input in tokens (default: the model's limit).
    pub max_length: Option<usize>,
    /// Refuse over-long inputs instead of truncating them.
    pub no_truncate: Option<bool>,
    /// Inputs per forward call for batchable tasks (default 32).
    pub batch_size: Option<usize>,
    /// Which end of an over-long input is cut (default right: the end).
    pub truncation_direction: Option<TruncationDirection>,
}

/// Which end of an over-long input is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum TruncationDirection {
    /// Cut the start, keep the end.
    #[serde(alias = "left")]
    Left,
    /// Cut the end (transformers' default).
    #[default]
    #[serde(alias = "right")]
    Right,
}

impl InputOptions {
    /// The names of these options, as JSON spells them.
    const FIELDS: [&'static str; 4] = [
        "max_length",
        "no_truncate",
        "batch_size",
        "truncation_direction",
    ];

    /// Whether inputs are cut at their start.
    pub fn from_left(&self) -> bool {
        self.truncation_direction == Some(TruncationDirection::Left)
    }

    /// Inputs per forward call.
    pub fn batch_size(&self) -> usize {
        self.batch_size.unwrap_or(32).max(1)
    }
}

/// No options (next-sentence, multiple-choice).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoOptions {}

/// A task with its own options.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskOptions {
    /// Sentence embeddings.
    Embed(EmbedOptions),
    /// Masked-token prediction.
    FillMask(FillMaskOptions),
    /// Sequence classification.
    TextClassification(TextClassificationOptions),
    /// Per-token labels.
    TokenClassification(TokenClassificationOptions),
    /// Extractive question answering.
    QuestionAnswering(QuestionAnsweringOptions),
    /// The best continuation among choices.
    MultipleChoice,
    /// Does text_pair follow text?
    NextSentence,
    /// Greedy decoding.
    Generate(GenerateOptions),
    /// Sparse (SPLADE) embeddings.
    SparseEmbed,
}

impl TaskOptions {
    /// The task.
    pub fn task(&self) -> Task {
        match self {
            TaskOptions::Embed(_) => Task::Embed,
            TaskOptions::FillMask(_) => Task::FillMask,
            TaskOptions::TextClassification(_) => Task::TextClassification,
            TaskOptions::TokenClassification(_) => Task::TokenClassification,
            TaskOptions::QuestionAnswering(_) => Task::QuestionAnswering,
            TaskOptions::MultipleChoice => Task::MultipleChoice,
            TaskOptions::NextSentence => Task::NextSentence,
            TaskOptions::SparseEmbed => Task::SparseEmbed,
            TaskOptions::Generate(_) => Task::Generate,
        }
    }

    /// `task` with its default options.
    pub fn defaults(task: Task) -> TaskOptions {
        match task {
            Task::Embed => TaskOptions::Embed(Default::default()),
            Task::FillMask => TaskOptions::FillMask(Default::default()),
            Task::TextClassification => TaskOptions::TextClassification(Default::default()),
            Task::TokenClassification => TaskOptions::TokenClassification(Default::default()),
            Task::QuestionAnswering => TaskOptions::QuestionAnswering(Default::default()),
            Task::MultipleChoice => TaskOptions::MultipleChoice,
            Task::NextSentence => TaskOptions::NextSentence,
            Task::SparseEmbed => TaskOptions::SparseEmbed,
            Task::Generate => TaskOptions::Generate(Default::default()),
        }
    }

    /// Parses a JSON object of options (`{"top_k": 2, "batch_size": 8}`) for `task`:
    /// the task's own and the [`InputOptions`]. An option the task does not have is an
    /// error that names the task and its options.
    pub fn from_json(task: Task, value: &Value) -> Result<(TaskOptions, InputOptions)> {
        let empty = Map::new();
        let object = match value {
            Value::Object(o) => o,
            Value::Null => &empty,
            other => {
                return Err(Error::Input(format!(
                    "options must be a JSON object, got {other}"
                )))
            }
        };
        let (common, own): (Map<String, Value>, Map<String, Value>) = object
            .clone()
            .into_iter()
            .partition(|(k, _)| InputOptions::FIELDS.contains(&k.as_str()));
        let input = parse_options(task, common)?;
        let own = Value::Object(own);
        let options = match task {
            Task::Embed => TaskOptions::Embed(parse_options(task, own)?),
            Task::FillMask => TaskOptions::FillMask(parse_options(task, own)?),
            Task::TextClassification => TaskOptions::TextClassification(parse_options(task, own)?),
            Task::TokenClassification => {
                TaskOptions::TokenClassification(parse_options(task, own)?)
            }
            Task::QuestionAnswering => TaskOptions::QuestionAnswering(parse_options(task, own)?),
            Task::MultipleChoice => {
                parse_options::<NoOptions>(task, own)?;
                TaskOptions::MultipleChoice
            }
            Task::NextSentence => {
                parse_options::<NoOptions>(task, own)?;
                TaskOptions::NextSentence
            }
            Task::SparseEmbed => {
                parse_options::<NoOptions>(task, own)?;
                TaskOptions::SparseEmbed
            }
            Task::Generate => TaskOptions::Generate(parse_options(task, own)?),
        };
        Ok((options, input))
    }
}

fn parse_options<T: DeserializeOwned>(task: Task, value: impl Into<Value>) -> Result<T> {
    serde_json::from_value(value.into()).map_err(|e| {
        let e = e.to_string();
        let hint = match e.contains("unknown field") {
            true => format!(
                " (every task also takes {})",
                InputOptions::FIELDS.join(", ")
            ),
            false => String::new(),
        };
        Error::Input(format!("{} options: {e}{hint}", task.name()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn options_split_by_task_and_refuse_other_tasks_options() {
        let (task, input) =
            TaskOptions::from_json(Task::FillMask, &json!({"top_k": 2, "batch_size": 4})).unwrap();
        let TaskOptions::FillMask(fill) = task else {
            panic!("{task:?}")
        };
        assert_eq!(fill.top_k, Some(TopK::K(2)));
        assert_eq!(input.batch_size(), 4);
        let err = TaskOptions::from_json(Task::Embed, &json!({"top_k": 2})).unwrap_err();
        assert!(matches!(err, Error::Input(_)), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("embed options") && msg.contains("top_k"),
            "{msg}"
        );
        assert!(TaskOptions::from_json(Task::NextSentence, &json!({"stride": 1})).is_err());
        let (nsp, _) = TaskOptions::from_json(Task::NextSentence, &Value::Null).unwrap();
        assert_eq!(nsp, TaskOptions::NextSentence);
        for task in [Task::Embed, Task::QuestionAnswering, Task::Generate] {
            assert_eq!(TaskOptions::defaults(task).task(), task);
        }
    }
}
