//! Lowering a plan to GPU steps: each dense layer becomes a GEMM whose bias and
//! activation ride on the kernel that reads its output (the LayerNorm after it, or the
//! QKV split before attention), and every buffer gets its row kind, so token rows can be
//! packed without padding while per-sequence rows stay [batch, width].

use crate::config::Activation;
use crate::error::{Error, Result};
use crate::graph::{BufId, Op, Plan, Relative};
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

/// One GPU step.
#[derive(Debug, Clone)]
pub(super) enum Step {
    /// Embedding gathers + LayerNorm.
    Embeddings {
        word: WeightId,
        position: Option<WeightId>,
        token_type: WeightId,
        gamma: WeightId,
        beta: WeightId,
        eps: f32,
        hidden: usize,
        out: BufId,
    },
    /// out = x · wᵀ (no bias).
    Gemm {
        x: BufId,
        w: WeightId,
        kind: Kind,
        k: usize,
        n: usize,
        out: BufId,
    },
    /// buf = act(buf + b), in place.
    BiasAct {
        buf: BufId,
        b: Option<WeightId>,
        act: Option<Activation>,
        kind: Kind,
        n: usize,
    },
    /// out = LayerNorm(act(x + bias) + residual).
    LayerNorm {
        x: BufId,
        bias: Option<WeightId>,
        act: Option<Activation>,
        residual: Option<BufId>,
        gamma: WeightId,
        beta: WeightId,
        eps: f32,
        kind: Kind,
        width: usize,
        out: BufId,
    },
    /// QKV bias + head split, then fused attention.
    Attention {
        qkv: BufId,
        bias: Option<WeightId>,
        out: BufId,
        probs: Option<BufId>,
        layer: usize,
        heads: usize,
        head_dim: usize,
        causal: bool,
        relative: Option<Relative>,
    },
    /// Each sequence's first row.
    Gather { x: BufId, width: usize, out: BufId },
}

/// A lowered plan: steps (each with the index of the plan op it came from, for error
/// messages) and the kind of every buffer.
#[derive(Debug)]
pub(super) struct Lowered {
    pub steps: Vec<(usize, Step)>,
    pub kinds: Vec<Kind>,
}

/// How the next op consumes a dense layer's output, when it can absorb bias and
/// activation.
enum Consumer {
    LayerNorm,
    Attention,
    None,
}

fn plan_bug(msg: String) -> Error {
    Error::Unsupported(format!("plan bug (CUDA lowering): {msg}"))
}

pub(super) fn lower(plan: &Plan) -> Result<Lowered> {
    let readers = value_readers(plan);
    let mut kinds: Vec<Option<Kind>> = vec![None; plan.bufs.len()];
    let kind_of = |kinds: &[Option<Kind>], b: BufId| {
        kinds[b.0].ok_or_else(|| plan_bug(format!("buffer {} read before written", b.0)))
    };
    let mut steps = Vec::with_capacity(plan.ops.len() * 2);
    // (bias, act) a dense layer left for the op reading its output.
    let mut pending: Vec<Option<(Option<WeightId>, Option<Activation>)>> =
        vec![None; plan.bufs.len()];
    for (i, op) in plan.ops.iter().enumerate() {
        match op.clone() {
            Op::Embeddings {
                word,
                position,
                token_type,
                gamma,
                beta,
                eps,
                out,
            } => {
                kinds[out.0] = Some(Kind::Tokens);
                let hidden = plan.bufs[out.0].len / plan.shape.tokens().max(1);
                steps.push((
                    i,
                    Step::Embeddings {
                        word,
                        position,
                        token_type,
                        gamma,
                        beta,
                        eps,
                        hidden,
                        out,
                    },
                ));
            }
            Op::Linear {
                x,
                w,
                b,
                act,
                k,
                n,
                out,
                ..
            } => {
                let kind = kind_of(&kinds, x)?;
                kinds[out.0] = Some(kind);
                steps.push((
                    i,
                    Step::Gemm {
                        x,
                        w,
                        kind,
                        k,
                        n,
                        out,
                    },
                ));
                let consumer = match plan.ops.get(i + 1) {
                    _ if readers[i] != 1 => Consumer::None,
                    Some(Op::LayerNorm { x: lx, .. }) if *lx == out => Consumer::LayerNorm,
                    Some(Op::Attention { qkv, .. }) if *qkv == out && act.is_none() => {
                        Consumer::Attention
                    }
                    _ => Consumer::None,
                };
                match consumer {
                    Consumer::LayerNorm | Consumer::Attention => pending[out.0] = Some((b, act)),
                    Consumer::None if b.is_some() || act.is_some() => steps.push((
                        i,
                        Step::BiasAct {
                            buf: out,
                            b,
                            act,
                            kind,
                            n,
                        },
                    )),
                    Consumer::None => {}
                }
            }
            Op::LayerNorm {
                x,
                residual,
                gamma,
                beta,
                eps,
                width,
                out,
                ..
            } => {
                let kind = kind_of(&kinds, x)?;
                if let Some(r) = residual {
                    if kind_of(&kinds, r)? != kind {
                        return Err(plan_bug(format!("op {i}: residual rows differ from x")));
                    }
                }
                kinds[out.0] = Some(kind);
                let (bias, act) = pending[x.0].take().unwrap_or((None, None));
                steps.push((
                    i,
                    Step::LayerNorm {
                        x,
                        bias,
                        act,
                        residual,
                        gamma,
                        beta,
                        eps,
                        kind,
                        width,
                        out,
                    },
                ));
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
                if kind_of(&kinds, qkv)? != Kind::Tokens {
                    return Err(plan_bug(format!(
                        "op {i}: attention over per-sequence rows"
                    )));
                }
                kinds[out.0] = Some(Kind::Tokens);
                if let Some(p) = probs {
                    kinds[p.0] = Some(Kind::Probs);
                }
                let bias = pending[qkv.0].take().and_then(|(b, _)| b);
                steps.push((
                    i,
                    Step::Attention {
                        qkv,
                        bias,
                        out,
                        probs,
                        layer,
                        heads,
                        head_dim,
                        causal,
                        relative,
                    },
                ));
            }
            Op::GatherFirst { x, width, out } => {
                if kind_of(&kinds, x)? != Kind::Tokens {
                    return Err(plan_bug(format!("op {i}: gather from per-sequence rows")));
                }
                kinds[out.0] = Some(Kind::Batch);
                steps.push((i, Step::Gather { x, width, out }));
            }
        }
    }
    let kinds = kinds
        .into_iter()
        .enumerate()
        .map(|(i, k)| k.ok_or_else(|| plan_bug(format!("buffer {i} is never written"))))
        .collect::<Result<Vec<Kind>>>()?;
    Ok(Lowered { steps, kinds })
}

/// For every op, how many times the value it writes into its first output is read: by
/// later ops until one overwrites that buffer (scratch buffers are shared by layers), or
/// by the plan's outputs if none does. One forward pass, no allocation per op.
fn value_readers(plan: &Plan) -> Vec<usize> {
    let mut reads = vec![0usize; plan.ops.len()];
    // The op whose first output a buffer currently holds.
    let mut writer: Vec<Option<usize>> = vec![None; plan.bufs.len()];
    let mut count = |writer: &[Option<usize>], b: BufId| {
        if let Some(w) = writer[b.0] {
            if first_output(&plan.ops[w]) == b {
                reads[w] += 1;
            }
        }
    };
    for (i, op) in plan.ops.iter().enumerate() {
        let (x, residual) = inputs(op);
        x.into_iter()
            .chain(residual)
            .for_each(|b| count(&writer, b));
        writer[first_output(op).0] = Some(i);
        if let Op::Attention { probs: Some(p), .. } = op {
            writer[p.0] = Some(i);
        }
    }
    for o in &plan.outputs {
        count(&writer, o.buf);
    }
    reads
}

/// The buffer an op writes (attention also writes its optional probabilities).
fn first_output(op: &Op) -> BufId {
    match op {
        Op::Embeddings { out, .. }
        | Op::Linear { out, .. }
        | Op::LayerNorm { out, .. }
        | Op::Attention { out, .. }
        | Op::GatherFirst { out, .. } => *out,
    }
}

/// The buffers an op reads: its main input and, for LayerNorm, the residual.
fn inputs(op: &Op) -> (Option<BufId>, Option<BufId>) {
    match op {
        Op::Embeddings { .. } => (None, None),
        Op::Linear { x, .. } | Op::GatherFirst { x, .. } => (Some(*x), None),
        Op::LayerNorm { x, residual, .. } => (Some(*x), *residual),
        Op::Attention { qkv, .. } => (Some(*qkv), None),
    }
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
        let shape = Shape {
            batch: 2,
            seq: 5,
            past: 0,
        };
        let low = lower(&model.plan(shape, ForwardOptions::default())).expect("lowers");
        let count = |f: fn(&Step) -> bool| low.steps.iter().filter(|(_, s)| f(s)).count();
        assert_eq!(count(|s| matches!(s, Step::Gemm { .. })), 4 * layers + 1);
        assert_eq!(count(|s| matches!(s, Step::BiasAct { .. })), layers + 1);
        assert_eq!(
            count(|s| matches!(
                s,
                Step::LayerNorm {
                    bias: Some(_),
                    residual: Some(_),
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
