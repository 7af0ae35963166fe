//! `bertrt serve` over HTTP on 127.0.0.1: every route answers what `bertrt run` answers
//! on the same inputs (the same floats; TEI's scores are those floats as f32), errors
//! carry TEI's status codes and bodies, concurrent clients get their own answers, a
//! full server refuses at once with 429, and SIGTERM lets the requests in flight finish.

mod common;
#[path = "common/server.rs"]
mod server;

use std::path::PathBuf;

use base64::Engine;
use common::cli::run;
use serde_json::{json, Value};
use server::Server;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pipelines")
        .join(name)
}

fn minilm() -> String {
    bertrt::fetch::default_model()
        .expect("default model")
        .display()
        .to_string()
}

/// `bertrt run` on these lines: one answer per line.
fn run_lines(args: &[&str], lines: &[Value]) -> Vec<Value> {
    let input: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let (code, out, err) = run(args, input.as_bytes());
    assert_eq!(code, 0, "bertrt {args:?}: {err}");
    out
}

/// `bertrt run --task embed --model MODEL --normalize true EXTRA...` on these lines.
fn run_embed(model: &str, extra: &[&str], lines: &[Value]) -> Vec<Value> {
    let mut args = vec![
        "run",
        "--task",
        "embed",
        "--model",
        model,
        "--normalize",
        "true",
    ];
    args.extend(extra);
    run_lines(&args, lines)
}

/// A score as TEI writes it: the f64 rounded to f32, written in its shortest form.
fn f32_of(v: &Value) -> f64 {
    (v.as_f64().unwrap() as f32).to_string().parse().unwrap()
}

/// Lists of floats equal within `tol` (the same shape), else where they differ most.
fn close(got: &Value, want: &Value, tol: f64) -> Result<(), String> {
    match (got, want) {
        (Value::Array(g), Value::Array(w)) if g.len() == w.len() => {
            for (i, (a, b)) in g.iter().zip(w).enumerate() {
                close(a, b, tol).map_err(|e| format!("[{i}]{e}"))?;
            }
            Ok(())
        }
        (Value::Number(a), Value::Number(b)) => {
            let d = (a.as_f64().unwrap() - b.as_f64().unwrap()).abs();
            match d <= tol {
                true => Ok(()),
                false => Err(format!(": {a} vs {b}")),
            }
        }
        (g, w) => Err(format!(
            ": shapes differ: {:.200} vs {:.200}",
            g.to_string(),
            w.to_string()
        )),
    }
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn tei_routes_answer_as_bertrt_run() {
    let minilm = minilm();
    let cls = fixture("text_cls_single").display().to_string();
    let server = Server::start(&[
        "--model",
        &format!("minilm={minilm}"),
        "--model",
        &format!("cls={cls}"),
    ]);
    let texts = [
        "The quick brown fox.",
        "A second, longer sentence about search.",
        "",
    ];
    let lines: Vec<Value> = texts.iter().map(|t| json!({ "text": t })).collect();

    // /embed: the default model (the first), normalised by default.
    let want: Vec<Value> = run_embed(&minilm, &[], &lines)
        .into_iter()
        .map(|a| a["embedding"].clone())
        .collect();
    let r = server.post("/embed", &json!({ "inputs": texts }));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), Value::Array(want.clone()));
    for h in [
        "x-compute-time",
        "x-tokenization-time",
        "x-queue-time",
        "x-inference-time",
    ] {
        assert!(r.header(h).is_some(), "no {h}: {:?}", r.headers);
    }
    assert!(
        r.header("x-compute-tokens")
            .unwrap()
            .parse::<usize>()
            .unwrap()
            > 10
    );
    let one = server.post("/embed", &json!({ "inputs": texts[0] }));
    assert_eq!(one.json(), json!([want[0]]));

    // OpenAI's route: the same floats, as floats or base64 f32.
    let r = server.post(
        "/v1/embeddings",
        &json!({"input": texts, "model": "minilm"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let body = r.json();
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], "minilm");
    for (i, w) in want.iter().enumerate() {
        assert_eq!(body["data"][i]["embedding"], *w);
        assert_eq!(body["data"][i]["index"], i);
    }
    assert!(body["usage"]["prompt_tokens"].as_u64().unwrap() > 10);
    let r = server.post(
        "/v1/embeddings",
        &json!({"input": texts, "model": "minilm", "encoding_format": "base64"}),
    );
    for (i, w) in want.iter().enumerate() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(r.json()["data"][i]["embedding"].as_str().unwrap())
            .unwrap();
        let decoded: Vec<f64> = bytes
            .chunks(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
            .collect();
        let want: Vec<f64> = floats(w).iter().map(|&x| x as f32 as f64).collect();
        assert_eq!(decoded, want);
    }

    // dimensions: the first values, normalised after the cut.
    let r = server.post("/embed", &json!({"inputs": texts[1], "dimensions": 8}));
    let cut = floats(&r.json()[0]);
    assert_eq!(cut.len(), 8);
    let norm: f64 = cut.iter().map(|x| x * x).sum::<f64>().sqrt();
    assert!((norm - 1.0).abs() < 1e-6, "{norm}");
    let unnormalised = run_lines(
        &[
            "run",
            "--task",
            "embed",
            "--model",
            &minilm,
            "--normalize",
            "false",
        ],
        &lines[1..2],
    );
    let full = floats(&unnormalised[0]["embedding"]);
    let n8: f64 = full[..8].iter().map(|x| x * x).sum::<f64>().sqrt();
    for (c, f) in cut.iter().zip(&full) {
        assert!((c - f / n8).abs() < 1e-6, "{c} vs {}", f / n8);
    }

    // truncation_direction Left keeps the end of a long input, as `bertrt run` does.
    let long = format!("{} the end.", "many words before ".repeat(100));
    let kept_end = run_embed(
        &minilm,
        &["--truncation-direction", "left"],
        &[json!({ "text": long })],
    );
    let r = server.post(
        "/embed",
        &json!({"inputs": long, "truncation_direction": "Left"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), json!([kept_end[0]["embedding"]]));
    let right = server.post("/embed", &json!({ "inputs": long })).json();
    assert_ne!(
        right,
        r.json(),
        "left and right truncation kept the same tokens"
    );

    // /embed_all: every token's state.
    let want_all = run_lines(
        &[
            "run",
            "--task",
            "embed",
            "--model",
            &minilm,
            "--pooling",
            "none",
        ],
        &lines[..1],
    );
    let r = server.post("/embed_all", &json!({ "inputs": texts[0] }));
    assert_eq!(r.json(), json!([want_all[0]["last_hidden_state"]]));

    // /similarity: cosine of the embeddings.
    let r = server.post(
        "/similarity",
        &json!({"inputs": {"source_sentence": texts[0], "sentences": [texts[0], texts[1]]}}),
    );
    let sims = floats(&r.json());
    let (a, b) = (floats(&want[0]), floats(&want[1]));
    let dot: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
    assert!(
        (sims[0] - 1.0).abs() < 1e-6 && (sims[1] - dot).abs() < 1e-6,
        "{sims:?} {dot}"
    );

    // /predict on the classifier: every label, softmax, best first; f32 scores.
    let pairs = json!([["i love this movie."], ["a pair", "of texts"]]);
    let pair_lines = vec![
        json!({"text": "i love this movie."}),
        json!({"text": "a pair", "text_pair": "of texts"}),
    ];
    let classify_lines = |function: &str, lines: &[Value]| {
        let args = [
            "run",
            "--task",
            "text-classification",
            "--model",
            &cls,
            "--top-k",
            "all",
        ];
        let mut args = args.to_vec();
        args.extend(["--function-to-apply", function]);
        run_lines(&args, lines)
    };
    let classify = |function: &str| classify_lines(function, &pair_lines);
    let as_tei = |answers: &[Value]| -> Value {
        answers
            .iter()
            .map(|a| {
                a.as_array()
                    .unwrap()
                    .iter()
                    .map(|p| json!({"label": p["label"], "score": f32_of(&p["score"])}))
                    .collect::<Value>()
            })
            .collect()
    };
    let r = server.post("/models/cls/predict", &json!({ "inputs": pairs }));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), as_tei(&classify("softmax")));
    let r = server.post(
        "/models/cls/predict",
        &json!({"inputs": "i love this movie.", "raw_scores": true}),
    );
    assert_eq!(r.json(), as_tei(&classify("none")[..1])[0]);

    // /rerank: (query, text) pairs scored by the first label, best first.
    let query = "a pair";
    let docs = ["of texts", "i love this movie.", "something else"];
    let rerank_lines: Vec<Value> = docs
        .iter()
        .map(|d| json!({"text": query, "text_pair": d}))
        .collect();
    let scored = classify_lines("softmax", &rerank_lines);
    let mut want_ranks: Vec<(usize, f64)> = scored
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let s = a
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["label"] == "neg")
                .unwrap();
            (i, f32_of(&s["score"]))
        })
        .collect();
    want_ranks.sort_by(|x, y| y.1.total_cmp(&x.1));
    let r = server.post(
        "/models/cls/rerank",
        &json!({"query": query, "texts": docs, "return_text": true}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let got = r.json();
    for (k, (i, s)) in want_ranks.iter().enumerate() {
        assert_eq!(got[k]["index"], *i);
        assert_eq!(got[k]["score"].as_f64().unwrap(), *s);
        assert_eq!(got[k]["text"], docs[*i]);
    }

    // /tokenize and /decode: the tokenizer's ids and byte offsets, and back.
    let tokenizer = bertrt::tokenizer::BertTokenizer::from_dir(minilm.as_ref()).unwrap();
    let text = "Héllo wörld";
    let enc = tokenizer
        .encode(text, None, Default::default())
        .unwrap()
        .remove(0);
    let r = server.post("/tokenize", &json!({ "inputs": text }));
    let tokens = r.json()[0].as_array().unwrap().clone();
    let ids: Vec<u32> = tokens
        .iter()
        .map(|t| t["id"].as_u64().unwrap() as u32)
        .collect();
    assert_eq!(ids, enc.ids);
    assert_eq!(tokens[0]["special"], true);
    assert_eq!(tokens[0]["start"], Value::Null);
    for t in &tokens[1..tokens.len() - 1] {
        let (s, e) = (
            t["start"].as_u64().unwrap() as usize,
            t["stop"].as_u64().unwrap() as usize,
        );
        assert_eq!(t["text"], text[s..e], "{t}");
    }
    let r = server.post("/decode", &json!({ "ids": ids }));
    assert_eq!(r.json(), json!([tokenizer.decode(&ids, true).unwrap()]));
}

/// Each fixture's cases through its task route, against the library's pipeline (what
/// `bertrt run` calls) and, for the cases without options, against `bertrt run` itself.
#[test]
fn task_routes_answer_as_bertrt_run() {
    let names = [
        "fill_mask",
        "token_cls",
        "qa",
        "nsp",
        "multiple_choice",
        "generate",
        "text_cls_multi",
    ];
    let specs: Vec<String> = names
        .iter()
        .map(|n| format!("{n}={}", fixture(n).display()))
        .collect();
    let mut args = Vec::new();
    for s in &specs {
        args.extend(["--model", s.as_str()]);
    }
    let server = Server::start(&args);
    for name in names {
        let dir = fixture(name);
        let cases: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap())
                .unwrap();
        let task = cases["task"].as_str().unwrap().to_string();
        let mut plain = Vec::new();
        for case in cases["cases"].as_array().unwrap() {
            let mut input = case["input"].clone();
            if let Some(prompt) = input.as_object_mut().and_then(|o| o.remove("prompt")) {
                let field = if task == "generate" { "text" } else { "prompt" };
                input[field] = prompt;
            }
            let options = case["options"].clone();
            let r = server.post(
                &format!("/models/{name}/{task}"),
                &json!({"inputs": input, "parameters": options}),
            );
            let text = bertrt::pipelines::TextModel::load(&dir, None, bertrt::Device::Cpu).unwrap();
            let (o, i) =
                bertrt::pipelines::TaskOptions::from_json(task.parse().unwrap(), &options).unwrap();
            let pipeline =
                bertrt::pipelines::Pipeline::new(std::sync::Arc::new(text), o, i).unwrap();
            match pipeline.run(std::slice::from_ref(&input)).remove(0) {
                Ok(a) => {
                    assert_eq!(r.status, 200, "{name} {input}: {}", r.body);
                    assert_eq!(r.json(), a.value(), "{name} {input} {options}");
                }
                Err(e) => {
                    let status = match e {
                        bertrt::Error::Input(_) => 422,
                        _ => 424,
                    };
                    assert_eq!(r.status, status, "{name} {input}: {}", r.body);
                    assert_eq!(r.json()["error"], e.to_string());
                }
            }
            if options.as_object().is_none_or(|o| o.is_empty()) {
                plain.push(input);
            }
        }
        // The option-less cases: as lines through `bertrt run`, and as one list.
        if plain.is_empty() {
            continue;
        }
        let want = run_lines(
            &[
                "run",
                "--task",
                &task,
                "--model",
                &dir.display().to_string(),
            ],
            &plain,
        );
        let r = server.post(
            &format!("/models/{name}/{task}"),
            &Value::Array(plain.clone()),
        );
        assert_eq!(r.status, 200, "{name}: {}", r.body);
        assert_eq!(r.json(), Value::Array(want), "{name}");
    }
    // /embed_sparse: TEI's shape of the embed-sparse task's answers.
    let texts = ["paris is the capital of france.", "the cat"];
    let lines: Vec<Value> = texts.iter().map(|t| json!({ "text": t })).collect();
    let dir = fixture("fill_mask").display().to_string();
    let want: Vec<Value> = run_lines(&["run", "--task", "embed-sparse", "--model", &dir], &lines)
        .into_iter()
        .map(|a| a["sparse"].clone())
        .collect();
    let r = server.post(
        "/models/fill_mask/embed_sparse",
        &json!({ "inputs": texts }),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), Value::Array(want));
    // A failed input in a list holds its error; the others are answered.
    let r = server.post(
        "/models/fill_mask/fill-mask",
        &json!([{"text": "paris is the [MASK] of france."}, {"text": "no mask here"}]),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let list = r.json();
    assert!(list[0].is_array(), "{list}");
    assert!(
        list[1]["error"].as_str().unwrap().contains("no mask token"),
        "{list}"
    );
    // A plain string stands for {"text": ...} (the Inference API's shape).
    let r = server.post(
        "/models/fill_mask/fill-mask",
        &json!({"inputs": "paris is the [MASK] of france.", "parameters": {"top_k": 2}}),
    );
    assert_eq!(r.json().as_array().unwrap().len(), 2, "{}", r.body);
}

#[test]
fn errors_have_tei_status_codes_and_bodies() {
    let emb = fixture("token_cls").display().to_string();
    let server = Server::start(&[
        "--model",
        &emb,
        "--payload-limit",
        "2000",
        "--max-client-batch-size",
        "4",
    ]);
    let check = |path: &str, body: &str, status: u16, kind: &str| {
        let r = server.post_raw(path, body, None);
        assert_eq!(r.status, status, "{path} {body}: {}", r.body);
        let j = r.json();
        assert_eq!(j["error_type"], kind, "{path} {body}: {j}");
        assert!(j["error"].as_str().is_some_and(|m| !m.is_empty()), "{j}");
    };
    check("/embed", r#"{"inputs": []}"#, 400, "Empty");
    check("/embed", "", 400, "Empty");
    check(
        "/embed",
        &format!(r#"{{"inputs": "{}"}}"#, "a ".repeat(2000)),
        413,
        "Validation",
    );
    check(
        "/embed",
        r#"{"inputs": ["a", "b", "c", "d", "e"]}"#,
        422,
        "Validation",
    );
    check("/embed", "{not json", 422, "Validation");
    check("/embed", r#"{"inputs": 5}"#, 422, "Validation");
    check(
        "/embed",
        r#"{"inputs": "x", "dimensions": 0}"#,
        422,
        "Validation",
    );
    check(
        "/embed",
        r#"{"inputs": "x", "prompt_name": "query"}"#,
        422,
        "Validation",
    );
    let long = "word ".repeat(300);
    check(
        "/embed",
        &format!(r#"{{"inputs": "{long}", "truncate": false}}"#),
        422,
        "Validation",
    );
    let r = server.post("/embed", &json!({ "inputs": long }));
    assert_eq!(r.status, 200, "auto-truncate is on by default: {}", r.body);
    check("/predict", r#"{"inputs": "x"}"#, 424, "Backend");
    check(
        "/rerank",
        r#"{"query": "q", "texts": ["a"]}"#,
        424,
        "Backend",
    );
    check("/rerank", r#"{"query": "q", "texts": []}"#, 400, "Empty");
    check("/fill-mask", r#"{"text": "a [MASK]"}"#, 424, "Backend");
    check("/embed_sparse", r#"{"inputs": "x"}"#, 424, "Backend"); // no MLM head
    check(
        "/models/nope/embed",
        r#"{"inputs": "x"}"#,
        404,
        "Validation",
    );
    check(
        "/token-classification",
        r#"{"inputs": "x", "parameters": {"top_k": 1}}"#,
        422,
        "Validation",
    );
    let r = server.post("/v1/embeddings", &json!({"input": []}));
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        r.json()["error"]["code"],
        400,
        "OpenAI's error shape: {}",
        r.body
    );
    assert_eq!(server.get("/health").status, 200);
    let info = server.get("/info").json();
    assert_eq!(info["max_client_batch_size"], 4);
    assert!(info["model_type"]["embedding"].is_object(), "{info}");

    // Every route of the OpenAPI description is served (no 404 from the fallback).
    let spec = server.get("/openapi.json").json();
    for (path, ops) in spec["paths"].as_object().unwrap() {
        let path = path.replace("{name}", "token_cls");
        if ops.get("get").is_some() {
            assert_eq!(server.get(&path).status, 200, "GET {path}");
        }
        if ops.get("post").is_some() {
            let r = server.post_raw(&path, "{}", None);
            assert_ne!(r.status, 404, "POST {path}: {}", r.body);
            assert!(r.status < 500 || r.status == 503, "POST {path}: {}", r.body);
        }
    }

    let locked = Server::start(&["--model", &emb, "--api-key", "s3cret"]);
    let body = r#"{"inputs": "x"}"#;
    assert_eq!(locked.post_raw("/embed", body, None).status, 401);
    assert_eq!(locked.post_raw("/embed", body, Some("wrong")).status, 401);
    assert_eq!(locked.post_raw("/embed", body, Some("s3cret")).status, 200);
    assert_eq!(locked.get("/health").status, 200, "health needs no key");
}

/// Many clients at once, each with its own texts: every answer is its own, equal to the
/// answer the same text gets alone.
#[test]
fn concurrent_clients_get_their_own_answers() {
    let server = Server::start(&["--model", &minilm()]);
    let text = |c: usize, i: usize| {
        format!(
            "client {c} asks question number {i} {}",
            "x ".repeat(c * 3 + i)
        )
    };
    let alone: Vec<Vec<Value>> = (0..8)
        .map(|c| {
            (0..6)
                .map(|i| {
                    server
                        .post("/embed", &json!({ "inputs": text(c, i) }))
                        .json()[0]
                        .clone()
                })
                .collect()
        })
        .collect();
    std::thread::scope(|s| {
        for (c, want) in alone.iter().enumerate() {
            let server = &server;
            s.spawn(move || {
                for _ in 0..3 {
                    let texts: Vec<String> = (0..6).map(|i| text(c, i)).collect();
                    let r = server.post("/embed", &json!({ "inputs": texts }));
                    assert_eq!(r.status, 200, "{}", r.body);
                    // Batched with other clients' texts: the same within float rounding.
                    if let Err(e) = close(&r.json(), &Value::Array(want.clone()), 1e-5) {
                        panic!("client {c}: {e}");
                    }
                }
            });
        }
    });
    let metrics = server.get("/metrics").body;
    for name in [
        "bertrt_requests_total",
        "bertrt_batch_size_bucket",
        "bertrt_request_queue_duration_seconds",
    ] {
        assert!(metrics.contains(name), "no {name} in /metrics:\n{metrics}");
    }
}

/// With two permits, 50 requests at once each get 200 or 429, and none hangs.
#[test]
fn a_full_server_answers_429_at_once() {
    let server = Server::start(&["--model", &minilm(), "--max-concurrent-requests", "2"]);
    let long = "a longer text to keep the model busy for a while ".repeat(8);
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..50)
            .map(|_| {
                let (server, long) = (&server, &long);
                s.spawn(move || server.post("/embed", &json!({ "inputs": long })).status)
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        statuses.iter().all(|&s| s == 200 || s == 429),
        "{statuses:?}"
    );
    assert!(statuses.contains(&200), "{statuses:?}");
    let busy = server.post_raw("/embed", r#"{"inputs": ["a", "b", "c"]}"#, None);
    assert_eq!(
        busy.status, 429,
        "three inputs never fit two permits: {}",
        busy.body
    );
    assert_eq!(busy.json()["error_type"], "Overloaded");
}

/// SIGTERM with requests in flight: they finish with 200 and the server exits 0.
#[test]
fn sigterm_lets_requests_in_flight_finish() {
    let mut server = Server::start(&["--model", &minilm()]);
    let texts: Vec<String> = (0..32)
        .map(|i| format!("{i} {}", "words to embed ".repeat(40)))
        .collect();
    let pid = server.child.id() as i32;
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|_| {
                let (server, texts) = (&server, &texts);
                s.spawn(move || server.post("/embed", &json!({ "inputs": texts })).status)
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(300));
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        statuses.iter().all(|&s| s == 200),
        "{statuses:?}\n{}",
        server.log()
    );
    let status = server.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{}", server.log());
}

/// sentence-transformers prompts (config_sentence_transformers.json): `prompt_name` puts
/// the prompt's text before each input, and the default prompt applies when none is named.
#[test]
fn prompts_come_before_the_inputs() {
    let dir = std::env::temp_dir().join(format!("bertrt-serve-prompts-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(fixture("token_cls")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
    }
    let prompts =
        json!({"prompts": {"query": "query: ", "doc": "passage: "}, "default_prompt_name": "doc"});
    std::fs::write(
        dir.join("config_sentence_transformers.json"),
        prompts.to_string(),
    )
    .unwrap();
    let model = dir.display().to_string();
    let server = Server::start(&["--model", &model]);
    let embed = |body: Value| server.post("/embed", &body).json()[0].clone();
    let query = embed(json!({"inputs": "john smith", "prompt_name": "query"}));
    // `bertrt run` takes texts as they are: give it the prompt's text too.
    let lines = [
        json!({"text": "query: john smith"}),
        json!({"text": "passage: john smith"}),
    ];
    let want = run_embed(&model, &[], &lines);
    close(&query, &want[0]["embedding"], 1e-6).unwrap();
    let default = embed(json!({"inputs": "john smith"}));
    close(&default, &want[1]["embedding"], 1e-6).unwrap();
    assert_eq!(
        default,
        embed(json!({"inputs": "john smith", "prompt_name": "doc"}))
    );
    let r = server.post(
        "/embed",
        &json!({"inputs": "x", "prompt_name": "none-such"}),
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("doc, query"), "{}", r.body);
    let _ = std::fs::remove_dir_all(&dir);
}

/// While the server drains after SIGTERM, /health answers 503 (a request already on its
/// way when the signal came is still answered).
#[test]
fn health_is_503_while_draining() {
    use std::io::{Read, Write};
    let mut server = Server::start(&["--model", &fixture("token_cls").display().to_string()]);
    let addr = server.base.trim_start_matches("http://").to_string();
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    conn.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(server.child.id() as i32, libc::SIGTERM);
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    conn.write_all(b"Connection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("\"error_type\":\"Unhealthy\""), "{answer}");
    assert_eq!(server.child.wait().unwrap().code(), Some(0));
}
