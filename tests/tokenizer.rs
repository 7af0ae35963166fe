//! Tokenizer parity with transformers' BertTokenizerFast on a committed corpus of 245
//! strings and 45 pairs (tests/fixtures/tokenizer, made by tools/gen_pipeline_fixtures.py):
//! ids, type ids and character offsets equal, with and without truncation and windows,
//! for a tokenizer.json model, the same model from vocab.txt only, and a cased vocab.txt.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bertrt::tokenizer::{BertTokenizer, EncodeOptions, Encoding, Truncation};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer")
}

fn read(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// (text, pair) by corpus id.
fn corpus() -> HashMap<String, (String, Option<String>)> {
    let c = read(&fixtures().join("corpus.json"));
    let mut out = HashMap::new();
    for key in ["strings", "pairs"] {
        for e in c[key].as_array().unwrap() {
            out.insert(
                e["id"].as_str().unwrap().to_string(),
                (
                    e["text"].as_str().unwrap().to_string(),
                    e["text_pair"].as_str().map(str::to_string),
                ),
            );
        }
    }
    out
}

fn window_json(e: &Encoding) -> Value {
    serde_json::json!({
        "input_ids": e.ids,
        "token_type_ids": e.type_ids,
        "offsets": e.offsets.iter().map(|&(a, b)| vec![a, b]).collect::<Vec<_>>(),
    })
}

fn check(tokenizer: &BertTokenizer, expected: &str) {
    let corpus = corpus();
    let exp = read(&fixtures().join(expected));
    let entries = exp["entries"].as_array().unwrap();
    assert!(
        entries.len() >= 300,
        "{expected}: only {} entries",
        entries.len()
    );
    let mut failures = Vec::new();
    for entry in entries {
        let (text, pair) = &corpus[entry["id"].as_str().unwrap()];
        let args = &entry["args"];
        let truncation = match args["truncation"].as_str() {
            Some("only_first") => Truncation::OnlyFirst,
            Some("only_second") => Truncation::OnlySecond,
            _ => Truncation::LongestFirst,
        };
        let opts = EncodeOptions {
            max_length: args["max_length"].as_u64().map(|m| m as usize),
            truncation,
            stride: args["stride"].as_u64().unwrap_or(0) as usize,
            overflow: args["return_overflowing_tokens"] == true,
        };
        let got = match tokenizer.encode(text, pair.as_deref(), opts) {
            Ok(windows) => windows,
            Err(e) => {
                failures.push(format!("{}: {e}", entry["case"]));
                continue;
            }
        };
        let want: Vec<Value> = match entry.get("windows") {
            Some(w) => w.as_array().unwrap().clone(),
            None => vec![entry.clone()],
        };
        if got.len() != want.len() {
            failures.push(format!(
                "{}: {} windows, want {}",
                entry["case"],
                got.len(),
                want.len()
            ));
            continue;
        }
        for (g, w) in got.iter().zip(&want) {
            let g = window_json(g);
            for key in ["input_ids", "token_type_ids", "offsets"] {
                if g[key] != w[key] {
                    failures.push(format!(
                        "{} {key}:\n  got  {}\n  want {}",
                        entry["case"], g[key], w[key]
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{expected}: {} mismatches:\n{}",
        failures.len(),
        failures
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn minilm_dir() -> PathBuf {
    bertrt::fetch::default_model().expect("default model")
}

#[test]
fn minilm_tokenizer_json_matches_transformers() {
    check(
        &BertTokenizer::from_dir(&minilm_dir()).unwrap(),
        "expected_minilm_json.json",
    );
}

#[test]
fn minilm_vocab_txt_matches_transformers() {
    let dir = std::env::temp_dir().join(format!("bertrt-vocab-only-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in [
        "vocab.txt",
        "tokenizer_config.json",
        "special_tokens_map.json",
    ] {
        std::fs::copy(minilm_dir().join(f), dir.join(f)).unwrap();
    }
    let tokenizer = BertTokenizer::from_dir(&dir).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    check(&tokenizer, "expected_minilm_vocab.json");
}

#[test]
fn cased_vocab_txt_matches_transformers() {
    check(
        &BertTokenizer::from_dir(&fixtures().join("cased_vocab")).unwrap(),
        "expected_cased_vocab.json",
    );
}

#[test]
fn missing_tokenizer_is_a_clear_error() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bert_base_tiny");
    let err = BertTokenizer::from_dir(&dir).err().unwrap().to_string();
    assert!(err.contains("tokenizer.json or vocab.txt"), "{err}");
}
