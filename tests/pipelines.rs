//! Every task against the Hugging Face pipeline's own output on the same checkpoint
//! (tests/fixtures/pipelines, made by tools/gen_pipeline_fixtures.py): labels, words,
//! tokens and offsets equal; scores within 1e-4; embeddings of all-MiniLM-L6-v2 at
//! cosine >= 0.9999 to sentence-transformers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bertrt::pipelines::{Pipeline, Task, TaskOptions, TextModel};
use bertrt::Device;
use serde_json::Value;

const SCORE_TOL: f64 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pipelines")
        .join(name)
}

fn cases(name: &str) -> (Task, Vec<Value>) {
    cases_in(name, "cases.json")
}

fn cases_in(name: &str, file: &str) -> (Task, Vec<Value>) {
    let path = fixture(name).join(file);
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let task = v["task"].as_str().unwrap().parse().unwrap();
    (task, v["cases"].as_array().unwrap().clone())
}

/// Equal structure; numbers within SCORE_TOL (integers exactly); strings equal.
fn same(got: &Value, want: &Value, path: &str, out: &mut Vec<String>) {
    match (got, want) {
        (Value::Number(g), Value::Number(w)) => {
            let (g, w) = (g.as_f64().unwrap(), w.as_f64().unwrap());
            let exact = want.is_i64() || want.is_u64();
            if (exact && g != w) || (!exact && (g - w).abs() > SCORE_TOL) {
                out.push(format!("{path}: got {g}, want {w}"));
            }
        }
        (Value::Array(g), Value::Array(w)) => {
            if g.len() != w.len() {
                out.push(format!(
                    "{path}: {} items, want {}\n  got  {got}\n  want {want}",
                    g.len(),
                    w.len()
                ));
                return;
            }
            for (i, (a, b)) in g.iter().zip(w).enumerate() {
                same(a, b, &format!("{path}[{i}]"), out);
            }
        }
        (Value::Object(g), Value::Object(w)) => {
            for (k, b) in w {
                match g.get(k) {
                    Some(a) => same(a, b, &format!("{path}.{k}"), out),
                    None => out.push(format!("{path}: missing key {k}")),
                }
            }
        }
        (g, w) if g == w => {}
        (g, w) => out.push(format!("{path}: got {g}, want {w}")),
    }
}

/// The pipeline of `task` with a case's options over one shared model.
fn pipeline(text: &Arc<TextModel>, task: Task, options: &Value) -> Pipeline {
    let (options, input) = TaskOptions::from_json(task, options)
        .unwrap_or_else(|e| panic!("{task:?} options {options}: {e}"));
    Pipeline::new(Arc::clone(text), options, input).unwrap()
}

/// Runs every case of a pipeline fixture: the checkpoint is loaded once, and each case
/// gets a pipeline with its options over it.
fn check(name: &str, dir: &Path, adapt: impl Fn(&Value, &Value) -> (Value, Value)) {
    check_cases(name, cases(name), dir, adapt)
}

fn check_cases(
    name: &str,
    (task, cases): (Task, Vec<Value>),
    dir: &Path,
    adapt: impl Fn(&Value, &Value) -> (Value, Value),
) {
    let text = Arc::new(TextModel::load(dir, None, Device::Cpu).unwrap());
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let pipeline = pipeline(&text, task, &case["options"]);
        let mut input = case["input"].clone();
        if let Some(prompt) = input.as_object_mut().and_then(|o| o.remove("prompt")) {
            if task == Task::Generate {
                input["text"] = prompt;
            } else {
                input["prompt"] = prompt;
            }
        }
        let answer = match pipeline.run(std::slice::from_ref(&input)).remove(0) {
            Ok(a) => a,
            Err(e) => {
                failures.push(format!("{name}[{i}] {input}: {e}"));
                continue;
            }
        };
        if case
            .get("warnings")
            .is_some_and(|w| w.as_array().is_some_and(|w| !w.is_empty()))
            && answer.warnings.is_empty()
        {
            failures.push(format!("{name}[{i}]: transformers warned, bertrt did not"));
        }
        let (got, want) = adapt(&answer.value(), &case["expected"]);
        same(
            &got,
            &want,
            &format!("{name}[{i}] {}", case["options"]),
            &mut failures,
        );
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn as_is(got: &Value, want: &Value) -> (Value, Value) {
    (got.clone(), want.clone())
}

#[test]
fn fill_mask() {
    check("fill_mask", &fixture("fill_mask"), as_is);
}

/// 120 sentences with apostrophes, contractions, punctuation and numbers: `sequence` and
/// `token_str` as transformers decodes them (whole-text clean-up of spaces).
#[test]
fn fill_mask_decodes_as_transformers() {
    let cases = cases_in("fill_mask", "decode_cases.json");
    assert!(cases.1.len() >= 100);
    check_cases("fill_mask/decode", cases, &fixture("fill_mask"), as_is);
}

#[test]
fn text_classification() {
    // transformers returns a bare dict for a pair without top_k; bertrt always a list.
    let listed = |g: &Value, w: &Value| match w {
        Value::Object(_) => (g.clone(), Value::Array(vec![w.clone()])),
        _ => (g.clone(), w.clone()),
    };
    for name in ["text_cls_single", "text_cls_multi", "text_cls_regression"] {
        check(name, &fixture(name), listed);
    }
}

#[test]
fn token_classification() {
    check("token_cls", &fixture("token_cls"), as_is);
}

#[test]
fn question_answering() {
    check("qa", &fixture("qa"), as_is);
}

#[test]
fn next_sentence() {
    check("nsp", &fixture("nsp"), as_is);
}

#[test]
fn multiple_choice() {
    check("multiple_choice", &fixture("multiple_choice"), as_is);
}

#[test]
fn generate() {
    check("generate", &fixture("generate"), as_is);
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let n = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (n(a) * n(b))
}

fn floats(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(items) => items.iter().flat_map(floats).collect(),
        Value::Number(n) => vec![n.as_f64().unwrap()],
        other => panic!("not numeric: {other}"),
    }
}

#[test]
fn embed_minilm_matches_sentence_transformers() {
    let dir = bertrt::fetch::default_model().expect("default model");
    let (task, cases) = cases("embed_minilm");
    assert_eq!(task, Task::Embed);
    let text = Arc::new(TextModel::load(&dir, None, Device::Cpu).unwrap());
    for (i, case) in cases.iter().enumerate() {
        let float64 = case["dtype"] == "float64";
        let pipeline = pipeline(&text, task, &case["options"]);
        let result = pipeline.run(std::slice::from_ref(&case["input"])).remove(0);
        // An empty text too: the embedding of "[CLS] [SEP]", as sentence-transformers.
        let answer = result.unwrap().value();
        let got = floats(
            answer
                .get("embedding")
                .or(answer.get("last_hidden_state"))
                .unwrap(),
        );
        let want = floats(&case["expected"]);
        assert_eq!(got.len(), want.len(), "case {i}");
        if float64 {
            let d = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(d <= 1e-4, "case {i}: max |d| = {d}");
        } else {
            let c = cosine(&got, &want);
            assert!(c >= 0.9999, "case {i}: cosine {c}");
        }
    }
}

/// One loaded checkpoint serves the pipelines of every task its heads allow (a server's
/// embed and NER from one load), with the answers of pipelines loaded on their own; a
/// task whose head has no weights is refused when the pipeline is made.
#[test]
fn one_text_model_serves_several_tasks() {
    let dir = fixture("token_cls");
    let text = Arc::new(TextModel::load(&dir, None, Device::Cpu).unwrap());
    let input = serde_json::json!({"text": "john smith lives in paris."});
    for task in [Task::TokenClassification, Task::Embed] {
        let shared = pipeline(&text, task, &Value::Null);
        let alone = Pipeline::load(
            &dir,
            TaskOptions::defaults(task),
            Device::Cpu,
            Default::default(),
        )
        .unwrap();
        let (a, b) = (
            shared.run(std::slice::from_ref(&input)).remove(0).unwrap(),
            alone.run(std::slice::from_ref(&input)).remove(0).unwrap(),
        );
        assert_eq!(a, b, "{task:?}");
    }
    let refused = Pipeline::new(
        Arc::clone(&text),
        TaskOptions::defaults(Task::FillMask),
        Default::default(),
    );
    let err = refused.err().expect("token_cls has no masked-LM head");
    assert!(matches!(err, bertrt::Error::Unsupported(_)), "{err:?}");
    assert!(err.to_string().contains("BertForMaskedLM"), "{err}");
}

/// SPLADE from the masked-LM head against log1p(relu(logits)) max-pooled in float64 by
/// the generator (an entry missing on one side counts as 0).
#[test]
fn embed_sparse_matches_splade_in_float64() {
    let path = fixture("fill_mask").join("sparse_cases.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let text = Arc::new(TextModel::load(&fixture("fill_mask"), None, Device::Cpu).unwrap());
    let p = pipeline(&text, Task::SparseEmbed, &Value::Null);
    let entries = |v: &Value| -> std::collections::BTreeMap<u64, f64> {
        v["sparse"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["index"].as_u64().unwrap(), e["value"].as_f64().unwrap()))
            .collect()
    };
    for case in v["cases"].as_array().unwrap() {
        let got = entries(
            &p.run(std::slice::from_ref(&case["input"]))
                .remove(0)
                .unwrap()
                .value(),
        );
        let want = entries(&case["expected"]);
        assert!(want.len() > 10, "{}", case["input"]);
        for i in got.keys().chain(want.keys()) {
            let (g, w) = (
                got.get(i).copied().unwrap_or(0.0),
                want.get(i).copied().unwrap_or(0.0),
            );
            assert!(
                (g - w).abs() <= SCORE_TOL,
                "{} [{i}]: {g} vs {w}",
                case["input"]
            );
        }
    }
}
