//! Stand-alone front end for the crate's subcommands, for trying them before the `caravan` binary wires them
//! (`caravan surveil ...`):
//!
//! ```text
//! cargo run --release -p surveillance --example surveil -- detect --method ears-c1 --range 8:20 input.csv
//! cargo run --release -p surveillance --example surveil -- bench
//! ```

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "surveil",
    about = "Outbreak detection (R surveillance-compatible)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: surveillance::cli::Command,
}

fn main() -> std::process::ExitCode {
    surveillance::cli::run(Cli::parse().cmd)
}
