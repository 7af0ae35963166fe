//! Plans: ops plus every buffer they use, sized for one input shape.

use crate::error::Result;
use crate::graph::Op;

/// Index of a buffer in a [`Plan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BufId(pub(crate) usize);

/// The input shape a plan is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shape {
    /// Sequences in the batch (choices flattened in for multiple choice).
    pub batch: usize,
    /// Tokens per sequence in this call (padded length).
    pub seq: usize,
    /// Tokens already in the key/value cache (0 without a cache).
    pub past: usize,
    /// Multiple choice: consecutive sequences that form one example (1 otherwise).
    pub choices: usize,
    /// Token rows the masked-LM head reads (None: every row; see `Batch::with_selected`).
    pub selected: Option<usize>,
}

impl Shape {
    /// `batch` sequences of `seq` tokens, no cache, no choices.
    pub fn new(batch: usize, seq: usize) -> Self {
        Shape {
            batch,
            seq,
            past: 0,
            choices: 1,
            selected: None,
        }
    }

    /// The same shape with the masked-LM head reading `selected` rows only.
    pub fn with_selected(self, selected: Option<usize>) -> Self {
        Shape { selected, ..self }
    }

    /// The same shape with `past` cached tokens before this call's.
    pub fn with_past(self, past: usize) -> Self {
        Shape { past, ..self }
    }

    /// The same shape with sequences grouped `choices` to an example.
    pub fn with_choices(self, choices: usize) -> Self {
        Shape { choices, ..self }
    }

    /// Examples in the batch: batch / choices.
    pub fn examples(&self) -> usize {
        self.batch / self.choices.max(1)
    }

    /// Tokens in this call: batch * seq.
    pub fn tokens(&self) -> usize {
        self.batch * self.seq
    }

    /// Keys each query may see: past + seq.
    pub fn keys(&self) -> usize {
        self.past + self.seq
    }
}

/// A named f32 buffer of a plan.
#[derive(Debug, Clone)]
pub struct BufDesc {
    /// Debug name such as `layer.3.qkv`.
    pub name: String,
    /// Number of f32 elements.
    pub len: usize,
}

/// A plan output: a buffer read back under a Hugging Face name with its shape.
#[derive(Debug, Clone)]
pub struct PlanOutput {
    /// `last_hidden_state`, `logits`, `hidden_states.0`, `attentions.2`, ...
    pub name: String,
    /// The buffer holding it.
    pub buf: BufId,
    /// Its shape, as transformers returns it.
    pub shape: Vec<usize>,
}

/// Ops and buffers for one head at one input shape.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The shape this plan was built for.
    pub shape: Shape,
    /// Every buffer, sized up front.
    pub bufs: Vec<BufDesc>,
    /// Ops in execution order.
    pub ops: Vec<Op>,
    /// What the caller reads back.
    pub outputs: Vec<PlanOutput>,
}

/// Plans one head with fixed options at any shape (a backend that splits a call plans
/// its parts through this).
pub trait Planner: Sync {
    /// The plan for `shape`.
    fn plan(&self, shape: Shape) -> Result<Plan>;
}

impl<F: Fn(Shape) -> Result<Plan> + Sync> Planner for F {
    fn plan(&self, shape: Shape) -> Result<Plan> {
        self(shape)
    }
}

/// Builds a [`Plan`]: allocates named buffers and appends ops.
pub struct PlanBuilder {
    plan: Plan,
}

impl PlanBuilder {
    /// An empty plan for `shape`.
    pub fn new(shape: Shape) -> Self {
        PlanBuilder {
            plan: Plan {
                shape,
                bufs: Vec::new(),
                ops: Vec::new(),
                outputs: Vec::new(),
            },
        }
    }

    /// The shape being planned.
    pub fn shape(&self) -> Shape {
        self.plan.shape
    }

    /// A new buffer of `len` f32 elements.
    pub fn buf(&mut self, name: impl Into<String>, len: usize) -> BufId {
        self.plan.bufs.push(BufDesc {
            name: name.into(),
            len,
        });
        BufId(self.plan.bufs.len() - 1)
    }

    /// Appends an op.
    pub fn op(&mut self, op: impl Into<Op>) {
        self.plan.ops.push(op.into());
    }

    /// Declares an output.
    pub fn output(&mut self, name: impl Into<String>, buf: BufId, shape: Vec<usize>) {
        self.plan.outputs.push(PlanOutput {
            name: name.into(),
            buf,
            shape,
        });
    }

    /// The finished plan.
    pub fn finish(self) -> Plan {
        self.plan
    }
}
