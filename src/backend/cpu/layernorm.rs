//! LayerNorm over rows, optionally fused with a residual add. Statistics are accumulated
//! in f64; the biased variance is used, as torch.nn.LayerNorm does.

use rayon::prelude::*;

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
    out.par_chunks_mut(width)
        .enumerate()
        .for_each(|(row, dst)| {
            let src = &x[row * width..(row + 1) * width];
            match residual {
                Some(r) => {
                    let r = &r[row * width..(row + 1) * width];
                    for ((d, a), b) in dst.iter_mut().zip(src).zip(r) {
                        *d = a + b;
                    }
                }
                None => dst.copy_from_slice(src),
            }
            normalize_row(dst, gamma, beta, eps);
        });
}

/// Independent partial sums per row statistic: breaks the add-latency chain so the
/// f64 sums vectorize (the order of the additions changes, not their precision).
const LANES: usize = 8;

/// The f64 sum of f(v) over a row, in [`LANES`] interleaved partial sums.
#[inline(always)]
fn lane_sum(row: &[f32], f: impl Fn(f64) -> f64) -> f64 {
    let mut acc = [0f64; LANES];
    let chunks = row.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += f(v as f64);
        }
    }
    let tail: f64 = tail.iter().map(|&v| f(v as f64)).sum();
    acc.iter().sum::<f64>() + tail
}

/// Normalizes one row in place.
pub fn normalize_row(row: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let n = row.len() as f64;
    let mean = lane_sum(row, |v| v) / n;
    let var = lane_sum(row, |v| (v - mean) * (v - mean)) / n;
    let inv = 1.0 / (var + eps as f64).sqrt();
    for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
        *v = ((*v as f64 - mean) * inv * *g as f64 + *b as f64) as f32;
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
