//! The attention products on AVX-512: the portable bodies' sums (each lane a multiply
//! then an add, in the same order, so the same bits), four queries at a time so that
//! every load of Kᵀ or V feeds four accumulators.

use std::arch::x86_64::*;

use super::L;

/// Queries per register tile.
const MR: usize = 4;

/// Lanes `0..n` (n <= 16) of a 16-lane mask.
#[inline(always)]
fn lanes(n: usize) -> __mmask16 {
    if n >= 16 {
        0xffff
    } else {
        (1u16 << n) - 1
    }
}

/// The scores from Kᵀ packed [d, lk rounded up to 16] (see `super::scores_body`).
///
/// # Safety
/// The CPU must support AVX-512F; the slices hold what `super::scores` asserts and packs.
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
    for i0 in (0..lq).step_by(MR) {
        let m = MR.min(lq - i0);
        for j0 in (0..lk).step_by(L) {
            let mut acc = [_mm512_setzero_ps(); MR];
            for dd in 0..d {
                let kv = _mm512_loadu_ps(kt.as_ptr().add(dd * width + j0));
                for (r, a) in acc.iter_mut().enumerate().take(m) {
                    let qv = _mm512_set1_ps(*q.get_unchecked((i0 + r) * q_rs + dd));
                    *a = _mm512_add_ps(*a, _mm512_mul_ps(qv, kv));
                }
            }
            let mask = lanes(lk - j0);
            for (r, a) in acc.iter().enumerate().take(m) {
                _mm512_mask_storeu_ps(s.as_mut_ptr().add((i0 + r) * lk + j0), mask, *a);
            }
        }
    }
}

/// The context from V packed [lk, d rounded up to 16] (see `super::context_body`).
///
/// # Safety
/// The CPU must support AVX-512F; the slices hold what `super::context` asserts and packs.
#[target_feature(enable = "avx512f")]
pub unsafe fn context(c: &mut [f32], p: &[f32], vp: &[f32], lq: usize, lk: usize, d: usize) {
    let width = d.next_multiple_of(L);
    for i0 in (0..lq).step_by(MR) {
        let m = MR.min(lq - i0);
        for d0 in (0..d).step_by(L) {
            let mut acc = [_mm512_setzero_ps(); MR];
            for j in 0..lk {
                let vv = _mm512_loadu_ps(vp.as_ptr().add(j * width + d0));
                for (r, a) in acc.iter_mut().enumerate().take(m) {
                    let pv = _mm512_set1_ps(*p.get_unchecked((i0 + r) * lk + j));
                    *a = _mm512_add_ps(*a, _mm512_mul_ps(pv, vv));
                }
            }
            let mask = lanes(d - d0);
            for (r, a) in acc.iter().enumerate().take(m) {
                _mm512_mask_storeu_ps(c.as_mut_ptr().add((i0 + r) * d + d0), mask, *a);
            }
        }
    }
}
