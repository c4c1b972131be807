//! Benchmarks, run side by side with the peer (SciPy `solve_ivp` RK45) in the same run.

use crate::ensemble::{forecast, ForecastConfig};
use crate::error::{ForecastError, Result};
use crate::fit::{fit, FitSpec, Likelihood, Observation};
use crate::metapop::{Coupling, Csr, MetaSeir};
use crate::model::{EpiParams, Model, ModelKind};
use crate::ode::{Dopri5, SolveStats};
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
    /// Timed repetitions; the best is reported.
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

/// Result of the SciPy peer.
#[derive(Debug, Clone)]
pub struct PeerResult {
    /// Best wall time.
    pub seconds: f64,
    /// Best process CPU time (all threads, so a multi-threaded BLAS is not flattered).
    pub cpu_seconds: f64,
    /// Right-hand-side evaluations.
    pub nfev: usize,
    /// The state at every day 0..=days, row after row (as [`MetaSeir::simulate`] returns it).
    pub trajectory: Vec<f64>,
    /// SciPy and NumPy versions, e.g. "scipy 1.17.1, numpy 2.4.6".
    pub versions: String,
}

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
        "rtol": cfg.rtol, "atol": cfg.atol, "repeats": cfg.repeats,
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

fn run_scipy(
    python: &str,
    model: &MetaSeir,
    y0: &[f64],
    coupling: &Coupling,
    cfg: &BenchConfig,
) -> Result<PeerResult> {
    let dir = std::env::temp_dir().join(format!("forecast-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|source| ForecastError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    export_model(&dir, model, y0, coupling, cfg)?;
    let io = |source, p: &std::path::Path| ForecastError::Io {
        path: p.display().to_string(),
        source,
    };
    let script = dir.join("seir_scipy.py");
    std::fs::write(&script, SCIPY_SCRIPT).map_err(|e| io(e, &script))?;
    let output = std::process::Command::new(python)
        .arg(&script)
        .arg(&dir)
        .output()
        .map_err(|e| ForecastError::Peer(format!("cannot run {python}: {e}")))?;
    let traj_path = dir.join("trajectory.bin");
    let trajectory = std::fs::read(&traj_path).map_err(|e| io(e, &traj_path));
    let _ = std::fs::remove_dir_all(&dir);
    if !output.status.success() {
        return Err(ForecastError::Peer(format!(
            "{python} seir_scipy.py failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let v: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| ForecastError::Peer(format!("unreadable peer output: {e}")))?;
    let trajectory = trajectory?
        .chunks_exact(8)
        .map(|b| {
            let mut w = [0u8; 8];
            w.copy_from_slice(b);
            f64::from_le_bytes(w)
        })
        .collect();
    Ok(PeerResult {
        seconds: v["seconds"].as_f64().unwrap_or(f64::NAN),
        cpu_seconds: v["cpu_seconds"].as_f64().unwrap_or(f64::NAN),
        nfev: v["nfev"].as_u64().unwrap_or(0) as usize,
        trajectory,
        versions: format!(
            "scipy {}, numpy {}",
            v["scipy"].as_str().unwrap_or("?"),
            v["numpy"].as_str().unwrap_or("?")
        ),
    })
}

/// Best wall and process-CPU times of `f` over `repeats` runs, and its last result.
///
/// The CPU time is reported next to the wall time because the build machine is shared: wall time includes
/// waiting for a core, CPU time does not, and the peer is measured the same way.
fn best_of<T>(repeats: usize, mut f: impl FnMut() -> Result<T>) -> Result<(Duration, Duration, T)> {
    let mut best = Duration::MAX;
    let mut best_cpu = Duration::MAX;
    let mut last = None;
    for _ in 0..repeats.max(1) {
        let c0 = cpu_time::ProcessTime::try_now().ok();
        let t0 = Instant::now();
        let r = f()?;
        best = best.min(t0.elapsed());
        if let Some(d) = c0.and_then(|c| c.try_elapsed().ok()) {
            best_cpu = best_cpu.min(d);
        }
        last = Some(r);
    }
    let last = last.ok_or(ForecastError::Peer("no repetition ran".into()))?;
    Ok((best, best_cpu, last))
}

/// Timings of our solver: best wall and CPU time of `simulate` (a new output vector each run, as SciPy allocates
/// its own), best CPU time of `simulate_into` one reused output buffer, the work counters and the trajectory.
struct RustTiming {
    wall: Duration,
    cpu: Duration,
    cpu_reused: Duration,
    stats: SolveStats,
    trajectory: Vec<f64>,
}

fn time_rust(model: &MetaSeir, y0: &[f64], cfg: &BenchConfig) -> Result<RustTiming> {
    let mut solver = Dopri5::new(cfg.rtol, cfg.atol)?;
    let (wall, cpu, (trajectory, stats)) =
        best_of(cfg.repeats, || model.simulate(y0, cfg.days, &mut solver))?;
    let mut buf = Vec::new();
    let (_, cpu_reused, _) = best_of(cfg.repeats, || {
        model.simulate_into(y0, cfg.days, &mut solver, &mut buf)
    })?;
    Ok(RustTiming {
        wall,
        cpu,
        cpu_reused,
        stats,
        trajectory,
    })
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

/// Runs every benchmark and prints one line per result, with ratios against the peer.
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
    let variants: &[bool] = if cfg.dense { &[false, true] } else { &[false] };
    for &dense in variants {
        let (model, y0) = benchmark_model(cfg.regions, cfg.links, dense, cfg.seed)?;
        let label = if dense {
            format!("dense coupling ({} x {})", cfg.regions, cfg.regions)
        } else {
            format!("sparse coupling ({} links/region)", cfg.links)
        };
        let r = time_rust(&model, &y0, cfg)?;
        let mut line = format!(
            "metapop SEIR {} regions, {label}, {} days, rtol {:e}, atol {:e}: forecast {:.2} ms wall / {:.2} ms cpu ({} steps, {} rhs evals)",
            cfg.regions,
            cfg.days,
            cfg.rtol,
            cfg.atol,
            r.wall.as_secs_f64() * 1e3,
            r.cpu.as_secs_f64() * 1e3,
            r.stats.steps,
            r.stats.rhs_evals
        );
        if let Some(py) = &cfg.python {
            let peer = run_scipy(py, &model, &y0, model.coupling(), cfg)?;
            line.push_str(&format!(
                " | {} solve_ivp RK45 {:.2} ms wall / {:.2} ms cpu ({} rhs evals) | ratio {:.1}x wall, {:.1}x cpu | into a reused output buffer {:.2} ms cpu, {:.1}x | max rel diff over the {} x {} trajectory {:.1e}",
                peer.versions,
                peer.seconds * 1e3,
                peer.cpu_seconds * 1e3,
                peer.nfev,
                peer.seconds / r.wall.as_secs_f64(),
                peer.cpu_seconds / r.cpu.as_secs_f64(),
                r.cpu_reused.as_secs_f64() * 1e3,
                peer.cpu_seconds / r.cpu_reused.as_secs_f64(),
                cfg.days + 1,
                4 * cfg.regions,
                max_rel_diff(&r.trajectory, &peer.trajectory)
            ));
        } else {
            line.push_str(" | peer skipped");
        }
        w(out, line)?;
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
