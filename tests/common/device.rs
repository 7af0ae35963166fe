//! Checks a device backend (CUDA, or its host emulation) against the float64 fixtures and
//! against the CPU backend. Shared by the kernel harness' emulated-backend tests and the
//! GPU tests that tools/gpu-check runs.
//!
//! Tolerances: f32, |d| <= 1e-4 (logits 1e-4 * max(1, max|ref|)) as for the CPU; f16,
//! relative L2 error ||out - ref|| / ||ref|| <= 1e-2 per output. Positions whose attention
//! mask is 0 are not compared: a packed batch never computes them (they come back zero).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use bertrt::{Batch, BertConfig, Device, Dtype, ForwardOptions, KvCache, Model, Result};

use super::{fixtures_dir, tolerance, RefTensor, Reference};

/// f16 bound on ||out - ref|| / ||ref||.
pub const F16_REL_L2: f64 = 1e-2;

/// Every fixture folder with its own checkpoint, sorted.
pub fn fixture_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures_dir())
        .expect("tests/fixtures")
        .flatten()
        .filter(|e| e.path().join("config.json").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Whether element `idx` of output `name` (shape `shape`) belongs to a real token of
/// `batch`.
fn is_real(name: &str, shape: &[usize], idx: usize, batch: &Batch) -> bool {
    let seq = batch.seq();
    let mask = batch.attention_mask();
    let row_pos = if name.starts_with("attentions.") {
        // [rows, heads, seq, keys]: the query row.
        let keys = shape[3];
        let (r, i) = (idx / (shape[1] * seq * keys), (idx / keys) % seq);
        Some((r, i))
    } else {
        let per_token = name == "last_hidden_state"
            || name.starts_with("hidden_states.")
            || name.ends_with("_logits")
                && shape.len() == 2
                && shape[1] == seq
                && name != "seq_relationship_logits"
            || (name.ends_with("logits") && shape.len() == 3);
        per_token.then(|| {
            let inner: usize = shape[2..].iter().product();
            (idx / (seq * inner), (idx / inner) % seq)
        })
    };
    row_pos.is_none_or(|(r, i)| mask[r * seq + i] != 0)
}

/// Squared error and reference sums of one output over several cases (the f16 check is
/// on their ratio, so a single near-zero logit cannot decide it alone).
#[derive(Debug, Default, Clone, Copy)]
pub struct L2 {
    diff2: f64,
    ref2: f64,
    max_err: f64,
}

impl L2 {
    fn verdict(&self, what: &str) -> Option<String> {
        let rel = self.diff2.sqrt() / self.ref2.sqrt().max(1e-30);
        (rel.is_nan() || rel > F16_REL_L2).then(|| {
            format!(
                "{what}: relative L2 {rel:.3e} > {F16_REL_L2:.0e} (max |d| {:.3e})",
                self.max_err
            )
        })
    }
}

/// One output against its reference: f32 fails here, f16 adds to `l2`.
fn check(
    what: &str,
    name: &str,
    got: &bertrt::Tensor,
    want: &RefTensor,
    batch: &Batch,
    dtype: Dtype,
    l2: &mut L2,
) -> Option<String> {
    if got.shape() != want.shape.as_slice() {
        return Some(format!(
            "{what}: shape {:?}, reference {:?}",
            got.shape(),
            want.shape
        ));
    }
    let (mut max_err, mut diff2, mut ref2, mut bad) = (0f64, 0f64, 0f64, Vec::new());
    let tol = tolerance(name, want);
    for (i, (&g, &w)) in got.data().iter().zip(&want.data).enumerate() {
        if !is_real(name, &want.shape, i, batch) {
            continue;
        }
        let err = (g as f64 - w).abs();
        let err = if err.is_nan() { f64::INFINITY } else { err };
        max_err = max_err.max(err);
        diff2 += err * err;
        ref2 += w * w;
        if dtype == Dtype::F32 && err > tol && bad.len() < 5 {
            bad.push(format!("[{i}] got {g} want {w}"));
        }
    }
    match dtype {
        Dtype::F32 => (!bad.is_empty()).then(|| {
            format!(
                "{what}: max |d| = {max_err:.3e} > {tol:.1e}; first: {}",
                bad.join(", ")
            )
        }),
        // The CUDA dtypes are f32 and f16; bf16/int8 (CPU-only) would be judged as f16.
        Dtype::F16 | Dtype::Bf16 | Dtype::Int8 => {
            l2.diff2 += diff2;
            l2.ref2 += ref2;
            l2.max_err = l2.max_err.max(max_err);
            None
        }
    }
}

/// Panics with every failure of a check, one a line.
pub fn assert_none(failures: Vec<String>) {
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every golden fixture (at least 20 must be found) through [`check_fixture`]: the
/// failures of all of them.
pub fn check_fixtures(dtype: Dtype, load: &dyn Fn(&Path) -> Result<Model>) -> Vec<String> {
    let names = fixture_names();
    assert!(names.len() >= 20, "fixtures not found");
    names
        .iter()
        .flat_map(|n| check_fixture(n, dtype, load))
        .collect()
}

/// Runs every case of fixture `name` on a model made by `load` and compares every
/// output; returns the failures.
pub fn check_fixture(
    name: &str,
    dtype: Dtype,
    load: &dyn Fn(&Path) -> Result<Model>,
) -> Vec<String> {
    let dir = fixtures_dir().join(name);
    let reference = Reference::load(&dir);
    let model = match load(&dir) {
        Ok(m) => m,
        Err(e) => return vec![format!("{name}: load: {e}")],
    };
    let mut failures = Vec::new();
    let mut l2: std::collections::BTreeMap<String, L2> = Default::default();
    for case in &reference.cases {
        let opts = ForwardOptions {
            output_hidden_states: reference.flag(case, "output_hidden_states"),
            output_attentions: reference.flag(case, "output_attentions"),
            ..Default::default()
        };
        let batch = reference.batch(case);
        let out = match model.forward(&batch, opts) {
            Ok(o) => o,
            Err(e) => {
                failures.push(format!("{name}/{case}: {e}"));
                continue;
            }
        };
        for output in reference.outputs(case) {
            let want = &reference.tensors[&format!("{case}.{output}")];
            let got = if let Some(i) = output.strip_prefix("hidden_states.") {
                out.hidden_states
                    .get(i.parse::<usize>().unwrap_or(usize::MAX))
            } else if let Some(i) = output.strip_prefix("attentions.") {
                out.attentions.get(i.parse::<usize>().unwrap_or(usize::MAX))
            } else {
                out.get(&output)
            };
            match got {
                None => failures.push(format!("{name}/{case}: output {output} missing")),
                Some(got) => {
                    let sums = l2.entry(output.clone()).or_default();
                    let what = format!("{name}/{case}.{output}");
                    failures.extend(check(&what, &output, got, want, &batch, dtype, sums));
                }
            }
        }
    }
    if dtype == Dtype::F16 {
        for (output, sums) in &l2 {
            failures.extend(sums.verdict(&format!("{name}: {output} over all cases")));
        }
    }
    failures
}

/// Incremental decoding check: the decoder fixture run token by token through a
/// key/value cache on `model` must give the logits a full forward gives on the CPU, at
/// every real position (f32: 1e-4 * max(1, max|logit|); f16: relative L2 1e-2). The
/// model is the lm_decoder fixture loaded by `load`.
pub fn check_cached_decoding(dtype: Dtype, load: &dyn Fn(&Path) -> Result<Model>) -> Vec<String> {
    let dir = fixtures_dir().join("lm_decoder");
    let (model, cpu) = match (load(&dir), Model::load(&dir, None, Device::Cpu)) {
        (Ok(m), Ok(c)) => (m, c),
        (Err(e), _) | (_, Err(e)) => return vec![format!("loading lm_decoder: {e}")],
    };
    let ids: Vec<Vec<i64>> = vec![vec![2, 7, 11, 5, 9, 3], vec![4, 8, 6, 1, 0, 0]];
    let mask: Vec<Vec<i64>> = vec![vec![1; 6], vec![1, 1, 1, 1, 0, 0]];
    let full = Batch::new(ids.clone()).and_then(|b| b.with_attention_mask(mask.clone()));
    let want = match full.and_then(|b| cpu.forward(&b, ForwardOptions::default())) {
        Ok(o) => o,
        Err(e) => return vec![format!("cpu forward: {e}")],
    };
    let Some(want) = want.get("logits") else {
        return vec!["cpu forward gave no logits".into()];
    };
    let mut cache: KvCache = match model.new_cache(2) {
        Ok(c) => c,
        Err(e) => return vec![format!("new_cache: {e}")],
    };
    let vocab = want.shape()[2];
    let mut got = vec![0f32; 2 * 6 * vocab];
    // Steps of 2, 1, 3 tokens.
    let mut at = 0;
    for step in [2usize, 1, 3] {
        let slice = |rows: &Vec<Vec<i64>>| {
            rows.iter()
                .map(|r| r[at..at + step].to_vec())
                .collect::<Vec<_>>()
        };
        let batch = Batch::new(slice(&ids)).and_then(|b| b.with_attention_mask(slice(&mask)));
        let out = match batch
            .and_then(|b| model.forward_cached(&b, &mut cache, ForwardOptions::default()))
        {
            Ok(o) => o,
            Err(e) => return vec![format!("cached step at {at}: {e}")],
        };
        let Some(l) = out.get("logits") else {
            return vec!["cached step gave no logits".into()];
        };
        for r in 0..2 {
            for i in 0..step {
                let src = (r * step + i) * vocab;
                let dst = (r * 6 + at + i) * vocab;
                got[dst..dst + vocab].copy_from_slice(&l.data()[src..src + vocab]);
            }
        }
        at += step;
    }
    let reference = RefTensor {
        shape: want.shape().to_vec(),
        data: want.data().iter().map(|&v| v as f64).collect(),
    };
    let got = bertrt::Tensor::new(want.shape().to_vec(), got).expect("shape");
    let batch = Batch::new(ids)
        .and_then(|b| b.with_attention_mask(mask))
        .expect("batch");
    let mut l2 = L2::default();
    let what = "cached decoding logits";
    let mut failures: Vec<String> = check(what, "logits", &got, &reference, &batch, dtype, &mut l2)
        .into_iter()
        .collect();
    if dtype == Dtype::F16 {
        failures.extend(l2.verdict(what));
    }
    failures
}

/// A random BertModel checkpoint of the given shape, written once per test run.
fn random_model(hidden: usize, heads: usize, inter: usize, act: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "bertrt-cuda-{}-{hidden}-{heads}-{inter}-{act}",
        std::process::id()
    ));
    let json = serde_json::json!({
        "architectures": ["BertModel"], "hidden_size": hidden, "num_hidden_layers": 2,
        "num_attention_heads": heads, "intermediate_size": inter, "hidden_act": act,
        "vocab_size": 1000, "max_position_embeddings": 512,
    });
    let config = BertConfig::from_json(&json.to_string()).expect("config");
    bertrt::synthetic::write_checkpoint(&dir, &config, 7).expect("checkpoint");
    dir
}

/// A ragged batch: `lens` real tokens each, right-padded (or left-padded) to the longest.
pub fn batch(lens: &[usize], left: bool) -> Batch {
    let l = lens.iter().copied().max().unwrap_or(1);
    let mut ids = Vec::new();
    let mut mask = Vec::new();
    for (r, &n) in lens.iter().enumerate() {
        let real: Vec<i64> = (0..n)
            .map(|i| ((r * 131 + i * 17) % 97 + 1) as i64)
            .collect();
        let (row, m) = if left {
            (
                [vec![0; l - n], real].concat(),
                [vec![0; l - n], vec![1; n]].concat(),
            )
        } else {
            (
                [real, vec![0; l - n]].concat(),
                [vec![1; n], vec![0; l - n]].concat(),
            )
        };
        ids.push(row);
        mask.push(m);
    }
    Batch::new(ids)
        .and_then(|b| b.with_attention_mask(mask))
        .expect("batch")
}

/// CUDA against the CPU at real positions: f32 max |d| <= 1e-4 * max(1, max|cpu|);
/// f16 relative L2 <= 1e-2.
fn agree(
    what: &str,
    dtype: Dtype,
    got: &[f32],
    want: &[f32],
    real: &dyn Fn(usize) -> bool,
) -> Option<String> {
    let (mut d2, mut r2, mut max_d, mut max_r) = (0f64, 0f64, 0f64, 0f64);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        if !real(i) {
            continue;
        }
        let d = (g as f64 - w as f64).abs();
        let d = if d.is_nan() { f64::INFINITY } else { d };
        d2 += d * d;
        r2 += (w as f64) * (w as f64);
        max_d = max_d.max(d);
        max_r = max_r.max((w as f64).abs());
    }
    let rel = d2.sqrt() / r2.sqrt().max(1e-30);
    let ok = match dtype {
        Dtype::F32 => max_d <= 1e-4 * max_r.max(1.0),
        Dtype::F16 | Dtype::Bf16 | Dtype::Int8 => rel <= F16_REL_L2,
    };
    (!ok).then(|| format!("{what}: max |d| {max_d:.3e}, relative L2 {rel:.3e}"))
}

/// Random model shapes (hidden, heads, intermediate, activation) for
/// [`check_random_models`]: head_dim 16, 32 (tensor cores in f16), 64 (tensor cores: BERT
/// base, and a small shape the host emulation can afford) and 12.
pub const RANDOM_SHAPES: &[(usize, usize, usize, &str)] = &[
    (48, 3, 100, "gelu"),
    (96, 3, 200, "gelu_new"),
    (768, 12, 3072, "gelu"),
    (128, 2, 200, "silu"),
    (36, 3, 37, "relu"),
];

/// Batches (sequence lengths, left padded) for [`check_random_models`]: one token,
/// ragged, past a 128-row tile, the longest BERT row, left padding.
pub const RANDOM_BATCHES: &[(&[usize], bool)] = &[
    (&[1], false),
    (&[7, 3, 5], false),
    (&[130, 1, 64], false),
    (&[512], false),
    (&[9, 4], true),
];

/// Random models against the CPU backend: last_hidden_state and attentions at real
/// positions, pooler_output everywhere; f32 max |d| <= 1e-4 * max(1, max|cpu|), f16
/// relative L2 <= 1e-2. Returns the failures.
pub fn check_random_models(
    dtype: Dtype,
    shapes: &[(usize, usize, usize, &str)],
    batches: &[(&[usize], bool)],
    load: &dyn Fn(&Path) -> Result<Model>,
) -> Vec<String> {
    let mut failures = Vec::new();
    for &(h, heads, inter, act) in shapes {
        let dir = random_model(h, heads, inter, act);
        let cpu = Model::load(&dir, None, bertrt::Device::Cpu).expect("cpu");
        let gpu = match load(&dir) {
            Ok(m) => m,
            Err(e) => {
                failures.push(format!("h{h}: load: {e}"));
                continue;
            }
        };
        for &(lens, left) in batches {
            let b = batch(lens, left);
            let opts = ForwardOptions {
                output_hidden_states: false,
                output_attentions: lens.len() > 1,
                ..Default::default()
            };
            let (want, got) = match (cpu.forward(&b, opts), gpu.forward(&b, opts)) {
                (Ok(w), Ok(g)) => (w, g),
                (_, Err(e)) | (Err(e), _) => {
                    failures.push(format!("h{h} {lens:?}: {e}"));
                    continue;
                }
            };
            let seq = b.seq();
            let mask = b.attention_mask().to_vec();
            let token_real = |i: usize| mask[(i / h) / seq * seq + (i / h) % seq] != 0;
            let what = format!("h{h} heads{heads} {lens:?} left={left}");
            let (g, w) = (
                got.get("last_hidden_state").expect("out"),
                want.get("last_hidden_state").expect("out"),
            );
            failures.extend(agree(
                &format!("{what} last_hidden_state"),
                dtype,
                g.data(),
                w.data(),
                &token_real,
            ));
            let (g, w) = (
                got.get("pooler_output").expect("out"),
                want.get("pooler_output").expect("out"),
            );
            failures.extend(agree(
                &format!("{what} pooler_output"),
                dtype,
                g.data(),
                w.data(),
                &|_| true,
            ));
            for (l, (g, w)) in got.attentions.iter().zip(&want.attentions).enumerate() {
                let keys = seq;
                let row_real = |i: usize| {
                    let r = i / (heads * seq * keys);
                    mask[r * seq + (i / keys) % seq] != 0
                };
                failures.extend(agree(
                    &format!("{what} attentions.{l}"),
                    dtype,
                    g.data(),
                    w.data(),
                    &row_real,
                ));
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    failures
}
