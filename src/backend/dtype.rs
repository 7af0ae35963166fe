//! Storage types of weights and activations.

use std::str::FromStr;

use crate::error::{Error, Result};

/// Storage type of weights and activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dtype {
    /// 32-bit floats.
    F32,
    /// IEEE half precision, computed in f32 (the CUDA default).
    F16,
    /// CPU only: linears in bfloat16 (weights packed once, activations rounded per call,
    /// f32 accumulation); on AMX, attention's two products in split bf16 (within about
    /// 2^-16 of f32); everything else and the activations between ops stay f32.
    Bf16,
    /// CPU only: linears in int8 (weights quantized once per output column, activations
    /// quantized per row on each call, i32 accumulation); everything else stays f32.
    Int8,
}

impl Dtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::Bf16 => 2,
            Dtype::Int8 => 1,
        }
    }

    /// The dtype's name, also the entry-point suffix of the CUDA kernels (which exist for
    /// `f32` and `f16` only).
    pub fn suffix(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::F16 => "f16",
            Dtype::Bf16 => "bf16",
            Dtype::Int8 => "int8",
        }
    }
}

impl FromStr for Dtype {
    type Err = Error;

    fn from_str(s: &str) -> Result<Dtype> {
        match s {
            "f32" | "float32" => Ok(Dtype::F32),
            "f16" | "float16" | "half" => Ok(Dtype::F16),
            "bf16" | "bfloat16" => Ok(Dtype::Bf16),
            "int8" | "i8" => Ok(Dtype::Int8),
            _ => Err(Error::Unsupported(format!(
                "unknown dtype {s:?}; expected f32, f16, bf16 or int8"
            ))),
        }
    }
}

impl std::fmt::Display for Dtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.suffix())
    }
}
