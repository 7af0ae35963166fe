//! The linears' GEMM in f32, bf16 and int8 over the BERT dense shapes (MiniLM hidden 384
//! and BERT-base hidden 768: fused QKV, attention output, intermediate, output), with
//! bias, on one thread. Throughput is in FLOP (2 * rows * k * n per product, whatever the
//! precision); the low-precision times include rounding (bf16) or quantizing (int8) x.
//! Every fast path this CPU has is timed (AMX and AVX-512: `bf16-Amx`, `bf16-Native`, ...).
//! Run: `cargo bench --bench cpu_lowp` (a criterion filter such as `int8` narrows it).
//! On a shared machine, `cargo run --release --example lowp_compare` alternates the three
//! paths instead, so that other load cannot land on one of them only.

use std::hint::black_box;

use bertrt::backend::cpu::gemm::bf16::{linear_bf16_with, PackedBf16};
use bertrt::backend::cpu::gemm::int8::{linear_int8_with, PackedInt8};
use bertrt::backend::cpu::gemm::{linear_with, Isa, PackedWeight, Path};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

#[path = "../examples/common/mod.rs"]
mod common;

use common::{operands, SHAPES};

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("cpu_lowp");
    group.sample_size(10);
    group.warm_up_time(std::time::Duration::from_millis(300));
    group.measurement_time(std::time::Duration::from_millis(1000));
    let bf16_paths = common::lowp_paths(Path::bf16_supported);
    let int8_paths = common::lowp_paths(Path::int8_supported);
    for rows in [1, 128, 1024] {
        for (k, n) in SHAPES {
            let (x, w, b) = operands(rows, k, n);
            let f32w = PackedWeight::pack(&w, n, k).expect("sizes match");
            let bf16w = PackedBf16::pack(&w, n, k).expect("sizes match");
            let int8w = PackedInt8::pack(&w, n, k).expect("sizes match");
            let mut out = vec![0.0; rows * n];
            let shape = format!("{rows}x{k}x{n}");
            let bias = Some(&b[..]);
            group.throughput(Throughput::Elements((2 * rows * k * n) as u64));
            group.bench_function(BenchmarkId::new("f32", &shape), |bn| {
                bn.iter(|| {
                    linear_with(Isa::detect(), 1, &x, rows, &f32w, bias, None, &mut out);
                    black_box(&out);
                })
            });
            for &path in &bf16_paths {
                let id = BenchmarkId::new(format!("bf16-{path:?}"), &shape);
                group.bench_function(id, |bn| {
                    bn.iter(|| {
                        linear_bf16_with(path, 1, &x, rows, &bf16w, bias, None, &mut out);
                        black_box(&out);
                    })
                });
            }
            for &path in &int8_paths {
                let id = BenchmarkId::new(format!("int8-{path:?}"), &shape);
                group.bench_function(id, |bn| {
                    bn.iter(|| {
                        linear_int8_with(path, 1, &x, rows, &int8w, bias, None, &mut out);
                        black_box(&out);
                    })
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
