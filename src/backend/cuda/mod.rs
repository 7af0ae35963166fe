//! The CUDA backend: the plan's ops as fused kernels (kernels/*.cu) and cuBLAS GEMMs, in
//! f16 or f32, over all sequences' tokens packed without padding.
//!
//! - [`gpu`]: the device as one trait ([`Gpu`]): raw memory, launches by entry-point
//!   name, GEMMs, graphs. `driver` implements it with cudarc (feature `cuda`); the kernel
//!   harness implements it on the host so everything here is tested without a GPU.
//! - [`args`] and [`launch`]: each kernel's argument struct and launch geometry.
//! - [`executor`]: [`GpuBackend`], which lowers a plan (fusing bias, activation, residual
//!   and LayerNorm into the kernels), lays out its arena and runs or replays it.

pub mod args;
#[cfg(feature = "cuda")]
mod driver;
mod executor;
pub mod gpu;
pub mod launch;
mod lower;
mod tokens;

#[cfg(feature = "cuda")]
pub use driver::CudaGpu;
pub use executor::GpuBackend;
pub use gpu::{DevPtr, Dtype, Gemm, Geometry, Gpu};

/// Every kernel of kernels/*.cu in one fatbin (SASS for sm_80, sm_86, sm_89, sm_90 and
/// compute_80 PTX), built by build.rs with nvcc. Entry points are `extern "C"` names such
/// as `layernorm_f16`, each taking one argument struct (see kernels/README.md).
#[cfg(feature = "cuda")]
pub static KERNELS_FATBIN: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kernels.fatbin"));
