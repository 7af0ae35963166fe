//! AMX-INT8 microkernel: a 32 x 48 tile of C as i32 sums in six AMX tiles
//! ([`super::super::amx`]), then the compensation on the first k-block and the AVX-512
//! kernel's epilogue (the dequantization and the start). The integer sums are exact, so
//! the results equal the AVX-512 kernel's bit for bit.

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

use super::super::amx::{product, Acc, Op, TILE_ROWS};
use super::{Tile8, NR};

/// Rows of the tile.
pub const MR: usize = super::super::amx::MR;

/// Runs one tile of 1..=MR rows.
///
/// # Safety
/// AMX-INT8 and AVX-512F run here, with the tile configuration loaded on this thread
/// (the driver's `Kernel::begin`); `t` as documented on [`Tile8`], with `t.rows <= MR`,
/// and besides: `t.a` readable for 32 rows (16 when `t.rows <= 16`) of `t.lda` values
/// up to `t.quads` rounded up to 16 quads, `t.b` for that many quads of the panel.
#[target_feature(enable = "avx512f")]
pub unsafe fn tile(t: &Tile8) {
    let mut acc = MaybeUninit::<Acc>::uninit();
    let steps = t.quads.div_ceil(TILE_ROWS);
    product(
        Op::Int8,
        t.a,
        t.lda,
        t.b.cast(),
        steps,
        t.rows,
        acc.as_mut_ptr(),
    );
    let sums: [__m512i; NR / 16] =
        std::array::from_fn(|j| _mm512_loadu_si512(t.col_sum.add(16 * j).cast()));
    let col_scale: [__m512; NR / 16] =
        std::array::from_fn(|j| _mm512_loadu_ps(t.col_scale.add(16 * j)));
    // The rows written (`product` stores the first 16 or all 32).
    let acc = acc.as_ptr().cast::<[u32; NR]>();
    for i in 0..t.rows {
        let row = (*acc.add(i)).as_ptr();
        let zero = _mm512_set1_epi32(-*t.row_zero.add(i));
        let row_scale = _mm512_set1_ps(*t.row_scale.add(i));
        for j in 0..NR / 16 {
            let mut v = _mm512_loadu_si512(row.add(16 * j).cast());
            if t.first {
                v = _mm512_add_epi32(_mm512_mullo_epi32(zero, sums[j]), v);
            }
            super::avx512::dequantize(t, i, j, v, col_scale[j], row_scale);
        }
    }
}
