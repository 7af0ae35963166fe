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
//! bounds; it refuses entries that overlap each other or the header, repeated names and an
//! unknown head, so a file it accepts is one the writer could have made. f32 tensors are
//! used in place from the memory map (or copied, when the file is read instead: see
//! [`Access`]).

mod write;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use half::{bf16, f16};
use serde::{Deserialize, Serialize};

pub use super::bytes::Access;
use super::bytes::Bytes;
use crate::config::BertConfig;
use crate::error::{Error, Result};
use crate::model::Head;
use crate::tensor::Tensor;
pub use write::{write, PackInput};

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
    bytes: Bytes,
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

/// One entry's bytes, for the layout checks.
struct Span {
    what: String,
    start: usize,
    end: usize,
}

/// Little-endian values of N bytes each, as f32.
fn widen<const N: usize>(bytes: &[u8], value: impl Fn([u8; N]) -> f32) -> Vec<f32> {
    bytes
        .chunks_exact(N)
        .map(|c| {
            let mut b = [0u8; N];
            b.copy_from_slice(c);
            value(b)
        })
        .collect()
}

/// Checks the header's entries against each other and the file: a known head, sizes that
/// match shapes, every entry aligned, inside the file and after the header, no two
/// entries of a kind with one name, and no two entries sharing a byte.
fn check_layout(path: &Path, header: &Header, header_end: usize, len: usize) -> Result<()> {
    header
        .head
        .parse::<Head>()
        .map_err(|e| bad(path, format!("header: {e}")))?;
    let mut spans = Vec::with_capacity(header.tensors.len() + header.files.len());
    let mut names = HashSet::new();
    // Each entry's bytes, once per name of its kind.
    let mut entry = |kind: &'static str, name: &str, offset: usize, nbytes: usize| {
        spans.push(span(path, format!("{kind} `{name}`"), offset, nbytes, len)?);
        match names.insert((kind, name.to_string())) {
            true => Ok(()),
            false => Err(bad(path, format!("{kind} `{name}` appears more than once"))),
        }
    };
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
        entry("tensor", &t.name, t.offset, t.nbytes)?;
    }
    for f in &header.files {
        entry("file", &f.name, f.offset, f.nbytes)?;
    }
    spans.retain(|s| s.end > s.start);
    spans.sort_by_key(|s| s.start);
    let mut last: Option<&Span> = None;
    for s in &spans {
        if s.start < header_end {
            return Err(bad(
                path,
                format!(
                    "{} (bytes {}..{}) overlaps the header (bytes 0..{header_end})",
                    s.what, s.start, s.end
                ),
            ));
        }
        if let Some(prev) = last.filter(|p| p.end > s.start) {
            return Err(bad(
                path,
                format!(
                    "{} (bytes {}..{}) overlaps {} (bytes {}..{})",
                    s.what, s.start, s.end, prev.what, prev.start, prev.end
                ),
            ));
        }
        last = match last {
            Some(prev) if prev.end >= s.end => Some(prev),
            _ => Some(s),
        };
    }
    Ok(())
}

fn span(path: &Path, what: String, start: usize, nbytes: usize, len: usize) -> Result<Span> {
    check_range(path, &what, start, nbytes, len)?;
    Ok(Span {
        what,
        start,
        end: start + nbytes,
    })
}

impl PackedFile {
    /// Opens and validates a packed file (see [`PackedFile::open_with`]), memory-mapped
    /// unless `BERTRT_NO_MMAP=1` asks for it to be read. A mapped file must not be
    /// truncated or rewritten while the model that uses it runs: the process would die of
    /// SIGBUS ([`Access`] explains).
    pub fn open(path: &Path) -> Result<PackedFile> {
        Self::open_with(path, Access::from_env())
    }

    /// Opens and validates a packed file: magic, version, header checksum, the layout
    /// (every entry aligned, in bounds, after the header and apart from the others; unique
    /// names; a known head) and every tensor's and file's checksum.
    pub fn open_with(path: &Path, access: Access) -> Result<PackedFile> {
        if path.is_dir() {
            return Err(bad(
                path,
                format!(
                    "is a folder, not a packed file (the one file tools/convert writes); \
                     pack the checkpoint folder first: `convert {} OUT.bertrt`",
                    path.display()
                ),
            ));
        }
        let bytes = Bytes::open(path, access)?;
        let len = bytes.len();
        if len < PREAMBLE {
            return Err(bad(
                path,
                format!("{len} bytes: too short for a bertrt packed file (truncated?)"),
            ));
        }
        if &bytes[..8] != MAGIC {
            return Err(bad(path, "not a bertrt packed file (wrong magic bytes)"));
        }
        let version = u32_at(&bytes, 8);
        if version != FORMAT_VERSION {
            return Err(bad(path, format!(
                "packed format version {version}; this build reads version {FORMAT_VERSION} (re-run convert)"
            )));
        }
        let header_len = u32_at(&bytes, 12) as usize;
        if PREAMBLE + header_len > len {
            return Err(bad(path, format!(
                "header length {header_len} runs past the end of the file ({len} bytes): truncated or corrupt"
            )));
        }
        let header_bytes = &bytes[PREAMBLE..PREAMBLE + header_len];
        if crc32fast::hash(header_bytes) != u32_at(&bytes, 16) {
            return Err(bad(path, "header checksum mismatch: the file is corrupt"));
        }
        let header: Header = serde_json::from_slice(header_bytes)
            .map_err(|e| bad(path, format!("header is not valid: {e}")))?;
        header.config.validate()?;
        check_layout(path, &header, PREAMBLE + header_len, len)?;
        let entries = header
            .tensors
            .iter()
            .map(|t| ("tensor", &t.name, t.offset, t.nbytes, t.crc32))
            .chain(
                header
                    .files
                    .iter()
                    .map(|f| ("file", &f.name, f.offset, f.nbytes, f.crc32)),
            );
        for (kind, name, offset, nbytes, crc) in entries {
            if crc32fast::hash(&bytes[offset..offset + nbytes]) != crc {
                return Err(bad(
                    path,
                    format!("{kind} `{name}`: checksum mismatch: the file is corrupt"),
                ));
            }
        }
        Ok(PackedFile {
            path: path.to_path_buf(),
            bytes,
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
        self.bytes.len()
    }

    /// True for an empty map (never for a valid file).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The bytes of an extra file (tokenizer.json, ...), if packed.
    pub fn file(&self, name: &str) -> Option<&[u8]> {
        self.header
            .files
            .iter()
            .find(|f| f.name == name)
            .map(|f| &self.bytes[f.offset..f.offset + f.nbytes])
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
        let bytes = &self.bytes[t.offset..t.offset + t.nbytes];
        let tensor = match (self.header.dtype, &self.bytes) {
            (PackedDtype::F32, Bytes::Mapped(map)) => {
                Tensor::mapped(t.shape.clone(), Arc::clone(map), t.offset)
            }
            (PackedDtype::F32, Bytes::Read(_)) => {
                Tensor::new(t.shape.clone(), widen(bytes, f32::from_le_bytes))
            }
            (PackedDtype::F16, _) => Tensor::new(
                t.shape.clone(),
                widen(bytes, |b| f16::from_le_bytes(b).to_f32()),
            ),
            (PackedDtype::Bf16, _) => Tensor::new(
                t.shape.clone(),
                widen(bytes, |b| bf16::from_le_bytes(b).to_f32()),
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
