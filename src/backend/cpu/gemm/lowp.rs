//! What the low-precision paths ([`super::bf16`], [`super::int8`]) share: the kernel
//! choice, k-grouped panels and per-thread scratch for the converted activations.

use std::cell::RefCell;
use std::thread::LocalKey;

use rayon::prelude::*;

use super::{Isa, NR};

/// Weights of at least this many values are packed by several threads.
const PARALLEL_PACK: usize = 1 << 16;

/// Which microkernel a low-precision product runs with. Both compute the same quantized
/// math (the same rounded inputs, the same accumulator type); the portable one is plain
/// loops for machines without the instructions, slower but equally accurate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// AVX-512 with the dtype's dot-product instructions (AVX512-BF16 for bf16,
    /// AVX512-VNNI for int8).
    Native,
    /// Portable loops.
    Portable,
}

impl Path {
    /// `self` if `supported(self)`, else the portable path (which every CPU runs).
    pub fn or_portable(self, supported: impl Fn(Path) -> bool) -> Path {
        match supported(self) {
            true => self,
            false => Path::Portable,
        }
    }

    /// The fastest path this CPU supports, by `supported` (e.g. [`Path::int8_supported`]).
    pub fn best(supported: impl Fn(Path) -> bool) -> Path {
        Path::Native.or_portable(supported)
    }

    /// The instruction set of the product's epilogue (bias and activation): AVX-512 on
    /// the native path, else the best this CPU has.
    pub(super) fn epilogue_isa(self) -> Isa {
        match self {
            Path::Native => Isa::Avx512,
            Path::Portable => Isa::detect(),
        }
    }
}

/// Weight columns cut into panels of [`NR`] columns, each holding, for every group of
/// `group` consecutive k, the group's values of column 0, then of column 1, ... (the
/// operand layout of `vdpbf16ps` with group 2 and of `vpdpbusd` with group 4). k is
/// zero-padded to whole groups and columns past n are zero. Panels start on a 64-byte
/// boundary, and a group row (NR * group values) is a whole number of cache lines for
/// 2-byte values in pairs and 1-byte values in quads.
#[derive(Debug, Clone)]
pub(super) struct Panels<T> {
    n: usize,
    k: usize,
    group: usize,
    data: Vec<T>,
    start: usize,
}

impl<T: Copy + Default + Send + Sync> Panels<T> {
    /// Packs the [n, k] weight whose value at (column, kk) is `value(column, kk)`.
    pub fn new(n: usize, k: usize, group: usize, value: impl Fn(usize, usize) -> T + Sync) -> Self {
        let size = k.div_ceil(group) * group * NR;
        let len = n.div_ceil(NR) * size;
        let line = (64 / std::mem::size_of::<T>()).max(1);
        let mut data = vec![T::default(); len + line];
        let misalign = (data.as_ptr() as usize / std::mem::size_of::<T>()) % line;
        let start = (line - misalign) % line;
        let body = &mut data[start..start + len];
        let pack_panel = |(p, panel): (usize, &mut [T])| {
            for j in 0..NR.min(n - p * NR) {
                for (g, kk0) in (0..k).step_by(group).enumerate() {
                    let at = (g * NR + j) * group;
                    for r in 0..group.min(k - kk0) {
                        panel[at + r] = value(p * NR + j, kk0 + r);
                    }
                }
            }
        };
        if size > 0 && len >= PARALLEL_PACK {
            body.par_chunks_exact_mut(size)
                .enumerate()
                .for_each(pack_panel);
        } else if size > 0 {
            body.chunks_exact_mut(size).enumerate().for_each(pack_panel);
        }
        Panels {
            n,
            k,
            group,
            data,
            start,
        }
    }

    pub fn n(&self) -> usize {
        self.n
    }

    pub fn k(&self) -> usize {
        self.k
    }

    /// Panel `p`: k / group (rounded up) rows of NR * group values.
    pub fn panel(&self, p: usize) -> &[T] {
        let size = self.k.div_ceil(self.group) * self.group * NR;
        &self.data[self.start + p * size..self.start + (p + 1) * size]
    }
}

/// Runs `f` on this thread's scratch `S` (kept between calls, so steady-state products
/// allocate nothing), or on a fresh one when the scratch is in use further up this
/// thread's stack (rayon may run another product here while this one waits).
pub(super) fn with_scratch<S: Default + 'static, R>(
    key: &'static LocalKey<RefCell<S>>,
    f: impl FnOnce(&mut S) -> R,
) -> R {
    key.with(|cell| match cell.try_borrow_mut() {
        Ok(mut s) => f(&mut s),
        Err(_) => f(&mut S::default()),
    })
}

/// Rows per rayon job when converting activations.
pub(super) const CONVERT_ROWS: usize = 16;

/// Converts rows in parallel when there are many values (a [128, 384] conversion is
/// about 20 us on one thread, while the other would wait for it).
pub(super) fn convert_parallel(rows: usize, k: usize) -> bool {
    rows > CONVERT_ROWS && rows * k >= 1 << 14
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panels_group_k_per_column_and_pad_with_zero() {
        let (n, k) = (NR + 5, 7);
        for group in [1, 2, 4] {
            let p = Panels::new(n, k, group, |c, kk| (c * 100 + kk + 1) as u32);
            for panel in 0..2 {
                let data = p.panel(panel);
                assert_eq!(data.as_ptr() as usize % 64, 0);
                assert_eq!(data.len(), k.div_ceil(group) * group * NR);
                for (i, &v) in data.iter().enumerate() {
                    let (g, j, t) = (i / (NR * group), (i / group) % NR, i % group);
                    let (col, kk) = (panel * NR + j, g * group + t);
                    let want = if col < n && kk < k {
                        (col * 100 + kk + 1) as u32
                    } else {
                        0
                    };
                    assert_eq!(v, want, "group {group} panel {panel} index {i}");
                }
            }
        }
    }
}
