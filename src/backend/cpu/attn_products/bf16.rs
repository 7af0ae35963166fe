//! Attention's two products in plain bf16 on AVX512-BF16 (`vdpbf16ps`): every operand
//! rounded to the nearest bf16 (ties to even), each product exact, the sums in f32 pair by
//! pair. Each product is within 2^-7 of its f32 value (each operand within 2^-8): the
//! int8 backend's choice (its linears' rounding is far larger), not bf16's or f32's.
//!
//! Layouts, in u32 pairs of bf16 (the lower half the first of the two):
//! - keys: for each pair of head dims p, every key's pair: `k[p * wk + j]`, wk = the keys
//!   rounded up to 16 (zeros beyond);
//! - values: for each pair of keys jp, every dim's pair: `v[jp * wd + e]`, wd = the dims
//!   rounded up to 16 (an odd last key pairs with zero);
//! - queries and probabilities: rows rounded in order, zero padded to a whole pair, read
//!   as pairs.
//!
//! So a score is the same sequence of `vdpbf16ps` steps whatever the rows beside it, and
//! a context value too whatever padding keys follow (they add products of p = 0, exact
//! zeros): a row's results do not depend on its batch.

use std::arch::x86_64::*;

use super::{lanes, prefetch_row, AHEAD, L};
use crate::backend::cpu::gemm::bf16::round_row_avx512;

/// Whether this CPU runs the plain bf16 products.
pub fn supported() -> bool {
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512bf16")
}

/// One thread's rounded operands of a pair, reused pair after pair.
pub struct Buffers {
    k: Vec<u32>,
    v: Vec<u32>,
    q: Vec<u32>,
    p: Vec<u32>,
    /// A row of bf16 values (a key's, or one of two values').
    row: Vec<u32>,
    row2: Vec<u32>,
}

impl Buffers {
    pub const fn new() -> Self {
        Buffers {
            k: Vec::new(),
            v: Vec::new(),
            q: Vec::new(),
            p: Vec::new(),
            row: Vec::new(),
            row2: Vec::new(),
        }
    }
}

/// Queries per register tile.
const MR: usize = 8;

/// Rounds `src` into the pairs of `dst` (its values in order, zero padded).
///
/// # Safety
/// AVX-512F, BW and AVX512-BF16; `dst` holds at least `src.len()` halves.
#[inline(always)]
unsafe fn round_pairs(src: &[f32], dst: &mut [u32]) {
    // SAFETY: u32s are two u16s each, little-endian on x86-64 (the lower half first, as
    // `vdpbf16ps` reads a pair), and the caller gave room for the values.
    let halves = std::slice::from_raw_parts_mut(dst.as_mut_ptr().cast::<u16>(), 2 * dst.len());
    round_row_avx512(src, halves);
}

/// Rounds and packs the pair's `lk` keys (rows `rs` apart, `d` values each).
///
/// # Safety
/// [`supported`]; `k` holds the rows.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub unsafe fn pack_keys(b: &mut Buffers, k: &[f32], rs: usize, lk: usize, d: usize) {
    assert!(
        lk == 0 || (lk - 1) * rs + d <= k.len(),
        "attention: short k"
    );
    let (pairs, wk) = (d.div_ceil(2), lk.next_multiple_of(L));
    b.k.resize(pairs * wk, 0);
    b.row.resize(pairs, 0);
    for p in b.k.chunks_exact_mut(wk) {
        p[lk..].fill(0);
    }
    for j in 0..lk {
        prefetch_row(k, rs, j + AHEAD, lk, d);
        round_pairs(&k[j * rs..j * rs + d], &mut b.row);
        for (p, &pair) in b.row.iter().enumerate() {
            b.k[p * wk + j] = pair;
        }
    }
}

/// Rounds and packs the pair's `lk` values (rows `rs` apart, `d` values each).
///
/// # Safety
/// [`supported`]; `v` holds the rows.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub unsafe fn pack_values(b: &mut Buffers, v: &[f32], rs: usize, lk: usize, d: usize) {
    assert!(
        lk == 0 || (lk - 1) * rs + d <= v.len(),
        "attention: short v"
    );
    let wd = d.next_multiple_of(L);
    b.v.resize(lk.div_ceil(2) * wd, 0);
    // Two value rows, each wd bf16 values (zero padded) held as wd / 2 pairs.
    b.row.resize(wd / 2, 0);
    b.row2.resize(wd / 2, 0);
    for (jp, out) in b.v.chunks_exact_mut(wd).enumerate() {
        let j = 2 * jp;
        prefetch_row(v, rs, j + AHEAD, lk, d);
        prefetch_row(v, rs, j + 1 + AHEAD, lk, d);
        round_pairs(&v[j * rs..j * rs + d], &mut b.row);
        match j + 1 < lk {
            true => round_pairs(&v[(j + 1) * rs..(j + 1) * rs + d], &mut b.row2),
            false => b.row2.fill(0),
        }
        // out[e] = (value e of key j, value e of key j + 1), 16 dims at a time.
        let (lo, hi) = (b.row.as_ptr().cast::<u16>(), b.row2.as_ptr().cast::<u16>());
        for e in (0..wd).step_by(L) {
            let a = _mm512_cvtepu16_epi32(_mm256_loadu_si256(lo.add(e).cast()));
            let c = _mm512_cvtepu16_epi32(_mm256_loadu_si256(hi.add(e).cast()));
            let pair = _mm512_or_si512(a, _mm512_slli_epi32::<16>(c));
            _mm512_storeu_si512(out.as_mut_ptr().add(e).cast(), pair);
        }
    }
}

/// s[i * lk + j] = q_i · k_j for the `rows` queries at q[i * q_rs..] (d values each) and
/// the keys [`pack_keys`] packed.
///
/// # Safety
/// [`supported`]; the keys of this `lk` and `d` are packed in `b`.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn scores(
    s: &mut [f32],
    q: &[f32],
    q_rs: usize,
    b: &mut Buffers,
    rows: usize,
    lk: usize,
    d: usize,
) {
    let (pairs, wk) = (d.div_ceil(2), lk.next_multiple_of(L));
    assert!(s.len() >= rows * lk, "attention scores: short destination");
    assert!(
        rows == 0 || (rows - 1) * q_rs + d <= q.len(),
        "attention: short q"
    );
    assert!(b.k.len() >= pairs * wk, "attention: keys not packed");
    b.q.resize(rows * pairs, 0);
    for (i, dst) in b.q.chunks_exact_mut(pairs.max(1)).take(rows).enumerate() {
        round_pairs(&q[i * q_rs..i * q_rs + d], dst);
    }
    let (s, qp, kp) = (s.as_mut_ptr(), b.q.as_ptr(), b.k.as_ptr());
    for i0 in (0..rows).step_by(MR) {
        let m = MR.min(rows - i0);
        let (si, qi) = (s.add(i0 * lk), qp.add(i0 * pairs));
        let mut j0 = 0;
        while j0 + 3 * L <= wk {
            by_queries!(m, scores_tile, 3, si, qi, pairs, kp, wk, lk, j0);
            j0 += 3 * L;
        }
        while j0 + 2 * L <= wk {
            by_queries!(m, scores_tile, 2, si, qi, pairs, kp, wk, lk, j0);
            j0 += 2 * L;
        }
        if j0 < wk {
            by_queries!(m, scores_tile, 1, si, qi, pairs, kp, wk, lk, j0);
        }
    }
}

/// Scores of M queries x NV * 16 keys from key j0 (stores only keys < lk).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn scores_tile<const M: usize, const NV: usize>(
    s: *mut f32,
    q: *const u32,
    pairs: usize,
    k: *const u32,
    wk: usize,
    lk: usize,
    j0: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); NV]; M];
    for p in 0..pairs {
        let kv: [__m512bh; NV] = std::array::from_fn(|v| {
            std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(
                k.add(p * wk + j0 + v * L).cast(),
            ))
        });
        for (r, row) in acc.iter_mut().enumerate() {
            let qv = std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(
                *q.add(r * pairs + p) as i32,
            ));
            for (a, &kv) in row.iter_mut().zip(&kv) {
                *a = _mm512_dpbf16_ps(*a, qv, kv);
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

/// c[i * d..][..d] = the `rows` probability rows at p[i * ls..] (lk values each) times
/// the values [`pack_values`] packed.
///
/// # Safety
/// [`supported`]; the values of this `lk` and `d` are packed in `b`.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn context(
    c: &mut [f32],
    p: &[f32],
    ls: usize,
    b: &mut Buffers,
    rows: usize,
    lk: usize,
    d: usize,
) {
    let (kp, wd) = (lk.div_ceil(2), d.next_multiple_of(L));
    assert!(c.len() >= rows * d, "attention context: short destination");
    assert!(
        rows == 0 || (rows - 1) * ls + lk <= p.len(),
        "attention: short probabilities"
    );
    assert!(b.v.len() >= kp * wd, "attention: values not packed");
    b.p.resize(rows * kp, 0);
    for (i, dst) in b.p.chunks_exact_mut(kp.max(1)).take(rows).enumerate() {
        round_pairs(&p[i * ls..i * ls + lk], dst);
    }
    let (c, pp, vp) = (c.as_mut_ptr(), b.p.as_ptr(), b.v.as_ptr());
    for i0 in (0..rows).step_by(MR) {
        let m = MR.min(rows - i0);
        let (ci, pi) = (c.add(i0 * d), pp.add(i0 * kp));
        let mut d0 = 0;
        while d0 + 2 * L <= wd {
            by_queries!(m, context_tile, 2, ci, pi, kp, vp, wd, d0, d);
            d0 += 2 * L;
        }
        if d0 < wd {
            by_queries!(m, context_tile, 1, ci, pi, kp, vp, wd, d0, d);
        }
    }
}

/// Context of M queries x NV * 16 dims from dim d0 (stores only dims < d).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn context_tile<const M: usize, const NV: usize>(
    c: *mut f32,
    p: *const u32,
    kp: usize,
    v: *const u32,
    wd: usize,
    d0: usize,
    d: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); NV]; M];
    for jp in 0..kp {
        let vv: [__m512bh; NV] = std::array::from_fn(|n| {
            std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(
                v.add(jp * wd + d0 + n * L).cast(),
            ))
        });
        for (r, row) in acc.iter_mut().enumerate() {
            let pv = std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(
                *p.add(r * kp + jp) as i32,
            ));
            for (a, &vv) in row.iter_mut().zip(&vv) {
                *a = _mm512_dpbf16_ps(*a, pv, vv);
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        for (n, &a) in row.iter().enumerate() {
            let e = d0 + n * L;
            if e < d {
                _mm512_mask_storeu_ps(c.add(r * d + e), lanes(d - e), a);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::gemm::bf16::{from_bf16, to_bf16};

    /// Deterministic values in [-1, 1).
    fn noise(seed: u64, n: usize) -> Vec<f32> {
        crate::backend::cpu::gemm::tests::random(n, seed)
    }

    /// Buffers holding another shape's leftovers, as a reused thread's do.
    fn used_buffers() -> Buffers {
        let mut b = Buffers::new();
        let junk: Vec<f32> = noise(99, 300 * 300).iter().map(|v| v * 1e4).collect();
        let mut s = vec![0.0; 300 * 300];
        // SAFETY: callers checked `supported`.
        unsafe {
            pack_keys(&mut b, &junk, 300, 200, 151);
            pack_values(&mut b, &junk, 300, 201, 150);
            scores(&mut s, &junk, 300, &mut b, 40, 200, 151);
            context(&mut s, &junk, 300, &mut b, 40, 201, 150);
        }
        b
    }

    /// The sum of x_i y_i with both rounded to bf16 must be within the f32 accumulation
    /// bound (d + 2) 2^-24 sum |x_i y_i| of `got` (the products are exact); against the
    /// unrounded operands, within that plus 1.01 (2 2^-8) sum |x_i y_i| (each operand
    /// off by at most 2^-8 of itself: 8 significant bits).
    fn close(got: f32, terms: impl Iterator<Item = (f32, f32)>) -> Result<(), String> {
        let (mut rounded, mut exact, mut size, mut n) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
        for (x, y) in terms {
            let (xr, yr) = (from_bf16(to_bf16(x)), from_bf16(to_bf16(y)));
            rounded += xr as f64 * yr as f64;
            exact += x as f64 * y as f64;
            size += (x as f64 * y as f64).abs();
            n += 1.0;
        }
        let accumulation = (n + 2.0) * 2f64.powi(-24) * size + 1e-30;
        let rounding = 1.01 * 2.0 * 2f64.powi(-8) * size;
        let got = got as f64;
        if (got - rounded).abs() > accumulation {
            return Err(format!(
                "{got} vs {rounded} from bf16 operands (bound {accumulation:e})"
            ));
        }
        if (got - exact).abs() > accumulation + rounding {
            return Err(format!(
                "{got} vs {exact} (bound {:e})",
                accumulation + rounding
            ));
        }
        Ok(())
    }

    use super::super::TEST_SHAPES as SHAPES;

    #[test]
    fn scores_are_within_the_bf16_bound_of_float64() {
        if !supported() {
            return;
        }
        for (c, &(rows, lk, d)) in SHAPES.iter().enumerate() {
            let (qs, ks) = (d + 3, 2 * d + 1);
            let q = noise(c as u64, rows * qs);
            let k = noise(50 + c as u64, lk * ks);
            let mut s = vec![f32::NAN; rows * lk + 5];
            let mut b = used_buffers();
            // SAFETY: supported; the keys are packed just before.
            unsafe {
                pack_keys(&mut b, &k, ks, lk, d);
                scores(&mut s, &q, qs, &mut b, rows, lk, d);
            }
            for i in 0..rows {
                for j in 0..lk {
                    let terms = (0..d).map(|e| (q[i * qs + e], k[j * ks + e]));
                    close(s[i * lk + j], terms)
                        .unwrap_or_else(|m| panic!("{rows}x{lk}x{d}, score ({i}, {j}): {m}"));
                }
            }
            assert!(
                s[rows * lk..].iter().all(|v| v.is_nan()),
                "wrote past the scores"
            );
        }
    }

    #[test]
    fn context_is_within_the_bf16_bound_of_float64() {
        if !supported() {
            return;
        }
        for (c, &(rows, lk, d)) in SHAPES.iter().enumerate() {
            let (ps, vs) = (lk + 5, d + 2);
            // Probabilities in [0, 1), some exactly zero.
            let p: Vec<f32> = noise(c as u64, rows * ps)
                .iter()
                .map(|v| if *v < -0.8 { 0.0 } else { (v + 1.0) / 2.0 })
                .collect();
            let v = noise(70 + c as u64, lk * vs);
            let mut out = vec![f32::NAN; rows * d + 5];
            let mut b = used_buffers();
            // SAFETY: supported; the values are packed just before.
            unsafe {
                pack_values(&mut b, &v, vs, lk, d);
                context(&mut out, &p, ps, &mut b, rows, lk, d);
            }
            for i in 0..rows {
                for e in 0..d {
                    let terms = (0..lk).map(|j| (p[i * ps + j], v[j * vs + e]));
                    close(out[i * d + e], terms)
                        .unwrap_or_else(|m| panic!("{rows}x{lk}x{d}, context ({i}, {e}): {m}"));
                }
            }
            assert!(
                out[rows * d..].iter().all(|v| v.is_nan()),
                "wrote past the context"
            );
        }
    }

    #[test]
    fn a_row_does_not_depend_on_its_neighbours_or_on_padding_keys() {
        if !supported() {
            return;
        }
        // An odd number of keys: alone, the last one pairs with zero; among more keys,
        // with a padding key.
        let (rows, lk, d, more) = (20, 37, 40, 30);
        let q = noise(1, rows * d);
        let k = noise(2, (lk + more) * d);
        let (mut alone, mut among) = (vec![0.0; lk], vec![0.0; rows * (lk + more)]);
        let mut b = used_buffers();
        // SAFETY: supported; each product follows its packing.
        unsafe {
            pack_keys(&mut b, &k[..lk * d], d, lk, d);
            scores(&mut alone, &q[3 * d..4 * d], d, &mut b, 1, lk, d);
            pack_keys(&mut b, &k, d, lk + more, d);
            scores(&mut among, &q, d, &mut b, rows, lk + more, d);
        }
        for j in 0..lk {
            let (x, y) = (alone[j], among[3 * (lk + more) + j]);
            assert_eq!(x.to_bits(), y.to_bits(), "score key {j}");
        }
        // Probabilities of row 3 alone over lk keys, and among other rows with more keys
        // of probability zero (the padding of a longer batch).
        let mut p = noise(3, rows * (lk + more));
        for (i, row) in p.chunks_exact_mut(lk + more).enumerate() {
            row.iter_mut().for_each(|x| *x = (*x + 1.0) / 2.0);
            if i == 3 {
                row[lk..].fill(0.0);
            }
        }
        let v = noise(4, (lk + more) * d);
        let row3 = p[3 * (lk + more)..3 * (lk + more) + lk].to_vec();
        let (mut alone, mut among) = (vec![0.0; d], vec![0.0; rows * d]);
        // SAFETY: as above.
        unsafe {
            pack_values(&mut b, &v[..lk * d], d, lk, d);
            context(&mut alone, &row3, lk, &mut b, 1, lk, d);
            pack_values(&mut b, &v, d, lk + more, d);
            context(&mut among, &p, lk + more, &mut b, rows, lk + more, d);
        }
        for e in 0..d {
            let (x, y) = (alone[e], among[3 * d + e]);
            assert_eq!(x.to_bits(), y.to_bits(), "context dim {e}");
        }
    }
}
