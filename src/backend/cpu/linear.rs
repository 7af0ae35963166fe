//! Dense layer: out = act(x · wᵀ + b), weights stored [n, k] as in checkpoints.

use rayon::prelude::*;

use super::activation;
use super::matmul::{matmul, View};
use crate::config::Activation;

/// out[rows, n] = act(x[rows, k] · w[n, k]ᵀ + b[n]).
#[allow(clippy::too_many_arguments)]
pub fn linear(
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    act: Option<Activation>,
    rows: usize,
    k: usize,
    n: usize,
    out: &mut [f32],
) {
    assert!(x.len() >= rows * k && w.len() == n * k && out.len() >= rows * n);
    matmul(
        out,
        n,
        View::rows(x, rows, k, k),
        View::transposed(w, k, n, k),
        rayon::current_num_threads(),
    );
    bias_act(&mut out[..rows * n], n, b, act);
}

/// Adds a per-column bias and applies an activation to each row of `n` values.
pub fn bias_act(out: &mut [f32], n: usize, b: Option<&[f32]>, act: Option<Activation>) {
    if b.is_none() && act.is_none() {
        return;
    }
    out.par_chunks_mut(n).for_each(|row| {
        if let Some(b) = b {
            for (v, bias) in row.iter_mut().zip(b) {
                *v += bias;
            }
        }
        if let Some(act) = act {
            activation::apply_slice(act, row);
        }
    });
}
