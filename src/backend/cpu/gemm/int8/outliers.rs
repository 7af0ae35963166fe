//! Outlier input channels. BERT's hidden states carry a few channels, the same ones for
//! every token, far larger than the rest (all-MiniLM-L6-v2's LayerNorm outputs reach 30
//! where most values stay below 1); in a per-row int8 step they would take most of the
//! 255 levels. Each call picks the [`OUTLIERS`] channels with the largest |x| over all its
//! rows, quantizes the rows without them and adds their contribution in f32 beforehand:
//! out = bias + x[:, O] · w[:, O]ᵀ, with w kept k-major in bf16 for this.
//!
//! On all-MiniLM-L6-v2 (the FFN output projection in bf16, see
//! `cpu::packed_linear::linear_dtype`) this lifts the lowest sentence-embedding cosine to
//! float64 from 0.9974 to 0.9997, for 8 of 384 channels computed in f32.

use super::super::bf16::from_bf16;

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

/// The outlier part of one tile, written over it: for rows r < `rows` and columns
/// c < `cols`, out[r * ldc + c] = bias[col0 + c] + sum over `channels` j of
/// x[r * k + j] · wt[j * n + col0 + c], with `wt` the weight k-major ([k, n]) in bf16.
/// `native` runs it with AVX-512 (the caller has checked the native int8 path is
/// supported); both give identical results.
///
/// # Safety
/// `out` must be valid for writes of out[r * ldc + c] (r < rows, c < cols) and not
/// aliased during the call.
#[allow(clippy::too_many_arguments)]
pub unsafe fn correct_tile(
    native: bool,
    x: &[f32],
    k: usize,
    channels: &[usize],
    wt: &[u16],
    n: usize,
    bias: Option<&[f32]>,
    (col0, cols): (usize, usize),
    out: *mut f32,
    ldc: usize,
    rows: usize,
) {
    assert!(col0 + cols <= n && wt.len() >= k * n && x.len() >= rows * k);
    assert!(channels.iter().all(|&j| j < k));
    if let Some(b) = bias {
        assert!(b.len() >= n);
    }
    let bias = bias.map(|b| &b[col0..col0 + cols]);
    for r in 0..rows {
        let xrow = &x[r * k..(r + 1) * k];
        // SAFETY: row r of the tile, `cols` values, is the caller's to write.
        let orow = std::slice::from_raw_parts_mut(out.add(r * ldc), cols);
        match native {
            // SAFETY: the caller checked the native int8 path (AVX-512F, BW, VL); every
            // channel is < k and wt holds k rows of n >= col0 + cols values.
            #[cfg(target_arch = "x86_64")]
            true => correct_row_avx512(xrow, channels, &wt[col0..], n, bias, orow),
            _ => correct_row(xrow, channels, &wt[col0..], n, bias, orow),
        }
    }
}

/// [`correct_row`] in AVX-512 registers, with identical results (the same multiply and
/// add per channel, in the same order).
///
/// # Safety
/// The CPU must support AVX-512F, BW and VL; `x` holds every channel, `wt` holds row j
/// (j in `channels`) at j * `ldw` with `out.len()` values, and `bias` (if any) holds
/// `out.len()` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn correct_row_avx512(
    x: &[f32],
    channels: &[usize],
    wt: &[u16],
    ldw: usize,
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    use std::arch::x86_64::*;
    let n = out.len();
    let mut c0 = 0;
    while c0 < n {
        let mask: __mmask16 = if n - c0 >= 16 {
            0xFFFF
        } else {
            (1 << (n - c0)) - 1
        };
        let mut acc = match bias {
            Some(b) => _mm512_maskz_loadu_ps(mask, b.as_ptr().add(c0)),
            None => _mm512_setzero_ps(),
        };
        for &j in channels {
            let xv = _mm512_set1_ps(x[j]);
            let w = _mm256_maskz_loadu_epi16(mask, wt.as_ptr().add(j * ldw + c0).cast());
            let w = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(w)));
            acc = _mm512_add_ps(acc, _mm512_mul_ps(xv, w));
        }
        _mm512_mask_storeu_ps(out.as_mut_ptr().add(c0), mask, acc);
        c0 += 16;
    }
}

/// One row of [`correct_tile`]: out[c] = bias[c] + sum over `channels` j of
/// x[j] · wt[j * ldw + c], 16 outputs at a time kept in registers over the channels.
#[inline(always)]
fn correct_row(
    x: &[f32],
    channels: &[usize],
    wt: &[u16],
    ldw: usize,
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    const LANES: usize = 16;
    for (chunk, o) in out.chunks_mut(LANES).enumerate() {
        let c0 = chunk * LANES;
        let mut acc = [0.0f32; LANES];
        if let Some(b) = bias {
            acc[..o.len()].copy_from_slice(&b[c0..c0 + o.len()]);
        }
        for &j in channels {
            let xv = x[j];
            let w = &wt[j * ldw + c0..j * ldw + c0 + o.len()];
            for (a, &wv) in acc.iter_mut().zip(w) {
                *a += xv * from_bf16(wv);
            }
        }
        o.copy_from_slice(&acc[..o.len()]);
    }
}
