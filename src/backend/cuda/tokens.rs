//! How a batch's tokens are laid out on the device for one call.
//!
//! Packed (the common case: no cache, every sequence a run of real tokens followed by
//! padding): only real tokens are stored, sequence after sequence, and `cu_seqlens`
//! marks where each starts; padding is never computed. Padded (a key/value cache, left
//! padding or holes in the mask): every position is a row, every sequence is `seq` long
//! and the attention mask goes to the attention kernel as a key mask, so every position
//! gets what transformers computes for it.

use crate::batch::Batch;
use crate::graph::Shape;

/// Rows of a packed batch are rounded up to this, so that batches of nearby sizes share
/// one captured graph.
const ROW_BUCKET: usize = 16;

/// The token layout of one call.
#[derive(Debug, Clone)]
pub(super) struct Tokens {
    /// Padding-free layout.
    pub packed: bool,
    /// Sequences.
    pub batch: usize,
    /// Padded length of this call.
    pub seq: usize,
    /// Cached positions before this call.
    pub past: usize,
    /// Rows per sequence (real tokens when packed, `seq` when padded).
    pub lens: Vec<usize>,
    /// Rows holding tokens.
    pub total: usize,
    /// Rows the row-wise kernels and GEMMs run over (total rounded up to a bucket when
    /// packed; never more than batch * seq).
    pub rows: usize,
    /// [rows] token ids, token types and positions (zeros past `total`).
    pub ids: Vec<i32>,
    pub type_ids: Vec<i32>,
    pub positions: Vec<i32>,
    /// [batch + 1] first row of each sequence.
    pub cu_seqlens: Vec<i32>,
    /// [batch, past + seq] keys each sequence may attend to, when not all.
    pub key_mask: Option<Vec<u8>>,
}

/// Length of the run of ones a mask row starts with, if the rest is zeros.
fn prefix_len(row: &[u8]) -> Option<usize> {
    let len = row.iter().take_while(|&&m| m != 0).count();
    row[len..].iter().all(|&m| m == 0).then_some(len)
}

impl Tokens {
    /// The layout for `batch` at `shape`; `full_mask` is the [batch, past + seq] mask of a
    /// cached call (cached tokens, then this call's).
    pub fn new(batch: &Batch, shape: Shape, full_mask: Option<Vec<u8>>) -> Tokens {
        let (b, seq, past) = (shape.batch, shape.seq, shape.past);
        let mask = batch.attention_mask();
        let prefixes: Option<Vec<usize>> = match full_mask {
            Some(_) => None,
            None => mask
                .chunks(seq)
                .map(|row| prefix_len(row).filter(|&l| l > 0))
                .collect(),
        };
        let ids = batch.input_ids();
        let types = batch.token_type_ids();
        match prefixes {
            Some(lens) => {
                let total: usize = lens.iter().sum();
                let rows = total.next_multiple_of(ROW_BUCKET).min(b * seq);
                let mut t = Tokens::empty(true, shape, rows);
                for (s, &len) in lens.iter().enumerate() {
                    for i in 0..len {
                        t.push(ids[s * seq + i], types[s * seq + i], i);
                    }
                    t.cu_seqlens.push(t.cu_seqlens[s] + len as i32);
                }
                t.finish(lens);
                t
            }
            None => {
                let mut t = Tokens::empty(false, shape, b * seq);
                for s in 0..b {
                    for i in 0..seq {
                        t.push(ids[s * seq + i], types[s * seq + i], past + i);
                    }
                    t.cu_seqlens.push(((s + 1) * seq) as i32);
                }
                t.key_mask = match full_mask {
                    Some(m) => Some(m),
                    None if mask.iter().all(|&m| m != 0) => None,
                    None => Some(mask.to_vec()),
                };
                t.finish(vec![seq; b]);
                t
            }
        }
    }

    fn empty(packed: bool, shape: Shape, rows: usize) -> Tokens {
        Tokens {
            packed,
            batch: shape.batch,
            seq: shape.seq,
            past: shape.past,
            lens: Vec::new(),
            total: 0,
            rows,
            ids: Vec::with_capacity(rows),
            type_ids: Vec::with_capacity(rows),
            positions: Vec::with_capacity(rows),
            cu_seqlens: vec![0],
            key_mask: None,
        }
    }

    fn push(&mut self, id: u32, type_id: u32, position: usize) {
        // Ids and types were validated against the vocabulary, so they fit an i32.
        self.ids.push(id as i32);
        self.type_ids.push(type_id as i32);
        self.positions.push(position as i32);
    }

    fn finish(&mut self, lens: Vec<usize>) {
        self.total = self.ids.len();
        self.ids.resize(self.rows, 0);
        self.type_ids.resize(self.rows, 0);
        self.positions.resize(self.rows, 0);
        self.lens = lens;
    }

    /// Scatters packed token rows of `width` values into [batch, seq, width] with zeros
    /// at padding; padded rows come back as they are.
    pub fn unpack(&self, rows: &[f32], width: usize) -> Vec<f32> {
        if !self.packed {
            return rows[..self.batch * self.seq * width].to_vec();
        }
        let mut out = vec![0.0; self.batch * self.seq * width];
        for (s, &len) in self.lens.iter().enumerate() {
            let src = self.cu_seqlens[s] as usize * width;
            let dst = s * self.seq * width;
            out[dst..dst + len * width].copy_from_slice(&rows[src..src + len * width]);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(batch: usize, seq: usize) -> Shape {
        Shape::new(batch, seq)
    }

    #[test]
    fn right_padding_packs_real_tokens_only() {
        let b = Batch::new(vec![vec![5, 6, 7], vec![8, 9, 0]])
            .and_then(|b| b.with_attention_mask(vec![vec![1, 1, 1], vec![1, 1, 0]]))
            .unwrap();
        let t = Tokens::new(&b, shape(2, 3), None);
        assert!(t.packed);
        assert_eq!(t.cu_seqlens, vec![0, 3, 5]);
        assert_eq!((t.total, t.rows), (5, 6));
        assert_eq!(&t.ids[..5], &[5, 6, 7, 8, 9]);
        assert_eq!(&t.positions[..5], &[0, 1, 2, 0, 1]);
        let rows: Vec<f32> = (0..6).map(|v| v as f32).collect();
        assert_eq!(t.unpack(&rows, 1), vec![0., 1., 2., 3., 4., 0.]);
    }

    #[test]
    fn left_padding_and_empty_rows_stay_padded() {
        for mask in [vec![vec![0, 1], vec![1, 1]], vec![vec![0, 0], vec![1, 1]]] {
            let b = Batch::new(vec![vec![5, 6], vec![7, 8]])
                .and_then(|b| b.with_attention_mask(mask.clone()))
                .unwrap();
            let t = Tokens::new(&b, shape(2, 2), None);
            assert!(!t.packed);
            assert_eq!(t.cu_seqlens, vec![0, 2, 4]);
            assert_eq!(
                t.key_mask.as_deref(),
                Some(&mask.concat().iter().map(|&m| m as u8).collect::<Vec<_>>()[..])
            );
        }
    }
}
