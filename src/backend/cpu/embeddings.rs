//! Embedding gather + sum + LayerNorm, one token per row.

use rayon::prelude::*;

use super::layernorm::normalize_row;

/// The embedding tables of one model, as slices.
pub struct EmbeddingTables<'a> {
    /// [vocab, hidden].
    pub word: &'a [f32],
    /// [max_positions, hidden], absent for relative position types.
    pub position: Option<&'a [f32]>,
    /// [type_vocab, hidden].
    pub token_type: &'a [f32],
    /// LayerNorm scale.
    pub gamma: &'a [f32],
    /// LayerNorm shift.
    pub beta: &'a [f32],
    /// LayerNorm epsilon.
    pub eps: f32,
}

/// out[t] = LayerNorm(word[ids[t]] + token_type[types[t]] + position[past + t % seq]).
/// Ids are validated by the caller (`Batch::validate`).
pub fn embeddings(
    t: &EmbeddingTables,
    ids: &[u32],
    types: &[u32],
    seq: usize,
    past: usize,
    out: &mut [f32],
) {
    let hidden = t.gamma.len();
    assert_eq!(ids.len(), types.len());
    assert_eq!(out.len(), ids.len() * hidden);
    out.par_chunks_mut(hidden)
        .enumerate()
        .for_each(|(tok, row)| {
            let w = ids[tok] as usize * hidden;
            let ty = types[tok] as usize * hidden;
            for (j, v) in row.iter_mut().enumerate() {
                *v = t.word[w + j] + t.token_type[ty + j];
            }
            if let Some(pos) = t.position {
                let p = (past + tok % seq) * hidden;
                for (v, e) in row.iter_mut().zip(&pos[p..p + hidden]) {
                    *v += e;
                }
            }
            normalize_row(row, t.gamma, t.beta, t.eps);
        });
}
