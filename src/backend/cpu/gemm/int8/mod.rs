//! int8 linears (dynamic quantization): out[rows, n] = act(x[rows, k] · wᵀ + bias) with
//! integer products accumulated in i32 and dequantized in the epilogue.
//!
//! - w is quantized once per output column, symmetric: q = round(w / s), s = max |w| / 127,
//!   q in [-127, 127], packed into [`NR`]-column panels of k quads (the B operand of
//!   `vpdpbusd`, u8 x s8). Each column keeps its scale and the sum of its q.
//! - x is quantized per row on each call, asymmetric (the u8 operand): u = round(x / t) + z
//!   clamped to [0, 255], with [lo, hi] = [min(x, 0), max(x, 0)], t = (hi - lo) / 255 and
//!   the zero point z = round(-lo / t), so 0 is exact and a row of only positive values
//!   (after GELU, say) uses all 256 levels. k is zero padded to a whole 64-byte tile row.
//! - sum_k x w ~= t s (sum_k u q - z sum_k q): the accumulators start from -z · colsum on
//!   the first k-block (the compensation), then take u · q; the epilogue converts them to
//!   f32, scales by t s and adds the bias (or, on later k-blocks, the partial result).
//!   |u q| <= 255 · 127 and k <= 2^16 keep the i32 sums exact.
//! - The few outlier input channels of each row are left out of its quantization and
//!   added exactly, in f32 with bf16 weights ([`outliers`]). Every step of a row's
//!   quantization looks at that row only: its result is the same in any batch.
//! - The blocked driver, tasks and epilogue are the f32 GEMM's ([`super::drive`]).
//!
//! Non-finite activations make their row's scale NaN, so they propagate to the output as
//! in f32 rather than being clamped away.

#[cfg(target_arch = "x86_64")]
mod amx;
#[cfg(target_arch = "x86_64")]
mod avx512;
pub mod outliers;
mod portable;

use std::cell::RefCell;

use rayon::prelude::*;

use super::bf16::{from_bf16, to_bf16};
use super::lowp::{
    convert_parallel, with_scratch, Panels, Path, CONVERT_ROWS, K_PAD_BYTES, ROWS_PAD,
};
use super::{drive, Isa, Job, Kernel, Start, NR};
use crate::config::Activation;

/// A [n, k] weight quantized per output column into int8 panels.
#[derive(Debug, Clone)]
pub struct PackedInt8 {
    panels: Panels<i8>,
    /// Per column (padded to whole panels with 0): the scale s and the sum of the q.
    scale: Vec<f32>,
    colsum: Vec<i32>,
    /// The weight k-major ([k, n]) in bf16, for the outlier channels (empty when k is
    /// below [`outliers::MIN_K`]).
    wt: Vec<u16>,
}

/// Longest k whose i32 sums cannot overflow: 2^16 · 255 · 127 < 2^31.
const MAX_K: usize = 1 << 16;

impl PackedInt8 {
    /// Quantizes and packs `w`, stored [n, k] row-major. `None` when `w.len() != n * k` or
    /// k is beyond what i32 accumulators hold exactly (65536).
    pub fn pack(w: &[f32], n: usize, k: usize) -> Option<Self> {
        if n.checked_mul(k)? != w.len() || k > MAX_K {
            return None;
        }
        // Columns (and, for the k-major copy, k rows) are independent: all of it runs on
        // the rayon pool, as the panels do.
        let padded = n.div_ceil(NR) * NR;
        let mut scale = vec![0.0f32; padded];
        scale[..n].par_iter_mut().enumerate().for_each(|(c, s)| {
            let max =
                w[c * k..(c + 1) * k]
                    .iter()
                    .fold(0.0f32, |m, v| if v.abs() > m { v.abs() } else { m });
            *s = max / 127.0;
        });
        // Each column quantized once ([n, k]), with its sum.
        let mut quant = vec![0i8; n * k];
        let mut colsum = vec![0i32; padded];
        quant
            .par_chunks_exact_mut(k.max(1))
            .zip(colsum[..n].par_iter_mut())
            .enumerate()
            .for_each(|(c, (q, sum))| {
                for (d, &v) in q.iter_mut().zip(&w[c * k..(c + 1) * k]) {
                    *d = quantize_weight(v, scale[c]);
                }
                *sum = q.iter().map(|&v| i32::from(v)).sum();
            });
        let panels = Panels::new(n, k, 4, |c, kk| quant[c * k + kk]);
        let mut wt = Vec::new();
        if k >= outliers::MIN_K {
            wt = vec![0u16; k * n];
            wt.par_chunks_exact_mut(n)
                .enumerate()
                .for_each(|(kk, row)| {
                    for (c, v) in row.iter_mut().enumerate() {
                        *v = to_bf16(w[c * k + kk]);
                    }
                });
        }
        Some(PackedInt8 {
            panels,
            scale,
            colsum,
            wt,
        })
    }

    /// Output columns.
    pub fn n(&self) -> usize {
        self.panels.n()
    }

    /// Input features.
    pub fn k(&self) -> usize {
        self.panels.k()
    }

    /// The dequantized weight value at (column, kk): what the product multiplies by.
    pub fn dequantized(&self, column: usize, kk: usize) -> f32 {
        let w = self.panels.panel(column / NR)[((kk / 4) * NR + column % NR) * 4 + kk % 4];
        f32::from(w) * self.scale[column]
    }

    /// The weight value at (column, kk) an outlier channel kk multiplies by (bf16).
    pub fn outlier_weight(&self, column: usize, kk: usize) -> f32 {
        self.wt
            .get(kk * self.n() + column)
            .map_or(f32::NAN, |&w| from_bf16(w))
    }
}

/// round_ties_even(w / s) in [-127, 127] (0 for an all-zero column or a NaN), rounded by
/// adding and subtracting 1.5 · 2^23 (no libm call, and a column's loop vectorizes).
#[inline(always)]
fn quantize_weight(w: f32, s: f32) -> i8 {
    const ROUND: f32 = 12_582_912.0;
    let v = w / s;
    if s > 0.0 && !v.is_nan() {
        let t = v.clamp(-127.0, 127.0) + ROUND;
        t.to_bits().wrapping_sub(ROUND.to_bits()) as i32 as i8
    } else {
        0
    }
}

impl Path {
    /// Whether this CPU can run the int8 product on `self`.
    pub fn int8_supported(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Path::Amx => Path::Native.int8_supported() && super::amx::int8(),
            #[cfg(target_arch = "x86_64")]
            Path::Native => {
                is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vl")
                    && is_x86_feature_detected!("avx512vnni")
                    && is_x86_feature_detected!("popcnt")
            }
            Path::Portable => true,
            #[cfg(not(target_arch = "x86_64"))]
            Path::Amx | Path::Native => false,
        }
    }
}

/// x quantized per row: rows of `lda` u8 values, each row's scale and zero point.
#[derive(Debug, Default)]
pub struct QuantRows {
    /// Rows of u8 values, `lda` apart (then rows to [`ROWS_PAD`], not cleared).
    pub data: Vec<u8>,
    /// Each row's step t.
    pub scale: Vec<f32>,
    /// Each row's zero point z.
    pub zero: Vec<i32>,
    /// Each row's outlier channels left out (their u are z, i.e. zero), ascending, in
    /// slots of [`outliers::OUTLIERS`] a row, of which the first `per_row` are used.
    outliers: Vec<usize>,
    /// Outlier channels a row: [`outliers::OUTLIERS`], or 0 when k is below
    /// [`outliers::MIN_K`].
    per_row: usize,
}

impl QuantRows {
    /// Row `r`'s outlier channels (for the tests).
    #[cfg(test)]
    pub(super) fn row_outliers(&self, r: usize) -> &[usize] {
        let at = r * outliers::OUTLIERS;
        &self.outliers[at..at + self.per_row]
    }
}

impl QuantRows {
    /// Quantizes `rows` rows of `k` values of `x` into rows of `lda` (>= k) values, with
    /// `path`'s instructions (both paths give identical results), leaving the outlier
    /// channels out.
    pub fn quantize(&mut self, path: Path, x: &[f32], rows: usize, k: usize, lda: usize) {
        self.data.resize(rows.next_multiple_of(ROWS_PAD) * lda, 0);
        self.scale.resize(rows, 0.0);
        self.zero.resize(rows, 0);
        let per = if k >= outliers::MIN_K {
            outliers::OUTLIERS
        } else {
            0
        };
        self.per_row = per;
        self.outliers.resize(rows * outliers::OUTLIERS, 0);
        let x = &x[..rows * k];
        let native = path != Path::Portable && Path::Native.int8_supported();
        let one = |tmp: &mut Vec<f32>, (((src, dst), skip), (scale, zero)): RowJob| {
            let src = match skip.len() {
                0 => src,
                _ => {
                    let picked: &mut [usize; outliers::OUTLIERS] =
                        skip.try_into().expect("a row has OUTLIERS channel slots");
                    outliers::select(native, src, picked);
                    tmp.clear();
                    tmp.extend_from_slice(src);
                    picked.iter().for_each(|&j| tmp[j] = 0.0);
                    &tmp[..]
                }
            };
            (*scale, *zero) = match native {
                // SAFETY: the native path is supported, so AVX-512F is.
                #[cfg(target_arch = "x86_64")]
                true => unsafe { avx512::quantize_row(src, dst) },
                _ => quantize_row(src, dst),
            };
        };
        let slots = outliers::OUTLIERS;
        let skips = &mut self.outliers[..];
        let meta = self.scale.iter_mut().zip(self.zero.iter_mut());
        if k == 0 {
            meta.for_each(|(s, z)| (*s, *z) = (0.0, 0));
        } else if convert_parallel(rows, k) {
            let meta = self.scale.par_iter_mut().zip(self.zero.par_iter_mut());
            x.par_chunks_exact(k)
                .zip(self.data.par_chunks_exact_mut(lda))
                .zip(skips.par_chunks_exact_mut(slots).map(|s| &mut s[..per]))
                .zip(meta)
                .with_min_len(CONVERT_ROWS)
                .for_each_init(Vec::new, one);
        } else {
            let mut tmp = Vec::new();
            x.chunks_exact(k)
                .zip(self.data.chunks_exact_mut(lda))
                .zip(skips.chunks_exact_mut(slots).map(|s| &mut s[..per]))
                .zip(meta)
                .for_each(|item| one(&mut tmp, item));
        }
    }
}

/// A row's quantization from its range [lo, hi] (lo <= 0 <= hi): Some((t, 1 / t, z)), or
/// None for an all-zero row (t = 0, every u = z = 0). Shared by both paths so they agree.
#[inline(always)]
fn row_params(lo: f32, hi: f32) -> Option<(f32, f32, f32)> {
    if hi == lo {
        return None;
    }
    let scale = (hi - lo) / 255.0;
    let inv = 1.0 / scale;
    let zero = (-lo * inv).round_ties_even().clamp(0.0, 255.0);
    Some((scale, inv, zero))
}

/// One row to quantize: ((x row, u8 row), its outlier slots), (its step, its zero point).
type RowJob<'a> = (
    ((&'a [f32], &'a mut [u8]), &'a mut [usize]),
    (&'a mut f32, &'a mut i32),
);

/// Quantizes one row into `dst` (its tail past the row is zeroed); returns (t, z).
/// u = round_ties_even(x * (1 / t) + z) clamped to [0, 255], as the AVX-512 version.
fn quantize_row(x: &[f32], dst: &mut [u8]) -> (f32, i32) {
    let (mut lo, mut hi) = (0.0f32, 0.0f32);
    for &v in x {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    dst[x.len()..].fill(0);
    if !x.iter().all(|v| v.is_finite()) {
        dst[..x.len()].fill(0);
        return (f32::NAN, 0);
    }
    let Some((scale, inv, zero)) = row_params(lo, hi) else {
        dst[..x.len()].fill(0);
        return (0.0, 0);
    };
    for (d, &v) in dst.iter_mut().zip(x) {
        *d = (v * inv + zero).round_ties_even().clamp(0.0, 255.0) as u8;
    }
    (scale, zero as i32)
}

thread_local! {
    static SCRATCH: RefCell<QuantRows> = RefCell::new(QuantRows::default());
}

/// out[rows, n] = act(x[rows, k] · wᵀ + bias) in int8 with the best path of this CPU,
/// on the rayon pool.
///
/// Panics if `x`, `out` or `bias` are shorter than the shapes imply (a plan bug).
pub fn linear_int8(
    x: &[f32],
    rows: usize,
    w: &PackedInt8,
    bias: Option<&[f32]>,
    act: Option<Activation>,
    out: &mut [f32],
) {
    linear_int8_with(
        Path::Amx,
        rayon::current_num_threads(),
        x,
        rows,
        w,
        bias,
        act,
        out,
    );
}

/// [`linear_int8`] on an explicit path (one this CPU lacks falls back to the portable
/// one) and thread count.
#[allow(clippy::too_many_arguments)]
pub fn linear_int8_with(
    path: Path,
    threads: usize,
    x: &[f32],
    rows: usize,
    w: &PackedInt8,
    bias: Option<&[f32]>,
    act: Option<Activation>,
    out: &mut [f32],
) {
    let k = w.k();
    assert!(x.len() >= rows * k, "linear: x shorter than rows * k");
    let path = path.or_fallback(Path::int8_supported);
    let lda = k.next_multiple_of(K_PAD_BYTES);
    with_scratch(&SCRATCH, |q| {
        q.quantize(path, x, rows, k, lda);
        // The outlier channels' exact part (bias included) goes into each task's block
        // of the output just before the product adds to it.
        let part = (q.per_row > 0).then(|| outliers::Part {
            x,
            k,
            channels: &q.outliers,
            per_row: q.per_row,
            wt: &w.wt,
            n: w.n(),
            bias,
        });
        if let Some(part) = &part {
            part.check(rows);
        }
        let kern = Int8Kernel {
            path,
            a: q,
            lda,
            w,
            part,
        };
        drive(&kern, threads, rows, bias, act, out);
    });
}

/// One int8 microkernel call: C[rows, NR] = start + dequantized A[rows, 4 quads] ·
/// B[4 quads, NR], with the compensation -z · colsum added on the `first` k-block.
///
/// `a` is valid for reads of `a[i * lda + kk]` (i < rows, kk < 4 quads); `b` is a 64-byte
/// aligned panel slice valid for `quads * 4 * NR` reads; `row_scale` and `row_zero` for
/// `rows` reads; `col_scale` and `col_sum` for NR reads; `c` and `start` as on
/// [`super::Tile`].
struct Tile8 {
    a: *const u8,
    lda: usize,
    b: *const i8,
    quads: usize,
    row_scale: *const f32,
    row_zero: *const i32,
    col_scale: *const f32,
    col_sum: *const i32,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    start: Start,
    first: bool,
}

struct Int8Kernel<'a> {
    path: Path,
    a: &'a QuantRows,
    lda: usize,
    w: &'a PackedInt8,
    /// The outlier channels' part, written into each task's block (bias included) before
    /// the product adds to it.
    part: Option<outliers::Part<'a>>,
}

impl Kernel for Int8Kernel<'_> {
    fn n(&self) -> usize {
        self.w.n()
    }
    fn k(&self) -> usize {
        self.w.k()
    }
    fn mr(&self) -> usize {
        match self.path {
            #[cfg(target_arch = "x86_64")]
            Path::Amx => amx::MR,
            #[cfg(target_arch = "x86_64")]
            Path::Native => avx512::MR,
            _ => portable::MR,
        }
    }
    fn elem_bytes(&self) -> usize {
        1
    }
    fn k_step(&self) -> usize {
        // Whole tile rows, on every path: the k-blocks (and so the rounding) are the
        // same whichever kernel runs.
        K_PAD_BYTES
    }
    fn isa(&self) -> Isa {
        self.path.epilogue_isa()
    }
    fn accumulates(&self) -> bool {
        self.part.is_some()
    }
    unsafe fn prepare(&self, row0: usize, rows: usize, col0: usize, cols: usize, c: *mut f32) {
        if let Some(part) = &self.part {
            // SAFETY: `check` passed for all the rows; the block lies in the product and
            // C is valid for it (the caller's contract); the paths but the portable one
            // imply AVX-512F, BW and VL.
            part.block(self.path != Path::Portable, row0, rows, col0, cols, c);
        }
    }
    fn begin(&self) {
        #[cfg(target_arch = "x86_64")]
        if self.path == Path::Amx {
            // SAFETY: the AMX path is supported (checked in `linear_*_with`), so the OS
            // granted the tile state.
            unsafe { super::amx::configure() };
        }
    }
    unsafe fn tile(&self, job: &Job) {
        let col0 = job.panel * NR;
        let t = Tile8 {
            a: self.a.data[job.row * self.lda + job.k0..].as_ptr(),
            lda: self.lda,
            // k0 is a multiple of 4: quad k0 / 4 starts k0 * NR values into the panel.
            b: self.w.panels.panel(job.panel)[job.k0 * NR..].as_ptr(),
            quads: job.kc.div_ceil(4),
            row_scale: self.a.scale[job.row..].as_ptr(),
            row_zero: self.a.zero[job.row..].as_ptr(),
            col_scale: self.w.scale[col0..col0 + NR].as_ptr(),
            col_sum: self.w.colsum[col0..col0 + NR].as_ptr(),
            c: job.c,
            ldc: job.ldc,
            rows: job.rows,
            start: job.start,
            first: job.k0 == 0,
        };
        match self.path {
            // SAFETY: the path is supported (checked in `linear_int8_with`); rows and quads
            // lie inside the quantized rows (lda = k rounded up to a quad) and the panel;
            // the panel slice starts at a whole quad row, a multiple of 64 bytes from an
            // aligned panel; the column vectors are padded to whole panels.
            #[cfg(target_arch = "x86_64")]
            Path::Native => avx512::tile(&t),
            // SAFETY: as above, and AMX reads whole tiles inside the padding: rows to
            // ROWS_PAD (job rows start at multiples of MR), k to whole tile rows (k0 is a
            // multiple of the k-step) in the quantized rows and in the panel.
            #[cfg(target_arch = "x86_64")]
            Path::Amx => amx::tile(&t),
            // SAFETY: as above.
            _ => portable::tile(&t),
        }
    }
}

#[cfg(test)]
mod tests;
