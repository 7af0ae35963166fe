//! A `bertrt serve` process on 127.0.0.1 (port 0) and a small HTTP client for it
//! (included by the tests that serve: `#[path = "common/server.rs"] mod server;`).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::Value;

fn bertrt() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_bertrt"))
}

/// A running server; killed on drop (its log is printed if the test is failing).
pub struct Server {
    pub child: Child,
    pub base: String,
    log: std::path::PathBuf,
}

impl Server {
    /// Starts `bertrt serve --port 0 ARGS` and waits for its address.
    pub fn start(args: &[&str]) -> Server {
        let log = std::env::temp_dir().join(format!(
            "bertrt-serve-{}-{}.log",
            std::process::id(),
            COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ));
        let mut child = bertrt()
            .args(["serve", "--port", "0"])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("server did not start: {line:?}\n{log}")
            })
            .to_string();
        Server { child, base, log }
    }

    /// POSTs a JSON body; returns the status, the JSON answer and the headers.
    pub fn post(&self, path: &str, body: &Value) -> Answer {
        self.post_raw(path, &body.to_string(), None)
    }

    /// POSTs a body as it is, with an optional bearer token.
    pub fn post_raw(&self, path: &str, body: &str, token: Option<&str>) -> Answer {
        let mut req = agent().post(&format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        answer(
            req.set("Content-Type", "application/json")
                .send_string(body),
        )
    }

    /// GETs a path.
    pub fn get(&self, path: &str) -> Answer {
        answer(agent().get(&format!("{}{path}", self.base)).call())
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- server log ---\n{}", self.log());
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// One HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub headers: Vec<(String, String)>,
}

impl Answer {
    /// The body as JSON (panics with the body if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(120))
        .build()
}

fn answer(r: Result<ureq::Response, ureq::Error>) -> Answer {
    let resp = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => {
            return Answer {
                status: 0,
                body: e.to_string(),
                headers: Vec::new(),
            }
        }
    };
    let status = resp.status();
    let headers = resp
        .headers_names()
        .into_iter()
        .map(|n| {
            let v = resp.header(&n).unwrap_or("").to_string();
            (n, v)
        })
        .collect();
    let body = resp.into_string().unwrap_or_default();
    Answer {
        status,
        body,
        headers,
    }
}
