//! The list of entry points is closed: each one here has tests in this binary, and the
//! kernels may define no other.

/// Every BERTRT_ENTRY, with the test module that covers it.
pub const TESTED: &[(&str, &str)] = &[
    ("attention_f16", "attention"),
    ("attention_f16_hd32", "attention"),
    ("attention_f16_hd64", "attention"),
    ("attention_f32", "attention"),
    ("bias_act_f16", "bias_act"),
    ("bias_act_f32", "bias_act"),
    ("embeddings_f16", "embeddings"),
    ("embeddings_f32", "embeddings"),
    ("gather_cls_f16", "pooler"),
    ("gather_cls_f32", "pooler"),
    ("layernorm_f16", "layernorm"),
    ("layernorm_f32", "layernorm"),
    ("qkv_split_f16", "qkv"),
    ("qkv_split_f32", "qkv"),
];

#[test]
fn every_entry_point_is_tested() {
    // harness_* kernels test the emulation itself (harness.rs).
    let defined: Vec<String> = kernel_harness::kernels()
        .into_iter()
        .filter(|k| !k.starts_with("harness_"))
        .collect();
    let tested: Vec<String> = TESTED.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(
        defined, tested,
        "entry points defined by kernels/*.cu (left) differ from those with tests (right)"
    );
    let mut loaded: Vec<String> = bertrt::backend::cuda::ops::entry_points()
        .map(|(_, name)| name.to_string())
        .collect();
    loaded.sort();
    assert_eq!(
        defined, loaded,
        "entry points defined by kernels/*.cu (left) differ from those the driver loads (right)"
    );
}
