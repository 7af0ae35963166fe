//! embeddings_*: gather + sum + LayerNorm against the CPU op, and against a host-side
//! gather and sum followed by the layernorm kernel.

use bertrt::backend::cpu::embeddings::{
    embeddings as cpu_embeddings, EmbeddingTables as CpuTables,
};
use half::f16;
use kernel_harness::{embeddings, layernorm, quantize, Elem, EmbeddingTables, Ragged, Rng};

use super::util::{check, entry, expect_launch};

struct Model {
    hidden: usize,
    word: Vec<f32>,
    position: Option<Vec<f32>>,
    token_type: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

const VOCAB: usize = 97;
const POSITIONS: usize = 520;
const TYPES: usize = 2;

fn model<E: Elem>(rng: &mut Rng, hidden: usize, absolute: bool) -> Model {
    let q = |v: Vec<f32>| quantize::<E>(&v).1;
    Model {
        hidden,
        word: q(rng.vec(VOCAB * hidden, -1.0, 1.0)),
        position: absolute.then(|| q(rng.vec(POSITIONS * hidden, -0.5, 0.5))),
        token_type: q(rng.vec(TYPES * hidden, -0.3, 0.3)),
        gamma: q(rng.vec(hidden, 0.5, 1.5)),
        beta: q(rng.vec(hidden, -0.2, 0.2)),
    }
}

struct Inputs {
    ids: Vec<i32>,
    types: Vec<i32>,
    positions: Vec<i32>,
}

fn inputs(rng: &mut Rng, r: &Ragged, past: usize) -> Inputs {
    let n = r.total();
    let positions = r
        .lens
        .iter()
        .flat_map(|&l| (0..l).map(move |i| (past + i) as i32))
        .collect();
    Inputs {
        ids: (0..n).map(|_| rng.below(VOCAB) as i32).collect(),
        types: (0..n).map(|_| rng.below(TYPES) as i32).collect(),
        positions,
    }
}

fn run_kernel<E: Elem>(m: &Model, inp: &Inputs, eps: f32) -> Vec<E> {
    let dev = |v: &[f32]| quantize::<E>(v).0;
    let (word, tt, g, b) = (
        dev(&m.word),
        dev(&m.token_type),
        dev(&m.gamma),
        dev(&m.beta),
    );
    let pos = m.position.as_deref().map(dev);
    let tables = EmbeddingTables {
        word: &word,
        position: pos.as_deref(),
        token_type: &tt,
        gamma: &g,
        beta: &b,
        eps,
    };
    let mut out = vec![E::default(); inp.ids.len() * m.hidden];
    expect_launch(&entry::<E>("embeddings"), || {
        embeddings(&tables, &inp.ids, &inp.types, &inp.positions, &mut out)
    });
    out
}

fn cpu_reference(m: &Model, r: &Ragged, inp: &Inputs, past: usize, eps: f32) -> Vec<f32> {
    let tables = CpuTables {
        word: &m.word,
        position: m.position.as_deref(),
        token_type: &m.token_type,
        gamma: &m.gamma,
        beta: &m.beta,
        eps,
    };
    let mut out = vec![0.0; r.total() * m.hidden];
    for (b, &len) in r.lens.iter().enumerate() {
        let rows = r.start(b)..r.start(b) + len;
        let ids: Vec<u32> = inp.ids[rows.clone()].iter().map(|&v| v as u32).collect();
        let types: Vec<u32> = inp.types[rows.clone()].iter().map(|&v| v as u32).collect();
        let dst = &mut out[rows.start * m.hidden..rows.end * m.hidden];
        cpu_embeddings(&tables, &ids, &types, len, past, dst);
    }
    out
}

fn matches_cpu<E: Elem>() {
    let mut rng = Rng::new(11);
    // (hidden, sequence lengths, past, absolute positions)
    let cases: &[(usize, &[usize], usize, bool)] = &[
        (32, &[1], 0, true),
        (48, &[7, 3, 1], 0, true),
        (384, &[130], 0, true),
        (768, &[7, 2], 5, true),
        (32, &[512], 0, true),
        (48, &[7, 1], 0, false),
        (30, &[3, 4], 0, true),
    ];
    for &(hidden, lens, past, absolute) in cases {
        let r = Ragged::new(lens);
        let m = model::<E>(&mut rng, hidden, absolute);
        let inp = inputs(&mut rng, &r, past);
        let got = run_kernel::<E>(&m, &inp, 1e-12);
        let want = cpu_reference(&m, &r, &inp, past, 1e-12);
        check(
            &format!("embeddings hidden {hidden} lens {lens:?}"),
            &got,
            &want,
        );
    }
}

#[test]
fn embeddings_match_cpu_f32() {
    matches_cpu::<f32>();
}

#[test]
fn embeddings_match_cpu_f16() {
    matches_cpu::<f16>();
}

/// The fused kernel against its parts: the three gathered rows summed on the host (in
/// f32), then the layernorm kernel.
fn matches_parts<E: Elem>() {
    let mut rng = Rng::new(12);
    for &(hidden, lens) in &[(48usize, &[7usize, 2][..]), (384, &[130])] {
        let r = Ragged::new(lens);
        let m = model::<E>(&mut rng, hidden, true);
        let inp = inputs(&mut rng, &r, 0);
        let fused = run_kernel::<E>(&m, &inp, 1e-5);
        let mut summed = Vec::with_capacity(r.total() * hidden);
        for t in 0..r.total() {
            let row = |table: &[f32], i: i32| table[i as usize * hidden..][..hidden].to_vec();
            let (w, ty) = (row(&m.word, inp.ids[t]), row(&m.token_type, inp.types[t]));
            let p = row(m.position.as_deref().unwrap_or(&[]), inp.positions[t]);
            summed.extend((0..hidden).map(|j| w[j] + ty[j] + p[j]));
        }
        let mut parts = vec![0.0f32; summed.len()];
        layernorm(
            &summed, None, None, None, &m.gamma, &m.beta, 1e-5, &mut parts,
        );
        check::<E>(
            &format!("embeddings vs parts, hidden {hidden}"),
            &fused,
            &parts,
        );
    }
}

#[test]
fn embeddings_match_parts_f32() {
    matches_parts::<f32>();
}

#[test]
fn embeddings_match_parts_f16() {
    matches_parts::<f16>();
}
