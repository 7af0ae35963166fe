//! The CPU backend: every op in f32, the reference the GPU is checked against.
//! Linears run on the packed GEMM of [`gemm`] (weights packed once, on first use), in f32
//! or, with [`Dtype::Bf16`] / [`Dtype::Int8`], in bf16 or int8 (only the linears: their
//! inputs, outputs and every other op stay f32); attention's products go through the
//! `gemm` crate. Both use the rayon pool.

pub mod activation;
pub mod aligned;
pub mod attention;
pub mod embeddings;
pub mod fastmath;
pub mod gemm;
pub mod layernorm;
pub mod linear;
pub mod matmul;
pub mod packed_linear;
pub mod profile;

use std::sync::{Arc, Mutex};

use super::{Backend, Device, Dtype};
use crate::batch::Batch;
use crate::cache::KvCache;
use crate::error::{Error, Result};
use crate::graph::{BufId, Op, Plan};
use crate::tensor::Tensor;
use crate::weights::{ParamStore, WeightId};

use aligned::AlignedBuf;
use attention::{AttnShape, KvSource, RelativeTable};
use embeddings::EmbeddingTables;
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
}

/// `BERTRT_CPU_THROUGHPUT=0` keeps large batches whole (for comparisons).
const THROUGHPUT_ENV: &str = "BERTRT_CPU_THROUGHPUT";

impl Backend for CpuBackend {
    fn device(&self) -> Device {
        Device::Cpu
    }

    /// Throughput mode: with at least two sequences per thread, each thread runs its own
    /// share of the batch through the whole network, instead of every op being split
    /// across threads (no per-op synchronisation; each thread's activations stay in its
    /// own cache).
    fn throughput_parts(&self, rows: usize) -> usize {
        let threads = rayon::current_num_threads();
        let off = std::env::var(THROUGHPUT_ENV).is_ok_and(|v| v == "0");
        match threads >= 2 && rows >= 2 * threads && !off {
            true => threads,
            false => 1,
        }
    }

    fn dtype(&self) -> Dtype {
        self.dtype
    }

    fn execute(
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
        if let Some(c) = cache.as_deref_mut() {
            c.ensure_host();
        }
        let mask = match cache.as_deref() {
            Some(c) => c.full_mask(batch.attention_mask(), batch.seq()),
            None => batch.attention_mask().to_vec(),
        };
        let linears = Linears {
            packed: &self.packed,
            dtype: self.dtype,
            activated: activated_buffers(plan),
        };
        // The ops run on a thread of the rayon pool: their parallel loops then split
        // work with the other workers directly, instead of each loop handing its work
        // from the calling thread to the pool and sleeping until it is done (two thread
        // wake-ups per loop, ~100 loops per forward).
        rayon::scope(|_| {
            for op in &plan.ops {
                let start = self.times.enabled().then(std::time::Instant::now);
                run_op(
                    op,
                    plan,
                    &linears,
                    params,
                    batch,
                    &mask,
                    cache.as_deref_mut(),
                    &mut arena,
                )?;
                if let Some(start) = start {
                    self.times.add(op, start.elapsed());
                }
            }
            Ok::<(), Error>(())
        })?;
        if let Some(c) = cache {
            c.advance(batch.attention_mask(), batch.seq());
        }
        let outputs = plan
            .outputs
            .iter()
            .map(|o| {
                let data = arena.bufs[o.buf.0].to_vec();
                Tensor::new(o.shape.clone(), data).ok_or_else(|| {
                    Error::Unsupported(format!("plan bug: output {} has the wrong size", o.name))
                })
            })
            .collect();
        arena.keep(&self.arenas);
        outputs
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
            if let Op::Linear { x, w, n, k, .. } = *op {
                linears.get(params, x, w, n, k)?;
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
}

impl Drop for CpuBackend {
    fn drop(&mut self) {
        let summary = self.times.summary();
        if !summary.is_empty() {
            eprint!("{summary}");
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
    /// The packed weight of a linear reading `x`, in the precision it runs in (packed now
    /// if this is its first use).
    fn get(
        &self,
        params: &ParamStore,
        x: BufId,
        weight: WeightId,
        n: usize,
        k: usize,
    ) -> Result<Arc<PackedLinear>> {
        let dtype = linear_dtype(self.dtype, self.activated[x.0]);
        self.packed
            .get(weight, params.get(weight), n, k, dtype)
            .ok_or_else(|| Error::Unsupported(format!("plan bug: linear weight is not [{n}, {k}]")))
    }
}

/// Which buffers hold an activation's output (a linear with `act`).
fn activated_buffers(plan: &Plan) -> Vec<bool> {
    let mut activated = vec![false; plan.bufs.len()];
    for op in &plan.ops {
        if let Op::Linear {
            act: Some(_), out, ..
        } = *op
        {
            activated[out.0] = true;
        }
    }
    activated
}

#[allow(clippy::too_many_arguments)]
fn run_op(
    op: &Op,
    plan: &Plan,
    linears: &Linears,
    params: &ParamStore,
    batch: &Batch,
    mask: &[u8],
    cache: Option<&mut KvCache>,
    arena: &mut Arena,
) -> Result<()> {
    let w = |id| params.get(id).data();
    let shape = plan.shape;
    match *op {
        Op::Embeddings {
            word,
            position,
            token_type,
            gamma,
            beta,
            eps,
            out,
        } => {
            let mut dst = arena.take(out);
            let tables = EmbeddingTables {
                word: w(word),
                position: position.map(w),
                token_type: w(token_type),
                gamma: w(gamma),
                beta: w(beta),
                eps,
            };
            embeddings::embeddings(
                &tables,
                batch.input_ids(),
                batch.token_type_ids(),
                shape.seq,
                shape.past,
                &mut dst,
            );
            arena.put(out, dst);
        }
        Op::Linear {
            x,
            w: weight,
            b,
            act,
            rows,
            k,
            n,
            out,
        } => {
            let mut dst = arena.take(out);
            let packed = linears.get(params, x, weight, n, k)?;
            linear::linear(arena.get(x), &packed, b.map(w), act, rows, &mut dst);
            arena.put(out, dst);
        }
        Op::LayerNorm {
            x,
            residual,
            gamma,
            beta,
            eps,
            rows,
            width,
            out,
        } => {
            let mut dst = arena.take(out);
            debug_assert_eq!(dst.len(), rows * width);
            layernorm::layer_norm(
                arena.get(x),
                residual.map(|r| arena.get(r)),
                w(gamma),
                w(beta),
                eps,
                width,
                &mut dst,
            );
            arena.put(out, dst);
        }
        Op::Attention {
            qkv,
            out,
            probs,
            layer,
            heads,
            head_dim,
            causal,
            relative,
        } => {
            let mut dst = arena.take(out);
            let mut probs_buf = probs.map(|p| arena.take(p));
            let s = AttnShape {
                batch: shape.batch,
                seq: shape.seq,
                past: shape.past,
                heads,
                head_dim,
                causal,
            };
            let relative = relative.map(|r| RelativeTable {
                kind: r.kind,
                table: w(r.table),
                max_positions: r.max_positions,
            });
            let qkv_data = arena.get(qkv);
            match cache {
                Some(c) => {
                    c.append(layer, qkv_data, shape.seq);
                    let kv = KvSource::Cache {
                        k: &c.keys[layer],
                        v: &c.values[layer],
                        capacity: c.capacity,
                    };
                    attention::attention(
                        s,
                        qkv_data,
                        kv,
                        mask,
                        relative,
                        &mut dst,
                        probs_buf.as_deref_mut(),
                    );
                }
                None => attention::attention(
                    s,
                    qkv_data,
                    KvSource::Fused(qkv_data),
                    mask,
                    relative,
                    &mut dst,
                    probs_buf.as_deref_mut(),
                ),
            }
            arena.put(out, dst);
            if let (Some(p), Some(buf)) = (probs, probs_buf) {
                arena.put(p, buf);
            }
        }
        Op::GatherFirst { x, width, out } => {
            let mut dst = arena.take(out);
            let src = arena.get(x);
            for (b, row) in dst.chunks_mut(width).enumerate() {
                let start = b * shape.seq * width;
                row.copy_from_slice(&src[start..start + width]);
            }
            arena.put(out, dst);
        }
    }
    Ok(())
}
