//! Stand-alone runner for the `caravan cert` subcommands (for measurements before the lead wires them into the
//! `caravan` binary): `cargo run --release -p certs --example cert -- bench tests/data/dgc-testdata`.

use clap::Parser;

#[derive(Parser)]
#[command(name = "cert")]
struct Cli {
    #[command(subcommand)]
    command: certs::cli::Command,
}

fn main() -> std::process::ExitCode {
    certs::cli::run(Cli::parse().command)
}
