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
    let mut acc = [[0.0f32; NR]; MR];
    for (i, row) in acc.iter_mut().enumerate().take(rows) {
        match t.start {
            Start::Zero => {}
            Start::Bias(bias) => row.copy_from_slice(std::slice::from_raw_parts(bias, NR)),
            Start::Load => row.copy_from_slice(std::slice::from_raw_parts(t.c.add(i * t.ldc), NR)),
        }
    }
    for kk in 0..t.kc {
        let b = std::slice::from_raw_parts(t.b.add(kk * NR), NR);
        for (i, row) in acc.iter_mut().enumerate().take(rows) {
            let a = *t.a.add(i * t.lda + kk);
            for (v, &bj) in row.iter_mut().zip(b) {
                *v += a * bj;
            }
        }
    }
    for (i, row) in acc.iter().enumerate().take(rows) {
        std::slice::from_raw_parts_mut(t.c.add(i * t.ldc), NR).copy_from_slice(row);
    }
}
