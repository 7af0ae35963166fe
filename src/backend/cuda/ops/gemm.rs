//! The dense layer's product out = x · wᵀ: the device's BLAS, no kernel of ours (its bias
//! and activation ride on a later kernel, or on bias_act).

use super::Ctx;
use crate::backend::cuda::gpu::{Gemm, Gpu};
use crate::backend::cuda::lower::Kind;
use crate::error::Result;
use crate::graph::op;

/// `Step::Gemm`.
pub(in crate::backend::cuda) fn step<G: Gpu>(
    cx: &Ctx<G>,
    linear: &op::Linear,
    kind: Kind,
) -> Result<()> {
    let g = Gemm {
        m: cx.rows(kind),
        n: linear.n,
        k: linear.k,
        x: cx.buf(linear.x),
        w: cx.w(linear.w),
        out: cx.buf(linear.out),
        dtype: cx.dtype,
    };
    // SAFETY: x holds `rows` rows of k, out `rows` rows of n, w is whole (Ctx).
    unsafe { cx.gpu.gemm(&g) }
}
