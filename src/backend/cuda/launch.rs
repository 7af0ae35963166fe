//! Launchers: the one place that knows each entry point's name and launch geometry
//! (kernels/README.md states them). The backend and the kernel harness both launch
//! through here, so the harness tests exactly the geometry the GPU gets.

use std::ffi::c_void;

use super::args::*;
use super::gpu::{Dtype, Geometry, Gpu};
use crate::config::Activation;
use crate::error::{Error, Result};

/// Every entry point of kernels/*.cu, sorted (the harness checks this list against the
/// kernels' BERTRT_ENTRY lines; the driver loads them all up front).
pub const ENTRY_POINTS: [&str; 14] = [
    "attention_f16",
    "attention_f16_hd32",
    "attention_f16_hd64",
    "attention_f32",
    "bias_act_f16",
    "bias_act_f32",
    "embeddings_f16",
    "embeddings_f32",
    "gather_cls_f16",
    "gather_cls_f32",
    "layernorm_f16",
    "layernorm_f32",
    "qkv_split_f16",
    "qkv_split_f32",
];

/// The kernels' activation code (common.cuh `Act`).
pub fn act_code(act: Option<Activation>) -> i32 {
    match act {
        None => 0,
        Some(Activation::Gelu) => 1,
        Some(Activation::GeluTanh) => 2,
        Some(Activation::Relu) => 3,
        Some(Activation::Silu) => 4,
        Some(Activation::Tanh) => 5,
    }
}

/// Threads of a row kernel (embeddings, layernorm): one 16-byte pack of the row per
/// thread, in whole warps, 32 to 256.
pub fn row_threads(width: usize, dtype: Dtype) -> u32 {
    let packs = width.div_ceil(16 / dtype.size());
    (packs.div_ceil(32) * 32).clamp(32, 256) as u32
}

/// Blocks of bias_act on the GPU (a grid-stride loop covers the rest).
pub const BIAS_ACT_MAX_BLOCKS: u32 = 1024;

/// Dynamic shared memory one block may use on every target: 99 KiB (sm_86 and sm_89;
/// sm_80 allows 163 KiB, sm_90 227 KiB). 512 tokens at head_dim 64 need 62 KiB in f16 and
/// 88 KiB in f32.
pub const ATTENTION_SMEM_LIMIT: usize = 99 * 1024;

/// Dynamic shared memory of one attention block over rows of `keys` keys (past + max_len;
/// attention.cu's attention_smem_bytes).
pub fn attention_smem_bytes(keys: usize, head_dim: usize, elem: usize) -> usize {
    let lpad = keys.div_ceil(16) * 16;
    16 * lpad * (4 + elem) + 16 * head_dim * (elem * 5 + 4)
}

/// Which attention entry point to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttnPath {
    /// What the backend picks: WMMA for f16 with head_dim 32 or 64.
    Auto,
    /// The general (SIMT) entry point whatever the shape.
    General,
}

/// The attention entry point for a dtype, head width and path.
pub fn attention_entry(dtype: Dtype, head_dim: usize, path: AttnPath) -> String {
    match (dtype, head_dim, path) {
        (Dtype::F16, 32, AttnPath::Auto) => "attention_f16_hd32".into(),
        (Dtype::F16, 64, AttnPath::Auto) => "attention_f16_hd64".into(),
        _ => format!("attention_{}", dtype.suffix()),
    }
}

fn entry(base: &str, dtype: Dtype) -> String {
    format!("{base}_{}", dtype.suffix())
}

fn geometry(grid: [usize; 3], block: u32, smem: usize) -> Geometry {
    Geometry {
        grid: grid.map(|g| g.max(1) as u32),
        block: [block, 1, 1],
        smem,
    }
}

/// # Safety
/// As [`Gpu::launch`].
unsafe fn run<G: Gpu, A>(gpu: &G, name: &str, g: Geometry, args: &A) -> Result<()> {
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

/// embeddings_*: one block of [`row_threads`] per token.
///
/// # Safety
/// Every id must index its table; `out` holds tokens * hidden elements.
pub unsafe fn embeddings<G: Gpu>(gpu: &G, dt: Dtype, a: &EmbeddingsArgs) -> Result<()> {
    let hidden = a.hidden as usize;
    let g = geometry(
        [a.tokens as usize, 1, 1],
        row_threads(hidden, dt),
        hidden * 4,
    );
    // SAFETY: the caller vouches for the addresses.
    unsafe { run(gpu, &entry("embeddings", dt), g, a) }
}

/// layernorm_*: out = LayerNorm(act(x + bias) + residual), one block per row.
///
/// # Safety
/// rows * width elements in x, residual and out; width in bias, gamma and beta.
pub unsafe fn layernorm<G: Gpu>(gpu: &G, dt: Dtype, a: &LayerNormArgs) -> Result<()> {
    let width = a.width as usize;
    let g = geometry([a.rows as usize, 1, 1], row_threads(width, dt), width * 4);
    // SAFETY: the caller vouches for the addresses.
    unsafe { run(gpu, &entry("layernorm", dt), g, a) }
}

/// bias_act_*: out = act(x + bias) over [rows, n]; 256 threads a block, at most
/// `max_blocks` blocks ([`BIAS_ACT_MAX_BLOCKS`] on the GPU; tests lower it to exercise
/// the grid-stride loop). x and out may be the same buffer.
///
/// # Safety
/// rows * n elements in x and out, n in bias.
pub unsafe fn bias_act<G: Gpu>(gpu: &G, dt: Dtype, a: &BiasActArgs, max_blocks: u32) -> Result<()> {
    let elems = a.rows as usize * a.n as usize;
    let packs = elems.div_ceil(16 / dt.size());
    let blocks = (packs.div_ceil(256) as u32).clamp(1, max_blocks.max(1));
    let g = geometry([blocks as usize, 1, 1], 256, 0);
    // SAFETY: the caller vouches for the addresses.
    unsafe { run(gpu, &entry("bias_act", dt), g, a) }
}

/// qkv_split_*: bias add and head split of the fused [tokens, 3 * hidden] projection,
/// one block of 128 threads per (row of the longest sequence, sequence).
///
/// # Safety
/// cu_seqlens holds batch + 1 entries; q, k and v hold their layouts.
pub unsafe fn qkv_split<G: Gpu>(gpu: &G, dt: Dtype, a: &QkvSplitArgs, batch: usize) -> Result<()> {
    let g = geometry([a.layout.max_len as usize, batch, 1], 128, 0);
    // SAFETY: the caller vouches for the addresses.
    unsafe { run(gpu, &entry("qkv_split", dt), g, a) }
}

/// attention_*: one block of 128 threads per (16-query tile, head, sequence); returns
/// the entry point it ran. Rows too long for one block's shared memory are an error.
///
/// # Safety
/// q, k, v, the key mask, the distance table, out and probs must hold what the layouts,
/// `past` and `max_positions` imply.
pub unsafe fn attention<G: Gpu>(
    gpu: &G,
    dt: Dtype,
    a: &AttentionArgs,
    batch: usize,
    path: AttnPath,
) -> Result<String> {
    let (l, d) = (a.layout.max_len as usize, a.layout.head_dim as usize);
    let keys = a.past as usize + l;
    let smem = attention_smem_bytes(keys, d, dt.size());
    if smem > ATTENTION_SMEM_LIMIT {
        return Err(Error::Unsupported(format!(
            "CUDA attention over {keys} keys at head_dim {d} needs {smem} bytes of shared \
             memory per block (limit {ATTENTION_SMEM_LIMIT})"
        )));
    }
    let name = attention_entry(dt, d, path);
    let g = geometry([l.div_ceil(16), a.layout.heads as usize, batch], 128, smem);
    // SAFETY: the caller vouches for the addresses.
    unsafe { run(gpu, &name, g, a) }?;
    Ok(name)
}

/// gather_cls_*: out[b] = x[first token of b], one block per sequence.
///
/// # Safety
/// cu_seqlens holds batch + 1 entries; rows they name lie in x; batch rows in out.
pub unsafe fn gather_cls<G: Gpu>(gpu: &G, dt: Dtype, a: &GatherClsArgs) -> Result<()> {
    let g = geometry([a.batch as usize, 1, 1], 128, 0);
    // SAFETY: the caller vouches for the addresses.
    unsafe { run(gpu, &entry("gather_cls", dt), g, a) }
}
