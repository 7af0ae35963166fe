//! Driving the `bertrt` binary as a user's script does.
#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

/// The `bertrt` binary of this build (in bertrt's own tests).
pub fn bertrt() -> Command {
    Command::new(option_env!("CARGO_BIN_EXE_bertrt").unwrap_or("bertrt"))
}

/// Runs `bertrt ARGS` with `stdin` written to it (from a thread, so a large input
/// cannot deadlock against the output); returns the exit code, the output lines as
/// JSON and stderr. A broken pipe on stdin is fine: the process may exit first.
pub fn run(args: &[&str], stdin: &[u8]) -> (i32, Vec<Value>, String) {
    let mut child = bertrt()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    (
        out.status.code().unwrap_or(-1),
        lines,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
