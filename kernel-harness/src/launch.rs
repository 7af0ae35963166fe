//! Safe launchers: each checks its slices against every size the kernel will touch, then
//! launches through the CUDA backend's own launcher (`bertrt::backend::cuda::ops`), so
//! the entry point, the geometry and every code, stride and scale the kernel gets are
//! the ones the GPU gets.

use std::ffi::{c_char, c_long, CStr, CString};

pub use bertrt::backend::cuda::ops::attention::AttnPath;
use bertrt::backend::cuda::ops::{attention, bias_act, embeddings, layernorm, pooler};
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

/// The launch's result; a refused launch fails the test.
fn done<T>(r: bertrt::Result<T>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
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

/// embeddings_*: gather, sum and LayerNorm of every token row.
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
    let bufs = embeddings::Buffers {
        ids: addr(ids),
        type_ids: addr(type_ids),
        positions: addr(positions),
        word: addr(t.word),
        position: ptr(t.position),
        token_type: addr(t.token_type),
        gamma: addr(t.gamma),
        beta: addr(t.beta),
        out: mut_ptr(out),
    };
    let spec = embeddings::Spec {
        tokens,
        hidden,
        eps: t.eps,
    };
    // SAFETY: every index the kernel reads was checked against its table above; it
    // writes out[t * hidden .. (t + 1) * hidden] for t < tokens.
    done(unsafe { embeddings::launch(&HostGpu::default(), E::DTYPE, &bufs, &spec) });
}

/// layernorm_*: out = LayerNorm(act(x + bias) + residual) row by row.
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
    let bufs = layernorm::Buffers {
        x: addr(x),
        bias: ptr(bias),
        residual: ptr(residual),
        gamma: addr(gamma),
        beta: addr(beta),
        out: mut_ptr(out),
    };
    let spec = layernorm::Spec {
        rows: x.len() / width,
        width,
        act,
        eps,
    };
    // SAFETY: rows * width elements in x, residual and out; width in bias, gamma, beta.
    done(unsafe { layernorm::launch(&HostGpu::default(), E::DTYPE, &bufs, &spec) });
}

/// bias_act_*: out = act(x + bias) over [rows, n], in at most `max_blocks` blocks (the
/// backend uses [`bias_act::MAX_BLOCKS`]; tests lower it to turn the grid-stride loop).
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
    let bufs = bias_act::Buffers {
        x: addr(x),
        bias: ptr(bias),
        out: mut_ptr(out),
    };
    let spec = bias_act::Spec {
        rows: x.len() / n,
        n,
        act,
        max_blocks,
    };
    // SAFETY: rows * n elements in x and out, n in bias.
    done(unsafe { bias_act::launch(&HostGpu::default(), E::DTYPE, &bufs, &spec) });
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
    /// These heads over `r` as the kernels see them, with K and V in `cache` if given.
    pub fn over(&self, r: &Ragged, cache: Option<Cache>) -> attention::Heads {
        attention::Heads {
            cu_seqlens: addr(&r.cu_seqlens),
            batch: r.batch(),
            heads: self.heads,
            head_dim: self.head_dim,
            max_len: r.max_len(),
            total_tokens: r.total(),
            packed: self.packed,
            cache: cache.map(|c| attention::Cached {
                capacity: c.capacity,
                past: c.past,
            }),
        }
    }

    /// Elements of one of Q, K, V in this layout.
    pub fn len(&self, r: &Ragged) -> usize {
        self.over(r, None).q_elems()
    }

    /// Offset of row i of head h of sequence b (the kernels' HeadLayout::row).
    pub fn row(&self, r: &Ragged, b: usize, h: usize, i: usize) -> usize {
        if self.packed {
            (h * r.total() + r.start(b) + i) * self.head_dim
        } else {
            ((b * self.heads + h) * r.max_len() + i) * self.head_dim
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
    let h = g.over(r, cache);
    let hidden = g.heads * g.head_dim;
    assert_eq!(qkv.len(), r.total() * 3 * hidden);
    assert!(bias.is_none_or(|b| b.len() == 3 * hidden));
    assert_eq!(q.len(), h.q_elems());
    assert!(k.len() == h.kv_elems() && v.len() == h.kv_elems());
    assert!(
        cache.is_none_or(|c| h.keys() <= c.capacity),
        "the cache is full"
    );
    let bufs = attention::SplitBuffers {
        qkv: addr(qkv),
        bias: ptr(bias),
        q: mut_ptr(q),
        k: mut_ptr(k),
        v: mut_ptr(v),
    };
    // SAFETY: rows of valid tokens only are read; every written row lies in the layout
    // whose size was checked above.
    done(unsafe { attention::launch_split(&HostGpu::default(), E::DTYPE, &bufs, &h) });
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
    let h = g.over(r, cache);
    let keys = h.keys();
    assert_eq!(q.len(), h.q_elems());
    assert!(k.len() == h.kv_elems() && v.len() == h.kv_elems());
    let key_mask = cache.and_then(|c| c.key_mask);
    assert!(cache.is_none_or(|c| keys <= c.capacity));
    assert!(key_mask.is_none_or(|m| m.len() == r.batch() * keys));
    assert_eq!(out.len(), r.total() * g.heads * g.head_dim);
    if let Some(p) = &probs {
        assert_eq!(p.len(), r.batch() * g.heads * r.max_len() * keys);
    }
    if let Some(rel) = &relative {
        assert!(keys <= rel.max_positions);
        assert_eq!(rel.table.len(), (2 * rel.max_positions - 1) * g.head_dim);
    }
    let bufs = attention::Buffers {
        q: addr(q),
        k: addr(k),
        v: addr(v),
        rel_table: relative.map_or(0, |rel| addr(rel.table)),
        out: mut_ptr(out),
        probs: probs.map_or(0, |p| mut_ptr(p)),
        key_mask: key_mask.map_or(0, addr),
    };
    let spec = attention::Spec {
        heads: h,
        causal,
        relative: relative.map(|rel| attention::Relative {
            kind: rel.kind,
            max_positions: rel.max_positions,
        }),
        path,
    };
    // SAFETY: q, k, v hold the layouts checked above; queries are read below each
    // sequence's length and keys below past + length <= capacity; the key mask holds
    // past + max_len entries per sequence; distance rows stay below 2 * max_positions - 1
    // because past + max_len <= max_positions; out and probs were sized above.
    let entry = done(unsafe { attention::launch(&HostGpu::default(), E::DTYPE, &bufs, &spec) });
    entry.to_owned()
}

/// gather_cls_*: out[b] = x[first token of b].
pub fn gather_cls<E: Elem>(x: &[E], r: &Ragged, width: usize, out: &mut [E]) {
    assert!(x.len() == r.total() * width && out.len() == r.batch() * width);
    let bufs = pooler::Buffers {
        x: addr(x),
        cu_seqlens: addr(&r.cu_seqlens),
        out: mut_ptr(out),
    };
    let spec = pooler::Spec {
        batch: r.batch(),
        width,
    };
    // SAFETY: rows cu_seqlens[b] < total are read; batch rows written.
    done(unsafe { pooler::launch(&HostGpu::default(), E::DTYPE, &bufs, &spec) });
}
