//! Portable bf16 microkernel: the products of bf16 values (exact in f32) added to f32
//! accumulators in the order `vdpbf16ps` uses within a pair (even k, then odd k).

use super::{from_bf16, Start, Tile16, NR};

/// Rows of the tile.
pub const MR: usize = 4;

/// Runs one tile of 1..=MR rows over a whole panel.
///
/// # Safety
/// `t` must describe readable/writable memory as documented on [`Tile16`].
pub unsafe fn tile(t: &Tile16) {
    let rows = t.rows.min(MR);
    let mut acc = [[0.0f32; NR]; MR];
    for (i, row) in acc.iter_mut().enumerate().take(rows) {
        match t.start {
            Start::Zero => {}
            Start::Bias(bias) => row.copy_from_slice(std::slice::from_raw_parts(bias, NR)),
            Start::Load => row.copy_from_slice(std::slice::from_raw_parts(t.c.add(i * t.ldc), NR)),
        }
    }
    for q in 0..t.pairs {
        let b = std::slice::from_raw_parts(t.b.add(q * 2 * NR), 2 * NR);
        for (i, row) in acc.iter_mut().enumerate().take(rows) {
            let a0 = from_bf16(*t.a.add(i * t.lda + 2 * q));
            let a1 = from_bf16(*t.a.add(i * t.lda + 2 * q + 1));
            for (v, bj) in row.iter_mut().zip(b.chunks_exact(2)) {
                *v += a0 * from_bf16(bj[0]);
                *v += a1 * from_bf16(bj[1]);
            }
        }
    }
    for (i, row) in acc.iter().enumerate().take(rows) {
        std::slice::from_raw_parts_mut(t.c.add(i * t.ldc), NR).copy_from_slice(row);
    }
}
