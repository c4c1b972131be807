//! The crate's CLI on its own, for use before (or without) the `caravan` binary:
//! `cargo run --release -p ecg --example ecg -- bench crates/ecg/tests/data/mitdb/100`.

use clap::Parser;

#[derive(Parser)]
#[command(name = "ecg", about = "Caravan's ECG analyser")]
struct Cli {
    #[command(subcommand)]
    cmd: ecg::cli::Command,
}

fn main() -> std::process::ExitCode {
    ecg::cli::run(Cli::parse().cmd)
}
