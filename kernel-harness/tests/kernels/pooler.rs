//! gather_cls_*: the pooler's CLS gather with bias + tanh against the CPU ops
//! (GatherFirst, then bias_act), and the fused form against gather, then bias_act.

use bertrt::backend::cpu::linear::bias_act as cpu_bias_act;
use bertrt::config::Activation;
use half::f16;
use kernel_harness::{bias_act, gather_cls, quantize, widen, Elem, Ragged, Rng};

use super::util::{check, entry, expect_launch};

fn gather<E: Elem>(
    x: &[E],
    r: &Ragged,
    bias: Option<&[E]>,
    act: Option<Activation>,
    width: usize,
) -> Vec<E> {
    let mut out = vec![E::default(); r.batch() * width];
    expect_launch(&entry::<E>("gather_cls"), || {
        gather_cls(x, r, bias, act, width, &mut out)
    });
    out
}

fn matches_cpu<E: Elem>() {
    let mut rng = Rng::new(61);
    let cases: &[(usize, &[usize])] = &[
        (32, &[1]),
        (48, &[7, 3, 1]),
        (384, &[130, 2]),
        (768, &[7, 5]),
    ];
    for &(width, lens) in cases {
        let r = Ragged::new(lens);
        let (x, xf) = quantize::<E>(&rng.vec(r.total() * width, -2.0, 2.0));
        let (b, bf) = quantize::<E>(&rng.vec(width, -1.0, 1.0));
        let got = gather(&x, &r, Some(&b), Some(Activation::Tanh), width);
        let mut want: Vec<f32> = (0..r.batch())
            .flat_map(|s| xf[r.start(s) * width..][..width].to_vec())
            .collect();
        cpu_bias_act(&mut want, width, Some(&bf), Some(Activation::Tanh));
        check(&format!("pooler width {width} lens {lens:?}"), &got, &want);

        // Fused against its parts: plain gather, then bias_act with tanh.
        let rows = gather(&x, &r, None, None, width);
        let mut parts = vec![E::default(); rows.len()];
        bias_act(
            &rows,
            Some(&b),
            Some(Activation::Tanh),
            width,
            1024,
            &mut parts,
        );
        check(
            &format!("pooler vs parts width {width}"),
            &got,
            &widen(&parts),
        );
    }
}

#[test]
fn pooler_matches_cpu_f32() {
    matches_cpu::<f32>();
}

#[test]
fn pooler_matches_cpu_f16() {
    matches_cpu::<f16>();
}
