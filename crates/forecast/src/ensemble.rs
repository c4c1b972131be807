//! Ensemble forecasts with uncertainty intervals: parameter draws from the fit's approximate posterior
//! (multivariate normal on the unconstrained scale) pushed through the model, plus observation noise.

use crate::error::{ForecastError, Result};
use crate::fit::{Fit, Likelihood, Observation};
use crate::linalg::cholesky;
use crate::ode::Rk5;
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
    /// Number of members.
    pub members: usize,
    /// Every member's reported count, day after day, each day's values sorted (days × members).
    #[serde(skip)]
    pub samples: Vec<f64>,
}

/// Proper scores of a forecast against what was later observed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ForecastScore {
    /// Days scored.
    pub days: usize,
    /// Mean continuous ranked probability score (from the ensemble samples).
    pub crps: f64,
    /// Mean weighted interval score (median, 50 % and 95 % intervals; Bracher et al. 2021).
    pub wis: f64,
    /// Share of days whose observation fell in the 50 % interval.
    pub coverage50: f64,
    /// Share of days whose observation fell in the 95 % interval.
    pub coverage95: f64,
    /// Mid-PIT value of each day for count data: F(y−1) + ½·P(Y = y) under the ensemble.
    pub pit: Vec<f64>,
}

/// CRPS of an ensemble (sorted ascending) for observation `y`:
/// (1/m)Σ|x_i − y| − (1/m²)Σ_i (2i − m − 1)·x_(i), the sample form of E|X − y| − ½E|X − X′|.
pub fn crps_sorted(sorted: &[f64], y: f64) -> f64 {
    let m = sorted.len() as f64;
    if sorted.is_empty() {
        return f64::NAN;
    }
    let abs: f64 = sorted.iter().map(|x| (x - y).abs()).sum::<f64>() / m;
    let spread: f64 = sorted
        .iter()
        .enumerate()
        .map(|(i, x)| (2.0 * (i as f64 + 1.0) - m - 1.0) * x)
        .sum::<f64>()
        / (m * m);
    abs - spread
}

/// Interval score of the central (1 − α) interval [lo, hi] for observation y.
pub fn interval_score(alpha: f64, lo: f64, hi: f64, y: f64) -> f64 {
    (hi - lo) + 2.0 / alpha * ((lo - y).max(0.0) + (y - hi).max(0.0))
}

/// Weighted interval score: (½|y − median| + Σ_k α_k/2 · IS_{α_k}) / (K + ½).
pub fn weighted_interval_score(median: f64, intervals: &[(f64, f64, f64)], y: f64) -> f64 {
    let sum: f64 = intervals
        .iter()
        .map(|&(a, lo, hi)| a / 2.0 * interval_score(a, lo, hi, y))
        .sum();
    (0.5 * (y - median).abs() + sum) / (intervals.len() as f64 + 0.5)
}

impl Forecast {
    /// Scores the forecast against `truth` (observations for days 1.., any length) on days `first..=last`
    /// (1-based; usually the days after the data).
    pub fn score(&self, truth: &[f64], first: usize, last: usize) -> Result<ForecastScore> {
        if first == 0 || first > last || last > self.days.len() || last > truth.len() {
            return Err(ForecastError::InvalidParameter {
                name: "days",
                value: last as f64,
                why: "the scored days must lie inside both the forecast and the observations",
            });
        }
        crate::data::validate_series(truth, "truth")?;
        let m = self.members;
        let mut out = ForecastScore {
            days: last + 1 - first,
            crps: 0.0,
            wis: 0.0,
            coverage50: 0.0,
            coverage95: 0.0,
            pit: Vec::new(),
        };
        for day in first..=last {
            let d = &self.days[day - 1];
            let y = truth[day - 1];
            let col = &self.samples[(day - 1) * m..day * m];
            out.crps += crps_sorted(col, y);
            out.wis += weighted_interval_score(
                d.median,
                &[(0.5, d.lo50, d.hi50), (0.05, d.lo95, d.hi95)],
                y,
            );
            out.coverage50 += f64::from(u8::from(d.lo50 <= y && y <= d.hi50));
            out.coverage95 += f64::from(u8::from(d.lo95 <= y && y <= d.hi95));
            let below = col.partition_point(|&x| x < y) as f64;
            let at_or_below = col.partition_point(|&x| x <= y) as f64;
            out.pit
                .push((below + 0.5 * (at_or_below - below)) / m as f64);
        }
        let k = out.days as f64;
        out.crps /= k;
        out.wis /= k;
        out.coverage50 /= k;
        out.coverage95 /= k;
        Ok(out)
    }
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
    let mut solver = Rk5::new(1e-6, 1e-6)?;
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
    let rows: Vec<ForecastDay> = ens
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
        members: cfg.members,
        samples: ens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn crps_matches_the_normal_closed_form() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let mut xs: Vec<f64> = (0..100_000)
            .map(|_| StandardNormal.sample(&mut rng))
            .collect();
        xs.sort_by(f64::total_cmp);
        let y: f64 = 0.5;
        let phi = (-y * y / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt();
        let cdf = 0.5 * statrs::function::erf::erfc(-y / std::f64::consts::SQRT_2);
        let exact = y * (2.0 * cdf - 1.0) + 2.0 * phi - 1.0 / std::f64::consts::PI.sqrt();
        assert!(
            (crps_sorted(&xs, y) - exact).abs() < 5e-3,
            "{} vs {exact}",
            crps_sorted(&xs, y)
        );
        // A point forecast's CRPS is the absolute error.
        assert!((crps_sorted(&[3.0], 5.0) - 2.0).abs() < 1e-12);
    }

    #[test]
    fn wis_by_hand() {
        // Median 10, 50 % [8, 12], 95 % [5, 15], y = 16: (3 + 0.25·20 + 0.025·50) / 2.5 = 3.7.
        let w = weighted_interval_score(10.0, &[(0.5, 8.0, 12.0), (0.05, 5.0, 15.0)], 16.0);
        assert!((w - 3.7).abs() < 1e-12);
        assert_eq!(interval_score(0.5, 8.0, 12.0, 10.0), 4.0);
    }
}
