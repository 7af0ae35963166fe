//! The attention products on AVX-512: the portable bodies' sums (each lane a fused
//! multiply-add per term, in the same order, so the same bits), in register tiles of up
//! to 8 queries x 2 vectors: 16 independent accumulators, enough to keep both FMA pipes
//! busy past their latency, and every load of Kᵀ or V feeds 8 of them.

use std::arch::x86_64::*;

use super::{lanes, L};

/// Queries per register tile.
const MR: usize = 8;

/// The scores from Kᵀ packed [d, lk rounded up to 16] (see `super::pack_keys`).
///
/// # Safety
/// The CPU must support AVX-512F; the slices hold what `super::scores_with` asserts.
#[target_feature(enable = "avx512f")]
pub unsafe fn scores(
    s: &mut [f32],
    q: &[f32],
    q_rs: usize,
    kt: &[f32],
    lq: usize,
    lk: usize,
    d: usize,
) {
    let width = lk.next_multiple_of(L);
    let (s, q, kt) = (s.as_mut_ptr(), q.as_ptr(), kt.as_ptr());
    for i0 in (0..lq).step_by(MR) {
        let m = MR.min(lq - i0);
        let (si, qi) = (s.add(i0 * lk), q.add(i0 * q_rs));
        let mut j0 = 0;
        while j0 + 2 * L <= width {
            by_queries!(m, scores_tile, 2, si, qi, q_rs, kt, width, lk, j0, d);
            j0 += 2 * L;
        }
        if j0 < width {
            by_queries!(m, scores_tile, 1, si, qi, q_rs, kt, width, lk, j0, d);
        }
    }
}

/// Scores of M queries x NV * 16 keys from key j0 (stores only keys < lk).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn scores_tile<const M: usize, const NV: usize>(
    s: *mut f32,
    q: *const f32,
    q_rs: usize,
    kt: *const f32,
    width: usize,
    lk: usize,
    j0: usize,
    d: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); NV]; M];
    for dd in 0..d {
        let kv: [__m512; NV] =
            std::array::from_fn(|v| _mm512_loadu_ps(kt.add(dd * width + j0 + v * L)));
        for (r, row) in acc.iter_mut().enumerate() {
            let qv = _mm512_set1_ps(*q.add(r * q_rs + dd));
            for (a, &k) in row.iter_mut().zip(&kv) {
                *a = _mm512_fmadd_ps(qv, k, *a);
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        for (v, &a) in row.iter().enumerate() {
            let j = j0 + v * L;
            if j < lk {
                _mm512_mask_storeu_ps(s.add(r * lk + j), lanes(lk - j), a);
            }
        }
    }
}

/// The context from V packed [lk, d rounded up to 16] (see `super::pack_values`).
///
/// # Safety
/// The CPU must support AVX-512F; the slices hold what `super::context_with` asserts.
#[target_feature(enable = "avx512f")]
pub unsafe fn context(c: &mut [f32], p: &[f32], vp: &[f32], lq: usize, lk: usize, d: usize) {
    let width = d.next_multiple_of(L);
    let (c, p, vp) = (c.as_mut_ptr(), p.as_ptr(), vp.as_ptr());
    for i0 in (0..lq).step_by(MR) {
        let m = MR.min(lq - i0);
        let (ci, pi) = (c.add(i0 * d), p.add(i0 * lk));
        let mut d0 = 0;
        while d0 + 2 * L <= width {
            by_queries!(m, context_tile, 2, ci, pi, vp, width, lk, d0, d);
            d0 += 2 * L;
        }
        if d0 < width {
            by_queries!(m, context_tile, 1, ci, pi, vp, width, lk, d0, d);
        }
    }
}

/// Context of M queries x NV * 16 values from value d0 (stores only values < d).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn context_tile<const M: usize, const NV: usize>(
    c: *mut f32,
    p: *const f32,
    vp: *const f32,
    width: usize,
    lk: usize,
    d0: usize,
    d: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); NV]; M];
    for j in 0..lk {
        let vv: [__m512; NV] =
            std::array::from_fn(|v| _mm512_loadu_ps(vp.add(j * width + d0 + v * L)));
        for (r, row) in acc.iter_mut().enumerate() {
            let pv = _mm512_set1_ps(*p.add(r * lk + j));
            for (a, &v) in row.iter_mut().zip(&vv) {
                *a = _mm512_fmadd_ps(pv, v, *a);
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        for (v, &a) in row.iter().enumerate() {
            let dv = d0 + v * L;
            if dv < d {
                _mm512_mask_storeu_ps(c.add(r * d + dv), lanes(d - dv), a);
            }
        }
    }
}
