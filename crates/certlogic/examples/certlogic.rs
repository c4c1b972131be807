//! A stand-alone front end for the crate's commands, for development and measurement before the `caravan` binary
//! mounts them: `cargo run -p certlogic --release --example certlogic -- bench tests/data/dcc-rules`.

use clap::Parser;

#[derive(Parser)]
#[command(about = "CertLogic evaluator, business rules and conformance runners")]
struct Cli {
    #[command(subcommand)]
    command: certlogic::cli::Command,
}

fn main() -> std::process::ExitCode {
    certlogic::cli::run(Cli::parse().command)
}
