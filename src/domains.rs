//! Subcommands of the domain libraries. Each library owns its command-line arguments and its `run`; this module
//! only groups them under `caravan surveil`, `caravan cert`, `caravan ecg`, `caravan dicom` and `caravan monitor`.

use clap::Subcommand;
use std::process::ExitCode;

/// `caravan surveil`: outbreak detection (crate `surveillance`) and forecasting (crate `forecast`).
#[derive(Subcommand)]
pub enum Surveil {
    /// Aberration detection on a weekly series; prints `t,observed,upperbound,alarm` as CSV.
    Detect(Box<surveillance::cli::DetectArgs>),
    /// Fit an SIR/SEIR model to daily counts; prints one JSON object with estimates and 95 % intervals.
    Fit(forecast::cli::FitCmdOpts),
    /// Cori et al. (2013) R_t on sliding windows; prints CSV.
    Rt(forecast::cli::RtOpts),
    /// Fit, then forecast with an ensemble; prints CSV with intervals.
    Forecast(forecast::cli::ForecastOpts),
    /// Regional importation risk from mobility flows; prints CSV.
    Risk(forecast::cli::RiskOpts),
    /// Fit the metapopulation SEIR to the daily reports of every region; prints JSON.
    FitRegions(forecast::cli::FitRegionsOpts),
    /// Benchmark detection (Farrington flexible, EARS) against R `surveillance` side by side.
    Bench(surveillance::bench::BenchArgs),
    /// Benchmark the metapopulation SEIR solver against SciPy side by side, and the ensemble.
    BenchForecast(forecast::cli::BenchOpts),
}

pub fn surveil(cmd: Surveil) -> ExitCode {
    use forecast::cli::Command as F;
    use surveillance::cli::Command as S;
    match cmd {
        Surveil::Detect(a) => surveillance::cli::run(S::Detect(a)),
        Surveil::Bench(a) => surveillance::cli::run(S::Bench(a)),
        Surveil::Fit(a) => forecast::cli::run(F::Fit(a)),
        Surveil::Rt(a) => forecast::cli::run(F::Rt(a)),
        Surveil::Forecast(a) => forecast::cli::run(F::Forecast(a)),
        Surveil::Risk(a) => forecast::cli::run(F::Risk(a)),
        Surveil::FitRegions(a) => forecast::cli::run(F::FitRegions(a)),
        Surveil::BenchForecast(a) => forecast::cli::run(F::Bench(a)),
    }
}

/// `caravan cert`: health certificates (crate `certs`, with CertLogic rules from crate `certlogic`).
pub fn cert(cmd: certs::cli::Command) -> ExitCode {
    certs::cli::run(cmd)
}

/// `caravan rules`: CertLogic evaluation, country rules and their conformance suites (crate `certlogic`).
pub fn rules(cmd: certlogic::cli::Command) -> ExitCode {
    certlogic::cli::run(cmd)
}

/// `caravan ecg`: ECG reading, QRS detection, measurements (crate `ecg`).
pub fn ecg(cmd: ecg::cli::Command) -> ExitCode {
    ecg::cli::run(cmd)
}

/// `caravan dicom`: the DICOM archive, SCP and DICOMweb on their own, and the C-STORE benchmark (crate `imaging`).
pub fn dicom(cmd: imaging::cli::Command) -> ExitCode {
    imaging::cli::run(cmd)
}

/// `caravan monitor`: remote monitoring (crate `monitoring`); its soak re-executes `caravan monitor ingest`.
pub fn monitor(cmd: monitoring::cli::Command) -> ExitCode {
    monitoring::cli::run(cmd)
}
