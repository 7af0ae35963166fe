//! AVX-512F microkernel: an 8 x 48 tile of C in 24 zmm accumulators. Each k step loads
//! the panel's 48 values (three cache-line-aligned zmm loads) and broadcasts one x value
//! per row straight from row-major x, so x needs no packing.

use std::arch::x86_64::*;

use super::{Start, Tile, NR};
use crate::backend::cpu::activation;
use crate::config::Activation;

/// Rows of the register tile.
pub const MR: usize = 8;

/// Zmm vectors per panel row.
const V: usize = NR / 16;

/// Runs one tile of 1..=MR rows.
///
/// # Safety
/// The CPU must support AVX-512F, and `t` must describe readable/writable memory as
/// documented on [`Tile`], with `t.rows <= MR`.
#[target_feature(enable = "avx512f")]
pub unsafe fn tile(t: &Tile) {
    match t.rows {
        1 => tile_m::<1>(t),
        2 => tile_m::<2>(t),
        3 => tile_m::<3>(t),
        4 => tile_m::<4>(t),
        5 => tile_m::<5>(t),
        6 => tile_m::<6>(t),
        7 => tile_m::<7>(t),
        _ => tile_m::<MR>(t),
    }
}

#[inline(always)]
unsafe fn tile_m<const M: usize>(t: &Tile) {
    let mut acc = [[_mm512_setzero_ps(); V]; M];
    match t.start {
        Start::Zero => {}
        Start::Bias(bias) => {
            let b: [__m512; V] = std::array::from_fn(|j| _mm512_loadu_ps(bias.add(16 * j)));
            acc = [b; M];
        }
        Start::Load => {
            for (i, row) in acc.iter_mut().enumerate() {
                for (j, v) in row.iter_mut().enumerate() {
                    *v = _mm512_loadu_ps(t.c.add(i * t.ldc + 16 * j));
                }
            }
        }
    }
    let mut a = t.a;
    let mut b = t.b;
    for _ in 0..t.kc {
        let bv: [__m512; V] = std::array::from_fn(|j| _mm512_load_ps(b.add(16 * j)));
        for (i, row) in acc.iter_mut().enumerate() {
            let ai = _mm512_set1_ps(*a.add(i * t.lda));
            for (v, &bj) in row.iter_mut().zip(&bv) {
                *v = _mm512_fmadd_ps(ai, bj, *v);
            }
        }
        a = a.add(1);
        b = b.add(NR);
    }
    for (i, row) in acc.iter().enumerate() {
        for (j, v) in row.iter().enumerate() {
            _mm512_storeu_ps(t.c.add(i * t.ldc + 16 * j), *v);
        }
    }
}

/// Applies `act` to `xs`, compiled for AVX-512 so the activation's loop uses zmm lanes.
///
/// # Safety
/// The CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
pub unsafe fn activate(act: Activation, xs: &mut [f32]) {
    activation::apply_slice(act, xs);
}
