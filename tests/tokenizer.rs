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
            from_left: false,
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

/// A text made to trip piecewise tokenization: runs of spaces, tabs and newlines,
/// punctuation runs, added tokens next to punctuation and spaces, accents and combining
/// marks, CJK, emoji, words longer than WordPiece's 100 characters, and a composing pair.
fn tricky_text() -> String {
    let parts = [
        "Hello, world!  The [MASK] is here.\t\tTabs\nand\r\nnewlines.",
        " [MASK][MASK] x[MASK]y (ok)...!!! «quoted» — dash",
        " café naïve e\u{301}t\u{301}e\u{301} ÅNGSTRÖM 北京欢迎你 こんにちは 🙂🙃",
        " ",
        &"a".repeat(150),
        " x=\u{338}y [SEP] [CLS]  [UNK]   don't it's 3.14 1,000,000 ",
        &"word-".repeat(40),
    ];
    parts.concat().repeat(7)
}

fn same_windows(a: &[Encoding], b: &[Encoding]) -> Result<(), String> {
    if a.len() != b.len() {
        return Err(format!("{} windows, want {}", a.len(), b.len()));
    }
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        if (&x.ids, &x.type_ids, &x.offsets, &x.word_ids, &x.tokens)
            != (&y.ids, &y.type_ids, &y.offsets, &y.word_ids, &y.tokens)
        {
            let first = (0..x.len().min(y.len()))
                .find(|&t| x.ids[t] != y.ids[t] || x.offsets[t] != y.offsets[t])
                .unwrap_or(x.len().min(y.len()));
            return Err(format!(
                "window {i} differs from token {first}: {:?} vs {:?}",
                &x.tokens[first..(first + 3).min(x.len())],
                &y.tokens[first..(first + 3).min(y.len())]
            ));
        }
    }
    Ok(())
}

/// Long texts are tokenized piece by piece (cut where no token can cross): for every
/// piece size, every encoding (whole, truncated, windowed, paired) equals the one-piece
/// encoding, and for tokenizer.json the tokenizers crate's own encoding of the whole text.
#[test]
fn piecewise_tokenization_equals_whole_text() {
    let text = tricky_text();
    let pair = "a second text, with [MASK] and more words. ".repeat(30);
    let vocab_dir = fixtures().join("cased_vocab");
    let tokenizers = [
        (
            "minilm json",
            BertTokenizer::from_dir(&minilm_dir()).unwrap(),
        ),
        ("cased vocab", BertTokenizer::from_dir(&vocab_dir).unwrap()),
    ];
    let mut crate_tk =
        tokenizers::Tokenizer::from_file(minilm_dir().join("tokenizer.json")).unwrap();
    crate_tk.with_truncation(None).unwrap();
    crate_tk.with_padding(None);
    let whole = crate_tk.encode_char_offsets(text.as_str(), true).unwrap();
    let cases = [
        (None, EncodeOptions::default()),
        (
            None,
            EncodeOptions {
                max_length: Some(200),
                ..Default::default()
            },
        ),
        (
            None,
            EncodeOptions {
                max_length: Some(64),
                stride: 16,
                overflow: true,
                ..Default::default()
            },
        ),
        (
            Some(pair.as_str()),
            EncodeOptions {
                max_length: Some(101),
                ..Default::default()
            },
        ),
        (
            Some(pair.as_str()),
            EncodeOptions {
                max_length: Some(1000),
                truncation: Truncation::OnlyFirst,
                stride: 20,
                overflow: true,
                from_left: false,
            },
        ),
    ];
    let mut failures = Vec::new();
    for (name, tk) in &tokenizers {
        for (c, &(pair, opts)) in cases.iter().enumerate() {
            let encode = |piece_bytes: usize| -> Vec<Encoding> {
                let w = tk
                    .windows_in_pieces(&text, pair, opts, piece_bytes)
                    .unwrap();
                (0..w.len()).map(|i| w.get(i).unwrap()).collect()
            };
            let reference = encode(usize::MAX);
            if *name == "minilm json" && c == 0 {
                assert_eq!(reference[0].ids, whole.get_ids(), "one piece vs the crate");
                assert_eq!(reference[0].offsets, whole.get_offsets());
                assert_eq!(reference[0].word_ids, whole.get_word_ids());
            }
            for piece_bytes in [1, 7, 50, 333, 4096] {
                if let Err(e) = same_windows(&encode(piece_bytes), &reference) {
                    failures.push(format!("{name} case {c} pieces of {piece_bytes}: {e}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Truncation from the left (TEI's `truncation_direction: Left`) keeps what the tokenizers
/// crate keeps with `TruncationDirection::Left`: every corpus text and pair, at several
/// lengths, longest_first and only_second.
#[test]
fn truncation_from_the_left_matches_the_tokenizers_crate() {
    use bertrt::tokenizer::{EncodeOptions, Truncation};
    use tokenizers::{TruncationDirection, TruncationParams, TruncationStrategy};
    let ours = BertTokenizer::from_dir(&minilm_dir()).unwrap();
    let mut theirs = tokenizers::Tokenizer::from_file(minilm_dir().join("tokenizer.json")).unwrap();
    theirs.with_padding(None);
    let mut failures = Vec::new();
    let mut cut = 0;
    for (id, (text, pair)) in corpus() {
        // An empty pair is no pair (as transformers has it; the crate adds a [SEP]).
        let pair = pair.filter(|p| !p.is_empty());
        for max_length in [5, 9, 16, 33] {
            for (ours_t, strategy) in [
                (Truncation::LongestFirst, TruncationStrategy::LongestFirst),
                (Truncation::OnlySecond, TruncationStrategy::OnlySecond),
            ] {
                if pair.is_none() && ours_t == Truncation::OnlySecond {
                    continue;
                }
                theirs
                    .with_truncation(Some(TruncationParams {
                        direction: TruncationDirection::Left,
                        max_length,
                        strategy,
                        stride: 0,
                    }))
                    .unwrap();
                let want = match &pair {
                    Some(p) => theirs.encode_char_offsets((text.as_str(), p.as_str()), true),
                    None => theirs.encode_char_offsets(text.as_str(), true),
                };
                let opts = EncodeOptions {
                    max_length: Some(max_length),
                    truncation: ours_t,
                    from_left: true,
                    ..Default::default()
                };
                let got = ours
                    .encode(&text, pair.as_deref(), opts)
                    .map(|mut v| v.remove(0));
                match (got, want) {
                    (Ok(g), Ok(w)) => {
                        cut += usize::from(g.truncated);
                        if g.ids != w.get_ids() || g.type_ids != w.get_type_ids() {
                            failures.push(format!(
                                "{id} max {max_length} {ours_t:?}: {:?} vs {:?}",
                                g.ids,
                                w.get_ids()
                            ));
                        }
                    }
                    // Both refuse (a pair that cannot fit); anything else is a difference.
                    (Err(_), Err(_)) => {}
                    (g, w) => {
                        failures.push(format!("{id} max {max_length} {ours_t:?}: {g:?} vs {w:?}"))
                    }
                }
            }
        }
    }
    assert!(cut > 100, "only {cut} encodings were cut");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures[..failures.len().min(10)].join("\n")
    );
}
