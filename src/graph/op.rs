//! The op vocabulary every backend implements.
//!
//! Each op is a struct of its own (the buffers it reads and writes, its weights and
//! sizes) wrapped by [`Op`], which knows every op's name, inputs and outputs, so that a
//! backend, a lowering or a profiler asks the op instead of taking it apart again.

use std::fmt;

use crate::config::{Activation, PositionEmbeddingType};
use crate::graph::BufId;
use crate::weights::WeightId;

/// Relative-position attention terms (transformers' `distance_embedding`).
#[derive(Debug, Clone, Copy)]
pub struct Relative {
    /// relative_key or relative_key_query.
    pub kind: PositionEmbeddingType,
    /// The [2 * max_positions - 1, head_dim] distance table.
    pub table: WeightId,
    /// `max_position_embeddings`: distance d reads row d + max_positions - 1.
    pub max_positions: usize,
}

/// out[t] = LayerNorm(word[id] + type[type_id] + position[past + i]) for every token t
/// (the position term only with absolute positions).
#[derive(Debug, Clone, Copy)]
pub struct Embeddings {
    /// [vocab, hidden] word table.
    pub word: WeightId,
    /// [max_positions, hidden] table, absent for relative position types.
    pub position: Option<WeightId>,
    /// [type_vocab, hidden] token-type table.
    pub token_type: WeightId,
    /// LayerNorm scale.
    pub gamma: WeightId,
    /// LayerNorm shift.
    pub beta: WeightId,
    /// LayerNorm epsilon.
    pub eps: f32,
    /// Row width.
    pub hidden: usize,
    /// [tokens, hidden] result.
    pub out: BufId,
}

/// out[rows, n] = act(x[rows, k] · wᵀ + b), with w stored [n, k] as in checkpoints.
#[derive(Debug, Clone, Copy)]
pub struct Linear {
    /// Input rows.
    pub x: BufId,
    /// [n, k] weight.
    pub w: WeightId,
    /// [n] bias.
    pub b: Option<WeightId>,
    /// Activation applied after the bias.
    pub act: Option<Activation>,
    /// Number of rows.
    pub rows: usize,
    /// Input width.
    pub k: usize,
    /// Output width.
    pub n: usize,
    /// Result rows.
    pub out: BufId,
}

/// out = LayerNorm(x + residual) row by row.
#[derive(Debug, Clone, Copy)]
pub struct LayerNorm {
    /// Input rows.
    pub x: BufId,
    /// Added to x before normalising.
    pub residual: Option<BufId>,
    /// Scale.
    pub gamma: WeightId,
    /// Shift.
    pub beta: WeightId,
    /// Epsilon.
    pub eps: f32,
    /// Number of rows.
    pub rows: usize,
    /// Row width.
    pub width: usize,
    /// Result.
    pub out: BufId,
}

/// Multi-head self-attention over a fused [tokens, 3 * hidden] Q|K|V buffer:
/// softmax(Q Kᵀ / sqrt(d) + relative terms + mask) V, heads concatenated.
/// With a key/value cache, this step's K and V are appended to layer `layer`'s cache
/// and the queries attend over the whole cached prefix.
#[derive(Debug, Clone, Copy)]
pub struct Attention {
    /// [tokens, 3 * hidden] projections.
    pub qkv: BufId,
    /// [tokens, hidden] context.
    pub out: BufId,
    /// [batch, heads, seq, past + seq] post-softmax probabilities, when asked for.
    pub probs: Option<BufId>,
    /// Layer index (for the key/value cache).
    pub layer: usize,
    /// Number of heads.
    pub heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Causal masking (decoders): query i sees keys up to past + i.
    pub causal: bool,
    /// Relative-position terms.
    pub relative: Option<Relative>,
}

/// out[b] = x[b * seq]: the first (CLS) row of each sequence.
#[derive(Debug, Clone, Copy)]
pub struct GatherFirst {
    /// [tokens, width] rows.
    pub x: BufId,
    /// Row width.
    pub width: usize,
    /// [batch, width] result.
    pub out: BufId,
}

/// out[i] = x[rows[i]]: the token rows the batch selects (`Batch::with_selected`), as
/// many as the plan's `Shape::selected`.
#[derive(Debug, Clone, Copy)]
pub struct GatherSelected {
    /// [tokens, width] rows.
    pub x: BufId,
    /// Row width.
    pub width: usize,
    /// [selected, width] result.
    pub out: BufId,
}

/// One step of a plan. Row counts come from the plan's [`crate::graph::Shape`] unless
/// stated; no op writes a buffer it also reads.
#[derive(Debug, Clone, Copy)]
pub enum Op {
    /// Embedding gathers and their LayerNorm.
    Embeddings(Embeddings),
    /// A dense layer.
    Linear(Linear),
    /// (Residual +) LayerNorm.
    LayerNorm(LayerNorm),
    /// Self-attention over fused projections.
    Attention(Attention),
    /// Each sequence's first row.
    GatherFirst(GatherFirst),
    /// The rows the batch selects.
    GatherSelected(GatherSelected),
}

impl Op {
    /// The op's kind, as messages and profiles name it.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Embeddings(_) => "embeddings",
            Op::Linear(_) => "linear",
            Op::LayerNorm(_) => "layer norm",
            Op::Attention(_) => "attention",
            Op::GatherFirst(_) => "gather first",
            Op::GatherSelected(_) => "gather selected",
        }
    }

    /// The buffers the op reads, main input first.
    pub fn inputs(&self) -> impl Iterator<Item = BufId> {
        let bufs = match *self {
            Op::Embeddings(_) => [None, None],
            Op::Linear(l) => [Some(l.x), None],
            Op::LayerNorm(n) => [Some(n.x), n.residual],
            Op::Attention(a) => [Some(a.qkv), None],
            Op::GatherFirst(g) => [Some(g.x), None],
            Op::GatherSelected(g) => [Some(g.x), None],
        };
        bufs.into_iter().flatten()
    }

    /// The buffers the op writes, its main result first (attention's probabilities
    /// second, when asked for).
    pub fn outputs(&self) -> impl Iterator<Item = BufId> {
        let bufs = match *self {
            Op::Embeddings(e) => [Some(e.out), None],
            Op::Linear(l) => [Some(l.out), None],
            Op::LayerNorm(n) => [Some(n.out), None],
            Op::Attention(a) => [Some(a.out), a.probs],
            Op::GatherFirst(g) => [Some(g.out), None],
            Op::GatherSelected(g) => [Some(g.out), None],
        };
        bufs.into_iter().flatten()
    }

    /// The op's main result.
    pub fn output(&self) -> BufId {
        match *self {
            Op::Embeddings(Embeddings { out, .. })
            | Op::Linear(Linear { out, .. })
            | Op::LayerNorm(LayerNorm { out, .. })
            | Op::Attention(Attention { out, .. })
            | Op::GatherFirst(GatherFirst { out, .. })
            | Op::GatherSelected(GatherSelected { out, .. }) => out,
        }
    }
}

/// The op's kind and the sizes that matter for its speed (`linear 384->1536 + Gelu`).
impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Embeddings(e) => write!(f, "embeddings {}", e.hidden),
            Op::Linear(l) => match l.act {
                Some(a) => write!(f, "linear {}->{} + {a:?}", l.k, l.n),
                None => write!(f, "linear {}->{}", l.k, l.n),
            },
            Op::LayerNorm(n) => match n.residual {
                Some(_) => write!(f, "residual + layer norm {}", n.width),
                None => write!(f, "layer norm {}", n.width),
            },
            Op::Attention(a) => write!(f, "attention {}x{}", a.heads, a.head_dim),
            Op::GatherFirst(g) => write!(f, "gather first {}", g.width),
            Op::GatherSelected(g) => write!(f, "gather selected {}", g.width),
        }
    }
}

/// `Op::X(op)` from each op struct `X`.
macro_rules! op_from {
    ($($kind:ident),*) => {
        $(impl From<$kind> for Op {
            fn from(op: $kind) -> Op {
                Op::$kind(op)
            }
        })*
    };
}

op_from!(
    Embeddings,
    Linear,
    LayerNorm,
    Attention,
    GatherFirst,
    GatherSelected
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_name_their_buffers() {
        let attention = Op::Attention(Attention {
            qkv: BufId(0),
            out: BufId(1),
            probs: Some(BufId(2)),
            layer: 0,
            heads: 2,
            head_dim: 4,
            causal: false,
            relative: None,
        });
        assert_eq!(attention.inputs().collect::<Vec<_>>(), [BufId(0)]);
        assert_eq!(
            attention.outputs().collect::<Vec<_>>(),
            [BufId(1), BufId(2)]
        );
        assert_eq!(attention.output(), BufId(1));
        assert_eq!(attention.to_string(), "attention 2x4");
        let norm = Op::LayerNorm(LayerNorm {
            x: BufId(3),
            residual: Some(BufId(4)),
            gamma: WeightId(0),
            beta: WeightId(1),
            eps: 1e-12,
            rows: 1,
            width: 8,
            out: BufId(5),
        });
        assert_eq!(norm.inputs().collect::<Vec<_>>(), [BufId(3), BufId(4)]);
        assert_eq!(norm.outputs().collect::<Vec<_>>(), [BufId(5)]);
        assert_eq!(norm.name(), "layer norm");
        assert_eq!(norm.to_string(), "residual + layer norm 8");
    }
}
