//! `bertrt serve`: an HTTP server with TEI's routes (and OpenAI's embeddings route)
//! plus every task TEI lacks, over one load per model.
//!
//! Routes and JSON only: batching is the library's [`queue`](crate::queue) (one per
//! model, batches formed whenever the model is free), preparation is
//! [`Pipeline::prepare`](crate::pipelines::Pipeline::prepare) on worker threads. Every
//! route also answers under `/models/{name}/...` for a model other than the first.

mod error;
mod extract;
mod metrics;
mod openai;
mod state;
mod tasks;
mod tei;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::pipelines::{Task, TextModel};
pub use error::{ApiError, ErrorType};
use state::{AppState, Served};

/// The server's knobs, with TEI's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeOptions {
    /// Address to listen on.
    pub host: String,
    /// Port (0: any free port; the one taken is printed).
    pub port: u16,
    /// Inputs answered at once, over all requests; more get 429.
    pub max_concurrent_requests: usize,
    /// Most tokens in one batch.
    pub max_batch_tokens: usize,
    /// Most inputs in one batch.
    pub max_batch_requests: Option<usize>,
    /// Most inputs in one request.
    pub max_client_batch_size: usize,
    /// Truncate over-long inputs (else they are refused) unless a request says.
    pub auto_truncate: bool,
    /// Largest request body in bytes.
    pub payload_limit: usize,
    /// Require `Authorization: Bearer KEY` on every route but health and metrics.
    pub api_key: Option<String>,
    /// How long in-flight requests may take to finish after a stop signal.
    pub grace_period: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            host: "127.0.0.1".into(),
            port: 3000,
            max_concurrent_requests: 512,
            max_batch_tokens: 16384,
            max_batch_requests: None,
            max_client_batch_size: 32,
            auto_truncate: true,
            payload_limit: 2_000_000,
            api_key: None,
            grace_period: Duration::from_secs(30),
        }
    }
}

/// A model to serve: the name clients pick it by, where it came from, and its load.
pub struct ServedModel {
    /// Its name (`model` field, `/models/{name}/`).
    pub name: String,
    /// Where it was loaded from (for /info).
    pub id: String,
    /// The loaded checkpoint.
    pub text: Arc<TextModel>,
}

/// Serves `models` (the first is the default) until SIGTERM or SIGINT, then lets the
/// requests in flight finish (up to the grace period). `ready` is called with the
/// address once the port is bound.
pub fn serve(
    options: ServeOptions,
    models: Vec<ServedModel>,
    ready: impl FnOnce(SocketAddr),
) -> Result<()> {
    if models.is_empty() {
        return Err(Error::Input("no model to serve".into()));
    }
    if options.max_concurrent_requests == 0 || options.max_client_batch_size == 0 {
        return Err(Error::Input(
            "--max-concurrent-requests and --max-client-batch-size must be at least 1".into(),
        ));
    }
    let prometheus = metrics::install().map_err(Error::Internal)?;
    let served = models
        .into_iter()
        .map(|m| Served::start(m.name, m.id, m.text, &options).map(Arc::new))
        .collect::<Result<Vec<_>>>()?;
    let state = Arc::new(AppState {
        models: served,
        permits: Arc::new(tokio::sync::Semaphore::new(options.max_concurrent_requests)),
        options: options.clone(),
        draining: AtomicBool::new(false),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async move {
        let addr = format!("{}:{}", options.host, options.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|e| Error::Io {
                path: addr.clone().into(),
                source: e,
            })?;
        let local = listener.local_addr().map_err(|e| Error::Io {
            path: addr.clone().into(),
            source: e,
        })?;
        ready(local);
        tracing::info!(%local, "listening");
        let app = router(state.clone(), prometheus);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = stop_rx.await;
        });
        let mut server = tokio::spawn(async move { server.await });
        tokio::select! {
            _ = stop_signal() => {}
            r = &mut server => return finished(r),
        }
        state.draining.store(true, Ordering::SeqCst);
        tracing::info!("stop signal: finishing the requests in flight");
        let _ = stop_tx.send(());
        match tokio::time::timeout(options.grace_period, &mut server).await {
            Ok(r) => finished(r),
            Err(_) => {
                tracing::warn!("grace period over: stopping with requests in flight");
                Ok(())
            }
        }
    })
}

fn finished(r: std::result::Result<std::io::Result<()>, tokio::task::JoinError>) -> Result<()> {
    match r {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Error::Io {
            path: "<server>".into(),
            source: e,
        }),
        Err(e) => Err(Error::Internal(format!("the server task failed: {e}"))),
    }
}

/// SIGTERM or SIGINT.
async fn stop_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// Every route: the model's routes (under `/` for the default model and under
/// `/models/{name}`), behind the API key when there is one; health, info and metrics.
fn router(
    state: Arc<AppState>,
    prometheus: metrics_exporter_prometheus::PrometheusHandle,
) -> Router {
    let mut routes = model_routes();
    routes = routes.nest("/models/{name}", model_routes());
    routes = routes
        .route("/v1/embeddings", post(openai::embeddings))
        .route("/embeddings", post(openai::embeddings));
    if state.options.api_key.is_some() {
        routes = routes.layer(middleware::from_fn_with_state(state.clone(), authorize));
    }
    let public = Router::new()
        .route("/health", get(health))
        .route("/ping", get(health))
        .route("/info", get(info))
        .route("/models/{name}/info", get(info))
        .route(
            "/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }),
        )
        .route(
            "/metrics",
            get(move || {
                let text = prometheus.render();
                async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text) }
            }),
        );
    Router::new()
        .merge(routes)
        .merge(public)
        .fallback(|| async {
            ApiError::new(ErrorType::Validation, "no such route").with_status(StatusCode::NOT_FOUND)
        })
        .layer(DefaultBodyLimit::max(state.options.payload_limit))
        .layer(middleware::from_fn(count))
        .layer(
            tower_http::trace::TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    tracing::info_span!(
                        "request",
                        method = %req.method(),
                        path = %req.uri().path(),
                        outcome = tracing::field::Empty,
                    )
                })
                .on_request(())
                .on_response(
                    tower_http::trace::DefaultOnResponse::new()
                        .level(tracing::Level::INFO)
                        .latency_unit(tower_http::LatencyUnit::Micros),
                ),
        )
        .with_state(state)
}

/// The routes that run a model.
fn model_routes() -> Router<Arc<AppState>> {
    let mut r = Router::new()
        .route("/", post(tei::root))
        .route("/invocations", post(tei::root))
        .route("/embed", post(tei::embed))
        .route("/embed_all", post(tei::embed_all))
        .route("/embed_sparse", post(tei::embed_sparse))
        .route("/predict", post(tei::predict))
        .route("/rerank", post(tei::rerank))
        .route("/similarity", post(tei::similarity))
        .route("/tokenize", post(tei::tokenize))
        .route("/decode", post(tei::decode));
    // embed is TEI's /embed.
    for task in [
        Task::FillMask,
        Task::TextClassification,
        Task::TokenClassification,
        Task::QuestionAnswering,
        Task::MultipleChoice,
        Task::NextSentence,
        Task::Generate,
        Task::SparseEmbed,
    ] {
        r = r.route(
            &format!("/{}", task.name()),
            post(move |State(s): State<Arc<AppState>>, model, body| {
                tasks::answer(task, s, model, body)
            }),
        );
    }
    r
}

/// 200, or 503 while draining.
async fn health(State(state): State<Arc<AppState>>) -> std::result::Result<(), ApiError> {
    match state.is_draining() {
        false => Ok(()),
        true => Err(ApiError::new(ErrorType::Unhealthy, "unhealthy")),
    }
}

/// TEI's /info for the model (the default, or `/models/{name}/info`'s).
async fn info(
    State(state): State<Arc<AppState>>,
    extract::Picked(model): extract::Picked,
) -> Json<Value> {
    let m = model.text.model();
    let config = m.config();
    let labels = || {
        let n = config.num_labels();
        let id2label: serde_json::Map<String, Value> = (0..n)
            .map(|i| (i.to_string(), json!(config.label(i))))
            .collect();
        let label2id: serde_json::Map<String, Value> =
            (0..n).map(|i| (config.label(i), json!(i))).collect();
        json!({"id2label": id2label, "label2id": label2id})
    };
    let model_type = match m.has_head(crate::Head::SequenceClassification) {
        true if config.num_labels() == 1 => json!({ "reranker": labels() }),
        true => json!({ "classifier": labels() }),
        false => json!({"embedding": {"pooling": "mean"}}),
    };
    let o = &state.options;
    Json(json!({
        "model_id": model.id,
        "model_sha": null,
        "model_dtype": m.dtype().to_string(),
        "served_model_name": model.name,
        "model_type": model_type,
        "heads": m.heads().iter().map(|h| h.class_name()).collect::<Vec<_>>(),
        "models": state.models.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
        "max_concurrent_requests": o.max_concurrent_requests,
        "max_input_length": config.max_position_embeddings,
        "max_batch_tokens": o.max_batch_tokens,
        "max_batch_requests": o.max_batch_requests,
        "max_client_batch_size": o.max_client_batch_size,
        "auto_truncate": o.auto_truncate,
        "tokenization_workers": 1,
        "version": env!("CARGO_PKG_VERSION"),
        "sha": null,
        "docker_label": null,
    }))
}

/// 401 without the API key.
async fn authorize(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let expected = state
        .options
        .api_key
        .as_deref()
        .map(|k| format!("Bearer {k}"));
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match (expected, given) {
        (Some(e), Some(g)) if e == g => next.run(req).await,
        (None, _) => next.run(req).await,
        _ => ApiError::new(
            ErrorType::Validation,
            "a valid API key is needed (Authorization: Bearer KEY)",
        )
        .with_status(StatusCode::UNAUTHORIZED)
        .into_response(),
    }
}

/// One metrics record per request (the log line is tower-http's trace layer's).
async fn count(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let path = req.uri().path().to_string();
    let response = next.run(req).await;
    let status = response.status();
    let outcome = response.extensions().get::<error::Outcome>().map_or(
        if status.is_success() {
            "success"
        } else {
            "error"
        },
        |o| o.0,
    );
    let seconds = start.elapsed().as_secs_f64();
    let route = route_label(&path);
    metrics::request(route, outcome, seconds);
    tracing::Span::current().record("outcome", outcome);
    response
}

/// The OpenAPI description of every route (a committed file; a test checks that it
/// names every route the server has and that the server has every route it names).
const OPENAPI: &str = include_str!("openapi.json");

/// The route a path is, for metrics labels (a bounded set: unknown paths are "other").
fn route_label(path: &str) -> &'static str {
    let path = match path.strip_prefix("/models/") {
        Some(rest) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => path,
    };
    ROUTES
        .iter()
        .find(|r| **r == path)
        .copied()
        .unwrap_or("other")
}

/// Every route (under `/`; the model routes also under `/models/{name}`).
const ROUTES: [&str; 25] = [
    "/embed",
    "/embed_all",
    "/embed_sparse",
    "/predict",
    "/rerank",
    "/similarity",
    "/tokenize",
    "/decode",
    "/v1/embeddings",
    "/embeddings",
    "/health",
    "/ping",
    "/info",
    "/metrics",
    "/fill-mask",
    "/text-classification",
    "/token-classification",
    "/question-answering",
    "/multiple-choice",
    "/next-sentence",
    "/generate",
    "/embed-sparse",
    "/openapi.json",
    "/",
    "/invocations",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_description_names_every_route() {
        let spec: Value = serde_json::from_str(OPENAPI).unwrap();
        let paths = spec["paths"].as_object().unwrap();
        for route in ROUTES {
            assert!(paths.contains_key(route), "{route} is not in openapi.json");
        }
        for path in paths.keys() {
            let plain = path.strip_prefix("/models/{name}").unwrap_or(path);
            assert!(
                ROUTES.contains(&plain),
                "openapi.json has {path}, the server has no such route"
            );
        }
    }
}
