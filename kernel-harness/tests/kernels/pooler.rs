//! gather_cls_*: each sequence's first row, against the same rows taken on the host, on
//! ragged batches and widths with and without whole 16-byte packs.

use half::f16;
use kernel_harness::{gather_cls, quantize, Elem, Ragged, Rng};

use super::util::{check, entry, expect_launch};

fn matches_reference<E: Elem>() {
    let mut rng = Rng::new(61);
    let cases: &[(usize, &[usize])] = &[
        (32, &[1]),
        (48, &[7, 3, 1]),
        (30, &[2, 5]),
        (384, &[130, 2]),
        (768, &[7, 5]),
    ];
    for &(width, lens) in cases {
        let r = Ragged::new(lens);
        let (x, xf) = quantize::<E>(&rng.vec(r.total() * width, -2.0, 2.0));
        let mut got = vec![E::from_f32(9.0); r.batch() * width];
        expect_launch(&entry::<E>("gather_cls"), || {
            gather_cls(&x, &r, width, &mut got)
        });
        let want: Vec<f32> = (0..r.batch())
            .flat_map(|s| xf[r.start(s) * width..][..width].to_vec())
            .collect();
        check(&format!("gather width {width} lens {lens:?}"), &got, &want);
    }
}

#[test]
fn gather_cls_matches_reference_f32() {
    matches_reference::<f32>();
}

#[test]
fn gather_cls_matches_reference_f16() {
    matches_reference::<f16>();
}
