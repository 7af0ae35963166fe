//! Dense f32 GEMM for the linear layers: out[rows, n] = act(x[rows, k] · wᵀ + b) with w
//! prepacked once ([`PackedWeight`]).
//!
//! Design (GotoBLAS/BLIS style, specialised to "activations times a fixed weight"):
//! - w is packed into panels of [`NR`] = 48 columns, k-major inside a panel and
//!   cache-line aligned, so the microkernel reads B as one aligned stream. 48 divides
//!   every BERT width (384, 768, 1152, 1536, 2304, 3072); a ragged last panel is zero
//!   padded.
//! - x is not packed: the microkernel broadcasts x[r, kk] straight from row-major x.
//! - Microkernels per ISA, chosen once at run time: AVX-512F (8 x 48 tile, 24 zmm
//!   accumulators), AVX2 + FMA (6 x 16, three times per panel) and portable scalar loops. Short
//!   row tiles use the same kernels instantiated for fewer rows; a ragged last panel is
//!   computed through a stack tile and copied out (the generic edge path).
//! - Blocking: k is cut into blocks of at most [`KC`]; a task owns a block of rows and a
//!   group of panels whose k-block of w fits in L2, and walks row tiles (their slice of x
//!   stays in L1) over its panels. The first k-block starts the accumulators from the bias
//!   (or zero), later ones from C; after the last one the activation runs over the tile
//!   while it is still in L1.
//! - Threads: tasks are (row block, panel group) pairs run on the global rayon pool, sized
//!   so that even one sequence of 128 tokens (or a single row) gives every thread work.
//!   Tasks write disjoint blocks of C; nothing inside a task is parallel.
//!
//! Accumulation is in f32 in k order per output, the usual GEMM rounding (the tests bound
//! the error against an f64 reference).

mod pack;
mod scalar;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

#[cfg(test)]
mod tests;

use std::sync::OnceLock;

use rayon::prelude::*;

pub use pack::PackedWeight;

use crate::config::Activation;

/// Columns per packed panel (and per microkernel tile).
pub const NR: usize = 48;

/// Longest k-block: a 384 x 48 slice of a panel is 72 KiB, a group of them fits in L2.
const KC: usize = 384;

/// Bytes of w (one k-block of a panel group) a task keeps in L2.
const L2_BLOCK: usize = 512 * 1024;

/// Most rows in one task.
const MC: usize = 64;

/// Below this many multiply-adds a product runs on the calling thread.
const SERIAL_WORK: usize = 1 << 18;

/// The instruction set a product runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// AVX-512F (x86-64).
    Avx512,
    /// AVX2 + FMA (x86-64).
    Avx2,
    /// Portable loops.
    Scalar,
}

impl Isa {
    /// The best instruction set this CPU supports, detected once.
    pub fn detect() -> Isa {
        static BEST: OnceLock<Isa> = OnceLock::new();
        *BEST.get_or_init(|| {
            [Isa::Avx512, Isa::Avx2]
                .into_iter()
                .find(|isa| isa.supported())
                .unwrap_or(Isa::Scalar)
        })
    }

    /// Whether this CPU can run `self`.
    pub fn supported(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            Isa::Scalar => true,
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// Rows of this instruction set's register tile.
    fn mr(self) -> usize {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => avx512::MR,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => avx2::MR,
            _ => scalar::MR,
        }
    }

    /// Runs one tile.
    ///
    /// # Safety
    /// `self.supported()`, `t.rows <= self.mr()`, and `t` as documented on [`Tile`].
    unsafe fn tile(self, t: &Tile) {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => avx512::tile(t),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => avx2::tile(t),
            _ => scalar::tile(t),
        }
    }

    /// Applies `act` to `xs` with this instruction set's vectors.
    ///
    /// # Safety
    /// `self.supported()`.
    unsafe fn activate(self, act: Activation, xs: &mut [f32]) {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => avx512::activate(act, xs),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => avx2::activate(act, xs),
            _ => crate::backend::cpu::activation::apply_slice(act, xs),
        }
    }
}

/// Where a tile's accumulators start.
#[derive(Clone, Copy)]
enum Start {
    /// From zero.
    Zero,
    /// From the bias: NR readable values.
    Bias(*const f32),
    /// From the tile's current values in C (a later k-block).
    Load,
}

/// One microkernel call: C[rows, NR] = start + A[rows, kc] · B[kc, NR].
///
/// `a` is valid for reads of `a[i * lda + kk]` (i < rows, kk < kc); `b` is a 64-byte
/// aligned panel slice valid for `kc * NR` reads; `c` is valid for reads and writes of
/// `c[i * ldc + j]` (i < rows, j < NR) and nothing else aliases it during the call.
#[derive(Clone, Copy)]
struct Tile {
    a: *const f32,
    lda: usize,
    b: *const f32,
    kc: usize,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    start: Start,
}

/// out[rows, n] = act(x[rows, k] · wᵀ + bias) with `w` packed from [n, k], on the rayon
/// pool with the best instruction set of this CPU.
///
/// Panics if `x`, `out` or `bias` are shorter than the shapes imply (a plan bug).
pub fn linear(
    x: &[f32],
    rows: usize,
    w: &PackedWeight,
    bias: Option<&[f32]>,
    act: Option<Activation>,
    out: &mut [f32],
) {
    let threads = rayon::current_num_threads();
    linear_with(Isa::detect(), threads, x, rows, w, bias, act, out);
}

/// [`linear`] with an explicit instruction set (one this CPU lacks falls back to
/// [`Isa::detect`]) and thread count (1 runs on the calling thread; more split the work
/// over the current rayon pool).
#[allow(clippy::too_many_arguments)]
pub fn linear_with(
    isa: Isa,
    threads: usize,
    x: &[f32],
    rows: usize,
    w: &PackedWeight,
    bias: Option<&[f32]>,
    act: Option<Activation>,
    out: &mut [f32],
) {
    let (n, k) = (w.n(), w.k());
    assert!(x.len() >= rows * k, "linear: x shorter than rows * k");
    assert!(out.len() >= rows * n, "linear: out shorter than rows * n");
    if let Some(b) = bias {
        assert!(b.len() >= n, "linear: bias shorter than n");
    }
    let isa = if isa.supported() { isa } else { Isa::detect() };
    let out = &mut out[..rows * n];
    if rows == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for row in out.chunks_exact_mut(n) {
            match bias {
                Some(b) => row.copy_from_slice(&b[..n]),
                None => row.fill(0.0),
            }
            if let Some(act) = act {
                // SAFETY: `isa` is supported (checked above).
                unsafe { isa.activate(act, row) };
            }
        }
        return;
    }
    let blocks = Blocking::new(isa, rows, n, k, threads);
    let ctx = Ctx {
        isa,
        x,
        w,
        bias,
        act,
        rows,
        c: SharedOut(out.as_mut_ptr()),
        blocks,
    };
    let tasks = blocks.row_blocks * blocks.col_blocks;
    if threads > 1 && tasks > 1 && rows * n * k >= SERIAL_WORK {
        (0..tasks).into_par_iter().for_each(|t| ctx.run(t));
    } else {
        (0..tasks).for_each(|t| ctx.run(t));
    }
}

/// How a product is cut into tasks and k-blocks.
#[derive(Debug, Clone, Copy)]
struct Blocking {
    kc: usize,
    /// Rows per task (a multiple of the tile rows) and how many row blocks.
    mc: usize,
    row_blocks: usize,
    /// Panels per task and how many panel groups.
    group: usize,
    col_blocks: usize,
}

impl Blocking {
    fn new(isa: Isa, rows: usize, n: usize, k: usize, threads: usize) -> Self {
        let kc = k.div_ceil(k.div_ceil(KC));
        let panels = n.div_ceil(NR);
        let max_group = (L2_BLOCK / (kc * NR * 4)).clamp(1, panels);
        let mut col_blocks = panels.div_ceil(max_group);
        let mut row_blocks = rows.div_ceil(MC);
        if threads > 1 && rows * n * k >= SERIAL_WORK {
            // At least two tasks per thread, found in columns first (rows are often few).
            let want = 2 * threads;
            if row_blocks * col_blocks < want {
                col_blocks = want.div_ceil(row_blocks).min(panels);
            }
            if row_blocks * col_blocks < want {
                row_blocks = want.div_ceil(col_blocks).min(rows.div_ceil(isa.mr()));
            }
        }
        let mr = isa.mr();
        let mc = rows.div_ceil(row_blocks).div_ceil(mr) * mr;
        let group = panels.div_ceil(col_blocks);
        Blocking {
            kc,
            mc,
            row_blocks: rows.div_ceil(mc),
            group,
            col_blocks: panels.div_ceil(group),
        }
    }
}

/// The output pointer, shared by tasks that write disjoint blocks of it.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);

// SAFETY: tasks only write the disjoint [row block x panel group] blocks of the output
// that `Ctx::run` derives from their index, so sharing the pointer across threads
// cannot produce overlapping writes; the output outlives the tasks (it is borrowed by
// `linear_with` for the whole parallel loop).
unsafe impl Send for SharedOut {}
// SAFETY: as above.
unsafe impl Sync for SharedOut {}

/// Everything a task needs.
struct Ctx<'a> {
    isa: Isa,
    x: &'a [f32],
    w: &'a PackedWeight,
    bias: Option<&'a [f32]>,
    act: Option<Activation>,
    rows: usize,
    c: SharedOut,
    blocks: Blocking,
}

impl Ctx<'_> {
    /// Computes task `task`: one row block times one panel group, all of k.
    fn run(&self, task: usize) {
        let (n, k) = (self.w.n(), self.w.k());
        let b = self.blocks;
        let r0 = (task / b.col_blocks) * b.mc;
        let r1 = (r0 + b.mc).min(self.rows);
        let p0 = (task % b.col_blocks) * b.group;
        let p1 = (p0 + b.group).min(self.w.panels());
        let mr = self.isa.mr();
        let mut k0 = 0;
        while k0 < k {
            let kc = b.kc.min(k - k0);
            let last = k0 + kc == k;
            for r in (r0..r1).step_by(mr) {
                let m = mr.min(r1 - r);
                for p in p0..p1 {
                    let col0 = p * NR;
                    let cols = NR.min(n - col0);
                    let start = match self.bias {
                        _ if k0 > 0 => Start::Load,
                        Some(bias) => Start::Bias(bias[col0..].as_ptr()),
                        None => Start::Zero,
                    };
                    let tile = Tile {
                        a: self.x[r * k + k0..].as_ptr(),
                        lda: k,
                        b: self.w.panel(p)[k0 * NR..].as_ptr(),
                        kc,
                        // SAFETY: r * n + col0 < rows * n, within the output.
                        c: unsafe { self.c.0.add(r * n + col0) },
                        ldc: n,
                        rows: m,
                        start,
                    };
                    if cols == NR {
                        // SAFETY: rows r..r+m < rows and columns col0..col0+NR <= n of x,
                        // w and out exist (lengths asserted in `linear_with`); the panel
                        // slice starts at k0 * NR, a multiple of 16 floats from an aligned
                        // panel; this task alone writes these output rows and columns;
                        // m <= mr; `isa` is supported.
                        unsafe { self.isa.tile(&tile) };
                    } else {
                        self.edge_tile(tile, cols);
                    }
                    if let (true, Some(act)) = (last, self.act) {
                        for i in 0..m {
                            // SAFETY: row r + i, columns col0..col0+cols of the output
                            // belong to this task and no other reference to them exists.
                            let row =
                                unsafe { std::slice::from_raw_parts_mut(tile.c.add(i * n), cols) };
                            // SAFETY: `isa` is supported.
                            unsafe { self.isa.activate(act, row) };
                        }
                    }
                }
            }
            k0 += kc;
        }
    }

    /// A tile of the ragged last panel (`cols` < NR): computed in a stack tile of full
    /// width, then its first `cols` columns copied to the output.
    fn edge_tile(&self, mut tile: Tile, cols: usize) {
        const MAX_MR: usize = 8;
        let mut tmp = [0.0f32; MAX_MR * NR];
        let mut bias = [0.0f32; NR];
        let out = tile.c;
        match tile.start {
            Start::Bias(b) => {
                // SAFETY: the bias has n >= col0 + cols values, `b` points at col0.
                bias[..cols].copy_from_slice(unsafe { std::slice::from_raw_parts(b, cols) });
                tile.start = Start::Bias(bias.as_ptr());
            }
            Start::Load => {
                for i in 0..tile.rows {
                    // SAFETY: output row i of this tile has `cols` columns from `out`.
                    let src = unsafe { std::slice::from_raw_parts(out.add(i * tile.ldc), cols) };
                    tmp[i * NR..i * NR + cols].copy_from_slice(src);
                }
            }
            Start::Zero => {}
        }
        let ldc = tile.ldc;
        tile.c = tmp.as_mut_ptr();
        tile.ldc = NR;
        debug_assert!(tile.rows <= MAX_MR);
        // SAFETY: as for a full tile, except that C is the local `tmp`, rows x NR with
        // row stride NR (rows <= mr <= MAX_MR), and the bias (if any) is the local
        // NR-wide copy.
        unsafe { self.isa.tile(&tile) };
        for i in 0..tile.rows {
            // SAFETY: output row i of this tile, `cols` columns, owned by this task.
            let dst = unsafe { std::slice::from_raw_parts_mut(out.add(i * ldc), cols) };
            dst.copy_from_slice(&tmp[i * NR..i * NR + cols]);
        }
    }
}
