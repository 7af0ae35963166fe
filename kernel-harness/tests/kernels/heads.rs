//! Head epilogues: qa_split_* (start/end logits) and label_probs_* (softmax, sigmoid or raw
//! logits over labels), against f64 references of transformers' post-processing.

use half::f16;
use kernel_harness::{label_probs, qa_split, quantize, Elem, LabelMode, Ragged, Rng};

use super::util::{check, entry, expect_launch};

fn qa_matches<E: Elem>() {
    let mut rng = Rng::new(71);
    for lens in [&[1usize][..], &[7, 3, 130], &[512]] {
        let r = Ragged::new(lens);
        let (x, xf) = quantize::<E>(&rng.vec(r.total() * 2, -5.0, 5.0));
        let (b, bf) = quantize::<E>(&rng.vec(2, -1.0, 1.0));
        let l = r.max_len();
        let (mut start, mut end) = (
            vec![E::default(); r.batch() * l],
            vec![E::default(); r.batch() * l],
        );
        expect_launch(&entry::<E>("qa_split"), || {
            qa_split(&x, Some(&b), &r, -1e4, &mut start, &mut end)
        });
        let mut want = [vec![-1e4f32; r.batch() * l], vec![-1e4f32; r.batch() * l]];
        for (s, &len) in r.lens.iter().enumerate() {
            for i in 0..len {
                for (k, w) in want.iter_mut().enumerate() {
                    w[s * l + i] = xf[(r.start(s) + i) * 2 + k] + bf[k];
                }
            }
        }
        check(&format!("qa start lens {lens:?}"), &start, &want[0]);
        check(&format!("qa end lens {lens:?}"), &end, &want[1]);
    }
}

#[test]
fn qa_split_matches_reference_f32() {
    qa_matches::<f32>();
}

#[test]
fn qa_split_matches_reference_f16() {
    qa_matches::<f16>();
}

fn labels_match<E: Elem>() {
    let mut rng = Rng::new(72);
    for (rows, labels) in [
        (1usize, 1usize),
        (7, 2),
        (5, 3),
        (9, 37),
        (130, 9),
        (3, 100),
    ] {
        let (x, xf) = quantize::<E>(&rng.vec(rows * labels, -6.0, 6.0));
        let (b, bf) = quantize::<E>(&rng.vec(labels, -1.0, 1.0));
        for mode in [LabelMode::Raw, LabelMode::Softmax, LabelMode::Sigmoid] {
            let mut got = vec![f32::NAN; rows * labels];
            expect_launch(&entry::<E>("label_probs"), || {
                label_probs(&x, Some(&b), labels, mode, &mut got)
            });
            let mut want = Vec::with_capacity(rows * labels);
            for row in xf.chunks(labels) {
                let z: Vec<f64> = row
                    .iter()
                    .zip(&bf)
                    .map(|(&v, &b)| v as f64 + b as f64)
                    .collect();
                match mode {
                    LabelMode::Raw => want.extend(z.iter().map(|&v| v as f32)),
                    LabelMode::Sigmoid => {
                        want.extend(z.iter().map(|&v| (1.0 / (1.0 + (-v).exp())) as f32))
                    }
                    LabelMode::Softmax => {
                        let mx = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                        let sum: f64 = z.iter().map(|&v| (v - mx).exp()).sum();
                        want.extend(z.iter().map(|&v| ((v - mx).exp() / sum) as f32));
                    }
                }
            }
            // Outputs are f32 for both storage types: f32 tolerances apply.
            kernel_harness::assert_close(
                &format!("labels {mode:?} {rows}x{labels} [{}]", E::SUFFIX),
                &got,
                &want,
                <f32 as Elem>::ATOL,
                <f32 as Elem>::RTOL,
            );
        }
    }
}

#[test]
fn label_probs_match_reference_f32() {
    labels_match::<f32>();
}

#[test]
fn label_probs_match_reference_f16() {
    labels_match::<f16>();
}
