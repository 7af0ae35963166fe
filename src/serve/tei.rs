//! TEI's routes, with its request fields and response shapes: /embed, /embed_all,
//! /predict, /rerank, /similarity, /tokenize, /decode.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{ApiError, ErrorType};
use super::extract::{Body, Picked};
use super::state::{all_fields, all_ok, run, AppState, Input, Served};
use crate::pipelines::{
    EmbedOptions, Pooling, ScoreFunction, TaskOptions, TextClassificationOptions, TopK,
    TruncationDirection,
};

/// A route's answer: TEI's timing headers and the JSON.
pub type Reply = Result<Response, ApiError>;

/// JSON text made by joining answers' own text (no parse and re-serialisation of their
/// floats), with the timing headers.
pub(super) fn raw_reply(headers: HeaderMap, json: String) -> Reply {
    Ok((headers, [(header::CONTENT_TYPE, "application/json")], json).into_response())
}

/// `[a,b,...]` of JSON texts.
pub(super) fn raw_list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::from("[");
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(item);
    }
    out.push(']');
    out
}

/// One input: a text, or token ids.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum Item {
    /// A text.
    Text(String),
    /// Token ids, used as they are.
    Ids(Vec<u32>),
}

/// `inputs`: one input or a list.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum Inputs {
    /// One input.
    One(Item),
    /// A batch.
    Many(Vec<Item>),
}

impl Inputs {
    pub(super) fn into_vec(self) -> Vec<Item> {
        match self {
            // `[]` reads as no ids, and is an empty batch.
            Inputs::One(Item::Ids(ids)) if ids.is_empty() => Vec::new(),
            Inputs::One(i) => vec![i],
            Inputs::Many(v) => v,
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
pub(super) struct EmbedRequest {
    inputs: Inputs,
    truncate: Option<bool>,
    #[serde(default)]
    truncation_direction: TruncationDirection,
    prompt_name: Option<String>,
    #[serde(default = "yes")]
    normalize: bool,
    dimensions: Option<usize>,
}

/// The inputs as the pipelines take them, with the prompt put before each text.
pub(super) fn embed_inputs(
    model: &Served,
    items: Vec<Item>,
    prompt_name: Option<&str>,
) -> Result<Vec<Input>, ApiError> {
    let prompt = model.text.prompt(prompt_name)?.unwrap_or("");
    Ok(items
        .into_iter()
        .map(|item| match item {
            Item::Text(t) => Input::Line(json!({ "text": format!("{prompt}{t}") })),
            Item::Ids(ids) => Input::Ids(ids),
        })
        .collect())
}

/// Pooled embeddings, one list per input (`normalize` default true, `dimensions`
/// keeps the first values before normalising).
pub(super) async fn embedded(
    state: &AppState,
    model: &Served,
    items: Vec<Item>,
    options: EmbedOptions,
    (truncate, direction): (Option<bool>, TruncationDirection),
    prompt_name: Option<&str>,
    start: Instant,
) -> Result<(super::state::Timing, Vec<String>), ApiError> {
    state.check_batch(items.len())?;
    if options.dimensions == Some(0) {
        return Err(ApiError::new(
            ErrorType::Validation,
            "`dimensions` should be positive",
        ));
    }
    let inputs = embed_inputs(model, items, prompt_name)?;
    let pipeline = state.pipeline(
        model,
        TaskOptions::Embed(options),
        state.input_options(truncate, direction),
    )?;
    let ran = run(state, model, pipeline, inputs, start).await?;
    Ok((ran.timing, all_fields(ran.results, "embedding")?))
}

pub(super) async fn embed(
    State(state): State<Arc<AppState>>,
    Picked(model): Picked,
    Body(req): Body<EmbedRequest>,
) -> Reply {
    let start = Instant::now();
    let options = EmbedOptions {
        pooling: None,
        normalize: Some(req.normalize),
        dimensions: req.dimensions,
    };
    let (timing, lists) = embedded(
        &state,
        &model,
        req.inputs.into_vec(),
        options,
        (req.truncate, req.truncation_direction),
        req.prompt_name.as_deref(),
        start,
    )
    .await?;
    raw_reply(timing.headers(), raw_list(lists.iter().map(String::as_str)))
}

#[derive(Deserialize)]
pub(super) struct EmbedAllRequest {
    inputs: Inputs,
    truncate: Option<bool>,
    #[serde(default)]
    truncation_direction: TruncationDirection,
    prompt_name: Option<String>,
}

/// Every token's hidden state, per input.
pub(super) async fn embed_all(
    State(state): State<Arc<AppState>>,
    Picked(model): Picked,
    Body(req): Body<EmbedAllRequest>,
) -> Reply {
    let options = EmbedOptions {
        pooling: Some(Pooling::None),
        ..Default::default()
    };
    let task = TaskOptions::Embed(options);
    one_field(&state, &model, req, task, "last_hidden_state").await
}

/// SPLADE: per input, the vocabulary entries above zero of log(1 + relu(MLM logits))
/// max-pooled over the tokens, as `{index, value}` lists.
pub(super) async fn embed_sparse(
    State(state): State<Arc<AppState>>,
    Picked(model): Picked,
    Body(req): Body<EmbedAllRequest>,
) -> Reply {
    one_field(&state, &model, req, TaskOptions::SparseEmbed, "sparse").await
}

/// Runs `task` on the inputs and answers the list of each answer's `field`.
async fn one_field(
    state: &AppState,
    model: &Served,
    req: EmbedAllRequest,
    task: TaskOptions,
    field: &str,
) -> Reply {
    let start = Instant::now();
    let items = req.inputs.into_vec();
    state.check_batch(items.len())?;
    let inputs = embed_inputs(model, items, req.prompt_name.as_deref())?;
    let pipeline = state.pipeline(
        model,
        task,
        state.input_options(req.truncate, req.truncation_direction),
    )?;
    let ran = run(state, model, pipeline, inputs, start).await?;
    let lists = all_fields(ran.results, field)?;
    raw_reply(
        ran.timing.headers(),
        raw_list(lists.iter().map(String::as_str)),
    )
}

/// POST / (and /invocations), where the Hugging Face Inference API's clients send: a
/// `{"source_sentence", "sentences"}` input is /similarity; on a model with a classifier
/// head, a body with `parameters` is the Inference API's text classification (the task's
/// answer, a list per input), else /predict; else /embed.
pub(super) async fn root(
    State(state): State<Arc<AppState>>,
    Picked(model): Picked,
    Body(body): Body<Value>,
) -> Reply {
    let parse = |e: serde_json::Error| ApiError::new(ErrorType::Validation, e.to_string());
    if body["inputs"].get("source_sentence").is_some() {
        let req = serde_json::from_value(body).map_err(parse)?;
        return similarity(State(state), Picked(model), Body(req)).await;
    }
    let classifier = model
        .text
        .model()
        .has_head(crate::Head::SequenceClassification);
    match classifier {
        true if body.get("parameters").is_some() => {
            let single = !body["inputs"].is_array();
            let task = crate::pipelines::Task::TextClassification;
            let (headers, answer) =
                super::tasks::answer_text(task, state, Picked(model), Ok(Body(body))).await?;
            raw_reply(
                headers,
                if single {
                    format!("[{answer}]")
                } else {
                    answer
                },
            )
        }
        true => {
            let req = serde_json::from_value(body).map_err(parse)?;
            predict(State(state), Picked(model), Body(req)).await
        }
        false => {
            let req = serde_json::from_value(body).map_err(parse)?;
            embed(State(state), Picked(model), Body(req)).await
        }
    }
}

/// A text or a pair, from `"a"`, `["a"]` or `["a", "b"]`.
fn sequence(v: &Value) -> Result<Value, ApiError> {
    let bad = || {
        ApiError::new(
            ErrorType::Validation,
            "inputs: expected a string, a pair of strings [string, string] or a batch of mixed \
             strings and pairs [[string], [string, string], ...]",
        )
    };
    match v {
        Value::String(s) => Ok(json!({ "text": s })),
        Value::Array(a) => match a.as_slice() {
            [Value::String(s)] => Ok(json!({ "text": s })),
            [Value::String(s), Value::String(p)] => Ok(json!({"text": s, "text_pair": p})),
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}

/// `/predict`'s inputs: one sequence, or a batch of them.
fn predict_inputs(v: &Value) -> Result<(bool, Vec<Value>), ApiError> {
    match v {
        Value::Array(a) if a.first().is_some_and(Value::is_array) => {
            Ok((true, a.iter().map(sequence).collect::<Result<_, _>>()?))
        }
        Value::Array(a) if a.is_empty() => Ok((true, Vec::new())),
        other => Ok((false, vec![sequence(other)?])),
    }
}

#[derive(Deserialize)]
pub(super) struct PredictRequest {
    inputs: Value,
    truncate: Option<bool>,
    #[serde(default)]
    truncation_direction: TruncationDirection,
    #[serde(default)]
    raw_scores: bool,
}

/// The classification pipeline as TEI scores: every label, softmax (sigmoid for one
/// label) unless raw scores are asked for.
fn classifier(model: &Served, raw_scores: bool) -> TaskOptions {
    let function = match (raw_scores, model.text.model().config().num_labels()) {
        (true, _) => ScoreFunction::None,
        (false, 1) => ScoreFunction::Sigmoid,
        (false, _) => ScoreFunction::Softmax,
    };
    TaskOptions::TextClassification(TextClassificationOptions {
        top_k: Some(TopK::All),
        function_to_apply: Some(function),
    })
}

/// A score as TEI writes it (an f32).
fn score(v: &Value) -> Value {
    let x = v.as_f64().unwrap_or(f64::NAN) as f32;
    x.to_string()
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

/// `[{"label", "score"}]` with f32 scores.
fn predictions(answer: Value) -> Value {
    let list = answer.as_array().cloned().unwrap_or_default();
    Value::Array(
        list.into_iter()
            .map(|p| json!({"score": score(&p["score"]), "label": p["label"]}))
            .collect(),
    )
}

pub(super) async fn predict(
    State(state): State<Arc<AppState>>,
    Picked(model): Picked,
    Body(req): Body<PredictRequest>,
) -> Reply {
    let start = Instant::now();
    let (batch, lines) = predict_inputs(&req.inputs)?;
    state.check_batch(lines.len())?;
    let pipeline = state.pipeline(
        &model,
        classifier(&model, req.raw_scores),
        state.input_options(req.truncate, req.truncation_direction),
    )?;
    let inputs = lines.into_iter().map(Input::Line).collect();
    let ran = run(&state, &model, pipeline, inputs, start).await?;
    let mut all: Vec<Value> = all_ok(ran.results)?.into_iter().map(predictions).collect();
    let body = match batch {
        true => Value::Array(all),
        false => all.pop().unwrap_or(Value::Null),
    };
    Ok((ran.timing.headers(), Json(body)).into_response())
}

#[derive(Deserialize)]
pub(super) struct RerankRequest {
    query: String,
    texts: Vec<String>,
    truncate: Option<bool>,
    #[serde(default)]
    truncation_direction: TruncationDirection,
    #[serde(default)]
    raw_scores: bool,
    #[serde(default)]
    return_text: bool,
}

/// Scores (query, text) pairs with the classifier (the first label's score), best first.
pub(super) async fn rerank(
    State(state): State<Arc<AppState>>,
    Picked(model): Picked,
    Body(req): Body<RerankRequest>,
) -> Reply {
    let start = Instant::now();
    if req.texts.is_empty() {
        return Err(ApiError::new(ErrorType::Empty, "`texts` cannot be empty"));
    }
    state.check_batch(req.texts.len())?;
    let pipeline = state.pipeline(
        &model,
        classifier(&model, req.raw_scores),
        state.input_options(req.truncate, req.truncation_direction),
    )?;
    let first = model.text.model().config().label(0);
    let inputs = req
        .texts
        .iter()
        .map(|t| Input::Line(json!({"text": req.query, "text_pair": t})))
        .collect();
    let ran = run(&state, &model, pipeline, inputs, start).await?;
    let mut ranks = Vec::new();
    for (index, answer) in all_ok(ran.results)?.into_iter().enumerate() {
        let s = answer
            .as_array()
            .and_then(|l| l.iter().find(|p| p["label"] == first.as_str()))
            .map(|p| p["score"].as_f64().unwrap_or(f64::NAN))
            .unwrap_or(f64::NAN);
        if s.is_nan() {
            return Err(ApiError::new(ErrorType::Backend, "score is NaN"));
        }
        ranks.push((index, s));
    }
    ranks.sort_by(|a, b| b.1.total_cmp(&a.1));
    let body = ranks
        .into_iter()
        .map(|(index, s)| {
            let mut rank = json!({"index": index, "score": score(&json!(s))});
            if req.return_text {
                rank["text"] = json!(req.texts[index]);
            }
            rank
        })
        .collect();
    Ok((ran.timing.headers(), Json(Value::Array(body))).into_response())
}

#[derive(Deserialize)]
pub(super) struct SimilarityInputs {
    source_sentence: String,
    sentences: Vec<String>,
}

#[derive(Deserialize, Default)]
pub(super) struct SimilarityParameters {
    truncate: Option<bool>,
    #[serde(default)]
    truncation_direction: TruncationDirection,
    prompt_name: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct SimilarityRequest {
    inputs: SimilarityInputs,
    parameters: Option<SimilarityParameters>,
}

/// Cosine similarity of the source sentence's embedding with each sentence's.
pub(super) async fn similarity(
    State(state): State<Arc<AppState>>,
    Picked(model): Picked,
    Body(req): Body<SimilarityRequest>,
) -> Reply {
    let start = Instant::now();
    let params = req.parameters.unwrap_or_default();
    if req.inputs.sentences.is_empty() {
        return Err(ApiError::new(
            ErrorType::Empty,
            "`sentences` cannot be empty",
        ));
    }
    state.check_batch(req.inputs.sentences.len() + 1)?;
    let mut items = vec![Item::Text(req.inputs.source_sentence)];
    items.extend(req.inputs.sentences.into_iter().map(Item::Text));
    let options = EmbedOptions {
        normalize: Some(true),
        ..Default::default()
    };
    let (timing, lists) = embedded(
        &state,
        &model,
        items,
        options,
        (params.truncate, params.truncation_direction),
        params.prompt_name.as_deref(),
        start,
    )
    .await?;
    let vectors: Vec<Vec<f64>> = lists
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_default())
        .collect();
    let empty = Vec::new();
    let (source, rest) = vectors.split_first().unwrap_or((&empty, &[]));
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
    let scores = rest
        .iter()
        .map(|v| {
            let dot: f64 = source.iter().zip(v).map(|(a, b)| a * b).sum();
            score(&json!(dot / (norm(source) * norm(v))))
        })
        .collect();
    Ok((timing.headers(), Json(Value::Array(scores))).into_response())
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum Texts {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
pub(super) struct TokenizeRequest {
    inputs: Texts,
    #[serde(default = "yes")]
    add_special_tokens: bool,
    prompt_name: Option<String>,
}

/// Each input's tokens: id, text, whether special, byte offsets into the input.
pub(super) async fn tokenize(
    State(state): State<Arc<AppState>>,
    Picked(model): Picked,
    Body(req): Body<TokenizeRequest>,
) -> Result<Json<Value>, ApiError> {
    let texts = match req.inputs {
        Texts::One(t) => vec![t],
        Texts::Many(v) => v,
    };
    state.check_batch(texts.len())?;
    let prompt = model
        .text
        .prompt(req.prompt_name.as_deref())?
        .unwrap_or("")
        .to_string();
    let text = model.text.clone();
    let special = req.add_special_tokens;
    let lists = tokio::task::spawn_blocking(move || {
        texts
            .iter()
            .map(|t| tokens(&text, &format!("{prompt}{t}"), special))
            .collect::<crate::error::Result<Vec<Value>>>()
    })
    .await
    .map_err(|e| ApiError::new(ErrorType::Backend, e.to_string()))??;
    Ok(Json(Value::Array(lists)))
}

fn tokens(
    text: &crate::pipelines::TextModel,
    input: &str,
    special: bool,
) -> crate::error::Result<Value> {
    let tokenizer = text.tokenizer();
    let enc = match special {
        true => tokenizer.encode(input, None, Default::default())?.remove(0),
        false => tokenizer.tokenize(input)?,
    };
    // Offsets are in characters; TEI's are bytes.
    let bytes: Vec<usize> = input
        .char_indices()
        .map(|(b, _)| b)
        .chain(std::iter::once(input.len()))
        .collect();
    let byte = |c: usize| bytes.get(c).copied().unwrap_or(input.len());
    let list = (0..enc.len())
        .map(|i| {
            let id = enc.ids[i];
            match enc.sequence_ids.get(i).copied().flatten() {
                None => json!({"id": id, "text": enc.tokens[i], "special": true,
                               "start": null, "stop": null}),
                Some(_) => {
                    let (s, e) = enc.offsets[i];
                    let (s, e) = (byte(s), byte(e));
                    json!({"id": id, "text": input.get(s..e).unwrap_or(""), "special": false,
                           "start": s, "stop": e})
                }
            }
        })
        .collect();
    Ok(Value::Array(list))
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum Ids {
    One(Vec<u32>),
    Many(Vec<Vec<u32>>),
}

#[derive(Deserialize)]
pub(super) struct DecodeRequest {
    ids: Ids,
    #[serde(default = "yes")]
    skip_special_tokens: bool,
}

/// Each id list as text.
pub(super) async fn decode(
    State(state): State<Arc<AppState>>,
    Picked(model): Picked,
    Body(req): Body<DecodeRequest>,
) -> Result<Json<Value>, ApiError> {
    let lists = match req.ids {
        Ids::One(ids) => vec![ids],
        Ids::Many(v) => v,
    };
    state.check_batch(lists.len())?;
    let vocab = model.text.tokenizer().vocab_size();
    let texts = lists
        .iter()
        .map(|ids| {
            if let Some(bad) = ids.iter().find(|&&i| i as usize >= vocab) {
                return Err(ApiError::new(
                    ErrorType::Validation,
                    format!("id {bad} is past the vocabulary ({vocab} tokens)"),
                ));
            }
            Ok(json!(model
                .text
                .tokenizer()
                .decode(ids, req.skip_special_tokens)?))
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(Json(Value::Array(texts)))
}
