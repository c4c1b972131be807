//! Ensemble forecasts with uncertainty intervals: parameter draws from the fit's approximate posterior
//! (multivariate normal on the unconstrained scale) pushed through the model, plus observation noise.

use crate::error::{ForecastError, Result};
use crate::fit::{Fit, Likelihood, Observation};
use crate::linalg::cholesky;
use crate::ode::Dopri5;
use crate::sim::sample_nb;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal, StandardNormal};
use serde::Serialize;

/// How to forecast.
#[derive(Debug, Clone)]
pub struct ForecastConfig {
    /// Days to forecast beyond the data.
    pub horizon: usize,
    /// Ensemble members.
    pub members: usize,
    /// Random seed (the ensemble is reproducible for a given seed).
    pub seed: u64,
}

impl Default for ForecastConfig {
    fn default() -> Self {
        ForecastConfig {
            horizon: 28,
            members: 1000,
            seed: 1,
        }
    }
}

/// One day of the forecast fan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ForecastDay {
    /// Day index (1-based; days after the data are the forecast proper).
    pub day: usize,
    /// The observation on that day, if it is inside the data.
    pub observed: Option<f64>,
    /// Ensemble mean of the reported counts.
    pub mean: f64,
    /// Median.
    pub median: f64,
    /// 25 % quantile.
    pub lo50: f64,
    /// 75 % quantile.
    pub hi50: f64,
    /// 2.5 % quantile.
    pub lo95: f64,
    /// 97.5 % quantile.
    pub hi95: f64,
}

/// A whole forecast.
#[derive(Debug, Clone, Serialize)]
pub struct Forecast {
    /// Fan rows for days 1..=data + horizon.
    pub days: Vec<ForecastDay>,
    /// Number of days of data the fit used (forecast proper starts after it).
    pub data_days: usize,
    /// Members whose parameter draw could not be simulated and were redrawn.
    pub redrawn: usize,
}

/// Quantile with linear interpolation between order statistics (R's default type 7) of a sorted slice.
pub fn quantile_sorted(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let h = (sorted.len() - 1) as f64 * p;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// Forecasts reported counts from `fit` over the data (`data`) and `cfg.horizon` further days; β after the last
/// knot stays at its last fitted value.
pub fn forecast(fit: &Fit, data: &[f64], cfg: &ForecastConfig) -> Result<Forecast> {
    if cfg.members < 2 {
        return Err(ForecastError::InvalidParameter {
            name: "members",
            value: cfg.members as f64,
            why: "an ensemble needs at least 2 members",
        });
    }
    // Bound the ensemble array (days × members values) so a mistyped option cannot exhaust memory.
    if cfg.horizon > 3650 || (data.len() + cfg.horizon).saturating_mul(cfg.members) > 50_000_000 {
        return Err(ForecastError::InvalidParameter {
            name: "horizon/members",
            value: cfg.horizon as f64,
            why: "the horizon must be at most 3650 days and days × members at most 5e7",
        });
    }
    let n = fit.theta.len();
    let chol = cholesky(&fit.covariance, n)?;
    let days = data.len() + cfg.horizon;
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    let mut solver = Dopri5::new(1e-6, 1e-6)?;
    // Column-major ensemble: member m's day d at [d * members + m], so each day's values are contiguous.
    let mut ens = vec![0.0; days * cfg.members];
    let mut z = vec![0.0; n];
    let mut theta = vec![0.0; n];
    let mut redrawn = 0usize;
    let resid_sd = (fit.sse / data.len().max(1) as f64).sqrt();
    let gauss = Normal::new(0.0, resid_sd.max(1e-12))
        .map_err(|_| ForecastError::Singular("residual variance is not finite"))?;
    let mut member = 0usize;
    while member < cfg.members {
        for v in z.iter_mut() {
            *v = StandardNormal.sample(&mut rng);
        }
        for i in 0..n {
            theta[i] = fit.theta[i] + (0..=i).map(|k| chol[i * n + k] * z[k]).sum::<f64>();
        }
        let d = fit.decode(&theta);
        let traj = match fit.spec.model.simulate(&d.epi, days, &mut solver) {
            Ok(t) => t,
            Err(_) => {
                redrawn += 1;
                if redrawn > cfg.members {
                    return Err(ForecastError::NoConvergence(
                        "most parameter draws cannot be simulated; the fit is too uncertain to forecast".into(),
                    ));
                }
                continue;
            }
        };
        let series = match fit.spec.observation {
            Observation::Incidence => &traj.incidence,
            Observation::Prevalence => &traj.prevalence,
        };
        for (day, &m) in series.iter().enumerate() {
            let mu = d.rho * m;
            ens[day * cfg.members + member] = match fit.spec.likelihood {
                Likelihood::NegBin => {
                    sample_nb(&mut rng, mu, d.dispersion.unwrap_or(f64::INFINITY))
                }
                Likelihood::Poisson => sample_nb(&mut rng, mu, f64::INFINITY),
                Likelihood::LeastSquares => (mu + gauss.sample(&mut rng)).max(0.0),
            };
        }
        member += 1;
    }
    let rows = ens
        .chunks_exact_mut(cfg.members)
        .enumerate()
        .map(|(day, col)| {
            col.sort_by(f64::total_cmp);
            ForecastDay {
                day: day + 1,
                observed: data.get(day).copied(),
                mean: col.iter().sum::<f64>() / col.len() as f64,
                median: quantile_sorted(col, 0.5),
                lo50: quantile_sorted(col, 0.25),
                hi50: quantile_sorted(col, 0.75),
                lo95: quantile_sorted(col, 0.025),
                hi95: quantile_sorted(col, 0.975),
            }
        })
        .collect();
    Ok(Forecast {
        days: rows,
        data_days: data.len(),
        redrawn,
    })
}
