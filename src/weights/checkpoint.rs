//! A Hugging Face checkpoint on disk: one model.safetensors or a sharded set with
//! model.safetensors.index.json; else pytorch_model.bin (or a sharded set with
//! pytorch_model.bin.index.json, read by [`super::torch`]). Files are memory-mapped (read instead with
//! `BERTRT_NO_MMAP=1`, see [`Access`](super::Access)); tensors are decoded to f32 on
//! request (safetensors data may be unaligned, so it is copied, never cast in place).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use safetensors::tensor::Metadata;
use safetensors::{Dtype, SafeTensors};

use super::bytes::{Access, Bytes};
use super::torch::TorchFile;
use crate::error::{Error, Result};

/// One mapped (or read) safetensors file with its header, parsed (and validated) once
/// at open.
struct MappedFile {
    path: PathBuf,
    map: Bytes,
    /// Byte offset of the data section (8 + header length).
    data_start: usize,
    meta: Metadata,
}

/// One weights file of a checkpoint.
enum WeightsFile {
    Safetensors(MappedFile),
    Torch(TorchFile),
}

/// The weights files of one checkpoint, with a name -> file index.
pub struct Checkpoint {
    files: Vec<WeightsFile>,
    index: HashMap<String, usize>,
}

impl Checkpoint {
    /// Opens the weights of a checkpoint folder.
    ///
    /// Looks for model.safetensors, then model.safetensors.index.json. A folder with only
    /// pytorch_model.bin gets an error that explains how to convert it.
    pub fn open_dir(dir: &Path) -> Result<Self> {
        let single = dir.join("model.safetensors");
        if single.is_file() {
            return Self::open_files(&[single]);
        }
        let index = dir.join("model.safetensors.index.json");
        if index.is_file() {
            return Self::open_index(&index);
        }
        let bin = dir.join("pytorch_model.bin");
        if bin.is_file() {
            return Self::open_torch(&[bin]);
        }
        let bin_index = dir.join("pytorch_model.bin.index.json");
        if bin_index.is_file() {
            return Self::open_torch(&Self::shards(&bin_index)?);
        }
        let others: Vec<&str> = [
            "tf_model.h5",
            "flax_model.msgpack",
            "model.ckpt.index",
            "rust_model.ot",
        ]
        .into_iter()
        .filter(|f| dir.join(f).is_file())
        .collect();
        Err(Error::checkpoint(
            dir,
            match others.is_empty() {
                true => "no weights here: bertrt reads model.safetensors (or \
                         model.safetensors.index.json) and pytorch_model.bin (or \
                         pytorch_model.bin.index.json)"
                    .to_string(),
                false => format!(
                    "only {} here, which bertrt does not read: it reads model.safetensors and \
                     pytorch_model.bin (sharded or not); save the model from transformers with \
                     `save_pretrained(DIR)`",
                    others.join(", ")
                ),
            },
        ))
    }

    /// Opens pytorch_model.bin files as one checkpoint.
    fn open_torch(paths: &[PathBuf]) -> Result<Self> {
        let mut files = Vec::with_capacity(paths.len());
        let mut index = HashMap::new();
        for (i, path) in paths.iter().enumerate() {
            let file = TorchFile::open(path)?;
            for name in file.names() {
                index.insert(name.to_string(), i);
            }
            files.push(WeightsFile::Torch(file));
        }
        Ok(Checkpoint { files, index })
    }

    /// The shard files an index names (`weight_map` values), sorted, each once.
    fn shards(index_path: &Path) -> Result<Vec<PathBuf>> {
        let text = std::fs::read_to_string(index_path).map_err(|e| Error::io(index_path, e))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::checkpoint(index_path, format!("invalid JSON: {e}")))?;
        let map = json
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| Error::checkpoint(index_path, "no `weight_map` object"))?;
        let dir = index_path.parent().unwrap_or(Path::new("."));
        let mut shards: Vec<String> = map
            .values()
            .map(|v| {
                v.as_str().map(str::to_string).ok_or_else(|| {
                    Error::checkpoint(index_path, "weight_map values must be file names")
                })
            })
            .collect::<Result<_>>()?;
        shards.sort();
        shards.dedup();
        for s in &shards {
            if s.contains('/') || s.contains('\\') || s == ".." {
                return Err(Error::checkpoint(
                    index_path,
                    format!("shard {s:?} is not a file name"),
                ));
            }
        }
        Ok(shards.iter().map(|s| dir.join(s)).collect())
    }

    fn open_index(index_path: &Path) -> Result<Self> {
        Self::open_files(&Self::shards(index_path)?)
    }

    /// Opens a list of safetensors files as one checkpoint.
    pub fn open_files(paths: &[PathBuf]) -> Result<Self> {
        let mut files = Vec::with_capacity(paths.len());
        let mut index = HashMap::new();
        for (i, path) in paths.iter().enumerate() {
            let bytes = Bytes::open(path, Access::from_env())?;
            let invalid = |e| Error::checkpoint(path, format!("not a valid safetensors file: {e}"));
            // deserialize validates every tensor's range; keep only the parsed header.
            SafeTensors::deserialize(&bytes).map_err(invalid)?;
            let (header_len, meta) = SafeTensors::read_metadata(&bytes).map_err(invalid)?;
            for name in meta.tensors().keys() {
                index.insert(name.clone(), i);
            }
            files.push(WeightsFile::Safetensors(MappedFile {
                path: path.clone(),
                map: bytes,
                data_start: 8 + header_len,
                meta,
            }));
        }
        Ok(Checkpoint { files, index })
    }

    /// True if the checkpoint stores a tensor of this exact name.
    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// All tensor names, unordered.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }

    /// Reads a tensor as f32 (from f32, f16, bf16 or f64 storage), with its shape.
    pub fn read_f32(&self, name: &str) -> Result<Option<(Vec<usize>, Vec<f32>)>> {
        let Some(&i) = self.index.get(name) else {
            return Ok(None);
        };
        let file = match &self.files[i] {
            WeightsFile::Safetensors(f) => f,
            WeightsFile::Torch(f) => return f.read_f32(name),
        };
        let path = &file.path;
        let info = file
            .meta
            .info(name)
            .ok_or_else(|| Error::checkpoint(path, format!("tensor `{name}` not in the header")))?;
        let (start, end) = info.data_offsets;
        let bytes = file
            .map
            .get(file.data_start + start..file.data_start + end)
            .ok_or_else(|| {
                Error::checkpoint(path, format!("tensor `{name}`: data out of bounds"))
            })?;
        let data: Vec<f32> = match info.dtype {
            Dtype::F32 => bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => bytes
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::BF16 => bytes
                .chunks_exact(2)
                .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::F64 => bytes
                .chunks_exact(8)
                .map(|c| {
                    f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
                })
                .collect(),
            other => {
                return Err(Error::checkpoint(
                    path,
                    format!("tensor `{name}` has dtype {other:?}; expected F32, F16, BF16 or F64"),
                ))
            }
        };
        file.map
            .release(file.data_start + start..file.data_start + end);
        Ok(Some((info.shape.clone(), data)))
    }
}
