//! The CUDA backend on a real device (feature `cuda`).
//!
//! Without a GPU (CI, developer machines) the one test that runs checks that asking for
//! CUDA fails with a clear error instead of a crash; the others need a GPU and are
//! ignored. tools/gpu-check runs them all (`--include-ignored`) on a GPU machine with
//! BERTRT_REQUIRE_GPU=1, where a missing device fails every test, and they check:
//! - every float64 fixture on CUDA in f32 (1e-4) and f16 (relative L2 1e-2);
//! - cached decoding (BertLMHeadModel) against the CPU backend;
//! - random models of awkward shapes (odd widths, head_dim 12/16/32/64, 1 to 512 tokens,
//!   ragged and left-padded batches) against the CPU backend, which exercises every
//!   kernel the backend launches on random inputs;
//! - graph replay: repeated and interleaved shapes give identical results.
#![cfg(feature = "cuda")]

mod common;

use std::path::Path;

use bertrt::backend::cuda::CudaGpu;
use bertrt::{Batch, Device, Dtype, Error, ForwardOptions, Model, Result, Target};
use common::device::{
    assert_none, batch, check_cached_decoding, check_fixtures, check_random_models, RANDOM_BATCHES,
    RANDOM_SHAPES,
};
use common::fixtures_dir;

/// Set (to anything) where a GPU must be present: tools/gpu-check sets it.
const REQUIRE_GPU: &str = "BERTRT_REQUIRE_GPU";

/// A loader of models on CUDA in `dtype`; fails the test first if there is no usable
/// GPU (these tests run only when asked for: `--include-ignored`).
fn on_gpu(dtype: Dtype) -> impl Fn(&Path) -> Result<Model> {
    if let Err(e) = CudaGpu::new(0) {
        panic!("this test needs a GPU (tools/gpu-check runs it): {e}");
    }
    move |dir| Model::load(dir, None, Target::new(Device::Cuda(0), Some(dtype)))
}

#[test]
fn cuda_without_a_gpu_is_a_clean_error() {
    let dir = fixtures_dir().join("bert_base_tiny");
    match Model::load(&dir, None, Device::Cuda(0)) {
        Ok(model) => assert_eq!(model.device(), Device::Cuda(0)),
        Err(e) => {
            assert!(
                std::env::var_os(REQUIRE_GPU).is_none(),
                "{REQUIRE_GPU} is set but CUDA is unusable: {e}"
            );
            assert!(matches!(e, Error::Unsupported(_)), "{e:?}");
            assert!(e.to_string().contains("CUDA"), "{e}");
        }
    }
    // A device that cannot exist is an error either way.
    assert!(Model::load(&dir, None, Device::Cuda(4096)).is_err());
}

#[test]
#[ignore = "needs a GPU: tools/gpu-check runs it"]
fn fixtures_in_f32() {
    assert_none(check_fixtures(Dtype::F32, &on_gpu(Dtype::F32)));
}

#[test]
#[ignore = "needs a GPU: tools/gpu-check runs it"]
fn fixtures_in_f16() {
    assert_none(check_fixtures(Dtype::F16, &on_gpu(Dtype::F16)));
}

#[test]
#[ignore = "needs a GPU: tools/gpu-check runs it"]
fn cached_decoding_in_f32() {
    assert_none(check_cached_decoding(Dtype::F32, &on_gpu(Dtype::F32)));
}

#[test]
#[ignore = "needs a GPU: tools/gpu-check runs it"]
fn cached_decoding_in_f16() {
    assert_none(check_cached_decoding(Dtype::F16, &on_gpu(Dtype::F16)));
}

#[test]
#[ignore = "needs a GPU: tools/gpu-check runs it"]
fn random_models_in_f32() {
    let load = on_gpu(Dtype::F32);
    assert_none(check_random_models(
        Dtype::F32,
        RANDOM_SHAPES,
        RANDOM_BATCHES,
        &load,
    ));
}

#[test]
#[ignore = "needs a GPU: tools/gpu-check runs it"]
fn random_models_in_f16() {
    let load = on_gpu(Dtype::F16);
    assert_none(check_random_models(
        Dtype::F16,
        RANDOM_SHAPES,
        RANDOM_BATCHES,
        &load,
    ));
}

#[test]
#[ignore = "needs a GPU: tools/gpu-check runs it"]
fn graph_replay_is_deterministic() {
    let dir = fixtures_dir().join("bert_base_tiny");
    let model = on_gpu(Dtype::F16)(&dir).expect("cuda");
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
