//! The request queue: jobs queued while the model is busy run together in one batch,
//! each gets its own answers (those `Pipeline::run` gives), the token budget splits
//! batches, and a job nobody waits for is dropped unrun.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use bertrt::pipelines::{Pipeline, Task, TaskOptions, TextModel};
use bertrt::queue::{BatchStats, Done, Job, Limits, Queue};
use bertrt::Device;
use serde_json::{json, Value};

fn model() -> Arc<TextModel> {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pipelines/fill_mask");
    Arc::new(TextModel::load(&dir, None, Device::Cpu).unwrap())
}

fn pipeline(text: &Arc<TextModel>, task: Task) -> Arc<Pipeline> {
    Arc::new(
        Pipeline::new(
            text.clone(),
            TaskOptions::defaults(task),
            Default::default(),
        )
        .unwrap(),
    )
}

fn job(p: &Arc<Pipeline>, inputs: &[Value], tx: mpsc::Sender<(usize, Done)>, id: usize) -> Job {
    Job {
        pipeline: p.clone(),
        inputs: inputs.iter().map(|v| p.prepare(v).unwrap()).collect(),
        reply: Box::new(move |done| {
            let _ = tx.send((id, done));
        }),
        wanted: Box::new(|| true),
    }
}

/// Submits a job whose reply holds the inference thread until the returned sender is
/// used, and returns once the job has been taken (its `wanted` is asked as it is), so that
/// the jobs submitted next queue up behind it.
fn hold(queue: &Queue, mut blocker: Job) -> mpsc::Sender<()> {
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (taken_tx, taken_rx) = mpsc::channel::<()>();
    let reply = blocker.reply;
    blocker.reply = Box::new(move |done| {
        let _ = go_rx.recv();
        reply(done);
    });
    let taken = Mutex::new(taken_tx);
    blocker.wanted = Box::new(move || {
        let _ = taken.lock().unwrap().send(());
        true
    });
    queue.submit(blocker).unwrap();
    taken_rx.recv().unwrap();
    go_tx
}

#[test]
fn jobs_queued_while_busy_share_a_batch_and_keep_their_answers() {
    let text = model();
    let fill = pipeline(&text, Task::FillMask);
    let embed = pipeline(&text, Task::Embed);
    let batches: Arc<Mutex<Vec<BatchStats>>> = Arc::default();
    let seen = batches.clone();
    let queue = Queue::start(Limits::default(), move |b| seen.lock().unwrap().push(*b)).unwrap();
    let (tx, rx) = mpsc::channel();
    let first = json!({"text": "paris is the [MASK] of france."});
    let go = hold(
        &queue,
        job(&fill, std::slice::from_ref(&first), tx.clone(), 0),
    );
    let texts: Vec<Vec<Value>> = (1..=6)
        .map(|i| {
            (0..i)
                .map(
                    |k| json!({"text": format!("the [MASK] number {i} {k} {}", "word ".repeat(k))}),
                )
                .collect()
        })
        .collect();
    for (i, inputs) in texts.iter().enumerate() {
        let p = if i % 2 == 0 { &fill } else { &embed };
        queue.submit(job(p, inputs, tx.clone(), i + 1)).unwrap();
    }
    go.send(()).unwrap();
    let mut answers: Vec<Option<Done>> = (0..=6).map(|_| None).collect();
    for _ in 0..=6 {
        let (id, done) = rx.recv().unwrap();
        answers[id] = Some(done);
    }
    drop(queue);
    let batches = batches.lock().unwrap().clone();
    assert_eq!(batches.len(), 2, "{batches:?}");
    assert_eq!(batches[1].jobs, 6, "{batches:?}");
    assert_eq!(batches[1].inputs, 21, "{batches:?}");
    for (i, inputs) in texts.iter().enumerate() {
        let p = if i % 2 == 0 { &fill } else { &embed };
        let done = answers[i + 1].take().unwrap();
        let got: Vec<Value> = done
            .results
            .into_iter()
            .map(|r| r.unwrap().value())
            .collect();
        let alone: Vec<Value> = p
            .run(inputs)
            .into_iter()
            .map(|r| r.unwrap().value())
            .collect();
        assert_eq!(got.len(), alone.len());
        for (g, a) in got.iter().zip(&alone) {
            close(g, a, 1e-5).unwrap_or_else(|e| panic!("job {}: {e}", i + 1));
        }
    }
}

#[test]
fn the_token_budget_splits_batches_and_unwanted_jobs_are_dropped() {
    let text = model();
    let embed = pipeline(&text, Task::Embed);
    let batches: Arc<Mutex<Vec<BatchStats>>> = Arc::default();
    let seen = batches.clone();
    let limits = Limits {
        max_batch_tokens: 40,
        ..Limits::default()
    };
    let queue = Queue::start(limits, move |b| seen.lock().unwrap().push(*b)).unwrap();
    let (tx, rx) = mpsc::channel();
    let input = json!({"text": "one two three four five six seven eight"});
    let tokens = embed.prepare(&input).unwrap().tokens();
    let go = hold(
        &queue,
        job(&embed, std::slice::from_ref(&input), tx.clone(), 0),
    );
    for id in 1..=4 {
        queue
            .submit(job(&embed, std::slice::from_ref(&input), tx.clone(), id))
            .unwrap();
    }
    let mut gone = job(&embed, std::slice::from_ref(&input), tx.clone(), 99);
    gone.wanted = Box::new(|| false);
    queue.submit(gone).unwrap();
    assert_eq!(queue.queued_inputs(), 5);
    go.send(()).unwrap();
    let ids: Vec<usize> = (0..5).map(|_| rx.recv().unwrap().0).collect();
    drop(queue);
    assert!(!ids.contains(&99), "{ids:?}");
    let per_batch = 40 / tokens;
    let batches = batches.lock().unwrap().clone();
    assert_eq!(
        batches.iter().map(|b| b.jobs).sum::<usize>(),
        5,
        "{batches:?}"
    );
    assert!(
        batches.iter().all(|b| b.tokens <= 40.max(tokens)),
        "{batches:?}"
    );
    assert!(
        batches[1..].iter().all(|b| b.jobs <= per_batch),
        "{batches:?}"
    );
    assert!(rx.try_recv().is_err(), "the dropped job was answered");
}

fn close(got: &Value, want: &Value, tol: f64) -> Result<(), String> {
    match (got, want) {
        (Value::Array(g), Value::Array(w)) if g.len() == w.len() => {
            g.iter().zip(w).try_for_each(|(a, b)| close(a, b, tol))
        }
        (Value::Object(g), Value::Object(w)) if g.len() == w.len() => w
            .iter()
            .try_for_each(|(k, b)| close(g.get(k).ok_or(format!("no {k}"))?, b, tol)),
        (Value::Number(a), Value::Number(b)) => {
            let d = (a.as_f64().unwrap() - b.as_f64().unwrap()).abs();
            (d <= tol).then_some(()).ok_or(format!("{a} vs {b}"))
        }
        (g, w) if g == w => Ok(()),
        (g, w) => Err(format!("{g} vs {w}")),
    }
}
