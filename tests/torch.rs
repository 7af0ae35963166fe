//! pytorch_model.bin (tests/fixtures/torch, made by tools/gen_torch_fixtures.py): every
//! format corner gives outputs equal bit for bit to its safetensors twin; a pickle that
//! names any other global is refused and nothing runs; the legacy format and damaged
//! files are errors, never panics.

use std::path::{Path, PathBuf};

use bertrt::weights::torch::TorchFile;
use bertrt::{Batch, Device, ForwardOptions, Head, Model};
use proptest::prelude::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The masked-LM logits of a fixed batch (they read every weight).
fn outputs(dir: &Path) -> Vec<(String, Vec<usize>, Vec<u32>)> {
    let model = Model::load(dir, Some(Head::MaskedLm), Device::Cpu)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let batch = Batch::new(vec![vec![2, 80, 4, 61, 3, 0], vec![2, 70, 71, 72, 73, 3]])
        .unwrap()
        .with_attention_mask(vec![vec![1, 1, 1, 1, 1, 0], vec![1; 6]])
        .unwrap();
    let opts = ForwardOptions::head(Head::MaskedLm);
    let out = model.forward(&batch, opts).unwrap();
    ["logits"]
        .iter()
        .map(|name| {
            let t = out.get(name).unwrap_or_else(|| panic!("no {name}"));
            let bits = t.data().iter().map(|x| x.to_bits()).collect();
            (name.to_string(), t.shape().to_vec(), bits)
        })
        .collect()
}

#[test]
fn every_bin_corner_equals_its_safetensors_twin_bit_for_bit() {
    let f32_twin = outputs(&fixture("pipelines/fill_mask"));
    for name in ["mlm", "mlm_sharded", "noncontig"] {
        assert!(
            outputs(&fixture(&format!("torch/{name}"))) == f32_twin,
            "{name}"
        );
    }
    let f16 = outputs(&fixture("torch/mlm_f16"));
    assert!(f16 == outputs(&fixture("torch/mlm_f16_twin")), "mlm_f16");
    assert!(f16 != f32_twin, "the f16 fixture is not f16");
}

/// tools/convert packs a .bin checkpoint like any other: the packed file answers the same.
#[test]
fn a_bin_checkpoint_packs() {
    let out =
        std::env::temp_dir().join(format!("bertrt-torch-packed-{}.bertrt", std::process::id()));
    let _ = std::fs::remove_file(&out);
    let opts = bertrt::convert::ConvertOptions {
        dtype: bertrt::weights::packed::PackedDtype::F32,
        head: Some(Head::MaskedLm),
        force: true,
    };
    bertrt::convert::convert(&fixture("torch/mlm_sharded"), &out, opts, &mut |_, _| {}).unwrap();
    assert!(outputs(&out) == outputs(&fixture("pipelines/fill_mask")));
    let _ = std::fs::remove_file(&out);
}

#[test]
fn a_pickle_with_another_global_is_refused_and_nothing_runs() {
    let pwned = Path::new("/tmp/bertrt-pickle-pwned");
    let _ = std::fs::remove_file(pwned);
    let err = Model::load(&fixture("torch/evil"), None, Device::Cpu)
        .err()
        .expect("refused");
    let msg = err.to_string();
    assert!(msg.contains("refused the global `os.system`"), "{msg}");
    assert!(!pwned.exists(), "the pickle's command ran");
}

#[test]
fn the_legacy_format_and_other_frameworks_are_clear_errors() {
    let err = Model::load(&fixture("torch/legacy"), None, Device::Cpu)
        .err()
        .unwrap();
    assert!(err.to_string().contains("legacy"), "{err}");
    let dir = std::env::temp_dir().join(format!("bertrt-torch-tf-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(fixture("torch/mlm/config.json"), dir.join("config.json")).unwrap();
    std::fs::write(dir.join("tf_model.h5"), b"").unwrap();
    let err = Model::load(&dir, None, Device::Cpu).err().unwrap();
    let msg = err.to_string();
    assert!(
        msg.contains("tf_model.h5") && msg.contains("pytorch_model.bin"),
        "{msg}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Opens damaged bytes as a .bin and reads every tensor: any result but a panic.
fn open_all(bytes: &[u8], tag: &str) {
    let path = std::env::temp_dir().join(format!(
        "bertrt-torch-fuzz-{tag}-{}.bin",
        std::process::id()
    ));
    std::fs::write(&path, bytes).unwrap();
    if let Ok(file) = TorchFile::open(&path) {
        let names: Vec<String> = file.names().map(str::to_string).collect();
        for n in names {
            let _ = file.read_f32(&n);
        }
    }
    let _ = std::fs::remove_file(&path);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn truncated_bin_files_never_panic(cut in 0usize..104_709) {
        let bytes = std::fs::read(fixture("torch/mlm/pytorch_model.bin")).unwrap();
        open_all(&bytes[..cut.min(bytes.len())], "cut");
    }

    #[test]
    fn garbled_bin_files_never_panic(flips in proptest::collection::vec((0usize..1_000_000, any::<u8>()), 1..16)) {
        let mut bytes = std::fs::read(fixture("torch/mlm/pytorch_model.bin")).unwrap();
        // Most flips land in the pickle and the zip directory, where the parsing is.
        let pkl = bytes.windows(8).position(|w| w == b"data.pkl").unwrap_or(0);
        for (at, value) in flips {
            let i = if at % 2 == 0 { pkl + at % 2048 } else { at % bytes.len() };
            if let Some(b) = bytes.get_mut(i) {
                *b = value;
            }
        }
        open_all(&bytes, "flip");
    }
}
