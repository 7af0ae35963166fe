//! The CPU backend: every op in f32, the reference the GPU is checked against.
//! Linears run on the packed GEMM of [`gemm`] (weights packed once, on first use), in f32
//! or, with [`Dtype::Bf16`] / [`Dtype::Int8`], in bf16 or int8 (only the linears: their
//! inputs, outputs and every other op stay f32, except attention's two products, which
//! bf16 takes in split bf16 on AMX and int8 in plain bf16 on AVX512-BF16:
//! [`attention::Products`]).
//! Attention runs its own products (`attn_products`). Both use the rayon pool.

pub mod activation;
pub mod aligned;
pub mod attention;
mod attn_products;
pub mod embeddings;
pub mod fastmath;
pub mod gemm;
pub mod kv_cache;
pub mod layernorm;
pub mod linear;
pub mod matmul;
pub mod packed_linear;
pub mod profile;
mod softmax;

use std::sync::{Arc, Mutex};

use super::{Backend, Call, Device, Dtype};
use crate::batch::Batch;
use crate::cache::{CacheLayout, CacheState, KvCache};
use crate::error::{Error, Result};
use crate::graph::{op, BufId, Op, Plan, Shape};
use crate::tensor::Tensor;
use crate::weights::{ParamStore, WeightId};

use aligned::AlignedBuf;
use attention::{AttnShape, KvSource, Products, RelativeTable};
use embeddings::EmbeddingTables;
use kv_cache::HostKv;
use linear::PackedWeights;
use packed_linear::linear_dtype;
use packed_linear::PackedLinear;
use profile::OpTimes;

/// Executes plans on the host.
///
/// Arenas (every buffer of a plan) are kept after a run and reused by the next run of the
/// same buffer sizes, so steady-state forwards allocate nothing but their outputs.
/// Every op writes all of its output, so a reused arena needs no clearing.
#[derive(Debug)]
pub struct CpuBackend {
    arenas: Mutex<Vec<Arena>>,
    /// Linear weights packed for the GEMM, each on its first use.
    packed: PackedWeights,
    /// The linears' precision: F32, Bf16 or Int8.
    dtype: Dtype,
    /// Per-op wall time, with `BERTRT_CPU_PROFILE=1`.
    times: OpTimes,
    /// Calls run in throughput mode.
    throughput_calls: std::sync::atomic::AtomicUsize,
}

impl CpuBackend {
    /// How many linear weights this backend has packed for its GEMM so far (each is
    /// packed on first use, or by [`Backend::reserve`]).
    pub fn packed_weights(&self) -> usize {
        self.packed.packs()
    }
}

impl Default for CpuBackend {
    fn default() -> Self {
        CpuBackend::new(Dtype::F32)
    }
}

impl CpuBackend {
    /// A backend whose linears run in `dtype` (F32, Bf16 or Int8; F16 runs as F32, and
    /// [`super::create`] rejects it for the CPU).
    pub fn new(dtype: Dtype) -> Self {
        let dtype = match dtype {
            Dtype::F16 => Dtype::F32,
            other => other,
        };
        CpuBackend {
            arenas: Mutex::default(),
            packed: PackedWeights::default(),
            dtype,
            times: OpTimes::from_env(),
            throughput_calls: Default::default(),
        }
    }
}

/// Arenas kept for reuse (one per recent shape; concurrent callers may add more).
const KEPT_ARENAS: usize = 4;

/// The plan's buffers.
#[derive(Debug)]
struct Arena {
    bufs: Vec<AlignedBuf>,
}

impl Arena {
    /// Zeroed buffers for `plan`.
    fn new(plan: &Plan) -> Self {
        Arena {
            bufs: plan.bufs.iter().map(|b| AlignedBuf::zeros(b.len)).collect(),
        }
    }

    /// Keeps `self` for reuse, dropping the oldest kept arena beyond [`KEPT_ARENAS`].
    fn keep(self, kept: &Mutex<Vec<Arena>>) {
        if let Ok(mut kept) = kept.lock() {
            if kept.len() >= KEPT_ARENAS {
                kept.remove(0);
            }
            kept.push(self);
        }
    }

    fn fits(&self, plan: &Plan) -> bool {
        self.bufs.len() == plan.bufs.len()
            && self
                .bufs
                .iter()
                .zip(&plan.bufs)
                .all(|(b, d)| b.len() == d.len)
    }

    /// Takes `out` out of the arena so the op can write it while reading the others.
    fn take(&mut self, out: BufId) -> AlignedBuf {
        std::mem::take(&mut self.bufs[out.0])
    }

    fn put(&mut self, out: BufId, data: AlignedBuf) {
        self.bufs[out.0] = data;
    }

    fn get(&self, id: BufId) -> &[f32] {
        let buf = &self.bufs[id.0];
        assert!(
            !buf.is_empty(),
            "plan bug: an op reads the buffer it writes"
        );
        buf
    }

    /// The plan's outputs, copied out.
    fn outputs(&self, plan: &Plan) -> Result<Vec<Tensor>> {
        plan.outputs
            .iter()
            .map(|o| {
                Tensor::new(o.shape.clone(), self.bufs[o.buf.0].to_vec()).ok_or_else(|| {
                    Error::Internal(format!("output {} does not fill its shape", o.name))
                })
            })
            .collect()
    }
}

/// `BERTRT_CPU_THROUGHPUT=0` keeps large batches whole (for comparisons).
const THROUGHPUT_ENV: &str = "BERTRT_CPU_THROUGHPUT";

impl CpuBackend {
    /// Throughput mode: with at least two examples per thread (and no cache), each
    /// thread runs its own share of the batch through the whole network, instead of
    /// every op being split across threads (no per-op synchronisation; each thread's
    /// activations stay in its own cache). The number of parts, 1 for a whole call.
    fn parts(&self, shape: Shape, cached: bool) -> usize {
        let threads = rayon::current_num_threads();
        let off = std::env::var(THROUGHPUT_ENV).is_ok_and(|v| v == "0");
        match !cached && !off && threads >= 2 && shape.examples() >= 2 * threads {
            true => threads,
            false => 1,
        }
    }

    /// How many calls ran in throughput mode so far.
    pub fn throughput_calls(&self) -> usize {
        self.throughput_calls
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Runs `parts` slices of whole examples side by side, each with its own plan, and
    /// stacks their outputs (all [examples, ...]) back in order.
    fn execute_parts(&self, call: &Call<'_>, parts: usize) -> Result<Vec<Tensor>> {
        use rayon::prelude::*;
        self.throughput_calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let shape = call.plan.shape;
        let (examples, choices) = (shape.examples(), shape.choices.max(1));
        let bounds: Vec<(usize, usize)> = (0..parts)
            .map(|p| (p * examples / parts, (p + 1) * examples / parts))
            .filter(|(a, b)| b > a)
            .collect();
        let results = bounds
            .par_iter()
            .map(|&(a, b)| {
                let part = call.batch.rows_range(a * choices, b * choices);
                let plan = call.planner.plan(
                    Shape::new(part.rows(), shape.seq)
                        .with_choices(choices)
                        .with_selected(part.selected().map(<[usize]>::len)),
                )?;
                self.run(&plan, call.params, &part, None)
            })
            .collect::<Result<Vec<Vec<Tensor>>>>()?;
        call.plan
            .outputs
            .iter()
            .enumerate()
            .map(|(i, o)| {
                let mut data = Vec::with_capacity(o.shape.iter().product());
                for part in &results {
                    let t = part.get(i).ok_or_else(|| {
                        Error::Internal(format!("a throughput part lacks output {}", o.name))
                    })?;
                    data.extend_from_slice(t.data());
                }
                Tensor::new(o.shape.clone(), data).ok_or_else(|| {
                    Error::Internal(format!("throughput parts of {} do not fill it", o.name))
                })
            })
            .collect()
    }

    /// Runs one plan over the whole batch, every op using every thread.
    fn run(
        &self,
        plan: &Plan,
        params: &ParamStore,
        batch: &Batch,
        mut cache: Option<&mut KvCache>,
    ) -> Result<Vec<Tensor>> {
        let reused = self.arenas.lock().ok().and_then(|mut kept| {
            let i = kept.iter().position(|a| a.fits(plan))?;
            Some(kept.swap_remove(i))
        });
        let mut arena = reused.unwrap_or_else(|| Arena::new(plan));
        let mask = match cache.as_deref() {
            Some(c) => c.full_mask(batch.attention_mask(), batch.seq()),
            None => batch.attention_mask().to_vec(),
        };
        let mut kv = match cache.as_deref_mut() {
            Some(c) => Some(c.state_mut().get_mut::<HostKv>()?),
            None => None,
        };
        let cx = OpContext {
            shape: plan.shape,
            linears: Linears {
                packed: &self.packed,
                dtype: self.dtype,
                activated: activated_buffers(plan),
            },
            params,
            batch,
            mask: &mask,
        };
        // The ops run on a thread of the rayon pool: their parallel loops then split
        // work with the other workers directly, instead of each loop handing its work
        // from the calling thread to the pool and sleeping until it is done (two thread
        // wake-ups per loop, ~100 loops per forward).
        rayon::scope(|_| {
            for op in &plan.ops {
                let start = self.times.enabled().then(std::time::Instant::now);
                run_op(op, &cx, kv.as_deref_mut(), &mut arena)?;
                if let Some(start) = start {
                    self.times.add(op, start.elapsed());
                }
            }
            Ok::<(), Error>(())
        })?;
        if let Some(c) = cache {
            c.advance(batch.attention_mask(), batch.seq());
        }
        let outputs = arena.outputs(plan);
        arena.keep(&self.arenas);
        outputs
    }
}

impl Backend for CpuBackend {
    fn device(&self) -> Device {
        Device::Cpu
    }

    fn dtype(&self) -> Dtype {
        self.dtype
    }

    fn execute(&self, call: Call<'_>) -> Result<Vec<Tensor>> {
        match self.parts(call.plan.shape, call.cache.is_some()) {
            0 | 1 => self.run(call.plan, call.params, call.batch, call.cache),
            parts => self.execute_parts(&call, parts),
        }
    }

    /// Packs every linear weight of `plan` (in the precision this plan runs it) and keeps
    /// an arena of `plan`'s buffers, so that its first run does neither.
    fn reserve(&self, plan: &Plan, params: &ParamStore) -> Result<()> {
        let linears = Linears {
            packed: &self.packed,
            dtype: self.dtype,
            activated: activated_buffers(plan),
        };
        for op in &plan.ops {
            if let Op::Linear(l) = op {
                linears.get(params, l)?;
            }
        }
        let have = self
            .arenas
            .lock()
            .is_ok_and(|kept| kept.iter().any(|a| a.fits(plan)));
        if !have {
            Arena::new(plan).keep(&self.arenas);
        }
        Ok(())
    }

    fn new_cache(&self, layout: &CacheLayout) -> Result<CacheState> {
        Ok(CacheState::new(HostKv::new(layout)))
    }
}

impl Drop for CpuBackend {
    fn drop(&mut self) {
        let summary = self.times.summary();
        if !summary.is_empty() {
            crate::error::note(format_args!("{}", summary.trim_end()));
        }
    }
}

/// How the linears of one run are computed.
struct Linears<'a> {
    packed: &'a PackedWeights,
    dtype: Dtype,
    /// Per buffer: whether a linear with an activation writes it.
    activated: Vec<bool>,
}

impl Linears<'_> {
    /// The packed weight of linear `l`, in the precision it runs in (packed now if this
    /// is its first use).
    fn get(&self, params: &ParamStore, l: &op::Linear) -> Result<Arc<PackedLinear>> {
        let dtype = linear_dtype(self.dtype, self.activated[l.x.0]);
        self.packed
            .get(l.w, params.get(l.w), l.n, l.k, dtype)
            .ok_or_else(|| Error::Internal(format!("linear weight is not [{}, {}]", l.n, l.k)))
    }
}

/// Which buffers hold an activation's output (a linear with `act`).
fn activated_buffers(plan: &Plan) -> Vec<bool> {
    let mut activated = vec![false; plan.bufs.len()];
    for op in &plan.ops {
        if let Op::Linear(op::Linear {
            act: Some(_), out, ..
        }) = *op
        {
            activated[out.0] = true;
        }
    }
    activated
}

/// What every op of one run reads besides the arena.
struct OpContext<'a> {
    shape: Shape,
    linears: Linears<'a>,
    params: &'a ParamStore,
    batch: &'a Batch,
    /// [batch, keys] attention mask (cached positions first).
    mask: &'a [u8],
}

impl OpContext<'_> {
    fn w(&self, id: WeightId) -> &[f32] {
        self.params.get(id).data()
    }
}

/// Runs one op: its outputs are taken out of the arena, written while the inputs are
/// read from it, and put back.
fn run_op(op: &Op, cx: &OpContext, kv: Option<&mut HostKv>, arena: &mut Arena) -> Result<()> {
    let mut outputs = op.outputs();
    let (first, second) = (outputs.next(), outputs.next());
    let first = first.ok_or_else(|| Error::Internal(format!("{} writes nothing", op.name())))?;
    let mut dst = arena.take(first);
    let mut extra = second.map(|b| arena.take(b));
    let result = match op {
        Op::Embeddings(e) => {
            embeddings_op(e, cx, &mut dst);
            Ok(())
        }
        Op::Linear(l) => cx.linears.get(cx.params, l).map(|packed| {
            linear::linear(
                arena.get(l.x),
                &packed,
                l.b.map(|b| cx.w(b)),
                l.act,
                l.rows,
                &mut dst,
            )
        }),
        Op::LayerNorm(n) => {
            debug_assert_eq!(dst.len(), n.rows * n.width);
            layernorm::layer_norm(
                arena.get(n.x),
                n.residual.map(|r| arena.get(r)),
                cx.w(n.gamma),
                cx.w(n.beta),
                n.eps,
                n.width,
                &mut dst,
            );
            Ok(())
        }
        Op::Attention(a) => {
            attention_op(a, cx, kv, arena.get(a.qkv), &mut dst, extra.as_deref_mut());
            Ok(())
        }
        Op::GatherFirst(g) => {
            let src = arena.get(g.x);
            for (b, row) in dst.chunks_mut(g.width).enumerate() {
                let start = b * cx.shape.seq * g.width;
                row.copy_from_slice(&src[start..start + g.width]);
            }
            Ok(())
        }
        Op::GatherSelected(g) => {
            let src = arena.get(g.x);
            let rows = cx.batch.selected().unwrap_or(&[]);
            if rows.len() * g.width != dst.len()
                || rows.iter().any(|&r| (r + 1) * g.width > src.len())
            {
                return Err(Error::Internal(
                    "the batch's selected rows do not fit the plan".into(),
                ));
            }
            for (&r, row) in rows.iter().zip(dst.chunks_mut(g.width)) {
                row.copy_from_slice(&src[r * g.width..(r + 1) * g.width]);
            }
            Ok(())
        }
    };
    arena.put(first, dst);
    if let (Some(b), Some(buf)) = (second, extra) {
        arena.put(b, buf);
    }
    result
}

fn embeddings_op(e: &op::Embeddings, cx: &OpContext, dst: &mut [f32]) {
    let tables = EmbeddingTables {
        word: cx.w(e.word),
        position: e.position.map(|p| cx.w(p)),
        token_type: cx.w(e.token_type),
        gamma: cx.w(e.gamma),
        beta: cx.w(e.beta),
        eps: e.eps,
    };
    embeddings::embeddings(
        &tables,
        cx.batch.input_ids(),
        cx.batch.token_type_ids(),
        cx.shape.seq,
        cx.shape.past,
        dst,
    );
}

fn attention_op(
    a: &op::Attention,
    cx: &OpContext,
    kv: Option<&mut HostKv>,
    qkv: &[f32],
    dst: &mut [f32],
    probs: Option<&mut [f32]>,
) {
    let shape = cx.shape;
    let s = AttnShape {
        batch: shape.batch,
        seq: shape.seq,
        past: shape.past,
        heads: a.heads,
        head_dim: a.head_dim,
        causal: a.causal,
    };
    // bf16 takes attention's products in split bf16 where the CPU has AMX (within about
    // 2^-16 of f32, far inside its linears' error); plain bf16 products would cost it its
    // cosine bar (all-MiniLM-L6-v2 compare input 0.999966 against 0.99997). int8 takes
    // them in plain bf16 where the CPU has AVX512-BF16 without AMX: its linears' rounding
    // dwarfs theirs (compare input 0.999742 against 0.999718 with f32 products).
    let products = match cx.linears.dtype {
        Dtype::Bf16 => Products::SplitBf16,
        Dtype::Int8 => Products::Bf16,
        Dtype::F32 | Dtype::F16 => Products::F32,
    };
    let relative = a.relative.map(|r| RelativeTable {
        kind: r.kind,
        table: cx.w(r.table),
        max_positions: r.max_positions,
    });
    match kv {
        Some(kv) => {
            kv.append(a.layer, qkv, shape.seq, shape.past);
            let (k, v) = kv.layer(a.layer);
            let source = KvSource::Cache {
                k,
                v,
                capacity: kv.layout().capacity,
            };
            attention::attention(products, s, qkv, source, cx.mask, relative, dst, probs);
        }
        None => {
            let source = KvSource::Fused(qkv);
            attention::attention(products, s, qkv, source, cx.mask, relative, dst, probs)
        }
    }
}
