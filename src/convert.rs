//! Packing a checkpoint into one engine-ready file (the library behind tools/convert).

use std::path::Path;

use crate::backend::Device;
use crate::error::{Error, Result};
use crate::model::{Head, Model};
use crate::weights::packed::{self, PackInput, PackedDtype};
use crate::weights::{ModelSource, SIDE_FILES};

/// How to pack.
#[derive(Debug, Clone, Copy)]
pub struct ConvertOptions {
    /// Storage dtype.
    pub dtype: PackedDtype,
    /// The head to pack for (default: the config's architectures[0]).
    pub head: Option<Head>,
    /// Replace an existing output file.
    pub force: bool,
}

/// Packs the checkpoint at `input` (a folder, or a packed file to re-pack) into `out`.
/// Returns the bytes written; `progress(done, total)` follows the writing.
pub fn convert(
    input: &Path,
    out: &Path,
    opts: ConvertOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<u64> {
    if out.exists() && !opts.force {
        return Err(Error::Input(format!(
            "{} exists; pass --force to replace it",
            out.display()
        )));
    }
    let source = ModelSource::open(input)?;
    let model = Model::from_source(&source, opts.head, Device::Cpu)?;
    let mut files = Vec::new();
    for name in SIDE_FILES {
        if let Some(bytes) = source.read_file(name)? {
            files.push((name.to_string(), bytes));
        }
    }
    let params = model.params();
    packed::write(
        out,
        PackInput {
            config: model.config(),
            head: model.head().class_name(),
            dtype: opts.dtype,
            tensors: params.iter().collect(),
            files,
        },
        progress,
    )
}
