//! A model on disk: a Hugging Face checkpoint folder or a packed file. Both give the
//! config, the weights and the side files (tokenizer, pooling) by name.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::{Checkpoint, PackedFile, WeightSource};
use crate::config::BertConfig;
use crate::error::{Error, Result};

/// Files beside the weights that bertrt reads when present: tokenizer and
/// sentence-transformers pooling settings.
pub const SIDE_FILES: [&str; 8] = [
    "tokenizer.json",
    "vocab.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "1_Pooling/config.json",
];

/// A checkpoint folder or a packed file.
pub enum ModelSource {
    /// config.json + safetensors (+ tokenizer files) in a folder.
    Dir {
        /// The folder.
        dir: PathBuf,
        /// Its weights.
        checkpoint: Checkpoint,
        /// Its config.json.
        config: BertConfig,
    },
    /// A file written by tools/convert.
    Packed(PackedFile),
}

impl ModelSource {
    /// Opens a folder or a packed file.
    pub fn open(path: &Path) -> Result<ModelSource> {
        if path.is_file() {
            return PackedFile::open(path).map(ModelSource::Packed);
        }
        if !path.is_dir() {
            return Err(Error::io(
                path,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "model not found (expected a checkpoint folder or a packed .bertrt file)",
                ),
            ));
        }
        Ok(ModelSource::Dir {
            config: BertConfig::from_file(&path.join("config.json"))?,
            checkpoint: Checkpoint::open_dir(path)?,
            dir: path.to_path_buf(),
        })
    }

    /// The model config.
    pub fn config(&self) -> &BertConfig {
        match self {
            ModelSource::Dir { config, .. } => config,
            ModelSource::Packed(p) => &p.header().config,
        }
    }

    /// The weights.
    pub fn weights(&self) -> &dyn WeightSource {
        match self {
            ModelSource::Dir { checkpoint, .. } => checkpoint,
            ModelSource::Packed(p) => p,
        }
    }

    /// The head a packed file was made for (None for folders: the config decides).
    pub fn packed_head(&self) -> Option<&str> {
        match self {
            ModelSource::Dir { .. } => None,
            ModelSource::Packed(p) => Some(&p.header().head),
        }
    }

    /// A side file by relative name (`tokenizer.json`, `1_Pooling/config.json`, ...).
    pub fn read_file(&self, name: &str) -> Result<Option<Vec<u8>>> {
        match self {
            ModelSource::Dir { dir, .. } => {
                let path = dir.join(name);
                if !path.is_file() {
                    return Ok(None);
                }
                std::fs::read(&path)
                    .map(Some)
                    .map_err(|e| Error::io(path, e))
            }
            ModelSource::Packed(p) => Ok(p.file(name).map(<[u8]>::to_vec)),
        }
    }

    /// A side file parsed as JSON, if present.
    pub fn read_json<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        parse_json(self.read_file(name)?, &self.path().join(name))
    }

    /// Where the model came from, for messages.
    pub fn path(&self) -> &Path {
        match self {
            ModelSource::Dir { dir, .. } => dir,
            ModelSource::Packed(p) => p.path(),
        }
    }
}

/// Parses an optional side file's bytes as JSON; errors name `path`.
pub(crate) fn parse_json<T: DeserializeOwned>(
    bytes: Option<Vec<u8>>,
    path: &Path,
) -> Result<Option<T>> {
    bytes
        .map(|b| {
            serde_json::from_slice(&b)
                .map_err(|e| Error::checkpoint(path, format!("invalid JSON: {e}")))
        })
        .transpose()
}
