//! AVX2 + FMA microkernel: a 6 x 16 tile in 12 ymm accumulators (with the two B vectors
//! and the broadcast, 15 of the 16 ymm registers; a 4 x 24 tile needs all 16 and LLVM
//! spills it), run three times per 48-column panel, for x86-64 machines without AVX-512.

use std::arch::x86_64::*;

use super::{Start, Tile, NR};
use crate::backend::cpu::activation;
use crate::config::Activation;

/// Rows of the register tile.
pub const MR: usize = 6;

/// Columns per pass over the panel.
const W: usize = 16;

/// Ymm vectors per pass.
const V: usize = W / 8;

/// Runs one tile of 1..=MR rows over a whole panel.
///
/// # Safety
/// The CPU must support AVX2 and FMA, and `t` must describe readable/writable memory as
/// documented on [`Tile`], with `t.rows <= MR`.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn tile(t: &Tile) {
    for col0 in (0..NR).step_by(W) {
        match t.rows {
            1 => part_m::<1>(t, col0),
            2 => part_m::<2>(t, col0),
            3 => part_m::<3>(t, col0),
            4 => part_m::<4>(t, col0),
            5 => part_m::<5>(t, col0),
            _ => part_m::<MR>(t, col0),
        }
    }
}

/// Columns `col0..col0 + W` of the tile.
#[inline(always)]
unsafe fn part_m<const M: usize>(t: &Tile, col0: usize) {
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
