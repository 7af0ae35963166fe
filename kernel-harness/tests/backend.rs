//! The CUDA backend itself (lowering, fused steps, arena, packed batches, key/value
//! caches) run on the host emulation of the kernels: every float64 fixture and random
//! models against the CPU backend, in f32 (1e-4) and f16 (relative L2 1e-2), and cached
//! decoding against the CPU backend. These runs must launch every entry point the
//! driver loads, so a kernel the backend never uses fails here. The same checks run on a
//! real GPU through tools/gpu-check.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::path::Path;

use bertrt::backend::cuda::{ops, GpuBackend};
use bertrt::{Device, Dtype, Model, Result};
use common::device::{
    assert_none, check_cached_decoding, check_fixtures, check_random_models, RANDOM_BATCHES,
    RANDOM_SHAPES,
};
use common::fixtures_dir;
use kernel_harness::HostGpu;

fn emulated_on(gpu: HostGpu, dtype: Dtype) -> impl Fn(&Path) -> Result<Model> {
    move |dir| {
        let backend = GpuBackend::new(gpu.clone(), Device::Cuda(0), dtype);
        Model::load_on(dir, None, Box::new(backend))
    }
}

/// Every fixture and the random models (the shapes under BERT base and batches under
/// 512 tokens: the emulation is slow) on one recording device, which must have launched
/// every entry point of `dtype`.
fn models_launch_every_kernel(dtype: Dtype) {
    let gpu = HostGpu::default();
    let load = emulated_on(gpu.clone(), dtype);
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
    let mut failures = check_fixtures(dtype, &load);
    failures.extend(check_random_models(dtype, &shapes, &batches, &load));
    assert_none(failures);
    let launched = gpu.launched();
    let never: Vec<&str> = ops::entry_points()
        .filter(|&(d, name)| d == dtype && !launched.iter().any(|l| l == name))
        .map(|(_, name)| name)
        .collect();
    assert!(
        never.is_empty(),
        "entry points loaded but never launched by the fixtures and random models in \
         {dtype}: {never:?} (launched: {launched:?})"
    );
}

#[test]
fn fixtures_and_random_models_in_f32() {
    models_launch_every_kernel(Dtype::F32);
}

#[test]
fn fixtures_and_random_models_in_f16() {
    models_launch_every_kernel(Dtype::F16);
}

/// The two tests above cover an entry point only if it is f32 or f16.
#[test]
fn every_entry_point_is_f32_or_f16() {
    let other: Vec<_> = ops::entry_points()
        .filter(|(d, _)| !matches!(d, Dtype::F32 | Dtype::F16))
        .collect();
    assert!(other.is_empty(), "{other:?}");
}

#[test]
fn cached_decoding_in_f32() {
    assert_none(check_cached_decoding(
        Dtype::F32,
        &emulated_on(HostGpu::default(), Dtype::F32),
    ));
}

#[test]
fn cached_decoding_in_f16() {
    assert_none(check_cached_decoding(
        Dtype::F16,
        &emulated_on(HostGpu::default(), Dtype::F16),
    ));
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
