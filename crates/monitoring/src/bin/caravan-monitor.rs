//! Stand-alone host of the `monitor` commands (for this crate's tests and for use without the node binary).

use clap::Parser;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "caravan-monitor",
    about = "Caravan remote monitoring: simulate, soak, ingest, NEWS2"
)]
struct Cli {
    #[command(subcommand)]
    command: monitoring::cli::Command,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    // This binary mounts the commands at the top level: no argument prefix for the soak's re-exec.
    monitoring::cli::run_with_prefix(Cli::parse().command, &[])
}
