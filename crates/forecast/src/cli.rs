//! Command-line interface, wired by the `caravan` binary under `caravan surveil`.
//!
//! Every command builds its whole output in memory and writes it only on success, so a failure never leaves a
//! partial result on stdout; the error goes to stderr as one line.

use crate::bench::{self, BenchConfig};
use crate::data::read_column_file;
use crate::ensemble::{forecast, ForecastConfig};
use crate::error::{ForecastError, Result};
use crate::fit::{fit, Estimate, Fit, FitSpec, Likelihood, Observation};
use crate::model::{Model, ModelKind};
use crate::rt::{cori_rt_parametric, CoriConfig};
use crate::svg;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Compartment model choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModelArg {
    /// Susceptible–infectious–recovered.
    Sir,
    /// Susceptible–exposed–infectious–recovered.
    Seir,
}

/// Fitting criterion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LikelihoodArg {
    /// Negative binomial (dispersion estimated).
    Nb,
    /// Poisson.
    Poisson,
    /// Least squares.
    Lsq,
}

/// What the counts are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ObservedArg {
    /// New reported cases per day.
    Incidence,
    /// Cases present per day (e.g. beds in use).
    Prevalence,
}

/// Options shared by `fit` and `forecast`.
#[derive(Debug, Clone, clap::Args)]
pub struct FitOpts {
    /// Compartment model.
    #[arg(long, value_enum, default_value = "seir")]
    pub model: ModelArg,
    /// Population size N.
    #[arg(long)]
    pub population: f64,
    /// SEIR progression rate σ = 1 / latent period (per day).
    #[arg(long, default_value_t = 0.2)]
    pub sigma: f64,
    /// Fix the recovery rate γ = 1 / infectious period (per day) instead of estimating it.
    #[arg(long)]
    pub gamma: Option<f64>,
    /// Fix the reporting fraction ρ instead of estimating it.
    #[arg(long)]
    pub rho: Option<f64>,
    /// Fix the number infectious at day 0 instead of estimating it.
    #[arg(long)]
    pub i0: Option<f64>,
    /// What the counts are.
    #[arg(long, value_enum, default_value = "incidence")]
    pub observed: ObservedArg,
    /// Fitting criterion.
    #[arg(long, value_enum, default_value = "nb")]
    pub likelihood: LikelihoodArg,
    /// CSV column holding the counts (one row per day).
    #[arg(long, default_value = "reported")]
    pub column: String,
    /// Days at which β(t) may change, comma-separated (time-varying R(t)); empty for a constant β.
    #[arg(long, value_delimiter = ',')]
    pub knots: Vec<usize>,
    /// Prior SD of the log-β jump at each knot (random-walk smoothing of R(t)).
    #[arg(long, default_value_t = 0.5)]
    pub rw_sd: f64,
    /// Input CSV with a header row.
    pub input: PathBuf,
}

/// How `fit` computes its 95 % intervals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CiArg {
    /// Wald intervals from the Hessian (log/logit scale): fast.
    Wald,
    /// Profile-likelihood intervals: re-optimises the other parameters along each quantity.
    Profile,
}

/// `fit` options.
#[derive(Debug, Clone, clap::Args)]
pub struct FitCmdOpts {
    /// Fitting options.
    #[command(flatten)]
    pub fit: FitOpts,
    /// Interval method.
    #[arg(long, value_enum, default_value = "wald")]
    pub ci: CiArg,
}

/// `rt` options.
#[derive(Debug, Clone, clap::Args)]
pub struct RtOpts {
    /// Mean of the serial interval (days, > 1).
    #[arg(long)]
    pub mean_si: f64,
    /// Standard deviation of the serial interval (days).
    #[arg(long)]
    pub sd_si: f64,
    /// Sliding-window length in days.
    #[arg(long, default_value_t = 7)]
    pub window: usize,
    /// Shape of the Gamma prior on R.
    #[arg(long, default_value_t = 1.0)]
    pub prior_shape: f64,
    /// Scale of the Gamma prior on R.
    #[arg(long, default_value_t = 5.0)]
    pub prior_scale: f64,
    /// CSV column holding daily incidence.
    #[arg(long, default_value = "incidence")]
    pub column: String,
    /// Also write an SVG plot of R_t to this file.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Input CSV with a header row, one row per day.
    pub input: PathBuf,
}

/// `forecast` options.
#[derive(Debug, Clone, clap::Args)]
pub struct ForecastOpts {
    /// Fitting options.
    #[command(flatten)]
    pub fit: FitOpts,
    /// Days to forecast beyond the data.
    #[arg(long, default_value_t = 28)]
    pub horizon: usize,
    /// Ensemble members.
    #[arg(long, default_value_t = 1000)]
    pub members: usize,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Also write an SVG fan chart to this file.
    #[arg(long)]
    pub svg: Option<PathBuf>,
}

/// `risk` options.
#[derive(Debug, Clone, clap::Args)]
pub struct RiskOpts {
    /// CSV of regions: `region,population,infectious` and optionally `beta`.
    #[arg(long)]
    pub regions: PathBuf,
    /// CSV of mobility: from,to,travellers (travellers per day from region `from` into region `to`).
    #[arg(long)]
    pub flows: PathBuf,
    /// Days over which importations are counted.
    #[arg(long, default_value_t = 7)]
    pub days: usize,
    /// Project the epidemic with the metapopulation SEIR over the period instead of holding today's prevalence.
    #[arg(long)]
    pub project: bool,
    /// Transmission rate for regions without a `beta` column value (projection only).
    #[arg(long, default_value_t = 0.3)]
    pub beta: f64,
    /// SEIR progression rate σ (projection only).
    #[arg(long, default_value_t = 0.2)]
    pub sigma: f64,
    /// Recovery rate γ (projection only).
    #[arg(long, default_value_t = 0.2)]
    pub gamma: f64,
    /// Share of contacts made with other regions, spread by the mobility flows (projection only).
    #[arg(long, default_value_t = 0.05)]
    pub coupling: f64,
}

/// `fit-regions` options.
#[derive(Debug, Clone, clap::Args)]
pub struct FitRegionsOpts {
    /// CSV of regions: `region,population` and optionally `infectious`, which, when present, gives where the outbreak
    /// started (the initial infectious are proportional to it); otherwise the earliest reports locate the seeds.
    #[arg(long)]
    pub regions: PathBuf,
    /// CSV of mobility: from,to,travellers per day.
    #[arg(long)]
    pub flows: PathBuf,
    /// SEIR progression rate σ.
    #[arg(long, default_value_t = 0.2)]
    pub sigma: f64,
    /// Recovery rate γ (given: the regional fit estimates the shared β).
    #[arg(long)]
    pub gamma: f64,
    /// Share of contacts made with other regions, spread by the mobility flows.
    #[arg(long, default_value_t = 0.05)]
    pub coupling: f64,
    /// Daily reports, one column per region (named as in the regions file), one row per day.
    pub input: PathBuf,
}

/// `bench` options.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchOpts {
    /// Regions of the metapopulation model.
    #[arg(long, default_value_t = 1000)]
    pub regions: usize,
    /// Mobility links per region (sparse variant).
    #[arg(long, default_value_t = 5)]
    pub links: usize,
    /// Days simulated.
    #[arg(long, default_value_t = 180)]
    pub days: usize,
    /// Relative tolerance of both solvers.
    #[arg(long, default_value_t = 1e-6)]
    pub rtol: f64,
    /// Absolute tolerance of both solvers.
    #[arg(long, default_value_t = 1e-6)]
    pub atol: f64,
    /// Timed rounds (SEIR solves: interleaved, median reported; ensemble: best of).
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    /// Python interpreter with numpy and scipy for the peer.
    #[arg(long, default_value = "python3")]
    pub python: String,
    /// Skip the SciPy peer.
    #[arg(long)]
    pub no_peer: bool,
    /// Skip the dense-coupling variant.
    #[arg(long)]
    pub no_dense: bool,
    /// Ensemble members for the forecast timing.
    #[arg(long, default_value_t = 1000)]
    pub members: usize,
    /// Seed of the random benchmark model.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// Forecasting commands (`caravan surveil ...`).
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Fit an SIR/SEIR model to daily counts; prints one JSON object with estimates and 95 % intervals.
    Fit(FitCmdOpts),
    /// Cori et al. (2013) R_t on sliding windows; prints CSV (t_start, t_end, mean, sd, quantiles).
    Rt(RtOpts),
    /// Fit, then forecast with a parameter + observation-noise ensemble; prints CSV (day, median, intervals).
    Forecast(ForecastOpts),
    /// Regional importation risk from mobility flows; prints CSV (region, expected importations, P(at least one)).
    Risk(RiskOpts),
    /// Fit the metapopulation SEIR to daily reports of every region; prints one JSON object.
    FitRegions(FitRegionsOpts),
    /// Benchmarks against SciPy solve_ivp (metapopulation SEIR) and the ensemble timing.
    Bench(BenchOpts),
}

/// Runs a command, writing results to stdout and one error line to stderr.
pub fn run(cmd: Command) -> ExitCode {
    let mut buf = Vec::new();
    match execute(cmd, &mut buf) {
        Ok(()) => {
            let mut stdout = std::io::stdout().lock();
            if stdout.write_all(&buf).and_then(|_| stdout.flush()).is_err() {
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

fn spec_from(o: &FitOpts) -> Result<FitSpec> {
    let kind = match o.model {
        ModelArg::Sir => ModelKind::Sir,
        ModelArg::Seir => ModelKind::Seir { sigma: o.sigma },
    };
    let mut spec = FitSpec::new(
        Model::new(kind, o.population)?,
        match o.observed {
            ObservedArg::Incidence => Observation::Incidence,
            ObservedArg::Prevalence => Observation::Prevalence,
        },
        match o.likelihood {
            LikelihoodArg::Nb => Likelihood::NegBin,
            LikelihoodArg::Poisson => Likelihood::Poisson,
            LikelihoodArg::Lsq => Likelihood::LeastSquares,
        },
    );
    spec.fixed_gamma = o.gamma;
    spec.fixed_rho = o.rho;
    spec.fixed_i0 = o.i0;
    spec.knots = o.knots.clone();
    spec.rw_sd = o.rw_sd;
    Ok(spec)
}

fn put(map: &mut serde_json::Map<String, serde_json::Value>, key: &str, e: &Estimate) {
    map.insert(key.into(), e.value.into());
    map.insert(format!("{key}_low"), e.low.into());
    map.insert(format!("{key}_high"), e.high.into());
}

/// The JSON object printed by `fit`.
pub fn fit_json(f: &Fit, o: &FitOpts, days: usize) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    m.insert(
        "model".into(),
        match o.model {
            ModelArg::Sir => "sir",
            ModelArg::Seir => "seir",
        }
        .into(),
    );
    m.insert(
        "likelihood".into(),
        match o.likelihood {
            LikelihoodArg::Nb => "nb",
            LikelihoodArg::Poisson => "poisson",
            LikelihoodArg::Lsq => "lsq",
        }
        .into(),
    );
    m.insert("population".into(), o.population.into());
    if let ModelKind::Seir { sigma } = f.kind() {
        m.insert("sigma".into(), sigma.into());
    }
    m.insert("days".into(), days.into());
    if let Some(b) = f.beta.first() {
        put(&mut m, "beta", b);
    }
    put(&mut m, "gamma", &f.gamma);
    put(&mut m, "R0", &f.r0);
    put(&mut m, "rho", &f.rho);
    match &f.dispersion {
        Some(d) => put(&mut m, "dispersion", d),
        None => {
            for k in ["dispersion", "dispersion_low", "dispersion_high"] {
                m.insert(k.into(), serde_json::Value::Null);
            }
        }
    }
    put(&mut m, "i0", &f.i0);
    if !f.params.epi.knots.is_empty() {
        let starts = std::iter::once(0).chain(f.params.epi.knots.iter().copied());
        let pieces: Vec<serde_json::Value> = starts
            .zip(&f.beta)
            .map(|(from, b)| {
                serde_json::json!({
                    "from_day": from, "beta": b.value, "beta_low": b.low, "beta_high": b.high,
                    "R": b.value / f.gamma.value,
                })
            })
            .collect();
        m.insert("beta_pieces".into(), pieces.into());
    }
    m.insert("negative_log_likelihood".into(), f.nll.into());
    m.insert("sse".into(), f.sse.into());
    m.insert("evaluations".into(), f.evaluations.into());
    serde_json::Value::Object(m)
}

struct RegionRow {
    name: String,
    population: f64,
    infectious: f64,
    beta: Option<f64>,
}

fn csv_reader(path: &Path) -> Result<csv::Reader<std::fs::File>> {
    let file = std::fs::File::open(path).map_err(|source| ForecastError::Io {
        path: path.display().to_string(),
        source,
    })?;
    Ok(csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(file))
}

fn column(headers: &csv::StringRecord, name: &str) -> Result<usize> {
    headers
        .iter()
        .position(|h| h == name)
        .ok_or_else(|| ForecastError::MissingColumn {
            column: name.into(),
            header: headers.iter().collect::<Vec<_>>().join(","),
        })
}

fn number(rec: &csv::StringRecord, idx: usize, row: usize, col: &str) -> Result<f64> {
    let cell = rec.get(idx).unwrap_or("");
    let v: f64 = cell.parse().map_err(|_| ForecastError::NotNumeric {
        row,
        column: col.into(),
        value: cell.into(),
    })?;
    crate::data::validate_count(row, col, v)?;
    Ok(v)
}

fn read_regions(path: &Path, need_infectious: bool) -> Result<Vec<RegionRow>> {
    let mut rdr = csv_reader(path)?;
    let h = rdr
        .headers()
        .map_err(|e| ForecastError::Csv(e.to_string()))?
        .clone();
    let (ir, ip) = (column(&h, "region")?, column(&h, "population")?);
    let ii = if need_infectious {
        Some(column(&h, "infectious")?)
    } else {
        h.iter().position(|c| c == "infectious")
    };
    let ib = h.iter().position(|c| c == "beta");
    let mut rows: Vec<RegionRow> = Vec::new();
    for (k, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| ForecastError::Csv(e.to_string()))?;
        let row = k + 1;
        let name = rec.get(ir).unwrap_or("").to_string();
        if name.is_empty() || rows.iter().any(|r| r.name == name) {
            return Err(ForecastError::Csv(format!(
                "row {row}: region name empty or repeated: `{name}`"
            )));
        }
        let beta = match ib.map(|i| rec.get(i).unwrap_or("")) {
            Some(c) if !c.is_empty() => Some(number(&rec, ib.unwrap_or(0), row, "beta")?),
            _ => None,
        };
        rows.push(RegionRow {
            name,
            population: number(&rec, ip, row, "population")?,
            infectious: match ii {
                Some(i) => number(&rec, i, row, "infectious")?,
                None => 0.0,
            },
            beta,
        });
    }
    if rows.is_empty() {
        return Err(ForecastError::Empty);
    }
    Ok(rows)
}

fn read_flows(path: &Path, regions: &[RegionRow]) -> Result<crate::metapop::Csr> {
    let mut rdr = csv_reader(path)?;
    let h = rdr
        .headers()
        .map_err(|e| ForecastError::Csv(e.to_string()))?
        .clone();
    let (iff, it, iv) = (
        column(&h, "from")?,
        column(&h, "to")?,
        column(&h, "travellers")?,
    );
    let index = |name: &str, row: usize| {
        regions
            .iter()
            .position(|r| r.name == name)
            .ok_or_else(|| ForecastError::Csv(format!("flows row {row}: unknown region `{name}`")))
    };
    let mut triplets = Vec::new();
    for (k, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| ForecastError::Csv(e.to_string()))?;
        let row = k + 1;
        let from = index(rec.get(iff).unwrap_or(""), row)?;
        let to = index(rec.get(it).unwrap_or(""), row)?;
        // Rows are destinations: m[to][from] travellers per day.
        triplets.push((to, from, number(&rec, iv, row, "travellers")?));
    }
    crate::metapop::Csr::from_triplets(regions.len(), &triplets)
}

fn risk(o: &RiskOpts, buf: &mut Vec<u8>) -> Result<()> {
    use crate::metapop::{importation_risk, importation_risk_along, Coupling, MetaSeir};
    if o.days > 3650 {
        return Err(ForecastError::InvalidParameter {
            name: "days",
            value: o.days as f64,
            why: "at most 3650 days",
        });
    }
    let regions = read_regions(&o.regions, true)?;
    let flows = read_flows(&o.flows, &regions)?;
    let pop: Vec<f64> = regions.iter().map(|r| r.population).collect();
    let inf: Vec<f64> = regions.iter().map(|r| r.infectious).collect();
    if let Some(r) = regions
        .iter()
        .find(|r| r.population <= 0.0 || r.infectious > r.population)
    {
        return Err(ForecastError::InvalidParameter {
            name: "population",
            value: r.population,
            why: "each region needs population > 0 and infectious <= population",
        });
    }
    let (risk, projected) = if o.project {
        let beta: Vec<f64> = regions.iter().map(|r| r.beta.unwrap_or(o.beta)).collect();
        let model = MetaSeir::new(
            pop.clone(),
            beta,
            o.sigma,
            o.gamma,
            Coupling::from_mobility(&flows, o.coupling)?,
        )?;
        let y0 = model.initial_state(&inf)?;
        let mut solver = crate::ode::Rk5::new(1e-6, 1e-6)?;
        let (states, _) = model.simulate(&y0, o.days, &mut solver)?;
        let n = regions.len();
        let last = &states[states.len().saturating_sub(4 * n)..];
        let projected: Vec<f64> = last[2 * n..3 * n].to_vec();
        // Day d's prevalence drives the importations of day d + 1, so days 0..days−1 cover the period.
        let r = importation_risk_along(&flows, &model, &states, 0, o.days.saturating_sub(1))?;
        (r, Some(projected))
    } else {
        (importation_risk(&flows, &inf, &pop, o.days as f64)?, None)
    };
    write!(
        buf,
        "region,population,infectious,expected_importations,p_at_least_one"
    )
    .map_err(io_err)?;
    if projected.is_some() {
        write!(buf, ",infectious_at_end").map_err(io_err)?;
    }
    writeln!(buf).map_err(io_err)?;
    for (k, r) in regions.iter().enumerate() {
        let name = if r.name.contains([',', '"', '\n']) {
            format!("\"{}\"", r.name.replace('"', "\"\""))
        } else {
            r.name.clone()
        };
        write!(
            buf,
            "{name},{},{},{},{}",
            r.population, r.infectious, risk.expected[k], risk.prob_at_least_one[k]
        )
        .map_err(io_err)?;
        if let Some(p) = &projected {
            write!(buf, ",{}", p[k]).map_err(io_err)?;
        }
        writeln!(buf).map_err(io_err)?;
    }
    Ok(())
}

fn fit_regions(o: &FitRegionsOpts, buf: &mut Vec<u8>) -> Result<()> {
    let regions = read_regions(&o.regions, false)?;
    let flows = read_flows(&o.flows, &regions)?;
    let mut rdr = csv_reader(&o.input)?;
    let h = rdr
        .headers()
        .map_err(|e| ForecastError::Csv(e.to_string()))?
        .clone();
    let cols: Vec<usize> = regions
        .iter()
        .map(|r| column(&h, &r.name))
        .collect::<Result<_>>()?;
    let mut data: Vec<Vec<f64>> = vec![Vec::new(); regions.len()];
    for (k, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| ForecastError::Csv(e.to_string()))?;
        for (series, (&c, r)) in data.iter_mut().zip(cols.iter().zip(&regions)) {
            series.push(number(&rec, c, k + 1, &r.name)?);
        }
    }
    let pop: Vec<f64> = regions.iter().map(|r| r.population).collect();
    let coupling = crate::metapop::Coupling::from_mobility(&flows, o.coupling)?;
    let has_seeds = regions.iter().any(|r| r.infectious > 0.0);
    let pattern: Vec<f64> = regions.iter().map(|r| r.infectious).collect();
    let f = crate::regional::fit_regional(
        pop,
        coupling,
        o.sigma,
        o.gamma,
        &data,
        has_seeds.then_some(&pattern[..]),
    )?;
    let mut m = serde_json::Map::new();
    m.insert("regions".into(), regions.len().into());
    m.insert("days".into(), data.first().map_or(0, Vec::len).into());
    m.insert("sigma".into(), o.sigma.into());
    m.insert("gamma".into(), o.gamma.into());
    put(&mut m, "beta", &f.beta);
    put(&mut m, "R0", &f.r0);
    put(&mut m, "rho", &f.rho);
    put(&mut m, "dispersion", &f.dispersion);
    put(&mut m, "seed_scale", &f.seed_scale);
    m.insert("negative_log_likelihood".into(), f.nll.into());
    let text = serde_json::to_string_pretty(&serde_json::Value::Object(m))
        .map_err(|e| ForecastError::Csv(e.to_string()))?;
    writeln!(buf, "{text}").map_err(io_err)
}

fn write_svg(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|source| ForecastError::Io {
        path: path.display().to_string(),
        source,
    })
}

fn io_err(source: std::io::Error) -> ForecastError {
    ForecastError::Io {
        path: "output".into(),
        source,
    }
}

/// Runs a command, writing its complete output into `out` (nothing is written on error).
pub fn execute(cmd: Command, out: &mut dyn Write) -> Result<()> {
    let mut buf: Vec<u8> = Vec::new();
    match cmd {
        Command::Fit(FitCmdOpts { fit: o, ci }) => {
            let data = read_column_file(&o.input, &o.column)?;
            let spec = spec_from(&o)?;
            let mut f = fit(&spec, &data)?;
            tracing::info!(
                days = data.len(),
                evaluations = f.evaluations,
                "model fitted"
            );
            if ci == CiArg::Profile {
                let p = f.profile_intervals(&data)?;
                if let Some(b) = f.beta.first_mut() {
                    *b = p.beta;
                }
                f.gamma = p.gamma;
                f.r0 = p.r0;
                f.rho = p.rho;
                f.dispersion = p.dispersion;
            }
            let mut json = fit_json(&f, &o, data.len());
            if let Some(m) = json.as_object_mut() {
                let name = match ci {
                    CiArg::Wald => "wald",
                    CiArg::Profile => "profile",
                };
                m.insert("ci".into(), name.into());
            }
            let text = serde_json::to_string_pretty(&json)
                .map_err(|e| ForecastError::Csv(e.to_string()))?;
            writeln!(buf, "{text}").map_err(io_err)?;
        }
        Command::Rt(o) => {
            let data = read_column_file(&o.input, &o.column)?;
            let cfg = CoriConfig {
                window: o.window,
                prior_shape: o.prior_shape,
                prior_scale: o.prior_scale,
                ..CoriConfig::default()
            };
            let windows = cori_rt_parametric(&data, o.mean_si, o.sd_si, &cfg)?;
            writeln!(
                buf,
                "t_start,t_end,mean,sd,q025,q05,q25,median,q75,q95,q975"
            )
            .map_err(io_err)?;
            for w in &windows {
                write!(buf, "{},{},{},{}", w.t_start, w.t_end, w.mean, w.sd).map_err(io_err)?;
                for q in &w.quantiles {
                    write!(buf, ",{q}").map_err(io_err)?;
                }
                writeln!(buf).map_err(io_err)?;
            }
            if let Some(p) = &o.svg {
                write_svg(
                    p,
                    &svg::rt_chart(&windows, "Reproduction number R_t (Cori et al. 2013)"),
                )?;
            }
        }
        Command::Forecast(o) => {
            let data = read_column_file(&o.fit.input, &o.fit.column)?;
            let spec = spec_from(&o.fit)?;
            let f = fit(&spec, &data)?;
            let fc = forecast(
                &f,
                &data,
                &ForecastConfig {
                    horizon: o.horizon,
                    members: o.members,
                    seed: o.seed,
                },
            )?;
            writeln!(buf, "day,observed,mean,median,lo50,hi50,lo95,hi95").map_err(io_err)?;
            for d in &fc.days {
                let obs = d.observed.map(|v| v.to_string()).unwrap_or_default();
                writeln!(
                    buf,
                    "{},{obs},{},{},{},{},{},{}",
                    d.day, d.mean, d.median, d.lo50, d.hi50, d.lo95, d.hi95
                )
                .map_err(io_err)?;
            }
            if let Some(p) = &o.svg {
                write_svg(p, &svg::fan_chart(&fc, "Forecast of reported cases"))?;
            }
        }
        Command::Risk(o) => risk(&o, &mut buf)?,
        Command::FitRegions(o) => fit_regions(&o, &mut buf)?,
        Command::Bench(o) => {
            let cfg = BenchConfig {
                regions: o.regions,
                links: o.links,
                days: o.days,
                rtol: o.rtol,
                atol: o.atol,
                repeats: o.repeats,
                python: (!o.no_peer).then(|| o.python.clone()),
                dense: !o.no_dense,
                members: o.members,
                seed: o.seed,
            };
            bench::run(&cfg, &mut buf)?;
        }
    }
    out.write_all(&buf).map_err(io_err)
}
