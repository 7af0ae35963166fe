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
//!
//! The driver (blocking, tasks, edge tiles, epilogue) is generic over a [`Kernel`]: a
//! packed weight with its microkernel. The f32 path is one; [`bf16`] and [`int8`] are the
//! low-precision ones, with the same 48-column panels.

/// Runs `$tile::<M>($t)` with M = `$rows`, for the 8-row register tiles: 1 to 7 rows
/// instantiate their own tile, 8 (or more, which the driver never passes) the full one.
#[cfg(target_arch = "x86_64")]
macro_rules! by_rows {
    ($rows:expr, $tile:ident, $t:expr) => {
        match $rows {
            1 => $tile::<1>($t),
            2 => $tile::<2>($t),
            3 => $tile::<3>($t),
            4 => $tile::<4>($t),
            5 => $tile::<5>($t),
            6 => $tile::<6>($t),
            7 => $tile::<7>($t),
            _ => $tile::<8>($t),
        }
    };
}

pub mod bf16;
pub mod int8;
mod lowp;
mod pack;
mod scalar;

#[cfg(target_arch = "x86_64")]
pub(super) mod amx;
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod gelu;

#[cfg(test)]
mod lowp_check;
#[cfg(test)]
pub(crate) mod tests;

use std::sync::OnceLock;

use rayon::prelude::*;

pub use lowp::Path;
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

/// One microkernel call of a [`Kernel`]: C[rows, NR] = start + x[row.., k0..k0 + kc] ·
/// panel `panel`[k0..k0 + kc]. `c` is valid for reads and writes of `c[i * ldc + j]`
/// (i < rows, j < NR) and nothing else aliases it during the call; a bias start points at
/// NR readable values.
#[derive(Clone, Copy)]
struct Job {
    row: usize,
    rows: usize,
    panel: usize,
    k0: usize,
    kc: usize,
    c: *mut f32,
    ldc: usize,
    start: Start,
}

/// A packed weight with its activations and microkernel: what the blocked driver needs.
trait Kernel: Sync {
    /// Output columns.
    fn n(&self) -> usize;
    /// Reduction length.
    fn k(&self) -> usize;
    /// Rows of the register tile (at most 32, the edge tile's height).
    fn mr(&self) -> usize;
    /// Bytes per packed weight value (and per converted activation value).
    fn elem_bytes(&self) -> usize;
    /// Every k-block but the last is a multiple of this (the packed k-group).
    fn k_step(&self) -> usize;
    /// The instruction set of the epilogue's activation; one this CPU supports.
    fn isa(&self) -> Isa;
    /// Whether the product adds to what the output holds (a partial result, bias
    /// included, that [`Kernel::prepare`] writes) rather than starting from the bias.
    fn accumulates(&self) -> bool {
        false
    }
    /// Prepares this thread for a task's jobs (AMX's tile configuration); runs at the
    /// start of every task, on its thread.
    fn begin(&self) {}
    /// Writes what an accumulating product adds to into the task's block of the output,
    /// rows row0.., columns col0..col0 + cols at `c` (row stride n), just before the
    /// task's jobs (nothing by default).
    ///
    /// # Safety
    /// The block lies within the output, `c` points at its first value, and only this
    /// task accesses it.
    unsafe fn prepare(&self, row0: usize, rows: usize, col0: usize, cols: usize, c: *mut f32) {
        let _ = (row0, rows, col0, cols, c);
    }
    /// Runs one job.
    ///
    /// # Safety
    /// `job` as documented on [`Job`], `job.rows <= self.mr()`, rows and k-block within
    /// the product, `job.k0` a multiple of [`Kernel::k_step`].
    unsafe fn tile(&self, job: &Job);
}

/// The f32 product: x row-major, w in f32 panels.
struct F32Kernel<'a> {
    isa: Isa,
    x: &'a [f32],
    w: &'a PackedWeight,
}

impl Kernel for F32Kernel<'_> {
    fn n(&self) -> usize {
        self.w.n()
    }
    fn k(&self) -> usize {
        self.w.k()
    }
    fn mr(&self) -> usize {
        self.isa.mr()
    }
    fn elem_bytes(&self) -> usize {
        4
    }
    fn k_step(&self) -> usize {
        1
    }
    fn isa(&self) -> Isa {
        self.isa
    }
    unsafe fn tile(&self, job: &Job) {
        let k = self.w.k();
        let tile = Tile {
            a: self.x[job.row * k + job.k0..].as_ptr(),
            lda: k,
            b: self.w.panel(job.panel)[job.k0 * NR..].as_ptr(),
            kc: job.kc,
            c: job.c,
            ldc: job.ldc,
            rows: job.rows,
            start: job.start,
        };
        // SAFETY: rows and k-block lie within x and the panel (the caller's contract and
        // the length asserts of `linear_with`); the panel slice starts at k0 * NR, a
        // multiple of 16 floats from an aligned panel; `isa` is supported.
        self.isa.tile(&tile)
    }
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
    assert!(x.len() >= rows * w.k(), "linear: x shorter than rows * k");
    let isa = if isa.supported() { isa } else { Isa::detect() };
    drive(&F32Kernel { isa, x, w }, threads, rows, bias, act, out);
}

/// Runs `kern`'s product on `threads` threads: out[rows, n] = act(x · wᵀ + bias).
fn drive<K: Kernel>(
    kern: &K,
    threads: usize,
    rows: usize,
    bias: Option<&[f32]>,
    act: Option<Activation>,
    out: &mut [f32],
) {
    let (n, k) = (kern.n(), kern.k());
    let isa = kern.isa();
    assert!(out.len() >= rows * n, "linear: out shorter than rows * n");
    if let Some(b) = bias {
        assert!(b.len() >= n, "linear: bias shorter than n");
    }
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
                // SAFETY: the kernel's `isa` is supported (its contract).
                unsafe { isa.activate(act, row) };
            }
        }
        return;
    }
    let blocks = Blocking::new(kern, rows, threads);
    let ctx = Ctx {
        kern,
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
    fn new<K: Kernel>(kern: &K, rows: usize, threads: usize) -> Self {
        let (n, k, mr) = (kern.n(), kern.k(), kern.mr());
        // Narrower values take longer k-blocks for the same bytes in L1 and L2.
        let bytes = kern.elem_bytes();
        let kc_max = KC * 4 / bytes;
        let kc = k
            .div_ceil(k.div_ceil(kc_max))
            .next_multiple_of(kern.k_step());
        let panels = n.div_ceil(NR);
        let max_group = (L2_BLOCK / (kc * NR * bytes)).clamp(1, panels);
        let mut col_blocks = panels.div_ceil(max_group);
        let mut row_blocks = rows.div_ceil(MC);
        if threads > 1 && rows * n * k >= SERIAL_WORK {
            // At least two tasks per thread, found in columns first (rows are often few).
            let want = 2 * threads;
            if row_blocks * col_blocks < want {
                col_blocks = want.div_ceil(row_blocks).min(panels);
            }
            if row_blocks * col_blocks < want {
                row_blocks = want.div_ceil(col_blocks).min(rows.div_ceil(mr));
            }
        }
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
struct Ctx<'a, K> {
    kern: &'a K,
    bias: Option<&'a [f32]>,
    act: Option<Activation>,
    rows: usize,
    c: SharedOut,
    blocks: Blocking,
}

impl<K: Kernel> Ctx<'_, K> {
    /// Computes task `task`: one row block times one panel group, all of k.
    fn run(&self, task: usize) {
        let (n, k) = (self.kern.n(), self.kern.k());
        let b = self.blocks;
        let r0 = (task / b.col_blocks) * b.mc;
        let r1 = (r0 + b.mc).min(self.rows);
        let p0 = (task % b.col_blocks) * b.group;
        let p1 = (p0 + b.group).min(n.div_ceil(NR));
        let mr = self.kern.mr();
        self.kern.begin();
        let (col0, col1) = (p0 * NR, (p1 * NR).min(n));
        // SAFETY: rows r0..r1 and columns col0..col1 of the output exist (its length is
        // asserted in `drive`) and belong to this task alone.
        unsafe {
            self.kern
                .prepare(r0, r1 - r0, col0, col1 - col0, self.c.0.add(r0 * n + col0))
        };
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
                        _ if k0 > 0 || self.kern.accumulates() => Start::Load,
                        Some(bias) => Start::Bias(bias[col0..].as_ptr()),
                        None => Start::Zero,
                    };
                    let tile = Job {
                        row: r,
                        rows: m,
                        panel: p,
                        k0,
                        kc,
                        // SAFETY: r * n + col0 < rows * n, within the output.
                        c: unsafe { self.c.0.add(r * n + col0) },
                        ldc: n,
                        start,
                    };
                    if cols == NR {
                        // SAFETY: rows r..r+m < rows and columns col0..col0+NR <= n of
                        // the output exist (length asserted in `drive`); this task alone
                        // writes these output rows and columns; m <= mr; k0 is a multiple
                        // of the k-step (every k-block but the last is).
                        unsafe { self.kern.tile(&tile) };
                    } else {
                        self.edge_tile(tile, cols);
                    }
                    if let (true, Some(act)) = (last, self.act) {
                        for i in 0..m {
                            // SAFETY: row r + i, columns col0..col0+cols of the output
                            // belong to this task and no other reference to them exists.
                            let row =
                                unsafe { std::slice::from_raw_parts_mut(tile.c.add(i * n), cols) };
                            // SAFETY: the kernel's `isa` is supported.
                            unsafe { self.kern.isa().activate(act, row) };
                        }
                    }
                }
            }
            k0 += kc;
        }
    }

    /// A tile of the ragged last panel (`cols` < NR): computed in a stack tile of full
    /// width, then its first `cols` columns copied to the output.
    fn edge_tile(&self, mut tile: Job, cols: usize) {
        const MAX_MR: usize = 32;
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
        assert!(tile.rows <= MAX_MR, "kernel tile taller than the edge tile");
        // SAFETY: as for a full tile, except that C is the local `tmp`, rows x NR with
        // row stride NR (rows <= mr <= MAX_MR), and the bias (if any) is the local
        // NR-wide copy.
        unsafe { self.kern.tile(&tile) };
        for i in 0..tile.rows {
            // SAFETY: output row i of this tile, `cols` columns, owned by this task.
            let dst = unsafe { std::slice::from_raw_parts_mut(out.add(i * ldc), cols) };
            dst.copy_from_slice(&tmp[i * NR..i * NR + cols]);
        }
    }
}
