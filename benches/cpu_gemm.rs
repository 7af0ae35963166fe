//! The linear layers' GEMM on the CPU: the packed-weight GEMM (`gemm` module) against the
//! `gemm`-crate path it replaced, over the BERT dense shapes (MiniLM hidden 384 and
//! BERT-base hidden 768: fused QKV, attention output, intermediate, output), with bias,
//! at 1 and 2 threads. Throughput is in FLOP (2 * rows * k * n per product); `fma_peak`
//! measures the core's f32 FMA peak for reference (AVX-512 machines only).
//! Run: `cargo bench --bench cpu_gemm` (a criterion filter such as `1024x` narrows it).

use std::hint::black_box;

use bertrt::backend::cpu::gemm::{linear_with, Isa, PackedWeight};
use bertrt::backend::cpu::linear::linear_unpacked;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

#[path = "../examples/common/mod.rs"]
mod common;

use common::{operands, SHAPES};

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("cpu_gemm");
    group.sample_size(10);
    group.warm_up_time(std::time::Duration::from_millis(500));
    group.measurement_time(std::time::Duration::from_millis(1500));
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") {
        const ITERS: usize = 1 << 16;
        group.throughput(Throughput::Elements((ITERS * 24 * 32) as u64));
        // SAFETY: AVX-512F was detected just above.
        group.bench_function("fma_peak", |bn| {
            bn.iter(|| unsafe { common::fma_peak(ITERS) })
        });
    }
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("thread pool");
        for rows in [1, 128, 1024] {
            for (k, n) in SHAPES {
                let (x, w, b) = operands(rows, k, n);
                let packed = PackedWeight::pack(&w, n, k).expect("sizes match");
                let mut out = vec![0.0; rows * n];
                let shape = format!("{rows}x{k}x{n}");
                group.throughput(Throughput::Elements((2 * rows * k * n) as u64));
                group.bench_function(
                    BenchmarkId::new(format!("gemm-crate/t{threads}"), &shape),
                    |bn| {
                        pool.install(|| {
                            bn.iter(|| {
                                linear_unpacked(
                                    &x,
                                    &w,
                                    Some(&b),
                                    None,
                                    rows,
                                    k,
                                    n,
                                    &mut out,
                                    threads,
                                );
                                black_box(&out);
                            })
                        })
                    },
                );
                group.bench_function(
                    BenchmarkId::new(format!("packed/t{threads}"), &shape),
                    |bn| {
                        pool.install(|| {
                            bn.iter(|| {
                                linear_with(
                                    Isa::detect(),
                                    threads,
                                    &x,
                                    rows,
                                    &packed,
                                    Some(&b),
                                    None,
                                    &mut out,
                                );
                                black_box(&out);
                            })
                        })
                    },
                );
            }
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
