//! Multi-head self-attention on the CPU, one (sequence, head) pair per task:
//! scores = Q Kᵀ (+ relative terms), scaled by 1/sqrt(d), masked, softmaxed, times V.
//! A pair's queries run in blocks of [`QUERY_BLOCK`]: scores, softmax and context of one
//! block while its scores are still in cache (a 512-token pair's whole score matrix is
//! 1 MiB, an L2's worth, and each of softmax's passes would stream it again). The block's
//! scores live in a per-thread scratch buffer (or directly in the requested
//! probabilities), never for the whole batch at once. Every output is computed alone, so
//! the blocking changes no bits.

use std::cell::RefCell;

use rayon::prelude::*;

use super::attn_products;
use super::fastmath;
use super::gemm::Isa;
use crate::config::PositionEmbeddingType;

/// Geometry of one attention call.
#[derive(Debug, Clone, Copy)]
pub struct AttnShape {
    /// Sequences.
    pub batch: usize,
    /// Query tokens per sequence.
    pub seq: usize,
    /// Cached tokens before them.
    pub past: usize,
    /// Heads.
    pub heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Causal masking.
    pub causal: bool,
}

impl AttnShape {
    fn hidden(&self) -> usize {
        self.heads * self.head_dim
    }
    fn keys(&self) -> usize {
        self.past + self.seq
    }
}

/// Where keys and values are read from.
#[derive(Clone, Copy)]
pub enum KvSource<'a> {
    /// The K and V thirds of the fused [tokens, 3 * hidden] projection (no cache).
    Fused(&'a [f32]),
    /// A cache laid out [batch, heads, capacity, head_dim] for keys and for values.
    Cache {
        /// Keys.
        k: &'a [f32],
        /// Values.
        v: &'a [f32],
        /// Positions per (sequence, head).
        capacity: usize,
    },
}

/// Relative-position terms: the distance table and its kind.
#[derive(Clone, Copy)]
pub struct RelativeTable<'a> {
    /// relative_key or relative_key_query.
    pub kind: PositionEmbeddingType,
    /// [2 * max_positions - 1, head_dim].
    pub table: &'a [f32],
    /// max_position_embeddings.
    pub max_positions: usize,
}

struct OutPtr(*mut f32);
// SAFETY: tasks write disjoint elements of the output (see `attention`).
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// A method (not a field access) so closures capture the Sync wrapper, not the pointer.
    fn at(&self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = const {
        RefCell::new(Scratch { scores: Vec::new(), ctx: Vec::new(), kt: Vec::new(), vp: Vec::new() })
    };
}

/// Queries per block of a pair's attention.
const QUERY_BLOCK: usize = 32;

/// One thread's buffers for a pair: a block's scores, the pair's context, packed Kᵀ and V.
struct Scratch {
    scores: Vec<f32>,
    ctx: Vec<f32>,
    kt: Vec<f32>,
    vp: Vec<f32>,
}

/// Self-attention for all (sequence, head) pairs.
///
/// `qkv` is [tokens, 3 * hidden] (queries in the first third); `mask` is [batch, keys]
/// with 1 = attend; `out` is [tokens, hidden]; `probs`, when given, is
/// [batch, heads, seq, keys]. A query row whose keys are all masked gets uniform weights,
/// as transformers' additive finfo.min mask gives.
pub fn attention(
    s: AttnShape,
    qkv: &[f32],
    kv: KvSource,
    mask: &[u8],
    relative: Option<RelativeTable>,
    out: &mut [f32],
    probs: Option<&mut [f32]>,
) {
    let (h, lq, lk) = (s.hidden(), s.seq, s.keys());
    assert_eq!(qkv.len(), s.batch * lq * 3 * h);
    assert_eq!(out.len(), s.batch * lq * h);
    assert_eq!(mask.len(), s.batch * lk);
    if let KvSource::Cache { k, v, capacity } = kv {
        assert!(capacity >= lk && k.len() == s.batch * s.heads * capacity * s.head_dim);
        assert_eq!(k.len(), v.len());
    }
    if let Some(rel) = relative {
        assert!(lk <= rel.max_positions);
        assert_eq!(rel.table.len(), (2 * rel.max_positions - 1) * s.head_dim);
    }
    let out_ptr = OutPtr(out.as_mut_ptr());
    let pair = |bh: usize, scores: Option<&mut [f32]>, scratch: &mut Scratch| {
        one_pair(s, bh, qkv, kv, mask, relative, scores, scratch);
        let ctx = &scratch.ctx;
        let (b, head) = (bh / s.heads, bh % s.heads);
        for i in 0..lq {
            let dst = (b * lq + i) * h + head * s.head_dim;
            let src = &ctx[i * s.head_dim..(i + 1) * s.head_dim];
            // SAFETY: element (b*lq + i, head*d .. head*d + d) of `out` belongs to this
            // (b, head) pair alone, and dst + d <= out.len() by the asserts above.
            unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), out_ptr.at(dst), s.head_dim) };
        }
    };
    let with_scratch = |f: &mut dyn FnMut(&mut Scratch)| {
        SCRATCH.with(|cell| {
            let scratch = &mut *cell.borrow_mut();
            scratch.scores.resize(QUERY_BLOCK.min(lq) * lk, 0.0);
            scratch.ctx.resize(lq * s.head_dim, 0.0);
            f(scratch);
        })
    };
    match probs {
        Some(probs) => {
            assert_eq!(probs.len(), s.batch * s.heads * lq * lk);
            probs
                .par_chunks_mut(lq * lk)
                .enumerate()
                .for_each(|(bh, scores)| {
                    with_scratch(&mut |scratch| pair(bh, Some(&mut *scores), scratch));
                });
        }
        None => (0..s.batch * s.heads).into_par_iter().for_each(|bh| {
            with_scratch(&mut |scratch| pair(bh, None, scratch));
        }),
    }
}

/// One pair's attention into `scratch.ctx` ([seq, head_dim]); `probs`, when given, is
/// the pair's [seq, keys] probabilities to fill (else the blocks use `scratch.scores`).
#[allow(clippy::too_many_arguments)]
fn one_pair(
    s: AttnShape,
    bh: usize,
    qkv: &[f32],
    kv: KvSource,
    mask: &[u8],
    relative: Option<RelativeTable>,
    mut probs: Option<&mut [f32]>,
    scratch: &mut Scratch,
) {
    let (h, d, lq, lk) = (s.hidden(), s.head_dim, s.seq, s.keys());
    let (b, head) = (bh / s.heads, bh % s.heads);
    let q_start = b * lq * 3 * h + head * d;
    let q = &qkv[q_start..];
    let (k_data, v_data, kv_rs) = match kv {
        KvSource::Fused(buf) => (&buf[q_start + h..], &buf[q_start + 2 * h..], 3 * h),
        KvSource::Cache { k, v, capacity } => {
            let start = bh * capacity * d;
            (&k[start..], &v[start..], d)
        }
    };
    attn_products::pack_keys(&mut scratch.kt, k_data, kv_rs, lk, d);
    attn_products::pack_values(&mut scratch.vp, v_data, kv_rs, lk, d);
    let scale = (1.0 / (d as f64).sqrt()) as f32;
    let keep = &mask[b * lk..(b + 1) * lk];
    let isa = Isa::detect();
    for i0 in (0..lq).step_by(QUERY_BLOCK) {
        let rows = QUERY_BLOCK.min(lq - i0);
        let block = match probs.as_deref_mut() {
            Some(all) => &mut all[i0 * lk..(i0 + rows) * lk],
            None => &mut scratch.scores[..rows * lk],
        };
        let qb = &q[i0 * 3 * h..];
        attn_products::scores(block, qb, 3 * h, &scratch.kt, rows, lk, d);
        if let Some(rel) = relative {
            for i in 0..rows {
                let qi = &qb[i * 3 * h..i * 3 * h + d];
                for j in 0..lk {
                    let row = s.past + i0 + i + rel.max_positions - 1 - j;
                    let e = &rel.table[row * d..(row + 1) * d];
                    let mut term = dot(qi, e);
                    if rel.kind == PositionEmbeddingType::RelativeKeyQuery {
                        term += dot(&k_data[j * kv_rs..j * kv_rs + d], e);
                    }
                    block[i * lk + j] += term;
                }
            }
        }
        for i in 0..rows {
            let visible = if s.causal { s.past + i0 + i + 1 } else { lk };
            let row = &mut block[i * lk..(i + 1) * lk];
            match isa {
                // SAFETY: `Isa::detect` only returns instruction sets this CPU supports.
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => unsafe { softmax_row_avx512(row, scale, keep, visible) },
                // SAFETY: as above.
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => unsafe { softmax_row_avx2(row, scale, keep, visible) },
                _ => softmax_row(row, scale, keep, visible),
            }
        }
        attn_products::context(&mut scratch.ctx[i0 * d..], block, &scratch.vp, rows, lk, d);
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// [`softmax_row`] compiled for AVX-512 (its exp loop on zmm lanes).
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn softmax_row_avx512(row: &mut [f32], scale: f32, keep: &[u8], visible: usize) {
    softmax_row(row, scale, keep, visible);
}

/// [`softmax_row`] compiled for AVX2 + FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn softmax_row_avx2(row: &mut [f32], scale: f32, keep: &[u8], visible: usize) {
    softmax_row(row, scale, keep, visible);
}

/// Scales, masks (keys j >= `visible` or with keep[j] == 0) and normalizes one row.
/// Written without branches in the inner loops, so that they vectorize; always inlined
/// into the per-ISA wrappers above so that they vectorize for the widest vectors.
#[inline(always)]
fn softmax_row(row: &mut [f32], scale: f32, keep: &[u8], visible: usize) {
    let n = visible.min(row.len()).min(keep.len());
    let keep = &keep[..n];
    let (live, future) = row.split_at_mut(n);
    future.fill(0.0);
    // Sixteen partial maxima, with a plain comparison rather than f32::max (whose NaN
    // rule keeps the compiler from vectorizing the reduction).
    let lane_max = |m: f32, v: f32, k: u8| {
        let v = if k != 0 { v } else { f32::NEG_INFINITY };
        if v > m {
            v
        } else {
            m
        }
    };
    let mut maxima = [f32::NEG_INFINITY; 16];
    let mut chunks = live.chunks_exact_mut(16);
    let mut keeps = keep.chunks_exact(16);
    for (c, kc) in (&mut chunks).zip(&mut keeps) {
        for ((m, v), &k) in maxima.iter_mut().zip(c.iter_mut()).zip(kc) {
            *v *= scale;
            *m = lane_max(*m, *v, k);
        }
    }
    let mut max = maxima.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    for (v, &k) in chunks.into_remainder().iter_mut().zip(keeps.remainder()) {
        *v *= scale;
        max = lane_max(max, *v, k);
    }
    if max == f32::NEG_INFINITY {
        let uniform = 1.0 / row.len() as f32;
        row.fill(uniform);
        return;
    }
    for (v, &k) in live.iter_mut().zip(keep) {
        let e = fastmath::exp(*v - max);
        *v = if k != 0 { e } else { 0.0 };
    }
    // Eight partial sums (a reduction the compiler may vectorize), value j always in
    // lane j % 8, the tail too: padding keys add exact zeros to the same lanes, so a
    // row's sum, and its probabilities, do not depend on how far its batch is padded.
    let mut lanes = [0.0f32; 8];
    let mut chunks = live.chunks_exact(8);
    for c in &mut chunks {
        for (l, v) in lanes.iter_mut().zip(c) {
            *l += v;
        }
    }
    for (l, v) in lanes.iter_mut().zip(chunks.remainder()) {
        *l += v;
    }
    let sum: f32 = lanes.iter().sum::<f32>();
    let inv = 1.0 / sum;
    for v in live.iter_mut() {
        *v *= inv;
    }
}
