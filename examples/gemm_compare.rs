//! Old vs new linear GEMM on a shared, noisy machine: for each BERT dense shape the
//! `gemm`-crate path and the packed GEMM run alternately, REPS times each, and the fastest
//! run of each is reported in GFLOP/s (the fastest is the run least disturbed by other
//! load), with the f32 FMA peak measured the same way.
//! `cargo run --release --example gemm_compare -- [THREADS] [REPS] [ROWS...]`; set
//! `GEMM_ISA=avx2` or `GEMM_ISA=scalar` to time that microkernel instead of the best one.

use bertrt::backend::cpu::gemm::{linear_with, Isa, PackedWeight};
use bertrt::backend::cpu::linear::linear_unpacked;

mod common;

use common::{operands, seconds, SHAPES};

fn main() {
    let common::Args {
        threads,
        reps,
        rows: rows_list,
        pool,
    } = common::args();
    let isa = match std::env::var("GEMM_ISA").as_deref() {
        Ok("avx2") => Isa::Avx2,
        Ok("scalar") => Isa::Scalar,
        _ => Isa::detect(),
    };
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") {
        let iters = 1 << 18;
        let best = (0..reps)
            // SAFETY: AVX-512F was detected just above.
            .map(|_| {
                seconds(&mut || {
                    std::hint::black_box(unsafe { common::fma_peak(iters) });
                })
            })
            .fold(f64::INFINITY, f64::min);
        println!(
            "fma peak, one core: {:.1} GFLOP/s",
            (iters * 24 * 32) as f64 / best / 1e9
        );
    }
    println!("threads {threads}, packed GEMM on {isa:?}, best of {reps} alternating runs; GFLOP/s");
    println!(
        "{:>16} {:>10} {:>10} {:>7}",
        "rows x k x n", "gemm-crate", "packed", "new/old"
    );
    for &rows in &rows_list {
        for (k, n) in SHAPES {
            let (x, w, b) = operands(rows, k, n);
            let packed = PackedWeight::pack(&w, n, k).expect("sizes match");
            let mut out = vec![0.0; rows * n];
            let (mut old, mut new) = (f64::INFINITY, f64::INFINITY);
            pool.install(|| {
                for _ in 0..reps {
                    old = old.min(seconds(&mut || {
                        linear_unpacked(&x, &w, Some(&b), None, rows, k, n, &mut out, threads)
                    }));
                    new = new.min(seconds(&mut || {
                        linear_with(isa, threads, &x, rows, &packed, Some(&b), None, &mut out)
                    }));
                }
            });
            let flop = 2.0 * (rows * k * n) as f64;
            println!(
                "{:>16} {:>10.1} {:>10.1} {:>7.2}",
                format!("{rows}x{k}x{n}"),
                flop / old / 1e9,
                flop / new / 1e9,
                old / new
            );
        }
    }
}
