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
use super::gemm::Isa;
use super::softmax;
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

/// How a pair's two products (scores and context) are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Products {
    /// f32 multiply-adds, the same bits on every instruction set: the f32 backend's.
    F32,
    /// Where the CPU has AMX-BF16, tile products of operands split into two bf16 halves
    /// (within about 2^-16 of the f32 products; `attn_products::amx`); elsewhere as
    /// [`Products::F32`]. The bf16 backend's choice.
    SplitBf16,
    /// Where the CPU has AVX512-BF16 but no AMX-BF16, `vdpbf16ps` on operands rounded to
    /// bf16 (each product within 2^-7 of f32; `attn_products::bf16`); elsewhere as
    /// [`Products::F32`] (the AMX machines measured here run `vdpbf16ps` at half the
    /// f32 FMA rate). The int8 backend's choice.
    Bf16,
}

/// How a pair's products run on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Run {
    F32,
    Split,
    Plain,
}

impl Products {
    /// What runs here.
    fn run(self) -> Run {
        #[cfg(target_arch = "x86_64")]
        match self {
            Products::SplitBf16 if attn_products::amx::supported() => return Run::Split,
            Products::Bf16
                if attn_products::bf16::supported() && !attn_products::amx::supported() =>
            {
                return Run::Plain
            }
            _ => {}
        }
        let _ = self;
        Run::F32
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = const {
        RefCell::new(Scratch {
            scores: Vec::new(),
            ctx: Vec::new(),
            kt: Vec::new(),
            vp: Vec::new(),
            #[cfg(target_arch = "x86_64")]
            split: attn_products::amx::Buffers::new(),
            #[cfg(target_arch = "x86_64")]
            plain: attn_products::bf16::Buffers::new(),
        })
    };
}

/// Queries per block of a pair's attention.
const QUERY_BLOCK: usize = 32;

/// One thread's buffers for a pair: a block's scores, the pair's context, packed Kᵀ and V
/// (f32 products) or the split operands (split products).
struct Scratch {
    scores: Vec<f32>,
    ctx: Vec<f32>,
    kt: Vec<f32>,
    vp: Vec<f32>,
    #[cfg(target_arch = "x86_64")]
    split: attn_products::amx::Buffers,
    #[cfg(target_arch = "x86_64")]
    plain: attn_products::bf16::Buffers,
}

/// Score rows of the split products are padded to whole tiles: keys to this many.
const SPLIT_KEYS: usize = 32;

/// Self-attention for all (sequence, head) pairs, the products computed as `products`
/// says.
///
/// `qkv` is [tokens, 3 * hidden] (queries in the first third); `mask` is [batch, keys]
/// with 1 = attend; `out` is [tokens, hidden]; `probs`, when given, is
/// [batch, heads, seq, keys]. A query row whose keys are all masked gets uniform weights,
/// as transformers' additive finfo.min mask gives.
#[allow(clippy::too_many_arguments)]
pub fn attention(
    products: Products,
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
    let run = products.run();
    let pair = |bh: usize, scores: Option<&mut [f32]>, scratch: &mut Scratch| {
        one_pair(s, bh, qkv, kv, mask, relative, run, scores, scratch);
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
            // Enough for the split products' padded block too.
            let rows = QUERY_BLOCK.min(lq).next_multiple_of(16);
            scratch
                .scores
                .resize(rows * lk.next_multiple_of(SPLIT_KEYS), 0.0);
            scratch
                .ctx
                .resize(lq.next_multiple_of(16) * s.head_dim, 0.0);
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
/// `run`: which products (the caller checked the CPU).
#[allow(clippy::too_many_arguments)]
fn one_pair(
    s: AttnShape,
    bh: usize,
    qkv: &[f32],
    kv: KvSource,
    mask: &[u8],
    relative: Option<RelativeTable>,
    run: Run,
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
    let Scratch {
        scores,
        ctx,
        kt,
        vp,
        #[cfg(target_arch = "x86_64")]
            split: bufs,
        #[cfg(target_arch = "x86_64")]
        plain,
    } = scratch;
    let packed = Packed {
        kt,
        vp,
        #[cfg(target_arch = "x86_64")]
        bufs,
        #[cfg(target_arch = "x86_64")]
        plain,
    };
    let split = run == Run::Split;
    let mut products = PairProducts::new(run, packed, k_data, v_data, kv_rs, lk, d);
    // Score rows: lk apart, or whole tiles apart for the split products.
    let ls = if split {
        lk.next_multiple_of(SPLIT_KEYS)
    } else {
        lk
    };
    let scale = (1.0 / (d as f64).sqrt()) as f32;
    let keep = &mask[b * lk..(b + 1) * lk];
    let isa = Isa::detect();
    for i0 in (0..lq).step_by(QUERY_BLOCK) {
        let rows = QUERY_BLOCK.min(lq - i0);
        // The f32 products write the requested probabilities in place; the split ones
        // (padded rows) copy them there.
        let (block, copy_to) = match probs.as_deref_mut() {
            Some(all) if !split => (&mut all[i0 * lk..(i0 + rows) * lk], None),
            Some(all) => (&mut scores[..], Some(all)),
            None => (&mut scores[..], None),
        };
        let qb = &q[i0 * 3 * h..];
        products.scores(block, ls, qb, 3 * h, rows);
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
                    block[i * ls + j] += term;
                }
            }
        }
        for i in 0..rows {
            let visible = if s.causal { s.past + i0 + i + 1 } else { lk };
            let row = &mut block[i * ls..i * ls + lk];
            softmax::softmax_row(isa, row, scale, keep, visible);
        }
        if let Some(all) = copy_to {
            for i in 0..rows {
                all[(i0 + i) * lk..(i0 + i + 1) * lk].copy_from_slice(&block[i * ls..i * ls + lk]);
            }
        }
        products.context(&mut ctx[i0 * d..], block, ls, rows);
    }
}

/// A pair's keys and values packed for its products, and the products themselves.
enum PairProducts<'a> {
    /// f32: Kᵀ and V packed by `attn_products::pack_keys` / `pack_values`.
    F32 {
        kt: &'a [f32],
        vp: &'a [f32],
        lk: usize,
        d: usize,
    },
    /// Split bf16 on AMX tiles.
    #[cfg(target_arch = "x86_64")]
    Split {
        bufs: &'a mut attn_products::amx::Buffers,
        lk: usize,
        d: usize,
    },
    /// Plain bf16 on AVX512-BF16.
    #[cfg(target_arch = "x86_64")]
    Plain {
        bufs: &'a mut attn_products::bf16::Buffers,
        lk: usize,
        d: usize,
    },
}

/// The scratch buffers the packed keys and values go to.
struct Packed<'a> {
    kt: &'a mut Vec<f32>,
    vp: &'a mut Vec<f32>,
    #[cfg(target_arch = "x86_64")]
    bufs: &'a mut attn_products::amx::Buffers,
    #[cfg(target_arch = "x86_64")]
    plain: &'a mut attn_products::bf16::Buffers,
}

impl<'a> PairProducts<'a> {
    /// Packs (or splits, or rounds) `lk` keys and values of `d` values, rows `rs` apart.
    fn new(
        run: Run,
        scratch: Packed<'a>,
        k: &[f32],
        v: &[f32],
        rs: usize,
        lk: usize,
        d: usize,
    ) -> Self {
        #[cfg(target_arch = "x86_64")]
        if run == Run::Plain {
            let bufs = scratch.plain;
            // SAFETY: `run` is Plain only where `bf16::supported()` (Products::run); the
            // rows lie in k and v (their asserts).
            unsafe {
                attn_products::bf16::pack_keys(bufs, k, rs, lk, d);
                attn_products::bf16::pack_values(bufs, v, rs, lk, d);
            }
            return PairProducts::Plain { bufs, lk, d };
        }
        #[cfg(target_arch = "x86_64")]
        if run == Run::Split {
            use attn_products::amx;
            let bufs = scratch.bufs;
            // SAFETY: `run` is Split only where `amx::supported()` (Products::run); no
            // other tile code runs on this thread until the pair is done.
            unsafe {
                amx::configure();
                amx::split_keys(&mut bufs.k, k, rs, lk, d);
                amx::split_values(&mut bufs.v, v, rs, lk, d);
            }
            let lc = d.next_multiple_of(amx::STEP);
            bufs.ctx
                .resize(QUERY_BLOCK.next_multiple_of(amx::ROWS) * lc, 0.0);
            return PairProducts::Split { bufs, lk, d };
        }
        let _ = run;
        attn_products::pack_keys(scratch.kt, k, rs, lk, d);
        attn_products::pack_values(scratch.vp, v, rs, lk, d);
        PairProducts::F32 {
            kt: scratch.kt,
            vp: scratch.vp,
            lk,
            d,
        }
    }

    /// block[i * ls + j] = q_i · k_j for the `rows` queries at q[i * q_rs..].
    fn scores(&mut self, block: &mut [f32], ls: usize, q: &[f32], q_rs: usize, rows: usize) {
        match self {
            PairProducts::F32 { kt, lk, d, .. } => {
                attn_products::scores(block, q, q_rs, kt, rows, *lk, *d)
            }
            #[cfg(target_arch = "x86_64")]
            PairProducts::Split { bufs, lk, d } => {
                use attn_products::amx;
                // SAFETY: the split products are supported and configured on this thread
                // (`new`); the block holds whole tiles of rows and `ls` padded keys
                // (`attention` sizes the scratch for them); q holds the rows.
                unsafe {
                    amx::split_queries(&mut bufs.q, q, q_rs, rows, *d);
                    amx::scores(block, ls, &bufs.q, &bufs.k, rows, *lk, *d);
                }
            }
            #[cfg(target_arch = "x86_64")]
            PairProducts::Plain { bufs, lk, d } => {
                let _ = ls;
                // SAFETY: the plain products are supported (`new`), which packed the
                // pair's keys; the lengths are asserted inside.
                unsafe { attn_products::bf16::scores(block, q, q_rs, bufs, rows, *lk, *d) }
            }
        }
    }

    /// ctx[i * d..][..d] = the `rows` probability rows of `block` (`ls` apart) times V.
    fn context(&mut self, ctx: &mut [f32], block: &[f32], ls: usize, rows: usize) {
        match self {
            #[cfg(target_arch = "x86_64")]
            PairProducts::Plain { bufs, lk, d } => {
                // SAFETY: as in `scores`, `new` packed the pair's values.
                unsafe { attn_products::bf16::context(ctx, block, ls, bufs, rows, *lk, *d) }
            }
            PairProducts::F32 { vp, lk, d, .. } => {
                let _ = ls;
                attn_products::context(ctx, block, vp, rows, *lk, *d)
            }
            #[cfg(target_arch = "x86_64")]
            PairProducts::Split { bufs, lk, d } => {
                use attn_products::amx;
                let lc = d.next_multiple_of(amx::STEP);
                // SAFETY: as in `scores`; bufs.ctx holds a block's whole tiles of rows of
                // lc values (`new`).
                unsafe { amx::split_probs(&mut bufs.p, block, ls, rows, *lk) };
                if lc == *d {
                    // Whole tiles of dims: straight into the context (which holds whole
                    // tiles of rows, `attention`).
                    // SAFETY: as above, ctx holding the block's rows rounded up to 16.
                    unsafe { amx::context(ctx, lc, &bufs.p, &bufs.v, rows, *lk, *d) };
                    return;
                }
                // SAFETY: as above.
                unsafe { amx::context(&mut bufs.ctx, lc, &bufs.p, &bufs.v, rows, *lk, *d) };
                for (i, row) in ctx.chunks_exact_mut(*d).take(rows).enumerate() {
                    row.copy_from_slice(&bufs.ctx[i * lc..i * lc + *d]);
                }
            }
        }
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in [-1, 1).
    fn noise(seed: u64, n: usize) -> Vec<f32> {
        crate::backend::cpu::gemm::tests::random(n, seed)
    }

    /// One case: the shape, the fused projection, a cache (k, v, capacity) or none, the
    /// mask, and a relative table (kind, table, max positions) or none.
    struct Case {
        s: AttnShape,
        qkv: Vec<f32>,
        cache: Option<(Vec<f32>, Vec<f32>, usize)>,
        mask: Vec<u8>,
        rel: Option<(PositionEmbeddingType, Vec<f32>, usize)>,
    }

    impl Case {
        fn new(
            s: AttnShape,
            cache: Option<usize>,
            rel: Option<(PositionEmbeddingType, usize)>,
        ) -> Case {
            let h = s.hidden();
            let tokens = s.batch * s.seq;
            let cache = cache.map(|cap| {
                let n = s.batch * s.heads * cap * s.head_dim;
                (noise(2, n), noise(3, n), cap)
            });
            let rel = rel.map(|(kind, m)| (kind, noise(4, (2 * m - 1) * s.head_dim), m));
            // Sequence b masks its last 3b keys.
            let keys = s.keys();
            let mask = (0..s.batch * keys)
                .map(|i| u8::from(i % keys + 3 * (i / keys) < keys))
                .collect();
            Case {
                s,
                qkv: noise(1, tokens * 3 * h),
                cache,
                mask,
                rel,
            }
        }

        fn run(&self, products: Products) -> (Vec<f32>, Vec<f32>) {
            let s = self.s;
            let mut out = vec![f32::NAN; s.batch * s.seq * s.hidden()];
            let mut probs = vec![f32::NAN; s.batch * s.heads * s.seq * s.keys()];
            let kv = match &self.cache {
                Some((k, v, capacity)) => KvSource::Cache {
                    k,
                    v,
                    capacity: *capacity,
                },
                None => KvSource::Fused(&self.qkv),
            };
            let rel = self
                .rel
                .as_ref()
                .map(|(kind, table, max_positions)| RelativeTable {
                    kind: *kind,
                    table,
                    max_positions: *max_positions,
                });
            attention(
                products,
                s,
                &self.qkv,
                kv,
                &self.mask,
                rel,
                &mut out,
                Some(&mut probs),
            );
            // The same output without the probabilities requested.
            let mut alone = vec![f32::NAN; out.len()];
            attention(
                products, s, &self.qkv, kv, &self.mask, rel, &mut alone, None,
            );
            assert!(out
                .iter()
                .zip(&alone)
                .all(|(a, b)| a.to_bits() == b.to_bits()));
            (out, probs)
        }

        /// float64 attention from its definition: softmax((q·k + relative terms) /
        /// sqrt(d), masked) times v, as transformers' BertSelfAttention computes it.
        fn reference(&self) -> (Vec<f64>, Vec<f64>) {
            let s = self.s;
            let (h, d, lq, lk) = (s.hidden(), s.head_dim, s.seq, s.keys());
            let mut out = vec![0.0; s.batch * lq * h];
            let mut probs = vec![0.0; s.batch * s.heads * lq * lk];
            for b in 0..s.batch {
                for head in 0..s.heads {
                    let q =
                        |i: usize, e: usize| self.qkv[(b * lq + i) * 3 * h + head * d + e] as f64;
                    let kv = |which: usize, j: usize, e: usize| match &self.cache {
                        Some((k, v, cap)) => {
                            let src = if which == 0 { k } else { v };
                            src[((b * s.heads + head) * cap + j) * d + e] as f64
                        }
                        None => {
                            self.qkv[(b * lq + j) * 3 * h + (1 + which) * h + head * d + e] as f64
                        }
                    };
                    for i in 0..lq {
                        let pos = s.past + i;
                        let mut sc: Vec<Option<f64>> = (0..lk)
                            .map(|j| {
                                let visible = !s.causal || j <= pos;
                                let mut x: f64 = (0..d).map(|e| q(i, e) * kv(0, j, e)).sum();
                                if let Some((kind, table, m)) = &self.rel {
                                    let r = pos + m - 1 - j;
                                    let emb = |e: usize| table[r * d + e] as f64;
                                    x += (0..d).map(|e| q(i, e) * emb(e)).sum::<f64>();
                                    if *kind == PositionEmbeddingType::RelativeKeyQuery {
                                        x += (0..d).map(|e| kv(0, j, e) * emb(e)).sum::<f64>();
                                    }
                                }
                                let keep = self.mask[b * lk + j] != 0 && visible;
                                keep.then_some(x / (d as f64).sqrt())
                            })
                            .collect();
                        let max = sc
                            .iter()
                            .flatten()
                            .fold(f64::NEG_INFINITY, |a, &b| a.max(b));
                        let e: Vec<f64> = sc
                            .iter_mut()
                            .map(|x| x.map_or(0.0, |x| (x - max).exp()))
                            .collect();
                        let sum: f64 = e.iter().sum();
                        let p: Vec<f64> = e
                            .iter()
                            .map(|x| if sum > 0.0 { x / sum } else { 1.0 / lk as f64 })
                            .collect();
                        for e_ in 0..d {
                            out[(b * lq + i) * h + head * d + e_] =
                                (0..lk).map(|j| p[j] * kv(1, j, e_)).sum();
                        }
                        let at = ((b * s.heads + head) * lq + i) * lk;
                        probs[at..at + lk].copy_from_slice(&p);
                    }
                }
            }
            (out, probs)
        }
    }

    fn worst(got: &[f32], want: &[f64]) -> f64 {
        assert_eq!(got.len(), want.len());
        got.iter()
            .zip(want)
            .map(|(&g, &w)| (g as f64 - w).abs())
            .fold(0.0, f64::max)
    }

    #[test]
    fn both_products_match_float64_attention() {
        use PositionEmbeddingType::{RelativeKey, RelativeKeyQuery};
        let shape = |batch, seq, past, heads, head_dim, causal| AttnShape {
            batch,
            seq,
            past,
            heads,
            head_dim,
            causal,
        };
        let cases = [
            Case::new(shape(2, 37, 0, 3, 12, false), None, None),
            Case::new(
                shape(3, 70, 0, 2, 64, false),
                None,
                Some((RelativeKeyQuery, 80)),
            ),
            Case::new(shape(1, 33, 0, 2, 32, false), None, Some((RelativeKey, 40))),
            Case::new(shape(2, 3, 10, 2, 32, true), Some(16), None),
            Case::new(shape(1, 40, 0, 1, 48, true), None, None),
            // Every key masked: uniform weights.
            Case::new(shape(2, 2, 0, 1, 8, false), None, None),
        ];
        for (c, case) in cases.iter().enumerate() {
            let (out, probs) = case.reference();
            // Plain bf16: each product within 2^-7, so scores of |q||k| up to a few units
            // move by a few 1e-3 (measured at most 2.6e-3 on the outputs, 3.8e-4 on the
            // probabilities).
            let plain = (Products::Bf16, 1e-2);
            for (products, tol) in [(Products::F32, 1e-6), (Products::SplitBf16, 2e-5), plain] {
                let (got_out, got_probs) = case.run(products);
                let (eo, ep) = (worst(&got_out, &out), worst(&got_probs, &probs));
                println!("case {c} {products:?}: output {eo:.1e}, probabilities {ep:.1e}");
                assert!(
                    eo <= tol && ep <= tol,
                    "case {c} {products:?}: {eo:e} {ep:e} > {tol:e}"
                );
            }
        }
    }
}
