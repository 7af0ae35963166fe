//! `#[repr(C)]` mirrors of the kernels' argument structs (kernels/*.cu), field for field.
//! Storage pointers are untyped: the entry point's suffix says f32 or f16. The host
//! runtime rejects a struct whose size differs from the C++ one.

use std::ffi::c_void;

/// `HeadLayout` (common.cuh): where row i of head h of sequence b lives in Q, K and V.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct HeadLayout {
    pub cu_seqlens: *const i32,
    pub heads: i32,
    pub head_dim: i32,
    pub max_len: i32,
    pub total_tokens: i32,
    /// 1: packed [heads, tokens, head_dim]; 0: padded [batch, heads, max_len, head_dim].
    pub packed: i32,
}

/// `EmbeddingsArgs` (embeddings.cu).
#[repr(C)]
pub struct EmbeddingsArgs {
    pub ids: *const i32,
    pub type_ids: *const i32,
    pub positions: *const i32,
    pub word: *const c_void,
    pub position: *const c_void,
    pub token_type: *const c_void,
    pub gamma: *const c_void,
    pub beta: *const c_void,
    pub out: *mut c_void,
    pub tokens: i32,
    pub hidden: i32,
    pub eps: f32,
}

/// `LayerNormArgs` (layernorm.cu).
#[repr(C)]
pub struct LayerNormArgs {
    pub x: *const c_void,
    pub bias: *const c_void,
    pub residual: *const c_void,
    pub gamma: *const c_void,
    pub beta: *const c_void,
    pub out: *mut c_void,
    pub rows: i32,
    pub width: i32,
    pub act: i32,
    pub eps: f32,
}

/// `BiasActArgs` (bias_act.cu).
#[repr(C)]
pub struct BiasActArgs {
    pub x: *const c_void,
    pub bias: *const c_void,
    pub out: *mut c_void,
    pub rows: i32,
    pub n: i32,
    pub act: i32,
}

/// `QkvSplitArgs` (qkv.cu).
#[repr(C)]
pub struct QkvSplitArgs {
    pub qkv: *const c_void,
    pub bias: *const c_void,
    pub q: *mut c_void,
    pub k: *mut c_void,
    pub v: *mut c_void,
    pub layout: HeadLayout,
    pub kv_layout: HeadLayout,
    pub kv_offset: i32,
}

/// `AttentionArgs` (attention.cu).
#[repr(C)]
pub struct AttentionArgs {
    pub q: *const c_void,
    pub k: *const c_void,
    pub v: *const c_void,
    pub layout: HeadLayout,
    pub rel_table: *const c_void,
    pub out: *mut c_void,
    pub probs: *mut c_void,
    pub causal: i32,
    pub rel_kind: i32,
    pub max_positions: i32,
    pub scale: f32,
    pub kv_layout: HeadLayout,
    pub key_mask: *const u8,
    pub mask_stride: i32,
    pub past: i32,
}

/// `GatherClsArgs` (pooler.cu).
#[repr(C)]
pub struct GatherClsArgs {
    pub x: *const c_void,
    pub cu_seqlens: *const i32,
    pub bias: *const c_void,
    pub out: *mut c_void,
    pub batch: i32,
    pub width: i32,
    pub act: i32,
}

/// `QaSplitArgs` (heads.cu).
#[repr(C)]
pub struct QaSplitArgs {
    pub logits: *const c_void,
    pub bias: *const c_void,
    pub cu_seqlens: *const i32,
    pub start: *mut c_void,
    pub end: *mut c_void,
    pub max_len: i32,
    pub fill: f32,
}

/// `LabelProbsArgs` (heads.cu).
#[repr(C)]
pub struct LabelProbsArgs {
    pub x: *const c_void,
    pub bias: *const c_void,
    pub out: *mut f32,
    pub rows: i32,
    pub labels: i32,
    pub mode: i32,
}
