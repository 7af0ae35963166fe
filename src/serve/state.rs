//! What every route shares: the served models with their queues, the concurrency
//! permits, the limits; and the one way a route runs inputs through a model.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue};
use serde_json::Value;
use tokio::sync::Semaphore;

use super::error::{ApiError, ErrorType};
use super::ServeOptions;
use crate::error::Result;
use crate::pipelines::{
    Answer, InputOptions, Pipeline, Prepared, TaskOptions, TextModel, TruncationDirection,
};
use crate::queue::{Job, Limits, Queue};

/// One served model: its name, its loaded checkpoint and its queue.
pub struct Served {
    /// The name clients pick it by (`model`, `/models/{name}/...`).
    pub name: String,
    /// Where it was loaded from, as given.
    pub id: String,
    /// The checkpoint, shared by the pipelines of every route.
    pub text: Arc<TextModel>,
    /// Its queue and inference thread.
    pub queue: Queue,
}

impl Served {
    /// Starts the model's queue.
    pub fn start(name: String, id: String, text: Arc<TextModel>, o: &ServeOptions) -> Result<Self> {
        let limits = Limits {
            max_batch_tokens: o.max_batch_tokens,
            max_batch_inputs: o.max_batch_requests,
            forward_size: o.max_batch_requests.unwrap_or(256).max(1),
        };
        let model = name.clone();
        let queue = Queue::start(limits, move |b| super::metrics::batch(&model, b))?;
        Ok(Served {
            name,
            id,
            text,
            queue,
        })
    }
}

/// The server's shared state.
pub struct AppState {
    /// The models; the first is the default.
    pub models: Vec<Arc<Served>>,
    /// One permit per input being answered.
    pub permits: Arc<Semaphore>,
    /// The options it was started with.
    pub options: ServeOptions,
    /// Set once a stop signal came: /health answers 503.
    pub draining: AtomicBool,
}

impl AppState {
    /// The model called `name`, or the default.
    pub fn model(&self, name: Option<&str>) -> std::result::Result<&Arc<Served>, ApiError> {
        let Some(name) = name else {
            return self.default_model();
        };
        self.models.iter().find(|m| m.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.models.iter().map(|m| m.name.as_str()).collect();
            ApiError::new(
                ErrorType::Validation,
                format!("no model {name:?} here (served: {})", names.join(", ")),
            )
            .with_status(axum::http::StatusCode::NOT_FOUND)
        })
    }

    /// The first model.
    pub fn default_model(&self) -> std::result::Result<&Arc<Served>, ApiError> {
        self.models
            .first()
            .ok_or_else(|| ApiError::new(ErrorType::Backend, "no model is served"))
    }

    /// Whether a stop signal came.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// A pipeline for `options` over `model`: 424 when the checkpoint has no head for it.
    pub fn pipeline(
        &self,
        model: &Served,
        options: TaskOptions,
        input: InputOptions,
    ) -> std::result::Result<Pipeline, ApiError> {
        Pipeline::new(model.text.clone(), options, input).map_err(|e| {
            ApiError::new(ErrorType::Backend, e.to_string())
                .with_status(axum::http::StatusCode::FAILED_DEPENDENCY)
        })
    }

    /// Input options for a request's `truncate` (None: the server's `--auto-truncate`)
    /// and `truncation_direction`.
    pub fn input_options(
        &self,
        truncate: Option<bool>,
        direction: TruncationDirection,
    ) -> InputOptions {
        InputOptions {
            no_truncate: Some(!truncate.unwrap_or(self.options.auto_truncate)),
            truncation_direction: Some(direction),
            ..Default::default()
        }
    }

    /// Refuses a client batch that is empty or over `--max-client-batch-size`.
    pub fn check_batch(&self, n: usize) -> std::result::Result<(), ApiError> {
        if n == 0 {
            return Err(ApiError::new(ErrorType::Empty, "Batch is empty"));
        }
        let max = self.options.max_client_batch_size;
        if n > max {
            return Err(ApiError::new(
                ErrorType::Validation,
                format!("batch size {n} > maximum allowed batch size {max}"),
            ));
        }
        Ok(())
    }
}

/// An input as a route gives it: a `bertrt run` line, or token ids.
pub enum Input {
    /// A JSON object as `bertrt run` reads it.
    Line(Value),
    /// Token ids, used as they are.
    Ids(Vec<u32>),
}

impl Input {
    /// About how many bytes it holds (for choosing where to tokenize it).
    fn size(&self) -> usize {
        match self {
            Input::Line(v) => text_bytes(v),
            Input::Ids(ids) => ids.len() * 4,
        }
    }
}

/// The bytes of the strings in a JSON value.
fn text_bytes(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len(),
        Value::Array(a) => a.iter().map(text_bytes).sum(),
        Value::Object(o) => o.values().map(text_bytes).sum(),
        _ => 8,
    }
}

/// Requests with less text than this are tokenized on the async worker itself.
const INLINE_BYTES: usize = 4096;

/// A request's answers and where its time went.
pub struct Ran {
    /// One result per input.
    pub results: Vec<Result<Answer>>,
    /// Its timing, for the headers and the metrics.
    pub timing: Timing,
}

/// Where a request's time went.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// When the request arrived.
    pub start: Instant,
    /// Preparing its inputs (on a worker thread).
    pub tokenization: Duration,
    /// Waiting in the queue.
    pub queue: Duration,
    /// Its batch's run.
    pub inference: Duration,
    /// Tokens over its inputs.
    pub tokens: usize,
    /// Where the model ran ("cpu" or "gpu"), for `x-compute-type`.
    pub device: &'static str,
}

impl Timing {
    /// TEI's timing headers (milliseconds).
    pub fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        let ms = |d: Duration| HeaderValue::from(d.as_millis() as u64);
        let total = self.start.elapsed();
        h.insert("x-compute-type", HeaderValue::from_static(self.device));
        h.insert("x-compute-time", ms(total));
        h.insert("x-total-time", ms(total));
        h.insert("x-compute-tokens", HeaderValue::from(self.tokens as u64));
        h.insert("x-tokenization-time", ms(self.tokenization));
        h.insert("x-queue-time", ms(self.queue));
        h.insert("x-inference-time", ms(self.inference));
        h
    }
}

/// Sets the flag to false when dropped: a request whose handler is dropped (its client
/// went away) is no longer wanted by the queue.
struct Alive(Arc<AtomicBool>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// Runs `inputs` through `pipeline` on `model`'s queue: a permit per input (429 at once
/// when they are taken), preparation on a worker thread, then the queue. One result per
/// input; an input that fails to prepare fails alone.
pub async fn run(
    state: &AppState,
    model: &Served,
    pipeline: Pipeline,
    inputs: Vec<Input>,
    start: Instant,
) -> std::result::Result<Ran, ApiError> {
    let n = inputs.len().max(1);
    let bytes: usize = inputs.iter().map(Input::size).sum();
    let _permits = u32::try_from(n)
        .ok()
        .and_then(|n| state.permits.clone().try_acquire_many_owned(n).ok())
        .ok_or_else(|| ApiError::new(ErrorType::Overloaded, "Model is overloaded"))?;
    let pipeline = Arc::new(pipeline);
    let worker = pipeline.clone();
    let prepare = move || {
        inputs
            .into_iter()
            .map(|input| match input {
                Input::Line(v) => worker.prepare(&v),
                Input::Ids(ids) => worker.prepare_ids(ids),
            })
            .collect::<Vec<_>>()
    };
    // A small request is tokenized where it is (tens of microseconds); a large one on a
    // blocking thread, so that it never holds up the other requests' I/O.
    let prepared = match bytes <= INLINE_BYTES {
        true => prepare(),
        false => tokio::task::spawn_blocking(prepare)
            .await
            .map_err(|e| ApiError::new(ErrorType::Backend, format!("tokenization failed: {e}")))?,
    };
    let tokenization = start.elapsed();
    let mut results: Vec<Option<Result<Answer>>> = Vec::with_capacity(prepared.len());
    let mut ready: Vec<Prepared> = Vec::new();
    for p in prepared {
        match p {
            Ok(p) => {
                ready.push(p);
                results.push(None);
            }
            Err(e) => results.push(Some(Err(e))),
        }
    }
    let tokens = ready.iter().map(Prepared::tokens).sum();
    super::metrics::inputs(&model.name, &ready);
    let mut timing = Timing {
        start,
        tokenization,
        queue: Duration::ZERO,
        inference: Duration::ZERO,
        tokens,
        device: match model.text.model().device() {
            crate::Device::Cpu => "cpu",
            _ => "gpu",
        },
    };
    if !ready.is_empty() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let alive = Arc::new(AtomicBool::new(true));
        let _guard = Alive(alive.clone());
        model
            .queue
            .submit(Job {
                pipeline,
                inputs: ready,
                reply: Box::new(move |done| {
                    let _ = tx.send(done);
                }),
                wanted: Box::new(move || alive.load(Ordering::SeqCst)),
            })
            .map_err(|e| ApiError::new(ErrorType::Unhealthy, e.to_string()))?;
        super::metrics::queue_size(&model.name, model.queue.queued_inputs());
        let done = rx
            .await
            .map_err(|_| ApiError::new(ErrorType::Backend, "the request was dropped"))?;
        timing.queue = done.queue_time;
        timing.inference = done.inference_time;
        let mut answers = done.results.into_iter();
        for slot in results.iter_mut().filter(|r| r.is_none()) {
            *slot = answers.next();
        }
    }
    super::metrics::timing(&model.name, &timing);
    Ok(Ran {
        results: crate::pipelines::answered(results),
        timing,
    })
}

/// The JSON text of field `name` of each answer, when every input must succeed (the
/// first error fails the request): the answers' own text, not parsed.
pub fn all_fields(
    results: Vec<Result<Answer>>,
    name: &str,
) -> std::result::Result<Vec<String>, ApiError> {
    results
        .into_iter()
        .map(|r| {
            let a = r?;
            let fields: std::collections::HashMap<&str, &serde_json::value::RawValue> =
                serde_json::from_str(a.json()).map_err(|e| {
                    ApiError::new(
                        ErrorType::Backend,
                        format!("an answer is not an object: {e}"),
                    )
                })?;
            fields
                .get(name)
                .map(|v| v.get().to_string())
                .ok_or_else(|| {
                    ApiError::new(ErrorType::Backend, format!("an answer has no `{name}`"))
                })
        })
        .collect()
}

/// The answers when every input must succeed (TEI's routes): the first error fails the
/// request.
pub fn all_ok(results: Vec<Result<Answer>>) -> std::result::Result<Vec<Value>, ApiError> {
    results
        .into_iter()
        .map(|r| r.map(|a| a.value()).map_err(ApiError::from))
        .collect()
}
