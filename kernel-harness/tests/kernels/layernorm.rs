//! layernorm_*: bias + residual + LayerNorm (BertOutput) and bias + activation + LayerNorm
//! (the MLM transform) against the CPU ops, and against bias_act followed by a plain
//! LayerNorm launch.

use bertrt::backend::cpu::{layernorm::layer_norm, linear::bias_act as cpu_bias_act};
use bertrt::config::Activation;
use half::f16;
use kernel_harness::{bias_act, layernorm, quantize, widen, Elem, Rng};

use super::util::{check, entry, expect_launch};

struct Case {
    x: Vec<f32>,
    bias: Vec<f32>,
    residual: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

fn case<E: Elem>(rng: &mut Rng, rows: usize, width: usize) -> Case {
    let mut q = |n: usize, lo: f32, hi: f32| quantize::<E>(&rng.vec(n, lo, hi)).1;
    Case {
        x: q(rows * width, -2.0, 2.0),
        bias: q(width, -0.5, 0.5),
        residual: q(rows * width, -1.0, 1.0),
        gamma: q(width, 0.5, 1.5),
        beta: q(width, -0.3, 0.3),
    }
}

fn dev<E: Elem>(v: &[f32]) -> Vec<E> {
    quantize::<E>(v).0
}

fn kernel<E: Elem>(c: &Case, residual: bool, act: Option<Activation>, eps: f32) -> Vec<E> {
    let (x, bias, res, g, b) = (
        dev::<E>(&c.x),
        dev::<E>(&c.bias),
        dev::<E>(&c.residual),
        dev::<E>(&c.gamma),
        dev::<E>(&c.beta),
    );
    let mut out = vec![E::default(); x.len()];
    expect_launch(&entry::<E>("layernorm"), || {
        layernorm(
            &x,
            Some(&bias),
            residual.then_some(&res[..]),
            act,
            &g,
            &b,
            eps,
            &mut out,
        )
    });
    out
}

const SHAPES: &[(usize, usize)] = &[(1, 32), (7, 48), (130, 384), (7, 768), (3, 30), (512, 32)];

fn bias_residual_matches_cpu<E: Elem>() {
    let mut rng = Rng::new(21);
    for &(rows, width) in SHAPES {
        let c = case::<E>(&mut rng, rows, width);
        let got = kernel::<E>(&c, true, None, 1e-12);
        let mut biased = c.x.clone();
        cpu_bias_act(&mut biased, width, Some(&c.bias), None);
        let mut want = vec![0.0; biased.len()];
        layer_norm(
            &biased,
            Some(&c.residual),
            &c.gamma,
            &c.beta,
            1e-12,
            width,
            &mut want,
        );
        check(&format!("bias+residual+LN {rows}x{width}"), &got, &want);
    }
}

#[test]
fn bias_residual_layernorm_matches_cpu_f32() {
    bias_residual_matches_cpu::<f32>();
}

#[test]
fn bias_residual_layernorm_matches_cpu_f16() {
    bias_residual_matches_cpu::<f16>();
}

fn mlm_transform_matches_cpu<E: Elem>() {
    let mut rng = Rng::new(22);
    for act in [
        Activation::Gelu,
        Activation::GeluTanh,
        Activation::Relu,
        Activation::Silu,
    ] {
        for &(rows, width) in &[(7usize, 48usize), (130, 384), (2, 30)] {
            let c = case::<E>(&mut rng, rows, width);
            let got = kernel::<E>(&c, false, Some(act), 1e-12);
            let mut dense = c.x.clone();
            cpu_bias_act(&mut dense, width, Some(&c.bias), Some(act));
            let mut want = vec![0.0; dense.len()];
            layer_norm(&dense, None, &c.gamma, &c.beta, 1e-12, width, &mut want);
            check(
                &format!("MLM transform {act:?} {rows}x{width}"),
                &got,
                &want,
            );
        }
    }
}

#[test]
fn mlm_transform_matches_cpu_f32() {
    mlm_transform_matches_cpu::<f32>();
}

#[test]
fn mlm_transform_matches_cpu_f16() {
    mlm_transform_matches_cpu::<f16>();
}

/// The fused kernel against bias_act, then layernorm with the residual only.
fn matches_parts<E: Elem>() {
    let mut rng = Rng::new(23);
    for &(rows, width) in &[(7usize, 48usize), (130, 384)] {
        for act in [None, Some(Activation::Gelu)] {
            let c = case::<E>(&mut rng, rows, width);
            let fused = kernel::<E>(&c, true, act, 1e-6);
            let (x, bias, res) = (
                dev::<f32>(&c.x),
                dev::<f32>(&c.bias),
                dev::<f32>(&c.residual),
            );
            let mut dense = vec![0.0f32; x.len()];
            bias_act(&x, Some(&bias), act, width, 1024, &mut dense);
            let mut parts = vec![0.0f32; x.len()];
            layernorm(
                &dense,
                None,
                Some(&res),
                None,
                &c.gamma,
                &c.beta,
                1e-6,
                &mut parts,
            );
            check::<E>(
                &format!("fused vs parts {act:?} {rows}x{width}"),
                &fused,
                &widen(&parts),
            );
        }
    }
}

#[test]
fn layernorm_matches_parts_f32() {
    matches_parts::<f32>();
}

#[test]
fn layernorm_matches_parts_f16() {
    matches_parts::<f16>();
}
