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
use std::sync::atomic::{AtomicU64, Ordering};

use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::backend::{Backend, Call, Device, Dtype, Target};
use crate::batch::Batch;
use crate::cache::{CacheLayout, KvCache};
use crate::config::BertConfig;
use crate::error::{Error, Result};
use crate::graph::{Plan, PlanBuilder, Shape};
use crate::tensor::Tensor;
use crate::weights::{ModelSource, ParamStore, VarBuilder, WeightSource};

/// A loaded BERT model: the encoder and every head whose weights the checkpoint holds,
/// loaded once and shared by all of them, on one backend. `Model` is `Send + Sync`:
/// share it with `Arc` and run any of its heads from any thread.
pub struct Model {
    config: BertConfig,
    /// The default head first, then every other head the weights allow.
    heads: Vec<Head>,
    params: ParamStore,
    trunk: BertModel,
    modules: HeadModules,
    backend: Box<dyn Backend>,
    /// Tells this model's caches from other models'.
    id: u64,
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
    /// The heads this model runs, as transformers' class names joined for messages.
    pub fn head_names(&self) -> String {
        self.heads()
            .iter()
            .map(|h| h.class_name())
            .collect::<Vec<_>>()
            .join(", ")
    }

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

    /// Builds a model from a parsed config and a weight source onto `backend`. The
    /// default head is `head`, else the config's `architectures[0]`; its weights must
    /// be there. Every other head whose weights are there is loaded too.
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
        let trunk = BertModel::load(&root.pp("bert"), &config, head.needs_pooler())?;
        let modules = HeadModules::load(head, &root, &config, &trunk)?;
        let others = Head::all().filter(|&h| {
            h != head
                && modules.has(h)
                && (!h.needs_pooler() || trunk.has_pooler())
                && match h {
                    Head::MaskedLm => !config.is_decoder,
                    Head::LmHead => config.is_decoder,
                    _ => true,
                }
        });
        let heads = std::iter::once(head).chain(others).collect();
        let params = store.into_inner();
        params.check_finite()?;
        backend.prepare(&params)?;
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        Ok(Model {
            config,
            heads,
            params,
            trunk,
            modules,
            backend,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// The model's config.
    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// The default head (what `forward` runs when the options name none).
    pub fn head(&self) -> Head {
        self.heads[0]
    }

    /// Every head this model can run, the default first.
    pub fn heads(&self) -> &[Head] {
        &self.heads
    }

    /// Whether this model can run `head`.
    pub fn has_head(&self, head: Head) -> bool {
        self.heads.contains(&head)
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

    /// The head `opts` names, if this model has it.
    fn head_of(&self, opts: ForwardOptions) -> Result<Head> {
        let head = opts.head.unwrap_or(self.heads[0]);
        match self.has_head(head) {
            true => Ok(head),
            false => Err(Error::Unsupported(format!(
                "this checkpoint has no weights for {head}; its heads: {}",
                self.heads
                    .iter()
                    .map(|h| h.class_name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// The plan of ops this model runs for `shape` with these options.
    pub fn plan(&self, shape: Shape, opts: ForwardOptions) -> Result<Plan> {
        let head = self.head_of(opts)?;
        let mut g = PlanBuilder::new(shape);
        let enc = self
            .trunk
            .lower(&mut g, opts, head == Head::Bert || head.needs_pooler());
        self.modules
            .lower(head, &mut g, &enc, self.config.hidden_size)?;
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
        Ok(g.finish())
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
        let plan = self.plan(Shape::new(batch, seq), opts)?;
        self.backend.reserve(&plan, &self.params)
    }

    /// Runs a head (the default one unless `opts` names another) on a batch.
    pub fn forward(&self, batch: &Batch, opts: ForwardOptions) -> Result<Outputs> {
        self.run(batch, opts, None)
    }

    /// A key/value cache for incremental decoding of `batch` sequences (decoders only),
    /// with room for `max_position_embeddings` tokens, allocated now.
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
        let layout = CacheLayout {
            layers: c.num_hidden_layers,
            batch,
            heads: c.num_attention_heads,
            head_dim: c.head_dim(),
            capacity: c.max_position_embeddings,
        };
        let state = self.backend.new_cache(&layout)?;
        Ok(KvCache::new(layout, self.id, state))
    }

    /// Runs the next tokens of a decoder, attending over (and extending) `cache`.
    /// The logits equal those of a full forward over the whole prefix.
    pub fn forward_cached(
        &self,
        batch: &Batch,
        cache: &mut KvCache,
        opts: ForwardOptions,
    ) -> Result<Outputs> {
        if cache.owner() != self.id {
            return Err(Error::Input(
                "this key/value cache was made by another model".into(),
            ));
        }
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
        let head = self.head_of(opts)?;
        let past = cache.as_ref().map_or(0, |c| c.len());
        batch.validate(&self.config, past)?;
        if (head == Head::MultipleChoice) != batch.choices().is_some() {
            return Err(Error::Input(match head {
                Head::MultipleChoice => {
                    "multiple choice needs input_ids shaped [batch][choices][seq]".into()
                }
                _ => "input_ids shaped [batch][choices][seq] are only for the multiple-choice head"
                    .into(),
            }));
        }
        let opts = ForwardOptions {
            head: Some(head),
            ..opts
        };
        let shape = Shape::new(batch.rows(), batch.seq())
            .with_past(past)
            .with_choices(batch.choices().unwrap_or(1))
            .with_selected(batch.selected().map(<[usize]>::len));
        let plan = self.plan(shape, opts)?;
        let planner = |shape: Shape| self.plan(shape, opts);
        let call = Call {
            plan: &plan,
            planner: &planner,
            params: &self.params,
            batch,
            cache,
        };
        let tensors = self.backend.execute(call)?;
        let mut out = Outputs::default();
        for (desc, tensor) in plan.outputs.iter().zip(tensors) {
            if desc.name.starts_with("hidden_states.") {
                out.hidden_states.push(tensor);
            } else if desc.name.starts_with("attentions.") {
                out.attentions.push(tensor);
            } else {
                out.tensors.push((desc.name.clone(), tensor));
            }
        }
        Ok(out)
    }
}
