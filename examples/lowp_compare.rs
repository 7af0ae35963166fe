//! f32 vs bf16 vs int8 linears on a shared, noisy machine: for each BERT dense shape the
//! packed GEMMs (f32, then bf16 and int8 on every fast path this CPU has: AMX and
//! AVX-512) run alternately, REPS times each, and the fastest run of each is reported in
//! GFLOP/s (the run least disturbed by other load) with the speed-ups over f32. The
//! low-precision times include converting (bf16) or quantizing (int8) x.
//! `cargo run --release --example lowp_compare -- [THREADS] [REPS] [ROWS...]`.

use bertrt::backend::cpu::gemm::bf16::{linear_bf16_with, PackedBf16};
use bertrt::backend::cpu::gemm::int8::{linear_int8_with, PackedInt8};
use bertrt::backend::cpu::gemm::{linear_with, Isa, PackedWeight, Path};

mod common;

use common::{operands, seconds, SHAPES};

/// One product to time, writing into the given output.
type Run<'a> = Box<dyn FnMut(&mut [f32]) + Send + 'a>;

fn main() {
    let common::Args {
        threads,
        reps,
        rows: rows_list,
        pool,
    } = common::args();
    let bf16_paths = common::lowp_paths(Path::bf16_supported);
    let int8_paths = common::lowp_paths(Path::int8_supported);
    println!("threads {threads}, best of {reps} alternating runs; GFLOP/s (x f32)");
    let mut header = format!("{:>16} {:>8}", "rows x k x n", "f32");
    for p in &bf16_paths {
        header += &format!(" {:>16}", format!("bf16 {p:?}"));
    }
    for p in &int8_paths {
        header += &format!(" {:>16}", format!("int8 {p:?}"));
    }
    println!("{header}");
    for &rows in &rows_list {
        for (k, n) in SHAPES {
            let (x, w, b) = operands(rows, k, n);
            let f32w = PackedWeight::pack(&w, n, k).expect("sizes match");
            let bf16w = PackedBf16::pack(&w, n, k).expect("sizes match");
            let int8w = PackedInt8::pack(&w, n, k).expect("sizes match");
            let mut out = vec![0.0; rows * n];
            let bias = Some(&b[..]);
            let mut runs: Vec<Run> = vec![Box::new(|out| {
                linear_with(Isa::detect(), threads, &x, rows, &f32w, bias, None, out)
            })];
            for &p in &bf16_paths {
                let (x, w) = (&x, &bf16w);
                runs.push(Box::new(move |out| {
                    linear_bf16_with(p, threads, x, rows, w, bias, None, out)
                }));
            }
            for &p in &int8_paths {
                let (x, w) = (&x, &int8w);
                runs.push(Box::new(move |out| {
                    linear_int8_with(p, threads, x, rows, w, bias, None, out)
                }));
            }
            let mut best = vec![f64::INFINITY; runs.len()];
            pool.install(|| {
                for _ in 0..reps {
                    for (run, best) in runs.iter_mut().zip(best.iter_mut()) {
                        *best = best.min(seconds(&mut || run(&mut out)));
                    }
                }
            });
            let flop = 2.0 * (rows * k * n) as f64;
            let mut line = format!(
                "{:>16} {:>8.1}",
                format!("{rows}x{k}x{n}"),
                flop / best[0] / 1e9
            );
            for &t in &best[1..] {
                line += &format!(
                    " {:>16}",
                    format!("{:.1} ({:.2})", flop / t / 1e9, best[0] / t)
                );
            }
            println!("{line}");
        }
    }
}
