//! Portable microkernel: plain loops over a tile of up to MR rows, for any target.

use super::{Start, Tile, NR};

/// Rows of the tile.
pub const MR: usize = 4;

/// Runs one tile of 1..=MR rows over a whole panel.
///
/// # Safety
/// `t` must describe readable/writable memory as documented on [`Tile`].
pub unsafe fn tile(t: &Tile) {
    let rows = t.rows.min(MR);
    let mut acc = start_rows(t.start, t.c, t.ldc, rows);
    for kk in 0..t.kc {
        let b = std::slice::from_raw_parts(t.b.add(kk * NR), NR);
        for (i, row) in acc.iter_mut().enumerate().take(rows) {
            let a = *t.a.add(i * t.lda + kk);
            for (v, &bj) in row.iter_mut().zip(b) {
                *v += a * bj;
            }
        }
    }
    store_rows(&acc, t.c, t.ldc, rows);
}

/// Up to MR rows of NR f32 accumulators from `start` (C at `c`, row stride `ldc`, for
/// [`Start::Load`]); shared with the portable bf16 kernel.
///
/// # Safety
/// A bias start points at NR readable values; a load start's first `rows` C rows hold NR.
pub(super) unsafe fn start_rows(
    start: Start,
    c: *const f32,
    ldc: usize,
    rows: usize,
) -> [[f32; NR]; MR] {
    let mut acc = [[0.0f32; NR]; MR];
    for (i, row) in acc.iter_mut().enumerate().take(rows) {
        match start {
            Start::Zero => {}
            Start::Bias(bias) => row.copy_from_slice(std::slice::from_raw_parts(bias, NR)),
            Start::Load => row.copy_from_slice(std::slice::from_raw_parts(c.add(i * ldc), NR)),
        }
    }
    acc
}

/// Stores the first `rows` rows of `acc` to C at `c` (row stride `ldc`).
///
/// # Safety
/// C's first `rows` rows hold NR writable values.
pub(super) unsafe fn store_rows(acc: &[[f32; NR]; MR], c: *mut f32, ldc: usize, rows: usize) {
    for (i, row) in acc.iter().enumerate().take(rows) {
        std::slice::from_raw_parts_mut(c.add(i * ldc), NR).copy_from_slice(row);
    }
}
