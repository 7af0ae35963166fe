//! Portable bf16 microkernel: the products of bf16 values (exact in f32) added to f32
//! accumulators in the order `vdpbf16ps` uses within a pair (even k, then odd k).

use super::super::scalar::{start_rows, store_rows};
use super::{from_bf16, Tile16, NR};

/// Rows of the tile (the f32 portable kernel's, whose accumulator helpers it shares).
pub const MR: usize = super::super::scalar::MR;

/// Runs one tile of 1..=MR rows over a whole panel.
///
/// # Safety
/// `t` must describe readable/writable memory as documented on [`Tile16`].
pub unsafe fn tile(t: &Tile16) {
    let rows = t.rows.min(MR);
    let mut acc = start_rows(t.start, t.c, t.ldc, rows);
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
    store_rows(&acc, t.c, t.ldc, rows);
}
