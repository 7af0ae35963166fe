//! A linear weight packed for the GEMM in the backend's precision: f32 panels, bf16 panels
//! or int8 panels with per-column scales (see [`super::gemm`], [`gemm::bf16`],
//! [`gemm::int8`]). Only the linears change precision (and, for bf16 on AMX, attention's
//! products: [`super::attention::Products`]); their inputs and outputs, and every other
//! op, stay f32.

use super::gemm::bf16::{linear_bf16, PackedBf16};
use super::gemm::int8::{linear_int8, PackedInt8};
use super::gemm::{self, PackedWeight};
use crate::backend::Dtype;
use crate::config::Activation;

/// The precision of one linear in a backend of `dtype`. An int8 backend keeps the
/// linears that read an activation's output in bf16: in BERT that is the FFN output
/// projection, whose input (after GELU) is long-tailed and four times wider than the
/// hidden size. On all-MiniLM-L6-v2 the lowest sentence-embedding cosine to float64 is
/// 0.9987 with it in int8 and 0.9997 with it in bf16 (tests/lowp.rs,
/// docs/cpu-low-precision.md).
pub fn linear_dtype(backend: Dtype, reads_activation: bool) -> Dtype {
    match (backend, reads_activation) {
        (Dtype::Int8, true) => Dtype::Bf16,
        (other, _) => other,
    }
}

/// A packed [n, k] weight.
#[derive(Debug, Clone)]
pub enum PackedLinear {
    /// f32 panels.
    F32(PackedWeight),
    /// bf16 panels.
    Bf16(PackedBf16),
    /// int8 panels, quantized per output column.
    Int8(PackedInt8),
}

impl PackedLinear {
    /// Packs `w` ([n, k] row-major) for `dtype` (f16 packs as f32: the CPU has no f16
    /// path, and the backend never asks for it). `None` when `w` does not hold n * k
    /// values (or, for int8, k > 65536).
    pub fn pack(dtype: Dtype, w: &[f32], n: usize, k: usize) -> Option<Self> {
        Some(match dtype {
            Dtype::F32 | Dtype::F16 => PackedLinear::F32(PackedWeight::pack(w, n, k)?),
            Dtype::Bf16 => PackedLinear::Bf16(PackedBf16::pack(w, n, k)?),
            Dtype::Int8 => PackedLinear::Int8(PackedInt8::pack(w, n, k)?),
        })
    }

    /// The precision of the product.
    pub fn dtype(&self) -> Dtype {
        match self {
            PackedLinear::F32(_) => Dtype::F32,
            PackedLinear::Bf16(_) => Dtype::Bf16,
            PackedLinear::Int8(_) => Dtype::Int8,
        }
    }

    /// (n, k).
    pub fn shape(&self) -> (usize, usize) {
        match self {
            PackedLinear::F32(w) => (w.n(), w.k()),
            PackedLinear::Bf16(w) => (w.n(), w.k()),
            PackedLinear::Int8(w) => (w.n(), w.k()),
        }
    }

    /// out[rows, n] = act(x[rows, k] · wᵀ + b) on the rayon pool.
    pub fn run(
        &self,
        x: &[f32],
        rows: usize,
        b: Option<&[f32]>,
        act: Option<Activation>,
        out: &mut [f32],
    ) {
        match self {
            PackedLinear::F32(w) => gemm::linear(x, rows, w, b, act, out),
            PackedLinear::Bf16(w) => linear_bf16(x, rows, w, b, act, out),
            PackedLinear::Int8(w) => linear_int8(x, rows, w, b, act, out),
        }
    }
}
