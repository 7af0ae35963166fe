//! Lowering a plan to GPU steps: each dense layer becomes a GEMM whose bias and
//! activation ride on the kernel that reads its output (the LayerNorm after it, or the
//! QKV split before attention), and every buffer gets its row kind, so token rows can be
//! packed without padding while per-sequence rows stay [batch, width].

use crate::config::Activation;
use crate::error::{Error, Result};
use crate::graph::{op, BufId, Op, Plan};
use crate::weights::WeightId;

/// What the rows of a buffer are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// One row per token (packed when the batch is packed).
    Tokens,
    /// One row per sequence.
    Batch,
    /// Attention probabilities [batch, heads, seq, keys].
    Probs,
}

/// The bias and activation of a dense layer, applied by the kernel that reads its
/// output.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Epilogue {
    pub bias: Option<WeightId>,
    pub act: Option<Activation>,
}

/// One GPU step: a plan op, with what lowering decided about it.
#[derive(Debug, Clone, Copy)]
pub(super) enum Step {
    /// Embedding gathers + LayerNorm.
    Embeddings(op::Embeddings),
    /// out = x · wᵀ of a dense layer (its bias and activation come later).
    Gemm { linear: op::Linear, kind: Kind },
    /// The dense layer's out = act(out + b), in place, when no later kernel takes them.
    BiasAct { linear: op::Linear, kind: Kind },
    /// out = LayerNorm(act(x + bias) + residual).
    LayerNorm {
        norm: op::LayerNorm,
        fused: Epilogue,
        kind: Kind,
    },
    /// QKV bias + head split, then fused attention.
    Attention {
        attention: op::Attention,
        bias: Option<WeightId>,
    },
    /// Each sequence's first row.
    Gather(op::GatherFirst),
}

impl Step {
    /// The kernel family, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Step::Embeddings(_) => "embeddings",
            Step::Gemm { .. } => "gemm",
            Step::BiasAct { .. } => "bias_act",
            Step::LayerNorm { .. } => "layernorm",
            Step::Attention { .. } => "attention",
            Step::Gather(_) => "gather_cls",
        }
    }
}

/// A lowered plan: steps (each with the index of the plan op it came from, for error
/// messages) and the kind of every buffer.
#[derive(Debug)]
pub(super) struct Lowered {
    pub steps: Vec<(usize, Step)>,
    pub kinds: Vec<Kind>,
}

fn plan_bug(msg: String) -> Error {
    Error::Internal(format!("CUDA lowering: {msg}"))
}

/// Whether the op after a dense layer takes its bias (and activation): a LayerNorm
/// reading it, or attention reading it as Q|K|V (bias only).
fn absorbs(next: Option<&Op>, linear: &op::Linear) -> bool {
    match next {
        Some(Op::LayerNorm(n)) => n.x == linear.out,
        Some(Op::Attention(a)) => a.qkv == linear.out && linear.act.is_none(),
        _ => false,
    }
}

pub(super) fn lower(plan: &Plan) -> Result<Lowered> {
    let readers = value_readers(plan);
    let mut kinds: Vec<Option<Kind>> = vec![None; plan.bufs.len()];
    let kind_of = |kinds: &[Option<Kind>], b: BufId| {
        kinds[b.0].ok_or_else(|| plan_bug(format!("buffer {} read before written", b.0)))
    };
    let mut steps = Vec::with_capacity(plan.ops.len() * 2);
    // The epilogue a dense layer left for the op reading its output.
    let mut pending: Vec<Option<Epilogue>> = vec![None; plan.bufs.len()];
    for (i, op) in plan.ops.iter().enumerate() {
        // Every input has rows of one kind; the outputs take it.
        let mut kind = None;
        for b in op.inputs() {
            let k = kind_of(&kinds, b)?;
            if kind.is_some_and(|seen| seen != k) {
                return Err(plan_bug(format!(
                    "op {i} ({op}): inputs with different rows"
                )));
            }
            kind = Some(k);
        }
        let step = match *op {
            Op::GatherSelected(_) => {
                return Err(Error::Unsupported(
                    "the masked-LM head at selected positions runs on the CPU backend only; \
                     on CUDA it runs at every position"
                        .into(),
                ))
            }
            Op::Embeddings(e) => {
                kinds[e.out.0] = Some(Kind::Tokens);
                Step::Embeddings(e)
            }
            Op::Linear(linear) => {
                let kind = kind.ok_or_else(|| plan_bug(format!("op {i}: no input")))?;
                kinds[linear.out.0] = Some(kind);
                steps.push((i, Step::Gemm { linear, kind }));
                let epilogue = Epilogue {
                    bias: linear.b,
                    act: linear.act,
                };
                if readers[i] == 1 && absorbs(plan.ops.get(i + 1), &linear) {
                    pending[linear.out.0] = Some(epilogue);
                } else if linear.b.is_some() || linear.act.is_some() {
                    steps.push((i, Step::BiasAct { linear, kind }));
                }
                continue;
            }
            Op::LayerNorm(norm) => {
                let kind = kind.ok_or_else(|| plan_bug(format!("op {i}: no input")))?;
                kinds[norm.out.0] = Some(kind);
                Step::LayerNorm {
                    norm,
                    fused: pending[norm.x.0].take().unwrap_or_default(),
                    kind,
                }
            }
            Op::Attention(attention) => {
                if kind != Some(Kind::Tokens) {
                    return Err(plan_bug(format!(
                        "op {i}: attention over per-sequence rows"
                    )));
                }
                kinds[attention.out.0] = Some(Kind::Tokens);
                if let Some(p) = attention.probs {
                    kinds[p.0] = Some(Kind::Probs);
                }
                let bias = pending[attention.qkv.0].take().and_then(|e| e.bias);
                Step::Attention { attention, bias }
            }
            Op::GatherFirst(gather) => {
                if kind != Some(Kind::Tokens) {
                    return Err(plan_bug(format!("op {i}: gather from per-sequence rows")));
                }
                kinds[gather.out.0] = Some(Kind::Batch);
                Step::Gather(gather)
            }
        };
        steps.push((i, step));
    }
    let kinds = kinds
        .into_iter()
        .enumerate()
        .map(|(i, k)| k.ok_or_else(|| plan_bug(format!("buffer {i} is never written"))))
        .collect::<Result<Vec<Kind>>>()?;
    Ok(Lowered { steps, kinds })
}

/// For every op, how many times the value it writes into its main output is read: by
/// later ops until one overwrites that buffer (scratch buffers are shared by layers), or
/// by the plan's outputs if none does. One forward pass, no allocation per op.
fn value_readers(plan: &Plan) -> Vec<usize> {
    let mut reads = vec![0usize; plan.ops.len()];
    // The op whose main output a buffer currently holds.
    let mut writer: Vec<Option<usize>> = vec![None; plan.bufs.len()];
    let mut count = |writer: &[Option<usize>], b: BufId| {
        if let Some(w) = writer[b.0] {
            if plan.ops[w].output() == b {
                reads[w] += 1;
            }
        }
    };
    for (i, op) in plan.ops.iter().enumerate() {
        op.inputs().for_each(|b| count(&writer, b));
        op.outputs().for_each(|b| writer[b.0] = Some(i));
    }
    for o in &plan.outputs {
        count(&writer, o.buf);
    }
    reads
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Shape;
    use crate::{Device, ForwardOptions, Model};

    /// Every dense layer's bias and activation ride on the kernel after it, except the
    /// feed-forward intermediate and the pooler, which have no such kernel.
    #[test]
    fn bias_activation_and_residual_fuse_into_the_next_kernel() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bert_base_tiny");
        let model = Model::load(&dir, None, Device::Cpu).expect("fixture");
        let layers = model.config().num_hidden_layers;
        let shape = Shape::new(2, 5);
        let plan = model.plan(shape, ForwardOptions::default()).expect("plan");
        let low = lower(&plan).expect("lowers");
        let count = |f: fn(&Step) -> bool| low.steps.iter().filter(|(_, s)| f(s)).count();
        assert_eq!(count(|s| matches!(s, Step::Gemm { .. })), 4 * layers + 1);
        assert_eq!(count(|s| matches!(s, Step::BiasAct { .. })), layers + 1);
        assert_eq!(
            count(|s| matches!(
                s,
                Step::LayerNorm {
                    fused: Epilogue { bias: Some(_), .. },
                    norm: op::LayerNorm {
                        residual: Some(_),
                        ..
                    },
                    ..
                }
            )),
            2 * layers
        );
        assert_eq!(
            count(|s| matches!(s, Step::Attention { bias: Some(_), .. })),
            layers
        );
        assert_eq!(low.kinds.iter().filter(|k| **k == Kind::Batch).count(), 2);
    }
}
