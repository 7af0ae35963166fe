//! The bf16 product against f64 references over awkward shapes, on every path this CPU
//! has, with one and several threads.
//!
//! Bounds: against the bf16-rounded operands, the f32 GEMM's accumulation bound
//! (products of bf16 values are exact in f32); against the original f32 operands, that
//! plus (2^-7 + 2^-16) sum |x w| (each operand off by at most 2^-8 relative: bf16 keeps
//! 8 significant bits), times the activation's slope.

use super::*;
use crate::backend::cpu::gemm::lowp_check::{check, operands, shapes, Operands, ACTS};
use crate::backend::cpu::gemm::tests::random;

fn paths() -> Vec<Path> {
    [Path::Amx, Path::Native, Path::Portable]
        .into_iter()
        .filter(|p| p.bf16_supported())
        .collect()
}

fn rounded(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| from_bf16(to_bf16(x))).collect()
}

#[test]
fn matches_references_over_awkward_shapes() {
    eprintln!("bf16 paths on this CPU: {:?}", paths());
    let mut worst = 0.0f64;
    for (variant, &(rows, k, n)) in shapes().iter().enumerate() {
        let (x, w, b) = operands(rows, k, n);
        let (xq, wq) = (rounded(&x), rounded(&w));
        let ops = Operands {
            x: &x,
            w: &w,
            xq: &xq,
            wq: &wq,
            bias: (variant % 4 != 1).then_some(&b[..]),
            act: ACTS[variant % ACTS.len()],
            shape: (rows, k, n),
        };
        let rel = 2f64.powi(-7) + 2f64.powi(-16);
        let quant: Vec<f64> = (0..rows * n)
            .map(|i| {
                let (r, c) = (i / n, i % n);
                let mag: f64 = (0..k)
                    .map(|kk| f64::from(x[r * k + kk] * w[c * k + kk]).abs())
                    .sum();
                rel * mag
            })
            .collect();
        let packed = PackedBf16::pack(&w, n, k).expect("sizes match");
        for path in paths() {
            for threads in [1, 4] {
                let mut out = vec![f32::NAN; rows * n + 3];
                linear_bf16_with(
                    path, threads, &x, rows, &packed, ops.bias, ops.act, &mut out,
                );
                let label = format!("bf16 {path:?} threads {threads} shape {:?}", ops.shape);
                worst = worst.max(check(&label, &out, &ops, &quant));
            }
        }
    }
    eprintln!("bf16: largest |out - f32 reference| / max |reference| = {worst:e}");
}

#[test]
fn rounds_to_nearest_even_like_the_half_crate() {
    let mut specials = vec![
        0.0f32,
        -0.0,
        1.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MAX,
        f32::MIN_POSITIVE,
        1.0 + 2f32.powi(-8),
        1.0 + 3.0 * 2f32.powi(-8),
    ];
    specials.extend(random(10_000, 5).iter().map(|v| v * 1e3));
    for x in specials {
        assert_eq!(to_bf16(x), half::bf16::from_f32(x).to_bits(), "{x:e}");
    }
    assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
}

#[test]
fn pack_rejects_wrong_sizes() {
    assert!(PackedBf16::pack(&[0.0; 6], 2, 4).is_none());
    let p = PackedBf16::pack(&[0.0; 8], 2, 4).expect("sizes match");
    assert_eq!((p.n(), p.k()), (2, 4));
}
