//! `convert IN OUT`: packs a Hugging Face checkpoint into one bertrt weights file.
//!
//! The packed format is not implemented yet; the tool says so instead of writing anything.

fn main() -> std::process::ExitCode {
    eprintln!("convert: the packed weights format is not implemented yet; load the checkpoint folder directly with `bertrt run --model DIR`");
    std::process::ExitCode::from(2)
}
