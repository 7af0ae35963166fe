//! The request queue: dynamic batching across callers for one model.
//!
//! Callers prepare their inputs on their own threads ([`Pipeline::prepare`]) and
//! [`Queue::submit`] them as a [`Job`]. One inference thread per queue runs the model:
//! whenever it is free it takes the queued jobs in order, as many as fit the token
//! budget and the input cap (the first always, however large), answers them all with
//! [`execute`] (the single-window inputs of every job share forward calls) and hands each
//! job its answers. There is no fixed wait: a lone request runs at once, and requests
//! that arrive while the model is busy are batched together. A job whose caller has gone
//! (`wanted` says false) is dropped unrun. A panic in the model fails that batch's jobs
//! with an error and the thread goes on.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::pipelines::{execute, Answer, Pipeline, Prepared};

/// How large a batch the inference thread forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most tokens in one batch (the sum over its inputs); a larger job runs alone.
    pub max_batch_tokens: usize,
    /// Most inputs in one batch (None: only the token budget counts).
    pub max_batch_inputs: Option<usize>,
    /// Most inputs in one forward call within a batch.
    pub forward_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_batch_tokens: 16384,
            max_batch_inputs: None,
            forward_size: 32,
        }
    }
}

/// One caller's inputs for one pipeline, and where their answers go.
pub struct Job {
    /// The pipeline that prepared the inputs (every job of a queue shares its model).
    pub pipeline: Arc<Pipeline>,
    /// The inputs, in the caller's order.
    pub inputs: Vec<Prepared>,
    /// Called once with the answers, on the inference thread (keep it short: send them
    /// on). Not called when the job is dropped unrun.
    pub reply: Box<dyn FnOnce(Done) + Send>,
    /// Whether the caller still waits; a job it no longer wants is dropped unrun.
    pub wanted: Box<dyn Fn() -> bool + Send>,
}

/// A job's answers, one per input, and where its time went.
pub struct Done {
    /// One result per input, in order.
    pub results: Vec<Result<Answer>>,
    /// From submission to the start of its batch.
    pub queue_time: Duration,
    /// The batch's run (shared with the other jobs in it).
    pub inference_time: Duration,
}

/// What one batch was, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchStats {
    /// Jobs in the batch.
    pub jobs: usize,
    /// Inputs over all its jobs.
    pub inputs: usize,
    /// Tokens over all its inputs.
    pub tokens: usize,
    /// How long it ran.
    pub time: Duration,
}

/// A model's queue and its inference thread. Dropping it stops taking jobs, answers the
/// ones queued and joins the thread.
pub struct Queue {
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    ready: Condvar,
}

#[derive(Default)]
struct State {
    jobs: VecDeque<Queued>,
    /// Inputs over the queued jobs.
    inputs: usize,
    closed: bool,
}

struct Queued {
    job: Job,
    tokens: usize,
    since: Instant,
}

impl Queue {
    /// Starts the inference thread; `observe` is told of every batch it runs.
    pub fn start(limits: Limits, observe: impl Fn(&BatchStats) + Send + 'static) -> Result<Queue> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            ready: Condvar::new(),
        });
        let inner = shared.clone();
        let worker = std::thread::Builder::new()
            .name("bertrt-inference".into())
            .spawn(move || work(&inner, limits, &observe))
            .map_err(|e| Error::Internal(format!("cannot start the inference thread: {e}")))?;
        Ok(Queue {
            shared,
            worker: Some(worker),
        })
    }

    /// Queues a job; an error once the queue is closed.
    pub fn submit(&self, job: Job) -> Result<()> {
        let tokens = job.inputs.iter().map(Prepared::tokens).sum();
        let mut state = self.shared.lock();
        if state.closed {
            return Err(Error::Unsupported("the queue is closed".into()));
        }
        state.inputs += job.inputs.len();
        state.jobs.push_back(Queued {
            job,
            tokens,
            since: Instant::now(),
        });
        drop(state);
        self.shared.ready.notify_one();
        Ok(())
    }

    /// Inputs waiting for the model (not those running).
    pub fn queued_inputs(&self) -> usize {
        self.shared.lock().inputs
    }

    /// Stops taking jobs; those queued are still answered.
    pub fn close(&self) {
        self.shared.lock().closed = true;
        self.shared.ready.notify_all();
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        self.close();
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

impl Shared {
    /// The state, also after a panic elsewhere held the lock (it stays consistent: every
    /// change to it is one push or pop).
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The inference thread: batches until the queue is closed and empty.
fn work(shared: &Shared, limits: Limits, observe: &dyn Fn(&BatchStats)) {
    while let Some(batch) = next_batch(shared, limits) {
        let start = Instant::now();
        let stats = run(batch, start, limits.forward_size);
        observe(&BatchStats {
            time: start.elapsed(),
            ..stats
        });
    }
}

/// Waits for jobs and takes the next batch; None once closed and drained.
fn next_batch(shared: &Shared, limits: Limits) -> Option<Vec<Queued>> {
    let mut state = shared.lock();
    loop {
        // A job nobody waits for is dropped, wherever it is in the queue.
        let before = state.jobs.len();
        if before > 0 {
            state.jobs.retain(|q| (q.job.wanted)());
            if state.jobs.len() != before {
                state.inputs = state.jobs.iter().map(|q| q.job.inputs.len()).sum();
            }
        }
        if !state.jobs.is_empty() {
            break;
        }
        if state.closed {
            return None;
        }
        state = shared.ready.wait(state).unwrap_or_else(|e| e.into_inner());
    }
    let mut batch: Vec<Queued> = Vec::new();
    let (mut tokens, mut inputs) = (0usize, 0usize);
    while let Some(next) = state.jobs.front() {
        let fits = tokens + next.tokens <= limits.max_batch_tokens
            && limits
                .max_batch_inputs
                .is_none_or(|max| inputs + next.job.inputs.len() <= max);
        if !batch.is_empty() && !fits {
            break;
        }
        let Some(next) = state.jobs.pop_front() else {
            break;
        };
        tokens += next.tokens;
        inputs += next.job.inputs.len();
        state.inputs = state.inputs.saturating_sub(next.job.inputs.len());
        batch.push(next);
    }
    Some(batch)
}

/// Answers one batch and replies to each of its jobs.
fn run(batch: Vec<Queued>, start: Instant, forward_size: usize) -> BatchStats {
    let mut stats = BatchStats {
        jobs: batch.len(),
        inputs: 0,
        tokens: 0,
        time: Duration::ZERO,
    };
    let mut pipelines = Vec::with_capacity(batch.len());
    let mut replies = Vec::with_capacity(batch.len());
    let mut all = Vec::new();
    for q in batch {
        stats.tokens += q.tokens;
        stats.inputs += q.job.inputs.len();
        replies.push((q.job.reply, q.job.inputs.len(), start - q.since));
        pipelines.push((q.job.pipeline, q.job.inputs));
    }
    for (pipeline, inputs) in &mut pipelines {
        all.extend(std::mem::take(inputs).into_iter().map(|p| (&**pipeline, p)));
    }
    let count = all.len();
    let results =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| execute(all, forward_size)))
            .unwrap_or_else(|_| {
                let e = Error::Internal("the model panicked on this batch".into());
                (0..count).map(|_| Err(e.clone())).collect()
            });
    let inference_time = start.elapsed();
    let mut results = results.into_iter();
    for (reply, n, queue_time) in replies {
        let results: Vec<_> = results.by_ref().take(n).collect();
        reply(Done {
            results,
            queue_time,
            inference_time,
        });
    }
    stats
}
