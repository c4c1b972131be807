//! A standalone entry point to the imaging subcommands, for use before the lead wires them into
//! the `caravan` binary: `cargo run -p imaging --example imaging -- serve --data DIR`,
//! `cargo run --release -p imaging --example imaging -- bench`.

use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "imaging", about = "Caravan imaging: DICOM node and benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: imaging::cli::Command,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    imaging::cli::run(Cli::parse().command)
}
