//! The GPU ops: one module per kernel family of kernels/*.cu, each built the same way
//! (as ggml-cuda builds its ops: kernel, launcher, per-op entry).
//!
//! - `Buffers` and `Spec`: what one launch computes, in the caller's terms: device
//!   addresses (0 for an absent optional buffer), then sizes and options as the graph
//!   states them (`usize`, `Option<Activation>`, `bool`). The kernel's `#[repr(C)]`
//!   argument struct, private to the module, is `Buffers` (its leading pointer fields,
//!   in the .cu file's order) followed by the `Spec` converted to the kernel's fields.
//! - `launch`: the one place that converts a `Spec` into those fields (activation and
//!   relative-position codes, the attention scale, layouts and strides, sizes checked to
//!   fit an `int`), picks the entry point and the launch geometry, and holds the launch's
//!   `unsafe` block. The kernel harness' safe, size-checking wrappers call these same
//!   launchers, so it tests exactly what the backend runs.
//! - `step`: the backend's binding, which builds the `Buffers` and `Spec` of a lowered
//!   step from the executor's `Ctx`; `GpuBackend` dispatches each step to one in a line.
//!
//! [`KERNELS`] lists every kernel with its entry points: the driver loads them all up
//! front, the harness checks them against the kernels' BERTRT_ENTRY lines, and the
//! emulated backend tests check that running the models launches every one.

pub mod attention;
pub mod bias_act;
pub mod embeddings;
pub(super) mod gemm;
pub mod layernorm;
pub mod pooler;

use std::ffi::c_void;

use super::gpu::{DevPtr, Dtype, Geometry, Gpu};
use super::lower::Kind;
use super::tokens::Tokens;
use crate::config::Activation;
use crate::error::{Error, Result};
use crate::graph::BufId;
use crate::weights::WeightId;

/// One kernel template of kernels/*.cu and the entry points that instantiate it.
#[derive(Debug)]
pub struct Kernel {
    /// The template's name, for messages.
    pub name: &'static str,
    /// Each entry point with its storage type; [`Kernel::entry`] takes the first of a
    /// dtype (a family's specialisations follow its general entry points).
    pub entries: &'static [(Dtype, &'static str)],
    /// Dynamic shared memory a launch may ask for above the 48 KiB every block gets
    /// (0: never more).
    pub max_smem: usize,
}

impl Kernel {
    /// The general entry point for `dtype`.
    pub fn entry(&self, dtype: Dtype) -> Result<&'static str> {
        self.entries
            .iter()
            .find(|(d, _)| *d == dtype)
            .map(|&(_, name)| name)
            .ok_or_else(|| {
                Error::Unsupported(format!(
                    "the CUDA {} kernel has no {dtype} version; use f16 or f32 on CUDA",
                    self.name
                ))
            })
    }
}

/// The [`Kernel`] of template `$name` instantiated for f32 and f16 as entry points
/// `<name>_f32` and `<name>_f16` (the BERTRT_ENTRY naming), within the default shared
/// memory.
macro_rules! f32_and_f16 {
    ($name:literal) => {
        Kernel {
            name: $name,
            entries: &[
                (Dtype::F32, concat!($name, "_f32")),
                (Dtype::F16, concat!($name, "_f16")),
            ],
            max_smem: 0,
        }
    };
}
use f32_and_f16;

/// Every kernel the backend launches.
pub const KERNELS: [&Kernel; 6] = [
    &embeddings::KERNEL,
    &layernorm::KERNEL,
    &bias_act::KERNEL,
    &attention::SPLIT,
    &attention::KERNEL,
    &pooler::KERNEL,
];

/// Every entry point of [`KERNELS`] with its storage type.
pub fn entry_points() -> impl Iterator<Item = (Dtype, &'static str)> {
    KERNELS.iter().flat_map(|k| k.entries.iter().copied())
}

/// The kernels' activation code (common.cuh `Act`).
fn act_code(act: Option<Activation>) -> i32 {
    match act {
        None => 0,
        Some(Activation::Gelu) => 1,
        Some(Activation::GeluTanh) => 2,
        Some(Activation::Relu) => 3,
        Some(Activation::Silu) => 4,
        Some(Activation::Tanh) => 5,
    }
}

/// A size as the kernels' `int`.
fn int(value: usize, what: &str) -> Result<i32> {
    i32::try_from(value).map_err(|_| {
        Error::Unsupported(format!(
            "{what} = {value} is more than the CUDA kernels index ({})",
            i32::MAX
        ))
    })
}

/// Threads of a row kernel (embeddings, layernorm): one 16-byte pack of the row per
/// thread, in whole warps, 32 to 256.
fn row_threads(width: usize, dtype: Dtype) -> u32 {
    let packs = width.div_ceil(16 / dtype.size());
    (packs.div_ceil(32) * 32).clamp(32, 256) as u32
}

/// A row kernel's geometry (embeddings, layernorm): one block of [`row_threads`] per row,
/// the row in shared memory as f32.
fn row_geometry(rows: usize, width: usize, dtype: Dtype) -> Result<Geometry> {
    geometry([rows, 1, 1], row_threads(width, dtype), width * 4)
}

/// `grid` blocks (at least one along each axis) of `block` threads with `smem` bytes of
/// dynamic shared memory.
fn geometry(grid: [usize; 3], block: u32, smem: usize) -> Result<Geometry> {
    let mut blocks = [1u32; 3];
    for (b, &g) in blocks.iter_mut().zip(&grid) {
        *b = u32::try_from(g.max(1))
            .map_err(|_| Error::Unsupported(format!("a CUDA grid of {grid:?} blocks")))?;
    }
    Ok(Geometry {
        grid: blocks,
        block: [block, 1, 1],
        smem,
    })
}

/// Queues entry point `name` with `args` as its one parameter.
///
/// # Safety
/// As [`Gpu::launch`]: every address in `args` must be valid for every access the
/// kernel makes under this geometry.
unsafe fn launch_args<G: Gpu, A>(gpu: &G, name: &str, g: Geometry, args: &A) -> Result<()> {
    // SAFETY: forwarded to the caller; `args` is a live #[repr(C)] value of its size.
    unsafe {
        gpu.launch(
            name,
            g,
            (args as *const A).cast::<c_void>(),
            std::mem::size_of::<A>(),
        )
    }
}

/// Device addresses of one call's inputs (the executor's inputs region).
#[derive(Debug, Clone, Copy)]
pub(super) struct Inputs {
    /// [rows] token ids, token types and positions (i32).
    pub ids: DevPtr,
    pub type_ids: DevPtr,
    pub positions: DevPtr,
    /// [batch + 1] first row of each sequence (i32).
    pub cu_seqlens: DevPtr,
    /// [batch, past + seq] keys each sequence may attend to (u8), or 0 for all.
    pub key_mask: DevPtr,
}

/// Where one call's memory lives, for the bindings.
///
/// Invariant (what each binding's SAFETY comment relies on): `buffers[b]` addresses plan
/// buffer b, sized for batch * seq rows of its width (at most `tokens.rows` are used),
/// or its whole shape; `weights[w]` addresses weight w whole, in `dtype`; `inputs`
/// holds what [`Inputs`] says for `tokens`; `heads` are three per-head scratch buffers
/// of batch * seq * hidden elements for the widest attention of the plan; `cache`, when
/// given, holds every layer's keys and values at its capacity.
pub(super) struct Ctx<'a, G: Gpu> {
    pub gpu: &'a G,
    pub dtype: Dtype,
    pub tokens: &'a Tokens,
    pub inputs: Inputs,
    pub buffers: &'a [DevPtr],
    pub weights: &'a [DevPtr],
    /// Per-head Q, K and V scratch (K and V unused with a cache).
    pub heads: [DevPtr; 3],
    pub cache: Option<attention::CacheAt>,
}

impl<G: Gpu> Ctx<'_, G> {
    fn buf(&self, b: BufId) -> DevPtr {
        self.buffers[b.0]
    }

    fn opt_buf(&self, b: Option<BufId>) -> DevPtr {
        b.map_or(0, |b| self.buf(b))
    }

    fn w(&self, id: WeightId) -> DevPtr {
        self.weights[id.0]
    }

    fn opt_w(&self, id: Option<WeightId>) -> DevPtr {
        id.map_or(0, |i| self.w(i))
    }

    /// Rows a step over buffers of `kind` runs over.
    fn rows(&self, kind: Kind) -> usize {
        match kind {
            Kind::Tokens => self.tokens.rows,
            Kind::Batch | Kind::Probs => self.tokens.batch,
        }
    }
}
