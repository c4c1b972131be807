//! Stand-alone runner for the forecasting commands (the `caravan` binary wires the same `Command` under
//! `caravan surveil`): `cargo run --release -p forecast --example forecast_cli -- bench`.

use clap::Parser;

#[derive(Parser)]
#[command(name = "forecast", about = "Caravan epidemic forecasting")]
struct Cli {
    #[command(subcommand)]
    cmd: forecast::cli::Command,
}

fn main() -> std::process::ExitCode {
    forecast::cli::run(Cli::parse().cmd)
}
