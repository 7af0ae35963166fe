//! bias_act.cu: out = act(x + bias) over [rows, n], in place or not: a dense layer's
//! epilogue when no later kernel takes it (the feed-forward intermediate, the pooler).

use super::{act_code, f32_and_f16, geometry, int, launch_args, Ctx, Kernel};
use crate::backend::cuda::gpu::{DevPtr, Dtype, Gpu};
use crate::backend::cuda::lower::Kind;
use crate::config::Activation;
use crate::error::Result;
use crate::graph::op;

/// `bias_act_{f32,f16}`.
pub const KERNEL: Kernel = f32_and_f16!("bias_act");

/// Blocks of a launch on the GPU (a grid-stride loop covers the rest).
pub const MAX_BLOCKS: u32 = 1024;

/// Threads per block.
const THREADS: u32 = 256;

/// Device addresses of one launch: the leading fields of bias_act.cu's `BiasActArgs`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Buffers {
    /// [rows, n] input.
    pub x: DevPtr,
    /// [n] bias, or 0.
    pub bias: DevPtr,
    /// [rows, n] result (may be `x`).
    pub out: DevPtr,
}

/// Sizes and options of one launch.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// Rows.
    pub rows: usize,
    /// Row width.
    pub n: usize,
    /// Applied after the bias.
    pub act: Option<Activation>,
    /// Most blocks to launch: [`MAX_BLOCKS`] in the backend; tests lower it to turn the
    /// grid-stride loop.
    pub max_blocks: u32,
}

/// `BiasActArgs`.
#[repr(C)]
struct Args {
    bufs: Buffers,
    rows: i32,
    n: i32,
    act: i32,
}

/// Blocks of 256 threads, one 16-byte pack per thread, at most `spec.max_blocks`.
///
/// # Safety
/// Each buffer holds what the [`Buffers`] field says for `spec`.
pub unsafe fn launch<G: Gpu>(gpu: &G, dtype: Dtype, bufs: &Buffers, spec: &Spec) -> Result<()> {
    let packs = (spec.rows * spec.n).div_ceil(16 / dtype.size());
    let blocks = packs
        .div_ceil(THREADS as usize)
        .clamp(1, spec.max_blocks.max(1) as usize);
    let g = geometry([blocks, 1, 1], THREADS, 0)?;
    let args = Args {
        bufs: *bufs,
        rows: int(spec.rows, "rows")?,
        n: int(spec.n, "width")?,
        act: act_code(spec.act),
    };
    // SAFETY: the caller vouches for the buffers; `args` is BiasActArgs.
    unsafe { launch_args(gpu, KERNEL.entry(dtype)?, g, &args) }
}

/// `Step::BiasAct`: the dense layer's bias and activation, in place on its output.
pub(in crate::backend::cuda) fn step<G: Gpu>(
    cx: &Ctx<G>,
    linear: &op::Linear,
    kind: Kind,
) -> Result<()> {
    let out = cx.buf(linear.out);
    let bufs = Buffers {
        x: out,
        bias: cx.opt_w(linear.b),
        out,
    };
    let spec = Spec {
        rows: cx.rows(kind),
        n: linear.n,
        act: linear.act,
        max_blocks: MAX_BLOCKS,
    };
    // SAFETY: the output buffer holds `rows` rows of n; the bias is whole (Ctx).
    unsafe { launch(cx.gpu, cx.dtype, &bufs, &spec) }
}
