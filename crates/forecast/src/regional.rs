//! Fitting the metapopulation SEIR to reported incidence in every region at once (negative-binomial likelihood).
//!
//! Parameters: a transmission rate β shared by the regions (R0 = β/γ), the reporting fraction ρ, the NB size φ and
//! a seeding scale s with I_i(0) = s × (mean daily reports of region i up to day τ), τ the first day by which
//! the regions together have reported 10 cases: the earliest reports locate the seeds, and regions without any by
//! then start uninfected and are reached only through the coupling. When the places where the outbreak started
//! are known, pass them as `seed_pattern` (I_i(0) = s × pattern_i) instead: the heuristic mis-seeds regions
//! reached within days of the start, which biases β. σ, γ, the populations and the coupling
//! are given. Daily incidence of region i is the day's increase of I_i + R_i (which only the flow σE_i feeds).

use crate::error::{ForecastError, Result};
use crate::fit::{hessian, nelder_mead_fn, newton_polish, Estimate, BAD, PHI_PRIOR, RHO_PRIOR_SD};
use crate::linalg::spd_inverse;
use crate::metapop::{Coupling, MetaSeir};
use crate::ode::Rk5;
use crate::special::{nb_logpmf, normal_quantile};
use serde::Serialize;
use std::cell::RefCell;

/// Reports (all regions together) that locate the seeds; see the module documentation.
const SEED_REPORTS: f64 = 10.0;

/// Result of a regional fit.
#[derive(Debug, Clone, Serialize)]
pub struct RegionalFit {
    /// Shared transmission rate.
    pub beta: Estimate,
    /// R0 = β/γ.
    pub r0: Estimate,
    /// Reporting fraction.
    pub rho: Estimate,
    /// NB size.
    pub dispersion: Estimate,
    /// Seeding scale s.
    pub seed_scale: Estimate,
    /// Negative log-likelihood at the optimum.
    pub nll: f64,
    /// Expected reports, region by region (regions × days).
    pub fitted: Vec<Vec<f64>>,
}

struct Regional<'a> {
    model: RefCell<MetaSeir>,
    base: Vec<f64>,
    data: &'a [Vec<f64>],
    days: usize,
    solver: RefCell<Rk5>,
}

impl Regional<'_> {
    fn expected(&self, th: &[f64]) -> Result<Vec<Vec<f64>>> {
        let (beta, rho, scale) = (th[0].exp(), 1.0 / (1.0 + (-th[1]).exp()), th[3].exp());
        let mut model = self.model.borrow_mut();
        model.set_uniform_beta(beta)?;
        let n = model.regions();
        let seeds: Vec<f64> = self
            .base
            .iter()
            .zip(model.population())
            .map(|(b, p)| (scale * b).min(0.5 * p))
            .collect();
        let y0 = model.initial_state(&seeds)?;
        let (states, _) = model.simulate(&y0, self.days, &mut self.solver.borrow_mut())?;
        let rows: Vec<&[f64]> = states.chunks_exact(4 * n).collect();
        Ok((0..n)
            .map(|i| {
                rows.windows(2)
                    .map(|w| {
                        let now = w[1][2 * n + i] + w[1][3 * n + i];
                        let before = w[0][2 * n + i] + w[0][3 * n + i];
                        rho * (now - before).max(0.0)
                    })
                    .collect()
            })
            .collect())
    }

    fn objective(&self, th: &[f64]) -> f64 {
        if th.len() != 4 || th.iter().any(|v| !v.is_finite() || v.abs() > 30.0) {
            return BAD;
        }
        let Ok(mu) = self.expected(th) else {
            return BAD;
        };
        let size = th[2].exp();
        let nll: f64 = -mu
            .iter()
            .zip(self.data)
            .flat_map(|(m, y)| m.iter().zip(y).map(|(&m, &y)| nb_logpmf(y, m, size)))
            .sum::<f64>();
        let prior = (th[1] / RHO_PRIOR_SD).powi(2) / 2.0
            + ((th[2] - PHI_PRIOR.0) / PHI_PRIOR.1).powi(2) / 2.0
            + ((th[3] - 2f64.ln()) / 3.0).powi(2) / 2.0;
        let v = nll + prior;
        if v.is_finite() {
            v
        } else {
            BAD
        }
    }
}

/// Fits β, ρ, φ and the seeding scale to `data` (one series of daily reports per region, all the same length;
/// row k of a series is day k).
pub fn fit_regional(
    population: Vec<f64>,
    coupling: Coupling,
    sigma: f64,
    gamma: f64,
    data: &[Vec<f64>],
    seed_pattern: Option<&[f64]>,
) -> Result<RegionalFit> {
    let n = population.len();
    if data.len() != n {
        return Err(ForecastError::InvalidParameter {
            name: "regions",
            value: data.len() as f64,
            why: "one series of reports per region is needed",
        });
    }
    let days = data.first().map_or(0, Vec::len);
    if data.iter().any(|d| d.len() != days) {
        return Err(ForecastError::InvalidParameter {
            name: "days",
            value: days as f64,
            why: "every region's series must have the same length",
        });
    }
    if days < 14 {
        return Err(ForecastError::TooShort {
            got: days,
            need: 14,
            why: "a regional fit needs at least two weeks of reports",
        });
    }
    for d in data {
        crate::data::validate_series(d, "reported")?;
    }
    let mut total = 0.0;
    let mut tau = days;
    for day in 0..days {
        total += data.iter().map(|d| d[day]).sum::<f64>();
        if total >= SEED_REPORTS {
            tau = day + 1;
            break;
        }
    }
    let base: Vec<f64> = match seed_pattern {
        Some(p) => {
            if p.len() != n || p.iter().any(|v| !(v.is_finite() && *v >= 0.0)) {
                return Err(ForecastError::InvalidParameter {
                    name: "seed_pattern",
                    value: p.len() as f64,
                    why: "one finite, non-negative seed weight per region is needed",
                });
            }
            p.to_vec()
        }
        None => data
            .iter()
            .map(|d| d[..tau].iter().sum::<f64>() / tau as f64)
            .collect(),
    };
    if base.iter().all(|&b| b == 0.0) {
        return Err(ForecastError::NoCases);
    }
    let model = MetaSeir::new(population, vec![0.0; n], sigma, gamma, coupling)?;
    let problem = Regional {
        model: RefCell::new(model),
        base,
        data,
        days,
        solver: RefCell::new(Rk5::new(1e-8, 1e-8)?),
    };
    let f = |th: &[f64]| problem.objective(th);
    let mut evals = 0usize;
    let mut best: Option<(Vec<f64>, f64)> = None;
    for r0 in [1.3f64, 2.0, 3.5] {
        let start = [(r0 * gamma).ln(), 0.0, 10f64.ln(), 2f64.ln()];
        let (th, v, _) = nelder_mead_fn(&f, &start, 0.3, 2000, &mut evals)?;
        if best.as_ref().is_none_or(|b| v < b.1) {
            best = Some((th, v));
        }
    }
    let Some((mut theta, mut value)) = best else {
        return Err(ForecastError::NoConvergence("no starting point".into()));
    };
    for _ in 0..5 {
        let (th, v, _) = nelder_mead_fn(&f, &theta, 0.05, 2000, &mut evals)?;
        let gain = value - v;
        if v < value {
            theta = th;
            value = v;
        }
        if gain.abs() < 1e-7 {
            break;
        }
    }
    let mut fm = |th: &[f64]| problem.objective(th);
    let (th, v, ok) = newton_polish(&mut fm, theta.clone(), value, &mut evals);
    if v <= value {
        theta = th;
        value = v;
    }
    if !(ok && value.is_finite() && value < BAD) {
        return Err(ForecastError::NoConvergence(format!(
            "no optimum could be certified for the regional fit (objective {value:.6} after {evals} evaluations)"
        )));
    }
    let h = hessian(&mut fm, &theta, 1e-3);
    let cov = spd_inverse(&h, 4)?;
    let z = normal_quantile(0.975);
    let names = ["beta", "rho", "dispersion", "seed scale"];
    for (i, name) in names.iter().enumerate() {
        let sd = cov[i * 4 + i].max(0.0).sqrt();
        if !sd.is_finite() || sd > 10.0 {
            return Err(ForecastError::NotIdentifiable(format!(
                "{name} is not identified by these regional data (log-scale SE {sd:.1})"
            )));
        }
    }
    let est = |i: usize, back: &dyn Fn(f64) -> f64| {
        let sd = cov[i * 4 + i].max(0.0).sqrt();
        Estimate {
            value: back(theta[i]),
            low: back(theta[i] - z * sd),
            high: back(theta[i] + z * sd),
        }
    };
    let exp = |x: f64| x.exp();
    let expit = |x: f64| 1.0 / (1.0 + (-x).exp());
    let beta = est(0, &exp);
    let r0 = Estimate {
        value: beta.value / gamma,
        low: beta.low / gamma,
        high: beta.high / gamma,
    };
    let fitted = problem.expected(&theta)?;
    let size = theta[2].exp();
    let nll = -fitted
        .iter()
        .zip(data)
        .flat_map(|(m, y)| m.iter().zip(y).map(|(&m, &y)| nb_logpmf(y, m, size)))
        .sum::<f64>();
    tracing::debug!(evaluations = evals, regions = n, "regional fit converged");
    Ok(RegionalFit {
        beta,
        r0,
        rho: est(1, &expit),
        dispersion: est(2, &exp),
        seed_scale: est(3, &exp),
        nll,
        fitted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metapop::Csr;
    use crate::sim::sample_nb;
    use rand::SeedableRng;

    #[test]
    fn recovers_shared_beta_and_reporting_from_four_regions() -> Result<()> {
        // A ring of four regions; the epidemic starts in region 0 and travels along the ring.
        let pop = vec![5e4, 1e5, 2e4, 8e4];
        let ring = Csr::from_triplets(
            4,
            &[
                (1, 0, 1.0),
                (2, 1, 1.0),
                (3, 2, 1.0),
                (0, 3, 1.0),
                (0, 1, 1.0),
            ],
        )?;
        let coupling = Coupling::from_mobility(&ring, 0.05)?;
        let (sigma, gamma, beta, rho, size) = (0.25, 0.25, 0.5, 0.4, 30.0);
        let mut truth = MetaSeir::new(pop.clone(), vec![beta; 4], sigma, gamma, coupling.clone())?;
        truth.set_uniform_beta(beta)?;
        let y0 = truth.initial_state(&[20.0, 0.0, 0.0, 0.0])?;
        let days = 160;
        let (states, _) = truth.simulate(&y0, days, &mut Rk5::new(1e-9, 1e-9)?)?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let data: Vec<Vec<f64>> = (0..4)
            .map(|i| {
                (1..=days)
                    .map(|d| {
                        let at = |t: usize| states[t * 16 + 8 + i] + states[t * 16 + 12 + i];
                        sample_nb(&mut rng, rho * (at(d) - at(d - 1)), size)
                    })
                    .collect()
            })
            .collect();
        let f = fit_regional(pop, coupling, sigma, gamma, &data, None)?;
        eprintln!(
            "beta {:?} rho {:?} phi {:?} seed {:?}",
            f.beta, f.rho, f.dispersion, f.seed_scale
        );
        assert!((f.beta.value / beta - 1.0).abs() < 0.1, "{f:?}");
        assert!((f.rho.value / rho - 1.0).abs() < 0.2, "{:?}", f.rho);
        assert!(f.beta.low <= beta && beta <= f.beta.high, "{:?}", f.beta);
        assert!(f.rho.low <= rho && rho <= f.rho.high, "{:?}", f.rho);
        assert!((f.r0.value - f.beta.value / gamma).abs() < 1e-12);
        // Bad shapes are errors.
        let short: Vec<Vec<f64>> = data.iter().map(|d| d[..10].to_vec()).collect();
        let ring2 = Coupling::from_mobility(&ring, 0.05)?;
        assert!(fit_regional(
            vec![5e4, 1e5, 2e4, 8e4],
            ring2.clone(),
            sigma,
            gamma,
            &short,
            None
        )
        .is_err());
        let (p4, c4) = (vec![5e4, 1e5, 2e4, 8e4], ring2.clone());
        assert!(fit_regional(p4, c4, sigma, gamma, &data, Some(&[1.0, -1.0, 0.0, 0.0])).is_err());
        assert!(fit_regional(
            vec![5e4, 1e5, 2e4, 8e4],
            ring2,
            sigma,
            gamma,
            &data[..3],
            None
        )
        .is_err());
        Ok(())
    }
}
