//! `BertConfig`: a serde mirror of a Hugging Face config.json, validated at load.
//!
//! Defaults are transformers' `BertConfig` defaults, so a config.json that omits a field
//! means what it means to transformers.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Element-wise activation functions used by BERT checkpoints.
///
/// Numeric choices: `Gelu` is the exact erf form (transformers' "gelu"); `GeluTanh` is the
/// tanh approximation `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`, which is what
/// "gelu_new", "gelu_pytorch_tanh" and "gelu_fast" all compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Activation {
    /// erf GELU.
    Gelu,
    /// tanh-approximated GELU.
    GeluTanh,
    /// max(x, 0).
    Relu,
    /// x * sigmoid(x).
    Silu,
    /// tanh(x) (the pooler's activation).
    Tanh,
}

impl Activation {
    /// Parses a transformers `hidden_act` string.
    pub fn from_hf(name: &str) -> Option<Self> {
        Some(match name {
            "gelu" | "gelu_python" => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            "silu" | "swish" => Activation::Silu,
            "tanh" => Activation::Tanh,
            _ => return None,
        })
    }
}

/// How positions enter the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PositionEmbeddingType {
    /// Learned absolute position embeddings added to the input embeddings.
    Absolute,
    /// Learned relative-distance embeddings dotted with the queries.
    RelativeKey,
    /// Relative-distance embeddings dotted with both queries and keys.
    RelativeKeyQuery,
}

/// What a sequence-classification head predicts (transformers' `problem_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemType {
    /// One value per label, no squashing.
    Regression,
    /// Exactly one label: softmax.
    SingleLabel,
    /// Independent labels: sigmoid.
    MultiLabel,
}

fn d_vocab() -> usize {
    30522
}
fn d_hidden() -> usize {
    768
}
fn d_layers() -> usize {
    12
}
fn d_heads() -> usize {
    12
}
fn d_inter() -> usize {
    3072
}
fn d_act() -> String {
    "gelu".into()
}
fn d_maxpos() -> usize {
    512
}
fn d_types() -> usize {
    2
}
fn d_eps() -> f64 {
    1e-12
}
fn d_pos_type() -> String {
    "absolute".into()
}
fn d_true() -> bool {
    true
}

/// The fields of a Hugging Face BERT config.json that bertrt reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BertConfig {
    /// Size of the word-piece vocabulary.
    #[serde(default = "d_vocab")]
    pub vocab_size: usize,
    /// Width of every hidden state.
    #[serde(default = "d_hidden")]
    pub hidden_size: usize,
    /// Number of transformer layers.
    #[serde(default = "d_layers")]
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    #[serde(default = "d_heads")]
    pub num_attention_heads: usize,
    /// Width of the feed-forward layer.
    #[serde(default = "d_inter")]
    pub intermediate_size: usize,
    /// Activation of the feed-forward layer and the MLM transform (see [`Activation`]).
    #[serde(default = "d_act")]
    pub hidden_act: String,
    /// Longest sequence the position embeddings cover.
    #[serde(default = "d_maxpos")]
    pub max_position_embeddings: usize,
    /// Number of token types (segments).
    #[serde(default = "d_types")]
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    #[serde(default = "d_eps")]
    pub layer_norm_eps: f64,
    /// "absolute", "relative_key" or "relative_key_query".
    #[serde(default = "d_pos_type")]
    pub position_embedding_type: String,
    /// Causal self-attention (BertLMHeadModel).
    #[serde(default)]
    pub is_decoder: bool,
    /// Cross-attention layers (encoder-decoder use); not supported.
    #[serde(default)]
    pub add_cross_attention: bool,
    /// Model classes the checkpoint was saved from; the first picks the default head.
    #[serde(default)]
    pub architectures: Option<Vec<String>>,
    /// Label names by index, as strings of integers ("0", "1", ...).
    #[serde(default)]
    pub id2label: Option<BTreeMap<String, String>>,
    /// Label indices by name.
    #[serde(default)]
    pub label2id: Option<BTreeMap<String, i64>>,
    /// Explicit label count (transformers derives it from id2label when absent).
    #[serde(default)]
    pub num_labels: Option<usize>,
    /// "regression", "single_label_classification" or "multi_label_classification".
    #[serde(default)]
    pub problem_type: Option<String>,
    /// Padding token id.
    #[serde(default)]
    pub pad_token_id: Option<i64>,
    /// Whether the MLM decoder shares the word-embedding matrix.
    #[serde(default = "d_true")]
    pub tie_word_embeddings: bool,
    /// Storage dtype of the checkpoint (transformers 5 name).
    #[serde(default)]
    pub dtype: Option<String>,
    /// Storage dtype of the checkpoint (transformers 4 name).
    #[serde(default)]
    pub torch_dtype: Option<String>,
    /// "bert" for BERT checkpoints.
    #[serde(default)]
    pub model_type: Option<String>,
}

/// The most elements a tensor may have (2^40: 4 TiB of f32).
const MAX_TENSOR_ELEMENTS: usize = 1 << 40;

impl BertConfig {
    /// Reads and validates a config.json file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json(&text)
    }

    /// Parses and validates config.json text.
    pub fn from_json(text: &str) -> Result<Self> {
        let config: BertConfig = serde_json::from_str(text).map_err(|e| {
            Error::config(
                "(document)",
                format!("config.json is not a valid BERT config: {e}"),
            )
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every invariant the engine relies on; each failure names its field.
    pub fn validate(&self) -> Result<()> {
        for (field, value) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ] {
            if value == 0 {
                return Err(Error::config(field, "must be positive"));
            }
        }
        // Every tensor's element count must be a number (shapes are then compared with
        // the checkpoint's before anything of that size is allocated).
        let h = self.hidden_size;
        for (field, other) in [
            ("vocab_size", self.vocab_size),
            (
                "max_position_embeddings",
                self.max_position_embeddings.saturating_mul(2),
            ),
            ("type_vocab_size", self.type_vocab_size),
            ("intermediate_size", self.intermediate_size),
            ("hidden_size", h.saturating_mul(3)),
        ] {
            if other.checked_mul(h).is_none_or(|n| n > MAX_TENSOR_ELEMENTS) {
                return Err(Error::config(
                    field,
                    format!("{other} x hidden_size {h} is too large for a tensor"),
                ));
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(Error::config(
                "hidden_size",
                format!(
                    "{} is not divisible by num_attention_heads = {}",
                    self.hidden_size, self.num_attention_heads
                ),
            ));
        }
        self.activation()?;
        self.position_type()?;
        self.problem()?;
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps.is_finite()) {
            return Err(Error::config("layer_norm_eps", "must be a positive number"));
        }
        if self.add_cross_attention {
            return Err(Error::config(
                "add_cross_attention",
                "cross-attention (encoder-decoder BERT) is not supported",
            ));
        }
        if let Some(map) = &self.id2label {
            for key in map.keys() {
                if key.parse::<usize>().map_or(true, |i| i >= map.len()) {
                    return Err(Error::config(
                        "id2label",
                        format!("key {key:?} is not an index below {}", map.len()),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The feed-forward activation.
    pub fn activation(&self) -> Result<Activation> {
        Activation::from_hf(&self.hidden_act).ok_or_else(|| {
            Error::config(
                "hidden_act",
                format!(
                    "unknown activation {:?} (supported: gelu, gelu_new, gelu_pytorch_tanh, gelu_fast, relu, silu)",
                    self.hidden_act
                ),
            )
        })
    }

    /// The position-embedding scheme.
    pub fn position_type(&self) -> Result<PositionEmbeddingType> {
        match self.position_embedding_type.as_str() {
            "absolute" => Ok(PositionEmbeddingType::Absolute),
            "relative_key" => Ok(PositionEmbeddingType::RelativeKey),
            "relative_key_query" => Ok(PositionEmbeddingType::RelativeKeyQuery),
            other => Err(Error::config(
                "position_embedding_type",
                format!(
                    "unknown type {other:?} (supported: absolute, relative_key, relative_key_query)"
                ),
            )),
        }
    }

    /// Declared problem type, if any.
    pub fn problem(&self) -> Result<Option<ProblemType>> {
        match self.problem_type.as_deref() {
            None => Ok(None),
            Some("regression") => Ok(Some(ProblemType::Regression)),
            Some("single_label_classification") => Ok(Some(ProblemType::SingleLabel)),
            Some("multi_label_classification") => Ok(Some(ProblemType::MultiLabel)),
            Some(other) => Err(Error::config(
                "problem_type",
                format!("unknown problem type {other:?}"),
            )),
        }
    }

    /// Number of labels of classification heads: `num_labels`, else the size of
    /// `id2label`, else 2 (transformers' default).
    pub fn num_labels(&self) -> usize {
        self.num_labels
            .or_else(|| self.id2label.as_ref().map(|m| m.len()))
            .unwrap_or(2)
    }

    /// The name of label `index`: from id2label, else transformers' `LABEL_{index}`.
    pub fn label(&self, index: usize) -> String {
        self.id2label
            .as_ref()
            .and_then(|m| m.get(&index.to_string()).cloned())
            .unwrap_or_else(|| format!("LABEL_{index}"))
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_bert_base() {
        let c = BertConfig::from_json("{}").unwrap();
        assert_eq!(c.hidden_size, 768);
        assert_eq!(c.num_labels(), 2);
        assert_eq!(c.activation().unwrap(), Activation::Gelu);
        assert_eq!(c.label(1), "LABEL_1");
    }

    #[test]
    fn errors_name_the_field() {
        let bad = [
            (r#"{"hidden_act": "gelu_42"}"#, "hidden_act"),
            (
                r#"{"position_embedding_type": "rotary"}"#,
                "position_embedding_type",
            ),
            (
                r#"{"hidden_size": 50, "num_attention_heads": 3}"#,
                "hidden_size",
            ),
            (r#"{"problem_type": "ranking"}"#, "problem_type"),
            (r#"{"vocab_size": 0}"#, "vocab_size"),
            (r#"{"id2label": {"7": "x"}}"#, "id2label"),
        ];
        for (json, field) in bad {
            match BertConfig::from_json(json) {
                Err(Error::Config { field: f, .. }) => assert_eq!(f, field, "{json}"),
                other => panic!("{json}: expected a config error, got {other:?}"),
            }
        }
    }

    #[test]
    fn labels_come_from_id2label() {
        let c =
            BertConfig::from_json(r#"{"id2label": {"0": "neg", "1": "neu", "2": "pos"}}"#).unwrap();
        assert_eq!(c.num_labels(), 3);
        assert_eq!(c.label(2), "pos");
    }
}
