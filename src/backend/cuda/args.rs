//! `#[repr(C)]` mirrors of the kernels' argument structs (kernels/*.cu), field for field.
//! Pointers are device addresses ([`DevPtr`], 0 for null; host addresses under the
//! kernel harness' emulation) and untyped: the entry point's suffix says f32 or f16. The
//! harness' host runtime rejects a struct whose size differs from the C++ one.

#![allow(missing_docs)] // field for field as in the .cu files, documented there

use super::gpu::DevPtr;

/// `HeadLayout` (common.cuh): where row i of head h of sequence b lives in Q, K and V.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct HeadLayout {
    pub cu_seqlens: DevPtr,
    pub heads: i32,
    pub head_dim: i32,
    pub max_len: i32,
    pub total_tokens: i32,
    /// 1: packed [heads, tokens, head_dim]; 0: padded [batch, heads, max_len, head_dim].
    pub packed: i32,
}

/// `EmbeddingsArgs` (embeddings.cu).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct EmbeddingsArgs {
    pub ids: DevPtr,
    pub type_ids: DevPtr,
    pub positions: DevPtr,
    pub word: DevPtr,
    pub position: DevPtr,
    pub token_type: DevPtr,
    pub gamma: DevPtr,
    pub beta: DevPtr,
    pub out: DevPtr,
    pub tokens: i32,
    pub hidden: i32,
    pub eps: f32,
}

/// `LayerNormArgs` (layernorm.cu).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct LayerNormArgs {
    pub x: DevPtr,
    pub bias: DevPtr,
    pub residual: DevPtr,
    pub gamma: DevPtr,
    pub beta: DevPtr,
    pub out: DevPtr,
    pub rows: i32,
    pub width: i32,
    pub act: i32,
    pub eps: f32,
}

/// `BiasActArgs` (bias_act.cu).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct BiasActArgs {
    pub x: DevPtr,
    pub bias: DevPtr,
    pub out: DevPtr,
    pub rows: i32,
    pub n: i32,
    pub act: i32,
}

/// `QkvSplitArgs` (qkv.cu).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct QkvSplitArgs {
    pub qkv: DevPtr,
    pub bias: DevPtr,
    pub q: DevPtr,
    pub k: DevPtr,
    pub v: DevPtr,
    pub layout: HeadLayout,
    pub kv_layout: HeadLayout,
    pub kv_offset: i32,
}

/// `AttentionArgs` (attention.cu).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct AttentionArgs {
    pub q: DevPtr,
    pub k: DevPtr,
    pub v: DevPtr,
    pub layout: HeadLayout,
    pub rel_table: DevPtr,
    pub out: DevPtr,
    pub probs: DevPtr,
    pub causal: i32,
    pub rel_kind: i32,
    pub max_positions: i32,
    pub scale: f32,
    pub kv_layout: HeadLayout,
    pub key_mask: DevPtr,
    pub mask_stride: i32,
    pub past: i32,
}

/// `GatherClsArgs` (pooler.cu).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct GatherClsArgs {
    pub x: DevPtr,
    pub cu_seqlens: DevPtr,
    pub out: DevPtr,
    pub batch: i32,
    pub width: i32,
}
