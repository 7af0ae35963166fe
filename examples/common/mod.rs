//! What the GEMM comparison examples share: BERT's dense shapes, their arguments
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
