//! Random observation noise and simulated outbreaks with known truth (for tests, ensembles and benchmarks).

use crate::error::{ForecastError, Result};
use crate::fit::Observation;
use crate::model::{EpiParams, Model};
use crate::ode::Rk5;
use rand::Rng;
use rand_distr::{Distribution, Gamma, Poisson};

/// A draw from the negative binomial with mean `mu` and size `size` (variance μ + μ²/size), as the Poisson–Gamma
/// mixture; `size = ∞` gives a Poisson draw. Non-positive means give 0.
pub fn sample_nb<R: Rng + ?Sized>(rng: &mut R, mu: f64, size: f64) -> f64 {
    if !(mu > 0.0 && mu.is_finite()) {
        return 0.0;
    }
    let lambda = if size.is_finite() && size > 0.0 {
        match Gamma::new(size, mu / size) {
            Ok(g) => g.sample(rng),
            Err(_) => mu,
        }
    } else {
        mu
    };
    if lambda <= 0.0 {
        return 0.0;
    }
    match Poisson::new(lambda) {
        Ok(p) => p.sample(rng),
        Err(_) => lambda.round(),
    }
}

/// Simulates reported counts: the model's daily incidence or prevalence times `rho`, with NB(`size`) noise.
pub fn simulate_reports<R: Rng + ?Sized>(
    rng: &mut R,
    model: &Model,
    params: &EpiParams,
    observation: Observation,
    rho: f64,
    size: f64,
    days: usize,
) -> Result<Vec<f64>> {
    if !(rho > 0.0 && rho <= 1.0) {
        return Err(ForecastError::InvalidParameter {
            name: "rho",
            value: rho,
            why: "the reporting fraction must be in (0, 1]",
        });
    }
    let mut solver = Rk5::new(1e-9, 1e-8)?;
    let tr = model.simulate(params, days, &mut solver)?;
    let series = match observation {
        Observation::Incidence => tr.incidence,
        Observation::Prevalence => tr.prevalence,
    };
    Ok(series
        .into_iter()
        .map(|m| sample_nb(rng, rho * m, size))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn nb_draws_have_the_right_moments() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let (mu, size) = (40.0, 5.0);
        let n = 200_000;
        let xs: Vec<f64> = (0..n).map(|_| sample_nb(&mut rng, mu, size)).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        assert!((mean - mu).abs() < 0.2, "{mean}");
        let want = mu + mu * mu / size;
        assert!((var / want - 1.0).abs() < 0.03, "{var} vs {want}");
        assert_eq!(sample_nb(&mut rng, 0.0, 5.0), 0.0);
        assert_eq!(sample_nb(&mut rng, f64::NAN, 5.0), 0.0);
    }
}
