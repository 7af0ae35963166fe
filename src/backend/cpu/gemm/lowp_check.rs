//! Test support for the low-precision products: their output against two f64 references,
//! the quantized math (the dequantized operands the kernel multiplies, so only f32
//! rounding separates them) and the original f32 operands (within a stated quantization
//! bound).

use super::tests::reference;
pub(super) use super::tests::{operands, ACTS};
use crate::config::Activation;

/// The operands: original and dequantized, each x [rows, k] and w [n, k].
pub(super) struct Operands<'a> {
    pub x: &'a [f32],
    pub w: &'a [f32],
    pub xq: &'a [f32],
    pub wq: &'a [f32],
    pub bias: Option<&'a [f32]>,
    pub act: Option<Activation>,
    pub shape: (usize, usize, usize),
}

/// Largest activation slope (GELU's is 1.13): a pre-activation error grows by at most this.
const SLOPE: f64 = 1.2;

/// Asserts `out` matches the quantized math within the f32 GEMM bound and the original
/// operands within that plus `SLOPE * quant[i]` (the quantization bound of output i before
/// the activation). Returns the largest |out - f32 reference| relative to the scale
/// of the outputs, for reporting.
pub(super) fn check(label: &str, out: &[f32], ops: &Operands, quant: &[f64]) -> f64 {
    let (rows, _, n) = ops.shape;
    let (want_q, tol_q) = reference(ops.xq, ops.wq, ops.bias, ops.act, ops.shape);
    let (want, tol) = reference(ops.x, ops.w, ops.bias, ops.act, ops.shape);
    let mut bad = Vec::new();
    let (mut worst_q, mut worst, mut scale) = (0.0f64, 0.0f64, 0.0f64);
    for i in 0..rows * n {
        let got = f64::from(out[i]);
        let (dq, d) = ((got - want_q[i]).abs(), (got - want[i]).abs());
        worst_q = worst_q.max(dq);
        worst = worst.max(d);
        scale = scale.max(want[i].abs());
        let ok_q = dq <= tol_q[i];
        let ok = d <= tol[i] + tol_q[i] + SLOPE * quant[i];
        if !(ok_q && ok) {
            bad.push((i / n, i % n, got, want_q[i], tol_q[i], want[i], quant[i]));
        }
    }
    assert!(
        bad.is_empty(),
        "{label}: {} mismatches; max |d| vs quantized math {worst_q:e}, vs f32 {worst:e}; \
         first (row, col, got, want_q, tol_q, want_f32, quant bound): {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
    assert!(
        out[rows * n..].iter().all(|v| v.is_nan()),
        "{label}: wrote past rows * n"
    );
    worst / scale.max(1e-30)
}

/// The awkward shapes (rows, k, n) every low-precision kernel is checked on, plus some
/// with several k-blocks.
pub(super) fn shapes() -> Vec<(usize, usize, usize)> {
    let mut all = Vec::new();
    for rows in [1, 3, 17, 130] {
        for k in [1, 7, 37, 384] {
            for n in [1, 13, 33, 100] {
                all.push((rows, k, n));
            }
        }
    }
    all.extend([(9, 1600, 49), (17, 3072, 100), (130, 800, 48)]);
    all
}
