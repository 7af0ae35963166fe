//! pooler.cu: each sequence's first (CLS) row, out[b] = x[cu_seqlens[b]]; BertPooler's
//! dense GEMM reads the rows and bias_act adds its bias and tanh.

use super::{f32_and_f16, geometry, int, launch_args, Ctx, Kernel};
use crate::backend::cuda::gpu::{DevPtr, Dtype, Gpu};
use crate::error::Result;
use crate::graph::op;

/// `gather_cls_{f32,f16}`.
pub const KERNEL: Kernel = f32_and_f16!("gather_cls");

/// Device addresses of one launch: the leading fields of pooler.cu's `GatherClsArgs`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Buffers {
    /// [tokens, width] rows.
    pub x: DevPtr,
    /// [batch + 1] i32 first row of each sequence.
    pub cu_seqlens: DevPtr,
    /// [batch, width] result.
    pub out: DevPtr,
}

/// Sizes of one launch.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// Sequences.
    pub batch: usize,
    /// Row width.
    pub width: usize,
}

/// `GatherClsArgs`.
#[repr(C)]
struct Args {
    bufs: Buffers,
    batch: i32,
    width: i32,
}

/// One block of 128 threads per sequence.
///
/// # Safety
/// Each buffer holds what the [`Buffers`] field says for `spec`, and the rows that
/// `cu_seqlens` names lie in `x`.
pub unsafe fn launch<G: Gpu>(gpu: &G, dtype: Dtype, bufs: &Buffers, spec: &Spec) -> Result<()> {
    let g = geometry([spec.batch, 1, 1], 128, 0)?;
    let args = Args {
        bufs: *bufs,
        batch: int(spec.batch, "batch")?,
        width: int(spec.width, "width")?,
    };
    // SAFETY: the caller vouches for the buffers; `args` is GatherClsArgs.
    unsafe { launch_args(gpu, KERNEL.entry(dtype)?, g, &args) }
}

/// `Step::Gather`.
pub(in crate::backend::cuda) fn step<G: Gpu>(cx: &Ctx<G>, g: &op::GatherFirst) -> Result<()> {
    let bufs = Buffers {
        x: cx.buf(g.x),
        cu_seqlens: cx.inputs.cu_seqlens,
        out: cx.buf(g.out),
    };
    let spec = Spec {
        batch: cx.tokens.batch,
        width: g.width,
    };
    // SAFETY: cu_seqlens names rows of x (token rows of the call); out holds batch rows
    // of width (Ctx).
    unsafe { launch(cx.gpu, cx.dtype, &bufs, &spec) }
}
