//! The work around the products on BERT's shapes, on one thread: the GELU a linear's
//! epilogue applies (the intermediate linears 384 -> 1536 and 768 -> 3072 in f32 with
//! and without it: the difference is the activation) and LayerNorm with its residual
//! add over rows of 384 and 768. Throughput is in values (outputs of the GELU linear,
//! inputs of the LayerNorm). Run: `cargo bench --bench cpu_epilogue`.

use std::hint::black_box;

use bertrt::backend::cpu::gemm::{linear_with, Isa, PackedWeight};
use bertrt::backend::cpu::layernorm::layer_norm;
use bertrt::config::Activation;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

#[path = "../examples/common/mod.rs"]
mod common;

use common::operands;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("cpu_epilogue");
    group.sample_size(10);
    group.warm_up_time(std::time::Duration::from_millis(300));
    group.measurement_time(std::time::Duration::from_millis(1000));
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a one-thread pool");
    let rows = 128;
    for hidden in [384, 768] {
        let (k, n) = (hidden, 4 * hidden);
        let (x, w, b) = operands(rows, k, n);
        let packed = PackedWeight::pack(&w, n, k).expect("sizes match");
        let mut out = vec![0.0; rows * n];
        group.throughput(Throughput::Elements((rows * n) as u64));
        for (name, act) in [("linear", None), ("linear+gelu", Some(Activation::Gelu))] {
            let id = BenchmarkId::new(name, format!("{rows}x{k}x{n}"));
            group.bench_function(id, |bn| {
                bn.iter(|| {
                    let (x, b) = (black_box(&x), Some(&b[..]));
                    linear_with(Isa::detect(), 1, x, rows, &packed, b, act, &mut out);
                })
            });
        }
        // x [rows, hidden] and a residual of the same shape (the weight of a
        // [rows, hidden] x [rows, hidden]ᵀ product).
        let (x, residual, _) = operands(rows, hidden, rows);
        let gamma: Vec<f32> = (0..hidden).map(|i| 1.0 + 0.01 * (i % 7) as f32).collect();
        let beta = vec![0.1; hidden];
        let mut out = vec![0.0; rows * hidden];
        group.throughput(Throughput::Elements((rows * hidden) as u64));
        let id = BenchmarkId::new("residual+layernorm", format!("{rows}x{hidden}"));
        group.bench_function(id, |bn| {
            bn.iter(|| {
                one.install(|| {
                    let (x, r) = (black_box(&x), Some(&residual[..]));
                    layer_norm(x, r, &gamma, &beta, 1e-12, hidden, &mut out)
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
