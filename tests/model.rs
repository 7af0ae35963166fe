//! Properties of the engine beyond the goldens: padding invariance, key/value-cache
//! decoding equal to full recompute, concurrent use, and clear load errors.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bertrt::{Batch, Device, Error, ForwardOptions, Head, Model};
use common::{fixtures_dir, max_diff, Reference};

fn load(name: &str) -> Model {
    Model::load(&fixtures_dir().join(name), None, Device::Cpu).unwrap()
}

/// Row 1 of case c0 is right-padded; alone and unpadded it must give the same values at
/// every kept position, for token-level and pooled heads.
#[test]
fn right_padding_does_not_change_kept_positions() {
    for (fixture, output) in [
        ("bert_base_tiny", "last_hidden_state"),
        ("bert_base_tiny", "pooler_output"),
        ("token_cls", "logits"),
        ("qa", "start_logits"),
        ("seq_cls_single", "logits"),
        ("rel_key_query", "last_hidden_state"),
        ("lm_decoder", "logits"),
    ] {
        let dir = fixtures_dir().join(fixture);
        let reference = Reference::load(&dir);
        let model = load(fixture);
        let batch = reference.batch("c0");
        let ids = reference.tensors["c0.input_ids"].rows_i64();
        let mask = reference.tensors["c0.attention_mask"].rows_i64();
        let types = reference.tensors["c0.token_type_ids"].rows_i64();
        let kept = mask[1].iter().filter(|&&m| m == 1).count();
        assert!(kept < batch.seq(), "{fixture}: row 1 should be padded");
        let alone = Batch::new(vec![ids[1][..kept].to_vec()])
            .unwrap()
            .with_token_type_ids(vec![types[1][..kept].to_vec()])
            .unwrap();
        let padded = model.forward(&batch, ForwardOptions::default()).unwrap();
        let single = model.forward(&alone, ForwardOptions::default()).unwrap();
        let (p, s) = (padded.get(output).unwrap(), single.get(output).unwrap());
        // Row 1 of the padded output, first `kept` positions (or the pooled row).
        let per_row = p.len() / batch.rows();
        let row = &p.data()[per_row..2 * per_row];
        let width = s.len() / kept.max(1);
        let got = match p.shape().len() {
            2 if output != "start_logits" => row,
            _ => &row[..kept * width],
        };
        let d = max_diff(got, s.data());
        assert!(
            d <= 1e-5,
            "{fixture}.{output}: padded vs alone differ by {d}"
        );
    }
}

/// Decoding with the key/value cache gives the logits of a full forward over the prefix.
#[test]
fn kv_cache_decoding_equals_full_recompute() {
    let model = load("lm_decoder");
    let reference = Reference::load(&fixtures_dir().join("lm_decoder"));
    let ids = reference.tensors["c4.input_ids"].rows_i64();
    let full = model
        .forward(&Batch::new(ids.clone()).unwrap(), ForwardOptions::default())
        .unwrap();
    let full = full.get("logits").unwrap();
    let vocab = model.config().vocab_size;
    let mut cache = model.new_cache(1).unwrap();
    // A 3-token prompt, then one token at a time.
    let mut start = 0;
    for step in [3, 1, 1, 1] {
        let chunk = Batch::new(vec![ids[0][start..start + step].to_vec()]).unwrap();
        let out = model
            .forward_cached(&chunk, &mut cache, ForwardOptions::default())
            .unwrap();
        let logits = out.get("logits").unwrap();
        assert_eq!(logits.shape(), &[1, step, vocab]);
        let want = &full.data()[start * vocab..(start + step) * vocab];
        let d = max_diff(logits.data(), want);
        assert!(d <= 1e-5, "step at {start}: cached vs full differ by {d}");
        start += step;
    }
    assert_eq!(cache.len(), 6);
}

/// A batch of two prompts decoded together, the second right-padded in the prompt.
#[test]
fn kv_cache_with_batch_and_padding() {
    let model = load("lm_decoder");
    let a = [5, 17, 42, 8, 9];
    let b = [7, 3, 0, 11, 12];
    let mut cache = model.new_cache(2).unwrap();
    let prompt = Batch::new(vec![a[..3].to_vec(), b[..3].to_vec()])
        .unwrap()
        .with_attention_mask(vec![vec![1, 1, 1], vec![1, 1, 0]])
        .unwrap();
    model
        .forward_cached(&prompt, &mut cache, ForwardOptions::default())
        .unwrap();
    let step = Batch::new(vec![a[3..4].to_vec(), b[3..4].to_vec()]).unwrap();
    let out = model
        .forward_cached(&step, &mut cache, ForwardOptions::default())
        .unwrap();
    let vocab = model.config().vocab_size;
    // Full recompute of the same 4 tokens with the same mask.
    let full = model
        .forward(
            &Batch::new(vec![a[..4].to_vec(), b[..4].to_vec()])
                .unwrap()
                .with_attention_mask(vec![vec![1; 4], vec![1, 1, 0, 1]])
                .unwrap(),
            ForwardOptions::default(),
        )
        .unwrap();
    let full = full.get("logits").unwrap().data();
    let cached = out.get("logits").unwrap().data();
    for row in 0..2 {
        let want = &full[(row * 4 + 3) * vocab..(row * 4 + 4) * vocab];
        let d = max_diff(&cached[row * vocab..(row + 1) * vocab], want);
        assert!(d <= 1e-5, "row {row}: {d}");
    }
}

#[test]
fn kv_cache_errors() {
    let encoder = load("bert_base_tiny");
    assert!(matches!(encoder.new_cache(1), Err(Error::Unsupported(_))));
    let model = load("lm_decoder");
    let mut cache = model.new_cache(1).unwrap();
    let max = model.config().max_position_embeddings;
    let long = Batch::new(vec![vec![1; max]]).unwrap();
    model
        .forward_cached(&long, &mut cache, ForwardOptions::default())
        .unwrap();
    let one = Batch::new(vec![vec![1]]).unwrap();
    let err = model
        .forward_cached(&one, &mut cache, ForwardOptions::default())
        .unwrap_err();
    assert!(err.to_string().contains("max_position_embeddings"), "{err}");
    let two = Batch::new(vec![vec![1], vec![2]]).unwrap();
    assert!(model
        .forward_cached(&two, &mut cache, ForwardOptions::default())
        .is_err());
}

#[test]
fn model_is_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Model>();
    let model = Arc::new(load("seq_cls_single"));
    let batch = Batch::new(vec![vec![2, 9, 31, 4]]).unwrap();
    let want = model.forward(&batch, ForwardOptions::default()).unwrap();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (model, batch) = (Arc::clone(&model), batch.clone());
            std::thread::spawn(move || model.forward(&batch, ForwardOptions::default()).unwrap())
        })
        .collect();
    for h in handles {
        let got = h.join().unwrap();
        assert_eq!(got.get("logits"), want.get("logits"));
    }
}

#[test]
fn input_errors_are_reported() {
    let model = load("bert_base_tiny");
    let vocab = model.config().vocab_size as i64;
    let opts = ForwardOptions::default();
    let too_big = Batch::new(vec![vec![1, vocab]]).unwrap();
    assert!(model
        .forward(&too_big, opts)
        .unwrap_err()
        .to_string()
        .contains("vocab_size"));
    let bad_type = Batch::new(vec![vec![1, 2]])
        .unwrap()
        .with_token_type_ids(vec![vec![0, 2]])
        .unwrap();
    assert!(model.forward(&bad_type, opts).is_err());
    let choices = Batch::multiple_choice(vec![vec![vec![1, 2]]]).unwrap();
    assert!(model.forward(&choices, opts).is_err());
    let mc = load("multiple_choice");
    assert!(mc
        .forward(&Batch::new(vec![vec![1]]).unwrap(), opts)
        .is_err());
}

/// A scratch copy of a fixture that a test may damage.
struct Scratch(PathBuf);

impl Scratch {
    fn of(fixture: &str, tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("bertrt-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(fixtures_dir().join(fixture)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
        }
        Scratch(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn edit_config(&self, f: impl FnOnce(&mut serde_json::Value)) {
        let path = self.0.join("config.json");
        let mut json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        f(&mut json);
        std::fs::write(path, json.to_string()).unwrap();
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn load_errors_name_what_is_wrong() {
    // A shape that disagrees with the config names the tensor and both shapes.
    let s = Scratch::of("bert_base_tiny", "shape");
    s.edit_config(|c| c["intermediate_size"] = 40.into());
    let err = Model::load(s.path(), None, Device::Cpu).err().unwrap();
    match &err {
        Error::TensorShape {
            name,
            expected,
            found,
        } => {
            assert!(name.contains("intermediate.dense.weight"), "{name}");
            assert_eq!(
                (expected.as_slice(), found.as_slice()),
                (&[40, 32][..], &[37, 32][..])
            );
        }
        other => panic!("expected a shape error, got {other}"),
    }

    // A head whose weights are absent names the missing tensor.
    let err = Model::load(
        &fixtures_dir().join("bert_base_tiny"),
        Some(Head::MaskedLm),
        Device::Cpu,
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("cls.predictions"), "{err}");

    // A pytorch_model.bin that is no torch.save archive: refused, naming the file.
    let s = Scratch::of("bert_base_tiny", "bin");
    std::fs::rename(
        s.path().join("model.safetensors"),
        s.path().join("pytorch_model.bin"),
    )
    .unwrap();
    let err = Model::load(s.path(), None, Device::Cpu).err().unwrap();
    assert!(
        err.to_string().contains("pytorch_model.bin") && err.to_string().contains("not a zip"),
        "{err}"
    );

    // Unknown activation: a config error naming the field.
    let s = Scratch::of("bert_base_tiny", "act");
    s.edit_config(|c| c["hidden_act"] = "gelu_99".into());
    let err = Model::load(s.path(), None, Device::Cpu).err().unwrap();
    assert!(
        matches!(&err, Error::Config { field, .. } if field == "hidden_act"),
        "{err}"
    );

    // A truncated weights file is refused, not mapped past its end.
    let s = Scratch::of("bert_base_tiny", "trunc");
    let path = s.path().join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    assert!(Model::load(s.path(), None, Device::Cpu).is_err());

    // No folder at all.
    assert!(Model::load(Path::new("/nonexistent/model"), None, Device::Cpu).is_err());

    // CUDA is not available in this build.
    let err = Model::load(
        &fixtures_dir().join("bert_base_tiny"),
        None,
        Device::Cuda(0),
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("--device cpu"), "{err}");
}

/// Reused buffers (same shape, run after run) give exactly what a fresh model gives,
/// whatever ran before: every op writes all of its output.
#[test]
fn reused_buffers_do_not_leak_between_runs() {
    let reference = Reference::load(&fixtures_dir().join("qa"));
    let opts = ForwardOptions {
        output_hidden_states: true,
        output_attentions: true,
        ..Default::default()
    };
    let first = reference.batch("c0");
    // Same shape, other ids, mask on the other row.
    let second = Batch::new(vec![vec![7; first.seq()], vec![9; first.seq()]])
        .unwrap()
        .with_attention_mask(vec![vec![1, 1, 0, 0, 0, 0, 0, 0, 0], vec![1; first.seq()]])
        .unwrap();
    let used = load("qa");
    used.forward(&first, opts).unwrap();
    let again = used.forward(&second, opts).unwrap();
    let fresh = load("qa").forward(&second, opts).unwrap();
    assert_eq!(again.tensors, fresh.tensors);
    assert_eq!(again.hidden_states, fresh.hidden_states);
    assert_eq!(again.attentions, fresh.attentions);
}

/// `reserve` on the CPU packs every linear weight of the plan in the precision the run
/// uses (int8 runs the FFN output projection in bf16), so the run itself packs nothing,
/// and its answers equal those of a backend that packed on first use.
#[test]
fn cpu_reserve_packs_what_the_run_uses() {
    use bertrt::backend::cpu::CpuBackend;
    use bertrt::backend::{Backend, Call, Dtype};
    use bertrt::graph::{Op, Shape};

    let model = load("qa");
    let batch = Reference::load(&fixtures_dir().join("qa")).batch("c0");
    let shape = Shape::new(batch.rows(), batch.seq());
    let opts = ForwardOptions::default();
    let plan = model.plan(shape, opts).unwrap();
    let planner = |shape| model.plan(shape, opts);
    let call = |backend: &CpuBackend| {
        backend.execute(Call {
            plan: &plan,
            planner: &planner,
            params: model.params(),
            batch: &batch,
            cache: None,
        })
    };
    let linears = plan
        .ops
        .iter()
        .filter(|op| matches!(op, Op::Linear(_)))
        .count();
    assert!(linears > 0);
    for dtype in [Dtype::F32, Dtype::Bf16, Dtype::Int8] {
        let reserved = CpuBackend::new(dtype);
        reserved.reserve(&plan, model.params()).unwrap();
        assert_eq!(reserved.packed_weights(), linears, "{dtype}");
        let got = call(&reserved).unwrap();
        assert_eq!(
            reserved.packed_weights(),
            linears,
            "{dtype}: the run packed again"
        );
        let lazy = CpuBackend::new(dtype);
        let want = call(&lazy).unwrap();
        assert_eq!(lazy.packed_weights(), linears, "{dtype}");
        assert_eq!(got, want, "{dtype}");
    }
}

/// A model on a CPU backend the test keeps a handle to.
fn load_on_cpu(name: &str) -> (Model, Arc<bertrt::backend::cpu::CpuBackend>) {
    let backend = Arc::new(bertrt::backend::cpu::CpuBackend::default());
    let dir = fixtures_dir().join(name);
    let model = Model::load_on(&dir, None, Box::new(Arc::clone(&backend))).unwrap();
    (model, backend)
}

/// Large batches run in throughput mode (each thread its own slice of the batch through
/// the whole network): every output of every row equals that row run alone, with the same
/// padding; multiple-choice examples come back whole. Run on a pool of 3 threads, so
/// throughput mode runs (it takes two examples per thread) whatever the machine.
#[test]
fn throughput_mode_equals_rows_run_alone() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    pool.install(throughput_checks);
}

fn throughput_checks() {
    let opts = ForwardOptions {
        output_hidden_states: true,
        output_attentions: true,
        ..Default::default()
    };
    let (model, backend) = load_on_cpu("bert_base_tiny");
    let ids: Vec<Vec<i64>> = (0..9)
        .map(|r| (0..7).map(|i| ((r * 13 + i * 7) % 90 + 1) as i64).collect())
        .collect();
    let mask: Vec<Vec<i64>> = (0..9)
        .map(|r| (0..7).map(|i| i64::from(i < 7 - r % 4)).collect())
        .collect();
    let batch = Batch::new(ids.clone())
        .and_then(|b| b.with_attention_mask(mask.clone()))
        .unwrap();
    let all = model.forward(&batch, opts).unwrap();
    assert_eq!(backend.throughput_calls(), 1, "9 rows on 3 threads");
    for r in 0..9 {
        let one = Batch::new(vec![ids[r].clone()])
            .and_then(|b| b.with_attention_mask(vec![mask[r].clone()]))
            .unwrap();
        let alone = model.forward(&one, opts).unwrap();
        let pairs = all
            .tensors
            .iter()
            .map(|(_, t)| t)
            .chain(&all.hidden_states)
            .chain(&all.attentions)
            .zip(
                alone
                    .tensors
                    .iter()
                    .map(|(_, t)| t)
                    .chain(&alone.hidden_states)
                    .chain(&alone.attentions),
            );
        for (whole, single) in pairs {
            let per_row = single.len();
            let row = &whole.data()[r * per_row..(r + 1) * per_row];
            assert!(max_diff(row, single.data()) < 1e-5, "row {r}");
        }
    }
    assert_eq!(backend.throughput_calls(), 1, "single rows run whole");
    // 7 questions x 4 choices = 28 rows: slices of whole questions.
    let (mc, backend) = load_on_cpu("multiple_choice");
    let question = |q: i64| (0..4).map(|c| vec![2, 5 + q, 9 + c, 3]).collect::<Vec<_>>();
    let seven = Batch::multiple_choice((0..7).map(question).collect()).unwrap();
    let logits = mc.forward(&seven, ForwardOptions::default()).unwrap();
    assert_eq!(backend.throughput_calls(), 1, "7 examples on 3 threads");
    let logits = logits.get("logits").unwrap();
    assert_eq!(logits.shape(), &[7, 4]);
    for q in 0..7 {
        let one = Batch::multiple_choice(vec![question(q as i64)]).unwrap();
        let alone = mc.forward(&one, ForwardOptions::default()).unwrap();
        let alone = alone.get("logits").unwrap();
        assert!(max_diff(&logits.data()[q * 4..q * 4 + 4], alone.data()) < 1e-5);
    }
}

/// One load serves every head the checkpoint's weights hold: a BertForPreTraining
/// checkpoint runs BertModel, BertForPreTraining, BertForMaskedLM and
/// BertForNextSentencePrediction from the same parameters (each stored once), each with
/// the outputs of a model loaded for that head alone; a head without weights is a clear
/// error.
#[test]
fn one_load_serves_every_head_its_weights_hold() {
    let dir = fixtures_dir().join("pretraining");
    let model = load("pretraining");
    assert_eq!(model.head(), Head::PreTraining);
    let mut heads = model.heads().to_vec();
    heads.sort_by_key(|h| h.short_name());
    let mut want = vec![
        Head::Bert,
        Head::PreTraining,
        Head::MaskedLm,
        Head::NextSentence,
    ];
    want.sort_by_key(|h| h.short_name());
    assert_eq!(heads, want);
    let mut names: Vec<&str> = model.params().iter().map(|(n, _)| n).collect();
    let stored = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), stored, "a tensor was stored twice");
    let batch = Reference::load(&dir).batch("c0");
    for &head in model.heads() {
        let alone = Model::load(&dir, Some(head), Device::Cpu).unwrap();
        assert_eq!(
            alone.params().num_parameters(),
            model.params().num_parameters()
        );
        let opts = ForwardOptions::head(head);
        let shared = model.forward(&batch, opts).unwrap();
        let single = alone.forward(&batch, ForwardOptions::default()).unwrap();
        assert_eq!(shared.tensors, single.tensors, "{head}");
        assert!(!shared.tensors.is_empty(), "{head}");
    }
    let err = model
        .forward(&batch, ForwardOptions::head(Head::QuestionAnswering))
        .unwrap_err();
    assert!(matches!(err, Error::Unsupported(_)), "{err:?}");
    assert!(
        err.to_string().contains("BertForQuestionAnswering")
            && err.to_string().contains("BertForMaskedLM"),
        "{err}"
    );
    // A checkpoint of one head has that head and BertModel (here with its pooler).
    let qa = load("qa");
    assert_eq!(qa.heads(), &[Head::QuestionAnswering, Head::Bert]);
}

/// Multiple choice declares its logits [examples, choices] in the plan itself.
#[test]
fn multiple_choice_plans_examples_by_choices() {
    use bertrt::graph::Shape;
    let model = load("multiple_choice");
    let plan = model
        .plan(Shape::new(6, 4).with_choices(3), ForwardOptions::default())
        .unwrap();
    let logits = plan.outputs.iter().find(|o| o.name == "logits").unwrap();
    assert_eq!(logits.shape, [2, 3]);
}

/// The masked-LM head at selected positions only (`Batch::with_selected`, what fill-mask
/// uses) gives the rows of the full logits at those positions, also when the CPU splits
/// the batch into throughput parts; and selection is checked.
#[test]
fn masked_lm_at_selected_positions_equals_the_full_logits() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pipelines/fill_mask");
    let model = Model::load(&dir, Some(Head::MaskedLm), Device::Cpu).unwrap();
    let vocab = model.config().vocab_size;
    let rows: Vec<Vec<i64>> = (0..12)
        .map(|r| (0..9).map(|i| 2 + ((r * 7 + i * 3) % 150) as i64).collect())
        .collect();
    let batch = Batch::new(rows).unwrap();
    let full = model.forward(&batch, ForwardOptions::default()).unwrap();
    let full = full.get("logits").unwrap();
    let at = [(0, 0), (0, 4), (3, 8), (5, 1), (6, 2), (11, 0), (11, 8)];
    let sel = model
        .forward(
            &batch.clone().with_selected(&at).unwrap(),
            ForwardOptions::default(),
        )
        .unwrap();
    let sel = sel.get("logits").unwrap();
    assert_eq!(sel.shape(), &[at.len(), vocab]);
    for (i, &(r, p)) in at.iter().enumerate() {
        let want = &full.data()[(r * 9 + p) * vocab..][..vocab];
        let got = &sel.data()[i * vocab..][..vocab];
        let d = want
            .iter()
            .zip(got)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(d <= 1e-5, "({r}, {p}): max |d| = {d}");
    }
    assert!(batch.clone().with_selected(&[(0, 9)]).is_err());
    assert!(batch.clone().with_selected(&[(1, 0), (0, 1)]).is_err());
    assert!(batch.with_selected(&[(12, 0)]).is_err());
}
