//! The op vocabulary every backend implements.

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

/// One step of a plan. Row counts come from the plan's [`crate::graph::Shape`] unless
/// stated; no op writes a buffer it also reads.
#[derive(Debug, Clone)]
pub enum Op {
    /// out[t] = LayerNorm(word[id] + type[type_id] + position[past + i]) for every token t
    /// (the position term only with absolute positions).
    Embeddings {
        /// [vocab, hidden] word table.
        word: WeightId,
        /// [max_positions, hidden] table, absent for relative position types.
        position: Option<WeightId>,
        /// [type_vocab, hidden] token-type table.
        token_type: WeightId,
        /// LayerNorm scale.
        gamma: WeightId,
        /// LayerNorm shift.
        beta: WeightId,
        /// LayerNorm epsilon.
        eps: f32,
        /// [tokens, hidden] result.
        out: BufId,
    },
    /// out[rows, n] = act(x[rows, k] · wᵀ + b), with w stored [n, k] as in checkpoints.
    Linear {
        /// Input rows.
        x: BufId,
        /// [n, k] weight.
        w: WeightId,
        /// [n] bias.
        b: Option<WeightId>,
        /// Activation applied after the bias.
        act: Option<Activation>,
        /// Number of rows.
        rows: usize,
        /// Input width.
        k: usize,
        /// Output width.
        n: usize,
        /// Result rows.
        out: BufId,
    },
    /// out = LayerNorm(x + residual) row by row.
    LayerNorm {
        /// Input rows.
        x: BufId,
        /// Added to x before normalising.
        residual: Option<BufId>,
        /// Scale.
        gamma: WeightId,
        /// Shift.
        beta: WeightId,
        /// Epsilon.
        eps: f32,
        /// Number of rows.
        rows: usize,
        /// Row width.
        width: usize,
        /// Result.
        out: BufId,
    },
    /// Multi-head self-attention over a fused [tokens, 3 * hidden] Q|K|V buffer:
    /// softmax(Q Kᵀ / sqrt(d) + relative terms + mask) V, heads concatenated.
    /// With a key/value cache, this step's K and V are appended to layer `layer`'s cache
    /// and the queries attend over the whole cached prefix.
    Attention {
        /// [tokens, 3 * hidden] projections.
        qkv: BufId,
        /// [tokens, hidden] context.
        out: BufId,
        /// [batch, heads, seq, past + seq] post-softmax probabilities, when asked for.
        probs: Option<BufId>,
        /// Layer index (for the key/value cache).
        layer: usize,
        /// Number of heads.
        heads: usize,
        /// Width of one head.
        head_dim: usize,
        /// Causal masking (decoders): query i sees keys up to past + i.
        causal: bool,
        /// Relative-position terms.
        relative: Option<Relative>,
    },
    /// out[b] = x[b * seq]: the first (CLS) row of each sequence.
    GatherFirst {
        /// [tokens, width] rows.
        x: BufId,
        /// Row width.
        width: usize,
        /// [batch, width] result.
        out: BufId,
    },
}
