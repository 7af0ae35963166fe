//! JSON lines: the request loop the CLI runs, and a server or bindings can reuse.
//!
//! Every input line is one JSON request; every request gets one JSON line back, in input
//! order. A line that fails (not UTF-8, not JSON, or refused by the task) is answered
//! with `{"error": "..."}` and the others are still answered. Lines are answered in
//! chunks, so a task can batch them into few forward calls.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use serde_json::value::RawValue;
use serde_json::Value;

use crate::error::{Error, Result};

/// One answer, as JSON text (written out as it is: a large answer is never held as a
/// tree of values), and the warnings it produced.
#[derive(Debug, Clone)]
pub struct Answer {
    json: Box<RawValue>,
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
            warnings: Vec::new(),
        }
    }

    /// An answer from JSON text made by the caller (checked to be JSON).
    pub fn from_json(json: String) -> Result<Self> {
        let json = RawValue::from_string(json)
            .map_err(|e| Error::Internal(format!("an answer is not JSON: {e}")))?;
        Ok(Answer {
            json,
            warnings: Vec::new(),
        })
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

/// How [`run`] groups lines.
#[derive(Debug, Clone, Copy)]
pub struct LineOptions {
    /// Lines answered together (the task batches within them).
    pub chunk: usize,
}

/// Reads JSON lines from `input` until it ends, answers them in chunks and writes one
/// line per request to `output`, flushing after each chunk; `replied` sees every reply
/// (for warnings and progress) after it is written. Blank lines are skipped. Returns
/// whether every request succeeded. A closed output (broken pipe) ends the loop quietly;
/// any other write error is an error.
pub fn run(
    answerer: &dyn Answerer,
    input: impl BufRead,
    mut output: impl Write,
    opts: LineOptions,
    mut replied: impl FnMut(&Reply),
) -> Result<bool> {
    let mut all_ok = true;
    let mut pending: Vec<Result<Value>> = Vec::new();
    let mut lines = input.split(b'\n').enumerate().peekable();
    while let Some((i, line)) = lines.next() {
        let line = line.map_err(|e| Error::io("<input>", e))?;
        if !line.iter().all(u8::is_ascii_whitespace) {
            pending.push(parse_line(&line, i + 1));
        }
        let last = lines.peek().is_none();
        if pending.len() >= opts.chunk.max(1) || (last && !pending.is_empty()) {
            for reply in answer_all(answerer, std::mem::take(&mut pending)) {
                all_ok &= reply.ok;
                let written = output
                    .write_all(reply.json.as_bytes())
                    .and_then(|()| output.write_all(b"\n"));
                if let Err(e) = written {
                    return match e.kind() {
                        std::io::ErrorKind::BrokenPipe => Ok(all_ok),
                        _ => Err(Error::io(PathBuf::from("<output>"), e)),
                    };
                }
                replied(&reply);
            }
            if let Err(e) = output.flush() {
                return match e.kind() {
                    std::io::ErrorKind::BrokenPipe => Ok(all_ok),
                    _ => Err(Error::io(PathBuf::from("<output>"), e)),
                };
            }
        }
    }
    Ok(all_ok)
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

    #[test]
    fn every_line_answered_in_order_errors_alone() {
        let input = b"{\"n\": 2}\nnot json\n\n{\"n\": 3}\n\xff\n{\"n\": 4}".as_slice();
        let mut out = Vec::new();
        let mut seen = 0;
        let ok = run(&Doubler, input, &mut out, LineOptions { chunk: 2 }, |_| {
            seen += 1
        })
        .unwrap();
        assert!(!ok);
        assert_eq!(seen, 5);
        let lines: Vec<Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 5);
        assert_eq!(lines[0], json!(4));
        assert!(lines[1]["error"].as_str().unwrap().contains("invalid JSON"));
        assert!(lines[2]["error"].as_str().unwrap().contains("odd"));
        assert!(lines[3]["error"]
            .as_str()
            .unwrap()
            .contains("line 5 is not valid UTF-8"));
        assert_eq!(lines[4], json!(8));
    }
}
