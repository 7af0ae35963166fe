//! bias_act_*: every activation against the CPU op, on widths with and without whole
//! 16-byte packs, with few blocks so the grid-stride loop turns.

use bertrt::backend::cpu::linear::bias_act as cpu_bias_act;
use bertrt::config::Activation;
use half::f16;
use kernel_harness::{bias_act, quantize, Elem, Rng};

use super::util::{check, entry, expect_launch};

const ACTS: [Option<Activation>; 6] = [
    None,
    Some(Activation::Gelu),
    Some(Activation::GeluTanh),
    Some(Activation::Relu),
    Some(Activation::Silu),
    Some(Activation::Tanh),
];

fn matches_cpu<E: Elem>() {
    let mut rng = Rng::new(31);
    // (rows, n, max blocks)
    let shapes = [
        (1, 32, 1024),
        (7, 48, 1024),
        (130, 384, 3),
        (7, 3072, 1024),
        (5, 33, 2),
        (512, 32, 7),
    ];
    for act in ACTS {
        for &(rows, n, max_blocks) in &shapes {
            let (x, xf) = quantize::<E>(&rng.vec(rows * n, -4.0, 4.0));
            let (b, bf) = quantize::<E>(&rng.vec(n, -1.0, 1.0));
            for with_bias in [true, false] {
                let bias = with_bias.then_some(&b[..]);
                let mut out = vec![E::default(); x.len()];
                expect_launch(&entry::<E>("bias_act"), || {
                    bias_act(&x, bias, act, n, max_blocks, &mut out)
                });
                let mut want = xf.clone();
                cpu_bias_act(&mut want, n, with_bias.then_some(&bf[..]), act);
                if !with_bias && act.is_none() {
                    want.clone_from(&xf);
                }
                check(
                    &format!("bias_act {act:?} bias {with_bias} {rows}x{n}"),
                    &out,
                    &want,
                );
            }
        }
    }
}

#[test]
fn bias_act_matches_cpu_f32() {
    matches_cpu::<f32>();
}

#[test]
fn bias_act_matches_cpu_f16() {
    matches_cpu::<f16>();
}
