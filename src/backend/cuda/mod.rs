//! CUDA backend. For now: the compiled kernels (the context, launchers and graph nodes
//! come with the runtime backend).

/// Every kernel of kernels/*.cu in one fatbin (SASS for sm_80, sm_86, sm_89, sm_90 and
/// compute_80 PTX), built by build.rs with nvcc. Entry points are `extern "C"` names such
/// as `layernorm_f16`, each taking one argument struct (see kernels/README.md).
pub static KERNELS_FATBIN: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kernels.fatbin"));
