//! Packed files that cannot be turned against their reader or writer: a well-signed file
//! whose entries overlap, repeat a name or name an unknown head is refused; convert never
//! writes through a planted symlink; BERTRT_NO_MMAP=1 survives the file being truncated
//! while the model runs.

mod common;

use std::path::Path;

use bertrt::convert::{convert, ConvertOptions};
use bertrt::weights::packed::PackedDtype;
use bertrt::weights::PackedFile;
use common::{fixtures_dir, Scratch};
use serde_json::Value;

fn pack(input: &Path, out: &Path) {
    let opts = ConvertOptions {
        dtype: PackedDtype::F32,
        head: None,
        force: true,
    };
    convert(input, out, opts, &mut |_, _| {}).unwrap();
}

/// A valid packed file taken apart: its bytes, its header and where its data starts.
struct Parts {
    bytes: Vec<u8>,
    header: Value,
    data_start: usize,
}

impl Parts {
    fn of(path: &Path) -> Parts {
        let bytes = std::fs::read(path).unwrap();
        let header_len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
        let header: Value = serde_json::from_slice(&bytes[24..24 + header_len]).unwrap();
        let data_start = ["tensors", "files"]
            .iter()
            .flat_map(|k| header[k].as_array().unwrap())
            .map(|e| e["offset"].as_u64().unwrap() as usize)
            .min()
            .unwrap();
        Parts {
            bytes,
            header,
            data_start,
        }
    }

    fn entry(&self, list: &str, i: usize) -> (usize, usize) {
        let e = &self.header[list][i];
        (
            e["offset"].as_u64().unwrap() as usize,
            e["nbytes"].as_u64().unwrap() as usize,
        )
    }

    /// The file with `header` in place of the original one, signed (the data stays put).
    fn with_header(&self, header: &Value) -> Vec<u8> {
        let json = serde_json::to_vec(header).unwrap();
        assert!(24 + json.len() <= self.data_start, "edited header too long");
        let mut b = self.bytes.clone();
        b[12..16].copy_from_slice(&(json.len() as u32).to_le_bytes());
        b[16..20].copy_from_slice(&crc32fast::hash(&json).to_le_bytes());
        b[24..self.data_start].fill(0);
        b[24..24 + json.len()].copy_from_slice(&json);
        b
    }

    /// The file with tensor `i` pointed at bytes `offset..offset + nbytes`, its shape and
    /// checksum made to match them (so only the layout is wrong).
    fn tensor_at(&self, i: usize, offset: usize, nbytes: usize) -> Vec<u8> {
        let mut header = self.header.clone();
        let t = &mut header["tensors"][i];
        t["offset"] = offset.into();
        t["nbytes"] = nbytes.into();
        t["shape"] = serde_json::json!([nbytes / 4]);
        // The bytes may lie inside the header itself: iterate until the checksum they
        // hold is the checksum of the bytes.
        let mut crc = 0u32;
        for _ in 0..8 {
            header["tensors"][i]["crc32"] = crc.into();
            let b = self.with_header(&header);
            let got = crc32fast::hash(&b[offset..offset + nbytes]);
            if got == crc {
                return b;
            }
            crc = got;
        }
        panic!("tensor {i}: the checksum does not settle")
    }

    fn edited(&self, edit: impl FnOnce(&mut Value)) -> Vec<u8> {
        let mut header = self.header.clone();
        edit(&mut header);
        self.with_header(&header)
    }
}

#[test]
fn verify_refuses_overlapping_repeated_or_unknown_entries() {
    let s = Scratch::new("safety-layout");
    let good = s.file("good.bertrt");
    pack(&fixtures_dir().join("pipelines/qa"), &good);
    let p = Parts::of(&good);
    let last = p.header["tensors"].as_array().unwrap().len() - 1;
    let (t0, t0_len) = p.entry("tensors", 0);
    assert!(t0_len >= 512, "tensor 0 is too small for the overlap cases");
    let largest_file = (0..p.header["files"].as_array().unwrap().len())
        .max_by_key(|&i| p.entry("files", i).1)
        .unwrap();
    let (f_off, f_len) = p.entry("files", largest_file);
    assert!(
        p.data_start > 512 + 24,
        "the header must span 256..512 for the header case"
    );

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("unchanged", p.edited(|_| {}), ""),
        (
            "a tensor inside another",
            p.tensor_at(1, t0 + 256, 256),
            "overlap",
        ),
        (
            "a tensor aliasing another",
            p.tensor_at(1, t0, t0_len),
            "overlap",
        ),
        (
            "a tensor over the header",
            p.tensor_at(last, 256, 256),
            "header",
        ),
        (
            "a tensor over an embedded file",
            p.tensor_at(last, f_off, (f_len / 4 * 4).min(256)),
            "overlap",
        ),
        (
            "a repeated tensor name",
            p.edited(|h| h["tensors"][1]["name"] = h["tensors"][0]["name"].clone()),
            "more than once",
        ),
        (
            "a repeated file name",
            p.edited(|h| h["files"][1]["name"] = h["files"][0]["name"].clone()),
            "more than once",
        ),
        (
            "an unknown head",
            p.edited(|h| h["head"] = "BertForTelepathy".into()),
            "unknown head",
        ),
    ];
    let mut wrong = Vec::new();
    for (what, bytes, needle) in cases {
        let path = s.file("case.bertrt");
        std::fs::write(&path, &bytes).unwrap();
        match (PackedFile::open(&path), needle) {
            (Ok(_), "") => {}
            (Ok(_), _) => wrong.push(format!("{what}: accepted")),
            (Err(e), "") => wrong.push(format!("{what}: refused: {e}")),
            (Err(e), _) if !e.to_string().contains(needle) => {
                wrong.push(format!("{what}: {e} (expected {needle:?})"))
            }
            (Err(_), _) => {}
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[cfg(unix)]
#[test]
fn convert_never_writes_through_a_planted_symlink() {
    let s = Scratch::new("safety-symlink");
    let pid = std::process::id();
    let victim = s.file("victim.txt");
    std::fs::write(&victim, b"precious").unwrap();
    // Links at the names a temporary file could take (the earlier `OUT.partial-<pid>`
    // and the current `OUT.bertrt.partial-<pid>`), to an existing file and to none.
    for (stem, target) in [
        ("a", victim.clone()),
        ("b", s.file("created-through-a-link")),
    ] {
        let out = s.file(&format!("{stem}.bertrt"));
        for name in [
            format!("{stem}.partial-{pid}"),
            format!("{stem}.bertrt.partial-{pid}"),
        ] {
            std::os::unix::fs::symlink(&target, s.file(&name)).unwrap();
        }
        let opts = ConvertOptions {
            dtype: PackedDtype::F32,
            head: None,
            force: false,
        };
        convert(&fixtures_dir().join("qa"), &out, opts, &mut |_, _| {}).unwrap();
        PackedFile::open(&out).unwrap();
    }
    assert!(
        std::fs::read(&victim).unwrap() == b"precious",
        "the link's target was overwritten"
    );
    assert!(!s.file("created-through-a-link").exists());
    // Nothing but the victim, the four links and the two outputs.
    assert_eq!(std::fs::read_dir(&s.0).unwrap().count(), 7);
}

/// `bertrt run --task raw --batch-size 1` on `file`: answers four lines (each as soon as
/// it arrives), then the file is truncated to nothing, then a fifth line is sent and
/// answered. Returns the exit status and the answers.
#[cfg(unix)]
fn run_through_truncation(file: &Path, no_mmap: bool) -> (std::process::ExitStatus, Vec<String>) {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bertrt"));
    cmd.args(["run", "--task", "raw", "--batch-size", "1", "--model"])
        .arg(file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if no_mmap {
        cmd.env("BERTRT_NO_MMAP", "1");
    } else {
        cmd.env_remove("BERTRT_NO_MMAP");
    }
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // A line is answered as soon as it has arrived, so the fifth one, sent after the
    // truncation, is computed from the truncated file.
    let line = b"{\"input_ids\": [[1, 2, 3]]}\n";
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut answers = vec![String::new(); 4];
    for answer in &mut answers {
        stdin.write_all(line).unwrap();
        stdin.flush().unwrap();
        out.read_line(answer).unwrap();
    }
    std::fs::OpenOptions::new()
        .write(true)
        .open(file)
        .unwrap()
        .set_len(0)
        .unwrap();
    stdin.write_all(line).unwrap();
    drop(stdin);
    answers.extend(out.lines().map_while(Result::ok));
    (child.wait().unwrap(), answers)
}

#[cfg(target_os = "linux")]
#[test]
fn no_mmap_survives_a_file_truncated_while_in_use() {
    use std::os::unix::process::ExitStatusExt;
    let s = Scratch::new("safety-no-mmap");
    let tiny = fixtures_dir().join("bert_base_tiny");
    let (read, mapped) = (s.file("read.bertrt"), s.file("mapped.bertrt"));
    pack(&tiny, &read);
    pack(&tiny, &mapped);

    let (status, answers) = run_through_truncation(&read, true);
    assert!(status.success(), "BERTRT_NO_MMAP=1: {status:?}");
    assert_eq!(answers.len(), 5);
    assert!(answers[0].contains("last_hidden_state"), "{}", answers[0]);
    assert!(answers.iter().all(|a| a.trim() == answers[0].trim()));

    // The hazard the variable exists for: a mapped file cut short kills the reader.
    let (status, mapped_answers) = run_through_truncation(&mapped, false);
    assert_eq!(
        status.signal(),
        Some(7),
        "mapped: expected SIGBUS, got {status:?}"
    );
    assert_eq!(
        mapped_answers[..4],
        answers[..4],
        "reading and mapping differ"
    );
}
