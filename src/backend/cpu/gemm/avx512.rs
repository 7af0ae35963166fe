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
    by_rows!(t.rows, tile_m, t)
}

#[inline(always)]
unsafe fn tile_m<const M: usize>(t: &Tile) {
    let mut acc = start_acc::<M>(t.start, t.c, t.ldc);
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
    store_acc(&acc, t.c, t.ldc);
}

/// An M x NR tile of f32 accumulators from `start` (C at `c`, row stride `ldc`, for
/// [`Start::Load`]); shared with the bf16 kernel.
///
/// # Safety
/// AVX-512F; a bias start points at NR readable values, and a load start's C rows hold NR.
#[inline(always)]
pub(super) unsafe fn start_acc<const M: usize>(
    start: Start,
    c: *const f32,
    ldc: usize,
) -> [[__m512; V]; M] {
    let mut acc = [[_mm512_setzero_ps(); V]; M];
    match start {
        Start::Zero => {}
        Start::Bias(bias) => {
            let b: [__m512; V] = std::array::from_fn(|j| _mm512_loadu_ps(bias.add(16 * j)));
            acc = [b; M];
        }
        Start::Load => {
            for (i, row) in acc.iter_mut().enumerate() {
                for (j, v) in row.iter_mut().enumerate() {
                    *v = _mm512_loadu_ps(c.add(i * ldc + 16 * j));
                }
            }
        }
    }
    acc
}

/// Stores an M x NR tile of accumulators to C at `c` (row stride `ldc`).
///
/// # Safety
/// AVX-512F; C's M rows hold NR writable values.
#[inline(always)]
pub(super) unsafe fn store_acc<const M: usize>(acc: &[[__m512; V]; M], c: *mut f32, ldc: usize) {
    for (i, row) in acc.iter().enumerate() {
        for (j, v) in row.iter().enumerate() {
            _mm512_storeu_ps(c.add(i * ldc + 16 * j), *v);
        }
    }
}

/// Applies `act` to `xs`, compiled for AVX-512 so the activation's loop uses zmm lanes
/// (GELU, BERT's, with FMA: [`super::gelu`]).
///
/// # Safety
/// The CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
pub unsafe fn activate(act: Activation, xs: &mut [f32]) {
    match act {
        Activation::Gelu => super::gelu::gelu_slice(xs),
        _ => activation::apply_slice(act, xs),
    }
}
