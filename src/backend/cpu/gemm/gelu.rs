//! BERT's GELU, x/2 (1 + erf(x / sqrt 2)), in AVX-512 intrinsics for the GEMM epilogue.
//! erf is piecewise: [0, 4) is cut into 16 intervals of width 1/4, and on each a degree-5
//! polynomial (fitted by tools/fit_erf.py, largest error 3e-8 before f32 rounding) is
//! evaluated with fused multiply-adds, its coefficients picked per lane from one register
//! each by `vpermps`; past 4, erf is 1 to f32 precision. That is about 20 instructions a
//! vector where the portable formulas (`fastmath::erf`: a series near 0, Abramowitz &
//! Stegun 7.1.26 with an exponential beyond) take twice as many, in a loop bound by them.

use std::arch::x86_64::*;

/// Applies GELU to `xs` in place.
///
/// # Safety
/// The CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
pub unsafe fn gelu_slice(xs: &mut [f32]) {
    let mut chunks = xs.chunks_exact_mut(16);
    for c in &mut chunks {
        let v = _mm512_loadu_ps(c.as_ptr());
        _mm512_storeu_ps(c.as_mut_ptr(), gelu(v));
    }
    let rest = chunks.into_remainder();
    if !rest.is_empty() {
        let mask: __mmask16 = (1 << rest.len()) - 1;
        let v = _mm512_maskz_loadu_ps(mask, rest.as_ptr());
        _mm512_mask_storeu_ps(rest.as_mut_ptr(), mask, gelu(v));
    }
}

/// a * b + c, fused.
#[inline(always)]
unsafe fn fma(a: __m512, b: __m512, c: __m512) -> __m512 {
    _mm512_fmadd_ps(a, b, c)
}

#[inline(always)]
unsafe fn splat(x: f32) -> __m512 {
    _mm512_set1_ps(x)
}

/// GELU on 16 lanes.
#[inline(always)]
unsafe fn gelu(x: __m512) -> __m512 {
    let half_x = _mm512_mul_ps(splat(0.5), x);
    let e = erf(_mm512_mul_ps(x, splat(std::f32::consts::FRAC_1_SQRT_2)));
    fma(half_x, e, half_x)
}

/// erf on 16 lanes: [`ERF_TABLE`]'s polynomial for |x|, with the sign of x.
#[inline(always)]
unsafe fn erf(x: __m512) -> __m512 {
    // Sign and magnitude by integer lane logic (the float forms are AVX512DQ).
    let (bits, sign) = (_mm512_castps_si512(x), _mm512_set1_epi32(i32::MIN));
    let a = _mm512_castsi512_ps(_mm512_andnot_si512(sign, bits));
    // s = 4|x| below 16 (a NaN becomes the bound too: min returns its second operand
    // then, and the NaN still reaches the output through x / 2); interval floor(s).
    let s = _mm512_min_ps(_mm512_mul_ps(a, splat(4.0)), splat(LAST));
    let floor = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC }>(s);
    let u = _mm512_sub_ps(_mm512_sub_ps(s, floor), splat(0.5));
    let interval = _mm512_cvttps_epi32(floor);
    let coef = |d: usize| _mm512_permutexvar_ps(interval, _mm512_loadu_ps(ERF_TABLE[d].as_ptr()));
    let mut p = coef(DEGREE);
    for d in (0..DEGREE).rev() {
        p = fma(p, u, coef(d));
    }
    _mm512_castsi512_ps(_mm512_or_si512(
        _mm512_castps_si512(p),
        _mm512_and_si512(sign, bits),
    ))
}

/// The largest f32 below 16: 4|x| is clamped to it, into the last interval.
const LAST: f32 = 15.999_999;

/// The polynomials' degree.
const DEGREE: usize = 5;

/// erf on interval i of [0, 4) (width 1/4): coefficient d of u^d at [d][i],
/// u = 4a - i - 1/2; from tools/fit_erf.py.
const ERF_TABLE: [[f32; 16]; 6] = [
    [
        0.1403162, 0.4041169, 0.6232409, 0.7840751, 0.8883882, 0.94817007, 0.97844374, 0.99199003,
        0.997346, 0.99921703, 0.9997946, 0.99995214, 0.9999901, 0.9999982, 0.9999997, 0.99999994,
    ],
    [
        0.27772132,
        0.2450882,
        0.19087489,
        0.13118626,
        0.07956849,
        0.042589944,
        0.020118063,
        0.008386456,
        0.0030852049,
        0.0010016195,
        0.00028696886,
        7.255712e-05,
        1.6189699e-05,
        3.1879458e-06,
        5.539834e-07,
        8.495645e-08,
    ],
    [
        -0.008678597,
        -0.02297659,
        -0.029823847,
        -0.028696906,
        -0.02237877,
        -0.014640482,
        -0.008173088,
        -0.003931187,
        -0.0016389999,
        -0.00059468497,
        -0.00018830398,
        -5.2140582e-05,
        -1.2644275e-05,
        -2.6885523e-06,
        -5.017009e-07,
        -8.222207e-08,
    ],
    [
        -0.005604973,
        -0.0036699222,
        -0.0008699186,
        0.0014518695,
        0.0025382857,
        0.0024677813,
        0.0017944052,
        0.0010537835,
        0.00051621575,
        0.0002145392,
        7.641065e-05,
        2.3475362e-05,
        6.2494173e-06,
        1.4462656e-06,
        2.916712e-07,
        5.1355535e-08,
    ],
    [
        0.0002663216,
        0.0006461477,
        0.0006855222,
        0.00043809682,
        0.0001106831,
        -0.00011712119,
        -0.00019289558,
        -0.00016469945,
        -0.00010313644,
        -5.1585725e-05,
        -2.1355228e-05,
        -7.4552277e-06,
        -2.2196195e-06,
        -5.677459e-07,
        -1.2540494e-07,
        -2.4009575e-08,
    ],
    [
        0.000101101556,
        4.426382e-05,
        -2.6401414e-05,
        -6.514569e-05,
        -5.9630074e-05,
        -2.9925699e-05,
        -2.2492698e-06,
        1.10625215e-05,
        1.2152551e-05,
        8.164628e-06,
        4.137123e-06,
        1.6872142e-06,
        5.705683e-07,
        1.6267552e-07,
        3.951126e-08,
        8.23278e-09,
    ],
];

#[cfg(test)]
mod tests {
    use super::*;

    /// GELU in f64 from libm's erf.
    fn reference(x: f32) -> f64 {
        let x = f64::from(x);
        0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))
    }

    #[test]
    fn matches_f64_gelu_and_the_portable_loop() {
        if !is_x86_feature_detected!("avx512f") {
            eprintln!("no AVX-512F here: skipped");
            return;
        }
        // A dense grid over [-20, 20], a ragged tail and the specials.
        let mut xs: Vec<f32> = (-200_000..=200_003).map(|i| i as f32 * 1e-4).collect();
        xs.extend([0.0, -0.0, 1e-30, -1e-30, 30.0, -30.0, 1e6, -1e6]);
        let mut got = xs.clone();
        // SAFETY: AVX-512F is present (checked above).
        unsafe { gelu_slice(&mut got) };
        let mut worst = 0.0f64;
        for (&x, &g) in xs.iter().zip(&got) {
            let want = reference(x);
            let err = (f64::from(g) - want).abs();
            // erf within 3e-7 (as fastmath's), scaled by x / 2, plus a few ulps of the result.
            let bound = 1.5e-7 * f64::from(x.abs()) + 3e-7 * want.abs();
            assert!(err <= bound, "gelu({x:e}) = {g:e}, want {want:e}");
            let portable =
                crate::backend::cpu::activation::apply(crate::config::Activation::Gelu, x);
            let gap = (f64::from(g) - f64::from(portable)).abs();
            assert!(
                gap <= 2.0 * bound,
                "gelu({x:e}): {g:e} against the portable {portable:e}"
            );
            worst = worst.max(err / (f64::from(x.abs()) + 1e-30));
        }
        eprintln!("gelu: largest |err| / |x| = {worst:e}");
        let mut nan = [f32::NAN; 3];
        // SAFETY: as above.
        unsafe { gelu_slice(&mut nan) };
        assert!(nan.iter().all(|v| v.is_nan()));
    }
}
