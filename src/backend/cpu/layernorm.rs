//! LayerNorm over rows, optionally fused with a residual add. Statistics are f32 sums in
//! [`LANES`] interleaved partial sums, the mean first and then the squared deviations from
//! it (two passes: no cancellation), with the biased variance, as torch.nn.LayerNorm
//! computes in f32. Plain additions and products in a fixed order: every instruction set
//! gives the same bits.

use rayon::prelude::*;

use super::gemm::Isa;

/// Values per rayon job: a [128, 384] LayerNorm is a few microseconds of work, so it is
/// cut in a few jobs rather than one per row.
const VALUES_PER_JOB: usize = 16 * 1024;

/// out[r] = LayerNorm(x[r] + residual[r]) * gamma + beta for each row of `width` values.
pub fn layer_norm(
    x: &[f32],
    residual: Option<&[f32]>,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    width: usize,
    out: &mut [f32],
) {
    assert!(width > 0 && x.len() == out.len() && x.len().is_multiple_of(width));
    assert!(gamma.len() == width && beta.len() == width);
    if let Some(r) = residual {
        assert_eq!(r.len(), x.len());
    }
    let isa = Isa::detect();
    out.par_chunks_mut(width)
        .enumerate()
        .with_min_len((VALUES_PER_JOB / width).max(1))
        .for_each(|(row, dst)| {
            let src = &x[row * width..(row + 1) * width];
            let r = residual.map(|r| &r[row * width..(row + 1) * width]);
            match isa {
                // SAFETY: `Isa::detect` only returns instruction sets this CPU supports.
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => unsafe { add_normalize_avx512(src, r, gamma, beta, eps, dst) },
                // SAFETY: as above.
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => unsafe { add_normalize_avx2(src, r, gamma, beta, eps, dst) },
                _ => add_normalize(src, r, gamma, beta, eps, dst),
            }
        });
}

/// [`add_normalize`] compiled for AVX-512.
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn add_normalize_avx512(
    x: &[f32],
    residual: Option<&[f32]>,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    out: &mut [f32],
) {
    add_normalize(x, residual, gamma, beta, eps, out);
}

/// [`add_normalize`] compiled for AVX2 + FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn add_normalize_avx2(
    x: &[f32],
    residual: Option<&[f32]>,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    out: &mut [f32],
) {
    add_normalize(x, residual, gamma, beta, eps, out);
}

/// out = LayerNorm(x + residual) for one row; always inlined into the per-ISA wrappers
/// above, so that its loops vectorize for the widest vectors.
#[inline(always)]
fn add_normalize(
    x: &[f32],
    residual: Option<&[f32]>,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    out: &mut [f32],
) {
    match residual {
        Some(r) => {
            for ((d, a), b) in out.iter_mut().zip(x).zip(r) {
                *d = a + b;
            }
        }
        None => out.copy_from_slice(x),
    }
    normalize_row(out, gamma, beta, eps);
}

/// Independent partial sums per row statistic: one AVX-512 vector (two AVX2 ones), so
/// the sums vectorize and their add-latency chains overlap.
const LANES: usize = 16;

/// The f32 sum of f(v) over a row, in [`LANES`] interleaved partial sums.
#[inline(always)]
fn lane_sum(row: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = row.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += f(v);
        }
    }
    let tail: f32 = tail.iter().map(|&v| f(v)).sum();
    acc.iter().sum::<f32>() + tail
}

/// Normalizes one row in place.
#[inline(always)]
pub fn normalize_row(row: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let n = row.len() as f32;
    let mean = lane_sum(row, |v| v) / n;
    let var = lane_sum(row, |v| (v - mean) * (v - mean)) / n;
    let inv = 1.0 / (var + eps).sqrt();
    for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
        *v = (*v - mean) * inv * g + b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_with_residual() {
        // rows (1+0, 2+1) = (1, 3) and (0-1, 4+1) = (-1, 5): each normalizes to (-1, 1).
        let x = [1.0, 2.0, 0.0, 4.0];
        let r = [0.0, 1.0, -1.0, 1.0];
        let mut out = [0.0; 4];
        layer_norm(&x, Some(&r), &[1.0, 2.0], &[0.0, 1.0], 0.0, 2, &mut out);
        assert_eq!(out, [-1.0, 3.0, -1.0, 3.0]);
    }
}
