//! AMX-BF16 microkernel: a 32 x 48 tile of C in six AMX tiles ([`super::super::amx`]),
//! then the start (bias or the partial result in C) added in f32 with AVX-512.

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

use super::super::amx::{product, Acc, Op, TILE_ROWS};
use super::{Start, Tile16, NR};

/// Rows of the tile.
pub const MR: usize = super::super::amx::MR;

/// Runs one tile of 1..=MR rows.
///
/// # Safety
/// AMX-BF16 and AVX-512F run here, with the tile configuration loaded on this thread
/// (the driver's `Kernel::begin`); `t` as documented on [`Tile16`], with `t.rows <= MR`,
/// and besides: `t.a` readable for 32 rows (16 when `t.rows <= 16`) of `t.lda` values
/// up to `t.pairs` rounded up to 16 pairs, `t.b` for that many pairs of the panel.
#[target_feature(enable = "avx512f")]
pub unsafe fn tile(t: &Tile16) {
    let mut acc = MaybeUninit::<Acc>::uninit();
    let steps = t.pairs.div_ceil(TILE_ROWS);
    product(
        Op::Bf16,
        t.a.cast(),
        t.lda * 2,
        t.b.cast(),
        steps,
        t.rows,
        acc.as_mut_ptr(),
    );
    // The rows written (`product` stores the first 16 or all 32).
    let acc = acc.as_ptr().cast::<[u32; NR]>();
    for i in 0..t.rows {
        let row = (*acc.add(i)).as_ptr().cast::<f32>();
        for j in 0..NR / 16 {
            let c = t.c.add(i * t.ldc + 16 * j);
            let base = match t.start {
                Start::Zero => _mm512_setzero_ps(),
                Start::Bias(bias) => _mm512_loadu_ps(bias.add(16 * j)),
                Start::Load => _mm512_loadu_ps(c),
            };
            _mm512_storeu_ps(c, _mm512_add_ps(base, _mm512_loadu_ps(row.add(16 * j))));
        }
    }
}
