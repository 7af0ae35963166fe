//! The CPU attention's two kinds of products on a shared, noisy machine: for each of
//! BERT's attention shapes (all-MiniLM-L6-v2's 12 heads of 32, BERT-base's 12 of 64) the
//! f32 products and the bf16 backend's split bf16 ones (AMX tiles, where the
//! CPU has them) run alternately, REPS times each; the fastest run of each is reported
//! (the run least disturbed by other load), with the split products' speed-up.
//! `cargo run --release --example attention_compare -- [THREADS] [REPS]`.

use bertrt::backend::cpu::attention::{attention, AttnShape, KvSource, Products};

mod common;

use common::seconds;

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>());
    let threads = args.next().and_then(Result::ok).unwrap_or(1);
    let reps = args.next().and_then(Result::ok).unwrap_or(20);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a thread pool");
    println!("threads {threads}, best of {reps} alternating runs; ms (f32 / split)");
    println!(
        "{:>14} {:>8} {:>16}",
        "batch x seq x d", "f32", "split bf16"
    );
    for head_dim in [32, 64] {
        for (batch, seq) in [(1, 128), (8, 128), (1, 512)] {
            let s = AttnShape {
                batch,
                seq,
                past: 0,
                heads: 12,
                head_dim,
                causal: false,
            };
            let hidden = 12 * head_dim;
            let qkv: Vec<f32> = (0..batch * seq * 3 * hidden)
                .map(|i| (i as f32 * 0.37).sin())
                .collect();
            let mask = vec![1u8; batch * seq];
            let mut out = vec![0.0; batch * seq * hidden];
            let mut best = [f64::INFINITY; 2];
            pool.install(|| {
                for _ in 0..reps {
                    for (p, best) in [Products::F32, Products::SplitBf16].iter().zip(&mut best) {
                        let kv = KvSource::Fused(&qkv);
                        let t = seconds(&mut || {
                            attention(*p, s, &qkv, kv, &mask, None, &mut out, None)
                        });
                        *best = best.min(t);
                    }
                }
            });
            println!(
                "{:>14} {:>8.3} {:>16}",
                format!("{batch}x{seq}x{head_dim}"),
                best[0] * 1e3,
                format!("{:.3} ({:.2})", best[1] * 1e3, best[0] / best[1])
            );
        }
    }
}
