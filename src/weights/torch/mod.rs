//! pytorch_model.bin: the zip archive `torch.save` writes (`{name}/data.pkl`, the state
//! dict's pickle, and `{name}/data/{key}`, one entry per storage), read without Python.
//!
//! The pickle goes through a restricted unpickler ([`pickle`]) that knows only what a
//! state dict holds. Storages stored uncompressed (as torch.save writes them) are used in
//! place in the mapped file; compressed ones are inflated once at open. Tensors are views
//! (offset, size, strides) into storages, read to f32 on request with every index
//! bounds-checked. The legacy (pre-1.6, non-zip) format is refused with an error that says
//! how to re-save the file.

mod pickle;

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use half::{bf16, f16};

use super::bytes::{Access, Bytes};
use crate::error::{Error, Result};
pub use pickle::{StorageType, TensorRef};

/// Where a storage's bytes are.
enum Storage {
    /// A range of the mapped file (an uncompressed entry).
    InPlace(std::ops::Range<usize>),
    /// An inflated copy (a compressed entry).
    Owned(Vec<u8>),
}

/// One pytorch_model.bin: its tensors and their storages.
pub struct TorchFile {
    path: PathBuf,
    map: Bytes,
    storages: HashMap<String, Storage>,
    tensors: HashMap<String, TensorRef>,
}

impl TorchFile {
    /// Opens and checks a torch.save zip archive of a state dict.
    pub fn open(path: &Path) -> Result<TorchFile> {
        let map = Bytes::open(path, Access::from_env())?;
        let bad = |m: String| Error::checkpoint(path, m);
        if map.len() >= 2 && map[..2] != *b"PK" {
            return Err(bad(
                "not a zip archive: the legacy (before PyTorch 1.6) pytorch_model.bin format \
                 is not read; re-save it with a current torch (`torch.save(torch.load(F), F)`)"
                    .into(),
            ));
        }
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(&map[..]))
            .map_err(|e| bad(format!("not a valid zip archive: {e}")))?;
        let names: Vec<String> = zip.file_names().map(str::to_string).collect();
        let pkl = names
            .iter()
            .find(|n| n.ends_with("/data.pkl") || n.as_str() == "data.pkl")
            .ok_or_else(|| bad("no data.pkl in the archive: not a torch.save file".into()))?
            .clone();
        let prefix = pkl.strip_suffix("data.pkl").unwrap_or("").to_string();
        let mut pickle = Vec::new();
        zip.by_name(&pkl)
            .map_err(|e| bad(format!("{pkl}: {e}")))?
            .take(1 << 30)
            .read_to_end(&mut pickle)
            .map_err(|e| bad(format!("{pkl}: {e}")))?;
        let dict = pickle::state_dict(&pickle).map_err(|e| bad(e.to_string()))?;
        let mut storages = HashMap::new();
        for (_, t) in &dict {
            if storages.contains_key(&t.key) {
                continue;
            }
            let entry = format!("{prefix}data/{}", t.key);
            let mut file = zip
                .by_name(&entry)
                .map_err(|e| bad(format!("storage {}: {e}", t.key)))?;
            let storage = match file.compression() {
                zip::CompressionMethod::Stored => {
                    let start = usize::try_from(file.data_start())
                        .map_err(|_| bad(format!("storage {}: out of range", t.key)))?;
                    let end = usize::try_from(file.size())
                        .ok()
                        .and_then(|n| start.checked_add(n))
                        .filter(|&end| end <= map.len())
                        .ok_or_else(|| bad(format!("storage {}: out of range", t.key)))?;
                    Storage::InPlace(start..end)
                }
                _ => {
                    let mut bytes = Vec::new();
                    file.read_to_end(&mut bytes)
                        .map_err(|e| bad(format!("storage {}: {e}", t.key)))?;
                    Storage::Owned(bytes)
                }
            };
            storages.insert(t.key.clone(), storage);
        }
        let mut file = TorchFile {
            path: path.to_path_buf(),
            map,
            storages,
            tensors: HashMap::new(),
        };
        for (name, t) in dict {
            file.check(&name, &t)?;
            file.tensors.insert(name, t);
        }
        Ok(file)
    }

    /// The tensor names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// The bytes of a storage.
    fn storage(&self, key: &str) -> Option<&[u8]> {
        match self.storages.get(key)? {
            Storage::InPlace(r) => self.map.get(r.clone()),
            Storage::Owned(v) => Some(v),
        }
    }

    /// A view that stays inside its storage.
    fn check(&self, name: &str, t: &TensorRef) -> Result<()> {
        let bytes = self.storage(&t.key).map_or(0, <[u8]>::len);
        let elements = bytes / t.dtype.size();
        let numel = t
            .size
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .ok_or_else(|| Error::checkpoint(&self.path, format!("tensor `{name}`: too large")))?;
        if numel == 0 {
            return Ok(());
        }
        let last = t
            .size
            .iter()
            .zip(&t.stride)
            .try_fold(t.offset, |at, (&d, &s)| {
                (d - 1).checked_mul(s).and_then(|x| at.checked_add(x))
            });
        match last {
            Some(last) if last < elements => Ok(()),
            _ => Err(Error::checkpoint(
                &self.path,
                format!(
                    "tensor `{name}`: its view (offset {}, size {:?}, stride {:?}) is outside \
                     its storage of {elements} elements",
                    t.offset, t.size, t.stride
                ),
            )),
        }
    }

    /// Reads a tensor as f32, with its shape.
    pub fn read_f32(&self, name: &str) -> Result<Option<(Vec<usize>, Vec<f32>)>> {
        let Some(t) = self.tensors.get(name) else {
            return Ok(None);
        };
        let bytes = self
            .storage(&t.key)
            .ok_or_else(|| Error::checkpoint(&self.path, format!("tensor `{name}`: no storage")))?;
        let size = t.dtype.size();
        let value = |i: usize| -> f32 {
            let b = &bytes[i * size..(i + 1) * size];
            match t.dtype {
                StorageType::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                StorageType::F16 => f16::from_le_bytes([b[0], b[1]]).to_f32(),
                StorageType::BF16 => bf16::from_le_bytes([b[0], b[1]]).to_f32(),
                StorageType::F64 => {
                    f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
                }
                StorageType::I64 => {
                    i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
                }
                StorageType::I32 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32,
                StorageType::I16 => i16::from_le_bytes([b[0], b[1]]) as f32,
                StorageType::I8 => b[0] as i8 as f32,
                StorageType::U8 | StorageType::Bool => b[0] as f32,
            }
        };
        let numel: usize = t.size.iter().product();
        let mut expected = 1;
        let contiguous = t.size.iter().zip(&t.stride).rev().all(|(&d, &s)| {
            let ok = d == 1 || s == expected;
            expected *= d;
            ok
        });
        if contiguous {
            let out = (t.offset..t.offset + numel).map(value).collect();
            return Ok(Some((t.size.clone(), out)));
        }
        let mut out = Vec::with_capacity(numel);
        // Walk the view in row-major order (`check` kept every index in the storage).
        let mut index = vec![0usize; t.size.len()];
        for _ in 0..numel {
            let at = t.offset
                + index
                    .iter()
                    .zip(&t.stride)
                    .map(|(i, s)| i * s)
                    .sum::<usize>();
            out.push(value(at));
            for d in (0..index.len()).rev() {
                index[d] += 1;
                if index[d] < t.size[d] {
                    break;
                }
                index[d] = 0;
            }
        }
        Ok(Some((t.size.clone(), out)))
    }
}
