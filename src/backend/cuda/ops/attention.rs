//! The attention block: qkv.cu (the fused Q|K|V bias and the split into per-head Q, K and
//! V, appending K and V to a key/value cache when there is one) and attention.cu (fused
//! masked softmax-attention over them). Both read the heads through [`Heads`], which
//! makes the kernels' `HeadLayout`s in one place.

use super::{f32_and_f16, geometry, int, launch_args, Ctx, Kernel};
use crate::backend::cuda::gpu::{DevPtr, Dtype, Gpu};
use crate::config::PositionEmbeddingType;
use crate::error::{Error, Result};
use crate::graph::op;
use crate::weights::WeightId;

/// `qkv_split_{f32,f16}`.
pub const SPLIT: Kernel = f32_and_f16!("qkv_split");

/// Tensor-core entry points (f16 only), by head width.
const WMMA: [(usize, &str); 2] = [(32, "attention_f16_hd32"), (64, "attention_f16_hd64")];

/// `attention_{f32,f16}` (SIMT), then the tensor-core `attention_f16_hd{32,64}`.
pub const KERNEL: Kernel = Kernel {
    name: "attention",
    entries: &[
        (Dtype::F32, "attention_f32"),
        (Dtype::F16, "attention_f16"),
        (Dtype::F16, WMMA[0].1),
        (Dtype::F16, WMMA[1].1),
    ],
    max_smem: SMEM_LIMIT,
};

/// Dynamic shared memory one attention block may use on every target: 99 KiB (sm_86 and
/// sm_89; sm_80 allows 163 KiB, sm_90 227 KiB). 512 tokens at head_dim 64 need 62 KiB in
/// f16 and 88 KiB in f32.
pub const SMEM_LIMIT: usize = 99 * 1024;

/// Dynamic shared memory of one attention block over rows of `keys` keys (past +
/// max_len; attention.cu's attention_smem_bytes).
pub fn smem_bytes(keys: usize, head_dim: usize, elem: usize) -> usize {
    let lpad = keys.div_ceil(16) * 16;
    16 * lpad * (4 + elem) + 16 * head_dim * (elem * 5 + 4)
}

/// Queries per attention block.
const Q_TILE: usize = 16;

/// Which attention entry point to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttnPath {
    /// What the backend runs: tensor cores for f16 with head_dim 32 or 64.
    Auto,
    /// The general (SIMT) entry point whatever the shape.
    General,
}

/// The sequences and heads of one call: where row i of head h of sequence b lives in Q,
/// and in K and V.
#[derive(Debug, Clone, Copy)]
pub struct Heads {
    /// [batch + 1] i32 first token row of each sequence.
    pub cu_seqlens: DevPtr,
    /// Sequences.
    pub batch: usize,
    /// Heads.
    pub heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Longest sequence (rows per sequence when padded).
    pub max_len: usize,
    /// Token rows over all sequences.
    pub total_tokens: usize,
    /// Q (and K, V without a cache) packed [heads, tokens, head_dim] rather than padded
    /// [batch, heads, max_len, head_dim].
    pub packed: bool,
    /// K and V in a key/value cache instead.
    pub cache: Option<Cached>,
}

/// A key/value cache as the kernels see it: [batch, heads, capacity, head_dim] for keys
/// and for values, `past` positions filled before this call's.
#[derive(Debug, Clone, Copy)]
pub struct Cached {
    /// Positions per (sequence, head).
    pub capacity: usize,
    /// Positions filled before this call.
    pub past: usize,
}

/// `HeadLayout` (common.cuh).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct HeadLayout {
    cu_seqlens: DevPtr,
    heads: i32,
    head_dim: i32,
    max_len: i32,
    total_tokens: i32,
    packed: i32,
}

impl Heads {
    /// Cached positions before this call's.
    pub fn past(&self) -> usize {
        self.cache.map_or(0, |c| c.past)
    }

    /// Keys a query may see: past + max_len.
    pub fn keys(&self) -> usize {
        self.past() + self.max_len
    }

    /// Elements of Q.
    pub fn q_elems(&self) -> usize {
        let rows = match self.packed {
            true => self.total_tokens,
            false => self.batch * self.max_len,
        };
        self.heads * rows * self.head_dim
    }

    /// Elements of K (and of V): Q's, or the whole cache.
    pub fn kv_elems(&self) -> usize {
        match self.cache {
            Some(c) => self.batch * self.heads * c.capacity * self.head_dim,
            None => self.q_elems(),
        }
    }

    fn layout(&self) -> Result<HeadLayout> {
        Ok(HeadLayout {
            cu_seqlens: self.cu_seqlens,
            heads: int(self.heads, "heads")?,
            head_dim: int(self.head_dim, "head_dim")?,
            max_len: int(self.max_len, "max_len")?,
            total_tokens: int(self.total_tokens, "tokens")?,
            packed: self.packed as i32,
        })
    }

    /// K's and V's layout: Q's, or the padded cache (max_len = capacity).
    fn kv_layout(&self) -> Result<HeadLayout> {
        let layout = self.layout()?;
        Ok(match self.cache {
            Some(c) => HeadLayout {
                max_len: int(c.capacity, "cache capacity")?,
                packed: 0,
                ..layout
            },
            None => layout,
        })
    }
}

/// Device addresses of one split: the leading fields of qkv.cu's `QkvSplitArgs`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct SplitBuffers {
    /// [tokens, 3 * hidden] fused projections, Q | K | V.
    pub qkv: DevPtr,
    /// [3 * hidden] bias, or 0.
    pub bias: DevPtr,
    /// Q, [`Heads::q_elems`].
    pub q: DevPtr,
    /// K, [`Heads::kv_elems`].
    pub k: DevPtr,
    /// V, [`Heads::kv_elems`].
    pub v: DevPtr,
}

/// `QkvSplitArgs`.
#[repr(C)]
struct SplitArgs {
    bufs: SplitBuffers,
    layout: HeadLayout,
    kv_layout: HeadLayout,
    kv_offset: i32,
}

/// qkv_split: one block of 128 threads per (row of the longest sequence, sequence);
/// this call's K and V go to rows `past ..` of a cache.
///
/// # Safety
/// Each buffer holds what the [`SplitBuffers`] field says for `heads`, `cu_seqlens`
/// holds batch + 1 offsets, and with a cache past + max_len <= capacity.
pub unsafe fn launch_split<G: Gpu>(
    gpu: &G,
    dtype: Dtype,
    bufs: &SplitBuffers,
    heads: &Heads,
) -> Result<()> {
    let args = SplitArgs {
        bufs: *bufs,
        layout: heads.layout()?,
        kv_layout: heads.kv_layout()?,
        kv_offset: int(heads.past(), "past")?,
    };
    let g = geometry([heads.max_len, heads.batch, 1], 128, 0)?;
    // SAFETY: the caller vouches for the buffers; `args` is QkvSplitArgs.
    unsafe { launch_args(gpu, SPLIT.entry(dtype)?, g, &args) }
}

/// Device addresses of one attention launch: the leading fields of attention.cu's
/// `AttentionArgs`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Buffers {
    /// Q, [`Heads::q_elems`].
    pub q: DevPtr,
    /// K, [`Heads::kv_elems`].
    pub k: DevPtr,
    /// V, [`Heads::kv_elems`].
    pub v: DevPtr,
    /// [2 * max_positions - 1, head_dim] distance table with relative terms, else 0.
    pub rel_table: DevPtr,
    /// [tokens, heads * head_dim] context.
    pub out: DevPtr,
    /// [batch, heads, max_len, past + max_len] probabilities, or 0.
    pub probs: DevPtr,
    /// [batch, past + max_len] u8 keys each sequence may attend to, or 0 for all.
    pub key_mask: DevPtr,
}

/// Relative-position terms (with [`Buffers::rel_table`]).
#[derive(Debug, Clone, Copy)]
pub struct Relative {
    /// relative_key or relative_key_query.
    pub kind: PositionEmbeddingType,
    /// max_position_embeddings: distance d reads row d + max_positions - 1.
    pub max_positions: usize,
}

/// Shape and options of one attention launch.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// Sequences, heads and where K and V live.
    pub heads: Heads,
    /// Query i sees keys up to past + i.
    pub causal: bool,
    /// Relative-position terms.
    pub relative: Option<Relative>,
    /// Tensor cores where they apply, or the general path.
    pub path: AttnPath,
}

/// `AttentionArgs`.
#[repr(C)]
struct Args {
    bufs: Buffers,
    layout: HeadLayout,
    kv_layout: HeadLayout,
    causal: i32,
    rel_kind: i32,
    max_positions: i32,
    scale: f32,
    mask_stride: i32,
    past: i32,
}

/// The entry point for a dtype, head width and path.
fn entry(dtype: Dtype, head_dim: usize, path: AttnPath) -> Result<&'static str> {
    let wmma = WMMA.iter().find(|&&(d, _)| d == head_dim);
    match (dtype, wmma, path) {
        (Dtype::F16, Some(&(_, name)), AttnPath::Auto) => Ok(name),
        _ => KERNEL.entry(dtype),
    }
}

/// The kernel's rel_kind and max_positions.
fn relative_codes(relative: Option<Relative>) -> Result<(i32, i32)> {
    let Some(r) = relative else {
        return Ok((0, 0));
    };
    let kind = match r.kind {
        PositionEmbeddingType::RelativeKey => 1,
        PositionEmbeddingType::RelativeKeyQuery => 2,
        PositionEmbeddingType::Absolute => {
            return Err(Error::Internal(
                "relative attention terms with absolute positions".into(),
            ))
        }
    };
    Ok((kind, int(r.max_positions, "max_position_embeddings")?))
}

/// attention: one block of 128 threads per (16-query tile, head, sequence), whole score
/// rows in shared memory; returns the entry point it ran. Rows too long for one block's
/// shared memory are an error.
///
/// # Safety
/// Each buffer holds what the [`Buffers`] field says for `spec`, `cu_seqlens` holds
/// batch + 1 offsets, past + max_len <= the cache's capacity and, with relative terms,
/// <= max_positions.
pub unsafe fn launch<G: Gpu>(
    gpu: &G,
    dtype: Dtype,
    bufs: &Buffers,
    spec: &Spec,
) -> Result<&'static str> {
    let h = &spec.heads;
    let (keys, d) = (h.keys(), h.head_dim);
    let smem = smem_bytes(keys, d, dtype.size());
    if smem > SMEM_LIMIT {
        return Err(Error::Unsupported(format!(
            "CUDA attention over {keys} keys at head_dim {d} needs {smem} bytes of shared \
             memory per block (limit {SMEM_LIMIT})"
        )));
    }
    if spec.relative.is_some() != (bufs.rel_table != 0) {
        return Err(Error::Internal(
            "relative attention terms need their table, and only they".into(),
        ));
    }
    let (rel_kind, max_positions) = relative_codes(spec.relative)?;
    let args = Args {
        bufs: *bufs,
        layout: h.layout()?,
        kv_layout: h.kv_layout()?,
        causal: spec.causal as i32,
        rel_kind,
        max_positions,
        scale: (1.0 / (d as f64).sqrt()) as f32,
        mask_stride: int(keys, "keys")?,
        past: int(h.past(), "past")?,
    };
    let name = entry(dtype, d, spec.path)?;
    let g = geometry([h.max_len.div_ceil(Q_TILE), h.heads, h.batch], 128, smem)?;
    // SAFETY: the caller vouches for the buffers; `args` is AttentionArgs.
    unsafe { launch_args(gpu, name, g, &args) }?;
    Ok(name)
}

/// A backend-made key/value cache in device memory: per layer, keys then values, each
/// [batch, heads, capacity, head_dim].
#[derive(Debug, Clone, Copy)]
pub(in crate::backend::cuda) struct CacheAt {
    /// Layer 0's keys.
    pub base: DevPtr,
    /// Elements of one layer's keys (and of its values).
    pub per_layer: usize,
    /// Positions per (sequence, head).
    pub capacity: usize,
}

/// `Step::Attention`: the split (with the QKV bias the lowering left to it) into the
/// per-head scratch or the cache, then attention over it.
pub(in crate::backend::cuda) fn step<G: Gpu>(
    cx: &Ctx<G>,
    a: &op::Attention,
    bias: Option<WeightId>,
) -> Result<()> {
    let t = cx.tokens;
    let [q, k, v] = cx.heads;
    let (k, v, cache) = match cx.cache {
        Some(c) => {
            let bytes = (c.per_layer * cx.dtype.size()) as DevPtr;
            let keys = c.base + 2 * a.layer as DevPtr * bytes;
            let cached = Cached {
                capacity: c.capacity,
                past: t.past,
            };
            (keys, keys + bytes, Some(cached))
        }
        None => (k, v, None),
    };
    let heads = Heads {
        cu_seqlens: cx.inputs.cu_seqlens,
        batch: t.batch,
        heads: a.heads,
        head_dim: a.head_dim,
        max_len: t.seq,
        total_tokens: t.total,
        packed: t.packed,
        cache,
    };
    let split = SplitBuffers {
        qkv: cx.buf(a.qkv),
        bias: cx.opt_w(bias),
        q,
        k,
        v,
    };
    let bufs = Buffers {
        q,
        k,
        v,
        rel_table: a.relative.map_or(0, |r| cx.w(r.table)),
        out: cx.buf(a.out),
        probs: cx.opt_buf(a.probs),
        key_mask: cx.inputs.key_mask,
    };
    let spec = Spec {
        heads,
        causal: a.causal,
        relative: a.relative.map(|r| Relative {
            kind: r.kind,
            max_positions: r.max_positions,
        }),
        path: AttnPath::Auto,
    };
    // SAFETY: the scratch holds the widest attention's heads at batch * seq rows, the
    // cache every layer at its capacity, the inputs `cu_seqlens` and the [batch, past +
    // seq] mask, the plan buffers and weights their whole shapes (Ctx); the batch was
    // validated to past + seq <= max_position_embeddings, which is the cache's capacity
    // and the distance table's reach.
    unsafe {
        launch_split(cx.gpu, cx.dtype, &split, &heads)?;
        launch(cx.gpu, cx.dtype, &bufs, &spec).map(|_| ())
    }
}
