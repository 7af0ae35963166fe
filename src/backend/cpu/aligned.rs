//! f32 buffers that start on a 64-byte boundary (a cache line, one zmm vector): every
//! row of a [rows, n] buffer with n a multiple of 16 then starts a cache line, so the
//! GEMM's vector stores and the row-wise ops never split a line. A `Vec<f32>` is only
//! 16-byte aligned, and where its rows fall then depends on the allocator's history.

use std::ops::{Deref, DerefMut};

/// One cache line of values.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
struct Line([f32; 16]);

/// A zero-initialised f32 buffer of fixed length, 64-byte aligned.
#[derive(Debug, Default)]
pub struct AlignedBuf {
    lines: Vec<Line>,
    len: usize,
}

impl AlignedBuf {
    /// `len` zeros.
    pub fn zeros(len: usize) -> Self {
        AlignedBuf {
            lines: vec![Line([0.0; 16]); len.div_ceil(16)],
            len,
        }
    }
}

impl Deref for AlignedBuf {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        // SAFETY: `Line` is repr(C) over [f32; 16] with no padding (size 64 = 16 * 4), so
        // the lines are lines.len() * 16 contiguous, initialised f32 values, and
        // len <= lines.len() * 16.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast(), self.len) }
    }
}

impl DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [f32] {
        // SAFETY: as in `deref`, through the exclusive borrow of the lines.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast(), self.len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_zeroed_and_exact_length() {
        for len in [0, 1, 15, 16, 17, 1000] {
            let mut b = AlignedBuf::zeros(len);
            assert_eq!(b.len(), len);
            assert!(b.iter().all(|&v| v == 0.0));
            assert_eq!(b.as_ptr() as usize % 64, 0);
            b.iter_mut().enumerate().for_each(|(i, v)| *v = i as f32);
            assert_eq!(b.last().copied(), len.checked_sub(1).map(|l| l as f32));
        }
    }
}
