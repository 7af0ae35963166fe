//! AVX512-VNNI microkernel: an 8 x 48 tile of C in 24 zmm i32 accumulators. Each step
//! takes one k quad: three aligned loads of the panel's 48 column quads (s8), one
//! broadcast quad of u8 activations per row, and `vpdpbusd` (acc += sum of 4 u8 x s8).
//! The epilogue dequantizes in f32 exactly as the portable kernel does.

use std::arch::x86_64::*;

use super::{Start, Tile8, NR};

/// Rows of the register tile.
pub const MR: usize = 8;

/// Zmm vectors per panel row (16 columns, 64 bytes each).
const V: usize = NR / 16;

/// Runs one tile of 1..=MR rows.
///
/// # Safety
/// The CPU must support AVX-512F, BW, VL and VNNI, and `t` must describe
/// readable/writable memory as documented on [`Tile8`], with `t.rows <= MR`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn tile(t: &Tile8) {
    by_rows!(t.rows, tile_m, t)
}

#[inline(always)]
unsafe fn tile_m<const M: usize>(t: &Tile8) {
    // The accumulators are built and consumed as whole arrays (no conditional writes
    // into them), which keeps all 24 in registers through the k loop.
    let mut acc: [[__m512i; V]; M] = if !t.first {
        [[_mm512_setzero_si512(); V]; M]
    } else {
        let sums: [__m512i; V] =
            std::array::from_fn(|j| _mm512_loadu_si512(t.col_sum.add(16 * j).cast()));
        std::array::from_fn(|i| {
            let zero = _mm512_set1_epi32(-*t.row_zero.add(i));
            std::array::from_fn(|j| _mm512_mullo_epi32(zero, sums[j]))
        })
    };
    let mut a = t.a;
    let mut b = t.b;
    for _ in 0..t.quads {
        let bv: [__m512i; V] = std::array::from_fn(|j| _mm512_load_si512(b.add(64 * j).cast()));
        for (i, row) in acc.iter_mut().enumerate() {
            let quad = a.add(i * t.lda).cast::<i32>().read_unaligned();
            let ai = _mm512_set1_epi32(quad);
            for (v, &bj) in row.iter_mut().zip(&bv) {
                *v = _mm512_dpbusd_epi32(*v, ai, bj);
            }
        }
        a = a.add(4);
        b = b.add(4 * NR);
    }
    store(t, acc);
}

/// The epilogue: C = start + acc · (row scale · column scale), as the portable kernel.
#[inline(always)]
unsafe fn store<const M: usize>(t: &Tile8, acc: [[__m512i; V]; M]) {
    let col_scale: [__m512; V] = std::array::from_fn(|j| _mm512_loadu_ps(t.col_scale.add(16 * j)));
    for (i, row) in acc.iter().enumerate() {
        let row_scale = _mm512_set1_ps(*t.row_scale.add(i));
        for (j, &v) in row.iter().enumerate() {
            dequantize(t, i, j, v, col_scale[j], row_scale);
        }
    }
}

/// Columns 16 j.. of row i of C = start + v · (column scale · row scale): the epilogue of
/// this kernel and of the AMX one, so that the two round alike.
///
/// # Safety
/// AVX-512F; `t` as on [`Tile8`], i < rows, j < NR / 16.
#[inline(always)]
pub(super) unsafe fn dequantize(
    t: &Tile8,
    i: usize,
    j: usize,
    v: __m512i,
    col_scale: __m512,
    row_scale: __m512,
) {
    let c = t.c.add(i * t.ldc + 16 * j);
    let base = match t.start {
        Start::Zero => _mm512_setzero_ps(),
        Start::Bias(bias) => _mm512_loadu_ps(bias.add(16 * j)),
        Start::Load => _mm512_loadu_ps(c),
    };
    let scale = _mm512_mul_ps(col_scale, row_scale);
    let f = _mm512_mul_ps(_mm512_cvtepi32_ps(v), scale);
    _mm512_storeu_ps(c, _mm512_add_ps(f, base));
}

/// The AVX-512 form of `super::quantize_row`, with identical results: exact min/max,
/// the shared parameters, then u = round_ties_even(x * (1 / t) + z) clamped to [0, 255]
/// (a multiply and an add, no FMA, as the portable loop).
///
/// # Safety
/// The CPU must support AVX-512F, BW and VL; `dst.len() >= x.len()`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub unsafe fn quantize_row(x: &[f32], dst: &mut [u8]) -> (f32, i32) {
    let len = x.len();
    let (mut lo, mut hi) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    let mut bad: __mmask16 = 0;
    let mut i = 0;
    while i < len {
        // Masked loads read zeros past the row, which change neither lo <= 0 nor hi >= 0.
        let mask = lanes(len - i);
        let v = _mm512_maskz_loadu_ps(mask, x.as_ptr().add(i));
        lo = _mm512_min_ps(lo, v);
        hi = _mm512_max_ps(hi, v);
        // v - v is NaN exactly when v is NaN or infinite.
        let d = _mm512_sub_ps(v, v);
        bad |= _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(d, d);
        i += 16;
    }
    dst[len..].fill(0);
    if bad != 0 {
        dst[..len].fill(0);
        return (f32::NAN, 0);
    }
    let Some((scale, inv, zero)) =
        super::row_params(_mm512_reduce_min_ps(lo), _mm512_reduce_max_ps(hi))
    else {
        dst[..len].fill(0);
        return (0.0, 0);
    };
    let (inv_v, zero_v) = (_mm512_set1_ps(inv), _mm512_set1_ps(zero));
    let (min_v, max_v) = (_mm512_setzero_ps(), _mm512_set1_ps(255.0));
    let mut i = 0;
    while i < len {
        let mask = lanes(len - i);
        let v = _mm512_maskz_loadu_ps(mask, x.as_ptr().add(i));
        let q = _mm512_add_ps(_mm512_mul_ps(v, inv_v), zero_v);
        let q = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(q);
        let q = _mm512_min_ps(_mm512_max_ps(q, min_v), max_v);
        // Narrowed in a register, then stored: the narrowing store with a memory
        // operand is microcoded (slow) on some CPUs.
        let u = _mm512_cvtusepi32_epi8(_mm512_cvttps_epi32(q));
        _mm_mask_storeu_epi8(dst.as_mut_ptr().add(i).cast(), mask, u);
        i += 16;
    }
    (scale, zero as i32)
}

/// The first `n` of 16 lanes (all 16 for n >= 16).
#[inline(always)]
fn lanes(n: usize) -> __mmask16 {
    match n {
        n if n >= 16 => 0xFFFF,
        n => (1 << n) - 1,
    }
}
