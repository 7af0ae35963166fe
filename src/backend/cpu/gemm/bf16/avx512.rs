//! AVX512-BF16 microkernel: an 8 x 48 tile of C in 24 zmm f32 accumulators. Each step
//! takes one k pair: three aligned loads of the panel's 48 column pairs, one broadcast
//! x pair per row, and `vdpbf16ps` (acc += x0 w0 + x1 w1 per lane).

use std::arch::x86_64::*;

use super::super::avx512::{start_acc, store_acc};
use super::{Tile16, NR};

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
    by_rows!(t.rows, tile_m, t)
}

#[inline(always)]
unsafe fn tile_m<const M: usize>(t: &Tile16) {
    let mut acc = start_acc::<M>(t.start, t.c, t.ldc);
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
    store_acc(&acc, t.c, t.ldc);
}
