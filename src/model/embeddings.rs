//! `BertEmbeddings`: word + position + token type, then LayerNorm.

use super::modules::LayerNorm;
use crate::config::{BertConfig, PositionEmbeddingType};
use crate::error::Result;
use crate::graph::{op, BufId, PlanBuilder};
use crate::weights::{VarBuilder, WeightId};

/// The embedding tables and their LayerNorm.
#[derive(Debug, Clone)]
pub struct BertEmbeddings {
    /// [vocab, hidden]; also the tied MLM decoder.
    pub word: WeightId,
    position: Option<WeightId>,
    token_type: WeightId,
    norm: LayerNorm,
    hidden: usize,
}

impl BertEmbeddings {
    /// Loads `word_embeddings`, `position_embeddings` (absolute positions only; relative
    /// models never read it, as transformers), `token_type_embeddings` and `LayerNorm`.
    pub fn load(vb: &VarBuilder, c: &BertConfig) -> Result<Self> {
        let h = c.hidden_size;
        let position = match c.position_type()? {
            PositionEmbeddingType::Absolute => Some(
                vb.pp("position_embeddings")
                    .get("weight", &[c.max_position_embeddings, h])?,
            ),
            _ => None,
        };
        Ok(BertEmbeddings {
            word: vb.pp("word_embeddings").get("weight", &[c.vocab_size, h])?,
            position,
            token_type: vb
                .pp("token_type_embeddings")
                .get("weight", &[c.type_vocab_size, h])?,
            norm: LayerNorm::load(&vb.pp("LayerNorm"), h, c.layer_norm_eps)?,
            hidden: h,
        })
    }

    /// Appends the embedding op writing [tokens, hidden] into `out`.
    pub fn lower_into(&self, g: &mut PlanBuilder, out: BufId) {
        debug_assert!(self.hidden == self.norm.width);
        g.op(op::Embeddings {
            word: self.word,
            position: self.position,
            token_type: self.token_type,
            gamma: self.norm.gamma,
            beta: self.norm.beta,
            eps: self.norm.eps,
            hidden: self.hidden,
            out,
        });
    }
}
