//! The `bertrt run --task raw` interface, driven as users script it.

mod common;

use common::{fixtures_dir, Reference};

fn run(args: &[&str], stdin: &str) -> (i32, Vec<serde_json::Value>, String) {
    common::cli::run(args, stdin.as_bytes())
}

fn flatten(v: &serde_json::Value, out: &mut Vec<f64>) {
    match v {
        serde_json::Value::Array(items) => items.iter().for_each(|i| flatten(i, out)),
        serde_json::Value::Number(n) => out.push(n.as_f64().unwrap()),
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn raw_mode_answers_every_line_and_matches_the_reference() {
    let fixture = fixtures_dir().join("qa");
    let reference = Reference::load(&fixture);
    let ids = reference.tensors["c0.input_ids"].rows_i64();
    let mask = reference.tensors["c0.attention_mask"].rows_i64();
    let types = reference.tensors["c0.token_type_ids"].rows_i64();
    let good =
        serde_json::json!({"input_ids": ids, "attention_mask": mask, "token_type_ids": types});
    let input = format!(
        "{good}\nnot json\n{{\"input_ids\": [[1, 2], [3]]}}\n{{\"input_ids\": [[1000]]}}\n\n{{\"input_ids\": [[1, 2]], \"attention_mask\": [[1]]}}\n{{\"input_ids\": [[1]]}}\n"
    );
    let dir = fixture.to_str().unwrap();
    let (code, lines, _) = run(
        &[
            "run",
            "--model",
            dir,
            "--task",
            "raw",
            "--output-hidden-states",
            "--output-attentions",
        ],
        &input,
    );
    assert_eq!(code, 1, "a failed line makes the exit status 1");
    assert_eq!(lines.len(), 7, "one answer per line");
    for i in [1, 2, 3, 4, 5] {
        assert!(lines[i]["error"].is_string(), "line {i}: {}", lines[i]);
    }
    assert!(lines[4]["error"]
        .as_str()
        .unwrap()
        .contains("line 5 is empty"));
    assert!(lines[6]["start_logits"].is_array());
    let first = &lines[0];
    for name in ["start_logits", "end_logits"] {
        let mut got = Vec::new();
        flatten(&first[name], &mut got);
        let want = &reference.tensors[&format!("c0.{name}")];
        assert_eq!(got.len(), want.data.len());
        for (g, w) in got.iter().zip(&want.data) {
            assert!((g - w).abs() <= 1e-4, "{name}: {g} vs {w}");
        }
    }
    assert_eq!(first["hidden_states"].as_array().unwrap().len(), 3);
    assert_eq!(first["attentions"].as_array().unwrap().len(), 2);
}

#[test]
fn raw_mode_multiple_choice_and_head_override() {
    let mc = fixtures_dir().join("multiple_choice");
    let (code, lines, _) = run(
        &["run", "--model", mc.to_str().unwrap()],
        "{\"input_ids\": [[[1, 2, 3], [4, 5, 6]]]}\n{\"input_ids\": [[1, 2, 3]]}\n",
    );
    assert_eq!(code, 1);
    assert_eq!(
        lines[0]["logits"].as_array().unwrap()[0]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert!(lines[1]["error"].as_str().unwrap().contains("choices"));

    // The pretraining checkpoint read as a plain BertModel by class name.
    let pt = fixtures_dir().join("pretraining");
    let (code, lines, _) = run(
        &[
            "run",
            "--model",
            pt.to_str().unwrap(),
            "--head",
            "BertModel",
        ],
        "{\"input_ids\": [[1, 2, 3]]}\n",
    );
    assert_eq!(code, 0);
    assert!(lines[0]["last_hidden_state"].is_array() && lines[0]["pooler_output"].is_array());
}

#[test]
fn setup_errors_exit_2_with_a_message() {
    let tiny = fixtures_dir().join("bert_base_tiny");
    let tiny = tiny.to_str().unwrap();
    for (args, needle) in [
        (
            vec!["run", "--model", tiny, "--head", "gpt"],
            "unknown head",
        ),
        (
            vec!["run", "--model", tiny, "--device", "tpu"],
            "unknown device",
        ),
        (
            vec!["run", "--model", tiny, "--task", "summarize"],
            "unknown task",
        ),
        (vec!["run", "--model", "/nonexistent/dir"], "not found"),
        (
            vec!["run", "--model", tiny, "--task", "embed", "--top-k", "2"],
            "embed options: unknown field `top_k`",
        ),
        (
            vec!["run", "--model", tiny, "--top-k", "2"],
            "task options were given with --task raw",
        ),
        (
            vec!["run", "--model", tiny, "--task", "embed", "--head", "mlm"],
            "are for --task raw",
        ),
    ] {
        let (code, lines, stderr) = run(&args, "{\"input_ids\": [[1]]}\n");
        assert_eq!(code, 2, "{args:?}");
        assert!(lines.is_empty());
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

fn pipeline_fixture(name: &str) -> String {
    fixtures_dir()
        .join("pipelines")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

#[test]
fn tasks_answer_lines_and_report_bad_ones() {
    let fill = pipeline_fixture("fill_mask");
    let input = "{\"text\": \"paris is the [MASK] of france.\"}\n{\"text\": \"\"}\n{\"txt\": \"x\"}\nnot json\n{\"text\": \"no mask here\"}\n{\"text\": \"the [MASK] of [MASK].\"}\n";
    let (code, lines, _) = run(
        &[
            "run",
            "--model",
            &fill,
            "--task",
            "fill-mask",
            "--top-k",
            "2",
        ],
        input,
    );
    assert_eq!(code, 1);
    assert_eq!(lines.len(), 6);
    assert_eq!(lines[0].as_array().unwrap().len(), 2);
    assert!(lines[0][0]["token_str"].is_string());
    for (i, needle) in [
        (1, "no mask token"),
        (2, "unknown field"),
        (3, "invalid JSON"),
        (4, "no mask token"),
    ] {
        let msg = lines[i]["error"].as_str().unwrap_or_default();
        assert!(msg.contains(needle), "line {i}: {}", lines[i]);
    }
    // Two masks: a list per mask.
    assert_eq!(lines[5].as_array().unwrap().len(), 2);
    assert!(lines[5][0].is_array());
}

#[test]
fn quick_text_inputs_for_each_task() {
    let cases: [(&str, &str, &[&str], &str); 6] = [
        (
            "qa",
            "question-answering",
            &[
                "--text",
                "who lives in new york?",
                "--text-pair",
                "john smith lives in new york.",
            ],
            "answer",
        ),
        (
            "nsp",
            "next-sentence",
            &["--text", "paris is big.", "--text-pair", "it is a city."],
            "is_next",
        ),
        (
            "token_cls",
            "token-classification",
            &[
                "--text",
                "john smith lives in paris.",
                "--aggregation",
                "first",
            ],
            "",
        ),
        (
            "text_cls_single",
            "text-classification",
            &["--text", "i love it.", "--top-k", "all"],
            "",
        ),
        (
            "generate",
            "generate",
            &["--text", "paris is the", "--max-new-tokens", "3"],
            "generated_text",
        ),
        (
            "fill_mask",
            "fill-mask",
            &[
                "--text",
                "paris is the [MASK].",
                "--targets",
                "city,capital",
            ],
            "",
        ),
    ];
    for (fixture, task, extra, key) in cases {
        let model = pipeline_fixture(fixture);
        let mut args = vec!["run", "--model", &model, "--task", task];
        args.extend_from_slice(extra);
        let (code, lines, stderr) = run(&args, "");
        assert_eq!(code, 0, "{task}: {stderr}");
        assert_eq!(lines.len(), 1, "{task}");
        if key.is_empty() {
            assert!(lines[0].is_array(), "{task}: {}", lines[0]);
        } else {
            assert!(!lines[0][key].is_null(), "{task}: {}", lines[0]);
        }
    }
    let (code, lines, _) = run(
        &["run", "--model", &pipeline_fixture("multiple_choice"), "--task", "multiple-choice"],
        "{\"prompt\": \"paris is the capital of\", \"choices\": [\"france.\", \"spain.\"]}\n{\"prompt\": \"x\", \"choices\": []}\n",
    );
    assert_eq!(code, 1);
    assert_eq!(lines[0]["scores"].as_array().unwrap().len(), 2);
    assert!(lines[1]["error"].as_str().unwrap().contains("choices"));
}

#[test]
fn long_inputs_warn_or_fail_as_asked() {
    let model = pipeline_fixture("text_cls_single");
    let long = "paris is the capital of france. ".repeat(40);
    let line = format!("{}\n", serde_json::json!({ "text": long }));
    let (code, lines, stderr) = run(
        &["run", "--model", &model, "--task", "text-classification"],
        &line,
    );
    assert_eq!(code, 0);
    assert!(lines[0].is_array());
    assert!(stderr.contains("truncated"), "{stderr}");
    let (code, lines, _) = run(
        &[
            "run",
            "--model",
            &model,
            "--task",
            "text-classification",
            "--no-truncate",
        ],
        &line,
    );
    assert_eq!(code, 1);
    assert!(lines[0]["error"].as_str().unwrap().contains("longer than"));
}

#[test]
fn hub_ids_fail_clearly_without_network() {
    let (code, _, stderr) = run(
        &[
            "run",
            "--task",
            "embed",
            "--model",
            "sentence-transformers/all-MiniLM-L6-v2",
            "--text",
            "hi",
        ],
        "",
    );
    assert_eq!(code, 2);
    assert!(
        stderr.contains("Hugging Face Hub") && stderr.contains("local checkpoint folder"),
        "{stderr}"
    );
}

#[test]
fn a_model_folder_without_tokenizer_is_a_clear_error() {
    let tiny = fixtures_dir().join("bert_base_tiny");
    let (code, _, stderr) = run(
        &[
            "run",
            "--model",
            tiny.to_str().unwrap(),
            "--task",
            "embed",
            "--text",
            "hi",
        ],
        "",
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("tokenizer.json or vocab.txt"), "{stderr}");
}

#[test]
fn bench_and_inspect() {
    let tiny = fixtures_dir().join("bert_base_tiny");
    let (code, lines, stderr) = run(
        &[
            "bench",
            "--model",
            tiny.to_str().unwrap(),
            "--shapes",
            "1x4,2x3",
            "--iters",
            "2",
            "--json",
        ],
        "",
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(lines.len(), 2);
    assert_eq!(
        (lines[1]["batch"].as_u64(), lines[1]["len"].as_u64()),
        (Some(2), Some(3))
    );
    assert!(lines[0]["median_ms"].as_f64().unwrap() > 0.0);
    let (code, _, stderr) = run(
        &["bench", "--model", tiny.to_str().unwrap(), "--shapes", "4"],
        "",
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("BATCHxLEN"), "{stderr}");

    let dir = std::env::temp_dir().join(format!("bertrt-inspect-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("tiny.bertrt");
    let opts = bertrt::convert::ConvertOptions {
        dtype: bertrt::weights::packed::PackedDtype::F16,
        head: None,
        force: false,
    };
    bertrt::convert::convert(&tiny, &file, opts, &mut |_, _| {}).unwrap();
    let out = common::cli::bertrt()
        .args(["inspect", file.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains("dtype:  f16") && text.contains("qkv.weight") && text.contains("parameters:"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn inspect_of_a_folder_says_it_wants_a_packed_file() {
    let folder = fixtures_dir().join("qa");
    let (code, _, stderr) = run(&["inspect", folder.to_str().unwrap()], "");
    assert_eq!(code, 2);
    assert!(
        stderr.contains("is a folder") && stderr.contains("convert"),
        "{stderr}"
    );
    assert!(!stderr.contains("No such device"), "{stderr}");
}
