//! The convert command's output contract: `--verify` into a reader that went away is a
//! quiet success, into a full disk an error.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn convert() -> Command {
    Command::new(env!("CARGO_BIN_EXE_convert"))
}

fn packed_fixture() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out =
        std::env::temp_dir().join(format!("bertrt-convert-cli-{}.bertrt", std::process::id()));
    let status = convert()
        .arg(root.join("tests/fixtures/bert_base_tiny"))
        .arg(&out)
        .arg("--force")
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    out
}

#[test]
fn verify_output_closed_is_quiet_full_is_an_error() {
    let file = packed_fixture();
    // The reader closes its end before convert writes its line.
    let mut child = convert()
        .arg("--verify")
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let full = convert()
        .arg("--verify")
        .arg(&file)
        .stdout(std::fs::File::create("/dev/full").unwrap())
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&file);
    assert!(!full.status.success());
    assert!(String::from_utf8_lossy(&full.stderr).contains("No space left"));
}
