//! Portable int8 microkernel: the same integer sums as `vpdpbusd` (exact in i32) and the
//! same f32 epilogue as the AVX-512 kernel, so both paths give identical results.

use super::{Start, Tile8, NR};

/// Rows of the tile.
pub const MR: usize = 4;

/// Runs one tile of 1..=MR rows over a whole panel.
///
/// # Safety
/// `t` must describe readable/writable memory as documented on [`Tile8`].
pub unsafe fn tile(t: &Tile8) {
    let rows = t.rows.min(MR);
    let col_sum = std::slice::from_raw_parts(t.col_sum, NR);
    let col_scale = std::slice::from_raw_parts(t.col_scale, NR);
    let mut acc = [[0i32; NR]; MR];
    if t.first {
        for (i, row) in acc.iter_mut().enumerate().take(rows) {
            let zero = *t.row_zero.add(i);
            for (v, &s) in row.iter_mut().zip(col_sum) {
                *v = -zero * s;
            }
        }
    }
    for q in 0..t.quads {
        let b = std::slice::from_raw_parts(t.b.add(q * 4 * NR), 4 * NR);
        for (i, row) in acc.iter_mut().enumerate().take(rows) {
            let a = std::slice::from_raw_parts(t.a.add(i * t.lda + 4 * q), 4);
            for (v, bj) in row.iter_mut().zip(b.chunks_exact(4)) {
                for (&x, &w) in a.iter().zip(bj) {
                    *v += i32::from(x) * i32::from(w);
                }
            }
        }
    }
    for (i, row) in acc.iter().enumerate().take(rows) {
        let c = std::slice::from_raw_parts_mut(t.c.add(i * t.ldc), NR);
        let row_scale = *t.row_scale.add(i);
        for (j, (out, &v)) in c.iter_mut().zip(row).enumerate() {
            let base = match t.start {
                Start::Zero => 0.0,
                Start::Bias(bias) => *bias.add(j),
                Start::Load => *out,
            };
            *out = v as f32 * (col_scale[j] * row_scale) + base;
        }
    }
}
