//! Synthetic checkpoints: a BertModel of any shape with seeded random weights, written as
//! a normal checkpoint folder. For benchmarks of named shapes (bert-base) without
//! shipping their weights; the numbers are meaningless, the timing is not.

use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::Dtype;

use crate::config::BertConfig;
use crate::error::{Error, Result};

/// The BERT-base shape: 12 layers, hidden 768, 12 heads, intermediate 3072.
pub fn bert_base_config() -> BertConfig {
    config(768, 12, 12, 3072)
}

/// The all-MiniLM-L6-v2 shape: 6 layers, hidden 384, 12 heads, intermediate 1536.
pub fn minilm_config() -> BertConfig {
    config(384, 6, 12, 1536)
}

fn config(hidden: usize, layers: usize, heads: usize, intermediate: usize) -> BertConfig {
    let json = serde_json::json!({
        "architectures": ["BertModel"],
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": intermediate,
    });
    serde_json::from_value(json).expect("a complete, valid BERT config")
}

/// Writes config.json and model.safetensors (f32, seeded) for a BertModel of `config`.
pub fn write_checkpoint(dir: &Path, config: &BertConfig, seed: u64) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let (h, i) = (config.hidden_size, config.intermediate_size);
    let mut shapes: Vec<(String, Vec<usize>)> = vec![
        (
            "embeddings.word_embeddings.weight".into(),
            vec![config.vocab_size, h],
        ),
        (
            "embeddings.position_embeddings.weight".into(),
            vec![config.max_position_embeddings, h],
        ),
        (
            "embeddings.token_type_embeddings.weight".into(),
            vec![config.type_vocab_size, h],
        ),
        ("pooler.dense.weight".into(), vec![h, h]),
        ("pooler.dense.bias".into(), vec![h]),
    ];
    let ln = |p: &str| {
        [
            (format!("{p}.LayerNorm.weight"), vec![h]),
            (format!("{p}.LayerNorm.bias"), vec![h]),
        ]
    };
    shapes.extend(ln("embeddings"));
    for l in 0..config.num_hidden_layers {
        let p = format!("encoder.layer.{l}");
        for (name, n, k) in [
            ("attention.self.query", h, h),
            ("attention.self.key", h, h),
            ("attention.self.value", h, h),
            ("attention.output.dense", h, h),
            ("intermediate.dense", i, h),
            ("output.dense", h, i),
        ] {
            shapes.push((format!("{p}.{name}.weight"), vec![n, k]));
            shapes.push((format!("{p}.{name}.bias"), vec![n]));
        }
        shapes.extend(ln(&format!("{p}.attention.output")));
        shapes.extend(ln(&format!("{p}.output")));
    }
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let data: Vec<Vec<u8>> = shapes
        .iter()
        .map(|(_, shape)| {
            let n: usize = shape.iter().product();
            let scale = 1.0 / (*shape.last().unwrap_or(&1) as f32).sqrt();
            (0..n)
                .flat_map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let unit = (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                    (unit * 2.0 * scale).to_le_bytes()
                })
                .collect()
        })
        .collect();
    let views = shapes
        .iter()
        .zip(&data)
        .map(|((name, shape), bytes)| {
            TensorView::new(Dtype::F32, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::checkpoint(dir, e.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    let path = dir.join("model.safetensors");
    safetensors::serialize_to_file(views, None, &path)
        .map_err(|e| Error::checkpoint(&path, e.to_string()))?;
    let cfg = serde_json::to_string_pretty(config)
        .map_err(|e| Error::config("(document)", e.to_string()))?;
    let cfg_path = dir.join("config.json");
    std::fs::write(&cfg_path, cfg).map_err(|e| Error::io(&cfg_path, e))
}
