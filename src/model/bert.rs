//! `BertModel`: embeddings, encoder and the optional pooler, lowered into a plan.

use super::embeddings::BertEmbeddings;
use super::heads::Head;
use super::layer::{BertLayer, LayerScratch};
use super::modules::Dense;
use crate::config::{Activation, BertConfig};
use crate::error::Result;
use crate::graph::{op, BufId, PlanBuilder};
use crate::weights::VarBuilder;

/// Which head runs, and what the caller wants besides its outputs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ForwardOptions {
    /// The head to run; None for the model's default head ([`crate::Model::head`]).
    pub head: Option<Head>,
    /// Return the embedding output and every layer's output (`hidden_states`).
    pub output_hidden_states: bool,
    /// Return every layer's post-softmax attention probabilities (`attentions`).
    pub output_attentions: bool,
}

impl ForwardOptions {
    /// The defaults, running `head`.
    pub fn head(head: Head) -> Self {
        ForwardOptions {
            head: Some(head),
            ..Default::default()
        }
    }
}

/// Buffers a lowered `BertModel` leaves for the heads.
#[derive(Debug, Clone)]
pub struct EncoderOutputs {
    /// [tokens, hidden] final hidden states.
    pub sequence: BufId,
    /// [batch, hidden] pooled CLS states, if the model has a pooler.
    pub pooled: Option<BufId>,
    /// Embedding output, then each layer's output (when asked for).
    pub hidden_states: Vec<BufId>,
    /// Each layer's attention probabilities (when asked for).
    pub attentions: Vec<BufId>,
}

/// The BERT trunk.
#[derive(Debug, Clone)]
pub struct BertModel {
    /// The embeddings (heads tie to its word table).
    pub embeddings: BertEmbeddings,
    layers: Vec<BertLayer>,
    pooler: Option<Dense>,
    hidden: usize,
    intermediate: usize,
    heads: usize,
}

impl BertModel {
    /// Loads `embeddings`, `encoder.layer.{i}` and `pooler.dense`: the pooler when the
    /// checkpoint holds it, or always (its absence an error) when `pooler` is true.
    pub fn load(vb: &VarBuilder, c: &BertConfig, pooler: bool) -> Result<Self> {
        let layers = (0..c.num_hidden_layers)
            .map(|i| BertLayer::load(&vb.pp("encoder").pp("layer").pp(i), c))
            .collect::<Result<Vec<_>>>()?;
        let h = c.hidden_size;
        Ok(BertModel {
            embeddings: BertEmbeddings::load(&vb.pp("embeddings"), c)?,
            layers,
            pooler: match pooler || Self::holds_pooler(vb) {
                true => Some(Dense::load(&vb.pp("pooler").pp("dense"), h, h)?),
                false => None,
            },
            hidden: h,
            intermediate: c.intermediate_size,
            heads: c.num_attention_heads,
        })
    }

    fn holds_pooler(vb: &VarBuilder) -> bool {
        vb.pp("pooler").pp("dense").contains("weight")
    }

    /// Whether the pooler was loaded.
    pub fn has_pooler(&self) -> bool {
        self.pooler.is_some()
    }

    /// Appends the whole trunk, and the pooler when `pooled` and loaded. Scratch buffers
    /// are shared by all layers; layer outputs get their own buffers only when hidden
    /// states are returned.
    pub fn lower(&self, g: &mut PlanBuilder, opts: ForwardOptions, pooled: bool) -> EncoderOutputs {
        let shape = g.shape();
        let (t, h) = (shape.tokens(), self.hidden);
        let scratch = LayerScratch {
            qkv: g.buf("qkv", t * 3 * h),
            context: g.buf("context", t * h),
            dense: g.buf("dense", t * h),
            attention: g.buf("attention_out", t * h),
            intermediate: g.buf("intermediate", t * self.intermediate),
        };
        let mut x = g.buf("embeddings", t * h);
        self.embeddings.lower_into(g, x);
        let mut hidden_states = Vec::new();
        let mut attentions = Vec::new();
        if opts.output_hidden_states {
            hidden_states.push(x);
        }
        for (i, layer) in self.layers.iter().enumerate() {
            let probs = opts.output_attentions.then(|| {
                g.buf(
                    format!("layer.{i}.attentions"),
                    shape.batch * self.heads * shape.seq * shape.keys(),
                )
            });
            let out = match opts.output_hidden_states {
                true => g.buf(format!("layer.{i}.out"), t * h),
                false => x,
            };
            layer.lower(g, i, x, out, &scratch, probs);
            x = out;
            hidden_states.extend(opts.output_hidden_states.then_some(out));
            attentions.extend(probs);
        }
        let pooled = self.pooler.filter(|_| pooled).map(|dense| {
            let cls = g.buf("pooler.cls", shape.batch * h);
            g.op(op::GatherFirst {
                x,
                width: h,
                out: cls,
            });
            dense.lower(g, "pooler_output", cls, shape.batch, Some(Activation::Tanh))
        });
        EncoderOutputs {
            sequence: x,
            pooled,
            hidden_states,
            attentions,
        }
    }
}
