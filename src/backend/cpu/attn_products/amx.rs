//! The two attention products on AMX tiles, for the low-precision backends: each operand
//! x is split into two bf16 values, hi = bf16(x) and lo = bf16(x - hi), and a product
//! x·y is taken as hi·hi' + hi·lo' + lo·hi' (the lo·lo' term, about 2^-18 of x·y, is
//! dropped). With f32 accumulation inside the tiles that is within about 2^-16 of the
//! f32 product, far below the bf16 linears' error (2^-8), at a third of the AMX-BF16 rate,
//! which on an AMX core is still several times the f32 FMA rate.
//!
//! Layouts (all zero padded; the tile configuration is [`super::super::gemm::amx`]'s
//! sixteen rows of 64 bytes):
//! - queries and probabilities as A: rows of bf16, the reduction (head dims, keys)
//!   padded to a multiple of 32 values (one 64-byte tile row), rows to a multiple of 16;
//! - keys as B for the scores: for each pair of head dims p, every key's pair (k[j, 2p],
//!   k[j, 2p + 1]) side by side, keys padded to a multiple of 32;
//! - values as B for the context: for each pair of keys p, every dim's pair (v[2p, e],
//!   v[2p + 1, e]), dims padded to a multiple of 32.
//!
//! Every output is its own sequence of tile products, from zero, over its row of A and
//! column of B in k order; padding adds exact zeros, so a row's result depends neither
//! on the queries beside it nor on how far its batch pads the keys.

use std::arch::asm;
use std::arch::x86_64::*;

use super::super::gemm::amx;
use super::{lanes, prefetch_row, AHEAD};

/// Values of the reduction per tile row (64 bytes of bf16), and the padding unit of the
/// output widths (two 16-column C tiles per product call).
pub const STEP: usize = 32;

/// Rows of one tile.
pub const ROWS: usize = amx::TILE_ROWS;

/// Whether this CPU runs the split products (AMX-BF16, with AVX512-BF16 for the splits).
pub fn supported() -> bool {
    super::super::gemm::Path::Amx.bf16_supported() && is_x86_feature_detected!("avx512vl")
}

/// Loads the tile configuration on this thread (see [`amx::configure`]).
///
/// # Safety
/// [`supported`].
pub unsafe fn configure() {
    amx::configure();
}

/// One thread's split operands of a pair, reused pair after pair.
pub struct Buffers {
    pub q: Split,
    pub k: Split,
    pub v: Split,
    pub p: Split,
    /// A query block's context, rows of the head dims rounded up to [`STEP`].
    pub ctx: Vec<f32>,
}

impl Buffers {
    pub const fn new() -> Self {
        Buffers {
            q: Split::new(),
            k: Split::new(),
            v: Split::new(),
            p: Split::new(),
            ctx: Vec::new(),
        }
    }
}

/// A split operand: hi and lo halves in one layout.
#[derive(Default)]
pub struct Split {
    hi: Vec<u16>,
    lo: Vec<u16>,
}

impl Split {
    pub const fn new() -> Self {
        Split {
            hi: Vec::new(),
            lo: Vec::new(),
        }
    }

    /// Makes room for `len` values of each half; what they held is left (callers write
    /// every value they read, padding included).
    fn resize(&mut self, len: usize) {
        self.hi.resize(len, 0);
        self.lo.resize(len, 0);
    }
}

/// (bf16(x), bf16(x - bf16(x))) of 16 lanes, rounding to nearest even (`vcvtneps2bf16`,
/// which reads f32 subnormals as zero, as the tiles read bf16 subnormals).
#[inline(always)]
unsafe fn split16(x: __m512) -> (__m256i, __m256i) {
    // SAFETY (transmutes): __m256bh and __m256i are both 32 bytes of plain lanes.
    let h = std::mem::transmute::<__m256bh, __m256i>(_mm512_cvtneps_pbh(x));
    let back = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)));
    let l = std::mem::transmute::<__m256bh, __m256i>(_mm512_cvtneps_pbh(_mm512_sub_ps(x, back)));
    (h, l)
}

/// Splits `rows` rows of `d` values (row `i` at `src[i * rs..]`) into rows of
/// `width` (>= d, a multiple of 16) values, zero padded, then zero rows up to `rows_pad`.
///
/// # Safety
/// The CPU supports AVX-512F, BW, VL and AVX512-BF16; `src` holds the rows.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
unsafe fn split_rows(
    dst: &mut Split,
    src: &[f32],
    rs: usize,
    rows: usize,
    d: usize,
    width: usize,
    rows_pad: usize,
) {
    debug_assert!(width.is_multiple_of(16) && width >= d);
    assert!(
        rows == 0 || (rows - 1) * rs + d <= src.len(),
        "attention: short rows"
    );
    dst.resize(rows_pad * width);
    let (hi, lo) = (dst.hi.as_mut_ptr(), dst.lo.as_mut_ptr());
    for i in 0..rows_pad {
        prefetch_row(src, rs, i + AHEAD, rows, d);
        for e0 in (0..width).step_by(16) {
            let x = if i < rows && e0 < d {
                _mm512_maskz_loadu_ps(lanes(d - e0), src.as_ptr().add(i * rs + e0))
            } else {
                _mm512_setzero_ps()
            };
            let (h, l) = split16(x);
            let at = i * width + e0;
            _mm256_storeu_si256(hi.add(at).cast(), h);
            _mm256_storeu_si256(lo.add(at).cast(), l);
        }
    }
}

/// Queries (or any A operand): `rows` rows of `d` values at stride `rs`, split into rows
/// of `d` rounded up to [`STEP`], rows rounded up to [`ROWS`].
///
/// # Safety
/// [`supported`]; `src` holds the rows.
pub unsafe fn split_queries(dst: &mut Split, src: &[f32], rs: usize, rows: usize, d: usize) {
    split_rows(
        dst,
        src,
        rs,
        rows,
        d,
        d.next_multiple_of(STEP),
        rows.next_multiple_of(ROWS),
    );
}

/// Keys as the scores' B operand (see the module docs): 16 keys at a time, each dim of
/// the pair gathered across them, split, and the pairs' halves interleaved.
///
/// # Safety
/// [`supported`]; `src` holds `lk` rows of `d` values at stride `rs`, with
/// 15 * rs < 2^31.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
pub unsafe fn split_keys(dst: &mut Split, src: &[f32], rs: usize, lk: usize, d: usize) {
    let (dp, kp) = (d.next_multiple_of(STEP), lk.next_multiple_of(STEP));
    assert!(
        lk == 0 || (lk - 1) * rs + d <= src.len(),
        "attention: short k"
    );
    dst.resize(dp * kp);
    let index = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32(rs as i32),
    );
    for j0 in (0..kp).step_by(16) {
        for j in j0 + 16..j0 + 32 {
            prefetch_row(src, rs, j, lk, d);
        }
        let keys = if j0 < lk { lanes(lk - j0) } else { 0 };
        for p in 0..dp / 2 {
            // Dims 2p and 2p + 1 of keys j0..j0 + 16 (zero past lk and past d).
            let mut dims = [_mm512_setzero_ps(); 2];
            for (t, v) in dims.iter_mut().enumerate() {
                let e = 2 * p + t;
                if e < d && keys != 0 {
                    let base = src.as_ptr().add(j0 * rs + e);
                    *v = _mm512_mask_i32gather_ps::<4>(*v, keys, index, base.cast());
                }
            }
            let (even, odd) = (split16(dims[0]), split16(dims[1]));
            let at = (p * kp + j0) * 2;
            store_pairs(dst.hi[at..].as_mut_ptr(), even.0, odd.0);
            store_pairs(dst.lo[at..].as_mut_ptr(), even.1, odd.1);
        }
    }
}

/// Values as the context's B operand (see the module docs): for each pair of keys, 16
/// dims at a time, both keys' values split and interleaved.
///
/// # Safety
/// [`supported`]; `src` holds `lk` rows of `d` values at stride `rs`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
pub unsafe fn split_values(dst: &mut Split, src: &[f32], rs: usize, lk: usize, d: usize) {
    let (dp, kp) = (d.next_multiple_of(STEP), lk.next_multiple_of(STEP));
    assert!(
        lk == 0 || (lk - 1) * rs + d <= src.len(),
        "attention: short v"
    );
    dst.resize(kp * dp);
    for p in 0..kp / 2 {
        prefetch_row(src, rs, 2 * p + AHEAD, lk, d);
        prefetch_row(src, rs, 2 * p + 1 + AHEAD, lk, d);
        for e0 in (0..dp).step_by(16) {
            let dims = if e0 < d { lanes(d - e0) } else { 0 };
            let mut keys = [_mm512_setzero_ps(); 2];
            for (t, v) in keys.iter_mut().enumerate() {
                let j = 2 * p + t;
                if j < lk && dims != 0 {
                    *v = _mm512_maskz_loadu_ps(dims, src.as_ptr().add(j * rs + e0));
                }
            }
            let (even, odd) = (split16(keys[0]), split16(keys[1]));
            let at = (p * dp + e0) * 2;
            store_pairs(dst.hi[at..].as_mut_ptr(), even.0, odd.0);
            store_pairs(dst.lo[at..].as_mut_ptr(), even.1, odd.1);
        }
    }
}

/// Stores 16 pairs (even[i], odd[i]) of bf16 at `to` (32 values).
#[inline(always)]
unsafe fn store_pairs(to: *mut u16, even: __m256i, odd: __m256i) {
    let pairs = _mm512_or_si512(
        _mm512_cvtepu16_epi32(even),
        _mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(odd)),
    );
    _mm512_storeu_si512(to.cast(), pairs);
}

/// Probabilities: `rows` rows of `lk` values at stride `rs` (the scores buffer), split
/// into rows of `lk` rounded up to [`STEP`], rows up to [`ROWS`].
///
/// # Safety
/// [`supported`]; `src` holds the rows.
pub unsafe fn split_probs(dst: &mut Split, src: &[f32], rs: usize, rows: usize, lk: usize) {
    split_queries(dst, src, rs, rows, lk);
}

/// Scores: s[i * ls + j] = q_i · k_j for i < rows rounded up to 16 and j < lk rounded up
/// to [`STEP`] (ls >= that), from the split queries ([`split_queries`], with `d` head
/// dims) and keys ([`split_keys`]).
///
/// # Safety
/// [`supported`] and [`amx::configure`] ran on this thread with no other tile code since;
/// `q` and `k` were split for these `rows`, `lk` and `d`; `s` holds `rows` rounded up to
/// 16 rows of `ls` values.
pub unsafe fn scores(
    s: &mut [f32],
    ls: usize,
    q: &Split,
    k: &Split,
    rows: usize,
    lk: usize,
    d: usize,
) {
    let (dp, kp) = (d.next_multiple_of(STEP), lk.next_multiple_of(STEP));
    multiply(s, ls, q, k, rows, dp, kp);
}

/// Context: c[i * lc + e] = sum over keys j of p[i, j] v[j, e] for i < rows rounded up to
/// 16 and e < d rounded up to [`STEP`] (lc >= that), from the split probabilities
/// ([`split_probs`]) and values ([`split_values`]).
///
/// # Safety
/// As [`scores`], with `p` and `v` split for these `rows`, `lk` and `d`, and `c` holding
/// `rows` rounded up to 16 rows of `lc` values.
pub unsafe fn context(
    c: &mut [f32],
    lc: usize,
    p: &Split,
    v: &Split,
    rows: usize,
    lk: usize,
    d: usize,
) {
    let (dp, kp) = (d.next_multiple_of(STEP), lk.next_multiple_of(STEP));
    multiply(c, lc, p, v, rows, kp, dp);
}

/// c[i * ldc + j] = row i of `a` (`reduce` values) times column j of `b` (`width`
/// columns in the pair layout) for i < rows rounded up to 16 and j < width: the scores
/// and the context alike.
///
/// # Safety
/// As [`scores`]: `a` holds rows rounded up to 16 of `reduce` values, `b` `reduce` rows
/// of `width` (both multiples of [`STEP`]), `c` the rows of `ldc` >= `width` values.
unsafe fn multiply(
    c: &mut [f32],
    ldc: usize,
    a: &Split,
    b: &Split,
    rows: usize,
    reduce: usize,
    width: usize,
) {
    assert!(ldc >= width && c.len() >= rows.next_multiple_of(ROWS) * ldc);
    assert!(a.hi.len() >= rows.next_multiple_of(ROWS) * reduce && b.hi.len() >= reduce * width);
    for i0 in (0..rows).step_by(ROWS) {
        for j0 in (0..width).step_by(STEP) {
            let (at, bt) = (i0 * reduce, j0 * 2);
            product(
                [a.hi[at..].as_ptr(), a.lo[at..].as_ptr()],
                reduce * 2,
                [b.hi[bt..].as_ptr(), b.lo[bt..].as_ptr()],
                width * 4,
                reduce / STEP,
                c[i0 * ldc + j0..].as_mut_ptr(),
                ldc * 4,
            );
        }
    }
}

/// C[16, 32] = sum over `steps` k-steps of Ah·Bh + Ah·Bl + Al·Bh, in that order per
/// step: A's 16 rows of 64 bytes at stride `lda` bytes (step s at byte 64 s), B's two
/// 16-column tiles side by side (64 bytes apart) at stride `ldb` bytes (step s at row
/// 16 s), C's rows at stride `ldc` bytes. Two C tiles keep two chains of products in
/// flight (tmm0, tmm1); A's halves in tmm2, tmm3, B's in tmm4..tmm7.
///
/// # Safety
/// As [`scores`]: every tile lies inside its buffer.
unsafe fn product(
    a: [*const u16; 2],
    lda: usize,
    b: [*const u16; 2],
    ldb: usize,
    steps: usize,
    c: *mut f32,
    ldc: usize,
) {
    asm!("tilezero tmm0", "tilezero tmm1", options(nostack, nomem));
    for s in 0..steps {
        asm!(
            "tileloadd tmm2, [{ah} + {lda}]",
            "tileloadd tmm4, [{bh} + {ldb}]",
            "tileloadd tmm5, [{bh} + {ldb} + 64]",
            "tdpbf16ps tmm0, tmm2, tmm4",
            "tdpbf16ps tmm1, tmm2, tmm5",
            "tileloadd tmm6, [{bl} + {ldb}]",
            "tileloadd tmm7, [{bl} + {ldb} + 64]",
            "tdpbf16ps tmm0, tmm2, tmm6",
            "tdpbf16ps tmm1, tmm2, tmm7",
            "tileloadd tmm3, [{al} + {lda}]",
            "tdpbf16ps tmm0, tmm3, tmm4",
            "tdpbf16ps tmm1, tmm3, tmm5",
            ah = in(reg) a[0].cast::<u8>().add(s * 64),
            al = in(reg) a[1].cast::<u8>().add(s * 64),
            bh = in(reg) b[0].cast::<u8>().add(s * ROWS * ldb),
            bl = in(reg) b[1].cast::<u8>().add(s * ROWS * ldb),
            lda = in(reg) lda,
            ldb = in(reg) ldb,
            options(nostack, readonly),
        );
    }
    asm!(
        "tilestored [{c} + {ldc}], tmm0",
        "tilestored [{c} + {ldc} + 64], tmm1",
        c = in(reg) c,
        ldc = in(reg) ldc,
        options(nostack)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in [-1, 1).
    fn noise(seed: u64, n: usize) -> Vec<f32> {
        crate::backend::cpu::gemm::tests::random(n, seed)
    }

    /// Buffers holding another shape's leftovers, as a reused thread's do.
    fn used_buffers() -> Buffers {
        let mut b = Buffers::new();
        let junk: Vec<f32> = noise(99, 300 * 300).iter().map(|v| v * 1e4).collect();
        // SAFETY: callers checked `supported`.
        unsafe {
            split_queries(&mut b.q, &junk, 300, 40, 200);
            split_keys(&mut b.k, &junk, 300, 200, 150);
            split_values(&mut b.v, &junk, 300, 200, 150);
            split_probs(&mut b.p, &junk, 300, 40, 250);
        }
        b
    }

    /// |got - sum of x_i y_i| <= 2^-15 sum |x_i y_i| + 1e-30: the split products' bound
    /// (the dropped lo·lo' terms and the halves' rounding are each about 2^-16).
    fn close(got: f32, terms: impl Iterator<Item = (f32, f32)>) -> Result<(), String> {
        let (mut exact, mut size) = (0.0f64, 0.0f64);
        for (x, y) in terms {
            exact += x as f64 * y as f64;
            size += (x as f64 * y as f64).abs();
        }
        let bound = size * 2f64.powi(-15) + 1e-30;
        if (got as f64 - exact).abs() <= bound {
            Ok(())
        } else {
            Err(format!("{got} vs {exact} (bound {bound:e})"))
        }
    }

    use super::super::TEST_SHAPES as SHAPES;

    #[test]
    fn scores_are_within_the_split_bound_of_float64() {
        if !supported() {
            return;
        }
        for (c, &(rows, lk, d)) in SHAPES.iter().enumerate() {
            let (qs, ks) = (d + 3, 2 * d + 1);
            let q = noise(c as u64, rows * qs);
            let k = noise(50 + c as u64, lk * ks);
            let ls = lk.next_multiple_of(STEP) + 8;
            let mut s = vec![f32::NAN; rows.next_multiple_of(ROWS) * ls];
            let mut b = used_buffers();
            // SAFETY: supported; the buffers are split for this shape just before.
            unsafe {
                configure();
                split_queries(&mut b.q, &q, qs, rows, d);
                split_keys(&mut b.k, &k, ks, lk, d);
                scores(&mut s, ls, &b.q, &b.k, rows, lk, d);
            }
            for i in 0..rows {
                for j in 0..lk {
                    let terms = (0..d).map(|e| (q[i * qs + e], k[j * ks + e]));
                    close(s[i * ls + j], terms)
                        .unwrap_or_else(|m| panic!("{rows}x{lk}x{d}, score ({i}, {j}): {m}"));
                }
            }
        }
    }

    #[test]
    fn context_is_within_the_split_bound_of_float64() {
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
            let lc = d.next_multiple_of(STEP) + 16;
            let mut out = vec![f32::NAN; rows.next_multiple_of(ROWS) * lc];
            let mut b = used_buffers();
            // SAFETY: as in the scores test.
            unsafe {
                configure();
                split_probs(&mut b.p, &p, ps, rows, lk);
                split_values(&mut b.v, &v, vs, lk, d);
                context(&mut out, lc, &b.p, &b.v, rows, lk, d);
            }
            for i in 0..rows {
                for e in 0..d {
                    let terms = (0..lk).map(|j| (p[i * ps + j], v[j * vs + e]));
                    close(out[i * lc + e], terms)
                        .unwrap_or_else(|m| panic!("{rows}x{lk}x{d}, context ({i}, {e}): {m}"));
                }
            }
        }
    }

    /// Splits and multiplies queries/probabilities `a` (`rows` x `n`) by keys or values
    /// `b` (`lk` x `d`) as `scores` (kind 0) or `context` (kind 1), rows `n` and `d` apart.
    fn run(
        kind: u8,
        a: &[f32],
        rows: usize,
        n: usize,
        bm: &[f32],
        lk: usize,
        d: usize,
    ) -> Vec<f32> {
        let mut buf = used_buffers();
        let width = if kind == 0 { lk } else { d }.next_multiple_of(STEP);
        let mut out = vec![f32::NAN; rows.next_multiple_of(ROWS) * width];
        // SAFETY: supported (callers check); the operands are split just before.
        unsafe {
            configure();
            if kind == 0 {
                split_queries(&mut buf.q, a, n, rows, d);
                split_keys(&mut buf.k, bm, d, lk, d);
                scores(&mut out, width, &buf.q, &buf.k, rows, lk, d);
            } else {
                split_probs(&mut buf.p, a, n, rows, lk);
                split_values(&mut buf.v, bm, d, lk, d);
                context(&mut out, width, &buf.p, &buf.v, rows, lk, d);
            }
        }
        out
    }

    #[test]
    fn a_row_does_not_depend_on_its_neighbours_or_on_padding_keys() {
        if !supported() {
            return;
        }
        let (rows, lk, d) = (20, 37, 40);
        // Scores: query 3 alone and among others, keys 0..lk among more keys.
        let q = noise(1, rows * d);
        let k = noise(2, (lk + 30) * d);
        let alone = run(0, &q[3 * d..4 * d], 1, d, &k[..lk * d], lk, d);
        let among = run(0, &q, rows, d, &k, lk + 30, d);
        let wb = (lk + 30).next_multiple_of(STEP);
        for j in 0..lk {
            assert_eq!(
                alone[j].to_bits(),
                among[3 * wb + j].to_bits(),
                "score key {j}"
            );
        }
        // Context: probabilities of row 3 alone over lk keys, and among other rows with
        // 30 more keys of probability zero (the padding of a longer batch).
        let mut p = noise(3, rows * (lk + 30));
        for (i, row) in p.chunks_exact_mut(lk + 30).enumerate() {
            for x in row.iter_mut() {
                *x = (*x + 1.0) / 2.0;
            }
            if i == 3 {
                row[lk..].fill(0.0);
            }
        }
        let v = noise(4, (lk + 30) * d);
        let row3 = p[3 * (lk + 30)..3 * (lk + 30) + lk].to_vec();
        let alone = run(1, &row3, 1, lk, &v[..lk * d], lk, d);
        let among = run(1, &p, rows, lk + 30, &v, lk + 30, d);
        let w = d.next_multiple_of(STEP);
        for e in 0..d {
            assert_eq!(
                alone[e].to_bits(),
                among[3 * w + e].to_bits(),
                "context dim {e}"
            );
        }
    }
}
