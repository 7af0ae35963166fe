//! A row's answer does not depend on its batch: on the CPU, in f32, bf16 and int8, every
//! row's outputs are bit-identical whether it runs alone or padded among other rows (in
//! any order, in batches large enough for throughput mode). In a server, one user's
//! answer must not depend on another user's request.
//!
//! The model is all-MiniLM-L6-v2's shape with seeded random weights and two layers (k of
//! 384 and 1536, so int8's outlier channels are in play), the rows random ids of 1 to 70
//! tokens.

mod common;

use bertrt::{Batch, Device, Dtype, ForwardOptions, Model, Outputs, Target};
use common::Scratch;

/// A small deterministic generator (xorshift64*), so the test needs no crate.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

fn checkpoint(dir: &std::path::Path) {
    let config = serde_json::from_value(serde_json::json!({
        "architectures": ["BertModel"],
        "hidden_size": 384,
        "num_hidden_layers": 2,
        "num_attention_heads": 12,
        "intermediate_size": 1536,
    }))
    .expect("a valid config");
    bertrt::synthetic::write_checkpoint(dir, &config, 17).expect("writes the checkpoint");
}

/// Rows padded at the end to the longest, with their attention mask.
fn batch(rows: &[&Vec<i64>]) -> Batch {
    let seq = rows.iter().map(|r| r.len()).max().unwrap_or(1);
    let pad = |r: &Vec<i64>, fill: i64, v: fn(&i64) -> i64| {
        let mut out: Vec<i64> = r.iter().map(v).collect();
        out.resize(seq, fill);
        out
    };
    let ids = rows.iter().map(|r| pad(r, 0, |&x| x)).collect();
    let mask = rows.iter().map(|r| pad(r, 0, |_| 1)).collect();
    Batch::new(ids)
        .and_then(|b| b.with_attention_mask(mask))
        .expect("a valid batch")
}

/// Row `r`'s outputs, bit for bit: its tokens' last_hidden_state and its pooler_output.
fn row_bits(out: &Outputs, r: usize, len: usize) -> Vec<u32> {
    let states = out.get("last_hidden_state").expect("last_hidden_state");
    let pooled = out.get("pooler_output").expect("pooler_output");
    let (seq, hidden) = (states.shape()[1], states.shape()[2]);
    let tokens = &states.data()[r * seq * hidden..][..len * hidden];
    let pool = &pooled.data()[r * hidden..][..hidden];
    tokens.iter().chain(pool).map(|v| v.to_bits()).collect()
}

#[test]
fn a_rows_outputs_are_the_same_alone_and_in_any_batch() {
    let dir = Scratch::new("batch-independence");
    checkpoint(&dir.0);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let rows: Vec<Vec<i64>> = (0..12)
        .map(|_| {
            let len = 1 + rng.below(70);
            (0..len).map(|_| 1 + rng.below(30_000) as i64).collect()
        })
        .collect();
    let mut failures = Vec::new();
    for dtype in [Dtype::F32, Dtype::Bf16, Dtype::Int8] {
        let target = Target::new(Device::Cpu, Some(dtype));
        let model = Model::load(&dir.0, None, target).expect("loads");
        let forward = |b: &Batch| model.forward(b, ForwardOptions::default()).expect("runs");
        let alone: Vec<Vec<u32>> = rows
            .iter()
            .map(|r| row_bits(&forward(&batch(&[r])), 0, r.len()))
            .collect();
        for round in 0..4 {
            // A random subset of 2 to 12 rows in a random order.
            let mut order: Vec<usize> = (0..rows.len()).collect();
            for i in (1..order.len()).rev() {
                order.swap(i, rng.below(i + 1));
            }
            order.truncate(2 + rng.below(rows.len() - 1));
            let picked: Vec<&Vec<i64>> = order.iter().map(|&i| &rows[i]).collect();
            let out = forward(&batch(&picked));
            for (place, &i) in order.iter().enumerate() {
                if row_bits(&out, place, rows[i].len()) != alone[i] {
                    failures.push(format!(
                        "{dtype:?} round {round}: row {i} ({} tokens) at place {place} of {}",
                        rows[i].len(),
                        order.len()
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "rows whose outputs changed with their batch:\n{}",
        failures.join("\n")
    );
}
