//! embeddings.cu: out[t] = LayerNorm(word[id] + token_type[type] + position[position]) for
//! every token row, gather, sum and normalisation in one kernel.

use super::{f32_and_f16, int, launch_args, row_geometry, Ctx, Kernel};
use crate::backend::cuda::gpu::{DevPtr, Dtype, Gpu};
use crate::error::Result;
use crate::graph::op;

/// `embeddings_{f32,f16}`.
pub const KERNEL: Kernel = f32_and_f16!("embeddings");

/// Device addresses of one launch: the leading fields of embeddings.cu's
/// `EmbeddingsArgs`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Buffers {
    /// [tokens] i32 token ids.
    pub ids: DevPtr,
    /// [tokens] i32 token types.
    pub type_ids: DevPtr,
    /// [tokens] i32 positions.
    pub positions: DevPtr,
    /// [vocab, hidden] word table.
    pub word: DevPtr,
    /// [max_positions, hidden] table, 0 for relative position types.
    pub position: DevPtr,
    /// [type_vocab, hidden] token-type table.
    pub token_type: DevPtr,
    /// [hidden] LayerNorm scale.
    pub gamma: DevPtr,
    /// [hidden] LayerNorm shift.
    pub beta: DevPtr,
    /// [tokens, hidden] result.
    pub out: DevPtr,
}

/// Sizes of one launch.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// Token rows.
    pub tokens: usize,
    /// Row width.
    pub hidden: usize,
    /// LayerNorm epsilon.
    pub eps: f32,
}

/// `EmbeddingsArgs`.
#[repr(C)]
struct Args {
    bufs: Buffers,
    tokens: i32,
    hidden: i32,
    eps: f32,
}

/// One block of [`row_threads`] per token, the summed row in shared memory (f32).
///
/// # Safety
/// Every id, type and position must index its table; each buffer holds what the
/// [`Buffers`] field says for `spec`.
pub unsafe fn launch<G: Gpu>(gpu: &G, dtype: Dtype, bufs: &Buffers, spec: &Spec) -> Result<()> {
    let g = row_geometry(spec.tokens, spec.hidden, dtype)?;
    let args = Args {
        bufs: *bufs,
        tokens: int(spec.tokens, "tokens")?,
        hidden: int(spec.hidden, "hidden")?,
        eps: spec.eps,
    };
    // SAFETY: the caller vouches for the buffers; `args` is EmbeddingsArgs.
    unsafe { launch_args(gpu, KERNEL.entry(dtype)?, g, &args) }
}

/// `Step::Embeddings`: every token row of the call from the inputs region.
pub(in crate::backend::cuda) fn step<G: Gpu>(cx: &Ctx<G>, e: &op::Embeddings) -> Result<()> {
    let bufs = Buffers {
        ids: cx.inputs.ids,
        type_ids: cx.inputs.type_ids,
        positions: cx.inputs.positions,
        word: cx.w(e.word),
        position: cx.opt_w(e.position),
        token_type: cx.w(e.token_type),
        gamma: cx.w(e.gamma),
        beta: cx.w(e.beta),
        out: cx.buf(e.out),
    };
    let spec = Spec {
        tokens: cx.tokens.rows,
        hidden: e.hidden,
        eps: e.eps,
    };
    // SAFETY: the inputs hold `rows` validated ids, types and positions (Ctx), the
    // weights are whole tables and `out` holds rows * hidden elements.
    unsafe { launch(cx.gpu, cx.dtype, &bufs, &spec) }
}
