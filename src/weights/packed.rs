//! The packed weights file: one checkpoint in engine layout (Q, K, V fused; the QA head
//! split; tied weights stored once), with its config, tokenizer and pooling files.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! 0   b"BERTRTPK"              magic
//! 8   u32 version              FORMAT_VERSION
//! 12  u32 header length        bytes of the JSON header
//! 16  u32 header crc32
//! 20  u32 reserved (0)
//! 24  JSON header              {"dtype", "head", "config", "tensors": [...], "files": [...]}
//! ... every tensor and file at a 256-byte aligned offset, each with its crc32
//! ```
//!
//! The reader checks every length, offset and checksum before use and never reads out of
//! bounds; f32 tensors are used in place from the memory map.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use half::{bf16, f16};
use memmap2::Mmap;
use serde::{Deserialize, Serialize};

use crate::config::BertConfig;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// First eight bytes of every packed file.
pub const MAGIC: &[u8; 8] = b"BERTRTPK";
/// The format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// Alignment of every tensor and file.
pub const ALIGN: usize = 256;
const PREAMBLE: usize = 24;

/// Storage dtype of a packed file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PackedDtype {
    /// 32-bit float (used in place on the CPU).
    F32,
    /// IEEE half.
    F16,
    /// bfloat16.
    Bf16,
}

impl PackedDtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            PackedDtype::F32 => 4,
            PackedDtype::F16 | PackedDtype::Bf16 => 2,
        }
    }
}

impl std::str::FromStr for PackedDtype {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" => Ok(PackedDtype::F32),
            "f16" => Ok(PackedDtype::F16),
            "bf16" => Ok(PackedDtype::Bf16),
            other => Err(Error::Unsupported(format!(
                "unknown dtype {other:?}; expected f32, f16 or bf16"
            ))),
        }
    }
}

/// A tensor entry of the header.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TensorEntry {
    /// Engine name, e.g. `bert.encoder.layer.0.attention.self.qkv.weight`.
    pub name: String,
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Absolute byte offset (a multiple of 256).
    pub offset: usize,
    /// Byte length.
    pub nbytes: usize,
    /// crc32 of the bytes.
    pub crc32: u32,
}

/// A file entry of the header (tokenizer.json, vocab.txt, pooling config, ...).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the checkpoint folder.
    pub name: String,
    /// Absolute byte offset (a multiple of 256).
    pub offset: usize,
    /// Byte length.
    pub nbytes: usize,
    /// crc32 of the bytes.
    pub crc32: u32,
}

/// The JSON header.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Header {
    /// Storage dtype of every tensor.
    pub dtype: PackedDtype,
    /// The head the weights were packed for (Hugging Face class name).
    pub head: String,
    /// The checkpoint's config.json.
    pub config: BertConfig,
    /// Tensors in file order.
    pub tensors: Vec<TensorEntry>,
    /// Extra files in file order.
    pub files: Vec<FileEntry>,
}

/// An opened, validated packed file.
pub struct PackedFile {
    path: PathBuf,
    map: Arc<Mmap>,
    header: Header,
}

fn bad(path: &Path, message: impl Into<String>) -> Error {
    Error::checkpoint(path, message)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Checks that `offset..offset + nbytes` is aligned and inside a file of `len` bytes.
fn check_range(path: &Path, what: &str, offset: usize, nbytes: usize, len: usize) -> Result<()> {
    if !offset.is_multiple_of(ALIGN) {
        return Err(bad(
            path,
            format!("{what}: offset {offset} is not {ALIGN}-byte aligned"),
        ));
    }
    match offset.checked_add(nbytes) {
        Some(end) if end <= len => Ok(()),
        _ => Err(bad(
            path,
            format!("{what}: bytes {offset}+{nbytes} run past the end of the file ({len} bytes): truncated or corrupt"),
        )),
    }
}

impl PackedFile {
    /// Opens and validates a packed file: magic, version, header checksum, every entry's
    /// range and every tensor's and file's checksum.
    pub fn open(path: &Path) -> Result<PackedFile> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: read-only private map; the file is not modified while mapped by us.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let len = map.len();
        if len < PREAMBLE {
            return Err(bad(
                path,
                format!("{len} bytes: too short for a bertrt packed file (truncated?)"),
            ));
        }
        if &map[..8] != MAGIC {
            return Err(bad(path, "not a bertrt packed file (wrong magic bytes)"));
        }
        let version = u32_at(&map, 8);
        if version != FORMAT_VERSION {
            return Err(bad(path, format!(
                "packed format version {version}; this build reads version {FORMAT_VERSION} (re-run convert)"
            )));
        }
        let header_len = u32_at(&map, 12) as usize;
        if PREAMBLE + header_len > len {
            return Err(bad(path, format!(
                "header length {header_len} runs past the end of the file ({len} bytes): truncated or corrupt"
            )));
        }
        let header_bytes = &map[PREAMBLE..PREAMBLE + header_len];
        if crc32fast::hash(header_bytes) != u32_at(&map, 16) {
            return Err(bad(path, "header checksum mismatch: the file is corrupt"));
        }
        let header: Header = serde_json::from_slice(header_bytes)
            .map_err(|e| bad(path, format!("header is not valid: {e}")))?;
        header.config.validate()?;
        for t in &header.tensors {
            let elements = t
                .shape
                .iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .and_then(|n| n.checked_mul(header.dtype.size()));
            if elements != Some(t.nbytes) {
                return Err(bad(
                    path,
                    format!(
                        "tensor `{}`: {} bytes do not match shape {:?}",
                        t.name, t.nbytes, t.shape
                    ),
                ));
            }
            check_range(
                path,
                &format!("tensor `{}`", t.name),
                t.offset,
                t.nbytes,
                len,
            )?;
            if crc32fast::hash(&map[t.offset..t.offset + t.nbytes]) != t.crc32 {
                return Err(bad(
                    path,
                    format!(
                        "tensor `{}`: checksum mismatch: the file is corrupt",
                        t.name
                    ),
                ));
            }
        }
        for f in &header.files {
            check_range(path, &format!("file `{}`", f.name), f.offset, f.nbytes, len)?;
            if crc32fast::hash(&map[f.offset..f.offset + f.nbytes]) != f.crc32 {
                return Err(bad(
                    path,
                    format!("file `{}`: checksum mismatch: the file is corrupt", f.name),
                ));
            }
        }
        Ok(PackedFile {
            path: path.to_path_buf(),
            map: Arc::new(map),
            header,
        })
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Total size in bytes.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True for an empty map (never for a valid file).
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The bytes of an extra file (tokenizer.json, ...), if packed.
    pub fn file(&self, name: &str) -> Option<&[u8]> {
        self.header
            .files
            .iter()
            .find(|f| f.name == name)
            .map(|f| &self.map[f.offset..f.offset + f.nbytes])
    }

    /// True if a tensor of this name is packed.
    pub fn contains(&self, name: &str) -> bool {
        self.header.tensors.iter().any(|t| t.name == name)
    }

    /// A tensor as f32: in place for f32 files, converted for f16 and bf16.
    pub fn tensor(&self, name: &str) -> Result<Option<Tensor>> {
        let Some(t) = self.header.tensors.iter().find(|t| t.name == name) else {
            return Ok(None);
        };
        let bytes = &self.map[t.offset..t.offset + t.nbytes];
        let tensor = match self.header.dtype {
            PackedDtype::F32 => Tensor::mapped(t.shape.clone(), Arc::clone(&self.map), t.offset),
            PackedDtype::F16 => Tensor::new(
                t.shape.clone(),
                bytes
                    .chunks_exact(2)
                    .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
            ),
            PackedDtype::Bf16 => Tensor::new(
                t.shape.clone(),
                bytes
                    .chunks_exact(2)
                    .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
            ),
        };
        tensor.map(Some).ok_or_else(|| {
            bad(
                &self.path,
                format!("tensor `{name}` is misaligned or out of bounds"),
            )
        })
    }
}

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
    let tmp = out.with_extension(format!("partial-{}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::io::BufWriter::new(File::create(&tmp)?);
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
