//! The CPU backend: every op in f32, the reference the GPU is checked against.
//! Linears run on the packed GEMM of [`gemm`] (weights packed once, on first use);
//! attention's products go through the `gemm` crate. Both use the rayon pool.

pub mod activation;
pub mod attention;
pub mod embeddings;
pub mod fastmath;
pub mod gemm;
pub mod layernorm;
pub mod linear;
pub mod matmul;

use std::sync::Mutex;

use super::{Backend, Device};
use crate::batch::Batch;
use crate::cache::KvCache;
use crate::error::{Error, Result};
use crate::graph::{BufId, Op, Plan};
use crate::tensor::Tensor;
use crate::weights::ParamStore;

use attention::{AttnShape, KvSource, RelativeTable};
use embeddings::EmbeddingTables;
use linear::PackedWeights;

/// Executes plans on the host.
///
/// Arenas (every buffer of a plan) are kept after a run and reused by the next run of the
/// same buffer sizes, so steady-state forwards allocate nothing but their outputs.
/// Every op writes all of its output, so a reused arena needs no clearing.
#[derive(Debug, Default)]
pub struct CpuBackend {
    arenas: Mutex<Vec<Arena>>,
    /// Linear weights packed for the GEMM, each on its first use.
    packed: PackedWeights,
}

/// Arenas kept for reuse (one per recent shape; concurrent callers may add more).
const KEPT_ARENAS: usize = 4;

/// The plan's buffers.
#[derive(Debug)]
struct Arena {
    bufs: Vec<Vec<f32>>,
}

impl Arena {
    fn fits(&self, plan: &Plan) -> bool {
        self.bufs.len() == plan.bufs.len()
            && self
                .bufs
                .iter()
                .zip(&plan.bufs)
                .all(|(b, d)| b.len() == d.len)
    }

    /// Takes `out` out of the arena so the op can write it while reading the others.
    fn take(&mut self, out: BufId) -> Vec<f32> {
        std::mem::take(&mut self.bufs[out.0])
    }

    fn put(&mut self, out: BufId, data: Vec<f32>) {
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

impl Backend for CpuBackend {
    fn device(&self) -> Device {
        Device::Cpu
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
        let mut arena = reused.unwrap_or_else(|| Arena {
            bufs: plan.bufs.iter().map(|b| vec![0.0; b.len]).collect(),
        });
        if let Some(c) = cache.as_deref_mut() {
            c.ensure_host();
        }
        let mask = match cache.as_deref() {
            Some(c) => c.full_mask(batch.attention_mask(), batch.seq()),
            None => batch.attention_mask().to_vec(),
        };
        for op in &plan.ops {
            run_op(
                op,
                plan,
                &self.packed,
                params,
                batch,
                &mask,
                cache.as_deref_mut(),
                &mut arena,
            )?;
        }
        if let Some(c) = cache {
            c.advance(batch.attention_mask(), batch.seq());
        }
        let outputs = plan
            .outputs
            .iter()
            .map(|o| {
                let data = arena.bufs[o.buf.0].clone();
                Tensor::new(o.shape.clone(), data).ok_or_else(|| {
                    Error::Unsupported(format!("plan bug: output {} has the wrong size", o.name))
                })
            })
            .collect();
        if let Ok(mut kept) = self.arenas.lock() {
            if kept.len() >= KEPT_ARENAS {
                kept.remove(0);
            }
            kept.push(arena);
        }
        outputs
    }
}

#[allow(clippy::too_many_arguments)]
fn run_op(
    op: &Op,
    plan: &Plan,
    packed: &PackedWeights,
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
            let packed = packed
                .get(weight, params.get(weight), n, k)
                .ok_or_else(|| {
                    Error::Unsupported(format!("plan bug: linear weight is not [{n}, {k}]"))
                })?;
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
