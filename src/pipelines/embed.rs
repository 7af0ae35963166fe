//! embed: sentence embeddings with sentence-transformers pooling and normalisation, or the
//! raw token states.

use serde::Deserialize;
use serde_json::{json, Value};

use super::{f32_list, row, Answer, Pipeline};
use crate::error::{Error, Result};
use crate::model::Outputs;
use crate::tokenizer::Encoding;
use crate::weights::ModelSource;

/// How token states become one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// The [CLS] token's state.
    Cls,
    /// Mean over attended tokens ([CLS] and [SEP] included).
    Mean,
    /// Element-wise max over attended tokens.
    Max,
    /// Sum over attended tokens divided by sqrt(count).
    MeanSqrtLen,
    /// No pooling: every token's state.
    None,
}

/// embed's options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbedOptions {
    /// Pooling (default from the sentence-transformers files, else mean).
    pub pooling: Option<Pooling>,
    /// L2-normalise (default: whether modules.json has a Normalize module).
    pub normalize: Option<bool>,
    /// Keep the first `dimensions` values of the pooled embedding (Matryoshka models),
    /// before normalising.
    pub dimensions: Option<usize>,
}

/// What a sentence-transformers folder says about pooling.
#[derive(Debug, Clone, Default)]
pub(super) struct EmbedConfig {
    pooling: Option<Pooling>,
    normalize: bool,
    pub(super) max_seq_length: Option<usize>,
    /// sentence-transformers' prompts (name -> text put before the input) and the one
    /// used when none is named.
    pub(super) prompts: std::collections::HashMap<String, String>,
    pub(super) default_prompt_name: Option<String>,
}

#[derive(Deserialize)]
struct PoolingFile {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
}

#[derive(Deserialize)]
struct Module {
    #[serde(default)]
    path: String,
    #[serde(rename = "type", default)]
    kind: String,
}

impl EmbedConfig {
    /// Reads modules.json, the Pooling module's config and sentence_bert_config.json.
    pub(super) fn from_source(source: &ModelSource) -> Result<Self> {
        let modules: Vec<Module> = source.read_json("modules.json")?.unwrap_or_default();
        let pooling_dir = modules
            .iter()
            .find(|m| m.kind.ends_with(".Pooling"))
            .map_or("1_Pooling", |m| m.path.as_str());
        let pooling = source
            .read_json::<PoolingFile>(&format!("{pooling_dir}/config.json"))?
            .map(|f| {
                if f.pooling_mode_cls_token {
                    Pooling::Cls
                } else if f.pooling_mode_max_tokens {
                    Pooling::Max
                } else if f.pooling_mode_mean_sqrt_len_tokens {
                    Pooling::MeanSqrtLen
                } else if f.pooling_mode_mean_tokens {
                    Pooling::Mean
                } else {
                    Pooling::Cls
                }
            });
        #[derive(Deserialize)]
        struct StConfig {
            max_seq_length: Option<usize>,
        }
        let st: Option<StConfig> = source.read_json("sentence_bert_config.json")?;
        #[derive(Deserialize)]
        struct Prompts {
            #[serde(default)]
            prompts: std::collections::HashMap<String, String>,
            default_prompt_name: Option<String>,
        }
        let prompts: Option<Prompts> = source.read_json("config_sentence_transformers.json")?;
        let (prompts, default_prompt_name) =
            prompts.map_or_else(Default::default, |p| (p.prompts, p.default_prompt_name));
        Ok(EmbedConfig {
            pooling,
            normalize: modules.iter().any(|m| m.kind.ends_with(".Normalize")),
            max_seq_length: st.and_then(|s| s.max_seq_length),
            prompts,
            default_prompt_name,
        })
    }
}

/// Pools [len, hidden] states of one sequence (all tokens attended).
pub fn pool(states: &[f32], hidden: usize, pooling: Pooling) -> Vec<f64> {
    let len = states.len() / hidden;
    let rows = states.chunks(hidden);
    match pooling {
        Pooling::Cls | Pooling::None => states[..hidden].iter().map(|&v| v as f64).collect(),
        Pooling::Max => rows.fold(vec![f64::NEG_INFINITY; hidden], |mut acc, r| {
            for (a, &v) in acc.iter_mut().zip(r) {
                *a = a.max(v as f64);
            }
            acc
        }),
        Pooling::Mean | Pooling::MeanSqrtLen => {
            let mut sum = vec![0.0f64; hidden];
            for r in rows {
                for (a, &v) in sum.iter_mut().zip(r) {
                    *a += v as f64;
                }
            }
            let div = match pooling {
                Pooling::Mean => len as f64,
                _ => (len as f64).sqrt(),
            };
            sum.into_iter().map(|v| v / div).collect()
        }
    }
}

/// x / max(||x||, 1e-12), as torch.nn.functional.normalize.
pub fn l2_normalize(v: &mut [f64]) {
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= norm);
}

/// The embedding (or token states) of row `r`, as JSON text: `{"embedding": [...]}`, each
/// f32 in its shortest form (the same text `f32_list` gives, without a tree of values).
pub(super) fn finish(
    p: &Pipeline,
    o: &EmbedOptions,
    out: &Outputs,
    r: usize,
    enc: &Encoding,
) -> Result<Answer> {
    let files = p.text.embed();
    let pooling = o.pooling.or(files.pooling).unwrap_or(Pooling::Mean);
    let normalize = o.normalize.unwrap_or(files.normalize);
    let hidden = p.config().hidden_size;
    // Padding is at the end: the first enc.len() rows are this input's tokens.
    let states = &row(out, "last_hidden_state", r)?[..enc.len() * hidden];
    if pooling == Pooling::None {
        let rows: Vec<Value> = states.chunks(hidden).map(f32_list).collect();
        return Ok(Answer::new(json!({ "last_hidden_state": rows })).with_numbers(states.to_vec()));
    }
    let mut v = pool(states, hidden, pooling);
    if let Some(d) = o.dimensions {
        if d == 0 || d > v.len() {
            return Err(Error::Input(format!(
                "dimensions {d} must be between 1 and the embedding's {}",
                v.len()
            )));
        }
        v.truncate(d);
    }
    if normalize {
        l2_normalize(&mut v);
    }
    let numbers: Vec<f32> = v.into_iter().map(|x| x as f32).collect();
    // NaN or infinity would not be JSON: null, as f32_list writes them.
    let json: Vec<Option<f32>> = numbers
        .iter()
        .map(|&x| Some(x).filter(|x| x.is_finite()))
        .collect();
    let list = serde_json::to_string(&json).map_err(|e| Error::Internal(e.to_string()))?;
    Ok(Answer::from_json(format!("{{\"embedding\":{list}}}"))?.with_numbers(numbers))
}

/// The SPLADE embedding of row `r`: over the input's tokens, the largest
/// log(1 + relu(logit)) of each vocabulary entry; only the entries above zero, by index.
pub(super) fn finish_sparse(
    p: &Pipeline,
    out: &Outputs,
    r: usize,
    enc: &Encoding,
) -> Result<Value> {
    let vocab = p.config().vocab_size;
    let logits = &row(out, "logits", r)?[..enc.len() * vocab];
    let mut best = vec![0.0f32; vocab];
    for token in logits.chunks(vocab) {
        for (b, &x) in best.iter_mut().zip(token) {
            *b = b.max(x.max(0.0).ln_1p());
        }
    }
    let sparse: Vec<Value> = best
        .iter()
        .enumerate()
        .filter(|(_, &v)| v > 0.0)
        .map(|(index, &v)| json!({"index": index, "value": super::f32_json(v)}))
        .collect();
    Ok(json!({ "sparse": sparse }))
}
