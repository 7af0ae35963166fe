//! The engine's contract under hostile input, driven through the `bertrt` binary as a
//! user would: memory bounded by the work (peak RSS of every task on a 16 MiB line under
//! 1 GiB, printed per case), one failure per bad line, answers as soon as a line is
//! complete, write errors that are errors and closed pipes that are not, and clear errors
//! for damaged or lying checkpoints.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use common::cli::bertrt;
use common::{fixtures_dir, Scratch};
use serde_json::{json, Value};

fn pipeline(name: &str) -> String {
    fixtures_dir()
        .join("pipelines")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// Waits for `child`, returning its exit code and peak resident memory in bytes.
fn wait_with_rss(child: Child) -> (i32, u64) {
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our unwaited child; status and usage are valid for writes.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4");
    let code = match libc::WIFEXITED(status) {
        true => libc::WEXITSTATUS(status),
        false => -libc::WTERMSIG(status),
    };
    (code, usage.ru_maxrss as u64 * 1024)
}

/// Writes words of about `bytes` bytes, separated by spaces (letters and spaces only,
/// so they need no JSON escaping), without holding them.
fn write_text(out: &mut impl Write, bytes: usize, seed: usize) {
    let words = [
        "the", "quick", "brown", "fox", "paris", "is", "capital", "of", "france", "john", "smith",
        "lives", "in", "new", "york", "jumps", "over", "lazy", "dog",
    ];
    let (mut written, mut i) = (0, seed);
    while written < bytes {
        let w = words[i % words.len()];
        out.write_all(w.as_bytes()).unwrap();
        out.write_all(b" ").unwrap();
        written += w.len() + 1;
        i = i.wrapping_mul(31).wrapping_add(7);
    }
}

/// One part of a generated input line: JSON text as it is, or that many bytes of words.
enum Part {
    Json(&'static str),
    Words(usize),
}

/// `{"FIELD": WORDS}` with the field's opening given as JSON (`{"text": "`).
fn one_text(open: &'static str, words: usize) -> Vec<Part> {
    vec![Part::Json(open), Part::Words(words), Part::Json(r#""}"#)]
}

/// `{"text": WORDS, "text_pair": WORDS}`.
fn two_texts(words: usize) -> Vec<Part> {
    use Part::{Json, Words};
    vec![
        Json(r#"{"text": ""#),
        Words(words),
        Json(r#"", "text_pair": ""#),
        Words(words),
        Json(r#""}"#),
    ]
}

const MIB: usize = 1 << 20;
const RSS_LIMIT: u64 = 1 << 30;

/// Every task on one line of up to 16 MiB: peak RSS stays under 1 GiB and the line is
/// answered (not refused for its size). Prints the table.
///
/// The test process itself never holds a large input or answer: a child's peak RSS as
/// the kernel reports it is at least its parent's own peak at the time it was started.
#[test]
fn every_task_on_a_16_mib_line_stays_under_1_gib() {
    use Part::{Json, Words};
    let scratch = Scratch::new("abuse-rss");
    let (big, half) = (16 * MIB - 64, 8 * MIB - 64);
    let text = r#"{"text": ""#;
    let cases: Vec<(&str, &str, Vec<&str>, Vec<Part>)> = vec![
        (
            "text-classification",
            "text_cls_single",
            vec![],
            one_text(text, big),
        ),
        (
            "text-classification",
            "text_cls_single",
            vec![],
            two_texts(half),
        ),
        (
            "text-classification",
            "text_cls_single",
            vec![],
            two_texts(40_000),
        ),
        ("embed", "text_cls_single", vec![], one_text(text, big)),
        (
            "fill-mask",
            "fill_mask",
            vec![],
            one_text(r#"{"text": "paris is the [MASK] of france. "#, big),
        ),
        (
            "token-classification",
            "token_cls",
            vec![],
            one_text(text, big),
        ),
        (
            "token-classification",
            "token_cls",
            vec!["--aggregation", "simple", "--stride", "16"],
            one_text(text, big),
        ),
        (
            "question-answering",
            "qa",
            vec![],
            one_text(
                r#"{"question": "who lives in new york?", "context": ""#,
                big,
            ),
        ),
        ("next-sentence", "nsp", vec![], two_texts(half)),
        (
            "multiple-choice",
            "multiple_choice",
            vec![],
            vec![
                Json(r#"{"prompt": ""#),
                Words(half),
                Json(r#"", "choices": [""#),
                Words(half),
                Json(r#"", "france."]}"#),
            ],
        ),
        (
            "generate",
            "generate",
            vec!["--max-new-tokens", "2"],
            one_text(text, big),
        ),
    ];
    let mut table = String::from("task                  input      peak RSS   seconds\n");
    let mut failures = Vec::new();
    for (i, (task, fixture, extra, parts)) in cases.iter().enumerate() {
        let input = scratch.file(&format!("case{i}.jsonl"));
        let mut file = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
        for (p, part) in parts.iter().enumerate() {
            match part {
                Json(j) => file.write_all(j.as_bytes()).unwrap(),
                Words(n) => write_text(&mut file, *n, i * 10 + p),
            }
        }
        file.write_all(b"\n").unwrap();
        drop(file);
        let bytes = std::fs::metadata(&input).unwrap().len();
        let model = pipeline(fixture);
        let start = std::time::Instant::now();
        let mut child = bertrt()
            .args(["run", "--model", &model, "--task", task])
            .args(extra)
            .arg("--input")
            .arg(&input)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Read the answer as the child writes it, keeping only its start.
        let stdout = child.stdout.take_or_panic();
        let reader = std::thread::spawn(move || head_of(stdout));
        let (code, rss) = wait_with_rss(child);
        let head = reader.join().unwrap();
        let secs = start.elapsed().as_secs_f64();
        table += &format!(
            "{task:<21} {:>6.1} MiB {:>7.0} MiB {secs:>8.1}\n",
            bytes as f64 / MIB as f64,
            rss as f64 / MIB as f64
        );
        let answered =
            (head.starts_with('[') || head.starts_with('{')) && !head.starts_with("{\"error\"");
        if code != 0 || !answered {
            failures.push(format!("case {i} ({task}): exit {code}, answer {head}"));
        }
        if rss >= RSS_LIMIT {
            failures.push(format!("case {i} ({task}): peak RSS {rss} bytes"));
        }
    }
    println!("{table}");
    assert!(failures.is_empty(), "{}\n{table}", failures.join("\n"));
}

/// The first 200 bytes of a stream read to its end.
fn head_of(mut stream: impl std::io::Read) -> String {
    let (mut head, mut buf) = (Vec::new(), vec![0u8; 1 << 16]);
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        let room = 200usize.saturating_sub(head.len()).min(n);
        head.extend_from_slice(&buf[..room]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// `take` for a piped stdout that must be there.
trait TakeOrPanic {
    fn take_or_panic(&mut self) -> std::process::ChildStdout;
}

impl TakeOrPanic for Option<std::process::ChildStdout> {
    fn take_or_panic(&mut self) -> std::process::ChildStdout {
        self.take().expect("stdout is piped")
    }
}

/// Runs `bertrt run ARGS` on `input`; returns exit code, output lines, stderr.
fn run(args: &[&str], input: &[u8]) -> (i32, Vec<Value>, String) {
    common::cli::run(&[&["run"], args].concat(), input)
}

fn error_of(v: &Value) -> &str {
    v["error"].as_str().unwrap_or("")
}

/// A line over the limit is answered with an error of its own; the lines around it are
/// answered (the default limit of 16 MiB too, with bounded memory).
#[test]
fn an_over_long_line_fails_alone() {
    let model = pipeline("text_cls_single");
    let ok = r#"{"text": "paris is big."}"#;
    let long = json!({ "text": "x ".repeat(3000) }).to_string();
    let input = format!("{ok}\n{long}\n{ok}\n");
    let args = ["--model", &model, "--task", "text-classification"];
    let (code, lines, _) = run(
        &[&args[..], &["--max-line-bytes", "1000"]].concat(),
        input.as_bytes(),
    );
    assert_eq!((code, lines.len()), (1, 3), "{lines:?}");
    assert!(lines[0].is_array() && lines[2].is_array());
    assert!(
        error_of(&lines[1]).contains("over the limit of 1000"),
        "{}",
        lines[1]
    );
    // Over the default: 17 MiB, never held whole.
    let scratch = Scratch::new("abuse-long");
    let path = scratch.file("long.jsonl");
    let mut file = std::fs::File::create(&path).unwrap();
    writeln!(file, "{ok}").unwrap();
    file.write_all(b"{\"text\": \"").unwrap();
    write_text(&mut file, 17 * MIB, 9);
    writeln!(file, "\"}}\n{ok}").unwrap();
    drop(file);
    let mut child = bertrt()
        .args([
            "run",
            "--model",
            &model,
            "--task",
            "text-classification",
            "--input",
        ])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take_or_panic();
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map(|l| serde_json::from_str::<Value>(&l.unwrap()).unwrap())
            .collect::<Vec<_>>()
    });
    let (code, rss) = wait_with_rss(child);
    let lines = reader.join().unwrap();
    assert_eq!((code, lines.len()), (1, 3), "{lines:?}");
    assert!(
        error_of(&lines[1]).contains("over the limit"),
        "{}",
        lines[1]
    );
    assert!(lines[2].is_array());
    assert!(
        rss < 256 * MIB as u64,
        "peak RSS {rss}: the long line was kept"
    );
}

/// `bertrt run` as a co-process: one line in, its answer out, while stdin stays open.
#[test]
fn a_line_is_answered_while_stdin_stays_open() {
    let mut child = bertrt()
        .args([
            "run",
            "--model",
            &pipeline("fill_mask"),
            "--task",
            "fill-mask",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take_or_panic();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let _ = tx.send(line.unwrap());
        }
    });
    for text in ["paris is the [MASK] of france.", "the [MASK] is here."] {
        writeln!(stdin, "{}", json!({ "text": text })).unwrap();
        stdin.flush().unwrap();
        let answer = rx.recv_timeout(Duration::from_secs(60));
        assert!(
            answer.as_deref().is_ok_and(|a| a.starts_with('[')),
            "no answer while stdin was open: {answer:?}"
        );
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
}

/// A full disk is an error (message, exit 2); a reader that goes away is not, for every
/// command that prints; a closed stderr is no crash.
#[test]
fn write_errors_fail_closed_pipes_do_not() {
    let fill = pipeline("fill_mask");
    let line = br#"{"text": "paris is the [MASK] of france."}"#;
    let full = bertrt()
        .args(["run", "--model", &fill, "--task", "fill-mask"])
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create("/dev/full").unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut full = full;
    full.stdin.take().unwrap().write_all(line).unwrap();
    let out = full.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("No space left"), "{stderr}");

    // The reader closes the pipe before anything is written.
    let scratch = Scratch::new("abuse-pipe");
    let packed = scratch.file("tiny.bertrt");
    bertrt::convert::convert(
        &fixtures_dir().join("bert_base_tiny"),
        &packed,
        bertrt::convert::ConvertOptions {
            dtype: bertrt::weights::packed::PackedDtype::F32,
            head: None,
            force: false,
        },
        &mut |_, _| {},
    )
    .unwrap();
    let packed_arg = packed.to_string_lossy().into_owned();
    let tiny = fixtures_dir()
        .join("bert_base_tiny")
        .to_string_lossy()
        .into_owned();
    let shapes = vec!["1x4"; 200].join(",");
    for args in [
        vec!["inspect", packed_arg.as_str()],
        vec![
            "bench", "--model", &tiny, "--shapes", &shapes, "--iters", "1",
        ],
    ] {
        let mut child = bertrt()
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        let mut stdout = BufReader::new(child.stdout.take_or_panic());
        stdout.read_line(&mut first).unwrap();
        drop(stdout);
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    // stderr closed, and a warning to write there (truncation).
    let long = json!({ "text": "paris is big. ".repeat(100) }).to_string();
    let mut cmd = bertrt();
    cmd.args([
        "run",
        "--model",
        &pipeline("text_cls_single"),
        "--task",
        "text-classification",
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    // SAFETY: close(2) in the child before exec; no allocation or lock is touched.
    unsafe {
        cmd.pre_exec(|| {
            libc::close(2);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(long.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with('['));
}

/// A copy of a fixture checkpoint folder, as `dst` in `scratch`, with its config changed
/// by `edit`.
fn fixture_copy(name: &str, scratch: &Scratch, dst: &str, edit: impl Fn(&mut Value)) -> PathBuf {
    let src = fixtures_dir().join("pipelines").join(name);
    let dst = scratch.file(dst);
    std::fs::create_dir_all(&dst).unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dst.join(entry.file_name())).unwrap();
    }
    let path = dst.join("config.json");
    let mut config: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(&path, config.to_string()).unwrap();
    dst
}

/// Writes NaN over the first value of tensor `name` in a safetensors file.
fn poison(file: &Path, name: &str) {
    let mut bytes = std::fs::read(file).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    assert_eq!(header[name]["dtype"], "F32");
    let start = 8 + n + header[name]["data_offsets"][0].as_u64().unwrap() as usize;
    bytes[start..start + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(file, bytes).unwrap();
}

/// Damaged or lying checkpoints are clear errors at load (exit 2), never an abort, a
/// panic or NaN answers.
#[test]
fn damaged_checkpoints_are_refused_at_load() {
    let scratch = Scratch::new("abuse-ckpt");
    let nan = fixture_copy("text_cls_single", &scratch, "nan", |_| {});
    let tensor = "bert.encoder.layer.0.output.dense.weight";
    poison(&nan.join("model.safetensors"), tensor);
    let args = |dir: &Path| -> Vec<String> {
        [
            "--model",
            &dir.to_string_lossy(),
            "--task",
            "text-classification",
            "--text",
            "hi",
        ]
        .map(String::from)
        .to_vec()
    };
    let (code, lines, stderr) = run(
        &args(&nan).iter().map(String::as_str).collect::<Vec<_>>(),
        b"",
    );
    assert_eq!((code, lines.len()), (2, 0), "{stderr}");
    assert!(
        stderr.contains(tensor) && stderr.contains("NaN"),
        "{stderr}"
    );
    for (hidden, needle) in [(100_000u64, "has shape"), (1 << 62, "too large")] {
        let dir = fixture_copy("text_cls_single", &scratch, &format!("h{hidden}"), |c| {
            c["hidden_size"] = json!(hidden);
            c["num_attention_heads"] = json!(1);
        });
        let (code, _, stderr) = run(
            &args(&dir).iter().map(String::as_str).collect::<Vec<_>>(),
            b"",
        );
        assert_eq!(code, 2, "hidden {hidden}: {stderr}");
        assert!(stderr.contains(needle), "hidden {hidden}: {stderr}");
    }
}

/// A line the model cannot take fails alone, not the batch it was grouped with: a pair
/// on a model without pairs (type_vocab_size 1), and token ids past the model's vocabulary.
#[test]
fn a_bad_line_fails_alone_in_its_batch() {
    let scratch = Scratch::new("abuse-batch");
    let config = bertrt::BertConfig::from_json(
        &json!({"architectures": ["BertModel"], "hidden_size": 16, "num_hidden_layers": 1,
                "num_attention_heads": 2, "intermediate_size": 32, "vocab_size": 60,
                "max_position_embeddings": 64, "type_vocab_size": 1})
        .to_string(),
    )
    .unwrap();
    let dir = scratch.file("no-pairs");
    bertrt::synthetic::write_checkpoint(&dir, &config, 3).unwrap();
    let vocab = fixtures_dir().join("pipelines/text_cls_single/vocab.txt");
    std::fs::copy(vocab, dir.join("vocab.txt")).unwrap();
    // Ids below 60 are "[PAD]" .. "##x": single letters and their pieces.
    let input = [
        json!({"text": "a b c"}),
        json!({"text": "a b", "text_pair": "c"}),
        json!({"text": "paris"}),
        json!({"text": "b a"}),
    ]
    .map(|v| v.to_string())
    .join("\n");
    let model = dir.to_string_lossy();
    let (code, lines, _) = run(&["--model", &model, "--task", "embed"], input.as_bytes());
    assert_eq!((code, lines.len()), (1, 4), "{lines:?}");
    assert!(lines[0]["embedding"].is_array() && lines[3]["embedding"].is_array());
    assert!(
        error_of(&lines[1]).contains("takes no text pairs"),
        "{}",
        lines[1]
    );
    assert!(
        error_of(&lines[2]).contains("vocab_size = 60"),
        "{}",
        lines[2]
    );
    for line in &lines {
        assert!(
            !error_of(line).contains("invalid input: invalid input"),
            "{line}"
        );
    }
}

/// Flags that contradict each other are refused; numbers that overflowed or were
/// never checked are.
#[test]
fn conflicting_flags_and_bad_numbers_are_refused() {
    let qa = pipeline("qa");
    let fill = pipeline("fill_mask");
    for (args, needle) in [
        (
            vec![
                "--model",
                fill.as_str(),
                "--task",
                "fill-mask",
                "--text",
                "a",
                "--input",
                "x",
            ],
            "--text and --input",
        ),
        (
            vec![
                "--model",
                fill.as_str(),
                "--task",
                "fill-mask",
                "--text-pair",
                "b",
            ],
            "--text-pair goes with --text",
        ),
    ] {
        let (code, _, stderr) = run(&args, b"");
        assert_eq!(code, 2, "{args:?}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    let qa_line =
        br#"{"question": "who lives in paris?", "context": "john smith lives in paris."}"#;
    let qa_args = |extra: &[&'static str]| {
        let mut a = vec!["--model", qa.as_str(), "--task", "question-answering"];
        a.extend_from_slice(extra);
        a
    };
    let (code, lines, _) = run(
        &qa_args(&["--max-answer-len", "18446744073709551615"]),
        qa_line,
    );
    assert_eq!(code, 0);
    assert!(lines[0]["answer"].is_string(), "{}", lines[0]);
    for bad in ["0", "100000"] {
        let (code, lines, _) = run(&qa_args(&["--max-seq-len", bad]), qa_line);
        assert_eq!(code, 1);
        assert!(error_of(&lines[0]).contains("max_seq_len"), "{}", lines[0]);
    }
}

/// Messages say what happened: a line starting with NUL is invalid JSON (not an echo of
/// itself), a task's unknown field lists only its own fields, a [MASK] cut off by
/// truncation is reported as such.
#[test]
fn messages_name_the_real_problem() {
    let fill = pipeline("fill_mask");
    let cls = pipeline("text_cls_single");
    let (_, lines, _) = run(
        &["--model", &fill, "--task", "fill-mask"],
        b"\0{\"text\": \"a\"}\n",
    );
    assert!(error_of(&lines[0]).contains("invalid JSON"), "{}", lines[0]);
    let (_, lines, _) = run(
        &["--model", &cls, "--task", "text-classification"],
        br#"{"text": "a", "txt": "b"}"#,
    );
    let msg = error_of(&lines[0]);
    assert!(
        msg.contains("unknown field `txt`") && !msg.contains("max_new_tokens"),
        "{msg}"
    );
    let cut = json!({ "text": format!("{} the [MASK].", "paris is big. ".repeat(50)) });
    let (_, lines, _) = run(
        &["--model", &fill, "--task", "fill-mask"],
        cut.to_string().as_bytes(),
    );
    assert!(error_of(&lines[0]).contains("was cut off"), "{}", lines[0]);
}
