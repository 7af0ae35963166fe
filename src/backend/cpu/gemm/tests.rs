//! The packed GEMM against an f64 reference, over awkward shapes, every instruction set
//! this CPU has, with and without the bias/activation epilogue.
//!
//! Tolerance: before the activation, |out - ref| <= 2 (k + 2) u S per output, with u the
//! f32 unit roundoff (2^-24) and S = |b| + sum |x w| (twice the worst-case bound of an f32
//! dot product of k + 1 terms); after it, 1.2 times that (the activations' slopes are
//! below 1.2) plus 1e-6 (1 + |ref|) for the activation's own approximation.

use super::*;

/// The activations of the shape tables' variants, in turn.
pub(super) const ACTS: [Option<Activation>; 6] = [
    None,
    Some(Activation::Gelu),
    Some(Activation::GeluTanh),
    Some(Activation::Relu),
    Some(Activation::Silu),
    Some(Activation::Tanh),
];

/// Deterministic operands of a [rows, k] x [n, k]ᵀ product: (x, w, bias).
pub(super) fn operands(rows: usize, k: usize, n: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    (
        random(rows * k, (rows * 1000 + k) as u64),
        random(n * k, (n * 7 + k) as u64),
        random(n, n as u64 + 99),
    )
}

/// Deterministic values in [-1, 1) (the CPU backend's tests share it).
pub(crate) fn random(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 23) as f32) - 1.0
        })
        .collect()
}

pub(super) fn act_f64(act: Activation, x: f64) -> f64 {
    match act {
        Activation::Gelu => 0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2)),
        Activation::GeluTanh => {
            let c = (2.0 / std::f64::consts::PI).sqrt();
            0.5 * x * (1.0 + (c * (x + 0.044_715 * x * x * x)).tanh())
        }
        Activation::Relu => x.max(0.0),
        Activation::Silu => x / (1.0 + (-x).exp()),
        Activation::Tanh => x.tanh(),
    }
}

/// Reference values and error bounds, [rows, n] each.
pub(super) fn reference(
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    act: Option<Activation>,
    (rows, k, n): (usize, usize, usize),
) -> (Vec<f64>, Vec<f64>) {
    let u = f64::from(f32::EPSILON) / 2.0;
    let mut want = vec![0.0; rows * n];
    let mut tol = vec![0.0; rows * n];
    for r in 0..rows {
        for c in 0..n {
            let bias = b.map_or(0.0, |b| f64::from(b[c]));
            let (mut dot, mut mag) = (bias, bias.abs());
            for i in 0..k {
                let p = f64::from(x[r * k + i]) * f64::from(w[c * k + i]);
                dot += p;
                mag += p.abs();
            }
            let t = 2.0 * (k as f64 + 2.0) * u * mag;
            (want[r * n + c], tol[r * n + c]) = match act {
                Some(a) => (
                    act_f64(a, dot),
                    1.2 * t + 1e-6 * (1.0 + act_f64(a, dot).abs()),
                ),
                None => (dot, t),
            };
        }
    }
    (want, tol)
}

pub(super) fn isas() -> Vec<Isa> {
    let all = [Isa::Avx512, Isa::Avx2, Isa::Scalar];
    all.into_iter().filter(|i| i.supported()).collect()
}

fn check(rows: usize, k: usize, n: usize, variant: usize) {
    let (x, w, b) = operands(rows, k, n);
    let act = ACTS[variant % ACTS.len()];
    let bias = (variant % 4 != 1).then_some(&b[..]);
    let (want, tol) = reference(&x, &w, bias, act, (rows, k, n));
    let packed = PackedWeight::pack(&w, n, k).expect("sizes match");
    for isa in isas() {
        for threads in [1, 4] {
            let mut out = vec![f32::NAN; rows * n + 3];
            linear_with(isa, threads, &x, rows, &packed, bias, act, &mut out);
            let bad: Vec<_> = (0..rows * n)
                .filter(|&i| {
                    let d = (f64::from(out[i]) - want[i]).abs();
                    d.is_nan() || d > tol[i]
                })
                .collect();
            let worst = (0..rows * n)
                .map(|i| (f64::from(out[i]) - want[i]).abs())
                .fold(0.0, f64::max);
            assert!(
                bad.is_empty(),
                "{isa:?} threads {threads} rows {rows} k {k} n {n} act {act:?} bias {}: \
                 {} mismatches, max |d| {worst:e}, first (row, col, got, want, tol): {:?}",
                bias.is_some(),
                bad.len(),
                bad.iter()
                    .take(5)
                    .map(|&i| (i / n, i % n, out[i], want[i], tol[i]))
                    .collect::<Vec<_>>()
            );
            assert!(
                out[rows * n..].iter().all(|v| v.is_nan()),
                "wrote past rows * n"
            );
        }
    }
}

#[test]
fn matches_f64_reference_over_awkward_shapes() {
    let mut variant = 0;
    for rows in [1, 3, 17, 128, 130] {
        for k in [1, 7, 37, 384] {
            for n in [1, 13, 33, 48, 100, 1152] {
                check(rows, k, n, variant);
                variant += 1;
            }
        }
    }
}

#[test]
fn k_blocks_accumulate_through_the_output() {
    // k > KC: several k-blocks, the later ones starting from C, ragged panels included.
    for (i, &(rows, k, n)) in [(17, 1000, 100), (9, 1536, 1152), (130, 800, 49)]
        .iter()
        .enumerate()
    {
        check(rows, k, n, i + 1);
        check(rows, k, n, i + 2);
    }
}

#[test]
fn empty_k_gives_the_activated_bias() {
    let packed = PackedWeight::pack(&[], 5, 0).expect("sizes match");
    let b = [1.0, -2.0, 0.5, 3.0, -0.25];
    let mut out = vec![9.0; 10];
    for isa in isas() {
        linear_with(
            isa,
            2,
            &[],
            2,
            &packed,
            Some(&b),
            Some(Activation::Relu),
            &mut out,
        );
        assert_eq!(out, [1.0, 0.0, 0.5, 3.0, 0.0, 1.0, 0.0, 0.5, 3.0, 0.0]);
    }
}
