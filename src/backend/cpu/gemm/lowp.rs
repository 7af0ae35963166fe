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
    /// Intel AMX tiles (AMX-BF16, AMX-INT8) with AVX-512 around them: 32-row tiles of C.
    /// int8 gives exactly the AVX-512 path's results (integer sums); bf16 adds the same
    /// exact products in another order.
    Amx,
    /// AVX-512 with the dtype's dot-product instructions (AVX512-BF16 for bf16,
    /// AVX512-VNNI for int8).
    Native,
    /// Portable loops.
    Portable,
}

impl Path {
    /// `self` if `supported(self)`, else the next slower path that is (AMX, then AVX-512,
    /// then the portable path, which every CPU runs).
    pub fn or_fallback(self, supported: impl Fn(Path) -> bool) -> Path {
        let chain: &[Path] = match self {
            Path::Amx => &[Path::Amx, Path::Native],
            Path::Native => &[Path::Native],
            Path::Portable => &[],
        };
        chain
            .iter()
            .copied()
            .find(|&p| supported(p))
            .unwrap_or(Path::Portable)
    }

    /// The fastest path this CPU supports, by `supported` (e.g. [`Path::int8_supported`]).
    pub fn best(supported: impl Fn(Path) -> bool) -> Path {
        Path::Amx.or_fallback(supported)
    }

    /// The instruction set of the product's epilogue (bias and activation): AVX-512 on
    /// the native path, else the best this CPU has.
    pub(super) fn epilogue_isa(self) -> Isa {
        match self {
            Path::Amx | Path::Native => Isa::Avx512,
            Path::Portable => Isa::detect(),
        }
    }
}

/// Rows the converted activations are padded to (the AMX kernels read whole 32-row
/// tiles; the padding rows' results are never stored).
pub(super) const ROWS_PAD: usize = 32;

/// Each converted activation row is zero padded to a multiple of this many bytes, and
/// each panel's k to a multiple of 16 group rows: the AMX kernels take k in steps of a
/// 64-byte tile row, and zeros times zeros add nothing.
pub(super) const K_PAD_BYTES: usize = 64;

/// Group rows a panel's k is padded to.
const PANEL_K_ROWS: usize = 16;

/// Weight columns cut into panels of [`NR`] columns, each holding, for every group of
/// `group` consecutive k, the group's values of column 0, then of column 1, ... (the
/// operand layout of `vdpbf16ps` with group 2 and of `vpdpbusd` with group 4, and of
/// AMX's B tiles). k is zero-padded to a multiple of 16 groups and columns past n are
/// zero. Panels start on a 64-byte
/// boundary, and a group row (NR * group values) is a whole number of cache lines for
/// 2-byte values in pairs and 1-byte values in quads.
#[derive(Debug, Clone)]
pub(super) struct Panels<T> {
    n: usize,
    k: usize,
    /// Values in one panel ([`Panels::panel_len`], kept: every microkernel call asks).
    size: usize,
    data: Vec<T>,
    start: usize,
}

impl<T: Copy + Default + Send + Sync> Panels<T> {
    /// Packs the [n, k] weight whose value at (column, kk) is `value(column, kk)`.
    pub fn new(n: usize, k: usize, group: usize, value: impl Fn(usize, usize) -> T + Sync) -> Self {
        let size = Self::panel_len(k, group);
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
            size,
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

    /// Values in one panel: k / group rounded up to a multiple of 16 rows, of NR * group.
    fn panel_len(k: usize, group: usize) -> usize {
        k.div_ceil(group).next_multiple_of(PANEL_K_ROWS) * group * NR
    }

    /// Panel `p`: k / group rows of NR * group values (then zero rows to the padding).
    pub fn panel(&self, p: usize) -> &[T] {
        let size = self.size;
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
                assert_eq!(data.len(), PANEL_K_ROWS * group * NR);
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
