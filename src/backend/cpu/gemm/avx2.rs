//! AVX2 + FMA microkernel: a 4 x 24 tile in 12 ymm accumulators, run twice per 48-column
//! panel (its two halves), for x86-64 machines without AVX-512.

use std::arch::x86_64::*;

use super::{Start, Tile, NR};
use crate::backend::cpu::activation;
use crate::config::Activation;

/// Rows of the register tile.
pub const MR: usize = 4;

/// Ymm vectors per half panel.
const V: usize = NR / 2 / 8;

/// Runs one tile of 1..=MR rows over a whole panel.
///
/// # Safety
/// The CPU must support AVX2 and FMA, and `t` must describe readable/writable memory as
/// documented on [`Tile`], with `t.rows <= MR`.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn tile(t: &Tile) {
    for half in [0, NR / 2] {
        match t.rows {
            1 => half_m::<1>(t, half),
            2 => half_m::<2>(t, half),
            3 => half_m::<3>(t, half),
            _ => half_m::<MR>(t, half),
        }
    }
}

/// Columns `col0..col0 + NR / 2` of the tile.
#[inline(always)]
unsafe fn half_m<const M: usize>(t: &Tile, col0: usize) {
    let mut acc = [[_mm256_setzero_ps(); V]; M];
    match t.start {
        Start::Zero => {}
        Start::Bias(bias) => {
            let b: [__m256; V] = std::array::from_fn(|j| _mm256_loadu_ps(bias.add(col0 + 8 * j)));
            acc = [b; M];
        }
        Start::Load => {
            for (i, row) in acc.iter_mut().enumerate() {
                for (j, v) in row.iter_mut().enumerate() {
                    *v = _mm256_loadu_ps(t.c.add(i * t.ldc + col0 + 8 * j));
                }
            }
        }
    }
    let mut a = t.a;
    let mut b = t.b.add(col0);
    for _ in 0..t.kc {
        let bv: [__m256; V] = std::array::from_fn(|j| _mm256_load_ps(b.add(8 * j)));
        for (i, row) in acc.iter_mut().enumerate() {
            let ai = _mm256_set1_ps(*a.add(i * t.lda));
            for (v, &bj) in row.iter_mut().zip(&bv) {
                *v = _mm256_fmadd_ps(ai, bj, *v);
            }
        }
        a = a.add(1);
        b = b.add(NR);
    }
    for (i, row) in acc.iter().enumerate() {
        for (j, v) in row.iter().enumerate() {
            _mm256_storeu_ps(t.c.add(i * t.ldc + col0 + 8 * j), *v);
        }
    }
}

/// Applies `act` to `xs`, compiled for AVX2 + FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn activate(act: Activation, xs: &mut [f32]) {
    activation::apply_slice(act, xs);
}
