//! [`TextModel`]: one loaded checkpoint as the tasks use it.

use std::path::Path;

use super::embed::EmbedConfig;
use super::Task;
use crate::backend::Target;
use crate::error::{Error, Result};
use crate::model::{Head, Model};
use crate::tokenizer::BertTokenizer;
use crate::weights::ModelSource;

/// A model with every head its weights hold, the checkpoint's tokenizer and its
/// sentence-transformers files: loaded once, shared (through an `Arc`) by the pipelines
/// of every task it serves.
pub struct TextModel {
    model: Model,
    tokenizer: BertTokenizer,
    embed: EmbedConfig,
}

impl TextModel {
    /// Loads a checkpoint folder or packed file. `head` is the model's default head
    /// (its weights must be there); None takes the packed file's or the config's.
    pub fn load(path: &Path, head: Option<Head>, target: impl Into<Target>) -> Result<Self> {
        let source = ModelSource::open(path)?;
        TextModel::from_model(Model::from_source(&source, head, target)?, &source)
    }

    /// Pairs a loaded model with the tokenizer and sentence-transformers files of the
    /// checkpoint it came from.
    pub fn from_model(model: Model, source: &ModelSource) -> Result<Self> {
        Ok(TextModel {
            tokenizer: BertTokenizer::from_source(source)?,
            embed: EmbedConfig::from_source(source)?,
            model,
        })
    }

    /// The model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &BertTokenizer {
        &self.tokenizer
    }

    /// The text of sentence-transformers prompt `name` (config_sentence_transformers.json),
    /// or with None the default prompt's (none when the files name no default).
    pub fn prompt(&self, name: Option<&str>) -> Result<Option<&str>> {
        let name = match name.or(self.embed.default_prompt_name.as_deref()) {
            Some(n) => n,
            None => return Ok(None),
        };
        match self.embed.prompts.get(name) {
            Some(text) => Ok(Some(text)),
            None => {
                let mut known: Vec<&str> = self.embed.prompts.keys().map(|k| k.as_str()).collect();
                known.sort_unstable();
                Err(Error::Input(format!(
                    "prompt {name:?} is not in the model's prompts ({})",
                    match known.is_empty() {
                        true => "it has none".to_string(),
                        false => known.join(", "),
                    }
                )))
            }
        }
    }

    pub(super) fn embed(&self) -> &EmbedConfig {
        &self.embed
    }

    /// The longest encoding `task` feeds the model: `requested`, else the smallest of
    /// the model's positions, the tokenizer's model_max_length and (for embeddings)
    /// sentence-transformers' max_seq_length.
    pub(super) fn max_length(&self, task: Task, requested: Option<usize>) -> Result<usize> {
        let model_max = self.model.config().max_position_embeddings;
        if let Some(m) = requested {
            if m < 2 || m > model_max {
                return Err(Error::Input(format!(
                    "max_length {m} must be between 2 and max_position_embeddings = {model_max}"
                )));
            }
            return Ok(m);
        }
        let mut max = self
            .tokenizer
            .model_max_length()
            .map_or(model_max, |m| m.min(model_max));
        if task == Task::Embed {
            if let Some(st) = self.embed.max_seq_length {
                max = max.min(st);
            }
        }
        Ok(max)
    }
}
