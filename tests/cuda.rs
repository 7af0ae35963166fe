//! The CUDA backend on a real device (feature `cuda`).
//!
//! Without a GPU (CI, developer machines) the only test that runs checks that asking
//! for CUDA fails with a clear error instead of a crash; the others report that they
//! were skipped. tools/gpu-check runs this binary on a GPU machine with
//! BERTRT_REQUIRE_GPU=1, where a missing device is a failure, and then:
//! - every float64 fixture on CUDA in f32 (1e-4) and f16 (relative L2 1e-2);
//! - cached decoding (BertLMHeadModel) against the CPU backend;
//! - random models of awkward shapes (odd widths, head_dim 16/32/64, 1 to 512 tokens,
//!   ragged and left-padded batches) against the CPU backend, which exercises every
//!   kernel the backend launches on random inputs;
//! - graph replay: repeated and interleaved shapes give identical results.
#![cfg(feature = "cuda")]

mod common;

use std::path::{Path, PathBuf};

use bertrt::backend::cuda::CudaGpu;
use bertrt::{Batch, BertConfig, Device, Dtype, Error, ForwardOptions, Model, Target};
use common::device::{check_cached_decoding, check_fixture, fixture_names, F16_REL_L2};
use common::fixtures_dir;

/// True when a GPU is usable; panics if BERTRT_REQUIRE_GPU is set and none is.
fn gpu() -> bool {
    let found = CudaGpu::new(0);
    if std::env::var_os("BERTRT_REQUIRE_GPU").is_some() {
        if let Err(e) = &found {
            panic!("BERTRT_REQUIRE_GPU is set but CUDA is unusable: {e}");
        }
    }
    if let Err(e) = &found {
        eprintln!("skipped (no GPU): {e}");
    }
    found.is_ok()
}

fn cuda(dtype: Dtype) -> Target {
    Target::new(Device::Cuda(0), Some(dtype))
}

#[test]
fn cuda_without_a_gpu_is_a_clean_error() {
    let dir = fixtures_dir().join("bert_base_tiny");
    match Model::load(&dir, None, Device::Cuda(0)) {
        Ok(model) => assert_eq!(model.device(), Device::Cuda(0)),
        Err(e) => {
            assert!(matches!(e, Error::Unsupported(_)), "{e:?}");
            assert!(e.to_string().contains("CUDA"), "{e}");
        }
    }
    // A device that cannot exist is an error either way.
    assert!(Model::load(&dir, None, Device::Cuda(4096)).is_err());
}

fn fixtures(dtype: Dtype) {
    if !gpu() {
        return;
    }
    let load = |dir: &Path| Model::load(dir, None, cuda(dtype));
    let failures: Vec<String> = fixture_names()
        .iter()
        .flat_map(|n| check_fixture(n, dtype, &load))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn fixtures_in_f32() {
    fixtures(Dtype::F32);
}

#[test]
fn fixtures_in_f16() {
    fixtures(Dtype::F16);
}

fn cached_decoding(dtype: Dtype) {
    if !gpu() {
        return;
    }
    let dir = fixtures_dir().join("lm_decoder");
    let cpu = Model::load(&dir, None, Device::Cpu).expect("cpu model");
    let model = Model::load(&dir, None, cuda(dtype)).expect("cuda model");
    let failures = check_cached_decoding(&model, &cpu, dtype);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn cached_decoding_in_f32() {
    cached_decoding(Dtype::F32);
}

#[test]
fn cached_decoding_in_f16() {
    cached_decoding(Dtype::F16);
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

/// Ragged batch: `lens` real tokens each, right-padded (or left-padded) to the longest.
fn batch(lens: &[usize], left: bool) -> Batch {
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
        Dtype::F16 => rel <= F16_REL_L2,
    };
    (!ok).then(|| format!("{what}: max |d| {max_d:.3e}, relative L2 {rel:.3e}"))
}

fn random_models(dtype: Dtype) {
    if !gpu() {
        return;
    }
    let mut failures = Vec::new();
    // (hidden, heads, intermediate, activation): head_dim 16, 32 (WMMA), 64 (WMMA), 12.
    for (h, heads, inter, act) in [
        (48, 3, 100, "gelu"),
        (96, 3, 200, "gelu_new"),
        (768, 12, 3072, "gelu"),
        (36, 3, 37, "relu"),
    ] {
        let dir = random_model(h, heads, inter, act);
        let cpu = Model::load(&dir, None, Device::Cpu).expect("cpu");
        let gpu = Model::load(&dir, None, cuda(dtype)).expect("cuda");
        for (lens, left) in [
            (vec![1], false),
            (vec![7, 3, 5], false),
            (vec![130, 1, 64], false),
            (vec![512], false),
            (vec![9, 4], true),
        ] {
            let b = batch(&lens, left);
            let opts = ForwardOptions {
                output_hidden_states: false,
                output_attentions: lens.len() > 1,
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
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn random_models_in_f32() {
    random_models(Dtype::F32);
}

#[test]
fn random_models_in_f16() {
    random_models(Dtype::F16);
}

#[test]
fn graph_replay_is_deterministic() {
    if !gpu() {
        return;
    }
    let dir = fixtures_dir().join("bert_base_tiny");
    let model = Model::load(&dir, None, cuda(Dtype::F16)).expect("cuda");
    let (a, b) = (batch(&[5, 3], false), batch(&[20, 17, 2], false));
    let run = |x: &Batch| {
        model
            .forward(x, ForwardOptions::default())
            .expect("forward")
    };
    let first_a = run(&a);
    let first_b = run(&b);
    for _ in 0..3 {
        assert_eq!(run(&a).tensors[0].1.data(), first_a.tensors[0].1.data());
        assert_eq!(run(&b).tensors[0].1.data(), first_b.tensors[0].1.data());
    }
}
