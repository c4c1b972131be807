//! Time-varying reproduction number by the method of Cori et al. (2013), "A new framework and software to estimate
//! time-varying reproduction numbers during epidemics", Am J Epidemiol 178:1505.
//!
//! Implemented from the paper (and its Web Appendix 11 for the discretised serial interval); EpiEstim's outputs are
//! the test expectations.

use crate::error::{ForecastError, Result};
use crate::special::{gamma_cdf, gamma_quantile, is_open_unit, is_positive};
use serde::Serialize;

/// Discretised serial interval w_0..w_{len-1} for a gamma-distributed SI with the given mean and SD.
///
/// Cori et al. (Web Appendix 11) shift the SI by one day (SI − 1 ~ Gamma with shape ((μ−1)/σ)², scale σ²/(μ−1))
/// and discretise it by linear interpolation of the distribution between integers, which gives
/// w_k = k F(k) + (k−2) F(k−2) − 2(k−1) F(k−1) + ab [2 G(k−1) − G(k−2) − G(k)], with F the Gamma(a, b) CDF and G the
/// Gamma(a+1, b) CDF; negative round-off is clipped to 0 and w_0 = 0.
pub fn discretise_serial_interval(mean: f64, sd: f64, len: usize) -> Result<Vec<f64>> {
    if !(mean.is_finite() && mean > 1.0) {
        return Err(ForecastError::InvalidParameter {
            name: "mean_si",
            value: mean,
            why: "the serial interval mean must be > 1 day (the method shifts it by one day)",
        });
    }
    if !is_positive(sd) {
        return Err(ForecastError::InvalidParameter {
            name: "sd_si",
            value: sd,
            why: "the serial interval SD must be > 0",
        });
    }
    let a = ((mean - 1.0) / sd).powi(2);
    let b = sd * sd / (mean - 1.0);
    let f = |x: f64| gamma_cdf(x, a, b);
    let g = |x: f64| gamma_cdf(x, a + 1.0, b);
    Ok((0..len)
        .map(|k| {
            let k = k as f64;
            let w = k * f(k) + (k - 2.0) * f(k - 2.0) - 2.0 * (k - 1.0) * f(k - 1.0)
                + a * b * (2.0 * g(k - 1.0) - g(k - 2.0) - g(k));
            w.max(0.0)
        })
        .collect())
}

/// Settings of a Cori R_t estimate.
#[derive(Debug, Clone)]
pub struct CoriConfig {
    /// Window length in days (EpiEstim's default weekly windows are 7).
    pub window: usize,
    /// First window start, 1-based day (EpiEstim's default is 2: day 1 seeds the epidemic).
    pub first_start: usize,
    /// Shape of the Gamma prior on R.
    pub prior_shape: f64,
    /// Scale of the Gamma prior on R.
    pub prior_scale: f64,
    /// Posterior quantile probabilities to report.
    pub quantiles: Vec<f64>,
}

impl Default for CoriConfig {
    fn default() -> Self {
        CoriConfig {
            window: 7,
            first_start: 2,
            prior_shape: 1.0,
            prior_scale: 5.0,
            quantiles: vec![0.025, 0.05, 0.25, 0.5, 0.75, 0.95, 0.975],
        }
    }
}

/// The posterior of R over one window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RtWindow {
    /// First day of the window (1-based, inclusive).
    pub t_start: usize,
    /// Last day of the window (1-based, inclusive).
    pub t_end: usize,
    /// Posterior Gamma shape.
    pub shape: f64,
    /// Posterior Gamma scale.
    pub scale: f64,
    /// Posterior mean.
    pub mean: f64,
    /// Posterior standard deviation.
    pub sd: f64,
    /// Posterior quantiles at `CoriConfig::quantiles`.
    pub quantiles: Vec<f64>,
}

/// Total infectiousness Λ_t = Σ_{k=1}^{t−1} I_{t−k} w_k for every day t (0-based index here).
pub fn infectiousness(incidence: &[f64], si: &[f64]) -> Vec<f64> {
    (0..incidence.len())
        .map(|t| {
            (1..=t)
                .filter(|&k| k < si.len())
                .map(|k| incidence[t - k] * si[k])
                .sum()
        })
        .collect()
}

/// Cori et al. R_t on sliding windows [s, s+window−1] for s = first_start..=T−window+1.
///
/// Posterior for each window τ: R ~ Gamma(a + Σ_{t∈τ} I_t, scale = 1 / (1/b + Σ_{t∈τ} Λ_t)). The first day's
/// cases only seed transmission (EpiEstim treats them as imported), which the default first_start = 2 reflects.
/// `si` is the discretised serial interval with `si[0]` = 0.
pub fn cori_rt(incidence: &[f64], si: &[f64], cfg: &CoriConfig) -> Result<Vec<RtWindow>> {
    crate::data::validate_series(incidence, "incidence")?;
    if cfg.window == 0 {
        return Err(ForecastError::InvalidParameter {
            name: "window",
            value: 0.0,
            why: "the window must be at least one day",
        });
    }
    if !(is_positive(cfg.prior_shape) && is_positive(cfg.prior_scale)) {
        return Err(ForecastError::InvalidParameter {
            name: "prior",
            value: cfg.prior_shape.min(cfg.prior_scale),
            why: "prior shape and scale must be > 0",
        });
    }
    if let Some(&q) = cfg.quantiles.iter().find(|&&q| !is_open_unit(q)) {
        return Err(ForecastError::InvalidParameter {
            name: "quantile",
            value: q,
            why: "quantile probabilities must lie in (0, 1)",
        });
    }
    let first = cfg.first_start.max(2);
    let need = first + cfg.window - 1;
    if incidence.len() < need {
        return Err(ForecastError::TooShort {
            got: incidence.len(),
            need,
            why: "one full window after the first day is needed",
        });
    }
    if incidence.iter().all(|&x| x == 0.0) {
        return Err(ForecastError::NoCases);
    }
    let lambda = infectiousness(incidence, si);
    let mut out = Vec::new();
    for s in first..=incidence.len() + 1 - cfg.window {
        let e = s + cfg.window - 1;
        let cases: f64 = incidence[s - 1..e].iter().sum();
        let infect: f64 = lambda[s - 1..e].iter().sum();
        let shape = cfg.prior_shape + cases;
        let scale = 1.0 / (1.0 / cfg.prior_scale + infect);
        out.push(RtWindow {
            t_start: s,
            t_end: e,
            shape,
            scale,
            mean: shape * scale,
            sd: shape.sqrt() * scale,
            quantiles: cfg
                .quantiles
                .iter()
                .map(|&p| gamma_quantile(p, shape, scale))
                .collect(),
        });
    }
    Ok(out)
}

/// Cori R_t with a parametric (gamma, shifted by one day) serial interval, as EpiEstim's `parametric_si`.
pub fn cori_rt_parametric(
    incidence: &[f64],
    mean_si: f64,
    sd_si: f64,
    cfg: &CoriConfig,
) -> Result<Vec<RtWindow>> {
    // EpiEstim discretises over 0..T−1 and pads with a zero at T; only lags 1..T−1 ever enter Λ.
    let si = discretise_serial_interval(mean_si, sd_si, incidence.len().max(1))?;
    cori_rt(incidence, &si, cfg)
}
