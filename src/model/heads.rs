//! The nine BERT heads: which modules each loads on top of the trunk, and which named
//! outputs it declares. Heads compose `BertModel`; they are not branches inside it.

use std::fmt;
use std::str::FromStr;

use super::bert::{BertModel, EncoderOutputs};
use super::modules::{Dense, LayerNorm};
use crate::config::{Activation, BertConfig};
use crate::error::{Error, Result};
use crate::graph::{op, PlanBuilder};
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

    /// The head over `t` rows of `x`.
    fn lower(
        &self,
        g: &mut PlanBuilder,
        x: crate::graph::BufId,
        t: usize,
        name: &str,
    ) -> crate::graph::BufId {
        let dense = self
            .transform
            .lower(g, "mlm.transform", x, t, Some(self.act));
        let normed = g.buf("mlm.norm", t * self.norm.width);
        self.norm.lower_into(g, dense, None, t, normed);
        self.decoder.lower(g, name, normed, t, None)
    }
}

/// `qa_outputs`, split into start and end rows at load.
#[derive(Debug, Clone, Copy)]
pub struct QaOutputs {
    /// Row 0 of qa_outputs.
    start: Dense,
    /// Row 1 of qa_outputs.
    end: Dense,
}

/// Every head module a checkpoint holds, each loaded once and shared by the heads that
/// use it (BertForPreTraining's prediction head also serves BertForMaskedLM).
#[derive(Debug, Clone, Default)]
pub struct HeadModules {
    /// `cls.predictions`.
    lm: Option<BertLmPredictionHead>,
    /// `cls.seq_relationship`.
    nsp: Option<Dense>,
    /// `classifier`, with the rows of the head it was loaded for.
    classifier: Option<(Head, Dense)>,
    /// `qa_outputs`.
    qa: Option<QaOutputs>,
}

/// What a head reads besides the trunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Module {
    Lm,
    Nsp,
    Classifier,
    Qa,
}

impl Head {
    /// Whether the head reads the pooled [CLS] state (BertModel returns it when the
    /// checkpoint has a pooler).
    pub fn needs_pooler(self) -> bool {
        matches!(
            self,
            Head::PreTraining
                | Head::NextSentence
                | Head::SequenceClassification
                | Head::MultipleChoice
        )
    }

    fn modules(self) -> &'static [Module] {
        match self {
            Head::Bert => &[],
            Head::PreTraining => &[Module::Lm, Module::Nsp],
            Head::LmHead | Head::MaskedLm => &[Module::Lm],
            Head::NextSentence => &[Module::Nsp],
            Head::SequenceClassification | Head::MultipleChoice | Head::TokenClassification => {
                &[Module::Classifier]
            }
            Head::QuestionAnswering => &[Module::Qa],
        }
    }

    /// Rows of the `classifier` weight for a classifier head.
    fn classifier_rows(self, c: &BertConfig) -> usize {
        match self {
            Head::MultipleChoice => 1,
            _ => c.num_labels(),
        }
    }
}

impl HeadModules {
    /// Loads the modules of `required` (their absence is an error) and every other
    /// module whose weights `vb` (the checkpoint root) holds. A classifier is loaded for
    /// `required` when it is a classifier head, else for the first classifier head the
    /// config's `architectures` names.
    pub fn load(
        required: Head,
        vb: &VarBuilder,
        c: &BertConfig,
        trunk: &BertModel,
    ) -> Result<Self> {
        let needed = |m: Module| required.modules().contains(&m);
        let cls = vb.pp("cls");
        let h = c.hidden_size;
        let mut modules = HeadModules::default();
        let word = trunk.embeddings.word;
        let lm_vb = cls.pp("predictions");
        if needed(Module::Lm) || lm_vb.pp("transform").pp("dense").contains("weight") {
            modules.lm = optional(
                needed(Module::Lm),
                BertLmPredictionHead::load(&lm_vb, c, word),
            )?;
        }
        let nsp_vb = cls.pp("seq_relationship");
        if needed(Module::Nsp) || nsp_vb.contains("weight") {
            modules.nsp = optional(needed(Module::Nsp), Dense::load(&nsp_vb, h, 2))?;
        }
        let classifier_head = match needed(Module::Classifier) {
            true => Some(required),
            false => c
                .architectures
                .iter()
                .flatten()
                .filter_map(|a| a.parse::<Head>().ok())
                .find(|h| h.modules() == [Module::Classifier]),
        };
        if let Some(head) = classifier_head {
            let vb = vb.pp("classifier");
            if needed(Module::Classifier) || vb.contains("weight") {
                let dense = Dense::load(&vb, h, head.classifier_rows(c));
                modules.classifier =
                    optional(needed(Module::Classifier), dense)?.map(|d| (head, d));
            }
        }
        let qa_vb = vb.pp("qa_outputs");
        if needed(Module::Qa) || qa_vb.contains("weight") || qa_vb.pp("start").contains("weight") {
            modules.qa = optional(needed(Module::Qa), QaOutputs::load(&qa_vb, c))?;
        }
        Ok(modules)
    }

    /// Whether the modules `head` reads were loaded (the pooler aside).
    pub fn has(&self, head: Head) -> bool {
        head.modules().iter().all(|m| match m {
            Module::Lm => self.lm.is_some(),
            Module::Nsp => self.nsp.is_some(),
            Module::Classifier => self.classifier.is_some_and(|(h, _)| h == head),
            Module::Qa => self.qa.is_some(),
        })
    }

    /// Appends `head`'s ops and declares its outputs with transformers' names and
    /// shapes (multiple choice: logits [examples, choices]).
    pub fn lower(
        &self,
        head: Head,
        g: &mut PlanBuilder,
        enc: &EncoderOutputs,
        hidden: usize,
    ) -> Result<()> {
        let s = g.shape();
        let (b, l, t) = (s.batch, s.seq, s.tokens());
        let missing = || Error::Internal(format!("{head} was planned without its modules"));
        let pooled = || enc.pooled.ok_or_else(missing);
        match head {
            Head::Bert => {
                g.output("last_hidden_state", enc.sequence, vec![b, l, hidden]);
                if let Some(p) = enc.pooled {
                    g.output("pooler_output", p, vec![b, hidden]);
                }
            }
            Head::PreTraining => {
                let (lm, nsp) = (self.lm.as_ref(), self.nsp);
                let (lm, nsp) = lm.zip(nsp).ok_or_else(missing)?;
                let logits = lm.lower(g, enc.sequence, t, "prediction_logits");
                g.output("prediction_logits", logits, vec![b, l, lm.decoder.n]);
                let nsp_logits = nsp.lower(g, "seq_relationship_logits", pooled()?, b, None);
                g.output("seq_relationship_logits", nsp_logits, vec![b, 2]);
            }
            Head::MaskedLm if s.selected.is_some() => {
                // Only the selected rows through the prediction head (fill-mask's masks).
                let lm = self.lm.as_ref().ok_or_else(missing)?;
                let n = s.selected.unwrap_or(0);
                let rows = g.buf("mlm.selected", n * hidden);
                g.op(op::GatherSelected {
                    x: enc.sequence,
                    width: hidden,
                    out: rows,
                });
                let logits = lm.lower(g, rows, n, "logits");
                g.output("logits", logits, vec![n, lm.decoder.n]);
            }
            Head::LmHead | Head::MaskedLm => {
                let lm = self.lm.as_ref().ok_or_else(missing)?;
                let logits = lm.lower(g, enc.sequence, t, "logits");
                g.output("logits", logits, vec![b, l, lm.decoder.n]);
            }
            Head::NextSentence => {
                let dense = self.nsp.ok_or_else(missing)?;
                let logits = dense.lower(g, "logits", pooled()?, b, None);
                g.output("logits", logits, vec![b, 2]);
            }
            Head::TokenClassification => {
                let (_, dense) = self.classifier.ok_or_else(missing)?;
                let logits = dense.lower(g, "logits", enc.sequence, t, None);
                g.output("logits", logits, vec![b, l, dense.n]);
            }
            Head::SequenceClassification => {
                let (_, dense) = self.classifier.ok_or_else(missing)?;
                let logits = dense.lower(g, "logits", pooled()?, b, None);
                g.output("logits", logits, vec![b, dense.n]);
            }
            Head::MultipleChoice => {
                // One score per (example, choice) sequence: [examples, choices].
                let (_, dense) = self.classifier.ok_or_else(missing)?;
                let logits = dense.lower(g, "logits", pooled()?, b, None);
                g.output("logits", logits, vec![s.examples(), s.choices]);
            }
            Head::QuestionAnswering => {
                let qa = self.qa.ok_or_else(missing)?;
                let s_logits = qa.start.lower(g, "start_logits", enc.sequence, t, None);
                let e_logits = qa.end.lower(g, "end_logits", enc.sequence, t, None);
                g.output("start_logits", s_logits, vec![b, l]);
                g.output("end_logits", e_logits, vec![b, l]);
            }
        }
        Ok(())
    }
}

impl QaOutputs {
    fn load(qa: &VarBuilder, c: &BertConfig) -> Result<Self> {
        if c.num_labels() != 2 {
            return Err(Error::config(
                "num_labels",
                format!(
                    "question answering needs 2 labels (start, end), found {}",
                    c.num_labels()
                ),
            ));
        }
        let h = c.hidden_size;
        let row = |i: usize, name: &str| -> Result<Dense> {
            let (w, b) = qa.row_of(name, i, 2, h)?;
            Ok(Dense {
                w,
                b: Some(b),
                k: h,
                n: 1,
            })
        };
        Ok(QaOutputs {
            start: row(0, "start")?,
            end: row(1, "end")?,
        })
    }
}

/// A module that must load (`required`) passes its error on; an optional one that does
/// not load is left out.
fn optional<T>(required: bool, loaded: Result<T>) -> Result<Option<T>> {
    match (loaded, required) {
        (Ok(m), _) => Ok(Some(m)),
        (Err(e), true) => Err(e),
        (Err(_), false) => Ok(None),
    }
}
