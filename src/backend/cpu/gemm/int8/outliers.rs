//! Outlier input channels. BERT's hidden states carry a few channels, the same ones for
//! every token, far larger than the rest (all-MiniLM-L6-v2's LayerNorm outputs reach 30
//! where most values stay below 1); in a per-row int8 step they would take most of the
//! 255 levels. Each call picks the [`OUTLIERS`] channels with the largest |x| over all its
//! rows, quantizes the rows without them and adds their contribution in f32 beforehand:
//! out = bias + x[:, O] · w[:, O]ᵀ, with w kept k-major in bf16 for this.
//!
//! On all-MiniLM-L6-v2 this lifts the lowest sentence-embedding cosine of int8 (every
//! linear but the FFN output) from 0.9990 to 0.9994 (tests/lowp.rs), for about 2% more
//! multiply-adds (8 of 384 channels) in f32.

use rayon::prelude::*;

use super::super::bf16::from_bf16;

/// Channels taken out of each product's quantization.
pub const OUTLIERS: usize = 8;

/// Products with fewer input channels quantize them all.
pub const MIN_K: usize = 64;

/// Rows per rayon job of the correction.
const ROWS_PER_JOB: usize = 8;

/// The [`OUTLIERS`] channels of `x` ([rows, k]) with the largest max |x| over the rows,
/// ascending, into `channels`; none when k < [`MIN_K`]. `colmax` is scratch.
pub fn select(x: &[f32], k: usize, colmax: &mut Vec<f32>, channels: &mut Vec<usize>) {
    channels.clear();
    if k < MIN_K {
        return;
    }
    colmax.clear();
    colmax.resize(k, 0.0);
    for row in x.chunks_exact(k) {
        for (m, v) in colmax.iter_mut().zip(row) {
            *m = m.max(v.abs());
        }
    }
    for _ in 0..OUTLIERS {
        let (best, _) =
            colmax
                .iter()
                .enumerate()
                .fold((0, -1.0f32), |b, (j, &m)| if m > b.1 { (j, m) } else { b });
        channels.push(best);
        colmax[best] = -1.0;
    }
    channels.sort_unstable();
}

/// out[r, :] = bias + sum over `channels` j of x[r, j] · wt[j, :], with `wt` the weight
/// k-major ([k, n]) in bf16; `native` runs it with AVX-512 (which the caller has checked).
#[allow(clippy::too_many_arguments)]
pub fn correct(
    native: bool,
    x: &[f32],
    k: usize,
    channels: &[usize],
    wt: &[u16],
    n: usize,
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    let rows = out.len() / n.max(1);
    let one = |(xrow, orow): (&[f32], &mut [f32])| match native {
        // SAFETY: the caller checked AVX-512F.
        #[cfg(target_arch = "x86_64")]
        true => unsafe { correct_row_avx512(xrow, channels, wt, bias, orow) },
        _ => correct_row(xrow, channels, wt, bias, orow),
    };
    let x = &x[..rows * k];
    if rows > ROWS_PER_JOB {
        x.par_chunks_exact(k)
            .zip(out.par_chunks_exact_mut(n))
            .with_min_len(ROWS_PER_JOB)
            .for_each(one);
    } else {
        x.chunks_exact(k).zip(out.chunks_exact_mut(n)).for_each(one);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn correct_row_avx512(
    x: &[f32],
    channels: &[usize],
    wt: &[u16],
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    correct_row(x, channels, wt, bias, out);
}

/// One row of [`correct`] (always inlined, so the AVX-512 caller vectorizes it wider).
#[inline(always)]
fn correct_row(x: &[f32], channels: &[usize], wt: &[u16], bias: Option<&[f32]>, out: &mut [f32]) {
    let n = out.len();
    match bias {
        Some(b) => out.copy_from_slice(&b[..n]),
        None => out.fill(0.0),
    }
    for &j in channels {
        let xv = x[j];
        for (o, &w) in out.iter_mut().zip(&wt[j * n..(j + 1) * n]) {
            *o += xv * from_bf16(w);
        }
    }
}
