//! What the CUDA backend needs of a device, as one trait: memory at raw addresses, kernel
//! launches by entry-point name, GEMMs and (optionally) graph capture.
//!
//! Two implementations: the real GPU through cudarc (`driver.rs`, feature `cuda`), and
//! the kernel harness' host emulation, which runs the same kernels compiled as C++ on the
//! CPU so that the whole backend (lowering, arena, packing, caches) is tested without a
//! GPU.

use std::ffi::c_void;

pub use crate::backend::Dtype;
use crate::error::Result;

/// A device address (a `CUdeviceptr`; a host address under emulation). 0 is null.
pub type DevPtr = u64;

/// out[m, n] = x[m, k] · w[n, k]ᵀ, all row-major in one dtype, accumulated in f32
/// (the dense layer without its bias, weights stored as checkpoints store them).
#[derive(Debug, Clone, Copy)]
pub struct Gemm {
    /// Rows of x and out.
    pub m: usize,
    /// Columns of out (rows of w).
    pub n: usize,
    /// Inner dimension.
    pub k: usize,
    /// [m, k] input.
    pub x: DevPtr,
    /// [n, k] weight.
    pub w: DevPtr,
    /// [m, n] output.
    pub out: DevPtr,
    /// Storage type of all three.
    pub dtype: Dtype,
}

/// Launch geometry of one kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Blocks.
    pub grid: [u32; 3],
    /// Threads per block.
    pub block: [u32; 3],
    /// Dynamic shared memory per block, in bytes.
    pub smem: usize,
}

/// A device the CUDA backend can drive. All work goes to one in-order stream.
pub trait Gpu: Send + Sync + 'static {
    /// One allocation; freed when dropped.
    type Mem: Send + Sync + 'static;
    /// A captured, replayable sequence of work.
    type Graph: Send;

    /// Names the device (for messages and benchmarks).
    fn describe(&self) -> String;

    /// Allocates `bytes` (256-byte aligned).
    fn alloc(&self, bytes: usize) -> Result<Self::Mem>;

    /// The address of an allocation.
    fn address(mem: &Self::Mem) -> DevPtr;

    /// Queues a copy of `src` to `dst`; `src` may be reused when this returns.
    ///
    /// # Safety
    /// `dst .. dst + src.len()` must lie in a live allocation of this device.
    unsafe fn upload(&self, dst: DevPtr, src: &[u8]) -> Result<()>;

    /// Waits for queued work, then copies `dst.len()` bytes from `src`.
    ///
    /// # Safety
    /// `src .. src + dst.len()` must lie in a live allocation of this device.
    unsafe fn download(&self, src: DevPtr, dst: &mut [u8]) -> Result<()>;

    /// Queues entry point `kernel` with `args` (a `#[repr(C)]` struct of `args_size`
    /// bytes) as its single parameter.
    ///
    /// # Safety
    /// Every address in `args` must be valid for every access the kernel makes under
    /// this geometry.
    unsafe fn launch(
        &self,
        kernel: &str,
        geometry: Geometry,
        args: *const c_void,
        args_size: usize,
    ) -> Result<()>;

    /// Queues a GEMM.
    ///
    /// # Safety
    /// The three matrices must lie in live allocations of this device.
    unsafe fn gemm(&self, g: &Gemm) -> Result<()>;

    /// Waits for all queued work; reports the first failure of any of it.
    fn synchronize(&self) -> Result<()>;

    /// Starts recording queued work into a graph instead of running it. Ok(false): this
    /// device has no graphs (work runs as queued).
    fn begin_capture(&self) -> Result<bool>;

    /// Stops recording and returns the graph.
    fn end_capture(&self) -> Result<Self::Graph>;

    /// Queues a recorded graph.
    fn replay(&self, graph: &Self::Graph) -> Result<()>;
}
