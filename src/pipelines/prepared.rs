//! Inputs made ready apart from the model, and the batching of ready inputs.
//!
//! [`Pipeline::prepare`] parses, tokenizes and checks one input on the caller's thread
//! (a server's worker, the CLI's loop); [`execute`] answers any number of prepared inputs,
//! from one pipeline or from several over the same [`TextModel`](super::TextModel): the
//! single-window ones are grouped by head and length into few forward calls, the rest
//! (windows, choices, decoding) run one by one. `Pipeline::run` is the two in a row.

use serde_json::Value;

use super::{fill_mask, pairs, Answer, Pipeline, TaskOptions};
use crate::error::{Error, Result};
use crate::model::Outputs;
use crate::tokenizer::Encoding;

/// One input, parsed, tokenized and checked against the model: what is left is the
/// forward call and the answer.
#[derive(Debug)]
pub struct Prepared {
    kind: Kind,
    warnings: Vec<String>,
}

#[derive(Debug)]
enum Kind {
    /// One window, batched with others of the same head.
    Window { enc: Encoding, extra: Extra },
    /// A task that runs its own forward calls (question answering, token
    /// classification, multiple choice, generation): kept as the input.
    Whole { input: Value, tokens: usize },
}

/// What a task keeps from preparing beyond the encoding.
#[derive(Debug, Default)]
pub(super) enum Extra {
    #[default]
    None,
    /// fill-mask: the mask positions and the target ids (None: the whole vocabulary).
    Masks {
        masks: Vec<usize>,
        targets: Option<Vec<u32>>,
    },
}

impl Prepared {
    /// The tokens this input puts through the model (for a task that runs its own
    /// windows, the longest window: an estimate).
    pub fn tokens(&self) -> usize {
        match &self.kind {
            Kind::Window { enc, .. } => enc.len(),
            Kind::Whole { tokens, .. } => *tokens,
        }
    }
}

impl Pipeline {
    /// Parses, tokenizes and checks one input (a JSON object as `bertrt run` reads it),
    /// so that [`execute`] only runs the model. An input that cannot be answered fails
    /// here, alone.
    pub fn prepare(&self, input: &Value) -> Result<Prepared> {
        let mut warnings = Vec::new();
        let (enc, extra) = match &self.options {
            TaskOptions::Embed(_)
            | TaskOptions::TextClassification(_)
            | TaskOptions::SparseEmbed => (self.encode_text(input, &mut warnings)?, Extra::None),
            TaskOptions::NextSentence => (
                pairs::prepare_next_sentence(self, input, &mut warnings)?,
                Extra::None,
            ),
            TaskOptions::FillMask(o) => fill_mask::prepare(self, o, input, &mut warnings)?,
            _ => {
                let kind = Kind::Whole {
                    input: input.clone(),
                    tokens: self.max_length,
                };
                return Ok(Prepared { kind, warnings });
            }
        };
        self.check(&enc)?;
        Ok(Prepared {
            kind: Kind::Window { enc, extra },
            warnings,
        })
    }

    /// Prepares token ids given by the caller, as they are (no special tokens added),
    /// for embed and text-classification; cut to the model's limit unless truncation is
    /// off (then an error).
    pub fn prepare_ids(&self, ids: Vec<u32>) -> Result<Prepared> {
        if !matches!(
            self.options,
            TaskOptions::Embed(_) | TaskOptions::TextClassification(_) | TaskOptions::SparseEmbed
        ) {
            return Err(Error::Input(format!(
                "{} takes text, not token ids",
                self.task().name()
            )));
        }
        let mut warnings = Vec::new();
        let mut ids = ids;
        let truncated = ids.len() > self.max_length;
        if truncated {
            if self.input.no_truncate == Some(true) {
                return Err(Error::Input(format!(
                    "input is longer than {} tokens (truncation is off)",
                    self.max_length
                )));
            }
            match self.input.from_left() {
                true => drop(ids.drain(..ids.len() - self.max_length)),
                false => ids.truncate(self.max_length),
            }
            warnings.push(format!("input truncated to {} tokens", self.max_length));
        }
        if ids.is_empty() {
            return Err(Error::Input("no token ids".into()));
        }
        let n = ids.len();
        let enc = Encoding {
            type_ids: vec![0; n],
            tokens: Vec::new(),
            offsets: vec![(0, 0); n],
            sequence_ids: vec![Some(0); n],
            word_ids: vec![None; n],
            truncated,
            ids,
        };
        self.check(&enc)?;
        Ok(Prepared {
            kind: Kind::Window {
                enc,
                extra: Extra::None,
            },
            warnings,
        })
    }

    /// The answer for row `row` of a forward call's outputs (for fill-mask with the head at
    /// the masks only, `selected` is where the row's masks start among the logits' rows).
    fn finish(
        &self,
        out: &Outputs,
        row: usize,
        selected: Option<usize>,
        enc: &Encoding,
        extra: &Extra,
    ) -> Result<Answer> {
        let value = match (&self.options, extra) {
            // Embeddings are written straight to JSON text (the hot path of a server).
            (TaskOptions::Embed(o), _) => return super::embed::finish(self, o, out, row, enc),
            (TaskOptions::TextClassification(o), _) => {
                super::text_classification::finish(self, o, out, row)
            }
            (TaskOptions::NextSentence, _) => pairs::finish_next_sentence(out, row),
            (TaskOptions::SparseEmbed, _) => super::embed::finish_sparse(self, out, row, enc),
            (TaskOptions::FillMask(o), Extra::Masks { masks, targets }) => {
                let vocab = self.config().vocab_size;
                let t = out
                    .get("logits")
                    .ok_or_else(|| Error::Internal("the model returned no `logits`".into()))?;
                // [selected, vocab], or [batch, seq, vocab] with every position.
                let seq = t.shape().get(1).copied().filter(|_| t.shape().len() == 3);
                let logits = t.data();
                let at = |i: usize, m: usize| match selected {
                    Some(first) => (first + i) * vocab,
                    None => (row * seq.unwrap_or(0) + m) * vocab,
                };
                let per_mask = masks
                    .iter()
                    .enumerate()
                    .map(|(i, &m)| logits.get(at(i, m)..at(i, m) + vocab))
                    .collect::<Option<Vec<&[f32]>>>()
                    .ok_or_else(|| Error::Internal("fill-mask logits are short".into()))?;
                fill_mask::finish(self, o, &per_mask, enc, masks, targets.as_deref())
            }
            _ => Err(Error::Internal(format!(
                "{} was prepared for another task",
                self.task().name()
            ))),
        };
        value.map(Answer::new)
    }
}

/// Answers prepared inputs, each with the pipeline that prepared it; one result per
/// input, in order. Single-window inputs of the same head run together, sorted by
/// length, `batch_size` to a forward call; a forward call that fails is retried input by
/// input, so only what fails alone fails. Every pipeline must run on one
/// [`TextModel`](super::TextModel) (an error for the inputs of any other).
pub fn execute(inputs: Vec<(&Pipeline, Prepared)>, batch_size: usize) -> Vec<Result<Answer>> {
    let mut results: Vec<Option<Result<Answer>>> = (0..inputs.len()).map(|_| None).collect();
    let Some(first) = inputs.first().map(|(p, _)| p.text.clone()) else {
        return Vec::new();
    };
    let mut windows = Vec::new();
    for (i, (p, prepared)) in inputs.into_iter().enumerate() {
        let Prepared { kind, warnings } = prepared;
        if !std::sync::Arc::ptr_eq(&p.text, &first) {
            results[i] = Some(Err(Error::Internal(
                "inputs of two models were executed together".into(),
            )));
            continue;
        }
        match kind {
            Kind::Window { enc, extra } => windows.push(Window {
                index: i,
                pipeline: p,
                enc,
                extra,
                warnings,
            }),
            Kind::Whole { input, .. } => {
                results[i] = Some(p.run_whole(&input).map(|a| {
                    let mut all = warnings;
                    all.extend(a.warnings.iter().cloned());
                    a.with_warnings(all)
                }));
            }
        }
    }
    // Group by head, then by length so that little padding is computed.
    windows.sort_by_key(|w| (w.pipeline.task() as usize, w.enc.len()));
    let size = batch_size.max(1);
    let mut start = 0;
    while start < windows.len() {
        let head = windows[start].pipeline.task().head();
        let end = (start..windows.len())
            .take(size)
            .take_while(|&j| windows[j].pipeline.task().head() == head)
            .last()
            .map_or(start + 1, |j| j + 1);
        run_group(&windows[start..end], &mut results);
        start = end;
    }
    answered(results)
}

/// The results of inputs answered out of order, in order; an input left unanswered (a
/// bug) gets an error instead of a panic.
pub fn answered(results: Vec<Option<Result<Answer>>>) -> Vec<Result<Answer>> {
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(Error::Internal("an input was not answered".into()))))
        .collect()
}

/// A single-window input on its way through [`execute`].
struct Window<'a> {
    index: usize,
    pipeline: &'a Pipeline,
    enc: Encoding,
    extra: Extra,
    warnings: Vec<String>,
}

/// One forward call for a group of one head; on failure, one per input.
fn run_group(group: &[Window], results: &mut [Option<Result<Answer>>]) {
    let answer = |group: &[Window], results: &mut [Option<Result<Answer>>]| {
        let encs: Vec<&Encoding> = group.iter().map(|w| &w.enc).collect();
        let p = group[0].pipeline;
        let mut batch = super::pad(&encs, p.tokenizer().specials().pad)?;
        // fill-mask on the CPU: the prediction head only at the masks (a row's masks
        // are then rows `offset..` of the logits).
        let selected: Vec<(usize, usize)> = group
            .iter()
            .enumerate()
            .flat_map(|(row, w)| match &w.extra {
                Extra::Masks { masks, .. } => masks.iter().map(|&m| (row, m)).collect(),
                Extra::None => Vec::new(),
            })
            .collect();
        let select = p.task() == super::Task::FillMask
            && p.text.model().device() == crate::Device::Cpu
            && !selected.is_empty();
        if select {
            batch = batch.with_selected(&selected)?;
        }
        let out = p.forward_batch(&batch)?;
        let mut offset = 0;
        for (row, w) in group.iter().enumerate() {
            let at = match (select, &w.extra) {
                (true, Extra::Masks { masks, .. }) => {
                    offset += masks.len();
                    Some(offset - masks.len())
                }
                _ => None,
            };
            results[w.index] = Some(
                w.pipeline
                    .finish(&out, row, at, &w.enc, &w.extra)
                    .map(|answer| answer.with_warnings(w.warnings.clone())),
            );
        }
        Ok::<(), Error>(())
    };
    let Err(e) = answer(group, results) else {
        return;
    };
    if group.len() == 1 {
        results[group[0].index] = Some(Err(e));
        return;
    }
    for one in group.chunks(1) {
        if let Err(e) = answer(one, results) {
            results[one[0].index] = Some(Err(e));
        }
    }
}
