//! bf16 linears: out[rows, n] = act(x[rows, k] · wᵀ + bias) with w rounded once to
//! bfloat16 and x rounded per call, products of bf16 values (exact in f32) accumulated in
//! f32, and the bias, activation and output in f32.
//!
//! - w is packed once into [`NR`]-column panels of k pairs ([`PackedBf16`]): for each pair
//!   (2q, 2q + 1), column j's two values side by side, the B operand of `vdpbf16ps`.
//! - x is rounded to bf16 (round to nearest even) row by row into per-thread scratch,
//!   k padded with zeros to a whole 64-byte tile row; the AVX-512 microkernel broadcasts
//!   one pair per row, the AMX one ([`super::amx`]) takes 32-row tiles of it.
//! - The blocked driver, tasks and epilogue are the f32 GEMM's ([`super::drive`]).
//!
//! Rounding both operands to bf16 (8 significant bits) is the only approximation: each
//! operand carries a relative error of at most 2^-8, so a dot product is off by at most
//! (2^-7 + 2^-16) · sum |x w| plus the f32 accumulation error (random signs make the
//! typical error far smaller, about 2^-8 · sqrt(sum (x w)^2)).

#[cfg(target_arch = "x86_64")]
mod amx;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod portable;

use std::cell::RefCell;

use rayon::prelude::*;

use super::lowp::{
    convert_parallel, with_scratch, Panels, Path, CONVERT_ROWS, K_PAD_BYTES, ROWS_PAD,
};
use super::{drive, Isa, Job, Kernel, Start, NR};
use crate::config::Activation;

/// A [n, k] weight in bf16 panels.
#[derive(Debug, Clone)]
pub struct PackedBf16 {
    panels: Panels<u16>,
}

impl PackedBf16 {
    /// Rounds `w`, stored [n, k] row-major, to bf16 and packs it. `None` when
    /// `w.len() != n * k`.
    pub fn pack(w: &[f32], n: usize, k: usize) -> Option<Self> {
        if n.checked_mul(k)? != w.len() {
            return None;
        }
        let panels = Panels::new(n, k, 2, |c, kk| to_bf16(w[c * k + kk]));
        Some(PackedBf16 { panels })
    }

    /// Output columns.
    pub fn n(&self) -> usize {
        self.panels.n()
    }

    /// Input features.
    pub fn k(&self) -> usize {
        self.panels.k()
    }
}

/// `x` rounded to the nearest bf16, ties to even (NaN stays NaN).
#[inline(always)]
pub fn to_bf16(x: f32) -> u16 {
    let b = x.to_bits();
    let rounded = (b.wrapping_add(0x7FFF + ((b >> 16) & 1)) >> 16) as u16;
    if x.is_nan() {
        ((b >> 16) as u16) | 0x40
    } else {
        rounded
    }
}

/// The f32 value of a bf16.
#[inline(always)]
pub fn from_bf16(b: u16) -> f32 {
    f32::from_bits(u32::from(b) << 16)
}

impl Path {
    /// Whether this CPU can run the bf16 product on `self`.
    pub fn bf16_supported(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Path::Amx => Path::Native.bf16_supported() && super::amx::bf16(),
            #[cfg(target_arch = "x86_64")]
            Path::Native => {
                is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512bf16")
            }
            Path::Portable => true,
            #[cfg(not(target_arch = "x86_64"))]
            Path::Amx | Path::Native => false,
        }
    }
}

thread_local! {
    /// x rounded to bf16, rows of k padded to a whole tile row, rows to [`ROWS_PAD`].
    static SCRATCH: RefCell<Vec<u16>> = const { RefCell::new(Vec::new()) };
}

/// out[rows, n] = act(x[rows, k] · wᵀ + bias) in bf16 with the best path of this CPU,
/// on the rayon pool.
///
/// Panics if `x`, `out` or `bias` are shorter than the shapes imply (a plan bug).
pub fn linear_bf16(
    x: &[f32],
    rows: usize,
    w: &PackedBf16,
    bias: Option<&[f32]>,
    act: Option<Activation>,
    out: &mut [f32],
) {
    linear_bf16_with(
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

/// [`linear_bf16`] on an explicit path (one this CPU lacks falls back to the portable
/// one) and thread count.
#[allow(clippy::too_many_arguments)]
pub fn linear_bf16_with(
    path: Path,
    threads: usize,
    x: &[f32],
    rows: usize,
    w: &PackedBf16,
    bias: Option<&[f32]>,
    act: Option<Activation>,
    out: &mut [f32],
) {
    let k = w.k();
    assert!(x.len() >= rows * k, "linear: x shorter than rows * k");
    let path = path.or_fallback(Path::bf16_supported);
    let lda = k.next_multiple_of(K_PAD_BYTES / 2);
    with_scratch(&SCRATCH, |a| {
        a.resize(rows.next_multiple_of(ROWS_PAD) * lda, 0);
        round_rows(
            path != Path::Portable,
            &x[..rows * k],
            k,
            &mut a[..rows * lda],
            lda,
        );
        let kern = Bf16Kernel { path, a, lda, w };
        drive(&kern, threads, rows, bias, act, out);
    });
}

/// Rounds rows of `k` values into rows of `lda` bf16 values, zero padded; `native`
/// converts with AVX512-BF16 (the same values but for f32 subnormals, see
/// [`round_row_avx512`]).
fn round_rows(native: bool, x: &[f32], k: usize, a: &mut [u16], lda: usize) {
    let one = |(src, dst): (&[f32], &mut [u16])| match native {
        // SAFETY: the native and AMX paths are supported only with AVX-512F, BW and
        // AVX512-BF16.
        #[cfg(target_arch = "x86_64")]
        true => unsafe { round_row_avx512(src, dst) },
        _ => round_row(src, dst),
    };
    if k == 0 {
        return;
    }
    let rows = x.len() / k;
    if convert_parallel(rows, k) {
        x.par_chunks_exact(k)
            .zip(a.par_chunks_exact_mut(lda))
            .with_min_len(CONVERT_ROWS)
            .for_each(one);
    } else {
        x.chunks_exact(k).zip(a.chunks_exact_mut(lda)).for_each(one);
    }
}

/// [`round_row`] by `vcvtne2ps2bf16` (round to nearest even), 32 values at a time.
/// It treats f32 subnormals as zero where [`to_bf16`] rounds them, which changes no
/// product: `vdpbf16ps` and AMX treat bf16 subnormal inputs as zero too.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub(crate) unsafe fn round_row_avx512(src: &[f32], dst: &mut [u16]) {
    use std::arch::x86_64::*;
    let whole = src.len() / 32 * 32;
    for i in (0..whole).step_by(32) {
        let lo = _mm512_loadu_ps(src.as_ptr().add(i));
        let hi = _mm512_loadu_ps(src.as_ptr().add(i + 16));
        // SAFETY (transmute): __m512bh and __m512i are both 64 bytes of plain lanes.
        let v = std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(hi, lo));
        _mm512_storeu_si512(dst.as_mut_ptr().add(i).cast(), v);
    }
    round_row(&src[whole..], &mut dst[whole..]);
}

#[inline(always)]
fn round_row(src: &[f32], dst: &mut [u16]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = to_bf16(s);
    }
    dst[src.len()..].fill(0);
}

/// One bf16 microkernel call: C[rows, NR] = start + A[rows, 2 pairs] · B[2 pairs, NR].
///
/// `a` is valid for reads of `a[i * lda + kk]` (i < rows, kk < 2 pairs); `b` is a 64-byte
/// aligned panel slice valid for `pairs * 2 * NR` reads; `c` and `start` as on
/// [`super::Tile`].
struct Tile16 {
    a: *const u16,
    lda: usize,
    b: *const u16,
    pairs: usize,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    start: Start,
}

struct Bf16Kernel<'a> {
    path: Path,
    a: &'a [u16],
    lda: usize,
    w: &'a PackedBf16,
}

impl Kernel for Bf16Kernel<'_> {
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
        2
    }
    fn k_step(&self) -> usize {
        // Whole tile rows, on every path: the k-blocks (and so the rounding) are the
        // same whichever kernel runs.
        K_PAD_BYTES / 2
    }
    fn isa(&self) -> Isa {
        self.path.epilogue_isa()
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
        let t = Tile16 {
            a: self.a[job.row * self.lda + job.k0..].as_ptr(),
            lda: self.lda,
            // k0 is even: pair k0 / 2 starts k0 * NR values into the panel.
            b: self.w.panels.panel(job.panel)[job.k0 * NR..].as_ptr(),
            pairs: job.kc.div_ceil(2),
            c: job.c,
            ldc: job.ldc,
            rows: job.rows,
            start: job.start,
        };
        match self.path {
            // SAFETY: the path is supported (checked in `linear_bf16_with`); rows and
            // pairs lie inside the scratch (rows of lda = k rounded up to a pair) and the
            // panel (k rounded up to a pair); the panel slice starts at a whole pair row,
            // a multiple of 64 bytes from an aligned panel.
            #[cfg(target_arch = "x86_64")]
            Path::Native => avx512::tile(&t),
            // SAFETY: as above, and AMX reads whole tiles inside the padding: rows to
            // ROWS_PAD (job rows start at multiples of MR), k to whole tile rows (k0 is a
            // multiple of the k-step) in the scratch and in the panel.
            #[cfg(target_arch = "x86_64")]
            Path::Amx => amx::tile(&t),
            // SAFETY: as above.
            _ => portable::tile(&t),
        }
    }
}

#[cfg(test)]
mod tests;
