//! qkv_split_*: bias add + head split into the padded and packed layouts, against a
//! host-side reshape, and against bias_act followed by a split without bias.

use half::f16;
use kernel_harness::{bias_act, qkv_split, quantize, widen, Elem, Heads, Ragged, Rng};

use super::util::{check, entry, expect_launch};

/// Host reshape: Q, K, V in layout `g`, padding rows zero.
fn reference(qkv: &[f32], bias: &[f32], r: &Ragged, g: Heads) -> [Vec<f32>; 3] {
    let hidden = g.heads * g.head_dim;
    let mut out = [
        vec![0.0; g.len(r)],
        vec![0.0; g.len(r)],
        vec![0.0; g.len(r)],
    ];
    for (b, &len) in r.lens.iter().enumerate() {
        for i in 0..len {
            for c in 0..3 * hidden {
                let (which, h, d) = (c / hidden, (c % hidden) / g.head_dim, c % g.head_dim);
                out[which][g.row(r, b, h, i) + d] =
                    qkv[(r.start(b) + i) * 3 * hidden + c] + bias[c];
            }
        }
    }
    out
}

fn split<E: Elem>(qkv: &[E], bias: Option<&[E]>, r: &Ragged, g: Heads) -> [Vec<E>; 3] {
    // Start from a value the kernel must overwrite everywhere (padding rows included).
    let junk = E::from_f32(7.0);
    let (mut q, mut k, mut v) = (
        vec![junk; g.len(r)],
        vec![junk; g.len(r)],
        vec![junk; g.len(r)],
    );
    expect_launch(&entry::<E>("qkv_split"), || {
        qkv_split(qkv, bias, r, g, None, &mut q, &mut k, &mut v)
    });
    [q, k, v]
}

// (heads, head_dim, lens)
const CASES: &[(usize, usize, &[usize])] = &[
    (1, 32, &[1]),
    (3, 16, &[7, 2]),
    (12, 32, &[130, 5]),
    (12, 64, &[7, 1, 3]),
    (3, 12, &[7, 4]),
    (1, 64, &[512]),
];

fn matches_reference<E: Elem>() {
    let mut rng = Rng::new(41);
    for &(heads, head_dim, lens) in CASES {
        let r = Ragged::new(lens);
        let hidden = heads * head_dim;
        let (qkv, qkv_f) = quantize::<E>(&rng.vec(r.total() * 3 * hidden, -2.0, 2.0));
        let (bias, bias_f) = quantize::<E>(&rng.vec(3 * hidden, -1.0, 1.0));
        for packed in [false, true] {
            let g = Heads {
                heads,
                head_dim,
                packed,
            };
            let got = split(&qkv, Some(&bias), &r, g);
            let want = reference(&qkv_f, &bias_f, &r, g);
            for (name, (gt, w)) in ["q", "k", "v"].iter().zip(got.iter().zip(&want)) {
                check(
                    &format!("{name} heads {heads} hd {head_dim} lens {lens:?} packed {packed}"),
                    gt,
                    w,
                );
            }
        }
    }
}

#[test]
fn qkv_split_matches_reference_f32() {
    matches_reference::<f32>();
}

#[test]
fn qkv_split_matches_reference_f16() {
    matches_reference::<f16>();
}

/// The fused bias against its parts: bias_act (no activation), then a split without bias.
fn matches_parts<E: Elem>() {
    let mut rng = Rng::new(42);
    for &(heads, head_dim, lens) in &CASES[1..4] {
        let r = Ragged::new(lens);
        let hidden = heads * head_dim;
        let (qkv, _) = quantize::<E>(&rng.vec(r.total() * 3 * hidden, -2.0, 2.0));
        let (bias, _) = quantize::<E>(&rng.vec(3 * hidden, -1.0, 1.0));
        let mut biased = vec![E::default(); qkv.len()];
        bias_act(&qkv, Some(&bias), None, 3 * hidden, 1024, &mut biased);
        for packed in [false, true] {
            let g = Heads {
                heads,
                head_dim,
                packed,
            };
            let fused = split(&qkv, Some(&bias), &r, g);
            let parts = split(&biased, None, &r, g);
            for (f, p) in fused.iter().zip(&parts) {
                check(
                    &format!("fused vs parts hd {head_dim} packed {packed}"),
                    f,
                    &widen(p),
                );
            }
        }
    }
}

#[test]
fn qkv_split_matches_parts_f32() {
    matches_parts::<f32>();
}

#[test]
fn qkv_split_matches_parts_f16() {
    matches_parts::<f16>();
}
