//! Outlier input channels. BERT's hidden states carry a few channels, the same ones for
//! every token, far larger than the rest (all-MiniLM-L6-v2's LayerNorm outputs reach 30
//! where most values stay below 1); in a per-row int8 step they would take most of the
//! 255 levels. Each call picks the [`OUTLIERS`] channels with the largest |x| over all its
//! rows and quantizes the rows without them; the microkernels add their contribution in
//! f32 to each tile's start (the bias) in the epilogue of the first k-block:
//! out = bias + x[:, O] · w[:, O]ᵀ + the int8 product, with w kept k-major in bf16 for
//! this.
//!
//! On all-MiniLM-L6-v2 (the FFN output projection in bf16, see
//! `cpu::packed_linear::linear_dtype`) this lifts the lowest sentence-embedding cosine to
//! float64 from 0.9974 to 0.9997, for 8 of 384 channels computed in f32.

/// Channels taken out of each product's quantization.
pub const OUTLIERS: usize = 8;

/// Products with fewer input channels quantize them all.
pub const MIN_K: usize = 64;

/// The [`OUTLIERS`] channels of `x` ([rows, k]) with the largest max |x| over the rows,
/// ascending, into `channels`; none when k < [`MIN_K`]. `colmax` is scratch.
/// `native`: with AVX-512 (the caller has checked the native int8 path is supported).
pub fn select(native: bool, x: &[f32], k: usize, colmax: &mut Vec<f32>, channels: &mut Vec<usize>) {
    channels.clear();
    if k < MIN_K {
        return;
    }
    colmax.clear();
    colmax.resize(k, 0.0);
    match native {
        // SAFETY: the caller checked the native int8 path, so AVX-512F is supported.
        #[cfg(target_arch = "x86_64")]
        true => unsafe { column_maxima_avx512(x, colmax) },
        _ => column_maxima(x, colmax),
    }
    // One pass keeping the largest so far, by value then by lower index (every value is
    // >= 0, so all OUTLIERS slots fill).
    let mut top = [(-1.0f32, 0usize); OUTLIERS];
    for (j, &m) in colmax.iter().enumerate() {
        if m > top[OUTLIERS - 1].0 {
            let at = top.iter().position(|t| m > t.0).unwrap_or(OUTLIERS - 1);
            top.copy_within(at..OUTLIERS - 1, at + 1);
            top[at] = (m, j);
        }
    }
    channels.extend(top.iter().map(|t| t.1));
    channels.sort_unstable();
}

/// [`column_maxima`] compiled for AVX-512.
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn column_maxima_avx512(x: &[f32], colmax: &mut [f32]) {
    column_maxima(x, colmax);
}

/// colmax[j] = max(colmax[j], max |x[r, j]|) over the rows of `x` (rows of colmax.len()
/// values). A plain comparison instead of f32::max (whose NaN rule keeps the loop from
/// vectorizing); a NaN never wins, which only changes which channels are picked.
#[inline(always)]
fn column_maxima(x: &[f32], colmax: &mut [f32]) {
    for row in x.chunks_exact(colmax.len()) {
        for (m, v) in colmax.iter_mut().zip(row) {
            let a = v.abs();
            *m = if a > *m { a } else { *m };
        }
    }
}
