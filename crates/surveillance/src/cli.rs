//! Command line: `detect` runs one method on a CSV series, `bench` measures throughput against R.
//!
//! Options carry R's argument names in kebab-case and default to R's defaults for the chosen method; an option
//! that the method does not have is rejected rather than silently ignored.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use chrono::NaiveDate;
use clap::{Args, Subcommand, ValueEnum};
use thiserror::Error;

use crate::{
    detect, BayesParams, CdcParams, CusumParams, CusumReference, CusumTrans, DetectionRow,
    EarsParams, FarringtonParams, FlexibleParams, GlrDirection, GlrParams, Method, PowerTrans,
    Series, ThresholdMethod,
};

/// The crate's subcommands (wired by the binary as `caravan surveil ...`).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run an aberration-detection method on a weekly series and print `t,observed,upperbound,alarm` as CSV.
    Detect(Box<DetectArgs>),
    /// Time Farrington flexible and EARS on many synthetic series, with R `surveillance` side by side when
    /// `Rscript` and the package are installed.
    Bench(crate::bench::BenchArgs),
}

/// Detection methods on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MethodName {
    /// EARS C1.
    EarsC1,
    /// EARS C2.
    EarsC2,
    /// EARS C3 as R surveillance computes it.
    EarsC3,
    /// EARS C3 as published.
    EarsC3Textbook,
    /// Farrington et al. (1996), algo.farrington.
    Farrington,
    /// farringtonFlexible (Noufaily et al. 2013 with its options).
    FarringtonFlexible,
    /// algo.cusum.
    Cusum,
    /// algo.bayes.
    Bayes,
    /// CDC historical limits, algo.cdc (observed column = the current 4-week total).
    Cdc,
    /// Negative binomial GLR detector, algo.glrnb (upperbound column = the GLR statistic).
    Glrnb,
}

/// `--dir` values for glrnb.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DirArg {
    /// Detect an increase.
    #[value(name = "inc")]
    Inc,
    /// Detect a decrease.
    #[value(name = "dec")]
    Dec,
}

/// `--threshold-method` values (R's spelling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ThresholdArg {
    /// Normal approximation on the power scale.
    #[value(name = "delta")]
    Delta,
    /// Negative binomial quantile at the upper limit of the mean.
    #[value(name = "muan")]
    Muan,
    /// Negative binomial plug-in quantile.
    #[value(name = "nbPlugin", alias = "nbplugin")]
    NbPlugin,
}

/// `--trans` values for CUSUM (R's spelling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TransArg {
    /// (y − m)/√m.
    #[value(name = "standard")]
    Standard,
    /// Rossi's transform.
    #[value(name = "rossi")]
    Rossi,
    /// Anscombe residual.
    #[value(name = "anscombe")]
    Anscombe,
    /// Negative binomial Pearson residual (dispersion from `--alpha`).
    #[value(name = "pearsonNegBin")]
    PearsonNegBin,
}

/// `--powertrans` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PowerArg {
    /// 2/3 power.
    #[value(name = "2/3")]
    TwoThirds,
    /// Square root.
    #[value(name = "1/2")]
    Half,
    /// No transformation.
    #[value(name = "none")]
    None,
}

/// Arguments of `detect`.
#[derive(Debug, Clone, Args)]
pub struct DetectArgs {
    /// Detection method.
    #[arg(long, value_enum)]
    pub method: MethodName,
    /// Weeks to evaluate, 1-based and inclusive: FIRST:LAST.
    #[arg(long, value_name = "FIRST:LAST")]
    pub range: String,
    /// CSV file with a column `observed` (one row per week); an optional `epoch` (or `date`) column of ISO dates
    /// makes farrington-flexible pick reference weeks by calendar, as R does for dated series.
    pub input: PathBuf,
    /// Number of past years (farrington, farrington-flexible, bayes, cdc).
    #[arg(long)]
    pub b: Option<usize>,
    /// Window half-width (farrington, farrington-flexible, bayes).
    #[arg(long)]
    pub w: Option<usize>,
    /// Significance level (all but cusum, where it is the pearsonNegBin dispersion).
    #[arg(long, allow_negative_numbers = true)]
    pub alpha: Option<f64>,
    /// Number of seasonal periods (farrington-flexible).
    #[arg(long)]
    pub no_periods: Option<usize>,
    /// Reweighting threshold on Anscombe residuals (farrington-flexible).
    #[arg(long, allow_negative_numbers = true)]
    pub weights_threshold: Option<f64>,
    /// Recent weeks left out of the fit (farrington-flexible; default w).
    #[arg(long)]
    pub past_weeks_not_included: Option<usize>,
    /// p-value below which the trend is kept (farrington-flexible).
    #[arg(long, allow_negative_numbers = true)]
    pub p_threshold_trend: Option<f64>,
    /// Threshold method (farrington-flexible).
    #[arg(long, value_enum)]
    pub threshold_method: Option<ThresholdArg>,
    /// Reference value k (cusum).
    #[arg(long, allow_negative_numbers = true)]
    pub k: Option<f64>,
    /// Decision interval h (cusum).
    #[arg(long, allow_negative_numbers = true)]
    pub h: Option<f64>,
    /// Reference mean m (cusum: a number or glm; default the mean before the range) or periods each side (cdc).
    #[arg(long, allow_negative_numbers = true)]
    pub m: Option<String>,
    /// Transformation (cusum).
    #[arg(long, value_enum)]
    pub trans: Option<TransArg>,
    /// Use the last w weeks of the current year (bayes): true or false.
    #[arg(long, action = clap::ArgAction::Set)]
    pub act_y: Option<bool>,
    /// Baseline length (EARS).
    #[arg(long)]
    pub baseline: Option<usize>,
    /// Minimum baseline standard deviation (EARS).
    #[arg(long, allow_negative_numbers = true)]
    pub min_sigma: Option<f64>,
    /// Power transformation (farrington, farrington-flexible delta).
    #[arg(long, value_enum)]
    pub powertrans: Option<PowerArg>,
    /// Allow a time trend (farrington, farrington-flexible): true or false.
    #[arg(long, action = clap::ArgAction::Set)]
    pub trend: Option<bool>,
    /// Down-weight past outbreaks (farrington, farrington-flexible): true or false.
    #[arg(long, action = clap::ArgAction::Set)]
    pub reweight: Option<bool>,
    /// Alarm threshold of the GLR statistic (glrnb, `c.ARL`).
    #[arg(long, allow_negative_numbers = true)]
    pub c_arl: Option<f64>,
    /// Direction of the change (glrnb).
    #[arg(long, value_enum)]
    pub dir: Option<DirArg>,
    /// Periods per year.
    #[arg(long, default_value_t = 52)]
    pub freq: usize,
}

/// Errors of the command line.
#[derive(Debug, Error)]
pub enum CliError {
    /// The input file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The CSV is malformed.
    #[error("{path}: {reason}")]
    Csv {
        /// File.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// An argument is malformed or does not apply.
    #[error("{0}")]
    Usage(String),
    /// Detection failed.
    #[error(transparent)]
    Detect(#[from] crate::Error),
    /// Writing the output failed.
    #[error("cannot write output: {0}")]
    Output(std::io::Error),
    /// The benchmark failed.
    #[error("benchmark: {0}")]
    Bench(String),
}

/// Runs a subcommand, printing results to stdout and one error line to stderr.
pub fn run(cmd: Command) -> ExitCode {
    let mut out = Vec::new();
    match run_to(cmd, &mut out) {
        Ok(()) => {
            let mut stdout = std::io::stdout().lock();
            if stdout.write_all(&out).and_then(|_| stdout.flush()).is_err() {
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a subcommand writing its output into `out`. On error nothing is written.
pub fn run_to(cmd: Command, out: &mut Vec<u8>) -> Result<(), CliError> {
    match cmd {
        Command::Detect(args) => {
            let text = std::fs::read_to_string(&args.input).map_err(|source| CliError::Io {
                path: args.input.display().to_string(),
                source,
            })?;
            let rows = detect_csv(&args, &text)?;
            out.extend_from_slice(format_rows(&rows).as_bytes());
            Ok(())
        }
        Command::Bench(args) => crate::bench::run(&args, out),
    }
}

/// Parses `FIRST:LAST`.
fn parse_range(s: &str) -> Result<(usize, usize), CliError> {
    let bad = || {
        CliError::Usage(format!(
            "--range must be FIRST:LAST with 1 ≤ FIRST ≤ LAST (got {s:?})"
        ))
    };
    let (a, b) = s.split_once(':').ok_or_else(bad)?;
    let first: usize = a.trim().parse().map_err(|_| bad())?;
    let last: usize = b.trim().parse().map_err(|_| bad())?;
    if first == 0 || first > last {
        return Err(bad());
    }
    Ok((first, last))
}

/// Reads the `observed` column (and optional `epoch`/`date` column) of a CSV text.
pub fn parse_series(path: &str, text: &str, freq: usize) -> Result<Series, CliError> {
    let csv_err = |reason: String| CliError::Csv {
        path: path.to_string(),
        reason,
    };
    let mut rdr = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = rdr.headers().map_err(|e| csv_err(e.to_string()))?.clone();
    let obs_col = headers
        .iter()
        .position(|h| h == "observed")
        .ok_or_else(|| csv_err("no column named `observed`".into()))?;
    let date_col = headers.iter().position(|h| h == "epoch" || h == "date");
    let mut y = Vec::new();
    let mut dates = Vec::new();
    let mut all_dates = date_col.is_some();
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| csv_err(e.to_string()))?;
        let cell = rec.get(obs_col).unwrap_or("");
        let v: f64 = cell.parse().map_err(|_| {
            csv_err(format!(
                "row {} (t = {}): observed {cell:?} is not a number",
                i + 2,
                i + 1
            ))
        })?;
        y.push(v);
        if let Some(c) = date_col {
            match rec
                .get(c)
                .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
            {
                Some(d) => dates.push(d),
                None => all_dates = false,
            }
        }
    }
    let series = Series::new(y)?.with_frequency(freq)?;
    // An epoch column of plain week numbers (as in the agona data) is not a calendar: it is ignored.
    Ok(if all_dates && !dates.is_empty() {
        series.with_dates(dates)?
    } else {
        series
    })
}

/// Builds the method from the options, rejecting options the method does not take.
pub fn build_method(a: &DetectArgs) -> Result<Method, CliError> {
    let given: Vec<(&str, bool)> = vec![
        ("--b", a.b.is_some()),
        ("--w", a.w.is_some()),
        ("--alpha", a.alpha.is_some()),
        ("--no-periods", a.no_periods.is_some()),
        ("--weights-threshold", a.weights_threshold.is_some()),
        (
            "--past-weeks-not-included",
            a.past_weeks_not_included.is_some(),
        ),
        ("--p-threshold-trend", a.p_threshold_trend.is_some()),
        ("--threshold-method", a.threshold_method.is_some()),
        ("--k", a.k.is_some()),
        ("--h", a.h.is_some()),
        ("--m", a.m.is_some()),
        ("--trans", a.trans.is_some()),
        ("--act-y", a.act_y.is_some()),
        ("--baseline", a.baseline.is_some()),
        ("--min-sigma", a.min_sigma.is_some()),
        ("--powertrans", a.powertrans.is_some()),
        ("--trend", a.trend.is_some()),
        ("--reweight", a.reweight.is_some()),
        ("--c-arl", a.c_arl.is_some()),
        ("--dir", a.dir.is_some()),
    ];
    let allowed: &[&str] = match a.method {
        MethodName::EarsC1
        | MethodName::EarsC2
        | MethodName::EarsC3
        | MethodName::EarsC3Textbook => &["--alpha", "--baseline", "--min-sigma"],
        MethodName::Farrington => &[
            "--b",
            "--w",
            "--alpha",
            "--powertrans",
            "--trend",
            "--reweight",
        ],
        MethodName::FarringtonFlexible => &[
            "--b",
            "--w",
            "--alpha",
            "--no-periods",
            "--weights-threshold",
            "--past-weeks-not-included",
            "--p-threshold-trend",
            "--threshold-method",
            "--powertrans",
            "--trend",
            "--reweight",
        ],
        MethodName::Cusum => &["--k", "--h", "--m", "--trans", "--alpha"],
        MethodName::Bayes => &["--b", "--w", "--alpha", "--act-y"],
        MethodName::Cdc => &["--b", "--m", "--alpha"],
        MethodName::Glrnb => &["--c-arl", "--dir"],
    };
    if let Some((name, _)) = given.iter().find(|(n, g)| *g && !allowed.contains(n)) {
        let method = a
            .method
            .to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_default();
        return Err(CliError::Usage(format!(
            "option {name} does not apply to method {method}"
        )));
    }
    let power = |p: Option<PowerArg>, d: PowerTrans| match p {
        Some(PowerArg::TwoThirds) => PowerTrans::TwoThirds,
        Some(PowerArg::Half) => PowerTrans::Half,
        Some(PowerArg::None) => PowerTrans::None,
        None => d,
    };
    let ears = || {
        let d = EarsParams::default();
        EarsParams {
            baseline: a.baseline.unwrap_or(d.baseline),
            min_sigma: a.min_sigma.unwrap_or(d.min_sigma),
            alpha: a.alpha.unwrap_or(d.alpha),
        }
    };
    Ok(match a.method {
        MethodName::EarsC1 => Method::EarsC1(ears()),
        MethodName::EarsC2 => Method::EarsC2(ears()),
        MethodName::EarsC3 => Method::EarsC3(ears()),
        MethodName::EarsC3Textbook => Method::EarsC3Textbook(ears()),
        MethodName::Farrington => {
            let d = FarringtonParams::default();
            Method::Farrington(FarringtonParams {
                b: a.b.unwrap_or(d.b),
                w: a.w.unwrap_or(d.w),
                alpha: a.alpha.unwrap_or(d.alpha),
                trend: a.trend.unwrap_or(d.trend),
                reweight: a.reweight.unwrap_or(d.reweight),
                powertrans: power(a.powertrans, d.powertrans),
                ..d
            })
        }
        MethodName::FarringtonFlexible => {
            let d = FlexibleParams::default();
            Method::FarringtonFlexible(FlexibleParams {
                b: a.b.unwrap_or(d.b),
                w: a.w.unwrap_or(d.w),
                alpha: a.alpha.unwrap_or(d.alpha),
                no_periods: a.no_periods.unwrap_or(d.no_periods),
                weights_threshold: a.weights_threshold.unwrap_or(d.weights_threshold),
                past_weeks_not_included: a.past_weeks_not_included.or(d.past_weeks_not_included),
                p_threshold_trend: a.p_threshold_trend.unwrap_or(d.p_threshold_trend),
                threshold_method: match a.threshold_method {
                    Some(ThresholdArg::Delta) => ThresholdMethod::Delta,
                    Some(ThresholdArg::Muan) => ThresholdMethod::Muan,
                    Some(ThresholdArg::NbPlugin) => ThresholdMethod::NbPlugin,
                    None => d.threshold_method,
                },
                trend: a.trend.unwrap_or(d.trend),
                reweight: a.reweight.unwrap_or(d.reweight),
                powertrans: power(a.powertrans, d.powertrans),
                ..d
            })
        }
        MethodName::Cusum => {
            let d = CusumParams::default();
            let trans = match a.trans {
                None | Some(TransArg::Standard) => CusumTrans::Standard,
                Some(TransArg::Rossi) => CusumTrans::Rossi,
                Some(TransArg::Anscombe) => CusumTrans::Anscombe,
                Some(TransArg::PearsonNegBin) => {
                    CusumTrans::PearsonNegBin(a.alpha.ok_or_else(|| {
                        CliError::Usage(
                            "--trans pearsonNegBin needs --alpha (the dispersion)".into(),
                        )
                    })?)
                }
            };
            if a.alpha.is_some() && !matches!(trans, CusumTrans::PearsonNegBin(_)) {
                return Err(CliError::Usage(
                    "--alpha applies to cusum only with --trans pearsonNegBin".into(),
                ));
            }
            Method::Cusum(CusumParams {
                k: a.k.unwrap_or(d.k),
                h: a.h.unwrap_or(d.h),
                m: match a.m.as_deref() {
                    None => d.m,
                    Some("glm") => CusumReference::HarmonicGlm,
                    Some(v) => CusumReference::Fixed(v.parse().map_err(|_| {
                        CliError::Usage(format!(
                            "--m for cusum must be a number or glm (got {v:?})"
                        ))
                    })?),
                },
                trans,
            })
        }
        MethodName::Bayes => {
            let d = BayesParams::default();
            Method::Bayes(BayesParams {
                b: a.b.unwrap_or(d.b),
                w: a.w.unwrap_or(d.w),
                act_y: a.act_y.unwrap_or(d.act_y),
                alpha: a.alpha.unwrap_or(d.alpha),
            })
        }
        MethodName::Cdc => {
            let d = CdcParams::default();
            let m = match a.m.as_deref() {
                None => d.m,
                Some(v) => match v.parse::<usize>() {
                    Ok(m) if m <= 13 => m,
                    _ => {
                        return Err(CliError::Usage(format!(
                            "--m for cdc must be a small whole number of 4-week periods (got {v:?})"
                        )))
                    }
                },
            };
            Method::Cdc(CdcParams {
                b: a.b.unwrap_or(d.b),
                m,
                alpha: a.alpha.unwrap_or(d.alpha),
            })
        }
        MethodName::Glrnb => {
            let d = GlrParams::default();
            Method::Glrnb(GlrParams {
                c_arl: a.c_arl.unwrap_or(d.c_arl),
                direction: match a.dir {
                    None => d.direction,
                    Some(DirArg::Inc) => GlrDirection::Increase,
                    Some(DirArg::Dec) => GlrDirection::Decrease,
                },
            })
        }
    })
}

/// Runs `detect` on CSV text.
pub fn detect_csv(args: &DetectArgs, text: &str) -> Result<Vec<DetectionRow>, CliError> {
    let (first, last) = parse_range(&args.range)?;
    let method = build_method(args)?;
    let series = parse_series(&args.input.display().to_string(), text, args.freq)?;
    Ok(detect(&series, &method, first..=last)?)
}

/// Formats rows as CSV `t,observed,upperbound,alarm` (NA for a missing bound, alarm 0/1).
pub fn format_rows(rows: &[DetectionRow]) -> String {
    let mut s = String::from("t,observed,upperbound,alarm\n");
    for r in rows {
        // `+ 0.0` prints a negative zero as 0.
        let ub = r
            .upperbound
            .map_or_else(|| "NA".to_string(), |u| format!("{}", u + 0.0));
        s.push_str(&format!(
            "{},{},{},{}\n",
            r.t,
            r.observed,
            ub,
            u8::from(r.alarm)
        ));
    }
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: Command,
    }

    fn run_args(args: &[&str]) -> Result<String, CliError> {
        let cli = Cli::try_parse_from(std::iter::once("test").chain(args.iter().copied()))
            .map_err(|e| CliError::Usage(e.to_string()))?;
        let mut out = Vec::new();
        run_to(cli.cmd, &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    fn data(name: &str) -> String {
        format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    fn temp_csv(name: &str, content: &str) -> String {
        let dir = std::env::temp_dir().join(format!("surveillance-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, content).unwrap();
        p.display().to_string()
    }

    #[test]
    fn detect_reproduces_the_noufaily_golden() {
        let input = data("shared/salmnewport_germany.csv");
        let out = run_args(&[
            "detect",
            "--method",
            "farrington-flexible",
            "--b",
            "4",
            "--no-periods",
            "10",
            "--past-weeks-not-included",
            "26",
            "--p-threshold-trend",
            "1",
            "--threshold-method",
            "nbPlugin",
            "--range",
            "366:417",
            &input,
        ])
        .unwrap();
        let golden =
            std::fs::read_to_string(data("shared/salmnewport_germany_ff_noufaily.csv")).unwrap();
        assert_eq!(out, golden);
    }

    #[test]
    fn detect_cusum_output_matches_golden_text() {
        let out = run_args(&[
            "detect",
            "--method",
            "cusum",
            "--range",
            "200:312",
            &data("shared/salmonella_agona.csv"),
        ])
        .unwrap();
        let golden = std::fs::read_to_string(data("shared/agona_cusum.csv")).unwrap();
        assert_eq!(out, golden);
    }

    #[test]
    fn boolean_options_take_a_value_and_names_are_lenient() {
        let input = data("shared/salmonella_agona.csv");
        let run = |extra: &[&str]| {
            let mut args = vec![
                "detect", "--method", "bayes", "--b", "1", "--range", "300:312",
            ];
            args.extend_from_slice(extra);
            args.push(&input);
            run_args(&args).unwrap()
        };
        assert_eq!(run(&["--act-y", "true"]), run(&[]));
        assert_ne!(run(&["--act-y", "false"]), run(&[]));
        let nb = |name: &str| {
            run_args(&[
                "detect",
                "--method",
                "farrington-flexible",
                "--threshold-method",
                name,
                "--range",
                "300:312",
                &input,
            ])
            .unwrap()
        };
        assert_eq!(nb("nbPlugin"), nb("nbplugin"));
    }

    #[test]
    fn bad_inputs_give_clear_errors() {
        let empty = temp_csv("empty.csv", "observed\n");
        let neg = temp_csv("neg.csv", "observed\n1\n2\n-3\n");
        let text = temp_csv("text.csv", "observed\n1\nabc\n");
        let nocol = temp_csv("nocol.csv", "count\n1\n");
        let short = temp_csv("short.csv", "observed\n1\n2\n3\n4\n");
        let cases: Vec<(Vec<&str>, &str)> = vec![
            (
                vec!["--method", "ears-c1", "--range", "1:1", &empty],
                "empty",
            ),
            (
                vec!["--method", "ears-c1", "--range", "3:3", &neg],
                "negative",
            ),
            (
                vec!["--method", "ears-c1", "--range", "2:2", &text],
                "not a number",
            ),
            (
                vec!["--method", "ears-c1", "--range", "1:1", &nocol],
                "no column named `observed`",
            ),
            (
                vec!["--method", "ears-c1", "--range", "3:4", &short],
                "needs at least 7 weeks",
            ),
            (
                vec!["--method", "ears-c1", "--range", "3:9", &short],
                "outside the data",
            ),
            (
                vec!["--method", "ears-c1", "--range", "4:2", &short],
                "FIRST:LAST",
            ),
            (
                vec!["--method", "ears-c1", "--range", "x", &short],
                "FIRST:LAST",
            ),
            (
                vec!["--method", "ears-c1", "--k", "1", "--range", "1:1", &short],
                "--k does not apply",
            ),
            (
                vec![
                    "--method",
                    "farrington",
                    "--alpha",
                    "2",
                    "--range",
                    "4:4",
                    &short,
                ],
                "alpha",
            ),
            (
                vec!["--method", "farrington", "--range", "4:4", &short],
                "needs at least",
            ),
            (
                vec!["--method", "farrington-flexible", "--range", "4:4", &short],
                "needs at least",
            ),
            (
                vec!["--method", "bayes", "--range", "4:4", &short],
                "needs at least",
            ),
            (
                vec!["--method", "cusum", "--range", "1:4", &short],
                "needs at least",
            ),
            (
                vec!["--method", "cdc", "--range", "4:4", &short],
                "needs at least",
            ),
            (
                vec!["--method", "glrnb", "--range", "2:4", &short],
                "needs at least",
            ),
            (
                vec!["--method", "cdc", "--freq", "4", "--range", "4:4", &short],
                "within a year",
            ),
            (
                vec![
                    "--method",
                    "farrington",
                    "--w",
                    "30",
                    "--range",
                    "4:4",
                    &short,
                ],
                "does not fit",
            ),
            (
                vec![
                    "--method", "bayes", "--b", "1", "--freq", "5", "--range", "4:4", &short,
                ],
                "shorter than a year",
            ),
            (
                vec![
                    "--method", "ears-c1", "--freq", "0", "--range", "1:1", &short,
                ],
                "freq",
            ),
            (
                vec![
                    "--method", "glrnb", "--c-arl", "-1", "--range", "4:4", &short,
                ],
                "c.ARL",
            ),
            (
                vec![
                    "--method",
                    "ears-c1",
                    "--range",
                    "1:1",
                    "/nonexistent/x.csv",
                ],
                "cannot read",
            ),
        ];
        for (args, want) in cases {
            let mut full = vec!["detect"];
            full.extend(args.iter().copied());
            let err = run_args(&full).unwrap_err().to_string();
            assert!(err.contains(want), "{args:?}: {err}");
        }
    }

    #[test]
    fn all_zero_series_does_not_panic() {
        let zeros = temp_csv("zeros.csv", &format!("observed\n{}", "0\n".repeat(400)));
        for m in [
            "ears-c1",
            "ears-c2",
            "ears-c3",
            "ears-c3-textbook",
            "farrington",
            "farrington-flexible",
            "bayes",
            "cdc",
            "glrnb",
        ] {
            // Either rows or a clear error, never a panic.
            let _ = run_args(&["detect", "--method", m, "--range", "350:400", &zeros]);
        }
        let err =
            run_args(&["detect", "--method", "cusum", "--range", "350:400", &zeros]).unwrap_err();
        assert!(err.to_string().contains("reference mean"), "{err}");
    }
}
