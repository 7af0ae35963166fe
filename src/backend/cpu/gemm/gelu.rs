//! BERT's GELU, x/2 (1 + erf(x / sqrt 2)), in AVX-512 intrinsics for the GEMM epilogue:
//! the same formulas as `fastmath::erf` and `fastmath::exp` (the Maclaurin series below
//! |x| = 0.8, Abramowitz & Stegun 7.1.26 above, e^x by a degree-7 Taylor series on the
//! reduced argument), but with fused multiply-adds and the one division replaced by
//! `vrcp14ps` and a Newton step (relative error about 2^-28). The portable loop cannot
//! ask for either (Rust does not contract a * b + c, and `f32::mul_add` is a library call
//! where FMA is not compiled in), and both halve the work of a loop that is bound by it.

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

/// Horner's rule: c[0] + x (c[1] + x (c[2] + ...)).
#[inline(always)]
unsafe fn poly<const N: usize>(x: __m512, c: [f32; N]) -> __m512 {
    let mut p = splat(c[N - 1]);
    for &k in c[..N - 1].iter().rev() {
        p = fma(p, x, splat(k));
    }
    p
}

/// GELU on 16 lanes.
#[inline(always)]
unsafe fn gelu(x: __m512) -> __m512 {
    let half_x = _mm512_mul_ps(splat(0.5), x);
    let e = erf(_mm512_mul_ps(x, splat(std::f32::consts::FRAC_1_SQRT_2)));
    fma(half_x, e, half_x)
}

/// erf on 16 lanes, as `fastmath::erf`.
#[inline(always)]
unsafe fn erf(x: __m512) -> __m512 {
    // Sign and magnitude by integer lane logic (the float forms are AVX512DQ).
    let (bits, sign) = (_mm512_castps_si512(x), _mm512_set1_epi32(i32::MIN));
    let a = _mm512_castsi512_ps(_mm512_andnot_si512(sign, bits));
    // Near 0: 2/sqrt(pi) x (1 - x^2/3 + x^4/10 - ...), n <= 8.
    let x2 = _mm512_mul_ps(x, x);
    let series = poly(
        x2,
        [
            1.0,
            -1.0 / 3.0,
            1.0 / 10.0,
            -1.0 / 42.0,
            1.0 / 216.0,
            -1.0 / 1320.0,
            1.0 / 9360.0,
            -1.0 / 75600.0,
            1.0 / 685_440.0,
        ],
    );
    let near = _mm512_mul_ps(
        _mm512_mul_ps(splat(std::f32::consts::FRAC_2_SQRT_PI), x),
        series,
    );
    // Far: 1 - t P(t) e^(-a^2), t = 1 / (1 + p a), with the sign of x.
    let d = fma(splat(0.327_591_1), a, splat(1.0));
    let r = _mm512_rcp14_ps(d);
    let t = _mm512_mul_ps(r, fma(_mm512_sub_ps(splat(0.0), d), r, splat(2.0)));
    let p = _mm512_mul_ps(
        t,
        poly(
            t,
            [
                0.254_829_6,
                -0.284_496_74,
                1.421_413_7,
                -1.453_152,
                1.061_405_4,
            ],
        ),
    );
    let minus_a2 = _mm512_sub_ps(splat(0.0), _mm512_mul_ps(a, a));
    let far_abs = fma(_mm512_sub_ps(splat(0.0), p), exp(minus_a2), splat(1.0));
    let far = _mm512_castsi512_ps(_mm512_or_si512(
        _mm512_castps_si512(far_abs),
        _mm512_and_si512(sign, bits),
    ));
    let is_near = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(a, splat(0.8));
    _mm512_mask_blend_ps(is_near, far, near)
}

/// e^x on 16 lanes, as `fastmath::exp` (x clamped to [-87, 88]).
#[inline(always)]
unsafe fn exp(x: __m512) -> __m512 {
    const ROUND: f32 = 12_582_912.0;
    let x = _mm512_min_ps(_mm512_max_ps(x, splat(-87.0)), splat(88.0));
    let t = fma(x, splat(std::f32::consts::LOG2_E), splat(ROUND));
    let n = _mm512_sub_ps(t, splat(ROUND));
    let bits = _mm512_sub_epi32(
        _mm512_castps_si512(t),
        _mm512_set1_epi32(ROUND.to_bits() as i32),
    );
    let r = fma(n, splat(-0.693_145_75), x);
    let r = fma(n, splat(-1.428_606_8e-6), r);
    let p = poly(
        r,
        [
            1.0,
            1.0,
            0.5,
            1.0 / 6.0,
            1.0 / 24.0,
            1.0 / 120.0,
            1.0 / 720.0,
            1.0 / 5040.0,
        ],
    );
    let scale = _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(
        bits,
        _mm512_set1_epi32(127),
    )));
    _mm512_mul_ps(p, scale)
}

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
