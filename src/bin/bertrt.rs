//! The bertrt command line: a thin layer over the library.

use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use bertrt::{fetch, raw, Device, ForwardOptions, Head, Model};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "bertrt",
    version,
    about = "BERT inference: every Hugging Face BERT head"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Read JSON lines on stdin, answer one JSON line each on stdout.
    Run(RunArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// Checkpoint folder (config.json + model.safetensors). Default: all-MiniLM-L6-v2,
    /// fetched into the user cache on first use.
    #[arg(long)]
    model: Option<PathBuf>,
    /// What to compute. `raw`: every head output as tensors.
    #[arg(long, default_value = "raw")]
    task: String,
    /// Head: bert, pretraining, lm, mlm, nsp, seq-cls, multiple-choice, token-cls, qa, or
    /// a Hugging Face class name. Default: the config's architectures[0].
    #[arg(long)]
    head: Option<String>,
    /// Also return `hidden_states` (embeddings and every layer).
    #[arg(long)]
    output_hidden_states: bool,
    /// Also return `attentions` (every layer's probabilities).
    #[arg(long)]
    output_attentions: bool,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => match run(args) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("bertrt: {e}");
                ExitCode::from(2)
            }
        },
    }
}

/// Returns Ok(false) when some input line failed.
fn run(args: RunArgs) -> bertrt::Result<bool> {
    if args.task != "raw" {
        return Err(bertrt::Error::Unsupported(format!(
            "task {:?} is not implemented yet; available: raw",
            args.task
        )));
    }
    let head = args.head.as_deref().map(str::parse::<Head>).transpose()?;
    let device: Device = args.device.parse()?;
    let dir = match args.model {
        Some(dir) => dir,
        None => fetch::default_model()?,
    };
    let model = Model::load(&dir, head, device)?;
    let opts = ForwardOptions {
        output_hidden_states: args.output_hidden_states,
        output_attentions: args.output_attentions,
    };
    let stdin = std::io::stdin().lock();
    let mut stdout = BufWriter::new(std::io::stdout().lock());
    let mut all_ok = true;
    for (n, line) in stdin.split(b'\n').enumerate() {
        let line = line.map_err(|e| bertrt::Error::Io {
            path: PathBuf::from("<stdin>"),
            source: e,
        })?;
        let (value, ok) = match std::str::from_utf8(&line) {
            Ok(text) if text.trim().is_empty() => continue,
            Ok(text) => raw::answer(&model, text, opts),
            Err(_) => (
                raw::error_line(&format!("line {}: not valid UTF-8", n + 1)),
                false,
            ),
        };
        all_ok &= ok;
        let written = stdout
            .write_all(value.as_bytes())
            .and_then(|()| stdout.write_all(b"\n"))
            .and_then(|()| stdout.flush());
        if let Err(e) = written {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(all_ok);
            }
            return Err(bertrt::Error::Io {
                path: PathBuf::from("<stdout>"),
                source: e,
            });
        }
    }
    Ok(all_ok)
}
