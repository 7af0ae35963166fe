//! Shared helpers for the golden tests: reading float64 references written by
//! tools/gen_fixtures.py and comparing engine outputs against them.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bertrt::{Batch, Tensor};
use safetensors::{Dtype, SafeTensors};

/// Absolute tolerance for hidden states, pooler outputs and attention probabilities;
/// logits use `LOGIT_TOL * max(1, max|ref|)`.
pub const TOL: f64 = 1e-4;
pub const LOGIT_TOL: f64 = 1e-4;

pub mod cli;
pub mod device;

/// A scratch folder under the system temp folder (tagged with the test's name and the
/// process id), emptied on creation and removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("bertrt-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// tests/fixtures of the repository (also from the kernel harness, one folder down).
pub fn fixtures_dir() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let own = here.join("tests/fixtures");
    if own.is_dir() {
        own
    } else {
        here.join("../tests/fixtures")
    }
}

/// One reference tensor: shape and values widened to f64 (ints too).
#[derive(Debug, Clone)]
pub struct RefTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

impl RefTensor {
    pub fn rows_i64(&self) -> Vec<Vec<i64>> {
        let width = *self.shape.last().unwrap();
        self.data
            .chunks(width)
            .map(|r| r.iter().map(|&v| v as i64).collect())
            .collect()
    }
}

/// A parsed reference.safetensors.
pub struct Reference {
    pub head: String,
    pub cases: Vec<String>,
    pub meta: HashMap<String, String>,
    pub tensors: HashMap<String, RefTensor>,
}

impl Reference {
    pub fn load(dir: &Path) -> Reference {
        let path = dir.join("reference.safetensors");
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
        let meta: HashMap<String, String> = header
            .metadata()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let mut tensors = HashMap::new();
        for (name, view) in st.tensors() {
            let data = match view.dtype() {
                Dtype::F64 => view
                    .data()
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
                Dtype::I64 => view
                    .data()
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64)
                    .collect(),
                other => panic!("{name}: unexpected dtype {other:?}"),
            };
            tensors.insert(
                name.to_string(),
                RefTensor {
                    shape: view.shape().to_vec(),
                    data,
                },
            );
        }
        Reference {
            head: meta["head"].clone(),
            cases: meta["cases"].split(',').map(str::to_string).collect(),
            meta,
            tensors,
        }
    }

    pub fn flag(&self, case: &str, name: &str) -> bool {
        self.meta.get(&format!("{case}.{name}")).map(String::as_str) == Some("true")
    }

    /// The case's inputs as a Batch (flattening [batch, choices, seq]).
    pub fn batch(&self, case: &str) -> Batch {
        let ids = &self.tensors[&format!("{case}.input_ids")];
        let mut batch = match ids.shape.len() {
            3 => {
                let (c, l) = (ids.shape[1], ids.shape[2]);
                let nested = ids
                    .rows_i64()
                    .chunks(c)
                    .map(|ch| ch.to_vec())
                    .collect::<Vec<_>>();
                assert!(nested.iter().all(|ch| ch.iter().all(|r| r.len() == l)));
                Batch::multiple_choice(nested).unwrap()
            }
            _ => Batch::new(ids.rows_i64()).unwrap(),
        };
        if let Some(mask) = self.tensors.get(&format!("{case}.attention_mask")) {
            batch = batch.with_attention_mask(mask.rows_i64()).unwrap();
        }
        if let Some(types) = self.tensors.get(&format!("{case}.token_type_ids")) {
            batch = batch.with_token_type_ids(types.rows_i64()).unwrap();
        }
        batch
    }

    /// Reference output names of a case (without the case prefix), sorted.
    pub fn outputs(&self, case: &str) -> Vec<String> {
        let prefix = format!("{case}.");
        let mut names: Vec<String> = self
            .tensors
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix))
            .filter(|k| !matches!(*k, "input_ids" | "attention_mask" | "token_type_ids"))
            .map(str::to_string)
            .collect();
        names.sort();
        names
    }
}

/// Compares `got` with `want` elementwise: |d| <= tol. Returns a description of the
/// failure (max error and the first mismatches) or None.
pub fn compare(what: &str, got: &Tensor, want: &RefTensor, tol: f64) -> Option<String> {
    if got.shape() != want.shape.as_slice() {
        return Some(format!(
            "{what}: shape {:?}, reference {:?}",
            got.shape(),
            want.shape
        ));
    }
    let mut max_err = 0.0f64;
    let mut bad = Vec::new();
    for (i, (&g, &w)) in got.data().iter().zip(&want.data).enumerate() {
        let err = (g as f64 - w).abs();
        // NaN fails too: only a comparable, small error passes.
        let ok = err <= tol;
        if !ok && bad.len() < 5 {
            bad.push(format!("[{i}] got {g} want {w}"));
        }
        if err.is_nan() {
            max_err = f64::INFINITY;
        } else {
            max_err = max_err.max(err);
        }
    }
    (!bad.is_empty()).then(|| {
        format!(
            "{what}: max |d| = {max_err:.3e} > {tol:.1e}; first: {}",
            bad.join(", ")
        )
    })
}

/// The tolerance for an output name.
pub fn tolerance(name: &str, want: &RefTensor) -> f64 {
    if name.contains("logits") {
        let max = want.data.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        LOGIT_TOL * max.max(1.0)
    } else {
        TOL
    }
}

/// Max |a - b| over two tensors of equal shape.
pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
