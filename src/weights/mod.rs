//! Weights: checkpoints on disk, name resolution with module prefixes, and the parameter
//! store the backends read.
//!
//! Modules load their tensors through a [`VarBuilder`], pushing their own prefix as they
//! descend (`vb.pp("encoder").pp("layer").pp(3)`), so no full weight name is spelled twice.
//! Resolution accepts checkpoints saved with or without the `bert.` prefix and the legacy
//! `LayerNorm.gamma` / `LayerNorm.beta` names; buffers such as `embeddings.position_ids`
//! are simply never asked for.

mod bytes;
mod checkpoint;
pub mod packed;
pub(crate) mod source;
pub mod torch;

pub use bytes::Access;
pub use checkpoint::Checkpoint;
pub use packed::PackedFile;
pub use source::{ModelSource, SIDE_FILES};

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Index of a parameter in a [`ParamStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WeightId(pub(crate) usize);

/// The parameters of a loaded model, each stored once (tied weights share an id).
#[derive(Debug, Default)]
pub struct ParamStore {
    tensors: Vec<Tensor>,
    names: Vec<String>,
}

impl ParamStore {
    /// Adds a tensor under a descriptive name, returning its id.
    pub fn push(&mut self, name: String, tensor: Tensor) -> WeightId {
        self.tensors.push(tensor);
        self.names.push(name);
        WeightId(self.tensors.len() - 1)
    }

    /// The tensor behind an id.
    pub fn get(&self, id: WeightId) -> &Tensor {
        &self.tensors[id.0]
    }

    /// Every (name, tensor), in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.names.iter().map(String::as_str).zip(&self.tensors)
    }

    /// The name a tensor was stored under.
    pub fn name(&self, id: WeightId) -> &str {
        &self.names[id.0]
    }

    /// Number of stored tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Total number of parameters.
    pub fn num_parameters(&self) -> usize {
        self.tensors.iter().map(Tensor::len).sum()
    }

    /// Refuses a parameter holding NaN or an infinity (a damaged checkpoint would
    /// otherwise answer every request with NaN scores), naming the tensor and the first
    /// such element. Memory-bound (MiniLM's 90 MB: about 9 ms on one core), so the
    /// tensors are screened on every thread.
    pub fn check_finite(&self) -> Result<()> {
        use rayon::prelude::*;
        let bad = self
            .tensors
            .par_iter()
            .enumerate()
            .find_map_first(|(k, t)| first_non_finite(t.data()).map(|i| (k, i)));
        match bad {
            None => Ok(()),
            Some((k, i)) => Err(Error::BadValues {
                name: self.names[k].clone(),
                message: format!(
                    "element {i} of {:?} is {}",
                    self.tensors[k].shape(),
                    self.tensors[k].data()[i]
                ),
            }),
        }
    }
}

/// The index of the first NaN or infinity, blocks screened with one vectorized
/// comparison each (`is_finite` is `|x| < inf`, false for NaN and infinities).
fn first_non_finite(data: &[f32]) -> Option<usize> {
    const BLOCK: usize = 1024;
    data.chunks(BLOCK).enumerate().find_map(|(b, block)| {
        let any = block.iter().fold(false, |a, x| a | !x.is_finite());
        any.then(|| block.iter().position(|x| !x.is_finite()))
            .flatten()
            .map(|i| b * BLOCK + i)
    })
}

/// Where named tensors come from: a Hugging Face checkpoint or a packed file.
pub trait WeightSource {
    /// True if a tensor of this exact name is stored.
    fn contains(&self, name: &str) -> bool;
    /// The tensor as f32, if stored.
    fn read(&self, name: &str) -> Result<Option<Tensor>>;
}

impl WeightSource for Checkpoint {
    fn contains(&self, name: &str) -> bool {
        Checkpoint::contains(self, name)
    }

    fn read(&self, name: &str) -> Result<Option<Tensor>> {
        Ok(self
            .read_f32(name)?
            .and_then(|(shape, data)| Tensor::new(shape, data)))
    }
}

impl WeightSource for PackedFile {
    fn contains(&self, name: &str) -> bool {
        PackedFile::contains(self, name)
    }

    fn read(&self, name: &str) -> Result<Option<Tensor>> {
        self.tensor(name)
    }
}

/// Loads named tensors from a [`WeightSource`] into a [`ParamStore`], under a module
/// prefix.
pub struct VarBuilder<'a> {
    ckpt: &'a dyn WeightSource,
    store: &'a std::cell::RefCell<ParamStore>,
    prefix: String,
}

impl<'a> VarBuilder<'a> {
    /// A builder at the root of `ckpt`, storing into `store`.
    pub fn new(ckpt: &'a dyn WeightSource, store: &'a std::cell::RefCell<ParamStore>) -> Self {
        VarBuilder {
            ckpt,
            store,
            prefix: String::new(),
        }
    }

    /// The builder for a sub-module (`pp` = push prefix).
    pub fn pp(&self, part: impl std::fmt::Display) -> VarBuilder<'a> {
        let prefix = if self.prefix.is_empty() {
            part.to_string()
        } else {
            format!("{}.{part}", self.prefix)
        };
        VarBuilder {
            ckpt: self.ckpt,
            store: self.store,
            prefix,
        }
    }

    fn full(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    /// Every stored name `full` may appear under, in order of preference.
    fn candidates(full: &str) -> Vec<String> {
        let mut bases = vec![full.to_string()];
        match full.strip_prefix("bert.") {
            Some(rest) => bases.push(rest.to_string()),
            None => bases.push(format!("bert.{full}")),
        }
        let mut out = bases.clone();
        for base in &bases {
            if let Some(stem) = base.strip_suffix("LayerNorm.weight") {
                out.push(format!("{stem}LayerNorm.gamma"));
            } else if let Some(stem) = base.strip_suffix("LayerNorm.bias") {
                out.push(format!("{stem}LayerNorm.beta"));
            }
        }
        out
    }

    /// True if `name` resolves to a stored tensor.
    pub fn contains(&self, name: &str) -> bool {
        Self::candidates(&self.full(name))
            .iter()
            .any(|c| self.ckpt.contains(c))
    }

    /// Reads tensor `name` (relative to this prefix), checking its shape.
    pub fn tensor(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let full = self.full(name);
        let candidates = Self::candidates(&full);
        for candidate in &candidates {
            if let Some(tensor) = self.ckpt.read(candidate)? {
                if tensor.shape() != shape {
                    return Err(Error::TensorShape {
                        name: candidate.clone(),
                        expected: shape.to_vec(),
                        found: tensor.shape().to_vec(),
                    });
                }
                return Ok(tensor);
            }
        }
        Err(Error::MissingTensor {
            name: full,
            tried: candidates.join(", "),
        })
    }

    /// Reads tensor `name` and stores it, returning its id.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<WeightId> {
        let tensor = self.tensor(name, shape)?;
        Ok(self.store.borrow_mut().push(self.full(name), tensor))
    }

    /// `name.weight` / `name.bias` when stored as such (packed files), else the row-wise
    /// concatenation of `parts` (each [rows, cols] weight and [rows] bias): the fused QKV
    /// projection. Returns (weight, bias).
    pub fn fused(
        &self,
        name: &str,
        parts: &[&str],
        rows: usize,
        cols: usize,
    ) -> Result<(WeightId, WeightId)> {
        let fused = self.pp(name);
        let n = rows * parts.len();
        if fused.contains("weight") {
            return Ok((fused.get("weight", &[n, cols])?, fused.get("bias", &[n])?));
        }
        // Every part is read (and its shape checked against the checkpoint) before the
        // fused tensor is allocated, so a config that lies about sizes is an error, not a
        // huge allocation.
        let mut weights = Vec::with_capacity(parts.len());
        let mut biases = Vec::with_capacity(parts.len());
        for part in parts {
            weights.push(self.pp(part).tensor("weight", &[rows, cols])?);
            biases.push(self.pp(part).tensor("bias", &[rows])?);
        }
        let w: Vec<f32> = weights
            .iter()
            .flat_map(|t| t.data().iter().copied())
            .collect();
        let b: Vec<f32> = biases
            .iter()
            .flat_map(|t| t.data().iter().copied())
            .collect();
        let (w, b) = (Tensor::new(vec![n, cols], w), Tensor::new(vec![n], b));
        match (w, b) {
            (Some(w), Some(b)) => Ok((fused.put("weight", w), fused.put("bias", b))),
            _ => Err(Error::Internal(format!("cannot fuse {name}"))),
        }
    }

    /// Row `row` of this module's [rows, cols] `weight` and [rows] `bias` as a module
    /// called `name` (one output of a head), read directly when packed that way.
    pub fn row_of(
        &self,
        name: &str,
        row: usize,
        rows: usize,
        cols: usize,
    ) -> Result<(WeightId, WeightId)> {
        let split = self.pp(name);
        if split.contains("weight") {
            return Ok((split.get("weight", &[1, cols])?, split.get("bias", &[1])?));
        }
        let w = self.tensor("weight", &[rows, cols])?;
        let b = self.tensor("bias", &[rows])?;
        let w = Tensor::new(
            vec![1, cols],
            w.data()[row * cols..(row + 1) * cols].to_vec(),
        );
        let b = Tensor::new(vec![1], vec![b.data()[row]]);
        match (w, b) {
            (Some(w), Some(b)) => Ok((split.put("weight", w), split.put("bias", b))),
            _ => Err(Error::Internal(format!("cannot split {name}"))),
        }
    }

    /// Stores a tensor built by the caller (fused or sliced weights) under this prefix.
    pub fn put(&self, name: &str, tensor: Tensor) -> WeightId {
        self.store.borrow_mut().push(self.full(name), tensor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_cover_prefix_and_legacy_names() {
        let c = VarBuilder::candidates("bert.embeddings.LayerNorm.weight");
        assert!(c.contains(&"embeddings.LayerNorm.weight".to_string()));
        assert!(c.contains(&"bert.embeddings.LayerNorm.gamma".to_string()));
        assert!(c.contains(&"embeddings.LayerNorm.gamma".to_string()));
        let c = VarBuilder::candidates("cls.predictions.bias");
        assert_eq!(c[0], "cls.predictions.bias");
        assert!(!c.iter().any(|n| n.contains("beta")));
    }
}
