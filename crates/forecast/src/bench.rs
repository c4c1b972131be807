//! Benchmarks, run side by side with the peer (SciPy `solve_ivp` RK45) in the same run.

use crate::ensemble::{forecast, ForecastConfig};
use crate::error::{ForecastError, Result};
use crate::fit::{fit, FitSpec, Likelihood, Observation};
use crate::metapop::{Coupling, Csr, MetaSeir};
use crate::model::{EpiParams, Model, ModelKind};
use crate::ode::{ErrorNorm, Method, Rk5, SolveStats};
use crate::sim::simulate_reports;
use rand::{Rng, SeedableRng};
use std::io::Write;
use std::time::{Duration, Instant};

/// The SciPy side of the benchmark, embedded so the bench runs from any working directory.
pub const SCIPY_SCRIPT: &str = include_str!("../bench/seir_scipy.py");

/// Benchmark settings.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Regions of the metapopulation model.
    pub regions: usize,
    /// Mobility links per region in the sparse variant.
    pub links: usize,
    /// Days simulated.
    pub days: usize,
    /// Relative tolerance (both solvers).
    pub rtol: f64,
    /// Absolute tolerance (both solvers).
    pub atol: f64,
    /// Timed rounds: for the SEIR solves, interleaved rounds of every solver (the median is reported); for the
    /// ensemble forecast, repetitions (the best is reported).
    pub repeats: usize,
    /// Python interpreter for the SciPy peer; None skips the peer.
    pub python: Option<String>,
    /// Also run the dense-coupling variant.
    pub dense: bool,
    /// Ensemble members for the forecast timing.
    pub members: usize,
    /// Seed of the random benchmark model.
    pub seed: u64,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            regions: 1000,
            links: 5,
            days: 180,
            rtol: 1e-6,
            atol: 1e-6,
            repeats: 5,
            python: Some("python3".into()),
            dense: true,
            members: 1000,
            seed: 42,
        }
    }
}

/// A random benchmark model: log-uniform populations 10⁴–10⁶, β_i ∈ [0.3, 0.5], σ = 1/5.2, γ = 1/7, 5 % of
/// contacts away from home spread over `links` random other regions (or all regions when `dense`), and ten
/// seeded regions with 10 infectious each.
pub fn benchmark_model(
    regions: usize,
    links: usize,
    dense: bool,
    seed: u64,
) -> Result<(MetaSeir, Vec<f64>)> {
    if regions < 2 || (!dense && (links == 0 || links >= regions)) {
        return Err(ForecastError::InvalidParameter {
            name: "regions/links",
            value: regions as f64,
            why: "need at least 2 regions and 1 <= links < regions",
        });
    }
    if regions > 1_000_000 || (dense && regions > 5_000) {
        return Err(ForecastError::InvalidParameter {
            name: "regions",
            value: regions as f64,
            why: "at most 1e6 regions (5,000 with dense coupling)",
        });
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let pop: Vec<f64> = (0..regions)
        .map(|_| 10f64.powf(rng.random_range(4.0..6.0)).round())
        .collect();
    let beta: Vec<f64> = (0..regions).map(|_| rng.random_range(0.3..0.5)).collect();
    let p = 0.05;
    let coupling = if dense {
        let mut c = vec![0.0; regions * regions];
        for i in 0..regions {
            let row = &mut c[i * regions..(i + 1) * regions];
            for (j, v) in row.iter_mut().enumerate() {
                if j != i {
                    *v = rng.random_range(0.5..1.5);
                }
            }
            let s: f64 = row.iter().sum();
            row.iter_mut().for_each(|v| *v *= p / s);
            row[i] = 1.0 - p;
        }
        Coupling::Dense(c)
    } else {
        let mut t = Vec::with_capacity(regions * links);
        for i in 0..regions {
            let mut chosen: Vec<usize> = Vec::with_capacity(links);
            while chosen.len() < links {
                let j = rng.random_range(0..regions);
                if j != i && !chosen.contains(&j) {
                    chosen.push(j);
                }
            }
            for j in chosen {
                t.push((i, j, rng.random_range(0.5..1.5)));
            }
        }
        Coupling::from_mobility(&Csr::from_triplets(regions, &t)?, p)?
    };
    let model = MetaSeir::new(pop, beta, 1.0 / 5.2, 1.0 / 7.0, coupling)?;
    let mut seeds = vec![0.0; regions];
    for k in 0..10.min(regions) {
        seeds[(k * 7919) % regions] = 10.0;
    }
    let y0 = model.initial_state(&seeds)?;
    Ok((model, y0))
}

fn write_f64(path: &std::path::Path, v: &[f64]) -> Result<()> {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(path, bytes).map_err(|source| ForecastError::Io {
        path: path.display().to_string(),
        source,
    })
}

fn write_i64(path: &std::path::Path, v: &[usize]) -> Result<()> {
    let bytes: Vec<u8> = v.iter().flat_map(|&x| (x as i64).to_le_bytes()).collect();
    std::fs::write(path, bytes).map_err(|source| ForecastError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// The max-norm contender runs at this multiple of the benchmark's tolerances (a method choice, calibrated on
/// the sparse benchmark model so that its error stays at or below RK45's there; every line prints its error).
pub const MAX_NORM_TOL_FACTOR: f64 = 10.0;

/// Tolerances of the reference solution the errors are measured against (SciPy's DOP853, or our Tsitouras pair
/// without the peer): six orders of magnitude below the benchmark's.
const REF_RTOL: f64 = 1e-12;
const REF_ATOL: f64 = 1e-12;

/// Writes the benchmark model for the SciPy script: `meta.json` plus little-endian binary arrays.
pub fn export_model(
    dir: &std::path::Path,
    model: &MetaSeir,
    y0: &[f64],
    coupling: &Coupling,
    cfg: &BenchConfig,
) -> Result<()> {
    let n = model.regions();
    let dense = matches!(coupling, Coupling::Dense(_));
    let meta = serde_json::json!({
        "n": n, "dense": dense, "sigma": 1.0 / 5.2, "gamma": 1.0 / 7.0, "days": cfg.days,
        "rtol": cfg.rtol, "atol": cfg.atol, "reference": true, "ref_rtol": REF_RTOL, "ref_atol": REF_ATOL,
    });
    let io = |source, p: &std::path::Path| ForecastError::Io {
        path: p.display().to_string(),
        source,
    };
    let meta_path = dir.join("meta.json");
    std::fs::write(&meta_path, meta.to_string()).map_err(|e| io(e, &meta_path))?;
    write_f64(&dir.join("pop.bin"), model.population())?;
    write_f64(&dir.join("beta.bin"), model.beta())?;
    write_f64(&dir.join("y0.bin"), y0)?;
    match coupling {
        Coupling::Dense(c) => write_f64(&dir.join("c.bin"), c)?,
        Coupling::Sparse(m) => {
            let (indptr, indices, values) = m.parts();
            write_i64(&dir.join("indptr.bin"), indptr)?;
            write_i64(&dir.join("indices.bin"), indices)?;
            write_f64(&dir.join("values.bin"), values)?;
        }
    }
    Ok(())
}

fn read_f64(path: &std::path::Path) -> Result<Vec<f64>> {
    let bytes = std::fs::read(path).map_err(|source| ForecastError::Io {
        path: path.display().to_string(),
        source,
    })?;
    Ok(bytes
        .chunks_exact(8)
        .map(|b| {
            let mut w = [0u8; 8];
            w.copy_from_slice(b);
            f64::from_le_bytes(w)
        })
        .collect())
}

/// The SciPy side, running: it has solved once (trajectory, evaluations, reference) and times one more solve per
/// [`Peer::time_one`], so its runs interleave with ours.
struct Peer {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
    dir: std::path::PathBuf,
    /// Right-hand-side evaluations of one solve.
    nfev: usize,
    /// The state at every day 0..=days, row after row (as [`MetaSeir::simulate`] returns it).
    trajectory: Vec<f64>,
    /// DOP853 at [`REF_RTOL`], [`REF_ATOL`], same layout.
    reference: Vec<f64>,
    /// Its right-hand-side evaluations.
    ref_nfev: usize,
    /// SciPy and NumPy versions, e.g. "scipy 1.17.1, numpy 2.4.6".
    versions: String,
}

impl Peer {
    fn start(
        python: &str,
        model: &MetaSeir,
        y0: &[f64],
        coupling: &Coupling,
        cfg: &BenchConfig,
    ) -> Result<Peer> {
        use std::io::BufRead;
        let dir = std::env::temp_dir().join(format!(
            "forecast-bench-{}-{}",
            std::process::id(),
            model.regions()
        ));
        let io = |source, p: &std::path::Path| ForecastError::Io {
            path: p.display().to_string(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(|e| io(e, &dir))?;
        export_model(&dir, model, y0, coupling, cfg)?;
        let script = dir.join("seir_scipy.py");
        std::fs::write(&script, SCIPY_SCRIPT).map_err(|e| io(e, &script))?;
        let mut child = std::process::Command::new(python)
            .arg(&script)
            .arg(&dir)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| ForecastError::Peer(format!("cannot run {python}: {e}")))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(ForecastError::Peer("no pipes to the peer".into()));
        };
        let mut stdout = std::io::BufReader::new(stdout);
        let mut first = String::new();
        let read = stdout.read_line(&mut first);
        let v: Option<serde_json::Value> = serde_json::from_str(&first).ok();
        let Some(v) = v.filter(|v| read.is_ok() && v.get("error").is_none()) else {
            let _ = child.kill();
            let out = child.wait_with_output();
            let _ = std::fs::remove_dir_all(&dir);
            let stderr = out
                .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_string())
                .unwrap_or_default();
            return Err(ForecastError::Peer(format!(
                "{python} seir_scipy.py failed: {} {stderr}",
                first.trim()
            )));
        };
        let peer = Peer {
            trajectory: read_f64(&dir.join("trajectory.bin"))?,
            reference: read_f64(&dir.join("reference.bin"))?,
            nfev: v["nfev"].as_u64().unwrap_or(0) as usize,
            ref_nfev: v["ref_nfev"].as_u64().unwrap_or(0) as usize,
            versions: format!(
                "scipy {}, numpy {}",
                v["scipy"].as_str().unwrap_or("?"),
                v["numpy"].as_str().unwrap_or("?")
            ),
            child,
            stdin,
            stdout,
            dir,
        };
        Ok(peer)
    }

    /// One timed SciPy solve: (wall, process CPU) seconds as the script measured them around `solve_ivp` alone.
    fn time_one(&mut self) -> Result<(f64, f64)> {
        use std::io::BufRead;
        let broken = |e: std::io::Error| ForecastError::Peer(format!("peer pipe: {e}"));
        self.stdin.write_all(b"run\n").map_err(broken)?;
        self.stdin.flush().map_err(broken)?;
        let mut line = String::new();
        self.stdout.read_line(&mut line).map_err(broken)?;
        let v: serde_json::Value = serde_json::from_str(&line)
            .map_err(|e| ForecastError::Peer(format!("unreadable peer output {line:?}: {e}")))?;
        match (v["seconds"].as_f64(), v["cpu_seconds"].as_f64()) {
            (Some(w), Some(c)) => Ok((w, c)),
            _ => Err(ForecastError::Peer(format!(
                "unreadable peer output {line:?}"
            ))),
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.stdin.write_all(b"quit\n");
        let _ = self.stdin.flush();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Wall and process-CPU seconds of one run of `f`, and its result.
///
/// The CPU time is reported next to the wall time because the build machine is shared: wall time includes
/// waiting for a core, CPU time does not, and the peer is measured the same way.
fn timed<T>(f: impl FnOnce() -> Result<T>) -> Result<((f64, f64), T)> {
    let c0 = cpu_time::ProcessTime::try_now().ok();
    let t0 = Instant::now();
    let r = f()?;
    let wall = t0.elapsed().as_secs_f64();
    let cpu = c0
        .and_then(|c| c.try_elapsed().ok())
        .map_or(f64::NAN, |d| d.as_secs_f64());
    Ok(((wall, cpu), r))
}

/// Best wall and process-CPU times of `f` over `repeats` runs, and its last result.
fn best_of<T>(repeats: usize, mut f: impl FnMut() -> Result<T>) -> Result<(Duration, Duration, T)> {
    let mut best = f64::INFINITY;
    let mut best_cpu = f64::INFINITY;
    let mut last = None;
    for _ in 0..repeats.max(1) {
        let ((w, c), r) = timed(&mut f)?;
        best = best.min(w);
        best_cpu = best_cpu.min(c);
        last = Some(r);
    }
    let last = last.ok_or(ForecastError::Peer("no repetition ran".into()))?;
    let secs = |s: f64| Duration::try_from_secs_f64(s).unwrap_or(Duration::ZERO);
    Ok((secs(best), secs(best_cpu), last))
}

/// Smallest CPU time of the (wall, cpu) pairs (load on a shared machine only ever adds to it).
fn best_cpu(times: &[(f64, f64)]) -> f64 {
    times.iter().map(|t| t.1).fold(f64::INFINITY, f64::min)
}

/// Largest CPU time of the (wall, cpu) pairs.
fn worst_cpu(times: &[(f64, f64)]) -> f64 {
    times.iter().map(|t| t.1).fold(0.0, f64::max)
}

/// Median of the (wall, cpu) pairs, each taken separately.
fn median(times: &[(f64, f64)]) -> (f64, f64) {
    let med = |mut v: Vec<f64>| -> f64 {
        v.sort_by(f64::total_cmp);
        match v.len() {
            0 => f64::NAN,
            l if l % 2 == 1 => v[l / 2],
            l => 0.5 * (v[l / 2 - 1] + v[l / 2]),
        }
    };
    (
        med(times.iter().map(|t| t.0).collect()),
        med(times.iter().map(|t| t.1).collect()),
    )
}

/// Largest |a − b| / max(|a|, |b|, 1) over all values (relative for values ≥ 1 person, absolute below), NaN if the
/// lengths differ or any value is NaN.
fn max_rel_diff(a: &[f64], b: &[f64]) -> f64 {
    if a.len() != b.len() {
        return f64::NAN;
    }
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / x.abs().max(y.abs()).max(1.0))
        .fold(0.0, |m, d| if d.is_nan() || d > m { d } else { m })
}

/// Error of a trajectory against the reference: the largest |y − ref| / max(|ref|, 1) (relative for values ≥ 1
/// person, absolute below), and the root mean square of (y − ref) / (atol + rtol·|ref|), the error in units of the
/// requested tolerance. NaN if the lengths differ.
pub fn trajectory_error(y: &[f64], reference: &[f64], rtol: f64, atol: f64) -> (f64, f64) {
    if y.len() != reference.len() || y.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mut max = 0.0f64;
    let mut sq = 0.0;
    for (&a, &r) in y.iter().zip(reference) {
        let d = (a - r).abs();
        let rel = d / r.abs().max(1.0);
        max = if rel.is_nan() || rel > max { rel } else { max };
        let s = d / (atol + rtol * r.abs());
        sq += s * s;
    }
    (max, (sq / y.len() as f64).sqrt())
}

/// One of our solvers in the comparison.
struct Contender {
    label: &'static str,
    method: Method,
    norm: ErrorNorm,
    /// Whether its loops may run in their AVX2 build (`crate::simd`); false: always the portable one.
    simd: bool,
    solver: Rk5,
    times: Vec<(f64, f64)>,
    stats: SolveStats,
    trajectory: Vec<f64>,
}

/// Runs every benchmark and prints its results, with ratios against the peer.
///
/// Per coupling variant: SciPy's RK45, our Dormand–Prince (the same method, controller and steps as RK45) and our
/// Tsitouras 5(4) pair, all at the same tolerances on the same model (and the Tsitouras pair under a max norm at
/// [`MAX_NORM_TOL_FACTOR`] times them, and in its portable build without AVX2, see [`crate::simd`]), timed in
/// `repeats` interleaved rounds (one run of each per round, so load on the shared machine hits them alike) and
/// reported by median and range; each with its
/// right-hand-side evaluations and its error against a tight reference solution, so that a method cannot look
/// faster by being less accurate.
pub fn run(cfg: &BenchConfig, out: &mut dyn Write) -> Result<()> {
    let w = |out: &mut dyn Write, s: String| -> Result<()> {
        writeln!(out, "{s}").map_err(|source| ForecastError::Io {
            path: "stdout".into(),
            source,
        })
    };
    if cfg.days > 3650 {
        return Err(ForecastError::InvalidParameter {
            name: "days",
            value: cfg.days as f64,
            why: "at most 3650 days",
        });
    }
    let rounds = cfg.repeats.max(1);
    let variants: &[bool] = if cfg.dense { &[false, true] } else { &[false] };
    for &dense in variants {
        let (model, y0) = benchmark_model(cfg.regions, cfg.links, dense, cfg.seed)?;
        // The same model with its right-hand side always in the portable build, for the portable contender.
        let portable = benchmark_model(cfg.regions, cfg.links, dense, cfg.seed)?
            .0
            .with_simd(false);
        let label = if dense {
            format!("dense coupling ({} x {})", cfg.regions, cfg.regions)
        } else {
            format!("sparse coupling ({} links/region)", cfg.links)
        };
        let mut peer = match &cfg.python {
            Some(py) => Some(Peer::start(py, &model, &y0, model.coupling(), cfg)?),
            None => None,
        };
        let mut ours = [
            (
                "Dormand-Prince 5(4)",
                Method::DormandPrince,
                ErrorNorm::Rms,
                1.0,
                true,
            ),
            (
                "Tsitouras 5(4)",
                Method::Tsitouras,
                ErrorNorm::Rms,
                1.0,
                true,
            ),
            (
                "Tsitouras 5(4), max norm at 10 x tol",
                Method::Tsitouras,
                ErrorNorm::Max,
                MAX_NORM_TOL_FACTOR,
                true,
            ),
            (
                "Tsitouras 5(4), portable build (no AVX2)",
                Method::Tsitouras,
                ErrorNorm::Rms,
                1.0,
                false,
            ),
        ]
        .map(|(label, method, norm, factor, simd)| {
            Rk5::new(factor * cfg.rtol, factor * cfg.atol).map(|s| Contender {
                label,
                method,
                norm,
                simd,
                solver: s.with_method(method).with_error_norm(norm).with_simd(simd),
                times: Vec::with_capacity(rounds),
                stats: SolveStats::default(),
                trajectory: Vec::new(),
            })
        });
        let model_of = |c: &Contender| if c.simd { &model } else { &portable };
        // One untimed run each (warms caches and the allocator, as the peer's first solve does).
        for c in ours.iter_mut().flatten() {
            let (traj, stats) = model_of(c).simulate(&y0, cfg.days, &mut c.solver)?;
            c.trajectory = traj;
            c.stats = stats;
        }
        let mut peer_times = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            for c in ours.iter_mut().flatten() {
                let m = model_of(c);
                let (t, _) = timed(|| m.simulate(&y0, cfg.days, &mut c.solver))?;
                c.times.push(t);
            }
            if let Some(p) = peer.as_mut() {
                peer_times.push(p.time_one()?);
            }
        }
        // The reference: SciPy's DOP853 when the peer runs (an independent method and code), else ours.
        let (own_ref, _) = model.simulate(
            &y0,
            cfg.days,
            &mut Rk5::new(REF_RTOL, REF_ATOL)?.with_method(Method::Tsitouras),
        )?;
        let reference = peer.as_ref().map_or(&own_ref, |p| &p.reference);
        w(
            out,
            format!(
                "metapop SEIR {} regions, {label}, {} days, rtol {:e}, atol {:e}: median of {rounds} interleaved rounds, process cpu time (its range; median wall); error = max |y - ref| / max(|ref|, 1) over the {} x {} daily trajectory, and its rms in units of atol + rtol |ref|",
                cfg.regions,
                cfg.days,
                cfg.rtol,
                cfg.atol,
                cfg.days + 1,
                4 * cfg.regions,
            ),
        )?;
        let peer_cpu = match &peer {
            Some(p) => {
                let (wall, cpu) = median(&peer_times);
                let (max, rms) = trajectory_error(&p.trajectory, reference, cfg.rtol, cfg.atol);
                w(
                    out,
                    format!(
                        "  {} solve_ivp RK45: {:.2} ms ({:.2}-{:.2} ms; {:.2} ms wall), {} rhs evals, error {max:.1e} max, {rms:.2} rms",
                        p.versions,
                        cpu * 1e3,
                        best_cpu(&peer_times) * 1e3,
                        worst_cpu(&peer_times) * 1e3,
                        wall * 1e3,
                        p.nfev
                    ),
                )?;
                Some((wall, cpu, best_cpu(&peer_times)))
            }
            None => None,
        };
        for c in ours.iter().flatten() {
            let (wall, cpu) = median(&c.times);
            let (max, rms) = trajectory_error(&c.trajectory, reference, cfg.rtol, cfg.atol);
            let mut line = format!(
                "  forecast {}: {:.2} ms ({:.2}-{:.2} ms; {:.2} ms wall), {} rhs evals, {} steps, error {max:.1e} max, {rms:.2} rms",
                c.label,
                cpu * 1e3,
                best_cpu(&c.times) * 1e3,
                worst_cpu(&c.times) * 1e3,
                wall * 1e3,
                c.stats.rhs_evals,
                c.stats.steps
            );
            match (&peer, peer_cpu) {
                (Some(p), Some((pw, pc, pb))) => {
                    line.push_str(&format!(
                        " | {:.1}x scipy cpu (best vs best {:.1}x), {:.1}x wall",
                        pc / cpu,
                        pb / best_cpu(&c.times),
                        pw / wall
                    ));
                    if c.method == Method::DormandPrince && c.norm == ErrorNorm::Rms {
                        line.push_str(&format!(
                            " | RK45's own steps: rhs evals {} vs {}, trajectories differ by {:.1e}",
                            c.stats.rhs_evals,
                            p.nfev,
                            max_rel_diff(&c.trajectory, &p.trajectory)
                        ));
                    }
                }
                _ => line.push_str(" | peer skipped"),
            }
            w(out, line)?;
        }
        let ref_line = match &peer {
            Some(p) => format!(
                "  reference: scipy DOP853 at rtol {REF_RTOL:e}, atol {REF_ATOL:e} ({} rhs evals); forecast Tsitouras 5(4) at those tolerances differs from it by {:.1e} max",
                p.ref_nfev,
                trajectory_error(&own_ref, reference, cfg.rtol, cfg.atol).0
            ),
            None => format!(
                "  reference: forecast Tsitouras 5(4) at rtol {REF_RTOL:e}, atol {REF_ATOL:e} (peer skipped)"
            ),
        };
        w(out, ref_line)?;
    }

    // Ensemble: fit a simulated SEIR outbreak, then time the forecast alone.
    let model = Model::new(ModelKind::Seir { sigma: 1.0 / 3.0 }, 1e6)?;
    let truth = EpiParams {
        beta: vec![0.5],
        knots: vec![],
        gamma: 0.25,
        i0: 10.0,
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    let data = simulate_reports(
        &mut rng,
        &model,
        &truth,
        Observation::Incidence,
        0.4,
        20.0,
        100,
    )?;
    let mut spec = FitSpec::new(model, Observation::Incidence, Likelihood::NegBin);
    // The 100 days end before the peak, where only the growth rate is identified: the infectious period is known.
    spec.fixed_gamma = Some(0.25);
    let t0 = Instant::now();
    let f = fit(&spec, &data)?;
    let fit_ms = t0.elapsed().as_secs_f64() * 1e3;
    let fc_cfg = ForecastConfig {
        horizon: 28,
        members: cfg.members,
        seed: cfg.seed,
    };
    let (best, best_cpu, _) = best_of(cfg.repeats, || forecast(&f, &data, &fc_cfg))?;
    w(
        out,
        format!(
            "ensemble forecast: {} members, SEIR over {} + {} days: {:.1} ms wall / {:.1} ms cpu (goal < 1000 ms); NB fit of the 100 days {fit_ms:.0} ms",
            cfg.members,
            data.len(),
            fc_cfg.horizon,
            best.as_secs_f64() * 1e3,
            best_cpu.as_secs_f64() * 1e3
        ),
    )?;
    Ok(())
}
