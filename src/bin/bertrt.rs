//! The bertrt command line: a thin layer over the library.

use std::io::{BufWriter, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use bertrt::pipelines::{Pipeline, Task, TaskOptions};
use bertrt::{
    fetch, lines, raw, Device, Dtype, Error, ForwardOptions, Head, Model, Result, Target,
};
use clap::{Parser, Subcommand};
use serde_json::{json, Value};

#[derive(Parser)]
#[command(
    name = "bertrt",
    version,
    about = "BERT inference: every Hugging Face BERT head and task"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Answer JSON lines (stdin or --input) with one JSON line each on stdout.
    Run(Box<RunArgs>),
    /// Time BertModel forwards over batch x length points; prints a table (or JSON).
    Bench(BenchArgs),
    /// Serve models over HTTP: TEI's routes, OpenAI's /v1/embeddings, every task.
    #[cfg(feature = "serve")]
    Serve(Box<ServeArgs>),
    /// Print a packed weights file's config, dtype, tensor table and sizes.
    Inspect {
        /// The packed file (made by tools/convert).
        file: PathBuf,
    },
}

#[derive(clap::Args)]
struct BenchArgs {
    /// Checkpoint folder or packed file; or a named shape: bert-base, minilm (random
    /// weights). Default: the default model.
    #[arg(long)]
    model: Option<String>,
    /// Points as BATCHxLEN, comma-separated.
    #[arg(long, default_value = "1x128,8x128")]
    shapes: String,
    /// Timed runs per point (after one warm-up run).
    #[arg(long, default_value_t = 20)]
    iters: usize,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// f32, f16 (CUDA), bf16 or int8 (CPU) (default: f32 on the CPU, f16 on CUDA).
    #[arg(long)]
    dtype: Option<String>,
    /// Print one JSON object per point instead of a table.
    #[arg(long)]
    json: bool,
}

#[cfg(feature = "serve")]
#[derive(clap::Args)]
struct ServeArgs {
    /// A model to serve: checkpoint folder, packed file or Hub id, or NAME=PATH to name
    /// it; repeat for several (the first is the default). Default: the default model.
    #[arg(long)]
    model: Vec<String>,
    /// Name of the (first) model in answers and in the OpenAI `model` field.
    #[arg(long)]
    served_model_name: Option<String>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port (0: any free one; the address is printed on stdout).
    #[arg(long, default_value_t = 3000)]
    port: u16,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// f32, f16 (CUDA), bf16 or int8 (CPU) (default: f32 on the CPU, f16 on CUDA).
    #[arg(long)]
    dtype: Option<String>,
    /// Inputs answered at once over all requests; more are refused with 429.
    #[arg(long, default_value_t = 512)]
    max_concurrent_requests: usize,
    /// Most tokens in one batch.
    #[arg(long, default_value_t = 16384)]
    max_batch_tokens: usize,
    /// Most inputs in one batch (default: only the token budget counts).
    #[arg(long)]
    max_batch_requests: Option<usize>,
    /// Most inputs in one request.
    #[arg(long, default_value_t = 32)]
    max_client_batch_size: usize,
    /// Truncate over-long inputs unless a request says otherwise (false: refuse them).
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    auto_truncate: bool,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 2_000_000)]
    payload_limit: usize,
    /// Require `Authorization: Bearer KEY` (also read from $BERTRT_API_KEY).
    #[arg(long, env = "BERTRT_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Seconds the requests in flight may take to finish after SIGTERM or SIGINT.
    #[arg(long, default_value_t = 30)]
    grace_period: u64,
    /// Log one JSON object per line instead of text.
    #[arg(long)]
    json_logs: bool,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Checkpoint folder (config.json, model.safetensors, tokenizer) or a Hugging Face Hub
    /// model id. Default: all-MiniLM-L6-v2, fetched into the user cache on first use.
    #[arg(long)]
    model: Option<String>,
    /// raw, embed, fill-mask, text-classification, token-classification,
    /// question-answering, multiple-choice, next-sentence or generate.
    #[arg(long, default_value = "raw")]
    task: String,
    /// One input text instead of stdin (the question for question-answering).
    #[arg(long)]
    text: Option<String>,
    /// Second text of a pair (the context for question-answering).
    #[arg(long)]
    text_pair: Option<String>,
    /// Read input lines from this file instead of stdin.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Inputs per forward call.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// f32, f16 (CUDA), bf16 or int8 (CPU) (default: f32 on the CPU, f16 on CUDA).
    #[arg(long)]
    dtype: Option<String>,
    /// raw: the head (bert, mlm, seq-cls, ... or a class name); default architectures[0].
    #[arg(long)]
    head: Option<String>,
    /// raw: also return hidden_states.
    #[arg(long)]
    output_hidden_states: bool,
    /// raw: also return attentions.
    #[arg(long)]
    output_attentions: bool,
    /// Number of results (a number, or "all").
    #[arg(long)]
    top_k: Option<String>,
    /// fill-mask: candidate tokens, comma-separated.
    #[arg(long, value_delimiter = ',')]
    targets: Option<Vec<String>>,
    /// text-classification: sigmoid, softmax or none.
    #[arg(long)]
    function_to_apply: Option<String>,
    /// token-classification: none, simple, first, average or max.
    #[arg(long)]
    aggregation: Option<String>,
    /// token-classification: labels to drop, comma-separated (default O).
    #[arg(long, value_delimiter = ',')]
    ignore_labels: Option<Vec<String>>,
    /// token-classification: window overlap for long texts.
    #[arg(long)]
    stride: Option<usize>,
    /// question-answering: context window overlap.
    #[arg(long)]
    doc_stride: Option<usize>,
    /// question-answering: longest answer in tokens.
    #[arg(long)]
    max_answer_len: Option<usize>,
    /// question-answering: window length in tokens.
    #[arg(long)]
    max_seq_len: Option<usize>,
    /// question-answering: allow the empty answer.
    #[arg(long)]
    handle_impossible_answer: bool,
    /// question-answering: keep token boundaries instead of whole words.
    #[arg(long)]
    no_align_to_words: bool,
    /// generate: tokens to add.
    #[arg(long)]
    max_new_tokens: Option<usize>,
    /// embed: cls, mean, max, mean_sqrt_len or none (default from the model files).
    #[arg(long)]
    pooling: Option<String>,
    /// embed: L2-normalise (true/false; default from the model files).
    #[arg(long)]
    normalize: Option<bool>,
    /// Longest input in tokens (default: the model's limit).
    #[arg(long)]
    max_length: Option<usize>,
    /// Refuse over-long inputs instead of truncating them with a warning.
    #[arg(long)]
    no_truncate: bool,
    /// Which end of an over-long input is cut: right (the end) or left (the start).
    #[arg(long)]
    truncation_direction: Option<String>,
    /// Longest input line in bytes; a longer line gets an error line of its own.
    #[arg(long, default_value_t = lines::DEFAULT_MAX_LINE_BYTES)]
    max_line_bytes: usize,
}

/// Writes a line to standard output: a closed pipe ends the command quietly (returns
/// Ok from it), any other write error is the command's error.
macro_rules! outln {
    ($out:expr, $($arg:tt)*) => {
        if let Err(e) = writeln!($out, $($arg)*) {
            return written(e);
        }
    };
}

/// What a failed write to stdout means: nothing when the reader went away, else an error.
fn written(e: std::io::Error) -> Result<()> {
    match e.kind() {
        std::io::ErrorKind::BrokenPipe => Ok(()),
        _ => Err(Error::Io {
            path: PathBuf::from("<stdout>"),
            source: e,
        }),
    }
}

/// A message on stderr; a closed stderr is ignored.
fn note(message: std::fmt::Arguments) {
    let _ = writeln!(std::io::stderr(), "{message}");
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => match run(*args) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                note(format_args!("bertrt: {e}"));
                ExitCode::from(2)
            }
        },
        Command::Bench(args) => match bench(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                note(format_args!("bertrt: {e}"));
                ExitCode::from(2)
            }
        },
        #[cfg(feature = "serve")]
        Command::Serve(args) => match serve(*args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                note(format_args!("bertrt: {e}"));
                ExitCode::from(2)
            }
        },
        Command::Inspect { file } => match inspect(&file) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                note(format_args!("bertrt: {e}"));
                ExitCode::from(2)
            }
        },
    }
}

/// The --device and --dtype pair.
fn target(device: &str, dtype: Option<&str>) -> Result<Target> {
    let device: Device = device.parse()?;
    let dtype = dtype.map(str::parse::<Dtype>).transpose()?;
    Ok(Target::new(device, dtype))
}

fn bench(args: BenchArgs) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let device = target(&args.device, args.dtype.as_deref())?;
    let named = match args.model.as_deref() {
        Some("bert-base") => Some(bertrt::synthetic::bert_base_config()),
        Some("minilm") => Some(bertrt::synthetic::minilm_config()),
        _ => None,
    };
    let dir = match (&named, &args.model) {
        (Some(config), Some(name)) => {
            let dir = fetch::cache_dir()?.join("synthetic").join(name);
            if !dir.join("config.json").is_file() {
                bertrt::synthetic::write_checkpoint(&dir, config, 7)?;
            }
            dir
        }
        _ => fetch::resolve_model(args.model.as_deref())?,
    };
    let points = args
        .shapes
        .split(',')
        .map(|point| {
            point
                .split_once('x')
                .and_then(|(b, l)| {
                    Some((
                        b.trim().parse::<usize>().ok()?,
                        l.trim().parse::<usize>().ok()?,
                    ))
                })
                .filter(|&(b, l)| b > 0 && l > 0)
                .ok_or_else(|| Error::Input(format!("--shapes: {point:?} is not BATCHxLEN")))
        })
        .collect::<Result<Vec<_>>>()?;
    let model = Model::load(&dir, Some(Head::Bert), device)?;
    if !args.json {
        outln!(
            out,
            "{}: {} layers, hidden {}, on {} in {}",
            dir.display(),
            model.config().num_hidden_layers,
            model.config().hidden_size,
            model.device(),
            model.dtype()
        );
        outln!(
            out,
            "{:>10} {:>12} {:>12} {:>14}",
            "shape",
            "median ms",
            "p90 ms",
            "tokens/s"
        );
    }
    for (b, l) in points {
        let ids = (0..b)
            .map(|r| {
                (0..l)
                    .map(|i| {
                        (1000 + (r * 7919 + i * 104_729) % 20_000) as i64
                            % model.config().vocab_size as i64
                    })
                    .collect()
            })
            .collect();
        let batch = bertrt::Batch::new(ids)?;
        model.forward(&batch, ForwardOptions::default())?;
        let mut times = Vec::with_capacity(args.iters.max(1));
        for _ in 0..args.iters.max(1) {
            let start = std::time::Instant::now();
            model.forward(&batch, ForwardOptions::default())?;
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        let p90 = times[(times.len() * 9 / 10).min(times.len() - 1)];
        let tps = (b * l) as f64 / (median / 1e3);
        if args.json {
            outln!(
                out,
                "{}",
                json!({"batch": b, "len": l, "median_ms": median, "p90_ms": p90, "tokens_per_s": tps, "device": model.device().to_string(), "dtype": model.dtype().to_string()})
            );
        } else {
            outln!(
                out,
                "{:>10} {median:>12.3} {p90:>12.3} {tps:>14.0}",
                format!("{b}x{l}")
            );
        }
    }
    Ok(())
}

#[cfg(feature = "serve")]
/// `NAME=PATH`, or a path (named by `fallback`, else by its last component).
fn model_spec(spec: &str, fallback: Option<&str>) -> (Option<String>, String) {
    match spec.split_once('=') {
        Some((name, path)) if !name.is_empty() && !name.contains('/') => {
            (Some(name.to_string()), path.to_string())
        }
        _ => (fallback.map(str::to_string), spec.to_string()),
    }
}

#[cfg(feature = "serve")]
fn serve(args: ServeArgs) -> Result<()> {
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match args.json_logs {
        true => logs.json().try_init(),
        false => logs.try_init(),
    };
    let device = target(&args.device, args.dtype.as_deref())?;
    let specs: Vec<Option<String>> = match args.model.is_empty() {
        true => vec![None],
        false => args.model.iter().cloned().map(Some).collect(),
    };
    let mut models: Vec<bertrt::serve::ServedModel> = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let fallback = if i == 0 {
            args.served_model_name.as_deref()
        } else {
            None
        };
        let (name, path) = match spec {
            Some(s) => {
                let (n, p) = model_spec(s, fallback);
                (n, Some(p))
            }
            None => (fallback.map(str::to_string), None),
        };
        let dir = fetch::resolve_model(path.as_deref())?;
        let name = name.unwrap_or_else(|| {
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| format!("model{i}"))
        });
        if models.iter().any(|m| m.name == name) {
            return Err(Error::Input(format!(
                "two models are named {name:?}: name them with --model NAME=PATH"
            )));
        }
        let text = bertrt::pipelines::TextModel::load(&dir, None, device)?;
        note(format_args!(
            "bertrt: serving {name} ({}; heads: {})",
            dir.display(),
            text.model().head_names()
        ));
        models.push(bertrt::serve::ServedModel {
            name,
            id: path.unwrap_or_else(|| dir.display().to_string()),
            text: std::sync::Arc::new(text),
        });
    }
    let options = bertrt::serve::ServeOptions {
        host: args.host,
        port: args.port,
        max_concurrent_requests: args.max_concurrent_requests,
        max_batch_tokens: args.max_batch_tokens,
        max_batch_requests: args.max_batch_requests,
        max_client_batch_size: args.max_client_batch_size,
        auto_truncate: args.auto_truncate,
        payload_limit: args.payload_limit,
        api_key: args.api_key,
        grace_period: std::time::Duration::from_secs(args.grace_period),
    };
    bertrt::serve::serve(options, models, |addr| {
        let mut out = std::io::stdout();
        let _ = writeln!(out, "listening on http://{addr}");
        let _ = out.flush();
    })
}

fn inspect(path: &std::path::Path) -> Result<()> {
    let mut out = BufWriter::new(std::io::stdout().lock());
    let file = bertrt::weights::PackedFile::open(path)?;
    let h = file.header();
    let config =
        serde_json::to_string_pretty(&h.config).map_err(|e| Error::Internal(e.to_string()))?;
    outln!(out, "file:   {} ({} bytes)", path.display(), file.len());
    outln!(out, "head:   {}", h.head);
    outln!(out, "dtype:  {}", json!(h.dtype).as_str().unwrap_or("?"));
    outln!(out, "config: {config}");
    outln!(out, "tensors ({}):", h.tensors.len());
    let mut params = 0usize;
    for t in &h.tensors {
        params += t.shape.iter().product::<usize>();
        outln!(
            out,
            "  {:<64} {:>16} {:>12} B  @{}",
            t.name,
            format!("{:?}", t.shape),
            t.nbytes,
            t.offset
        );
    }
    outln!(out, "files ({}):", h.files.len());
    for f in &h.files {
        outln!(out, "  {:<64} {:>12} B  @{}", f.name, f.nbytes, f.offset);
    }
    outln!(out, "parameters: {params}");
    out.flush().or_else(written)
}

/// The task options given on the command line, as the JSON object a task parses
/// (only the flags that were given).
fn task_options_json(a: &RunArgs) -> Result<Value> {
    let mut o = serde_json::Map::new();
    let mut put = |name: &str, value: Option<Value>| {
        if let Some(v) = value {
            o.insert(name.to_string(), v);
        }
    };
    let top_k = match a.top_k.as_deref() {
        None => None,
        Some("all") => Some(json!("all")),
        Some(k) => match k.parse::<usize>() {
            Ok(k) if k > 0 => Some(json!(k)),
            _ => {
                return Err(Error::Input(format!(
                    "--top-k: expected a positive number or all, got {k:?}"
                )))
            }
        },
    };
    put("top_k", top_k);
    put("targets", a.targets.as_ref().map(|t| json!(t)));
    put(
        "function_to_apply",
        a.function_to_apply.as_ref().map(|f| json!(f)),
    );
    put(
        "aggregation_strategy",
        a.aggregation.as_ref().map(|f| json!(f)),
    );
    put("ignore_labels", a.ignore_labels.as_ref().map(|t| json!(t)));
    put("stride", a.stride.map(|v| json!(v)));
    put("doc_stride", a.doc_stride.map(|v| json!(v)));
    put("max_answer_len", a.max_answer_len.map(|v| json!(v)));
    put("max_seq_len", a.max_seq_len.map(|v| json!(v)));
    put(
        "handle_impossible_answer",
        a.handle_impossible_answer.then_some(json!(true)),
    );
    put(
        "align_to_words",
        a.no_align_to_words.then_some(json!(false)),
    );
    put("max_new_tokens", a.max_new_tokens.map(|v| json!(v)));
    put("pooling", a.pooling.as_ref().map(|p| json!(p)));
    put("normalize", a.normalize.map(|v| json!(v)));
    put("max_length", a.max_length.map(|v| json!(v)));
    put("no_truncate", a.no_truncate.then_some(json!(true)));
    put(
        "truncation_direction",
        a.truncation_direction.as_ref().map(|d| json!(d)),
    );
    Ok(Value::Object(o))
}

/// Where input lines come from.
fn input_lines(a: &RunArgs, task: Option<Task>) -> Result<Box<dyn Read>> {
    if let Some(text) = &a.text {
        let line = match task {
            Some(Task::QuestionAnswering) => {
                json!({"question": text, "context": a.text_pair.clone().unwrap_or_default()})
            }
            _ => match &a.text_pair {
                Some(pair) => json!({"text": text, "text_pair": pair}),
                None => json!({"text": text}),
            },
        };
        return Ok(Box::new(std::io::Cursor::new(
            line.to_string().into_bytes(),
        )));
    }
    match &a.input {
        Some(path) => {
            let file = std::fs::File::open(path).map_err(|e| Error::Io {
                path: path.clone(),
                source: e,
            })?;
            Ok(Box::new(file))
        }
        None => Ok(Box::new(std::io::stdin())),
    }
}

/// Returns Ok(false) when some input line failed.
fn run(args: RunArgs) -> Result<bool> {
    let task = match args.task.as_str() {
        "raw" => None,
        other => Some(other.parse::<Task>()?),
    };
    if args.text.is_some() && args.input.is_some() {
        return Err(Error::Input(
            "--text and --input both give the input: use one".into(),
        ));
    }
    if args.text_pair.is_some() && args.text.is_none() {
        return Err(Error::Input("--text-pair goes with --text".into()));
    }
    let device = target(&args.device, args.dtype.as_deref())?;
    let mut task_options = task_options_json(&args)?;
    let raw_flags = args.head.is_some() || args.output_hidden_states || args.output_attentions;
    let options = match task {
        None if task_options.as_object().is_some_and(|o| !o.is_empty()) => {
            return Err(Error::Input(
                "task options were given with --task raw (raw mode takes --head, \
                 --output-hidden-states and --output-attentions)"
                    .into(),
            ))
        }
        None => None,
        Some(task) if raw_flags => {
            return Err(Error::Input(format!(
                "--head, --output-hidden-states and --output-attentions are for --task raw, \
                 not {}",
                task.name()
            )))
        }
        Some(task) => {
            if let Some(o) = task_options.as_object_mut() {
                o.insert("batch_size".into(), json!(args.batch_size.max(1)));
            }
            Some(TaskOptions::from_json(task, &task_options)?)
        }
    };
    let dir = fetch::resolve_model(args.model.as_deref())?;
    let chunk = args.batch_size.max(1) * 4;
    let model;
    let raw_mode;
    let pipeline;
    let answerer: &dyn lines::Answerer = match options {
        None => {
            let head = args.head.as_deref().map(str::parse::<Head>).transpose()?;
            model = Model::load(&dir, head, device)?;
            raw_mode = raw::Raw {
                model: &model,
                opts: ForwardOptions {
                    output_hidden_states: args.output_hidden_states,
                    output_attentions: args.output_attentions,
                    ..Default::default()
                },
            };
            &raw_mode
        }
        Some((options, input)) => {
            pipeline = Pipeline::load(&dir, options, device, input)?;
            &pipeline
        }
    };
    let progress = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {pos} lines, {per_sec} [{elapsed}]")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar
    });
    let stdout = BufWriter::new(std::io::stdout().lock());
    let all_ok = lines::run(
        answerer,
        input_lines(&args, task)?,
        stdout,
        lines::LineOptions {
            chunk,
            max_line_bytes: args.max_line_bytes,
        },
        |reply| {
            for w in &reply.warnings {
                note(format_args!("bertrt: warning: {w}"));
            }
            if let Some(bar) = &progress {
                bar.inc(1);
            }
        },
    )?;
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    Ok(all_ok)
}
