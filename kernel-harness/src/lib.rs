//! Runs bertrt's CUDA kernels on the CPU.
//!
//! build.rs compiles kernels/*.cu as host C++ against kernels/host/cuda_host.h, which maps
//! the CUDA built-ins onto threads and barriers (one std::thread per CUDA thread, blocks
//! one after another). This crate wraps each entry point in a safe function that checks
//! every buffer size and launches it through the CUDA backend's own launcher
//! (`bertrt::backend::cuda::ops`, which picks the entry point and geometry and builds the
//! argument struct), so tests compare with the CPU op it replaces exactly the launch the
//! GPU gets. [`HostGpu`] is the backend's `Gpu` on this emulation, which runs the whole
//! CUDA backend on the host.

pub mod check;
pub mod gpu;
pub mod launch;

pub use bertrt::backend::cuda::Dtype;
pub use check::{assert_close, Rng};
pub use gpu::HostGpu;
pub use launch::*;

use half::f16;

/// A storage type of the kernels: f32, or f16 (computed in f32).
pub trait Elem: Copy + Default + Send + Sync + std::fmt::Debug + 'static {
    /// Entry-point suffix: "f32" or "f16".
    const SUFFIX: &'static str;
    /// The backend's name for this storage type.
    const DTYPE: Dtype;
    /// Absolute tolerance of a kernel output against an f32/f64 reference.
    const ATOL: f64;
    /// Relative tolerance of a kernel output against an f32/f64 reference.
    const RTOL: f64;
    /// Rounds an f32 to this type.
    fn from_f32(v: f32) -> Self;
    /// Widens to f32 (exact).
    fn to_f32(self) -> f32;
}

impl Elem for f32 {
    const SUFFIX: &'static str = "f32";
    const DTYPE: Dtype = Dtype::F32;
    const ATOL: f64 = 2e-5;
    const RTOL: f64 = 1e-4;
    fn from_f32(v: f32) -> Self {
        v
    }
    fn to_f32(self) -> f32 {
        self
    }
}

impl Elem for f16 {
    const SUFFIX: &'static str = "f16";
    const DTYPE: Dtype = Dtype::F16;
    // One half-precision rounding of the output (2^-11 relative) plus f32 accumulation.
    const ATOL: f64 = 2e-3;
    const RTOL: f64 = 2e-3;
    fn from_f32(v: f32) -> Self {
        f16::from_f32(v)
    }
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
}

/// Rounds `values` to E, returning the device values and their exact f32 widening (what a
/// reference must be fed so that both sides see the same inputs).
pub fn quantize<E: Elem>(values: &[f32]) -> (Vec<E>, Vec<f32>) {
    let dev: Vec<E> = values.iter().map(|&v| E::from_f32(v)).collect();
    let exact = dev.iter().map(|v| v.to_f32()).collect();
    (dev, exact)
}

/// Widens kernel output to f32.
pub fn widen<E: Elem>(values: &[E]) -> Vec<f32> {
    values.iter().map(|v| v.to_f32()).collect()
}

/// A ragged batch: sequence lengths and their prefix sums.
#[derive(Debug, Clone)]
pub struct Ragged {
    /// Tokens of each sequence.
    pub lens: Vec<usize>,
    /// [batch + 1] prefix sums of `lens`.
    pub cu_seqlens: Vec<i32>,
}

impl Ragged {
    /// A batch of sequences of the given lengths (each at least 1).
    pub fn new(lens: &[usize]) -> Self {
        assert!(!lens.is_empty() && lens.iter().all(|&l| l > 0));
        let mut cu = vec![0i32];
        for &l in lens {
            cu.push(cu.last().copied().unwrap_or(0) + l as i32);
        }
        Ragged {
            lens: lens.to_vec(),
            cu_seqlens: cu,
        }
    }
    /// Sequences.
    pub fn batch(&self) -> usize {
        self.lens.len()
    }
    /// Tokens over all sequences.
    pub fn total(&self) -> usize {
        self.lens.iter().sum()
    }
    /// Longest sequence.
    pub fn max_len(&self) -> usize {
        self.lens.iter().copied().max().unwrap_or(0)
    }
    /// First packed row of sequence `b`.
    pub fn start(&self, b: usize) -> usize {
        self.cu_seqlens[b] as usize
    }
}
