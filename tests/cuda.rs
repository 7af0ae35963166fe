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

use std::path::Path;

use bertrt::backend::cuda::CudaGpu;
use bertrt::{Batch, Device, Dtype, Error, ForwardOptions, Model, Target};
use common::device::{
    batch, check_cached_decoding, check_fixtures, check_random_models, RANDOM_BATCHES,
    RANDOM_SHAPES,
};
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
    let failures = check_fixtures(dtype, &|dir| Model::load(dir, None, cuda(dtype)));
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
    let failures = check_cached_decoding(dtype, &|dir| Model::load(dir, None, cuda(dtype)));
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

fn random_models(dtype: Dtype) {
    if !gpu() {
        return;
    }
    let load = |dir: &Path| Model::load(dir, None, cuda(dtype));
    let failures = check_random_models(dtype, RANDOM_SHAPES, RANDOM_BATCHES, &load);
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
