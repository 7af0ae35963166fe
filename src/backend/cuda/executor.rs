//! [`GpuBackend`]: runs lowered plans on a [`Gpu`].
//!
//! Weights are converted to the backend's dtype and uploaded once, into one allocation.
//! Every activation buffer of a plan, the per-head Q/K/V scratch and the inputs live in
//! one arena, laid out per plan and grown (never per call) when a larger plan comes;
//! `Model::reserve` sizes it ahead of time. Each call uploads its inputs, then
//! replays the graph captured for its shape bucket (or records one: each lowered step
//! runs through its kernel family's binding in `ops`), and reads back only the declared
//! outputs. With `BERTRT_CUDA_DEBUG=1`, graphs are off, every step is
//! followed by a synchronisation and a failure names the op it came from.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use half::f16;

use super::gpu::{DevPtr, Gpu};
use super::lower::{lower, Kind, Lowered, Step};
use super::ops::{self, attention::CacheAt, Ctx, Inputs};
use super::tokens::Tokens;
use crate::backend::{Backend, Call, Device, Dtype};
use crate::cache::{CacheLayout, CacheState, KvCache};
use crate::error::{Error, Result};
use crate::graph::Plan;
use crate::tensor::Tensor;
use crate::weights::ParamStore;

/// The environment variable that switches on debug mode (any value but `0`).
pub const DEBUG_ENV: &str = "BERTRT_CUDA_DEBUG";

/// Captured graphs kept per backend (one per shape bucket seen; the oldest go first).
const KEPT_GRAPHS: usize = 64;

const ALIGN: usize = 256;

fn align(n: usize) -> usize {
    n.next_multiple_of(ALIGN)
}

/// A plan executor over a [`Gpu`]: fused kernels, GEMMs on the device's BLAS, packed
/// batches and graph replay.
pub struct GpuBackend<G: Gpu> {
    gpu: G,
    device: Device,
    dtype: Dtype,
    debug: bool,
    state: Mutex<State<G>>,
}

struct State<G: Gpu> {
    weights: Option<Weights<G>>,
    arena: Option<G::Mem>,
    arena_bytes: usize,
    graphs: HashMap<GraphKey, G::Graph>,
    graph_order: Vec<GraphKey>,
    /// Set when a capture failed: this device runs without graphs from then on.
    no_graphs: bool,
}

struct Weights<G: Gpu> {
    _mem: G::Mem,
    /// Shared so a call can hold them while the state is borrowed for graph bookkeeping.
    addrs: std::sync::Arc<[DevPtr]>,
}

/// The device storage of a key/value cache: per layer, keys then values, each
/// [batch, heads, capacity, head_dim].
struct CacheMem<G: Gpu> {
    mem: G::Mem,
    per_layer: usize,
    dtype: Dtype,
}

/// What a captured graph depends on besides the arena's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct GraphKey {
    packed: bool,
    batch: usize,
    seq: usize,
    rows: usize,
    key_mask: bool,
    ops: usize,
    bufs: usize,
    outputs: usize,
}

/// Byte offsets of one plan's buffers in the arena.
struct Layout {
    ids: usize,
    type_ids: usize,
    positions: usize,
    cu_seqlens: usize,
    key_mask: usize,
    /// End of the inputs region (uploaded as one block).
    inputs_end: usize,
    q: usize,
    k: usize,
    v: usize,
    bufs: Vec<usize>,
    bytes: usize,
}

impl Layout {
    fn new(plan: &Plan, low: &Lowered, elem: usize) -> Layout {
        let s = plan.shape;
        let tokens = s.tokens();
        let mut at = 0;
        let mut take = |bytes: usize| {
            let off = at;
            at += align(bytes.max(1));
            off
        };
        let ids = take(tokens * 4);
        let type_ids = take(tokens * 4);
        let positions = take(tokens * 4);
        let cu_seqlens = take((s.batch + 1) * 4);
        let key_mask = take(s.batch * s.keys());
        let inputs_end = take(0);
        let head_elems = low
            .steps
            .iter()
            .map(|(_, st)| match st {
                Step::Attention { attention: a, .. } => tokens * a.heads * a.head_dim,
                _ => 0,
            })
            .max()
            .unwrap_or(0);
        let q = take(head_elems * elem);
        let k = take(head_elems * elem);
        let v = take(head_elems * elem);
        let bufs = plan.bufs.iter().map(|b| take(b.len * elem)).collect();
        Layout {
            ids,
            type_ids,
            positions,
            cu_seqlens,
            key_mask,
            inputs_end,
            q,
            k,
            v,
            bufs,
            bytes: at,
        }
    }

    /// Where the inputs, the per-head scratch and the plan's buffers are, in an arena at
    /// `base`: (inputs, [q, k, v], buffers).
    fn addresses(&self, base: DevPtr, t: &Tokens) -> (Inputs, [DevPtr; 3], Vec<DevPtr>) {
        let at = |off: usize| base + off as DevPtr;
        let inputs = Inputs {
            ids: at(self.ids),
            type_ids: at(self.type_ids),
            positions: at(self.positions),
            cu_seqlens: at(self.cu_seqlens),
            key_mask: t.key_mask.as_ref().map_or(0, |_| at(self.key_mask)),
        };
        let bufs = self.bufs.iter().map(|&off| at(off)).collect();
        (inputs, [at(self.q), at(self.k), at(self.v)], bufs)
    }

    /// The inputs region as bytes.
    fn inputs(&self, t: &Tokens) -> Vec<u8> {
        let mut bytes = vec![0u8; self.inputs_end];
        let mut put = |off: usize, src: &[u8]| bytes[off..off + src.len()].copy_from_slice(src);
        let ints = |v: &[i32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        put(self.ids, &ints(&t.ids));
        put(self.type_ids, &ints(&t.type_ids));
        put(self.positions, &ints(&t.positions));
        put(self.cu_seqlens, &ints(&t.cu_seqlens));
        if let Some(m) = &t.key_mask {
            put(self.key_mask, m);
        }
        bytes
    }
}

/// The CUDA kernels' dtypes; bf16 and int8 are CPU-only paths (see [`Dtype`]).
fn unsupported(dtype: Dtype) -> Error {
    Error::Unsupported(format!(
        "dtype {dtype} is only available on the CPU for now; use f16 or f32 on CUDA"
    ))
}

fn to_bytes(data: &[f32], dtype: Dtype) -> Result<Vec<u8>> {
    match dtype {
        Dtype::F32 => Ok(data.iter().flat_map(|v| v.to_le_bytes()).collect()),
        Dtype::F16 => Ok(data
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_le_bytes())
            .collect()),
        Dtype::Bf16 | Dtype::Int8 => Err(unsupported(dtype)),
    }
}

fn from_bytes(bytes: &[u8], dtype: Dtype) -> Result<Vec<f32>> {
    match dtype {
        Dtype::F32 => Ok(bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()),
        Dtype::F16 => Ok(bytes
            .chunks_exact(2)
            .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect()),
        Dtype::Bf16 | Dtype::Int8 => Err(unsupported(dtype)),
    }
}

impl<G: Gpu> GpuBackend<G> {
    /// A backend on `gpu`, reported as `device`, computing in `dtype`.
    pub fn new(gpu: G, device: Device, dtype: Dtype) -> Self {
        let debug = std::env::var(DEBUG_ENV).is_ok_and(|v| !v.is_empty() && v != "0");
        GpuBackend {
            gpu,
            device,
            dtype,
            debug,
            state: Mutex::new(State {
                weights: None,
                arena: None,
                arena_bytes: 0,
                graphs: HashMap::new(),
                graph_order: Vec::new(),
                no_graphs: false,
            }),
        }
    }

    /// The device this backend drives, in words.
    pub fn describe(&self) -> String {
        self.gpu.describe()
    }

    fn lock(&self) -> Result<MutexGuard<'_, State<G>>> {
        self.state
            .lock()
            .map_err(|_| Error::Cuda("an earlier call panicked while using the device".into()))
    }

    fn ensure_arena(&self, st: &mut State<G>, bytes: usize) -> Result<DevPtr> {
        if st.arena.is_none() || st.arena_bytes < bytes {
            // Graphs hold addresses of the old arena: drop them first.
            st.graphs.clear();
            st.graph_order.clear();
            st.arena = None;
            let grown = bytes.max(st.arena_bytes + st.arena_bytes / 2);
            st.arena = Some(self.gpu.alloc(grown)?);
            st.arena_bytes = grown;
        }
        match &st.arena {
            Some(m) => Ok(G::address(m)),
            None => Err(Error::Cuda("arena allocation vanished".into())),
        }
    }

    fn upload_weights(&self, params: &ParamStore) -> Result<Weights<G>> {
        if matches!(self.dtype, Dtype::Bf16 | Dtype::Int8) {
            return Err(unsupported(self.dtype));
        }
        let elem = self.dtype.size();
        let mut offsets = Vec::with_capacity(params.len());
        let mut total = 0;
        for (_, t) in params.iter() {
            offsets.push(total);
            total += align(t.len() * elem);
        }
        let mem = self.gpu.alloc(total.max(ALIGN))?;
        let base = G::address(&mem);
        for ((_, t), &off) in params.iter().zip(&offsets) {
            let bytes = to_bytes(t.data(), self.dtype)?;
            // SAFETY: each tensor's aligned slot lies inside the allocation just made.
            unsafe { self.gpu.upload(base + off as DevPtr, &bytes) }?;
        }
        self.gpu.synchronize()?;
        Ok(Weights {
            addrs: offsets.iter().map(|&o| base + o as DevPtr).collect(),
            _mem: mem,
        })
    }

    /// The device storage of a cache this backend made.
    fn cache_storage(&self, c: &mut KvCache) -> Result<CacheAt> {
        let layout = c.layout();
        let stored = c.state_mut().get_mut::<CacheMem<G>>()?;
        if stored.dtype != self.dtype || stored.per_layer != layout.per_layer() {
            return Err(Error::Internal(
                "a key/value cache does not match its backend".into(),
            ));
        }
        Ok(CacheAt {
            base: G::address(&stored.mem),
            per_layer: stored.per_layer,
            capacity: layout.capacity,
        })
    }

    /// Runs every step, naming the failing op in debug mode.
    fn run_steps(&self, plan: &Plan, low: &Lowered, cx: &Ctx<G>) -> Result<()> {
        for (op, step) in &low.steps {
            let r = self.step(step, cx);
            let r = r.and_then(|_| match self.debug {
                true => self.gpu.synchronize(),
                false => Ok(()),
            });
            r.map_err(|e| {
                let out = plan.ops[*op].output();
                let out = plan.bufs[out.0].name.as_str();
                Error::Cuda(format!("op {op} ({}, {out}): {e}", step.name()))
            })?;
        }
        Ok(())
    }

    /// One step: the binding of its kernel family (ops/).
    fn step(&self, step: &Step, cx: &Ctx<G>) -> Result<()> {
        match step {
            Step::Embeddings(e) => ops::embeddings::step(cx, e),
            Step::Gemm { linear, kind } => ops::gemm::step(cx, linear, *kind),
            Step::BiasAct { linear, kind } => ops::bias_act::step(cx, linear, *kind),
            Step::LayerNorm { norm, fused, kind } => ops::layernorm::step(cx, norm, *fused, *kind),
            Step::Attention { attention, bias } => ops::attention::step(cx, attention, *bias),
            Step::Gather(g) => ops::pooler::step(cx, g),
        }
    }

    /// Runs the steps through a graph when it can: replays the one recorded for this
    /// key, or records it now.
    fn run_graphed(
        &self,
        st: &mut State<G>,
        key: GraphKey,
        plan: &Plan,
        low: &Lowered,
        cx: &Ctx<G>,
    ) -> Result<()> {
        if let Some(g) = st.graphs.get(&key) {
            return self.gpu.replay(g);
        }
        if st.no_graphs || !self.gpu.begin_capture()? {
            return self.run_steps(plan, low, cx);
        }
        let recorded = self.run_steps(plan, low, cx);
        let graph = self.gpu.end_capture();
        match (recorded, graph) {
            (Ok(()), Ok(g)) => {
                self.gpu.replay(&g)?;
                if st.graph_order.len() >= KEPT_GRAPHS {
                    let old = st.graph_order.remove(0);
                    st.graphs.remove(&old);
                }
                st.graphs.insert(key, g);
                st.graph_order.push(key);
                Ok(())
            }
            _ => {
                // Capture is not available here (or this sequence cannot be captured):
                // run directly from now on, which also reports any real error.
                st.no_graphs = true;
                self.run_steps(plan, low, cx)
            }
        }
    }
}

impl<G: Gpu> Backend for GpuBackend<G> {
    fn device(&self) -> Device {
        self.device
    }

    fn dtype(&self) -> Dtype {
        self.dtype
    }

    fn prepare(&self, params: &ParamStore) -> Result<()> {
        let weights = self.upload_weights(params)?;
        self.lock()?.weights = Some(weights);
        Ok(())
    }

    /// Grows the arena to hold `plan` (e.g. the largest batch and length a server will
    /// see), so later calls up to that size allocate nothing.
    fn reserve(&self, plan: &Plan, _params: &ParamStore) -> Result<()> {
        let low = lower(plan)?;
        let layout = Layout::new(plan, &low, self.dtype.size());
        let mut st = self.lock()?;
        self.ensure_arena(&mut st, layout.bytes)?;
        Ok(())
    }

    fn new_cache(&self, layout: &CacheLayout) -> Result<CacheState> {
        if matches!(self.dtype, Dtype::Bf16 | Dtype::Int8) {
            return Err(unsupported(self.dtype));
        }
        let per_layer = layout.per_layer();
        let mem = self
            .gpu
            .alloc(2 * layout.layers * per_layer * self.dtype.size())?;
        Ok(CacheState::new(CacheMem::<G> {
            mem,
            per_layer,
            dtype: self.dtype,
        }))
    }

    fn execute(&self, call: Call<'_>) -> Result<Vec<Tensor>> {
        let Call {
            plan,
            params,
            batch,
            mut cache,
            ..
        } = call;
        let low = lower(plan)?;
        let mut st = self.lock()?;
        if st
            .weights
            .as_ref()
            .is_none_or(|w| w.addrs.len() != params.len())
        {
            st.weights = Some(self.upload_weights(params)?);
        }
        let full_mask = cache
            .as_deref()
            .map(|c| c.full_mask(batch.attention_mask(), batch.seq()));
        let tokens = Tokens::new(batch, plan.shape, full_mask);
        let layout = Layout::new(plan, &low, self.dtype.size());
        let base = self.ensure_arena(&mut st, layout.bytes)?;
        let cache_mem = match cache.as_deref_mut() {
            Some(c) => Some(self.cache_storage(c)?),
            None => None,
        };
        // SAFETY: the inputs region is the start of the arena, which holds layout.bytes.
        unsafe { self.gpu.upload(base, &layout.inputs(&tokens)) }?;
        let weights = match &st.weights {
            Some(w) => std::sync::Arc::clone(&w.addrs),
            None => return Err(Error::Cuda("weights were not uploaded".into())),
        };
        let (inputs, heads, buffers) = layout.addresses(base, &tokens);
        let cx = Ctx {
            gpu: &self.gpu,
            dtype: self.dtype,
            tokens: &tokens,
            inputs,
            buffers: &buffers,
            weights: &weights,
            heads,
            cache: cache_mem,
        };
        if cache_mem.is_some() || self.debug {
            self.run_steps(plan, &low, &cx)?;
        } else {
            let key = GraphKey {
                packed: tokens.packed,
                batch: tokens.batch,
                seq: tokens.seq,
                rows: tokens.rows,
                key_mask: tokens.key_mask.is_some(),
                ops: plan.ops.len(),
                bufs: plan.bufs.len(),
                outputs: plan.outputs.len(),
            };
            self.run_graphed(&mut st, key, plan, &low, &cx)?;
        }
        let mut outputs = Vec::with_capacity(plan.outputs.len());
        for o in &plan.outputs {
            let count: usize = o.shape.iter().product();
            let tokens_kind = low.kinds[o.buf.0] == Kind::Tokens;
            let width = count / (tokens.batch * tokens.seq).max(1);
            let elems = match tokens_kind {
                true => tokens.total * width,
                false => count,
            };
            let mut bytes = vec![0u8; elems * self.dtype.size()];
            // SAFETY: the buffer holds at least this many elements (sized for batch * seq
            // rows of `width`, or the output's whole shape).
            unsafe { self.gpu.download(buffers[o.buf.0], &mut bytes) }?;
            let values = from_bytes(&bytes, self.dtype)?;
            let data = match tokens_kind {
                true => tokens.unpack(&values, width),
                false => values,
            };
            outputs.push(Tensor::new(o.shape.clone(), data).ok_or_else(|| {
                Error::Cuda(format!("output {} came back with the wrong size", o.name))
            })?);
        }
        if let Some(c) = cache {
            c.advance(batch.attention_mask(), batch.seq());
        }
        Ok(outputs)
    }
}
