//! The bytes of a weights file: memory-mapped (the default), or read into memory.
//!
//! A mapped file must not change while it is in use: if it is truncated (or rewritten in
//! place) underneath a running model, the next read of a lost page kills the process with
//! SIGBUS, which no Rust code can catch. For files on storage that can change underneath
//! (network file systems, files other programs rewrite), set `BERTRT_NO_MMAP=1` or pass
//! [`Access::Read`]: the file is then read once into memory (and f32 tensors copied out
//! of it at load), so later changes to it cannot reach the model.

use std::fs::File;
use std::io::Read;
use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;

use memmap2::Mmap;

use crate::error::{Error, Result};

/// How a weights file is brought into memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Memory-map it (fast, shares the page cache; the file must not change while used).
    Map,
    /// Read it into memory (safe against changes to the file, costs its size in memory).
    Read,
}

impl Access {
    /// `Read` when `BERTRT_NO_MMAP` is set to anything but empty or `0`, else `Map`.
    pub fn from_env() -> Access {
        match std::env::var_os("BERTRT_NO_MMAP") {
            Some(v) if !v.is_empty() && v != "0" => Access::Read,
            _ => Access::Map,
        }
    }
}

/// A weights file's bytes.
pub(crate) enum Bytes {
    /// Mapped read-only; tensors may borrow the map.
    Mapped(Arc<Mmap>),
    /// Read into memory.
    Read(Vec<u8>),
}

impl Bytes {
    /// Maps or reads the file at `path`.
    pub(crate) fn open(path: &Path, access: Access) -> Result<Bytes> {
        let io = |e| Error::io(path, e);
        let mut file = File::open(path).map_err(io)?;
        match access {
            // SAFETY: a read-only private map; the file changing underneath is the hazard
            // this module's documentation describes, and `Access::Read` avoids.
            Access::Map => Ok(Bytes::Mapped(Arc::new(
                unsafe { Mmap::map(&file) }.map_err(io)?,
            ))),
            Access::Read => {
                let mut bytes = Vec::new();
                file.read_to_end(&mut bytes).map_err(io)?;
                Ok(Bytes::Read(bytes))
            }
        }
    }
}

impl Bytes {
    /// Says that `range` (bytes of the file) will not be read again soon: a mapped file's
    /// pages there leave the process's resident set (they stay in the page cache, and a
    /// later read brings the same bytes back from the file). Loading calls it for each
    /// tensor it has copied out, so that a checkpoint's load does not hold the file and
    /// its decoded copy in memory at once. Does nothing for read bytes.
    pub(crate) fn release(&self, range: std::ops::Range<usize>) {
        #[cfg(unix)]
        if let Bytes::Mapped(map) = self {
            // SAFETY: the map is private and read-only, so it holds no changes for
            // DontNeed to drop, and no reference into `range` outlives this call's
            // callers' copies; a later read refaults the file's unchanged bytes. A failed
            // advice only leaves the pages resident.
            let _ = unsafe {
                map.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    range.start,
                    range.len(),
                )
            };
        }
        #[cfg(not(unix))]
        let _ = range;
    }
}

impl Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(map) => map,
            Bytes::Read(bytes) => bytes,
        }
    }
}
