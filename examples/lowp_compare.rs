//! f32 vs bf16 vs int8 linears on a shared, noisy machine: for each BERT dense shape the
//! three packed GEMMs run alternately, REPS times each, and the fastest run of each is
//! reported in GFLOP/s (the run least disturbed by other load) with the speed-ups over
//! f32. The low-precision times include converting (bf16) or quantizing (int8) x.
//! `cargo run --release --example lowp_compare -- [THREADS] [REPS] [ROWS...]`.

use bertrt::backend::cpu::gemm::bf16::{linear_bf16_with, PackedBf16};
use bertrt::backend::cpu::gemm::int8::{linear_int8_with, PackedInt8};
use bertrt::backend::cpu::gemm::{linear_with, Isa, PackedWeight, Path};

mod common;

use common::{operands, seconds, SHAPES};

fn main() {
    let common::Args {
        threads,
        reps,
        rows: rows_list,
        pool,
    } = common::args();
    let bf16_path = Path::best(Path::bf16_supported);
    let int8_path = Path::best(Path::int8_supported);
    println!("threads {threads}, best of {reps} alternating runs; GFLOP/s");
    println!("bf16 path {bf16_path:?}, int8 path {int8_path:?}");
    println!(
        "{:>16} {:>8} {:>8} {:>8} {:>9} {:>9}",
        "rows x k x n", "f32", "bf16", "int8", "bf16/f32", "int8/f32"
    );
    for &rows in &rows_list {
        for (k, n) in SHAPES {
            let (x, w, b) = operands(rows, k, n);
            let f32w = PackedWeight::pack(&w, n, k).expect("sizes match");
            let bf16w = PackedBf16::pack(&w, n, k).expect("sizes match");
            let int8w = PackedInt8::pack(&w, n, k).expect("sizes match");
            let mut out = vec![0.0; rows * n];
            let mut best = [f64::INFINITY; 3];
            let bias = Some(&b[..]);
            pool.install(|| {
                for _ in 0..reps {
                    best[0] = best[0].min(seconds(&mut || {
                        let isa = Isa::detect();
                        linear_with(isa, threads, &x, rows, &f32w, bias, None, &mut out)
                    }));
                    best[1] = best[1].min(seconds(&mut || {
                        linear_bf16_with(bf16_path, threads, &x, rows, &bf16w, bias, None, &mut out)
                    }));
                    best[2] = best[2].min(seconds(&mut || {
                        linear_int8_with(int8_path, threads, &x, rows, &int8w, bias, None, &mut out)
                    }));
                }
            });
            let flop = 2.0 * (rows * k * n) as f64;
            println!(
                "{:>16} {:>8.1} {:>8.1} {:>8.1} {:>9.2} {:>9.2}",
                format!("{rows}x{k}x{n}"),
                flop / best[0] / 1e9,
                flop / best[1] / 1e9,
                flop / best[2] / 1e9,
                best[0] / best[1],
                best[0] / best[2],
            );
        }
    }
}
