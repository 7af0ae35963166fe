//! JSON lines: the request loop the CLI runs, and a server or bindings can reuse.
//!
//! Every input line is one JSON request; every request gets one JSON line back, in input
//! order. A line that fails (not UTF-8, not JSON, or refused by the task) is answered
//! with `{"error": "..."}` and the others are still answered. Lines are answered in
//! chunks, so a task can batch them into few forward calls.

use std::io::{BufRead, Read, Write};
use std::path::PathBuf;

use serde_json::value::RawValue;
use serde_json::Value;

use crate::error::{Error, Result};

/// One answer, as JSON text (written out as it is: a large answer is never held as a
/// tree of values), and the warnings it produced. An embedding's answer also keeps its
/// numbers, so bindings hand them over without reading the JSON back.
#[derive(Debug, Clone)]
pub struct Answer {
    json: Box<RawValue>,
    numbers: Option<Vec<f32>>,
    /// Things the user should know (truncation, replaced targets).
    pub warnings: Vec<String>,
}

impl Answer {
    /// An answer without warnings.
    pub fn new(value: Value) -> Self {
        let json =
            serde_json::value::to_raw_value(&value).unwrap_or_else(|_| RawValue::NULL.to_owned());
        Answer {
            json,
            numbers: None,
            warnings: Vec::new(),
        }
    }

    /// An answer from JSON text made by the caller (checked to be JSON).
    pub fn from_json(json: String) -> Result<Self> {
        let json = RawValue::from_string(json)
            .map_err(|e| Error::Internal(format!("an answer is not JSON: {e}")))?;
        Ok(Answer {
            json,
            numbers: None,
            warnings: Vec::new(),
        })
    }

    /// The same answer keeping the numbers its JSON was written from (an embedding's
    /// values, or its token states row after row).
    pub fn with_numbers(mut self, numbers: Vec<f32>) -> Self {
        self.numbers = Some(numbers);
        self
    }

    /// The numbers of an embedding's answer, without a copy (None for other tasks).
    pub fn into_numbers(self) -> Option<Vec<f32>> {
        self.numbers
    }

    /// The same answer with these warnings.
    pub fn with_warnings(mut self, warnings: Vec<String>) -> Self {
        self.warnings = warnings;
        self
    }

    /// The answer's JSON text.
    pub fn json(&self) -> &str {
        self.json.get()
    }

    /// The answer's JSON text, without a copy.
    pub fn into_json(self) -> String {
        Box::<str>::from(self.json).into_string()
    }

    /// The answer as a JSON value.
    pub fn value(&self) -> Value {
        serde_json::from_str(self.json.get()).unwrap_or(Value::Null)
    }
}

impl PartialEq for Answer {
    fn eq(&self, other: &Self) -> bool {
        self.json.get() == other.json.get() && self.warnings == other.warnings
    }
}

/// What answers parsed requests: a task's pipeline, or raw mode.
pub trait Answerer: Send + Sync {
    /// Answers each request, one result per request, in order.
    fn answer(&self, requests: &[Value]) -> Vec<Result<Answer>>;
}

/// One output line.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The answer's JSON, or `{"error": ...}`, without a newline.
    pub json: String,
    /// Warnings to show the user.
    pub warnings: Vec<String>,
    /// False for an error line.
    pub ok: bool,
}

impl Reply {
    /// The reply to a failed request.
    pub fn error(e: &Error) -> Reply {
        Reply {
            json: error_json(&e.to_string()),
            warnings: Vec::new(),
            ok: false,
        }
    }

    fn answered(result: Result<Answer>) -> Reply {
        match result {
            Ok(mut a) => Reply {
                warnings: std::mem::take(&mut a.warnings),
                json: a.into_json(),
                ok: true,
            },
            Err(e) => Reply::error(&e),
        }
    }
}

/// `{"error": message}` as one JSON line (no newline).
pub fn error_json(message: &str) -> String {
    serde_json::json!({ "error": message }).to_string()
}

/// Parses input line `number` (1-based, for messages): UTF-8, then JSON.
pub fn parse_line(bytes: &[u8], number: usize) -> Result<Value> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| Error::Input(format!("line {number} is not valid UTF-8: {e}")))?;
    serde_json::from_str(text).map_err(|e| Error::Input(format!("invalid JSON: {e}")))
}

/// Answers requests that were parsed (or failed to parse) in order: the good ones go to
/// `answerer` together, the failed ones get their error.
pub fn answer_all(answerer: &dyn Answerer, requests: Vec<Result<Value>>) -> Vec<Reply> {
    let good: Vec<Value> = requests
        .iter()
        .filter_map(|r| r.as_ref().ok().cloned())
        .collect();
    let mut answers = answerer.answer(&good).into_iter();
    requests
        .into_iter()
        .map(|request| match request {
            Ok(_) => Reply::answered(
                answers
                    .next()
                    .unwrap_or_else(|| Err(Error::Internal("a request was not answered".into()))),
            ),
            Err(e) => Reply::error(&e),
        })
        .collect()
}

/// The default longest input line: 16 MiB.
pub const DEFAULT_MAX_LINE_BYTES: usize = 16 << 20;

/// How [`run`] reads and groups lines.
#[derive(Debug, Clone, Copy)]
pub struct LineOptions {
    /// Lines answered together at most (the task batches within them).
    pub chunk: usize,
    /// Longest line in bytes; a longer one is answered with an error, alone.
    pub max_line_bytes: usize,
}

impl Default for LineOptions {
    fn default() -> Self {
        LineOptions {
            chunk: 128,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
        }
    }
}

/// Bytes of pending lines that close a chunk early (so memory stays a few lines).
const CHUNK_BYTES: usize = 32 << 20;

/// Input lines, read through a buffer whose contents tell whether another line is there
/// without waiting for it.
struct LineReader<R> {
    input: std::io::BufReader<R>,
    max: usize,
    number: usize,
}

impl<R: Read> LineReader<R> {
    /// The next line (without its newline), parsed, with its length in bytes; None at
    /// the end of the input. A line over the limit is read to its end but not kept.
    fn next(&mut self) -> std::io::Result<Option<(Result<Value>, usize)>> {
        let (mut line, mut len, mut any) = (Vec::new(), 0usize, false);
        loop {
            let buf = match self.input.fill_buf() {
                Ok(buf) => buf,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if buf.is_empty() {
                break;
            }
            any = true;
            let (part, used, end) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (&buf[..i], i + 1, true),
                None => (buf, buf.len(), false),
            };
            len += part.len();
            match len > self.max {
                true => line = Vec::new(),
                false => line.extend_from_slice(part),
            }
            self.input.consume(used);
            if end {
                break;
            }
        }
        if !any {
            return Ok(None);
        }
        self.number += 1;
        let n = self.number;
        let parsed = if len > self.max {
            Err(Error::Input(format!(
                "line {n} has {len} bytes, over the limit of {} (--max-line-bytes)",
                self.max
            )))
        } else if line.iter().all(u8::is_ascii_whitespace) {
            Err(Error::Input(format!("line {n} is empty")))
        } else {
            parse_line(&line, n)
        };
        Ok(Some((parsed, len)))
    }

    /// Whether a whole line is already buffered (reading it would not wait).
    fn line_ready(&self) -> bool {
        self.input.buffer().contains(&b'\n')
    }
}

/// Reads JSON lines from `input` until it ends and writes one line per input line to
/// `output`, in order: the answer, or `{"error": ...}` for a line that is not UTF-8,
/// not JSON, empty, over `max_line_bytes` or refused by the task. Lines are answered in
/// chunks of up to `chunk` lines, and as soon as no further line has arrived, so a
/// program that writes a line and waits for its answer gets it; output is flushed after
/// each chunk. `replied` sees every reply (for warnings and progress) after it is
/// written. Returns whether every line succeeded. A closed output (broken pipe) ends the
/// loop quietly; any other read or write error is an error.
pub fn run(
    answerer: &dyn Answerer,
    input: impl Read,
    mut output: impl Write,
    opts: LineOptions,
    mut replied: impl FnMut(&Reply),
) -> Result<bool> {
    let mut lines = LineReader {
        input: std::io::BufReader::with_capacity(1 << 20, input),
        max: opts.max_line_bytes,
        number: 0,
    };
    let mut all_ok = true;
    let mut pending: Vec<Result<Value>> = Vec::new();
    let mut pending_bytes = 0usize;
    loop {
        let next = lines.next().map_err(|e| Error::io("<input>", e))?;
        let done = next.is_none();
        if let Some((line, len)) = next {
            pending_bytes += len.min(opts.max_line_bytes);
            pending.push(line);
        }
        let full = pending.len() >= opts.chunk.max(1) || pending_bytes >= CHUNK_BYTES;
        if !pending.is_empty() && (done || full || !lines.line_ready()) {
            pending_bytes = 0;
            for reply in answer_all(answerer, std::mem::take(&mut pending)) {
                all_ok &= reply.ok;
                let written = output
                    .write_all(reply.json.as_bytes())
                    .and_then(|()| output.write_all(b"\n"));
                if let Err(e) = written {
                    return closed_or_error(e, all_ok);
                }
                replied(&reply);
            }
            if let Err(e) = output.flush() {
                return closed_or_error(e, all_ok);
            }
        }
        if done {
            return Ok(all_ok);
        }
    }
}

/// A closed output ends the loop quietly; any other write error is an error.
fn closed_or_error(e: std::io::Error, all_ok: bool) -> Result<bool> {
    match e.kind() {
        std::io::ErrorKind::BrokenPipe => Ok(all_ok),
        _ => Err(Error::io(PathBuf::from("<output>"), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Echoes `{"n": x}` as x * 2; refuses odd numbers.
    struct Doubler;

    impl Answerer for Doubler {
        fn answer(&self, requests: &[Value]) -> Vec<Result<Answer>> {
            requests
                .iter()
                .map(|r| match r["n"].as_i64() {
                    Some(n) if n % 2 == 0 => Ok(Answer::new(json!(n * 2))),
                    _ => Err(Error::Input(format!("odd: {r}"))),
                })
                .collect()
        }
    }

    fn lines_of(out: Vec<u8>) -> Vec<Value> {
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn every_line_answered_in_order_errors_alone() {
        let long = format!("{{\"n\": 2, \"pad\": \"{}\"}}\n", "x".repeat(100));
        let input: Vec<u8> = [
            b"{\"n\": 2}\nnot json\n\n{\"n\": 3}\n\x01\n".as_slice(),
            long.as_bytes(),
            b"  \r\n\xff\n{\"n\": 4}",
        ]
        .concat();
        let mut out = Vec::new();
        let mut seen = 0;
        let opts = LineOptions {
            chunk: 2,
            max_line_bytes: 64,
        };
        let ok = run(&Doubler, input.as_slice(), &mut out, opts, |_| seen += 1).unwrap();
        assert!(!ok);
        let lines = lines_of(out);
        assert_eq!(lines.len(), 9, "{lines:?}");
        assert_eq!(seen, 9);
        let error = |i: usize| lines[i]["error"].as_str().unwrap_or_default().to_string();
        assert_eq!(lines[0], json!(4));
        assert!(error(1).contains("invalid JSON"), "{}", lines[1]);
        assert!(error(2).contains("line 3 is empty"), "{}", lines[2]);
        assert!(error(3).contains("odd"), "{}", lines[3]);
        assert!(error(4).contains("invalid JSON"), "{}", lines[4]);
        assert!(
            error(5).contains("line 6 has 119 bytes, over the limit of 64"),
            "{}",
            lines[5]
        );
        assert!(error(6).contains("line 7 is empty"), "{}", lines[6]);
        assert!(
            error(7).contains("line 8 is not valid UTF-8"),
            "{}",
            lines[7]
        );
        assert_eq!(lines[8], json!(8));
    }

    /// Sends every line written to a channel.
    struct Notify(std::sync::mpsc::Sender<String>, Vec<u8>);

    impl Write for Notify {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            for &b in buf {
                match b {
                    b'\n' => {
                        let line = String::from_utf8_lossy(&self.1).into_owned();
                        let _ = self.0.send(line);
                        self.1.clear();
                    }
                    _ => self.1.push(b),
                }
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A program that writes one line and waits for its answer gets it (bertrt run as a
    /// co-process), though the chunk is far from full and the input still open.
    #[test]
    fn a_line_is_answered_before_the_next_arrives() {
        let (reader, mut writer) = std::io::pipe().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let server = std::thread::spawn(move || {
            let opts = LineOptions {
                chunk: 64,
                ..Default::default()
            };
            run(&Doubler, reader, Notify(tx, Vec::new()), opts, |_| {})
        });
        let mut answers = Vec::new();
        for n in [2, 6] {
            writer
                .write_all(format!("{{\"n\": {n}}}\n").as_bytes())
                .unwrap();
            writer.flush().unwrap();
            answers.push(rx.recv_timeout(std::time::Duration::from_secs(20)));
        }
        drop(writer);
        assert!(server.join().unwrap().unwrap());
        assert_eq!(
            answers[0].as_deref(),
            Ok("4"),
            "no answer while the input was open"
        );
        assert_eq!(answers[1].as_deref(), Ok("12"));
    }
}
