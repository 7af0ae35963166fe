//! Every CUDA kernel, run on the CPU through the host harness, against the CPU backend op
//! it replaces and (for fused kernels) against the composition of its unfused parts.
//! A launch of a kernel that does not exist panics, and `every_entry_point_is_tested`
//! fails when an entry point has no test, so a missing kernel is never a pass.

mod kernels {
    pub mod attention;
    pub mod bias_act;
    pub mod coverage;
    pub mod embeddings;
    pub mod harness;
    pub mod layernorm;
    pub mod pooler;
    pub mod qkv;
    pub mod util;
}
