//! Safe launchers: each checks its buffers, picks the geometry the CUDA launcher uses and
//! runs the entry point through the host runtime.

use std::ffi::{c_char, c_long, CStr, CString};

use bertrt::backend::cuda::args::*;
use bertrt::backend::cuda::launch as cuda;
pub use bertrt::backend::cuda::launch::{
    act_code, attention_smem_bytes, row_threads, AttnPath, ATTENTION_SMEM_LIMIT,
};
use bertrt::backend::cuda::{DevPtr, Geometry, Gpu};
use bertrt::config::{Activation, PositionEmbeddingType};

use crate::gpu::HostGpu;
use crate::{Elem, Ragged};

extern "C" {
    fn bertrt_host_launches(name: *const c_char) -> c_long;
    fn bertrt_host_kernel_count() -> usize;
    fn bertrt_host_kernel_name(i: usize) -> *const c_char;
}

/// Launches entry point `name` with `args` as its one parameter; panics if the runtime
/// refuses the launch.
///
/// # Safety
/// Every pointer in `args` must be valid for every access the kernel makes under this
/// geometry (the typed launchers below check the sizes before calling this).
pub unsafe fn launch_raw<A>(name: &str, grid: [u32; 3], block: [u32; 3], smem: usize, args: &A) {
    let geometry = Geometry { grid, block, smem };
    // SAFETY: forwarded to the caller.
    unsafe {
        HostGpu::default().launch(
            name,
            geometry,
            (args as *const A).cast(),
            std::mem::size_of::<A>(),
        )
    }
    .unwrap_or_else(|e| panic!("{e}"));
}

/// Times `name` has been launched in this process (None: no such entry point).
pub fn launches(name: &str) -> Option<u64> {
    let c_name = CString::new(name).expect("kernel names have no NUL");
    // SAFETY: a valid C string; the runtime only reads it.
    let n = unsafe { bertrt_host_launches(c_name.as_ptr()) };
    u64::try_from(n).ok()
}

/// Every entry point the kernels define (BERTRT_ENTRY lines), sorted.
pub fn kernels() -> Vec<String> {
    // SAFETY: indices below the count give valid, static C strings.
    unsafe {
        (0..bertrt_host_kernel_count())
            .map(|i| {
                CStr::from_ptr(bertrt_host_kernel_name(i))
                    .to_string_lossy()
                    .into_owned()
            })
            .collect()
    }
}

fn ptr<E>(s: Option<&[E]>) -> DevPtr {
    s.map_or(0, |s| s.as_ptr() as DevPtr)
}

fn mut_ptr<E>(s: &mut [E]) -> DevPtr {
    s.as_mut_ptr() as DevPtr
}

fn addr<E>(s: &[E]) -> DevPtr {
    s.as_ptr() as DevPtr
}

/// Embedding tables of one model, in the kernel's storage type.
pub struct EmbeddingTables<'a, E> {
    /// [vocab, hidden].
    pub word: &'a [E],
    /// [max_positions, hidden], absent for relative position types.
    pub position: Option<&'a [E]>,
    /// [type_vocab, hidden].
    pub token_type: &'a [E],
    /// LayerNorm scale.
    pub gamma: &'a [E],
    /// LayerNorm shift.
    pub beta: &'a [E],
    /// LayerNorm epsilon.
    pub eps: f32,
}

/// embeddings_*: one block of [`row_threads`] per token.
pub fn embeddings<E: Elem>(
    t: &EmbeddingTables<E>,
    ids: &[i32],
    type_ids: &[i32],
    positions: &[i32],
    out: &mut [E],
) {
    let hidden = t.gamma.len();
    let tokens = ids.len();
    assert!(hidden > 0 && t.beta.len() == hidden && out.len() == tokens * hidden);
    assert!(type_ids.len() == tokens && positions.len() == tokens);
    let in_table = |table: &[E], idx: &[i32]| {
        table.len().is_multiple_of(hidden)
            && idx
                .iter()
                .all(|&i| i >= 0 && (i as usize) < table.len() / hidden)
    };
    assert!(in_table(t.word, ids) && in_table(t.token_type, type_ids));
    assert!(t.position.is_none_or(|p| in_table(p, positions)));
    let args = EmbeddingsArgs {
        ids: addr(ids),
        type_ids: addr(type_ids),
        positions: addr(positions),
        word: addr(t.word),
        position: ptr(t.position),
        token_type: addr(t.token_type),
        gamma: addr(t.gamma),
        beta: addr(t.beta),
        out: mut_ptr(out),
        tokens: tokens as i32,
        hidden: hidden as i32,
        eps: t.eps,
    };
    // SAFETY: every index the kernel reads was checked against its table above; it
    // writes out[t * hidden .. (t + 1) * hidden] for t < tokens.
    unsafe { cuda::embeddings(&HostGpu::default(), E::DTYPE, &args) }
        .unwrap_or_else(|e| panic!("{e}"));
}

/// layernorm_*: out = LayerNorm(act(x + bias) + residual), one block of [`row_threads`]
/// per row.
#[allow(clippy::too_many_arguments)]
pub fn layernorm<E: Elem>(
    x: &[E],
    bias: Option<&[E]>,
    residual: Option<&[E]>,
    act: Option<Activation>,
    gamma: &[E],
    beta: &[E],
    eps: f32,
    out: &mut [E],
) {
    let width = gamma.len();
    assert!(
        width > 0 && beta.len() == width && x.len().is_multiple_of(width) && out.len() == x.len()
    );
    assert!(bias.is_none_or(|b| b.len() == width));
    assert!(residual.is_none_or(|r| r.len() == x.len()));
    let rows = x.len() / width;
    let args = LayerNormArgs {
        x: addr(x),
        bias: ptr(bias),
        residual: ptr(residual),
        gamma: addr(gamma),
        beta: addr(beta),
        out: mut_ptr(out),
        rows: rows as i32,
        width: width as i32,
        act: act_code(act),
        eps,
    };
    // SAFETY: rows * width elements in x, residual and out; width in bias, gamma, beta.
    unsafe { cuda::layernorm(&HostGpu::default(), E::DTYPE, &args) }
        .unwrap_or_else(|e| panic!("{e}"));
}

/// bias_act_*: out = act(x + bias) over [rows, n]; 256 threads a block, at most
/// `max_blocks` blocks (the CUDA launcher uses 1024; tests lower it to exercise the
/// grid-stride loop).
pub fn bias_act<E: Elem>(
    x: &[E],
    bias: Option<&[E]>,
    act: Option<Activation>,
    n: usize,
    max_blocks: u32,
    out: &mut [E],
) {
    assert!(n > 0 && x.len().is_multiple_of(n) && out.len() == x.len());
    assert!(bias.is_none_or(|b| b.len() == n));
    let args = BiasActArgs {
        x: addr(x),
        bias: ptr(bias),
        out: mut_ptr(out),
        rows: (x.len() / n) as i32,
        n: n as i32,
        act: act_code(act),
    };
    // SAFETY: rows * n elements in x and out, n in bias.
    unsafe { cuda::bias_act(&HostGpu::default(), E::DTYPE, &args, max_blocks) }
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Geometry of per-head buffers.
#[derive(Debug, Clone, Copy)]
pub struct Heads {
    /// Number of heads.
    pub heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Packed [heads, tokens, head_dim] (true) or padded [batch, heads, max_len, head_dim].
    pub packed: bool,
}

impl Heads {
    /// Elements of one of Q, K, V in this layout.
    pub fn len(&self, r: &Ragged) -> usize {
        let rows = if self.packed {
            r.total()
        } else {
            r.batch() * r.max_len()
        };
        self.heads * rows * self.head_dim
    }

    /// Offset of row i of head h of sequence b (the kernels' HeadLayout::row).
    pub fn row(&self, r: &Ragged, b: usize, h: usize, i: usize) -> usize {
        if self.packed {
            (h * r.total() + r.start(b) + i) * self.head_dim
        } else {
            ((b * self.heads + h) * r.max_len() + i) * self.head_dim
        }
    }

    fn layout(&self, r: &Ragged) -> HeadLayout {
        HeadLayout {
            cu_seqlens: addr(&r.cu_seqlens),
            heads: self.heads as i32,
            head_dim: self.head_dim as i32,
            max_len: r.max_len() as i32,
            total_tokens: r.total() as i32,
            packed: self.packed as i32,
        }
    }
}

/// A key/value cache: keys and values of every step so far, [batch, heads, capacity,
/// head_dim] each (the padded layout with max_len = capacity).
#[derive(Debug, Clone, Copy)]
pub struct Cache<'a> {
    /// Positions per (sequence, head).
    pub capacity: usize,
    /// Positions filled before this step.
    pub past: usize,
    /// [batch, past + max_len] (1 = may attend), or None for all keys.
    pub key_mask: Option<&'a [u8]>,
}

impl Cache<'_> {
    fn layout(&self, r: &Ragged, g: Heads) -> HeadLayout {
        HeadLayout {
            max_len: self.capacity as i32,
            packed: 0,
            ..g.layout(r)
        }
    }

    fn len(&self, r: &Ragged, g: Heads) -> usize {
        r.batch() * g.heads * self.capacity * g.head_dim
    }
}

/// qkv_split_*: bias add + head split of the packed [tokens, 3 * hidden] QKV output;
/// with a cache, K and V are appended to it at position `past`.
#[allow(clippy::too_many_arguments)]
pub fn qkv_split<E: Elem>(
    qkv: &[E],
    bias: Option<&[E]>,
    r: &Ragged,
    g: Heads,
    cache: Option<Cache>,
    q: &mut [E],
    k: &mut [E],
    v: &mut [E],
) {
    let hidden = g.heads * g.head_dim;
    assert_eq!(qkv.len(), r.total() * 3 * hidden);
    assert!(bias.is_none_or(|b| b.len() == 3 * hidden));
    assert_eq!(q.len(), g.len(r));
    let (kv_layout, kv_len, kv_offset) = match cache {
        Some(c) => {
            assert!(c.past + r.max_len() <= c.capacity, "the cache is full");
            (c.layout(r, g), c.len(r, g), c.past)
        }
        None => (g.layout(r), g.len(r), 0),
    };
    assert!(k.len() == kv_len && v.len() == kv_len);
    let args = QkvSplitArgs {
        qkv: addr(qkv),
        bias: ptr(bias),
        q: mut_ptr(q),
        k: mut_ptr(k),
        v: mut_ptr(v),
        layout: g.layout(r),
        kv_layout,
        kv_offset: kv_offset as i32,
    };
    // SAFETY: rows of valid tokens only are read; every written row lies in the layout
    // whose size was checked above.
    unsafe { cuda::qkv_split(&HostGpu::default(), E::DTYPE, &args, r.batch()) }
        .unwrap_or_else(|e| panic!("{e}"));
}

/// The relative-position distance table and its kind.
#[derive(Debug, Clone, Copy)]
pub struct Relative<'a, E> {
    /// relative_key or relative_key_query.
    pub kind: PositionEmbeddingType,
    /// [2 * max_positions - 1, head_dim].
    pub table: &'a [E],
    /// max_position_embeddings.
    pub max_positions: usize,
}

/// attention_*: fused masked softmax-attention, over this step's keys or (with a cache)
/// the cached ones followed by them; returns the entry point it ran.
#[allow(clippy::too_many_arguments)]
pub fn attention<E: Elem>(
    q: &[E],
    k: &[E],
    v: &[E],
    r: &Ragged,
    g: Heads,
    cache: Option<Cache>,
    causal: bool,
    relative: Option<Relative<E>>,
    path: AttnPath,
    out: &mut [E],
    probs: Option<&mut [E]>,
) -> String {
    let (l, d) = (r.max_len(), g.head_dim);
    let past = cache.map_or(0, |c| c.past);
    let keys = past + l;
    assert_eq!(q.len(), g.len(r));
    let kv_len = cache.map_or(g.len(r), |c| c.len(r, g));
    assert!(k.len() == kv_len && v.len() == kv_len);
    if let Some(c) = cache {
        assert!(keys <= c.capacity);
        assert!(c.key_mask.is_none_or(|m| m.len() == r.batch() * keys));
    }
    assert_eq!(out.len(), r.total() * g.heads * d);
    if let Some(p) = &probs {
        assert_eq!(p.len(), r.batch() * g.heads * l * keys);
    }
    if let Some(rel) = &relative {
        assert!(keys <= rel.max_positions && rel.table.len() == (2 * rel.max_positions - 1) * d);
    }
    let key_mask = cache.and_then(|c| c.key_mask);
    let args = AttentionArgs {
        q: addr(q),
        k: addr(k),
        v: addr(v),
        layout: g.layout(r),
        rel_table: relative.map_or(0, |rel| addr(rel.table)),
        out: mut_ptr(out),
        probs: probs.map_or(0, |p| mut_ptr(p)),
        causal: causal as i32,
        rel_kind: match relative.map(|rel| rel.kind) {
            Some(PositionEmbeddingType::RelativeKeyQuery) => 2,
            Some(_) => 1,
            None => 0,
        },
        max_positions: relative.map_or(0, |rel| rel.max_positions as i32),
        scale: (1.0 / (d as f64).sqrt()) as f32,
        kv_layout: cache.map_or(g.layout(r), |c| c.layout(r, g)),
        key_mask: key_mask.map_or(0, addr),
        mask_stride: keys as i32,
        past: past as i32,
    };
    // SAFETY: q, k, v hold the layouts checked above; queries are read below each
    // sequence's length and keys below past + length <= capacity; the key mask holds
    // past + max_len entries per sequence; distance rows stay below 2 * max_positions - 1
    // because past + max_len <= max_positions; out and probs were sized above.
    unsafe { cuda::attention(&HostGpu::default(), E::DTYPE, &args, r.batch(), path) }
        .unwrap_or_else(|e| panic!("{e}"))
}

/// gather_cls_*: out[b] = x[first token of b].
pub fn gather_cls<E: Elem>(x: &[E], r: &Ragged, width: usize, out: &mut [E]) {
    assert!(x.len() == r.total() * width && out.len() == r.batch() * width);
    let args = GatherClsArgs {
        x: addr(x),
        cu_seqlens: addr(&r.cu_seqlens),
        out: mut_ptr(out),
        batch: r.batch() as i32,
        width: width as i32,
    };
    // SAFETY: rows cu_seqlens[b] < total are read; batch rows written.
    unsafe { cuda::gather_cls(&HostGpu::default(), E::DTYPE, &args) }
        .unwrap_or_else(|e| panic!("{e}"));
}
