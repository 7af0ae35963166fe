//! Every head against Hugging Face transformers (float64 references committed under
//! tests/fixtures, made by tools/gen_fixtures.py). Tolerance: |d| <= 1e-4 for hidden
//! states, pooler outputs and attention probabilities; 1e-4 * max(1, max|ref|) for logits.
//! Every position is compared, padded ones included: the engine computes them as
//! transformers does.

mod common;

use std::collections::BTreeSet;

use bertrt::{Device, ForwardOptions, Head, Model};
use common::{compare, fixtures_dir, tolerance, Reference};

/// Runs every case of fixture `name` and compares every reference output.
fn check_fixture(name: &str) {
    let dir = fixtures_dir().join(name);
    let reference = Reference::load(&dir);
    let model = Model::load(&dir, None, Device::Cpu).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(model.head().class_name(), reference.head, "{name}: head");
    let mut failures = Vec::new();
    for case in &reference.cases {
        let opts = ForwardOptions {
            output_hidden_states: reference.flag(case, "output_hidden_states"),
            output_attentions: reference.flag(case, "output_attentions"),
            ..Default::default()
        };
        let out = model
            .forward(&reference.batch(case), opts)
            .unwrap_or_else(|e| panic!("{name}/{case}: {e}"));
        let expected = reference.outputs(case);
        let mut seen = 0;
        for output in &expected {
            let want = &reference.tensors[&format!("{case}.{output}")];
            let got = if let Some(i) = output.strip_prefix("hidden_states.") {
                out.hidden_states.get(i.parse::<usize>().unwrap())
            } else if let Some(i) = output.strip_prefix("attentions.") {
                out.attentions.get(i.parse::<usize>().unwrap())
            } else {
                out.get(output)
            };
            let Some(got) = got else {
                failures.push(format!("{name}/{case}: output {output} missing"));
                continue;
            };
            seen += 1;
            if let Some(msg) = compare(
                &format!("{name}/{case}.{output}"),
                got,
                want,
                tolerance(output, want),
            ) {
                failures.push(msg);
            }
        }
        let produced = out.tensors.len() + out.hidden_states.len() + out.attentions.len();
        if produced != expected.len() {
            failures.push(format!(
                "{name}/{case}: engine returned {produced} outputs, reference has {}",
                expected.len()
            ));
        }
        assert!(seen > 0, "{name}/{case}: nothing compared");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

macro_rules! golden {
    ($($name:ident),* $(,)?) => {
        $( #[test] fn $name() { check_fixture(stringify!($name)); } )*

        /// Every fixture folder has a test above (a new fixture cannot be skipped).
        #[test]
        fn every_fixture_is_tested() {
            let tested: BTreeSet<&str> = [$(stringify!($name)),*].into_iter().collect();
            let on_disk: BTreeSet<String> = std::fs::read_dir(fixtures_dir())
                .unwrap()
                .filter_map(|e| e.ok())
                .filter(|e| e.path().join("config.json").is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            for dir in &on_disk {
                assert!(tested.contains(dir.as_str()), "fixture {dir} has no golden test");
            }
            assert_eq!(tested.len(), on_disk.len());
        }
    };
}

golden!(
    bert_base_tiny,
    bert_odd,
    act_gelu_new,
    act_gelu_pytorch_tanh,
    act_gelu_fast,
    act_relu,
    act_silu,
    rel_key,
    rel_key_query,
    pretraining,
    lm_decoder,
    mlm_tied,
    mlm_untied,
    nsp,
    seq_cls_single,
    seq_cls_multi,
    seq_cls_regression,
    multiple_choice,
    token_cls,
    qa,
    fmt_prefixed,
    fmt_f16,
    fmt_bf16,
    fmt_sharded,
);

/// Every head appears among the fixtures.
#[test]
fn every_head_has_a_fixture() {
    let mut heads = BTreeSet::new();
    for entry in std::fs::read_dir(fixtures_dir()).unwrap().flatten() {
        if entry.path().join("config.json").is_file() {
            heads.insert(Reference::load(&entry.path()).head);
        }
    }
    for head in Head::all() {
        assert!(heads.contains(head.class_name()), "no fixture for {head}");
    }
}
