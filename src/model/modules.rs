//! The two building blocks every BERT module is made of: a dense layer and a LayerNorm,
//! each loaded by its Hugging Face names and lowered to one op.

use crate::config::Activation;
use crate::error::Result;
use crate::graph::{op, BufId, PlanBuilder};
use crate::weights::{VarBuilder, WeightId};

/// A linear layer `y = x wᵀ + b` with w stored [out, in] (`weight`, `bias`).
#[derive(Debug, Clone, Copy)]
pub struct Dense {
    /// [out, in] weight.
    pub w: WeightId,
    /// [out] bias.
    pub b: Option<WeightId>,
    /// Input width.
    pub k: usize,
    /// Output width.
    pub n: usize,
}

impl Dense {
    /// Loads `weight` [n, k] and `bias` [n].
    pub fn load(vb: &VarBuilder, k: usize, n: usize) -> Result<Self> {
        Ok(Dense {
            w: vb.get("weight", &[n, k])?,
            b: Some(vb.get("bias", &[n])?),
            k,
            n,
        })
    }

    /// Appends `out = act(x wᵀ + b)` for `rows` rows; returns the new buffer.
    pub fn lower(
        &self,
        g: &mut PlanBuilder,
        name: &str,
        x: BufId,
        rows: usize,
        act: Option<Activation>,
    ) -> BufId {
        let out = g.buf(name, rows * self.n);
        self.lower_into(g, x, rows, act, out);
        out
    }

    /// Appends `out = act(x wᵀ + b)` into an existing buffer.
    pub fn lower_into(
        &self,
        g: &mut PlanBuilder,
        x: BufId,
        rows: usize,
        act: Option<Activation>,
        out: BufId,
    ) {
        g.op(op::Linear {
            x,
            w: self.w,
            b: self.b,
            act,
            rows,
            k: self.k,
            n: self.n,
            out,
        });
    }
}

/// LayerNorm parameters (`LayerNorm.weight` / `LayerNorm.bias`, or legacy gamma / beta).
#[derive(Debug, Clone, Copy)]
pub struct LayerNorm {
    /// Scale.
    pub gamma: WeightId,
    /// Shift.
    pub beta: WeightId,
    /// Epsilon.
    pub eps: f32,
    /// Row width.
    pub width: usize,
}

impl LayerNorm {
    /// Loads `weight` and `bias` of width `width` under `vb`.
    pub fn load(vb: &VarBuilder, width: usize, eps: f64) -> Result<Self> {
        Ok(LayerNorm {
            gamma: vb.get("weight", &[width])?,
            beta: vb.get("bias", &[width])?,
            eps: eps as f32,
            width,
        })
    }

    /// Appends `out = LayerNorm(x + residual)` for `rows` rows into `out`.
    pub fn lower_into(
        &self,
        g: &mut PlanBuilder,
        x: BufId,
        residual: Option<BufId>,
        rows: usize,
        out: BufId,
    ) {
        g.op(op::LayerNorm {
            x,
            residual,
            gamma: self.gamma,
            beta: self.beta,
            eps: self.eps,
            rows,
            width: self.width,
            out,
        });
    }
}
