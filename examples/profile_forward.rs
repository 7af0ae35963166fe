//! Runs BertModel on the default model at 1 x 128 repeatedly, for profilers:
//! `cargo run --release --example profile_forward -- [ROWS] [ITERS]`.

use bertrt::{fetch, Batch, Device, ForwardOptions, Model};

fn main() -> bertrt::Result<()> {
    let mut args = std::env::args()
        .skip(1)
        .map(|a| a.parse::<usize>().unwrap_or(1));
    let rows = args.next().unwrap_or(1);
    let iters = args.next().unwrap_or(50);
    let model = Model::load(&fetch::default_model()?, None, Device::Cpu)?;
    let ids = (0..rows)
        .map(|r| {
            (0..128)
                .map(|i| 1000 + ((r * 31 + i * 97) % 20_000) as i64)
                .collect()
        })
        .collect();
    let batch = Batch::new(ids)?;
    let start = std::time::Instant::now();
    for _ in 0..iters {
        model.forward(&batch, ForwardOptions::default())?;
    }
    let ms = start.elapsed().as_secs_f64() * 1e3 / iters as f64;
    println!("{rows}x128: {ms:.2} ms per forward");
    Ok(())
}
