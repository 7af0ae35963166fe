//! Runs BertModel on the default model at ROWS x LEN (1 x 128) repeatedly, for profilers:
//! `cargo run --release --example profile_forward -- [ROWS] [ITERS] [DTYPE] [LEN]`.

use bertrt::{fetch, Batch, Device, Dtype, ForwardOptions, Model, Target};

fn main() -> bertrt::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, default| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (rows, iters, len) = (num(0, 1), num(1, 50), num(3, 128));
    let dtype: Dtype = args.get(2).map_or(Ok(Dtype::F32), |d| d.parse())?;
    let target = Target::new(Device::Cpu, Some(dtype));
    let model = Model::load(&fetch::default_model()?, None, target)?;
    let ids = (0..rows)
        .map(|r| {
            (0..len)
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
    println!("{rows}x{len} {dtype}: {ms:.2} ms per forward");
    Ok(())
}
