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

/// (k, n) of every dense layer of MiniLM-L6 (hidden 384) and BERT-base (hidden 768).
const SHAPES: [(usize, usize); 8] = [
    (384, 1152),
    (384, 384),
    (384, 1536),
    (1536, 384),
    (768, 2304),
    (768, 768),
    (768, 3072),
    (3072, 768),
];

fn values(len: usize, seed: f32) -> Vec<f32> {
    (0..len).map(|i| (i as f32 * seed).sin()).collect()
}

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
        group.bench_function("fma_peak", |bn| bn.iter(|| unsafe { peak::fma(ITERS) }));
    }
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("thread pool");
        for rows in [1, 128, 1024] {
            for (k, n) in SHAPES {
                let x = values(rows * k, 0.37);
                let w = values(n * k, 0.91);
                let b = values(n, 0.13);
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

#[cfg(target_arch = "x86_64")]
mod peak {
    use std::arch::x86_64::*;

    /// 24 independent zmm FMA chains, `iters` steps each (32 FLOP per FMA).
    ///
    /// # Safety
    /// The CPU must support AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn fma(iters: usize) -> f32 {
        let mut acc = [_mm512_set1_ps(0.5); 24];
        let a = _mm512_set1_ps(std::hint::black_box(0.999));
        let b = _mm512_set1_ps(std::hint::black_box(0.001));
        for _ in 0..iters {
            for v in acc.iter_mut() {
                *v = _mm512_fmadd_ps(*v, a, b);
            }
        }
        let sum = acc
            .iter()
            .fold(_mm512_setzero_ps(), |s, v| _mm512_add_ps(s, *v));
        _mm512_reduce_add_ps(sum)
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
