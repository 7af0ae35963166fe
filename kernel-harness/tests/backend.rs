//! The CUDA backend itself (lowering, fused steps, arena, packed batches, key/value
//! caches) run on the host emulation of the kernels: every float64 fixture in f32
//! (1e-4) and f16 (relative L2 1e-2), and cached decoding against the CPU backend.
//! The same checks run on a real GPU through tools/gpu-check.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::path::Path;

use bertrt::backend::cuda::GpuBackend;
use bertrt::{Device, Dtype, Model, Result};
use common::device::{
    check_cached_decoding, check_fixtures, check_random_models, RANDOM_BATCHES, RANDOM_SHAPES,
};
use common::fixtures_dir;
use kernel_harness::HostGpu;

fn emulated_on(gpu: HostGpu, dtype: Dtype) -> impl Fn(&Path) -> Result<Model> {
    move |dir| {
        let backend = GpuBackend::new(gpu.clone(), Device::Cuda(0), dtype);
        Model::load_on(dir, None, Box::new(backend))
    }
}

fn emulated(dtype: Dtype) -> impl Fn(&Path) -> Result<Model> {
    emulated_on(HostGpu::default(), dtype)
}

fn every_fixture(dtype: Dtype) {
    let failures = check_fixtures(dtype, &emulated(dtype));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_fixture_in_f32() {
    every_fixture(Dtype::F32);
}

#[test]
fn every_fixture_in_f16() {
    every_fixture(Dtype::F16);
}

fn cached_decoding(dtype: Dtype) {
    let failures = check_cached_decoding(dtype, &emulated(dtype));
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

#[test]
fn reserved_arena_serves_smaller_calls_without_allocating() {
    let dir = fixtures_dir().join("bert_base_tiny");
    let gpu = HostGpu::default();
    let model = emulated_on(gpu.clone(), Dtype::F16)(&dir).expect("model");
    let opts = bertrt::ForwardOptions::default();
    model.reserve(4, 24, opts).expect("reserve");
    let before = gpu.allocations();
    for (rows, len) in [(1, 5), (4, 24), (2, 17)] {
        let ids = vec![vec![3i64; len]; rows];
        model
            .forward(&bertrt::Batch::new(ids).expect("batch"), opts)
            .expect("forward");
    }
    assert_eq!(
        gpu.allocations(),
        before,
        "a call within the reservation allocated"
    );
    let big = bertrt::Batch::new(vec![vec![3i64; 30]; 6]).expect("batch");
    model.forward(&big, opts).expect("forward");
    assert!(
        gpu.allocations() > before,
        "a larger call must grow the arena"
    );
}

/// Random models against the CPU (the small shapes: the emulation is slow).
fn random_models(dtype: Dtype) {
    let shapes: Vec<_> = RANDOM_SHAPES
        .iter()
        .copied()
        .filter(|s| s.0 < 768)
        .collect();
    let batches: Vec<_> = RANDOM_BATCHES
        .iter()
        .copied()
        .filter(|b| b.0 != [512])
        .collect();
    let failures = check_random_models(dtype, &shapes, &batches, &emulated(dtype));
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
