//! The nine BERT heads: which modules each loads on top of the trunk, and which named
//! outputs it declares. Heads compose `BertModel`; they are not branches inside it.

use std::fmt;
use std::str::FromStr;

use super::bert::{BertModel, EncoderOutputs};
use super::modules::{Dense, LayerNorm};
use crate::config::{Activation, BertConfig};
use crate::error::{Error, Result};
use crate::graph::PlanBuilder;
use crate::weights::{VarBuilder, WeightId};

/// Which Hugging Face model class to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Head {
    /// BertModel: last_hidden_state, pooler_output.
    Bert,
    /// BertForPreTraining: prediction_logits, seq_relationship_logits.
    PreTraining,
    /// BertLMHeadModel: logits (causal when is_decoder).
    LmHead,
    /// BertForMaskedLM: logits.
    MaskedLm,
    /// BertForNextSentencePrediction: logits [batch, 2].
    NextSentence,
    /// BertForSequenceClassification: logits [batch, num_labels].
    SequenceClassification,
    /// BertForMultipleChoice: logits [batch, choices].
    MultipleChoice,
    /// BertForTokenClassification: logits [batch, seq, num_labels].
    TokenClassification,
    /// BertForQuestionAnswering: start_logits, end_logits.
    QuestionAnswering,
}

const HEADS: [(Head, &str, &str); 9] = [
    (Head::Bert, "bert", "BertModel"),
    (Head::PreTraining, "pretraining", "BertForPreTraining"),
    (Head::LmHead, "lm", "BertLMHeadModel"),
    (Head::MaskedLm, "mlm", "BertForMaskedLM"),
    (Head::NextSentence, "nsp", "BertForNextSentencePrediction"),
    (
        Head::SequenceClassification,
        "seq-cls",
        "BertForSequenceClassification",
    ),
    (
        Head::MultipleChoice,
        "multiple-choice",
        "BertForMultipleChoice",
    ),
    (
        Head::TokenClassification,
        "token-cls",
        "BertForTokenClassification",
    ),
    (Head::QuestionAnswering, "qa", "BertForQuestionAnswering"),
];

impl Head {
    /// Every head.
    pub fn all() -> impl Iterator<Item = Head> {
        HEADS.iter().map(|&(h, _, _)| h)
    }

    /// The short CLI name (`mlm`, `seq-cls`, ...).
    pub fn short_name(self) -> &'static str {
        HEADS.iter().find(|e| e.0 == self).map_or("", |e| e.1)
    }

    /// The Hugging Face class name.
    pub fn class_name(self) -> &'static str {
        HEADS.iter().find(|e| e.0 == self).map_or("", |e| e.2)
    }

    /// The head a config's `architectures[0]` names; BertModel when absent.
    pub fn from_config(c: &BertConfig) -> Result<Head> {
        match c.architectures.as_ref().and_then(|a| a.first()) {
            None => Ok(Head::Bert),
            Some(name) => name.parse().map_err(|_| {
                Error::config(
                    "architectures",
                    format!("{name:?} is not a BERT head bertrt knows; pick one with --head"),
                )
            }),
        }
    }
}

impl fmt::Display for Head {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.class_name())
    }
}

impl FromStr for Head {
    type Err = Error;

    /// Accepts the short name or the Hugging Face class name.
    fn from_str(s: &str) -> Result<Head> {
        HEADS
            .iter()
            .find(|e| e.1 == s || e.2 == s)
            .map(|e| e.0)
            .ok_or_else(|| {
                let names: Vec<&str> = HEADS.iter().map(|e| e.1).collect();
                Error::Unsupported(format!(
                    "unknown head {s:?}; expected one of {} or a Hugging Face class name",
                    names.join(", ")
                ))
            })
    }
}

/// `cls.predictions`: transform (dense, activation, LayerNorm) and the vocabulary decoder.
#[derive(Debug, Clone)]
pub struct BertLmPredictionHead {
    transform: Dense,
    act: Activation,
    norm: LayerNorm,
    decoder: Dense,
}

impl BertLmPredictionHead {
    /// Loads the head; the decoder weight is the word-embedding table when tied.
    pub fn load(vb: &VarBuilder, c: &BertConfig, word_embeddings: WeightId) -> Result<Self> {
        let (h, v) = (c.hidden_size, c.vocab_size);
        let t = vb.pp("transform");
        let decoder_weight = match c.tie_word_embeddings {
            true => word_embeddings,
            false => vb.pp("decoder").get("weight", &[v, h])?,
        };
        let bias = match vb.contains("bias") {
            true => vb.get("bias", &[v])?,
            false => vb.pp("decoder").get("bias", &[v])?,
        };
        Ok(BertLmPredictionHead {
            transform: Dense::load(&t.pp("dense"), h, h)?,
            act: c.activation()?,
            norm: LayerNorm::load(&t.pp("LayerNorm"), h, c.layer_norm_eps)?,
            decoder: Dense {
                w: decoder_weight,
                b: Some(bias),
                k: h,
                n: v,
            },
        })
    }

    fn lower(
        &self,
        g: &mut PlanBuilder,
        x: crate::graph::BufId,
        name: &str,
    ) -> crate::graph::BufId {
        let t = g.shape().tokens();
        let dense = self
            .transform
            .lower(g, "mlm.transform", x, t, Some(self.act));
        let normed = g.buf("mlm.norm", t * self.norm.width);
        self.norm.lower_into(g, dense, None, t, normed);
        self.decoder.lower(g, name, normed, t, None)
    }
}

/// The modules a head adds on top of the trunk.
#[derive(Debug, Clone)]
pub enum HeadModules {
    /// BertModel.
    Bert,
    /// BertForPreTraining.
    PreTraining {
        /// Masked-LM predictions.
        lm: BertLmPredictionHead,
        /// Next-sentence classifier.
        nsp: Dense,
    },
    /// BertLMHeadModel or BertForMaskedLM.
    Lm(BertLmPredictionHead),
    /// BertForNextSentencePrediction.
    NextSentence(Dense),
    /// Sequence, multiple-choice or token classification.
    Classifier(Dense),
    /// BertForQuestionAnswering, split into start and end rows at load.
    QuestionAnswering {
        /// Row 0 of qa_outputs.
        start: Dense,
        /// Row 1 of qa_outputs.
        end: Dense,
    },
}

impl HeadModules {
    /// Whether `head` runs the pooler.
    pub fn needs_pooler(head: Head) -> bool {
        matches!(
            head,
            Head::PreTraining
                | Head::NextSentence
                | Head::SequenceClassification
                | Head::MultipleChoice
        )
    }

    /// Loads the head's modules from the checkpoint root `vb`.
    pub fn load(head: Head, vb: &VarBuilder, c: &BertConfig, trunk: &BertModel) -> Result<Self> {
        let h = c.hidden_size;
        let word = trunk.embeddings.word;
        Ok(match head {
            Head::Bert => HeadModules::Bert,
            Head::PreTraining => HeadModules::PreTraining {
                lm: BertLmPredictionHead::load(&vb.pp("cls").pp("predictions"), c, word)?,
                nsp: Dense::load(&vb.pp("cls").pp("seq_relationship"), h, 2)?,
            },
            Head::LmHead | Head::MaskedLm => HeadModules::Lm(BertLmPredictionHead::load(
                &vb.pp("cls").pp("predictions"),
                c,
                word,
            )?),
            Head::NextSentence => {
                HeadModules::NextSentence(Dense::load(&vb.pp("cls").pp("seq_relationship"), h, 2)?)
            }
            Head::SequenceClassification | Head::TokenClassification => {
                HeadModules::Classifier(Dense::load(&vb.pp("classifier"), h, c.num_labels())?)
            }
            Head::MultipleChoice => {
                HeadModules::Classifier(Dense::load(&vb.pp("classifier"), h, 1)?)
            }
            Head::QuestionAnswering => {
                if c.num_labels() != 2 {
                    return Err(Error::config(
                        "num_labels",
                        format!(
                            "question answering needs 2 labels (start, end), found {}",
                            c.num_labels()
                        ),
                    ));
                }
                let qa = vb.pp("qa_outputs");
                let row = |i: usize, name: &str| -> Result<Dense> {
                    let (w, b) = qa.row_of(name, i, 2, h)?;
                    Ok(Dense {
                        w,
                        b: Some(b),
                        k: h,
                        n: 1,
                    })
                };
                HeadModules::QuestionAnswering {
                    start: row(0, "start")?,
                    end: row(1, "end")?,
                }
            }
        })
    }

    /// Appends the head ops and declares its outputs with transformers' names and shapes.
    pub fn lower(&self, head: Head, g: &mut PlanBuilder, enc: &EncoderOutputs, hidden: usize) {
        let s = g.shape();
        let (b, l, t) = (s.batch, s.seq, s.tokens());
        let pooled = enc.pooled;
        match self {
            HeadModules::Bert => {
                g.output("last_hidden_state", enc.sequence, vec![b, l, hidden]);
                if let Some(p) = pooled {
                    g.output("pooler_output", p, vec![b, hidden]);
                }
            }
            HeadModules::PreTraining { lm, nsp } => {
                let logits = lm.lower(g, enc.sequence, "prediction_logits");
                g.output("prediction_logits", logits, vec![b, l, lm.decoder.n]);
                if let Some(p) = pooled {
                    let nsp_logits = nsp.lower(g, "seq_relationship_logits", p, b, None);
                    g.output("seq_relationship_logits", nsp_logits, vec![b, 2]);
                }
            }
            HeadModules::Lm(lm) => {
                let logits = lm.lower(g, enc.sequence, "logits");
                g.output("logits", logits, vec![b, l, lm.decoder.n]);
            }
            HeadModules::NextSentence(dense) => {
                if let Some(p) = pooled {
                    let logits = dense.lower(g, "logits", p, b, None);
                    g.output("logits", logits, vec![b, 2]);
                }
            }
            HeadModules::Classifier(dense) => match head {
                Head::TokenClassification => {
                    let logits = dense.lower(g, "logits", enc.sequence, t, None);
                    g.output("logits", logits, vec![b, l, dense.n]);
                }
                _ => {
                    if let Some(p) = pooled {
                        let logits = dense.lower(g, "logits", p, b, None);
                        // Multiple choice: [batch * choices, 1] read back as [batch, choices]
                        // by the model, which knows the grouping.
                        g.output("logits", logits, vec![b, dense.n]);
                    }
                }
            },
            HeadModules::QuestionAnswering { start, end } => {
                let s_logits = start.lower(g, "start_logits", enc.sequence, t, None);
                let e_logits = end.lower(g, "end_logits", enc.sequence, t, None);
                g.output("start_logits", s_logits, vec![b, l]);
                g.output("end_logits", e_logits, vec![b, l]);
            }
        }
    }
}
