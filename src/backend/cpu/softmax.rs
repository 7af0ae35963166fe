//! The attention softmax over one row of scores: scale, mask, exponentiate, normalize.
//! Every instruction set gives the same bits (one portable body, compiled per
//! instruction set), and a row's probabilities do not depend on how far its batch pads
//! the keys.

use super::fastmath;
use super::gemm::Isa;

/// Scales `row` by `scale`, masks keys j >= `visible` or with keep[j] == 0, and turns it
/// into probabilities (keys past `visible` get exact zeros). A row with every key masked
/// gets uniform weights over its whole length, as transformers' additive finfo.min
/// mask gives.
pub fn softmax_row(isa: Isa, row: &mut [f32], scale: f32, keep: &[u8], visible: usize) {
    match if isa.supported() { isa } else { Isa::detect() } {
        // SAFETY: the instruction set is supported (checked above).
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { avx512(row, scale, keep, visible) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { avx2(row, scale, keep, visible) },
        _ => portable(row, scale, keep, visible),
    }
}

/// [`portable`] compiled for AVX-512 (its exp loop on zmm lanes). A hand-vectorized
/// version doing the same operations measured no faster: the exp's dependent multiplies
/// and adds bound it either way.
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn avx512(row: &mut [f32], scale: f32, keep: &[u8], visible: usize) {
    portable(row, scale, keep, visible);
}

/// [`portable`] compiled for AVX2 + FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2(row: &mut [f32], scale: f32, keep: &[u8], visible: usize) {
    portable(row, scale, keep, visible);
}

/// [`softmax_row`] in plain Rust, written without branches in the inner loops so that
/// they vectorize; always inlined into the wrappers so that they vectorize for the
/// widest vectors. The reference order of every operation. Its exp is fused
/// ([`fastmath::exp_fused`]): one FMA per step where the wrapper enables FMA, a library
/// call (slower, the same bits) on a CPU without it.
#[inline(always)]
fn portable(row: &mut [f32], scale: f32, keep: &[u8], visible: usize) {
    let n = visible.min(row.len()).min(keep.len());
    let keep = &keep[..n];
    let (live, future) = row.split_at_mut(n);
    future.fill(0.0);
    // Sixteen partial maxima, with a plain comparison rather than f32::max (whose NaN
    // rule keeps the compiler from vectorizing the reduction).
    let lane_max = |m: f32, v: f32, k: u8| {
        let v = if k != 0 { v } else { f32::NEG_INFINITY };
        if v > m {
            v
        } else {
            m
        }
    };
    let mut maxima = [f32::NEG_INFINITY; 16];
    let mut chunks = live.chunks_exact_mut(16);
    let mut keeps = keep.chunks_exact(16);
    for (c, kc) in (&mut chunks).zip(&mut keeps) {
        for ((m, v), &k) in maxima.iter_mut().zip(c.iter_mut()).zip(kc) {
            *v *= scale;
            *m = lane_max(*m, *v, k);
        }
    }
    // Folded in halves (a fixed tree that vectorizes; a maximum's order changes no bits).
    let mut max = tree(maxima, |a, b| lane_max(a, b, 1));
    for (v, &k) in chunks.into_remainder().iter_mut().zip(keeps.remainder()) {
        *v *= scale;
        max = lane_max(max, *v, k);
    }
    if max == f32::NEG_INFINITY {
        let uniform = 1.0 / row.len() as f32;
        row.fill(uniform);
        return;
    }
    // Exponentials, summed as they are made into thirty-two partial sums (short chains of
    // vector adds), value j always in lane j % 32, the tail too, then folded in halves:
    // padding keys add exact zeros to the same lanes, so a row's sum, and its
    // probabilities, do not depend on how far its batch is padded.
    let exp_into = |l: &mut f32, v: &mut f32, k: u8| {
        let e = fastmath::exp_fused(*v - max);
        *v = if k != 0 { e } else { 0.0 };
        *l += *v;
    };
    let mut lanes = [0.0f32; 32];
    let mut chunks = live.chunks_exact_mut(32);
    let mut keeps = keep.chunks_exact(32);
    for (c, kc) in (&mut chunks).zip(&mut keeps) {
        for ((l, v), &k) in lanes.iter_mut().zip(c).zip(kc) {
            exp_into(l, v, k);
        }
    }
    let tail = chunks.into_remainder().iter_mut().zip(keeps.remainder());
    for (l, (v, &k)) in lanes.iter_mut().zip(tail) {
        exp_into(l, v, k);
    }
    let sum = tree(lanes, |a, b| a + b);
    let inv = 1.0 / sum;
    for v in live.iter_mut() {
        *v *= inv;
    }
}

/// lanes[0] op lanes[N/2] ... folded in halves down to one value (N a power of two).
#[inline(always)]
fn tree<const N: usize>(mut lanes: [f32; N], op: impl Fn(f32, f32) -> f32) -> f32 {
    let mut width = N / 2;
    while width > 0 {
        for i in 0..width {
            lanes[i] = op(lanes[i], lanes[i + width]);
        }
        width /= 2;
    }
    lanes[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in [-1, 1).
    fn noise(seed: u64, n: usize) -> Vec<f32> {
        crate::backend::cpu::gemm::tests::random(n, seed)
    }

    /// Rows of awkward lengths, visible prefixes and masks (none, some, all masked).
    fn cases() -> Vec<(Vec<f32>, Vec<u8>, usize)> {
        let mut out = Vec::new();
        for (c, n) in [
            1usize, 2, 7, 8, 9, 15, 16, 17, 31, 33, 64, 127, 128, 129, 300,
        ]
        .into_iter()
        .enumerate()
        {
            let row: Vec<f32> = noise(c as u64, n).iter().map(|v| v * 40.0).collect();
            let bits = noise(100 + c as u64, n);
            for masking in 0..3 {
                let keep: Vec<u8> = bits
                    .iter()
                    .map(|&b| match masking {
                        0 => 1,
                        1 => u8::from(b > -0.4),
                        _ => 0,
                    })
                    .collect();
                for visible in [n, n / 2 + 1, n + 5] {
                    out.push((row.clone(), keep.clone(), visible));
                }
            }
        }
        out
    }

    #[test]
    fn every_instruction_set_gives_the_portable_bits() {
        for (row, keep, visible) in cases() {
            let mut want = row.clone();
            portable(&mut want, 0.3, &keep, visible);
            for isa in [Isa::Avx512, Isa::Avx2] {
                if !isa.supported() {
                    continue;
                }
                let mut got = row.clone();
                softmax_row(isa, &mut got, 0.3, &keep, visible);
                let same = want
                    .iter()
                    .zip(&got)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{isa:?}, {} keys, {visible} visible", row.len());
            }
        }
    }

    #[test]
    fn matches_a_float64_softmax() {
        for (row, keep, visible) in cases() {
            let mut got = row.clone();
            softmax_row(Isa::detect(), &mut got, 0.3, &keep, visible);
            let n = visible.min(row.len());
            let live: Vec<bool> = (0..row.len()).map(|j| j < n && keep[j] != 0).collect();
            let max = (0..row.len())
                .filter(|&j| live[j])
                .map(|j| row[j] as f64 * 0.3f32 as f64)
                .fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = (0..row.len())
                .map(|j| {
                    if live[j] {
                        (row[j] as f64 * 0.3f32 as f64 - max).exp()
                    } else {
                        0.0
                    }
                })
                .collect();
            let sum: f64 = e.iter().sum();
            for (j, &g) in got.iter().enumerate() {
                let want = if sum > 0.0 {
                    e[j] / sum
                } else {
                    1.0 / row.len() as f64
                };
                assert!(
                    (g as f64 - want).abs() <= 1e-6 * want.max(1e-3),
                    "{} keys, {visible} visible, key {j}: {g} vs {want}",
                    row.len()
                );
            }
        }
    }
}
