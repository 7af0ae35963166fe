//! Element-wise activations in f32 (exp, erf and tanh from `fastmath`, within a few f32
//! ulps of the exact functions).

use crate::config::Activation;

use super::fastmath;

/// sqrt(2 / pi), the constant of the tanh GELU approximation.
const SQRT_2_OVER_PI: f32 = 0.797_884_6;

/// Applies `act` to one value.
#[inline(always)]
pub fn apply(act: Activation, x: f32) -> f32 {
    match act {
        // BERT's GELU is the exact erf form: x/2 * (1 + erf(x / sqrt 2)).
        Activation::Gelu => 0.5 * x * (1.0 + fastmath::erf(x * std::f32::consts::FRAC_1_SQRT_2)),
        Activation::GeluTanh => {
            0.5 * x * (1.0 + fastmath::tanh(SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x)))
        }
        Activation::Relu => x.max(0.0),
        Activation::Silu => x / (1.0 + fastmath::exp(-x)),
        Activation::Tanh => fastmath::tanh(x),
    }
}

/// Applies `act` to every value in place (one loop per activation, so each vectorizes).
/// Always inlined, so a caller compiled for wider vectors (the GEMM's per-ISA epilogues)
/// gets the loops vectorized for them.
#[inline(always)]
pub fn apply_slice(act: Activation, xs: &mut [f32]) {
    macro_rules! each {
        ($a:expr) => {
            for x in xs.iter_mut() {
                *x = apply($a, *x);
            }
        };
    }
    match act {
        Activation::Gelu => each!(Activation::Gelu),
        Activation::GeluTanh => each!(Activation::GeluTanh),
        Activation::Relu => each!(Activation::Relu),
        Activation::Silu => each!(Activation::Silu),
        Activation::Tanh => each!(Activation::Tanh),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // Values from the defining formulas, evaluated independently.
        let close = |a: f32, b: f64| assert!((a as f64 - b).abs() < 1e-6, "{a} vs {b}");
        close(apply(Activation::Gelu, 1.0), 0.841_344_746_068_542_9);
        close(apply(Activation::Gelu, -2.0), -0.045_500_263_896_358_4);
        close(apply(Activation::GeluTanh, 1.0), 0.841_191_990_607_477_5);
        close(apply(Activation::Silu, 2.0), 1.761_594_155_955_764_9);
        close(apply(Activation::Relu, -3.0), 0.0);
        close(apply(Activation::Tanh, 0.5), 0.462_117_157_260_009_8);
    }
}
