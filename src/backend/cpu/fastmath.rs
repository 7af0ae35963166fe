//! f32 exp and erf in straight-line arithmetic the compiler can vectorize, accurate to a
//! few f32 ulps: exp within 2e-7 relative error, erf within 3e-7 absolute error
//! (checked against f64 below). Used by the activations and the softmax.

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split in two so that n * LN2_HI is exact for |n| < 2^9.
const LN2_HI: f32 = 0.693_145_75;
const LN2_LO: f32 = 1.428_606_8e-6;
/// 1.5 * 2^23: adding and subtracting it rounds an f32 to the nearest integer.
const ROUND: f32 = 12_582_912.0;

/// e^x for finite x; results below e^-87 flush to about 1.6e-38, above e^88 saturate.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    exp_with::<false>(x)
}

/// [`exp`] with every multiply-add fused (`f32::mul_add`): fewer operations and slightly
/// different bits. For loops compiled with FMA (elsewhere `mul_add` is a library call).
#[inline(always)]
pub fn exp_fused(x: f32) -> f32 {
    exp_with::<true>(x)
}

/// a * b + c, fused (one rounding) or as a multiply then an add.
#[inline(always)]
fn madd<const FUSED: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FUSED {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// The body of [`exp`] and [`exp_fused`].
#[inline(always)]
fn exp_with<const FUSED: bool>(x: f32) -> f32 {
    let m = madd::<FUSED>;
    let x = x.clamp(-87.0, 88.0);
    // t = ROUND + n with n = round(x log2 e): n sits in t's low mantissa bits, so the
    // exponent 2^n is built with integer lane arithmetic (an `as i32` cast would not
    // vectorize: Rust's saturating float-to-int conversion goes lane by lane).
    let t = m(x, LOG2E, ROUND);
    let n = t - ROUND;
    let bits = t.to_bits().wrapping_sub(ROUND.to_bits());
    let r = m(-n, LN2_LO, m(-n, LN2_HI, x));
    // e^r on |r| <= ln2/2 by its Taylor series to degree 7 (truncation < 2e-9), in
    // Estrin's order: a dependency chain half as long as Horner's, so that a loop's
    // iterations overlap (the softmax's exp loop is bound by that chain).
    let r2 = r * r;
    let r4 = r2 * r2;
    let low = m(r2, m(r, 1.0 / 6.0, 0.5), 1.0 + r);
    let high = m(
        r2,
        m(r, 1.0 / 5040.0, 1.0 / 720.0),
        m(r, 1.0 / 120.0, 1.0 / 24.0),
    );
    let p = m(r4, high, low);
    let scale = f32::from_bits(bits.wrapping_add(127) << 23);
    p * scale
}

/// erf(x): its Maclaurin series below |x| = 0.8 (no cancellation near 0), else
/// Abramowitz & Stegun 7.1.26 (absolute error <= 1.5e-7). Both are computed and one is
/// selected, so the loop stays branch-free.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152 + t * 1.061_405_4))));
    let far = (1.0 - poly * exp(-a * a)).copysign(x);
    // 2/sqrt(pi) * sum (-1)^n x^(2n+1) / (n! (2n+1)), n <= 8; the next term is < 3e-9
    // for |x| < 0.8.
    let x2 = x * x;
    let near = std::f32::consts::FRAC_2_SQRT_PI
        * x
        * (1.0
            + x2 * (-1.0 / 3.0
                + x2 * (1.0 / 10.0
                    + x2 * (-1.0 / 42.0
                        + x2 * (1.0 / 216.0
                            + x2 * (-1.0 / 1320.0
                                + x2 * (1.0 / 9360.0
                                    + x2 * (-1.0 / 75600.0 + x2 / 685_440.0))))))));
    if a < 0.8 {
        near
    } else {
        far
    }
}

/// tanh(x) through exp (absolute error about 2e-7).
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let e = exp(2.0 * x.clamp(-20.0, 20.0));
    1.0 - 2.0 / (e + 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid() -> impl Iterator<Item = f32> {
        (-200_000..=200_000).map(|i| i as f32 * 1e-4)
    }

    #[test]
    fn exp_is_accurate() {
        for exp in [exp, exp_fused] {
            for x in grid().map(|x| x * 4.35) {
                let want = (x as f64).exp();
                let rel = ((exp(x) as f64 - want) / want).abs();
                assert!(rel < 2e-7, "exp({x}): {} vs {want} ({rel:e})", exp(x));
            }
            assert_eq!(exp(0.0), 1.0);
            assert!(exp(-1000.0) < 1e-37 && exp(1000.0).is_finite());
        }
    }

    #[test]
    fn erf_and_tanh_are_accurate() {
        for x in grid() {
            let e = (erf(x) as f64 - libm::erf(x as f64)).abs();
            assert!(e < 3e-7, "erf({x}): {e:e}");
            let t = (tanh(x) as f64 - (x as f64).tanh()).abs();
            assert!(t < 3e-7, "tanh({x}): {t:e}");
        }
    }
}
