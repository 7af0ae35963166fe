//! AVX512-BF16 microkernel: an 8 x 48 tile of C in 24 zmm f32 accumulators. Each step
//! takes one k pair: three aligned loads of the panel's 48 column pairs, one broadcast
//! x pair per row, and `vdpbf16ps` (acc += x0 w0 + x1 w1 per lane).

use std::arch::x86_64::*;

use super::{Start, Tile16, NR};

/// Rows of the register tile.
pub const MR: usize = 8;

/// Zmm vectors per panel row (16 columns, 32 bf16 values each).
const V: usize = NR / 16;

/// Runs one tile of 1..=MR rows.
///
/// # Safety
/// The CPU must support AVX-512F and AVX512-BF16, and `t` must describe readable/writable
/// memory as documented on [`Tile16`], with `t.rows <= MR`.
#[target_feature(enable = "avx512f,avx512bf16")]
pub unsafe fn tile(t: &Tile16) {
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
unsafe fn tile_m<const M: usize>(t: &Tile16) {
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
    for _ in 0..t.pairs {
        // SAFETY (transmutes): __m512i and __m512bh are both 64 bytes of plain lanes.
        let bv: [__m512bh; V] = std::array::from_fn(|j| {
            std::mem::transmute::<__m512i, __m512bh>(_mm512_load_si512(b.add(32 * j).cast()))
        });
        for (i, row) in acc.iter_mut().enumerate() {
            let pair = a.add(i * t.lda).cast::<i32>().read_unaligned();
            let ai = std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(pair));
            for (v, &bj) in row.iter_mut().zip(&bv) {
                *v = _mm512_dpbf16_ps(*v, ai, bj);
            }
        }
        a = a.add(2);
        b = b.add(2 * NR);
    }
    for (i, row) in acc.iter().enumerate() {
        for (j, v) in row.iter().enumerate() {
            _mm512_storeu_ps(t.c.add(i * t.ldc + 16 * j), *v);
        }
    }
}
