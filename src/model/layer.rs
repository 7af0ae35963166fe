//! `BertLayer` and its parts: self-attention (Q, K, V fused into one projection at load),
//! attention output, intermediate and output, as transformers names them.

use super::modules::{Dense, LayerNorm};
use crate::config::{Activation, BertConfig, PositionEmbeddingType};
use crate::error::Result;
use crate::graph::{op, BufId, PlanBuilder, Relative};
use crate::weights::VarBuilder;

/// `attention.self`: the fused Q|K|V projection and the optional relative-distance table.
#[derive(Debug, Clone)]
pub struct BertSelfAttention {
    qkv: Dense,
    heads: usize,
    head_dim: usize,
    causal: bool,
    relative: Option<Relative>,
}

impl BertSelfAttention {
    /// Loads `query`, `key`, `value` fused into one [3 * hidden, hidden] weight.
    pub fn load(vb: &VarBuilder, c: &BertConfig) -> Result<Self> {
        let h = c.hidden_size;
        let (w, b) = vb.fused("qkv", &["query", "key", "value"], h, h)?;
        let qkv = Dense {
            w,
            b: Some(b),
            k: h,
            n: 3 * h,
        };
        let kind = c.position_type()?;
        let relative = match kind {
            PositionEmbeddingType::Absolute => None,
            _ => Some(Relative {
                kind,
                table: vb
                    .pp("distance_embedding")
                    .get("weight", &[2 * c.max_position_embeddings - 1, c.head_dim()])?,
                max_positions: c.max_position_embeddings,
            }),
        };
        Ok(BertSelfAttention {
            qkv,
            heads: c.num_attention_heads,
            head_dim: c.head_dim(),
            causal: c.is_decoder,
            relative,
        })
    }
}

/// Scratch buffers one layer uses; shared by all layers of a plan.
#[derive(Debug, Clone, Copy)]
pub struct LayerScratch {
    /// [tokens, 3 * hidden].
    pub qkv: BufId,
    /// [tokens, hidden] attention context.
    pub context: BufId,
    /// [tokens, hidden] dense output before a LayerNorm.
    pub dense: BufId,
    /// [tokens, hidden] attention block output.
    pub attention: BufId,
    /// [tokens, intermediate].
    pub intermediate: BufId,
}

/// One transformer layer.
#[derive(Debug, Clone)]
pub struct BertLayer {
    attention: BertSelfAttention,
    attention_output: Dense,
    attention_norm: LayerNorm,
    intermediate: Dense,
    act: Activation,
    output: Dense,
    output_norm: LayerNorm,
}

impl BertLayer {
    /// Loads `attention.self`, `attention.output`, `intermediate` and `output`.
    pub fn load(vb: &VarBuilder, c: &BertConfig) -> Result<Self> {
        let (h, i) = (c.hidden_size, c.intermediate_size);
        let att = vb.pp("attention");
        Ok(BertLayer {
            attention: BertSelfAttention::load(&att.pp("self"), c)?,
            attention_output: Dense::load(&att.pp("output").pp("dense"), h, h)?,
            attention_norm: LayerNorm::load(
                &att.pp("output").pp("LayerNorm"),
                h,
                c.layer_norm_eps,
            )?,
            intermediate: Dense::load(&vb.pp("intermediate").pp("dense"), h, i)?,
            act: c.activation()?,
            output: Dense::load(&vb.pp("output").pp("dense"), i, h)?,
            output_norm: LayerNorm::load(&vb.pp("output").pp("LayerNorm"), h, c.layer_norm_eps)?,
        })
    }

    /// Appends the layer: `x` -> `out` (which may be `x`'s buffer), using `s` for
    /// intermediates; attention probabilities go to `probs` when given.
    pub fn lower(
        &self,
        g: &mut PlanBuilder,
        index: usize,
        x: BufId,
        out: BufId,
        s: &LayerScratch,
        probs: Option<BufId>,
    ) {
        let t = g.shape().tokens();
        let a = &self.attention;
        a.qkv.lower_into(g, x, t, None, s.qkv);
        g.op(op::Attention {
            qkv: s.qkv,
            out: s.context,
            probs,
            layer: index,
            heads: a.heads,
            head_dim: a.head_dim,
            causal: a.causal,
            relative: a.relative,
        });
        self.attention_output
            .lower_into(g, s.context, t, None, s.dense);
        self.attention_norm
            .lower_into(g, s.dense, Some(x), t, s.attention);
        self.intermediate
            .lower_into(g, s.attention, t, Some(self.act), s.intermediate);
        self.output.lower_into(g, s.intermediate, t, None, s.dense);
        self.output_norm
            .lower_into(g, s.dense, Some(s.attention), t, out);
    }
}
