//! `bench`: throughput of Farrington flexible (Noufaily settings) and EARS on many synthetic weekly series, with
//! R `surveillance` run side by side on a subset of the same series when `Rscript` and the package are installed.
//!
//! Each series is six years of weekly counts (Poisson around a seasonal mean, with a random level and occasional
//! outbreaks). Farrington flexible is fitted once per series, at its last week; EARS C1, C2 and C3 run over the
//! last `weeks` weeks of every series. R's timing is measured inside R (`system.time`), so its start-up is not
//! counted; the ratio compares time per fit (or per series for EARS).

use std::io::Write as _;
use std::process::Command as Process;
use std::time::Instant;

use clap::Args;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Poisson};
use rayon::prelude::*;

use crate::cli::CliError;
use crate::{detect, DetectionRow, EarsParams, FlexibleParams, Method, Series, ThresholdMethod};

/// Arguments of `bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Number of synthetic series.
    #[arg(long, default_value_t = 10_000)]
    pub series: usize,
    /// Weeks evaluated per series by EARS.
    #[arg(long, default_value_t = 52)]
    pub weeks: usize,
    /// Number of the series that R also runs (its time per fit is extrapolated from these).
    #[arg(long, default_value_t = 200)]
    pub r_series: usize,
    /// Skip R even when it is installed.
    #[arg(long)]
    pub no_r: bool,
    /// Seed of the synthetic data.
    #[arg(long, default_value_t = 2013)]
    pub seed: u64,
}

/// Weeks per synthetic series: five past years for b = 5 plus the current year.
const LEN: usize = 6 * 52;

/// Synthetic weekly counts: seasonal Poisson with a random level and a few outbreaks.
fn synth(n: usize, seed: u64) -> Result<Vec<Vec<f64>>, CliError> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let level: f64 = rng.gen_range(0.3f64..25.0).ln();
        let amp: f64 = rng.gen_range(0.0..0.8);
        let phase: f64 = rng.gen_range(0.0..std::f64::consts::TAU);
        let trend: f64 = rng.gen_range(-0.002..0.002);
        let mut y = Vec::with_capacity(LEN);
        let mut outbreak_left = 0usize;
        for t in 0..LEN {
            if outbreak_left == 0 && rng.gen_bool(0.01) {
                outbreak_left = rng.gen_range(2..6);
            }
            let boost = if outbreak_left > 0 {
                outbreak_left -= 1;
                3.0
            } else {
                1.0
            };
            let season = amp * (std::f64::consts::TAU * t as f64 / 52.0 + phase).sin();
            let mu = (level + season + trend * t as f64).exp() * boost;
            let d = Poisson::new(mu).map_err(|e| CliError::Bench(e.to_string()))?;
            y.push(d.sample(&mut rng));
        }
        out.push(y);
    }
    Ok(out)
}

fn noufaily() -> Method {
    Method::FarringtonFlexible(FlexibleParams {
        threshold_method: ThresholdMethod::NbPlugin,
        ..FlexibleParams::noufaily()
    })
}

type Rows = Vec<DetectionRow>;

fn run_all(
    series: &[Series],
    methods: &[Method],
    range: (usize, usize),
    parallel: bool,
) -> Result<Vec<Rows>, CliError> {
    let one = |s: &Series| -> Result<Vec<Rows>, CliError> {
        methods
            .iter()
            .map(|m| detect(s, m, range.0..=range.1).map_err(CliError::from))
            .collect()
    };
    let nested: Result<Vec<Vec<Rows>>, CliError> = if parallel {
        series.par_iter().map(one).collect()
    } else {
        series.iter().map(one).collect()
    };
    Ok(nested?.into_iter().flatten().collect())
}

/// R's results on the subset: seconds for Farrington flexible, its bounds and alarms, seconds for EARS.
struct RResult {
    ff_seconds: f64,
    ff_upper: Vec<Option<f64>>,
    ff_alarm: Vec<bool>,
    ears_seconds: f64,
}

const R_SCRIPT: &str = r#"
args <- commandArgs(TRUE)
suppressMessages(library(surveillance))
m <- as.matrix(read.csv(args[1], header = TRUE))
weeks <- as.integer(args[2])
n <- nrow(m)
s <- sts(observed = m, frequency = 52, start = c(2000, 1))
ctl <- list(range = n, b = 5, w = 3, noPeriods = 10, weightsThreshold = 2.58, pastWeeksNotIncluded = 26,
            pThresholdTrend = 1, alpha = 0.05, thresholdMethod = "nbPlugin")
tt <- system.time(r <- suppressWarnings(farringtonFlexible(s, control = ctl)))[["elapsed"]]
cat("ff_seconds", tt, "\n")
cat("ff_upper", ifelse(is.na(upperbound(r)[1, ]), "NA", sprintf("%.17g", upperbound(r)[1, ])), "\n")
cat("ff_alarm", as.integer(alarms(r)[1, ]), "\n")
rng <- (n - weeks + 1):n
te <- system.time(for (meth in c("C1", "C2", "C3")) e <- earsC(s, control = list(range = rng, method = meth)))[["elapsed"]]
cat("ears_seconds", te, "\n")
"#;

/// Runs R on the first `k` series; `Ok(None)` with a reason when R or the package is missing.
fn run_r(data: &[Vec<f64>], weeks: usize) -> Result<Result<RResult, String>, CliError> {
    let probe = Process::new("Rscript")
        .args(["-e", "suppressMessages(library(surveillance))"])
        .env("TZ", "UTC")
        .output();
    match probe {
        Err(e) => return Ok(Err(format!("Rscript not runnable ({e})"))),
        Ok(o) if !o.status.success() => {
            return Ok(Err("R package surveillance not installed".into()))
        }
        Ok(_) => {}
    }
    let dir = std::env::temp_dir().join(format!("surveillance-bench-{}", std::process::id()));
    let io = |e: std::io::Error| CliError::Bench(format!("temporary files: {e}"));
    std::fs::create_dir_all(&dir).map_err(io)?;
    let csv = dir.join("series.csv");
    let script = dir.join("bench.R");
    let mut text = (1..=data.len())
        .map(|i| format!("s{i}"))
        .collect::<Vec<_>>()
        .join(",");
    text.push('\n');
    for t in 0..LEN {
        let row: Vec<String> = data.iter().map(|y| format!("{}", y[t])).collect();
        text.push_str(&row.join(","));
        text.push('\n');
    }
    std::fs::write(&csv, text).map_err(io)?;
    std::fs::write(&script, R_SCRIPT).map_err(io)?;
    let out = Process::new("Rscript")
        .arg(&script)
        .arg(&csv)
        .arg(weeks.to_string())
        .env("TZ", "UTC")
        .output()
        .map_err(|e| CliError::Bench(format!("running Rscript: {e}")))?;
    // Best effort: the files are in a per-process temporary folder.
    let _ = std::fs::remove_dir_all(&dir);
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Ok(Err(format!(
            "R failed: {}",
            err.lines().last().unwrap_or("")
        )));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| -> Option<Vec<String>> {
        stdout.lines().find_map(|l| {
            let mut it = l.split_whitespace();
            (it.next() == Some(name)).then(|| it.map(str::to_string).collect())
        })
    };
    let parse = || -> Option<RResult> {
        let ff_seconds = field("ff_seconds")?.first()?.parse().ok()?;
        let ears_seconds = field("ears_seconds")?.first()?.parse().ok()?;
        let ff_upper = field("ff_upper")?.iter().map(|v| v.parse().ok()).collect();
        let ff_alarm = field("ff_alarm")?.iter().map(|v| v == "1").collect();
        Some(RResult {
            ff_seconds,
            ff_upper,
            ff_alarm,
            ears_seconds,
        })
    };
    Ok(parse().ok_or_else(|| format!("unexpected R output: {stdout}")))
}

/// Runs the benchmark and writes a report into `out`.
pub fn run(args: &BenchArgs, out: &mut Vec<u8>) -> Result<(), CliError> {
    if args.series == 0 || args.weeks == 0 || args.weeks > LEN - 11 {
        return Err(CliError::Usage(format!(
            "--series must be positive and --weeks between 1 and {}",
            LEN - 11
        )));
    }
    let w = |out: &mut Vec<u8>, s: String| writeln!(out, "{s}").map_err(CliError::Output);
    let data = synth(args.series, args.seed)?;
    let series: Vec<Series> = data
        .iter()
        .map(|y| Series::new(y.clone()))
        .collect::<Result<_, _>>()?;
    let threads = rayon::current_num_threads();
    w(
        out,
        format!(
            "synthetic weekly series: {} × {LEN} weeks (seed {})",
            args.series, args.seed
        ),
    )?;

    // Farrington flexible, Noufaily settings, one fit per series at its last week.
    let ff = [noufaily()];
    let t0 = Instant::now();
    let ff_rows = run_all(&series, &ff, (LEN, LEN), false)?;
    let ff_single = t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let ff_par = run_all(&series, &ff, (LEN, LEN), true)?;
    let ff_parallel = t0.elapsed().as_secs_f64();
    if ff_par != ff_rows {
        return Err(CliError::Bench(
            "parallel and sequential results differ".into(),
        ));
    }
    let alarms = ff_rows.iter().filter(|r| r[0].alarm).count();
    let per_fit = ff_single.min(ff_parallel) / args.series as f64;
    w(
        out,
        format!(
            "farrington-flexible (Noufaily: b=5 w=3 noPeriods=10 nbPlugin): {} fits in {ff_single:.3} s on 1 thread, \
             {ff_parallel:.3} s on {threads} threads ({:.1} µs per fit; {alarms} alarms)",
            args.series,
            per_fit * 1e6
        ),
    )?;

    // EARS C1, C2, C3 over the last `weeks` weeks.
    let ears = [
        Method::EarsC1(EarsParams::default()),
        Method::EarsC2(EarsParams::default()),
        Method::EarsC3(EarsParams::default()),
    ];
    let range = (LEN - args.weeks + 1, LEN);
    let t0 = Instant::now();
    let e1 = run_all(&series, &ears, range, false)?;
    let ears_single = t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let e2 = run_all(&series, &ears, range, true)?;
    let ears_parallel = t0.elapsed().as_secs_f64();
    if e1 != e2 {
        return Err(CliError::Bench(
            "parallel and sequential EARS results differ".into(),
        ));
    }
    let ears_best = ears_single.min(ears_parallel);
    w(
        out,
        format!(
            "ears C1+C2+C3: {} series × {} weeks in {ears_single:.4} s on 1 thread, {ears_parallel:.4} s on {threads} threads",
            args.series, args.weeks
        ),
    )?;

    if args.no_r {
        w(out, "R side: skipped (--no-r)".into())?;
        return Ok(());
    }
    let k = args.r_series.min(args.series);
    match run_r(&data[..k], args.weeks)? {
        Err(reason) => w(out, format!("R side: skipped ({reason})"))?,
        Ok(r) => {
            // Agreement of the fits both sides made.
            let mut same_alarm = 0;
            let mut max_rel = 0.0f64;
            let mut same_na = 0;
            for (i, rows) in ff_rows.iter().take(k).enumerate() {
                let ours = &rows[0];
                if r.ff_alarm.get(i) == Some(&ours.alarm) {
                    same_alarm += 1;
                }
                match (ours.upperbound, r.ff_upper.get(i).copied().flatten()) {
                    (Some(a), Some(b)) => {
                        same_na += 1;
                        max_rel = max_rel.max((a - b).abs() / b.abs().max(1e-12));
                    }
                    (None, None) => same_na += 1,
                    _ => {}
                }
            }
            let r_per_fit = r.ff_seconds / k as f64;
            w(
                out,
                format!(
                    "R surveillance farringtonFlexible: {k} fits in {:.3} s ({:.2} ms per fit); Rust is {:.0}× faster \
                     per fit; 10,000 fits would take R {:.0} s and Rust {:.3} s",
                    r.ff_seconds,
                    r_per_fit * 1e3,
                    r_per_fit / per_fit,
                    r_per_fit * 1e4,
                    per_fit * 1e4
                ),
            )?;
            w(
                out,
                format!(
                    "agreement on those {k} fits: alarms identical {same_alarm}/{k}, bound present/NA identical \
                     {same_na}/{k}, max relative bound difference {max_rel:.2e}"
                ),
            )?;
            let r_ears_per = r.ears_seconds / k as f64;
            let ours_ears_per = ears_best / args.series as f64;
            w(
                out,
                format!(
                    "R surveillance earsC C1+C2+C3: {k} series × {} weeks in {:.3} s; Rust is {:.0}× faster per series",
                    args.weeks,
                    r.ears_seconds,
                    r_ears_per / ours_ears_per
                ),
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn small_bench_runs_and_reports() {
        let args = BenchArgs {
            series: 30,
            weeks: 10,
            r_series: 0,
            no_r: true,
            seed: 1,
        };
        let mut out = Vec::new();
        run(&args, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("30 fits"), "{text}");
        assert!(text.contains("30 series × 10 weeks"), "{text}");
        assert!(text.contains("R side: skipped"), "{text}");
        let bad = BenchArgs { weeks: 0, ..args };
        assert!(run(&bad, &mut Vec::new()).is_err());
    }

    #[test]
    fn synthetic_data_is_reproducible() {
        assert_eq!(synth(3, 9).unwrap(), synth(3, 9).unwrap());
        assert_ne!(synth(3, 9).unwrap(), synth(3, 10).unwrap());
    }
}
