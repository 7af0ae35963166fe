//! `convert IN OUT`: packs a Hugging Face BERT checkpoint folder into one bertrt weights
//! file (Q, K, V fused; tied weights once; every tensor 256-byte aligned with a checksum;
//! config, tokenizer and pooling files inside). `convert --verify FILE` checks one as the
//! engine does before loading it.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use bertrt::convert::{convert, ConvertOptions};
use bertrt::weights::packed::PackedDtype;
use bertrt::weights::PackedFile;
use bertrt::Head;
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "convert",
    version,
    about = "Pack a BERT checkpoint into one bertrt file"
)]
struct Args {
    /// Checkpoint folder (or a packed file to re-pack).
    input: PathBuf,
    /// Output file.
    output: Option<PathBuf>,
    /// Storage dtype: f32, f16 or bf16.
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Head to pack for (default: the config's architectures[0]).
    #[arg(long)]
    head: Option<String>,
    /// Replace an existing output file.
    #[arg(long)]
    force: bool,
    /// Check INPUT, a packed file: header, layout (no overlapping entries, unique names, a
    /// known head) and every checksum.
    #[arg(long)]
    verify: bool,
}

/// A message on stderr; a closed stderr is ignored.
fn note(message: std::fmt::Arguments) {
    let _ = writeln!(std::io::stderr(), "{message}");
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            note(format_args!("convert: {e}"));
            ExitCode::from(1)
        }
    }
}

fn run(args: Args) -> bertrt::Result<()> {
    if args.verify {
        let file = PackedFile::open(&args.input)?;
        let h = file.header();
        let line = writeln!(
            std::io::stdout(),
            "{}: ok ({} tensors, {} files, {}, {} bytes)",
            args.input.display(),
            h.tensors.len(),
            h.files.len(),
            serde_json_dtype(h.dtype),
            file.len()
        );
        // A reader that went away is not an error; a full disk is.
        return match line {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(bertrt::Error::Io {
                path: "<stdout>".into(),
                source: e,
            }),
            _ => Ok(()),
        };
    }
    let output = args.output.ok_or_else(|| {
        bertrt::Error::Input("missing OUTPUT: convert IN OUT (or convert --verify FILE)".into())
    })?;
    let opts = ConvertOptions {
        dtype: args.dtype.parse()?,
        head: args.head.as_deref().map(str::parse::<Head>).transpose()?,
        force: args.force,
    };
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let written = convert(&args.input, &output, opts, &mut |done, total| {
        if let Some(bar) = &bar {
            bar.set_length(total);
            bar.set_position(done);
        }
    })?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    note(format_args!(
        "convert: wrote {} ({written} bytes)",
        output.display()
    ));
    Ok(())
}

fn serde_json_dtype(d: PackedDtype) -> &'static str {
    match d {
        PackedDtype::F32 => "f32",
        PackedDtype::F16 => "f16",
        PackedDtype::Bf16 => "bf16",
    }
}
