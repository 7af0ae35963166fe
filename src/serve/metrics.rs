//! Prometheus metrics: requests by route and outcome, where their time went, the
//! batches the queues formed, queue sizes and input lengths. Served at /metrics.

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use super::state::Timing;
use crate::pipelines::Prepared;
use crate::queue::BatchStats;

const SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
const SIZES: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0,
    16384.0, 32768.0,
];

/// Installs the process's recorder (once; a second server in the process shares it).
pub fn install() -> std::result::Result<PrometheusHandle, String> {
    static HANDLE: std::sync::OnceLock<std::result::Result<PrometheusHandle, String>> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("seconds".into()), SECONDS)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("size".into()), SIZES))
                .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("tokens".into()), SIZES))
                .map_err(|e| e.to_string())?
                .install_recorder()
                .map_err(|e| e.to_string())
        })
        .clone()
}

/// One answered request.
pub fn request(route: &str, outcome: &str, seconds: f64) {
    let labels = [
        ("route", route.to_string()),
        ("outcome", outcome.to_string()),
    ];
    counter!("bertrt_requests_total", &labels).increment(1);
    histogram!("bertrt_request_duration_seconds", "route" => route.to_string()).record(seconds);
}

/// Where one request's time went.
pub fn timing(model: &str, t: &Timing) {
    let m = model.to_string();
    histogram!("bertrt_request_tokenization_duration_seconds", "model" => m.clone())
        .record(t.tokenization.as_secs_f64());
    histogram!("bertrt_request_queue_duration_seconds", "model" => m.clone())
        .record(t.queue.as_secs_f64());
    histogram!("bertrt_request_inference_duration_seconds", "model" => m)
        .record(t.inference.as_secs_f64());
}

/// The lengths of a request's prepared inputs.
pub fn inputs(model: &str, prepared: &[Prepared]) {
    for p in prepared {
        histogram!("bertrt_request_input_tokens", "model" => model.to_string())
            .record(p.tokens() as f64);
    }
}

/// Inputs waiting in a model's queue.
pub fn queue_size(model: &str, inputs: usize) {
    gauge!("bertrt_queue_size", "model" => model.to_string()).set(inputs as f64);
}

/// One batch a queue ran.
pub fn batch(model: &str, b: &BatchStats) {
    let m = model.to_string();
    histogram!("bertrt_batch_size", "model" => m.clone()).record(b.inputs as f64);
    histogram!("bertrt_batch_tokens", "model" => m.clone()).record(b.tokens as f64);
    histogram!("bertrt_batch_duration_seconds", "model" => m.clone()).record(b.time.as_secs_f64());
    counter!("bertrt_batches_total", "model" => m).increment(1);
}
