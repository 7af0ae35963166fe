//! Weights packed once into column panels for the microkernels.
//!
//! A checkpoint stores a dense weight as w[n, k] (one row per output column). The packed
//! form cuts the n columns into panels of [`NR`]; panel p holds, for kk = 0..k, the NR
//! values w[p*NR + j, kk] (j = 0..NR) next to each other, so a microkernel walking k reads
//! one contiguous stream. Columns past n in the last panel are zero. Panels start on a
//! 64-byte boundary so every 16-lane row of a panel is one cache line.

use rayon::prelude::*;

use super::NR;

/// f32 values per cache line.
const LINE: usize = 16;

/// Weights of at least this many values are packed by several threads.
const PARALLEL_PACK: usize = 1 << 16;

/// A [n, k] weight repacked into ceil(n / NR) panels of k x NR values.
#[derive(Debug, Clone)]
pub struct PackedWeight {
    n: usize,
    k: usize,
    /// Backing storage; the panels begin at `start`, which is 64-byte aligned.
    data: Vec<f32>,
    start: usize,
}

impl PackedWeight {
    /// Packs `w`, stored [n, k] row-major. Returns `None` when `w.len() != n * k`.
    pub fn pack(w: &[f32], n: usize, k: usize) -> Option<Self> {
        if n.checked_mul(k)? != w.len() {
            return None;
        }
        let panels = n.div_ceil(NR);
        let len = panels * k * NR;
        let mut data = vec![0.0f32; len + LINE];
        let misalign = (data.as_ptr() as usize / std::mem::size_of::<f32>()) % LINE;
        let start = (LINE - misalign) % LINE;
        let body = &mut data[start..start + len];
        let pack_panel = |(p, panel): (usize, &mut [f32])| {
            let cols = NR.min(n - p * NR);
            for j in 0..cols {
                let row = &w[(p * NR + j) * k..(p * NR + j + 1) * k];
                for (kk, &v) in row.iter().enumerate() {
                    panel[kk * NR + j] = v;
                }
            }
        };
        // Panels are independent; big weights are packed on the rayon pool.
        let size = k.max(1) * NR;
        if len >= PARALLEL_PACK {
            body.par_chunks_exact_mut(size)
                .enumerate()
                .for_each(pack_panel);
        } else {
            body.chunks_exact_mut(size).enumerate().for_each(pack_panel);
        }
        Some(PackedWeight { n, k, data, start })
    }

    /// Output columns.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Input features (the reduction length).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Number of NR-column panels.
    pub fn panels(&self) -> usize {
        self.n.div_ceil(NR)
    }

    /// Panel `p`: k rows of NR values.
    pub fn panel(&self, p: usize) -> &[f32] {
        let size = self.k * NR;
        &self.data[self.start + p * size..self.start + (p + 1) * size]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panels_hold_columns_k_major_and_zero_padded() {
        let (n, k) = (NR + 3, 5);
        let w: Vec<f32> = (0..n * k).map(|i| i as f32 + 1.0).collect();
        let p = PackedWeight::pack(&w, n, k).expect("sizes match");
        assert_eq!(p.panels(), 2);
        for panel in 0..2 {
            let data = p.panel(panel);
            assert_eq!(data.as_ptr() as usize % 64, 0);
            for kk in 0..k {
                for j in 0..NR {
                    let col = panel * NR + j;
                    let want = if col < n { w[col * k + kk] } else { 0.0 };
                    assert_eq!(data[kk * NR + j], want);
                }
            }
        }
        assert!(PackedWeight::pack(&w, n, k + 1).is_none());
    }
}
