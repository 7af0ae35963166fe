//! The CPU's low-precision linears (`--dtype bf16` and `--dtype int8`) end to end, against
//! the same float64 transformers references as the f32 goldens.
//!
//! Only the linears change precision, so the error is the accumulated rounding of their
//! operands through the layers; it is measured per output as the relative L2 error
//! ||got - want|| / ||want|| (elementwise bounds would be meaningless for quantized
//! math). The bounds (see the constants) sit above the measured errors with headroom for
//! other CPUs' summation orders, and far below what a broken kernel gives (a wrong scale
//! or a dropped k-block gives relative errors of order 1).
//!
//! all-MiniLM-L6-v2's sentence embeddings (mean of last_hidden_state over the attention
//! mask, as sentence-transformers pools) must keep cosine >= 0.999 to the float64
//! reference: the accuracy target of the low-precision paths.

mod common;

use std::path::Path;

use bertrt::{Device, Dtype, ForwardOptions, Model, Target};
use common::{fixtures_dir, RefTensor, Reference};

/// Relative L2 bound per output in bf16: operands keep 8 significant bits (relative
/// rounding 2^-8 = 3.9e-3 each), and errors of random sign over k terms largely cancel;
/// measured at most 6.2e-3 over the fixtures (a tiny model's pooler output).
const BF16_TOL: f64 = 1e-2;

/// Relative L2 bound per output in int8: 255 levels per activation row and 254 per weight
/// column (the tiny models' k of 32 to 64 is below the outlier-channel split); measured
/// at most 2.8e-2 over the fixtures (the same pooler output).
const INT8_TOL: f64 = 5e-2;

/// The accuracy target for all-MiniLM-L6-v2 sentence embeddings.
const MIN_COSINE: f64 = 0.999;

/// ||got - want|| / ||want||; with `floor`, ||want|| counts as at least sqrt(len) (an RMS
/// of 1), as the f32 goldens bound logits by 1e-4 * max(1, max |ref|): a head's few
/// logits of a tiny random model can all lie near 0.
fn rel_l2(got: &[f32], want: &[f64], floor: bool) -> f64 {
    let (mut d, mut w) = (0.0f64, 0.0f64);
    for (&g, &r) in got.iter().zip(want) {
        d += (f64::from(g) - r).powi(2);
        w += r * r;
    }
    // NaN anywhere fails (NaN compares false against the bound).
    if got.iter().any(|v| !v.is_finite()) {
        return f64::NAN;
    }
    if floor {
        w = w.max(want.len() as f64);
    }
    (d / w.max(1e-300)).sqrt()
}

/// Relative L2 error of every reference output of fixture folder `dir` run in `dtype`.
fn fixture_errors(dir: &Path, dtype: Dtype) -> Vec<(String, f64)> {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
    let name = name.unwrap_or_default();
    let reference = Reference::load(dir);
    let target = Target::new(Device::Cpu, Some(dtype));
    let model = Model::load(dir, None, target).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(model.dtype(), dtype);
    let mut errors = Vec::new();
    for case in &reference.cases {
        let opts = ForwardOptions {
            output_hidden_states: reference.flag(case, "output_hidden_states"),
            output_attentions: reference.flag(case, "output_attentions"),
            ..Default::default()
        };
        let out = model
            .forward(&reference.batch(case), opts)
            .unwrap_or_else(|e| panic!("{name}/{case}: {e}"));
        for output in reference.outputs(case) {
            let want: &RefTensor = &reference.tensors[&format!("{case}.{output}")];
            let got = if let Some(i) = output.strip_prefix("hidden_states.") {
                i.parse::<usize>()
                    .ok()
                    .and_then(|i| out.hidden_states.get(i))
            } else if let Some(i) = output.strip_prefix("attentions.") {
                i.parse::<usize>().ok().and_then(|i| out.attentions.get(i))
            } else {
                out.get(&output)
            };
            let got = got.unwrap_or_else(|| panic!("{name}/{case}: no {output}"));
            assert_eq!(got.shape(), want.shape.as_slice(), "{name}/{case}.{output}");
            errors.push((
                format!("{name}/{case}.{output}"),
                rel_l2(got.data(), &want.data, output.contains("logits")),
            ));
        }
    }
    errors
}

/// Every golden fixture in `dtype`: each output's relative L2 error within `tol`.
fn check_goldens(dtype: Dtype, tol: f64) {
    let mut dirs: Vec<_> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("config.json").is_file())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 20, "fixtures missing: {}", dirs.len());
    let all: Vec<_> = dirs.iter().flat_map(|d| fixture_errors(d, dtype)).collect();
    let worst = all
        .iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .expect("outputs");
    eprintln!(
        "{dtype}: {} outputs, worst relative L2 {:.3e} ({})",
        all.len(),
        worst.1,
        worst.0
    );
    // NaN counts as over the bound.
    let bad: Vec<_> = all.iter().filter(|(_, e)| e.is_nan() || *e > tol).collect();
    assert!(
        bad.is_empty(),
        "{dtype}: {} outputs over relative L2 {tol:e}: {bad:?}",
        bad.len()
    );
}

#[test]
fn goldens_in_bf16() {
    check_goldens(Dtype::Bf16, BF16_TOL);
}

#[test]
fn goldens_in_int8() {
    check_goldens(Dtype::Int8, INT8_TOL);
}

/// Mean of `hidden` [seq, width] over the rows whose mask is 1.
fn mean_pool(hidden: &[f64], mask: &[f64], width: usize) -> Vec<f64> {
    let mut sum = vec![0.0; width];
    let count = mask.iter().filter(|&&m| m > 0.0).count().max(1) as f64;
    for (row, &m) in hidden.chunks(width).zip(mask) {
        if m > 0.0 {
            sum.iter_mut().zip(row).for_each(|(s, v)| *s += v);
        }
    }
    sum.iter().map(|s| s / count).collect()
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

#[test]
fn minilm_embeddings_keep_cosine_in_bf16_and_int8() {
    let dir = bertrt::fetch::default_model().expect("fetching the default model");
    let reference = Reference::load(&fixtures_dir().join("minilm"));
    for dtype in [Dtype::F32, Dtype::Bf16, Dtype::Int8] {
        let model = Model::load(&dir, None, Target::new(Device::Cpu, Some(dtype))).unwrap();
        let mut cosines = Vec::new();
        for case in &reference.cases {
            let out = model
                .forward(&reference.batch(case), ForwardOptions::default())
                .unwrap();
            let got = out.get("last_hidden_state").expect("last_hidden_state");
            let want = &reference.tensors[&format!("{case}.last_hidden_state")];
            let mask = &reference.tensors[&format!("{case}.attention_mask")];
            let (seq, width) = (want.shape[1], want.shape[2]);
            let got: Vec<f64> = got.data().iter().map(|&v| f64::from(v)).collect();
            for (s, m) in mask.data.chunks(seq).enumerate() {
                let rows = s * seq * width..(s + 1) * seq * width;
                cosines.push(cosine(
                    &mean_pool(&got[rows.clone()], m, width),
                    &mean_pool(&want.data[rows], m, width),
                ));
            }
        }
        let worst = cosines.iter().copied().fold(1.0, f64::min);
        eprintln!("all-MiniLM-L6-v2 {dtype}: embedding cosines {cosines:.6?}");
        assert!(
            worst >= MIN_COSINE,
            "{dtype}: embedding cosine {worst} < {MIN_COSINE}: {cosines:?}"
        );
    }
}

#[test]
fn low_precision_dtypes_parse_and_are_cpu_only() {
    for (text, dtype) in [("bf16", Dtype::Bf16), ("int8", Dtype::Int8)] {
        let parsed: Dtype = text.parse().expect("known dtype");
        assert_eq!(parsed, dtype);
        assert_eq!(parsed.to_string(), text);
        let cpu = bertrt::backend::create(Target::new(Device::Cpu, Some(dtype))).expect("cpu");
        assert_eq!(cpu.dtype(), dtype);
        let err = bertrt::backend::create(Target::new(Device::Cuda(0), Some(dtype)))
            .err()
            .expect("CUDA refuses bf16 and int8");
        assert!(
            matches!(&err, bertrt::Error::Unsupported(m) if m.contains("only available on the CPU")),
            "{err}"
        );
    }
    assert!(bertrt::backend::create(Target::new(Device::Cpu, Some(Dtype::F16))).is_err());
}
