//! A batch of token sequences: ids, token types and attention mask, all of one padded
//! length, validated against the model before anything runs.

use crate::config::BertConfig;
use crate::error::{Error, Result};

/// Token ids of equal-length sequences, with optional mask and token types.
///
/// `attention_mask` defaults to all ones and `token_type_ids` to zeros, as in
/// transformers. For multiple choice the [batch, choices, seq] input is flattened to
/// batch * choices rows and [`Batch::choices`] remembers the grouping.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    rows: usize,
    seq: usize,
    choices: Option<usize>,
    input_ids: Vec<u32>,
    token_type_ids: Vec<u32>,
    attention_mask: Vec<u8>,
    /// Token rows (row * seq + position, ascending) the masked-LM head reads; None: all.
    selected: Option<Vec<usize>>,
}

fn flatten(name: &str, rows: &[Vec<i64>], seq: usize) -> Result<Vec<i64>> {
    let mut out = Vec::with_capacity(rows.len() * seq);
    for (r, row) in rows.iter().enumerate() {
        if row.len() != seq {
            return Err(Error::Input(format!(
                "{name}: row {r} has {} tokens, row 0 has {seq} (rows must be padded to one length)",
                row.len()
            )));
        }
        out.extend_from_slice(row);
    }
    Ok(out)
}

/// Checks token ids, type ids and a sequence length of `seq` (after `past` cached
/// tokens) against a model config: what [`Batch::validate`] checks, for callers that
/// hold the ids of one sequence before any batch is built.
pub fn check_tokens(
    input_ids: &[u32],
    token_type_ids: &[u32],
    seq: usize,
    config: &BertConfig,
    past: usize,
) -> Result<()> {
    if let Some(&id) = input_ids
        .iter()
        .find(|&&id| id as usize >= config.vocab_size)
    {
        return Err(Error::Input(format!(
            "input_ids: token id {id} is out of range (vocab_size = {})",
            config.vocab_size
        )));
    }
    if let Some(&t) = token_type_ids
        .iter()
        .find(|&&t| t as usize >= config.type_vocab_size)
    {
        let hint = match config.type_vocab_size {
            1 => ": this model takes no text pairs",
            _ => "",
        };
        return Err(Error::Input(format!(
            "token_type_ids: type id {t} is out of range (type_vocab_size = {}){hint}",
            config.type_vocab_size
        )));
    }
    if past + seq > config.max_position_embeddings {
        return Err(Error::Input(format!(
            "sequence of {seq} tokens{} is longer than max_position_embeddings = {}",
            if past > 0 {
                format!(" after {past} cached")
            } else {
                String::new()
            },
            config.max_position_embeddings
        )));
    }
    Ok(())
}

impl Batch {
    /// A batch from rows of token ids (all rows the same, non-zero length).
    pub fn new(input_ids: Vec<Vec<i64>>) -> Result<Self> {
        let seq = input_ids.first().map_or(0, Vec::len);
        if input_ids.is_empty() || seq == 0 {
            return Err(Error::Input(
                "input_ids: empty batch or empty sequence".into(),
            ));
        }
        let flat = flatten("input_ids", &input_ids, seq)?;
        let ids = flat
            .iter()
            .map(|&id| {
                u32::try_from(id)
                    .map_err(|_| Error::Input(format!("input_ids: {id} is not a valid token id")))
            })
            .collect::<Result<Vec<u32>>>()?;
        Ok(Batch {
            rows: input_ids.len(),
            seq,
            choices: None,
            token_type_ids: vec![0; ids.len()],
            attention_mask: vec![1; ids.len()],
            input_ids: ids,
            selected: None,
        })
    }

    /// A multiple-choice batch from [batch][choices][seq] ids.
    pub fn multiple_choice(input_ids: Vec<Vec<Vec<i64>>>) -> Result<Self> {
        let choices = input_ids.first().map_or(0, Vec::len);
        if choices == 0 {
            return Err(Error::Input("input_ids: no choices".into()));
        }
        if let Some(b) = input_ids.iter().position(|c| c.len() != choices) {
            return Err(Error::Input(format!(
                "input_ids: example {b} has {} choices, example 0 has {choices}",
                input_ids[b].len()
            )));
        }
        Batch::new(input_ids.into_iter().flatten().collect())?.with_choices(choices)
    }

    /// Groups consecutive rows `choices` to an example (multiple choice: row
    /// e * choices + c is choice c of example e).
    pub fn with_choices(mut self, choices: usize) -> Result<Self> {
        if choices == 0 || !self.rows.is_multiple_of(choices) {
            return Err(Error::Input(format!(
                "{} sequences do not form examples of {choices} choices",
                self.rows
            )));
        }
        self.choices = Some(choices);
        Ok(self)
    }

    /// Runs the masked-LM head only at these (sequence, position) pairs, in this order
    /// (sequences ascending, positions ascending within each): `logits` is then
    /// [selected, vocab] instead of [batch, seq, vocab]. The other heads ignore it.
    pub fn with_selected(mut self, at: &[(usize, usize)]) -> Result<Self> {
        let mut rows = Vec::with_capacity(at.len());
        for &(r, p) in at {
            if r >= self.rows || p >= self.seq {
                return Err(Error::Input(format!(
                    "selected position ({r}, {p}) is outside the {} x {} batch",
                    self.rows, self.seq
                )));
            }
            let flat = r * self.seq + p;
            if rows.last().is_some_and(|&last| last >= flat) {
                return Err(Error::Input(
                    "selected positions must be in ascending order, each once".into(),
                ));
            }
            rows.push(flat);
        }
        self.selected = Some(rows);
        Ok(self)
    }

    /// The token rows the masked-LM head reads (row * seq + position), if chosen.
    pub fn selected(&self) -> Option<&[usize]> {
        self.selected.as_deref()
    }

    /// Sets the attention mask (1 = attend, 0 = padding), one row per sequence.
    pub fn with_attention_mask(mut self, mask: Vec<Vec<i64>>) -> Result<Self> {
        self.check_rows("attention_mask", mask.len())?;
        let flat = flatten("attention_mask", &mask, self.seq)?;
        self.attention_mask = flat
            .iter()
            .map(|&m| match m {
                0 => Ok(0),
                1 => Ok(1),
                other => Err(Error::Input(format!(
                    "attention_mask: values must be 0 or 1, found {other}"
                ))),
            })
            .collect::<Result<_>>()?;
        Ok(self)
    }

    /// Sets the token type (segment) ids, one row per sequence.
    pub fn with_token_type_ids(mut self, types: Vec<Vec<i64>>) -> Result<Self> {
        self.check_rows("token_type_ids", types.len())?;
        let flat = flatten("token_type_ids", &types, self.seq)?;
        self.token_type_ids = flat
            .iter()
            .map(|&t| {
                u32::try_from(t).map_err(|_| {
                    Error::Input(format!("token_type_ids: {t} is not a valid type id"))
                })
            })
            .collect::<Result<_>>()?;
        Ok(self)
    }

    fn check_rows(&self, name: &str, rows: usize) -> Result<()> {
        if rows != self.rows {
            return Err(Error::Input(format!(
                "{name}: {rows} rows for {} sequences of input_ids",
                self.rows
            )));
        }
        Ok(())
    }

    /// Checks ids, types and length against a model config; `past` cached tokens precede
    /// this batch.
    pub fn validate(&self, config: &BertConfig, past: usize) -> Result<()> {
        check_tokens(
            &self.input_ids,
            &self.token_type_ids,
            self.seq,
            config,
            past,
        )
    }

    /// Number of sequences (batch * choices for multiple choice).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Padded sequence length.
    pub fn seq(&self) -> usize {
        self.seq
    }

    /// Choices per example, for multiple-choice batches.
    pub fn choices(&self) -> Option<usize> {
        self.choices
    }

    /// Flat [rows * seq] token ids.
    pub fn input_ids(&self) -> &[u32] {
        &self.input_ids
    }

    /// Flat [rows * seq] token type ids.
    pub fn token_type_ids(&self) -> &[u32] {
        &self.token_type_ids
    }

    /// Flat [rows * seq] attention mask.
    pub fn attention_mask(&self) -> &[u8] {
        &self.attention_mask
    }

    /// Rows `start..end` as a batch of their own, with the same grouping into choices
    /// (the range must hold whole examples).
    pub(crate) fn rows_range(&self, start: usize, end: usize) -> Batch {
        let (a, b) = (start * self.seq, end * self.seq);
        Batch {
            rows: end - start,
            seq: self.seq,
            choices: self.choices,
            input_ids: self.input_ids[a..b].to_vec(),
            token_type_ids: self.token_type_ids[a..b].to_vec(),
            attention_mask: self.attention_mask[a..b].to_vec(),
            selected: self.selected.as_ref().map(|rows| {
                rows.iter()
                    .filter(|&&r| (a..b).contains(&r))
                    .map(|r| r - a)
                    .collect()
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_shapes_and_values() {
        assert!(Batch::new(vec![]).is_err());
        assert!(Batch::new(vec![vec![]]).is_err());
        assert!(Batch::new(vec![vec![1, 2], vec![3]]).is_err());
        assert!(Batch::new(vec![vec![-1]]).is_err());
        let b = Batch::new(vec![vec![1, 2]]).unwrap();
        assert!(b.clone().with_attention_mask(vec![vec![1]]).is_err());
        assert!(b.clone().with_attention_mask(vec![vec![1, 2]]).is_err());
        assert!(b
            .clone()
            .with_attention_mask(vec![vec![1, 0], vec![1, 1]])
            .is_err());
        assert!(b.clone().with_token_type_ids(vec![vec![0, -3]]).is_err());
        let config =
            BertConfig::from_json(r#"{"vocab_size": 3, "max_position_embeddings": 2}"#).unwrap();
        assert!(b.validate(&config, 0).is_ok());
        assert!(b.validate(&config, 1).is_err());
        let b = Batch::new(vec![vec![3]]).unwrap();
        assert!(b.validate(&config, 0).is_err());
    }

    #[test]
    fn defaults_and_choices() {
        let b = Batch::multiple_choice(vec![vec![vec![1, 2], vec![3, 4]]]).unwrap();
        assert_eq!((b.rows(), b.seq(), b.choices()), (2, 2, Some(2)));
        assert_eq!(b.attention_mask(), &[1, 1, 1, 1]);
        assert_eq!(b.token_type_ids(), &[0, 0, 0, 0]);
    }
}
