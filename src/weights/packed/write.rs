//! Writing a packed file: laid out in memory, written to a new temporary file beside the
//! output (created exclusively, so a planted file or symlink is never written through),
//! synced, then renamed over the output.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use half::{bf16, f16};

use super::{
    bad, FileEntry, Header, PackedDtype, TensorEntry, ALIGN, FORMAT_VERSION, MAGIC, PREAMBLE,
};
use crate::config::BertConfig;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// What to write: named tensors (f32), extra files, and the header fields.
pub struct PackInput<'a> {
    /// The config to embed.
    pub config: &'a BertConfig,
    /// The head the tensors serve.
    pub head: &'a str,
    /// Storage dtype.
    pub dtype: PackedDtype,
    /// (engine name, tensor) in file order.
    pub tensors: Vec<(&'a str, &'a Tensor)>,
    /// (name, bytes) of extra files.
    pub files: Vec<(String, Vec<u8>)>,
}

fn encode(t: &Tensor, dtype: PackedDtype) -> Vec<u8> {
    match dtype {
        PackedDtype::F32 => t.data().iter().flat_map(|v| v.to_le_bytes()).collect(),
        PackedDtype::F16 => t
            .data()
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_le_bytes())
            .collect(),
        PackedDtype::Bf16 => t
            .data()
            .iter()
            .flat_map(|&v| bf16::from_f32(v).to_le_bytes())
            .collect(),
    }
}

fn align(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

/// Writes a packed file atomically: to a temporary file beside `out`, then renamed.
/// `progress(done, total)` is called with bytes written.
pub fn write(out: &Path, input: PackInput, progress: &mut dyn FnMut(u64, u64)) -> Result<u64> {
    let blobs: Vec<Vec<u8>> = input
        .tensors
        .iter()
        .map(|(_, t)| encode(t, input.dtype))
        .collect();
    let file_blobs: Vec<&[u8]> = input.files.iter().map(|(_, b)| b.as_slice()).collect();
    // Lay out data after the header; the header's own size depends on the offsets it
    // holds, so iterate until it fits the space reserved for it.
    let mut reserve = 4096;
    let (header_json, total) = loop {
        let mut offset = align(PREAMBLE + reserve);
        let mut end = offset;
        let mut tensors = Vec::new();
        for ((name, t), blob) in input.tensors.iter().zip(&blobs) {
            tensors.push(TensorEntry {
                name: name.to_string(),
                shape: t.shape().to_vec(),
                offset,
                nbytes: blob.len(),
                crc32: crc32fast::hash(blob),
            });
            end = offset + blob.len();
            offset = align(end);
        }
        let mut files = Vec::new();
        for ((name, _), blob) in input.files.iter().zip(&file_blobs) {
            files.push(FileEntry {
                name: name.clone(),
                offset,
                nbytes: blob.len(),
                crc32: crc32fast::hash(blob),
            });
            end = offset + blob.len();
            offset = align(end);
        }
        let header = Header {
            dtype: input.dtype,
            head: input.head.to_string(),
            config: input.config.clone(),
            tensors,
            files,
        };
        let json = serde_json::to_vec(&header).map_err(|e| bad(out, e.to_string()))?;
        if json.len() <= reserve {
            break (json, end);
        }
        reserve = json.len().next_power_of_two();
    };
    let header_len = u32::try_from(header_json.len()).map_err(|_| bad(out, "header too large"))?;
    let (file, tmp) = create_temporary(out)?;
    let result = (|| -> std::io::Result<()> {
        let mut f = std::io::BufWriter::new(file);
        f.write_all(MAGIC)?;
        f.write_all(&FORMAT_VERSION.to_le_bytes())?;
        f.write_all(&header_len.to_le_bytes())?;
        f.write_all(&crc32fast::hash(&header_json).to_le_bytes())?;
        f.write_all(&0u32.to_le_bytes())?;
        f.write_all(&header_json)?;
        // The data starts after the space reserved for the header.
        f.write_all(&vec![0u8; reserve - header_json.len()])?;
        let mut written = (PREAMBLE + reserve) as u64;
        let blobs = blobs
            .iter()
            .map(Vec::as_slice)
            .chain(file_blobs.iter().copied());
        for blob in blobs {
            let pad = align(written as usize) - written as usize;
            f.write_all(&vec![0u8; pad])?;
            f.write_all(blob)?;
            written += (pad + blob.len()) as u64;
            progress(written, total as u64);
        }
        f.into_inner().map_err(|e| e.into_error())?.sync_all()
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(&tmp, e));
    }
    std::fs::rename(&tmp, out).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(out, e)
    })?;
    Ok(total as u64)
}

/// Creates a new file beside `out` named `OUT.partial-<pid>` (then `-1`, `-2`, ... while
/// those exist). The file is created exclusively (O_EXCL): an existing file or symlink at
/// the name, planted or left over, is skipped, never opened.
fn create_temporary(out: &Path) -> Result<(File, PathBuf)> {
    let name = out
        .file_name()
        .ok_or_else(|| Error::Input(format!("{}: not a file name", out.display())))?;
    let stem = format!("{}.partial-{}", name.to_string_lossy(), std::process::id());
    for n in 0..100 {
        let tmp = out.with_file_name(match n {
            0 => stem.clone(),
            n => format!("{stem}-{n}"),
        });
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(file) => return Ok((file, tmp)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(&tmp, e)),
        }
    }
    Err(Error::io(
        out.with_file_name(format!("{stem}-*")),
        std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "100 temporary names beside the output are taken; remove the *.partial-* files",
        ),
    ))
}
