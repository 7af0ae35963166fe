//! The record of a verified model folder, `.bertrt-verified`: the package it holds and, per
//! pinned file, a stamp (sha256 of the size, times, inode and sampled content), written
//! when the files were last hashed in full.
//!
//! Every load checks each file's size against the pin and its stamp against the record:
//! about 16 small reads per file. A file whose stamp differs (touched, copied, restored
//! from a backup, or changed) is hashed in full; if it still matches its pinned sha256 the
//! record is renewed, otherwise the load fails and says to delete the folder.

use std::collections::BTreeMap;
use std::fs::{self, File, Metadata};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{hex, Package, Pinned};
use crate::error::{Error, Result};

/// The record's file name inside the model folder.
const RECORD: &str = ".bertrt-verified";
/// Blocks of content that go into a stamp, and their size.
const SAMPLES: u64 = 16;
const SAMPLE: u64 = 4096;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Record {
    package: String,
    /// Pinned file name -> stamp.
    stamps: BTreeMap<String, String>,
}

/// What a model folder's record says.
pub(super) enum State {
    /// No folder, no record, or a record of another package: install.
    Absent,
    /// Every file has its pinned size and recorded stamp.
    Fresh,
    /// These files look changed: hash them in full.
    Changed(Vec<String>),
}

/// Compares the folder's files with its record. A missing file or a wrong size is an
/// error (the folder was changed after it was verified).
pub(super) fn check(dir: &Path, pkg: &Package) -> Result<State> {
    let path = dir.join(RECORD);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::Absent),
        Err(e) => return Err(Error::io(path, e)),
    };
    // Earlier versions wrote the requirement alone: a record without stamps, so every file
    // is hashed once. An unreadable record is treated the same way.
    let record = serde_json::from_slice::<Record>(&bytes).unwrap_or_else(|_| Record {
        package: String::from_utf8_lossy(&bytes).trim().to_string(),
        stamps: BTreeMap::new(),
    });
    if record.package != pkg.requirement {
        return Ok(State::Absent);
    }
    let mut changed = Vec::new();
    for pin in pkg.files {
        let path = dir.join(pin.name);
        let meta = fs::metadata(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => changed_error(dir, pin, "is missing".into()),
            _ => Error::io(&path, e),
        })?;
        if meta.len() != pin.size {
            let what = format!("has {} bytes, not the pinned {}", meta.len(), pin.size);
            return Err(changed_error(dir, pin, what));
        }
        if record.stamps.get(pin.name) != Some(&stamp(&path, &meta)?) {
            changed.push(pin.name.to_string());
        }
    }
    Ok(if changed.is_empty() {
        State::Fresh
    } else {
        State::Changed(changed)
    })
}

/// Hashes the `changed` files in full; if each matches its pin, renews the record. Call
/// with the install lock held.
pub(super) fn reverify(dir: &Path, pkg: &Package, changed: &[String]) -> Result<()> {
    for pin in pkg
        .files
        .iter()
        .filter(|p| changed.iter().any(|c| c == p.name))
    {
        let path = dir.join(pin.name);
        let mut file = File::open(&path).map_err(|e| Error::io(&path, e))?;
        let mut hasher = Sha256::new();
        std::io::copy(&mut file, &mut hasher).map_err(|e| Error::io(&path, e))?;
        let got = hex(&hasher.finalize());
        if got != pin.sha256 {
            let what = format!("has sha256 {got}, not the pinned {}", pin.sha256);
            return Err(changed_error(dir, pin, what));
        }
    }
    write(dir, pkg)
}

/// Records the current stamps of `dir`'s files, which the caller has just verified
/// against their pins. The record is replaced atomically.
pub(super) fn write(dir: &Path, pkg: &Package) -> Result<()> {
    let mut stamps = BTreeMap::new();
    for pin in pkg.files {
        let path = dir.join(pin.name);
        let meta = fs::metadata(&path).map_err(|e| Error::io(&path, e))?;
        stamps.insert(pin.name.to_string(), stamp(&path, &meta)?);
    }
    let record = Record {
        package: pkg.requirement.to_string(),
        stamps,
    };
    let json = serde_json::to_vec_pretty(&record).map_err(|e| Error::Internal(e.to_string()))?;
    let tmp = dir.join(format!("{RECORD}.{}.tmp", std::process::id()));
    let path = dir.join(RECORD);
    fs::write(&tmp, json)
        .and_then(|()| fs::rename(&tmp, &path))
        .map_err(|e| {
            let _ = fs::remove_file(&tmp);
            Error::io(&path, e)
        })
}

/// The error for a cached file that no longer is what was verified, with the fix.
fn changed_error(dir: &Path, pin: &Pinned, what: String) -> Error {
    Error::checkpoint(
        dir.join(pin.name),
        format!(
            "the cached default model was changed after it was verified: {} {what}. \
             Delete the folder {} and run again to fetch the model afresh",
            pin.name,
            dir.display()
        ),
    )
}

/// A cheap fingerprint of a file: its size, modification and change times, inode, and
/// `SAMPLES` evenly spaced blocks of its content (all of it when small).
fn stamp(path: &Path, meta: &Metadata) -> Result<String> {
    let io = |e| Error::io(path, e);
    let mut hasher = Sha256::new();
    let len = meta.len();
    hasher.update(len.to_le_bytes());
    if let Ok(since) = meta
        .modified()
        .map(|t| t.duration_since(std::time::UNIX_EPOCH))
    {
        hasher.update(since.unwrap_or_default().as_nanos().to_le_bytes());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        for v in [
            meta.ctime(),
            meta.ctime_nsec(),
            meta.ino() as i64,
            meta.dev() as i64,
        ] {
            hasher.update(v.to_le_bytes());
        }
    }
    let mut file = File::open(path).map_err(io)?;
    if len <= SAMPLES * SAMPLE {
        std::io::copy(&mut file, &mut hasher).map_err(io)?;
    } else {
        let mut block = vec![0u8; SAMPLE as usize];
        for i in 0..SAMPLES {
            let at = i * (len - SAMPLE) / (SAMPLES - 1);
            file.seek(SeekFrom::Start(at)).map_err(io)?;
            file.read_exact(&mut block).map_err(io)?;
            hasher.update(&block);
        }
    }
    Ok(hex(&hasher.finalize()))
}
