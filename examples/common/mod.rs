//! What the GEMM comparison examples and the GEMM benches (which include this file by
//! path) share: BERT's dense shapes, the operands, the FMA peak, the examples' arguments
//! (`[THREADS] [REPS] [ROWS...]`) and a stopwatch.
#![allow(dead_code)]

use std::time::Instant;

/// (k, n) of every BERT-base and all-MiniLM-L6-v2 dense layer.
pub const SHAPES: [(usize, usize); 8] = [
    (384, 1152),
    (384, 384),
    (384, 1536),
    (1536, 384),
    (768, 2304),
    (768, 768),
    (768, 3072),
    (3072, 768),
];

/// Deterministic operands of a [rows, k] x [n, k]ᵀ product: (x, w, bias).
pub fn operands(rows: usize, k: usize, n: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let values = |len: usize, seed: f32| (0..len).map(|i| (i as f32 * seed).sin()).collect();
    (values(rows * k, 0.37), values(n * k, 0.91), values(n, 0.13))
}

/// 24 independent zmm FMA chains, `iters` steps each (32 FLOP per FMA): the core's f32
/// FMA peak for reference.
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub unsafe fn fma_peak(iters: usize) -> f32 {
    use std::arch::x86_64::*;
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

/// The low-precision paths `supported` allows, fastest first: AMX and AVX-512 where the
/// CPU has them, else the portable one.
pub fn lowp_paths(
    supported: fn(bertrt::backend::cpu::gemm::Path) -> bool,
) -> Vec<bertrt::backend::cpu::gemm::Path> {
    use bertrt::backend::cpu::gemm::Path;
    let fast: Vec<Path> = [Path::Amx, Path::Native]
        .into_iter()
        .filter(|&p| supported(p))
        .collect();
    match fast.is_empty() {
        true => vec![Path::Portable],
        false => fast,
    }
}

/// Seconds `f` takes.
pub fn seconds(f: &mut dyn FnMut()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64()
}

/// The command line: threads (1), repetitions (20), row counts (1, 128, 1024), and a
/// rayon pool of that many threads.
pub struct Args {
    pub threads: usize,
    pub reps: usize,
    pub rows: Vec<usize>,
    pub pool: rayon::ThreadPool,
}

pub fn args() -> Args {
    let mut args = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse::<usize>().ok());
    let threads = args.next().unwrap_or(1);
    let reps = args.next().unwrap_or(20);
    let mut rows: Vec<usize> = args.collect();
    if rows.is_empty() {
        rows = vec![1, 128, 1024];
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool");
    Args {
        threads,
        reps,
        rows,
        pool,
    }
}
