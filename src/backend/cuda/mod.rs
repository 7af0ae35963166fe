//! The CUDA backend: the plan's ops as fused kernels (kernels/*.cu) and cuBLAS GEMMs, in
//! f16 or f32, over all sequences' tokens packed without padding.
//!
//! - [`gpu`]: the device as one trait ([`Gpu`]): raw memory, launches by entry-point
//!   name, GEMMs, graphs. `driver` implements it with cudarc (feature `cuda`); the kernel
//!   harness implements it on the host so everything here is tested without a GPU.
//! - `lower`: a plan as GPU steps, the bias, activation, residual and LayerNorm of each
//!   dense layer fused into the kernel after it.
//! - [`ops`]: one module per kernel family: its argument structs, its launcher (entry
//!   point, geometry, codes) and the binding that runs a lowered step. The harness
//!   launches the kernels through the same launchers.
//! - `executor`: [`GpuBackend`], which uploads the weights, lays out a plan's arena, runs
//!   each step through its binding and records or replays graphs.
//! - `tokens`: a batch's token rows on the device (packed, or padded with a key mask).

#[cfg(feature = "cuda")]
mod driver;
mod executor;
pub mod gpu;
mod lower;
pub mod ops;
mod tokens;

#[cfg(feature = "cuda")]
pub use driver::CudaGpu;
pub use executor::GpuBackend;
pub use gpu::{DevPtr, Dtype, Gemm, Geometry, Gpu};

/// Every kernel of kernels/*.cu in one fatbin (SASS for sm_80, sm_86, sm_89, sm_90 and
/// compute_80 PTX), built by build.rs with nvcc. Entry points are `extern "C"` names such
/// as `layernorm_f16` ([`ops::KERNELS`] lists them), each taking one argument struct (see
/// kernels/README.md).
#[cfg(feature = "cuda")]
pub static KERNELS_FATBIN: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kernels.fatbin"));
