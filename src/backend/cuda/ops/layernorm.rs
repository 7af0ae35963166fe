//! layernorm.cu: out = LayerNorm(act(x + bias) + residual), bias, activation and residual
//! each optional (BertSelfOutput and BertOutput: bias + residual; the MLM transform:
//! bias + activation).

use super::{act_code, f32_and_f16, int, launch_args, row_geometry, Ctx, Kernel};
use crate::backend::cuda::gpu::{DevPtr, Dtype, Gpu};
use crate::backend::cuda::lower::{Epilogue, Kind};
use crate::config::Activation;
use crate::error::Result;
use crate::graph::op;

/// `layernorm_{f32,f16}`.
pub const KERNEL: Kernel = f32_and_f16!("layernorm");

/// Device addresses of one launch: the leading fields of layernorm.cu's `LayerNormArgs`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Buffers {
    /// [rows, width] input.
    pub x: DevPtr,
    /// [width] bias, or 0.
    pub bias: DevPtr,
    /// [rows, width] residual, or 0.
    pub residual: DevPtr,
    /// [width] scale.
    pub gamma: DevPtr,
    /// [width] shift.
    pub beta: DevPtr,
    /// [rows, width] result (may be `x` or `residual`).
    pub out: DevPtr,
}

/// Sizes and options of one launch.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// Rows.
    pub rows: usize,
    /// Row width.
    pub width: usize,
    /// Applied after the bias, before the residual.
    pub act: Option<Activation>,
    /// Epsilon.
    pub eps: f32,
}

/// `LayerNormArgs`.
#[repr(C)]
struct Args {
    bufs: Buffers,
    rows: i32,
    width: i32,
    act: i32,
    eps: f32,
}

/// One block of [`row_threads`] per row, the row in shared memory (f32).
///
/// # Safety
/// Each buffer holds what the [`Buffers`] field says for `spec`.
pub unsafe fn launch<G: Gpu>(gpu: &G, dtype: Dtype, bufs: &Buffers, spec: &Spec) -> Result<()> {
    let g = row_geometry(spec.rows, spec.width, dtype)?;
    let args = Args {
        bufs: *bufs,
        rows: int(spec.rows, "rows")?,
        width: int(spec.width, "width")?,
        act: act_code(spec.act),
        eps: spec.eps,
    };
    // SAFETY: the caller vouches for the buffers; `args` is LayerNormArgs.
    unsafe { launch_args(gpu, KERNEL.entry(dtype)?, g, &args) }
}

/// `Step::LayerNorm`, with the bias and activation of the dense layer before it.
pub(in crate::backend::cuda) fn step<G: Gpu>(
    cx: &Ctx<G>,
    norm: &op::LayerNorm,
    fused: Epilogue,
    kind: Kind,
) -> Result<()> {
    let bufs = Buffers {
        x: cx.buf(norm.x),
        bias: cx.opt_w(fused.bias),
        residual: cx.opt_buf(norm.residual),
        gamma: cx.w(norm.gamma),
        beta: cx.w(norm.beta),
        out: cx.buf(norm.out),
    };
    let spec = Spec {
        rows: cx.rows(kind),
        width: norm.width,
        act: fused.act,
        eps: norm.eps,
    };
    // SAFETY: plan buffers of `kind` hold `rows` rows of `width`; weights are whole (Ctx).
    unsafe { launch(cx.gpu, cx.dtype, &bufs, &spec) }
}
