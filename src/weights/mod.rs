//! Weights: checkpoints on disk, name resolution with module prefixes, and the parameter
//! store the backends read.
//!
//! Modules load their tensors through a [`VarBuilder`], pushing their own prefix as they
//! descend (`vb.pp("encoder").pp("layer").pp(3)`), so no full weight name is spelled twice.
//! Resolution accepts checkpoints saved with or without the `bert.` prefix and the legacy
//! `LayerNorm.gamma` / `LayerNorm.beta` names; buffers such as `embeddings.position_ids`
//! are simply never asked for.

mod checkpoint;

pub use checkpoint::Checkpoint;

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
}

/// Loads named tensors from a checkpoint into a [`ParamStore`], under a module prefix.
pub struct VarBuilder<'a> {
    ckpt: &'a Checkpoint,
    store: &'a std::cell::RefCell<ParamStore>,
    prefix: String,
}

impl<'a> VarBuilder<'a> {
    /// A builder at the root of `ckpt`, storing into `store`.
    pub fn new(ckpt: &'a Checkpoint, store: &'a std::cell::RefCell<ParamStore>) -> Self {
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
            if let Some((found, data)) = self.ckpt.read_f32(candidate)? {
                if found != shape {
                    return Err(Error::TensorShape {
                        name: candidate.clone(),
                        expected: shape.to_vec(),
                        found,
                    });
                }
                return Tensor::new(found, data).ok_or_else(|| Error::TensorShape {
                    name: candidate.clone(),
                    expected: shape.to_vec(),
                    found: shape.to_vec(),
                });
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
