//! The two products of one (sequence, head) attention pair, written so that every
//! output is the same sum in the same order whatever the pair's lengths are:
//! - scores: s[i, j] = q_i · k_j, summed over the head's d values in order;
//! - context: c[i, :] = sum over keys j in order of p[i, j] v_j.
//!
//! So a sequence's attention does not depend on how far its batch pads it (a padding key
//! only adds p = 0 terms, exact zeros, at the end of each sum) nor on how many queries
//! run beside it. Both vectorize across 16 lanes that hold independent outputs (16 keys
//! for the scores, 16 of the d values for the context), never across a sum.

use super::gemm::Isa;

#[cfg(target_arch = "x86_64")]
/// Calls `$tile::<M, $nv>(args)` for M = `$m` (1..=8, the AVX-512 kernels' query tile):
/// the tile's row count as a constant, so that its accumulators stay in registers.
macro_rules! by_queries {
    ($m:expr, $tile:ident, $nv:literal, $($arg:expr),*) => {
        match $m {
            1 => $tile::<1, $nv>($($arg),*),
            2 => $tile::<2, $nv>($($arg),*),
            3 => $tile::<3, $nv>($($arg),*),
            4 => $tile::<4, $nv>($($arg),*),
            5 => $tile::<5, $nv>($($arg),*),
            6 => $tile::<6, $nv>($($arg),*),
            7 => $tile::<7, $nv>($($arg),*),
            _ => $tile::<8, $nv>($($arg),*),
        }
    };
}

#[cfg(target_arch = "x86_64")]
pub mod amx;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
pub mod bf16;

/// (query rows, keys, head dims) the products' tests cover.
#[cfg(all(test, target_arch = "x86_64"))]
const TEST_SHAPES: [(usize, usize, usize); 8] = [
    // (rows, keys, head dims)
    (1, 1, 12),
    (5, 17, 12),
    (9, 32, 32),
    (17, 129, 48),
    (32, 128, 64),
    (3, 33, 100),
    (40, 7, 1),
    (8, 3, 7),
];

/// Lanes: outputs computed side by side.
const L: usize = 16;

/// Lanes `0..n` of a 16-lane mask (all sixteen for n >= 16).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn lanes(n: usize) -> u16 {
    if n >= 16 {
        0xffff
    } else {
        (1u16 << n) - 1
    }
}

/// Rows ahead of the one being packed that [`prefetch_row`] asks for: the rows of a pair
/// lie a token apart (kilobytes), too far for the hardware prefetchers, so every row
/// would otherwise wait on its own miss.
#[cfg(target_arch = "x86_64")]
const AHEAD: usize = 8;

/// Asks for the cache lines of row `i` (of `d` values at stride `rs`) if `i < rows`.
///
/// # Safety
/// None beyond the call itself: a prefetch never faults, and the address is formed by
/// wrapping arithmetic.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn prefetch_row(src: &[f32], rs: usize, i: usize, rows: usize, d: usize) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    if i < rows && d > 0 {
        let row = src.as_ptr().wrapping_add(i * rs);
        for e in (0..d).step_by(16) {
            _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(e).cast());
        }
        // The row's last line, when it does not start a line of its own.
        _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(d - 1).cast());
    }
}

/// Packs k ([lk rows of stride k_rs, d values each]) into `kt` as Kᵀ: [d, lk rounded up
/// to L], zero padded. Done once per (sequence, head) pair, for all its query blocks.
pub fn pack_keys(kt: &mut Vec<f32>, k: &[f32], k_rs: usize, lk: usize, d: usize) {
    assert!(
        lk == 0 || (lk - 1) * k_rs + d <= k.len(),
        "attention: short k"
    );
    let width = lk.next_multiple_of(L);
    // Every value below lk is written next: only the padding keys need zeros (the buffer
    // is reused pair after pair, so zeroing all of it would write it twice).
    kt.resize(d * width, 0.0);
    for row in kt.chunks_exact_mut(width) {
        row[lk..].fill(0.0);
    }
    // Whole 8 x 8 blocks by register transposes where the CPU has AVX, the rest (or all)
    // value by value.
    let (mut keys, mut dims) = (0, 0);
    #[cfg(target_arch = "x86_64")]
    if Isa::detect() != Isa::Scalar {
        (keys, dims) = (lk / 8 * 8, d / 8 * 8);
        // SAFETY: AVX2 (so AVX) is supported; the blocks lie inside k (asserted above)
        // and kt (d rows of width >= lk).
        unsafe { transpose_blocks(kt, width, k, k_rs, keys, dims) };
    }
    for j in 0..lk {
        let from = if j < keys { dims } else { 0 };
        for dd in from..d {
            kt[dd * width + j] = k[j * k_rs + dd];
        }
    }
}

/// kt[dd * width + j] = k[j * k_rs + dd] for j < keys and dd < dims (both multiples of
/// 8), by 8 x 8 register transposes.
///
/// # Safety
/// The CPU must support AVX; k holds the keys' rows and kt `dims` rows of `width`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn transpose_blocks(
    kt: &mut [f32],
    width: usize,
    k: &[f32],
    k_rs: usize,
    keys: usize,
    dims: usize,
) {
    use std::arch::x86_64::*;
    debug_assert!(keys == 0 || (keys - 1) * k_rs + dims <= k.len());
    debug_assert!(dims == 0 || (dims - 1) * width + keys <= kt.len());
    for j0 in (0..keys).step_by(8) {
        for i in 0..8 {
            prefetch_row(k, k_rs, j0 + AHEAD + i, keys, dims);
        }
        for d0 in (0..dims).step_by(8) {
            let r: [__m256; 8] =
                std::array::from_fn(|i| _mm256_loadu_ps(k.as_ptr().add((j0 + i) * k_rs + d0)));
            // Pairs of rows interleaved, then quads, then the halves swapped into place:
            // c[i] holds value d0 + i of the 8 keys.
            let t = [
                _mm256_unpacklo_ps(r[0], r[1]),
                _mm256_unpackhi_ps(r[0], r[1]),
                _mm256_unpacklo_ps(r[2], r[3]),
                _mm256_unpackhi_ps(r[2], r[3]),
                _mm256_unpacklo_ps(r[4], r[5]),
                _mm256_unpackhi_ps(r[4], r[5]),
                _mm256_unpacklo_ps(r[6], r[7]),
                _mm256_unpackhi_ps(r[6], r[7]),
            ];
            let s = [
                _mm256_shuffle_ps::<0x44>(t[0], t[2]),
                _mm256_shuffle_ps::<0xEE>(t[0], t[2]),
                _mm256_shuffle_ps::<0x44>(t[1], t[3]),
                _mm256_shuffle_ps::<0xEE>(t[1], t[3]),
                _mm256_shuffle_ps::<0x44>(t[4], t[6]),
                _mm256_shuffle_ps::<0xEE>(t[4], t[6]),
                _mm256_shuffle_ps::<0x44>(t[5], t[7]),
                _mm256_shuffle_ps::<0xEE>(t[5], t[7]),
            ];
            let c = [
                _mm256_permute2f128_ps::<0x20>(s[0], s[4]),
                _mm256_permute2f128_ps::<0x20>(s[1], s[5]),
                _mm256_permute2f128_ps::<0x20>(s[2], s[6]),
                _mm256_permute2f128_ps::<0x20>(s[3], s[7]),
                _mm256_permute2f128_ps::<0x31>(s[0], s[4]),
                _mm256_permute2f128_ps::<0x31>(s[1], s[5]),
                _mm256_permute2f128_ps::<0x31>(s[2], s[6]),
                _mm256_permute2f128_ps::<0x31>(s[3], s[7]),
            ];
            for (i, &col) in c.iter().enumerate() {
                _mm256_storeu_ps(kt.as_mut_ptr().add((d0 + i) * width + j0), col);
            }
        }
    }
}

/// Packs v ([lk rows of stride v_rs, d values each]) into `vp`: [lk, d rounded up to L],
/// zero padded.
pub fn pack_values(vp: &mut Vec<f32>, v: &[f32], v_rs: usize, lk: usize, d: usize) {
    assert!(
        lk == 0 || (lk - 1) * v_rs + d <= v.len(),
        "attention: short v"
    );
    let width = d.next_multiple_of(L);
    vp.resize(lk * width, 0.0);
    for (j, row) in vp.chunks_exact_mut(width).take(lk).enumerate() {
        // SAFETY: a prefetch only (see `prefetch_row`).
        #[cfg(target_arch = "x86_64")]
        unsafe {
            prefetch_row(v, v_rs, j + AHEAD, lk, d)
        };
        row[..d].copy_from_slice(&v[j * v_rs..j * v_rs + d]);
        row[d..].fill(0.0);
    }
}

/// scores[i * lk + j] = q[i * q_rs..][..d] · k_j for i < lq, j < lk, from Kᵀ packed by
/// [`pack_keys`].
pub fn scores(
    scores: &mut [f32],
    q: &[f32],
    q_rs: usize,
    kt: &[f32],
    lq: usize,
    lk: usize,
    d: usize,
) {
    scores_with(Isa::detect(), scores, q, q_rs, kt, lq, lk, d);
}

/// [`scores`] with `isa`'s instructions (one this CPU lacks: the best it has); every
/// instruction set gives the same bits.
#[allow(clippy::too_many_arguments)]
fn scores_with(
    isa: Isa,
    scores: &mut [f32],
    q: &[f32],
    q_rs: usize,
    kt: &[f32],
    lq: usize,
    lk: usize,
    d: usize,
) {
    assert!(
        scores.len() >= lq * lk,
        "attention scores: short destination"
    );
    assert!(
        lq == 0 || (lq - 1) * q_rs + d <= q.len(),
        "attention: short q"
    );
    assert!(
        kt.len() >= d * lk.next_multiple_of(L),
        "attention: short Kᵀ"
    );
    match if isa.supported() { isa } else { Isa::detect() } {
        // SAFETY: the instruction set is supported (checked above).
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { avx512::scores(scores, q, q_rs, kt, lq, lk, d) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { scores_avx2(scores, q, q_rs, kt, lq, lk, d) },
        _ => scores_body(scores, q, q_rs, kt, lq, lk, d),
    }
}

/// [`scores_body`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn scores_avx2(
    s: &mut [f32],
    q: &[f32],
    q_rs: usize,
    kt: &[f32],
    lq: usize,
    lk: usize,
    d: usize,
) {
    scores_body(s, q, q_rs, kt, lq, lk, d);
}

/// The scores from Kᵀ packed [d, lk rounded up to L]: per query, blocks of L keys, each
/// lane summing q[dd] k[j, dd] over dd in order, each term one fused multiply-add
/// (`f32::mul_add`: one rounding, which every instruction set computes alike, so every
/// instruction set gives the same bits).
#[inline(always)]
fn scores_body(s: &mut [f32], q: &[f32], q_rs: usize, kt: &[f32], lq: usize, lk: usize, d: usize) {
    let width = lk.next_multiple_of(L);
    for i in 0..lq {
        let qi = &q[i * q_rs..i * q_rs + d];
        let row = &mut s[i * lk..(i + 1) * lk];
        for j0 in (0..lk).step_by(L) {
            let mut acc = [0.0f32; L];
            for (dd, &qv) in qi.iter().enumerate() {
                let kv: &[f32; L] = kt[dd * width + j0..][..L].try_into().expect("L lanes");
                for (a, &kv) in acc.iter_mut().zip(kv) {
                    *a = qv.mul_add(kv, *a);
                }
            }
            let n = L.min(lk - j0);
            row[j0..j0 + n].copy_from_slice(&acc[..n]);
        }
    }
}

/// ctx[i * d..][..d] = sum over j < lk of p[i * lk + j] v_j, for i < lq, from V packed by
/// [`pack_values`].
pub fn context(ctx: &mut [f32], p: &[f32], vp: &[f32], lq: usize, lk: usize, d: usize) {
    context_with(Isa::detect(), ctx, p, vp, lq, lk, d);
}

/// [`context`] with `isa`'s instructions (one this CPU lacks: the best it has); every
/// instruction set gives the same bits.
fn context_with(isa: Isa, ctx: &mut [f32], p: &[f32], vp: &[f32], lq: usize, lk: usize, d: usize) {
    assert!(ctx.len() >= lq * d, "attention context: short destination");
    assert!(p.len() >= lq * lk, "attention: short probabilities");
    assert!(vp.len() >= lk * d.next_multiple_of(L), "attention: short V");
    match if isa.supported() { isa } else { Isa::detect() } {
        // SAFETY: the instruction set is supported (checked above).
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { avx512::context(ctx, p, vp, lq, lk, d) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { context_avx2(ctx, p, vp, lq, lk, d) },
        _ => context_body(ctx, p, vp, lq, lk, d),
    }
}

/// [`context_body`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn context_avx2(c: &mut [f32], p: &[f32], vp: &[f32], lq: usize, lk: usize, d: usize) {
    context_body(c, p, vp, lq, lk, d);
}

/// The context from V packed [lk, d rounded up to L]: per query, blocks of L values,
/// each lane summing p[j] v[j, dd] over the keys in order (fused multiply-adds).
#[inline(always)]
fn context_body(c: &mut [f32], p: &[f32], vp: &[f32], lq: usize, lk: usize, d: usize) {
    let width = d.next_multiple_of(L);
    for i in 0..lq {
        let pi = &p[i * lk..(i + 1) * lk];
        let out = &mut c[i * d..(i + 1) * d];
        for d0 in (0..d).step_by(L) {
            let mut acc = [0.0f32; L];
            for (j, &pv) in pi.iter().enumerate() {
                let vv: &[f32; L] = vp[j * width + d0..][..L].try_into().expect("L lanes");
                for (a, &vv) in acc.iter_mut().zip(vv) {
                    *a = pv.mul_add(vv, *a);
                }
            }
            let n = L.min(d - d0);
            out[d0..d0 + n].copy_from_slice(&acc[..n]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every instruction set this CPU has (an unsupported one runs the best supported).
    const ISAS: [Isa; 3] = [Isa::Avx512, Isa::Avx2, Isa::Scalar];

    #[allow(clippy::too_many_arguments)]
    fn scores_raw(
        isa: Isa,
        s: &mut [f32],
        q: &[f32],
        q_rs: usize,
        k: &[f32],
        k_rs: usize,
        lq: usize,
        lk: usize,
        d: usize,
    ) {
        // A reused buffer holds an earlier pair's values: start from NaN garbage.
        let mut kt = vec![f32::NAN; 5000];
        pack_keys(&mut kt, k, k_rs, lk, d);
        scores_with(isa, s, q, q_rs, &kt, lq, lk, d);
    }

    #[allow(clippy::too_many_arguments)]
    fn context_raw(
        isa: Isa,
        c: &mut [f32],
        p: &[f32],
        v: &[f32],
        v_rs: usize,
        lq: usize,
        lk: usize,
        d: usize,
    ) {
        let mut vp = vec![f32::NAN; 5000];
        pack_values(&mut vp, v, v_rs, lk, d);
        context_with(isa, c, p, &vp, lq, lk, d);
    }

    fn same_bits(a: &[f32], b: &[f32]) -> bool {
        a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
    }

    /// Both products against f64 sums over awkward lengths and widths, bit-identical on
    /// every instruction set, and a row's results unchanged (bit for bit) when more keys
    /// with p = 0 follow.
    #[test]
    fn match_f64_and_ignore_trailing_zero_keys() {
        let mut seed = 1u32;
        let mut next = || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        for (lq, lk, d) in [
            (1, 1, 1),
            (3, 17, 12),
            (5, 33, 64),
            (2, 70, 20),
            (17, 16, 32),
            (13, 47, 32),
            (26, 129, 64),
            (9, 64, 48),
        ] {
            let (q_rs, k_rs) = (d + 3, 2 * d + 1);
            let q: Vec<f32> = (0..lq * q_rs).map(|_| next()).collect();
            let k: Vec<f32> = (0..(lk + 5) * k_rs).map(|_| next()).collect();
            let mut s = vec![f32::NAN; lq * lk];
            scores_raw(Isa::detect(), &mut s, &q, q_rs, &k, k_rs, lq, lk, d);
            for isa in ISAS {
                let mut other = vec![f32::NAN; lq * lk];
                scores_raw(isa, &mut other, &q, q_rs, &k, k_rs, lq, lk, d);
                assert!(
                    same_bits(&s, &other),
                    "scores on {isa:?} differ ({lq}x{lk}x{d})"
                );
            }
            for i in 0..lq {
                for j in 0..lk {
                    let want: f64 = (0..d)
                        .map(|dd| f64::from(q[i * q_rs + dd]) * f64::from(k[j * k_rs + dd]))
                        .sum();
                    let got = f64::from(s[i * lk + j]);
                    assert!(
                        (got - want).abs() <= 1e-5 * d as f64,
                        "scores {lq}x{lk}x{d}"
                    );
                }
            }
            // Five more keys: the first lk scores of every query keep their bits.
            let mut longer = vec![f32::NAN; lq * (lk + 5)];
            scores_raw(
                Isa::detect(),
                &mut longer,
                &q,
                q_rs,
                &k,
                k_rs,
                lq,
                lk + 5,
                d,
            );
            for i in 0..lq {
                let same =
                    (0..lk).all(|j| longer[i * (lk + 5) + j].to_bits() == s[i * lk + j].to_bits());
                assert!(same, "scores changed with more keys ({lq}x{lk}x{d})");
            }
            let p: Vec<f32> = (0..lq * lk).map(|_| next().abs()).collect();
            let mut c = vec![f32::NAN; lq * d];
            context_raw(Isa::detect(), &mut c, &p, &k, k_rs, lq, lk, d);
            for isa in ISAS {
                let mut other = vec![f32::NAN; lq * d];
                context_raw(isa, &mut other, &p, &k, k_rs, lq, lk, d);
                assert!(
                    same_bits(&c, &other),
                    "context on {isa:?} differs ({lq}x{lk}x{d})"
                );
            }
            for i in 0..lq {
                for dd in 0..d {
                    let want: f64 = (0..lk)
                        .map(|j| f64::from(p[i * lk + j]) * f64::from(k[j * k_rs + dd]))
                        .sum();
                    let got = f64::from(c[i * d + dd]);
                    assert!(
                        (got - want).abs() <= 1e-5 * lk as f64,
                        "context {lq}x{lk}x{d}"
                    );
                }
            }
            let mut padded = vec![0.0f32; lq * (lk + 5)];
            for i in 0..lq {
                padded[i * (lk + 5)..i * (lk + 5) + lk].copy_from_slice(&p[i * lk..(i + 1) * lk]);
            }
            let mut c2 = vec![f32::NAN; lq * d];
            context_raw(Isa::detect(), &mut c2, &padded, &k, k_rs, lq, lk + 5, d);
            let same = c.iter().zip(&c2).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(
                same,
                "context changed with zero-probability keys ({lq}x{lk}x{d})"
            );
        }
    }
}
