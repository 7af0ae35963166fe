//! The network, described once: BERT modules named as in transformers, each loaded with
//! its prefix, and [`Model`], which lowers a head to a plan and runs it on a backend.

mod bert;
mod embeddings;
mod heads;
mod layer;
mod modules;

pub use bert::{BertModel, EncoderOutputs, ForwardOptions};
pub use heads::{Head, HeadModules};

use std::cell::RefCell;
use std::path::Path;

use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::backend::{Backend, Device, Dtype, Target};
use crate::batch::Batch;
use crate::cache::KvCache;
use crate::config::BertConfig;
use crate::error::{Error, Result};
use crate::graph::{Plan, PlanBuilder, Shape};
use crate::tensor::Tensor;
use crate::weights::{ModelSource, ParamStore, VarBuilder, WeightSource};

/// A loaded BERT model with one head, ready to serve concurrent callers
/// (`Model` is `Send + Sync`; share it with `Arc`).
pub struct Model {
    config: BertConfig,
    head: Head,
    params: ParamStore,
    trunk: BertModel,
    modules: HeadModules,
    backend: Box<dyn Backend>,
}

/// Named outputs of one forward call, as transformers names them.
#[derive(Debug, Clone, Default)]
pub struct Outputs {
    /// Head outputs in declaration order (`last_hidden_state`, `logits`, ...).
    pub tensors: Vec<(String, Tensor)>,
    /// Embedding output and every layer's output, when asked for.
    pub hidden_states: Vec<Tensor>,
    /// Every layer's attention probabilities, when asked for.
    pub attentions: Vec<Tensor>,
}

impl Outputs {
    /// The output called `name`.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }
}

/// Serializes as one JSON object: each tensor under its name, then `hidden_states` and
/// `attentions` as lists when present.
impl Serialize for Outputs {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for (name, tensor) in &self.tensors {
            map.serialize_entry(name, tensor)?;
        }
        if !self.hidden_states.is_empty() {
            map.serialize_entry("hidden_states", &self.hidden_states)?;
        }
        if !self.attentions.is_empty() {
            map.serialize_entry("attentions", &self.attentions)?;
        }
        map.end()
    }
}

impl Model {
    /// Loads a Hugging Face checkpoint folder (config.json + safetensors weights).
    ///
    /// `head` defaults to the config's `architectures[0]`.
    ///
    /// ```no_run
    /// use bertrt::{Batch, Device, ForwardOptions, Model};
    /// let model = Model::load("all-MiniLM-L6-v2".as_ref(), None, Device::Cpu)?;
    /// let batch = Batch::new(vec![vec![101, 7592, 2088, 102]])?;
    /// let out = model.forward(&batch, ForwardOptions::default())?;
    /// let hidden = out.get("last_hidden_state").unwrap();
    /// assert_eq!(hidden.shape(), &[1, 4, 384]);
    /// # Ok::<(), bertrt::Error>(())
    /// ```
    pub fn load(path: &Path, head: Option<Head>, target: impl Into<Target>) -> Result<Model> {
        Self::from_source(&ModelSource::open(path)?, head, target)
    }

    /// Loads a checkpoint folder or packed file onto a backend built by the caller (a
    /// configured or emulated GPU backend, for instance).
    pub fn load_on(path: &Path, head: Option<Head>, backend: Box<dyn Backend>) -> Result<Model> {
        let source = ModelSource::open(path)?;
        let head = Self::source_head(&source, head)?;
        Self::from_weights_on(source.config().clone(), source.weights(), head, backend)
    }

    fn source_head(source: &ModelSource, head: Option<Head>) -> Result<Option<Head>> {
        Ok(match (head, source.packed_head()) {
            (Some(h), _) => Some(h),
            (None, Some(packed)) => Some(packed.parse()?),
            (None, None) => None,
        })
    }

    /// Builds a model from an opened folder or packed file. A packed file's default head
    /// is the one it was packed for.
    pub fn from_source(
        source: &ModelSource,
        head: Option<Head>,
        target: impl Into<Target>,
    ) -> Result<Model> {
        let head = Self::source_head(source, head)?;
        Self::from_weights(source.config().clone(), source.weights(), head, target)
    }

    /// Builds a model from a parsed config and a weight source.
    pub fn from_weights(
        config: BertConfig,
        ckpt: &dyn WeightSource,
        head: Option<Head>,
        target: impl Into<Target>,
    ) -> Result<Model> {
        config.validate()?;
        let backend = crate::backend::create(target)?;
        Self::from_weights_on(config, ckpt, head, backend)
    }

    /// Builds a model from a parsed config and a weight source onto `backend`.
    pub fn from_weights_on(
        config: BertConfig,
        ckpt: &dyn WeightSource,
        head: Option<Head>,
        backend: Box<dyn Backend>,
    ) -> Result<Model> {
        config.validate()?;
        let head = match head {
            Some(h) => h,
            None => Head::from_config(&config)?,
        };
        let store = RefCell::new(ParamStore::default());
        let root = VarBuilder::new(ckpt, &store);
        let bert = root.pp("bert");
        let pooler = match head {
            Head::Bert => BertModel::has_pooler(&bert),
            other => HeadModules::needs_pooler(other),
        };
        let trunk = BertModel::load(&bert, &config, pooler)?;
        let modules = HeadModules::load(head, &root, &config, &trunk)?;
        let params = store.into_inner();
        backend.prepare(&params)?;
        Ok(Model {
            config,
            head,
            params,
            trunk,
            modules,
            backend,
        })
    }

    /// The model's config.
    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// The head this model runs.
    pub fn head(&self) -> Head {
        self.head
    }

    /// The loaded parameters.
    pub fn params(&self) -> &ParamStore {
        &self.params
    }

    /// The device the model runs on.
    pub fn device(&self) -> Device {
        self.backend.device()
    }

    /// The storage type it runs in.
    pub fn dtype(&self) -> Dtype {
        self.backend.dtype()
    }

    /// The plan of ops this model runs for `shape`.
    pub fn plan(&self, shape: Shape, opts: ForwardOptions) -> Plan {
        let mut g = PlanBuilder::new(shape);
        let enc = self.trunk.lower(&mut g, opts);
        self.modules
            .lower(self.head, &mut g, &enc, self.config.hidden_size);
        for (i, &buf) in enc.hidden_states.iter().enumerate() {
            g.output(
                format!("hidden_states.{i}"),
                buf,
                vec![shape.batch, shape.seq, self.config.hidden_size],
            );
        }
        for (i, &buf) in enc.attentions.iter().enumerate() {
            g.output(
                format!("attentions.{i}"),
                buf,
                vec![
                    shape.batch,
                    self.config.num_attention_heads,
                    shape.seq,
                    shape.keys(),
                ],
            );
        }
        g.finish()
    }

    /// Sets aside the backend's working memory for batches of up to `batch` sequences
    /// (for multiple choice, every choice counts as a sequence) of `seq` tokens with these
    /// options, so that later calls up to that size allocate nothing (the CUDA backend
    /// otherwise grows its arena on the first larger call). On the CPU it also packs the
    /// linears' weights for the GEMM, which the first forward does otherwise, and keeps
    /// the buffers of exactly this shape.
    pub fn reserve(&self, batch: usize, seq: usize, opts: ForwardOptions) -> Result<()> {
        if batch == 0 || seq == 0 || seq > self.config.max_position_embeddings {
            return Err(Error::Input(format!(
                "reserve: {batch} x {seq} is not a valid shape for this model"
            )));
        }
        let plan = self.plan(
            Shape {
                batch,
                seq,
                past: 0,
            },
            opts,
        );
        self.backend.reserve(&plan, &self.params)
    }

    /// Runs the head on a batch.
    pub fn forward(&self, batch: &Batch, opts: ForwardOptions) -> Result<Outputs> {
        self.run(batch, opts, None)
    }

    /// A key/value cache for incremental decoding of `batch` sequences (decoders only).
    pub fn new_cache(&self, batch: usize) -> Result<KvCache> {
        if !self.config.is_decoder {
            return Err(Error::Unsupported(
                "a key/value cache needs a decoder (config is_decoder = true)".into(),
            ));
        }
        if batch == 0 {
            return Err(Error::Input("cache batch size must be positive".into()));
        }
        let c = &self.config;
        Ok(KvCache::new(
            c.num_hidden_layers,
            batch,
            c.num_attention_heads,
            c.head_dim(),
            c.max_position_embeddings,
        ))
    }

    /// Runs the next tokens of a decoder, attending over (and extending) `cache`.
    /// The logits equal those of a full forward over the whole prefix.
    pub fn forward_cached(
        &self,
        batch: &Batch,
        cache: &mut KvCache,
        opts: ForwardOptions,
    ) -> Result<Outputs> {
        if batch.rows() != cache.batch() {
            return Err(Error::Input(format!(
                "batch of {} sequences for a cache of {}",
                batch.rows(),
                cache.batch()
            )));
        }
        self.run(batch, opts, Some(cache))
    }

    fn run(
        &self,
        batch: &Batch,
        opts: ForwardOptions,
        cache: Option<&mut KvCache>,
    ) -> Result<Outputs> {
        let past = cache.as_ref().map_or(0, |c| c.len());
        batch.validate(&self.config, past)?;
        if (self.head == Head::MultipleChoice) != batch.choices().is_some() {
            return Err(Error::Input(match self.head {
                Head::MultipleChoice => {
                    "multiple choice needs input_ids shaped [batch][choices][seq]".into()
                }
                _ => "input_ids shaped [batch][choices][seq] are only for the multiple-choice head"
                    .into(),
            }));
        }
        let shape = Shape {
            batch: batch.rows(),
            seq: batch.seq(),
            past,
        };
        let plan = self.plan(shape, opts);
        let parts = match cache {
            Some(_) => 1,
            None => self.backend.throughput_parts(batch.rows()),
        };
        let tensors = match parts {
            0 | 1 => self.backend.execute(&plan, &self.params, batch, cache)?,
            _ => self.execute_parts(&plan, batch, opts, parts)?,
        };
        let mut out = Outputs::default();
        for (desc, tensor) in plan.outputs.iter().zip(tensors) {
            if let Some(i) = desc.name.strip_prefix("hidden_states.") {
                debug_assert_eq!(i.parse(), Ok(out.hidden_states.len()));
                out.hidden_states.push(tensor);
            } else if desc.name.starts_with("attentions.") {
                out.attentions.push(tensor);
            } else {
                out.tensors.push((desc.name.clone(), tensor));
            }
        }
        if let (Head::MultipleChoice, Some(choices)) = (self.head, batch.choices()) {
            for (_, t) in &mut out.tensors {
                let data = std::mem::take(t).into_data();
                *t = Tensor::new(vec![data.len() / choices, choices], data)
                    .ok_or_else(|| Error::Input("multiple-choice logits".into()))?;
            }
        }
        Ok(out)
    }

    /// Throughput mode: `parts` slices of the batch run side by side, each with its own
    /// plan, and their outputs (all [rows, ...]) are stacked back in order.
    fn execute_parts(
        &self,
        plan: &Plan,
        batch: &Batch,
        opts: ForwardOptions,
        parts: usize,
    ) -> Result<Vec<Tensor>> {
        use rayon::prelude::*;
        let rows = batch.rows();
        let bounds: Vec<(usize, usize)> = (0..parts)
            .map(|p| (p * rows / parts, (p + 1) * rows / parts))
            .filter(|(a, b)| b > a)
            .collect();
        let results = bounds
            .par_iter()
            .map(|&(a, b)| {
                let sub = batch.rows_range(a, b);
                let shape = Shape {
                    batch: b - a,
                    seq: batch.seq(),
                    past: 0,
                };
                self.backend
                    .execute(&self.plan(shape, opts), &self.params, &sub, None)
            })
            .collect::<Result<Vec<Vec<Tensor>>>>()?;
        plan.outputs
            .iter()
            .enumerate()
            .map(|(i, o)| {
                let mut data = Vec::with_capacity(o.shape.iter().product());
                for part in &results {
                    let t = part.get(i).ok_or_else(|| {
                        Error::Unsupported(format!("plan bug: part lacks output {}", o.name))
                    })?;
                    data.extend_from_slice(t.data());
                }
                Tensor::new(o.shape.clone(), data).ok_or_else(|| {
                    Error::Unsupported(format!("plan bug: output {} has the wrong size", o.name))
                })
            })
            .collect()
    }
}
