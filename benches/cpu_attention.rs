//! Self-attention on the CPU (`cpu::attention`: QKᵀ, softmax, PV per (sequence, head)
//! pair, queries in blocks) over BERT's shapes: all-MiniLM-L6-v2's 12 heads of 32 and
//! BERT-base's 12 of 64, at 1 x 128, 8 x 128 and 1 x 512 tokens, full masks, on the rayon
//! pool (RAYON_NUM_THREADS). Throughput counts the two products' FLOP
//! (4 * batch * heads * seq^2 * head_dim). `f32` runs the f32 products, `split_bf16` the
//! bf16 backend's (split bf16 on AMX tiles; the f32 ones on CPUs without AMX), `bf16` the
//! int8 backend's (plain bf16 with AVX512-BF16 and no AMX; else the f32 ones).
//! Run: `cargo bench --bench cpu_attention` (a criterion filter such as `512` narrows it).

use std::hint::black_box;

use bertrt::backend::cpu::attention::{attention, AttnShape, KvSource, Products};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("cpu_attention");
    group.sample_size(10);
    group.warm_up_time(std::time::Duration::from_millis(300));
    group.measurement_time(std::time::Duration::from_millis(1000));
    for head_dim in [32, 64] {
        for (batch, seq) in [(1, 128), (8, 128), (1, 512)] {
            let heads = 12;
            let hidden = heads * head_dim;
            let s = AttnShape {
                batch,
                seq,
                past: 0,
                heads,
                head_dim,
                causal: false,
            };
            let qkv: Vec<f32> = (0..batch * seq * 3 * hidden)
                .map(|i| (i as f32 * 0.37).sin())
                .collect();
            let mask = vec![1u8; batch * seq];
            let mut out = vec![0.0; batch * seq * hidden];
            let flop = 4 * batch * heads * seq * seq * head_dim;
            group.throughput(Throughput::Elements(flop as u64));
            let id = format!("{batch}x{seq}x{heads}x{head_dim}");
            let all = [
                ("f32", Products::F32),
                ("split_bf16", Products::SplitBf16),
                ("bf16", Products::Bf16),
            ];
            for (name, products) in all {
                group.bench_function(BenchmarkId::new(name, &id), |bn| {
                    bn.iter(|| {
                        let kv = KvSource::Fused(&qkv);
                        attention(products, s, &qkv, kv, &mask, None, &mut out, None);
                        black_box(&out);
                    })
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
