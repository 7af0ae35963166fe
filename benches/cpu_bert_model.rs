//! BertModel f32 on the CPU backend: all-MiniLM-L6-v2 (real weights, the default model)
//! and a BERT-base-shaped model (seeded random weights), at batch 1 x 128 and 8 x 128
//! tokens. Run: `cargo bench --bench cpu_bert_model`. Throughput is in tokens.

use std::path::PathBuf;

use bertrt::{synthetic, Batch, Device, ForwardOptions, Model};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn bert_base_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bert-base-random");
    if !dir.join("config.json").is_file() {
        synthetic::write_checkpoint(&dir, &synthetic::bert_base_config(), 7)
            .expect("writing the synthetic bert-base checkpoint");
    }
    dir
}

fn batch(rows: usize, seq: usize) -> Batch {
    let ids = (0..rows)
        .map(|r| {
            (0..seq)
                .map(|i| 1000 + ((r * 7919 + i * 104_729) % 20_000) as i64)
                .collect()
        })
        .collect();
    Batch::new(ids).expect("valid ids")
}

fn bench(c: &mut Criterion) {
    let models = [
        (
            "minilm",
            bertrt::fetch::default_model().expect("default model"),
        ),
        ("bert-base", bert_base_dir()),
    ];
    let mut group = c.benchmark_group("cpu_f32_bert_model");
    group.sample_size(10);
    for (name, dir) in models {
        let model = Model::load(&dir, None, Device::Cpu).expect("model loads");
        for rows in [1, 8] {
            let input = batch(rows, 128);
            group.throughput(Throughput::Elements((rows * 128) as u64));
            group.bench_with_input(
                BenchmarkId::new(name, format!("{rows}x128")),
                &input,
                |b, input| b.iter(|| model.forward(input, ForwardOptions::default()).unwrap()),
            );
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
