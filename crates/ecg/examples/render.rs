//! Renders an ECG file to SVG: `cargo run -p ecg --example render -- FILE > out.svg`.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(path) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: render FILE");
        return ExitCode::FAILURE;
    };
    ecg::cli::run(ecg::cli::Command::Render {
        file: path,
        output: None,
    })
}
