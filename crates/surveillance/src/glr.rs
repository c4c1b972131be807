//! Negative binomial generalised likelihood ratio detector for a change in the intercept (Höhle & Paul 2008),
//! as R `surveillance::algo.glrnb` behaves with its defaults.
//!
//! The in-control means μ₀ₜ come from a negative binomial regression with one pair of seasonal harmonics,
//! log μ = β₀ + β₁ cos(2πt/freq) + β₂ sin(2πt/freq), fitted by maximum likelihood (θ included) to all weeks
//! before the range. At week n the statistic is
//! GLR_n = max over k of sup_κ Σ_{t=k..n} [ℓ(y_t; μ₀ₜ e^κ) − ℓ(y_t; μ₀ₜ)] with κ ≥ 0 (increase) or κ ≤ 0 (decrease),
//! k running from the start of the range (or the week after the last alarm) to n. An alarm is raised when
//! GLR_n ≥ c.ARL, after which the statistic restarts. The reported `upperbound` is GLR_n itself (R's
//! `ret = "value"`).

use crate::glm::fit_negbin;
use crate::{DetectionRow, Error, Series};

/// Direction of the change to detect (R's `dir`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum GlrDirection {
    /// An increase (default).
    Increase,
    /// A decrease.
    Decrease,
}

/// Parameters of `algo.glrnb` (R's defaults; the dispersion is estimated with μ₀).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct GlrParams {
    /// Alarm threshold (`c.ARL`, default 5).
    pub c_arl: f64,
    /// Direction (`dir`, default increase).
    pub direction: GlrDirection,
}

impl Default for GlrParams {
    fn default() -> Self {
        GlrParams {
            c_arl: 5.0,
            direction: GlrDirection::Increase,
        }
    }
}

/// Log-likelihood of y under mean m, up to terms that do not depend on m (Poisson when θ is None).
fn loglik(y: f64, m: f64, theta: Option<f64>) -> f64 {
    match theta {
        None => y * m.ln() - m,
        Some(th) => y * m.ln() - (y + th) * (m + th).ln(),
    }
}

/// sup over κ in the allowed half-line of Σ [ℓ(y; μe^κ) − ℓ(y; μ)], by Newton's method on the concave profile.
fn window_sup(y: &[f64], mu: &[f64], theta: Option<f64>, dir: GlrDirection) -> f64 {
    // Derivative and second derivative of the profile in κ.
    let derivs = |k: f64| -> (f64, f64) {
        let e = k.exp();
        y.iter().zip(mu).fold((0.0, 0.0), |(g, h), (&y, &m)| {
            let mk = m * e;
            match theta {
                None => (g + y - mk, h - mk),
                Some(th) => {
                    let d = mk + th;
                    (g + y - (y + th) * mk / d, h - (y + th) * mk * th / (d * d))
                }
            }
        })
    };
    let (g0, _) = derivs(0.0);
    let allowed = match dir {
        GlrDirection::Increase => g0 > 0.0,
        GlrDirection::Decrease => g0 < 0.0,
    };
    if !allowed {
        return 0.0;
    }
    let sy: f64 = y.iter().sum();
    let sm: f64 = mu.iter().sum();
    // Bracket [lo, hi] around the maximiser (κ = 0 is one end); Newton steps that leave it are replaced by
    // bisection.
    let (mut lo, mut hi) = match dir {
        GlrDirection::Increase => (0.0, 1.0),
        GlrDirection::Decrease => (-1.0, 0.0),
    };
    match dir {
        GlrDirection::Increase => {
            while derivs(hi).0 > 0.0 && hi < 700.0 {
                lo = hi;
                hi *= 2.0;
            }
        }
        GlrDirection::Decrease => {
            if sy == 0.0 {
                // All counts zero: the supremum is the limit κ → −∞.
                return match theta {
                    None => sm,
                    Some(th) => mu.iter().map(|m| th * (1.0 + m / th).ln()).sum(),
                };
            }
            while derivs(lo).0 < 0.0 && lo > -700.0 {
                hi = lo;
                lo *= 2.0;
            }
        }
    }
    let mut k = match theta {
        None if sy > 0.0 => (sy / sm).ln().clamp(lo, hi),
        _ => (lo + hi) / 2.0,
    };
    for _ in 0..100 {
        let (g, h) = derivs(k);
        if g > 0.0 {
            lo = k;
        } else {
            hi = k;
        }
        let mut next = k - g / h;
        if !(next > lo && next < hi && next.is_finite()) {
            next = (lo + hi) / 2.0;
        }
        if (next - k).abs() < 1e-14 * (1.0 + k.abs()) {
            k = next;
            break;
        }
        k = next;
    }
    let e = k.exp();
    let v: f64 = y
        .iter()
        .zip(mu)
        .map(|(&y, &m)| loglik(y, m * e, theta) - loglik(y, m, theta))
        .sum();
    v.max(0.0)
}

pub(crate) fn run(
    series: &Series,
    p: &GlrParams,
    first: usize,
    last: usize,
) -> Result<Vec<DetectionRow>, Error> {
    if p.c_arl.is_nan() || p.c_arl <= 0.0 {
        return Err(Error::InvalidParameter {
            name: "c.ARL",
            reason: "must be positive".into(),
        });
    }
    let y = series.observed();
    let freq = series.freq();
    // Three parameters need at least a few weeks of history.
    if first <= 4 {
        return Err(Error::TooShort {
            method: "glrnb",
            t: first,
            needed: 4,
        });
    }
    let row = |t: usize| crate::harmonic_row(t, freq);
    let train: Vec<usize> = (1..first).collect();
    let x: Vec<f64> = train.iter().flat_map(|&t| row(t)).collect();
    let yt: Vec<f64> = train.iter().map(|&t| y[t - 1]).collect();
    let (fit, theta) = fit_negbin(&x, 3, &yt).map_err(|source| Error::Fit { t: first, source })?;
    let mu0: Vec<f64> = (first..=last).map(|t| fit.eta_at(&row(t)).exp()).collect();
    let obs = &y[first - 1..last];
    let mut rows = Vec::with_capacity(obs.len());
    let mut start = 0;
    for n in 0..obs.len() {
        let mut best = 0.0f64;
        for k in start..=n {
            best = best.max(window_sup(&obs[k..=n], &mu0[k..=n], theta, p.direction));
        }
        let alarm = best >= p.c_arl;
        rows.push(DetectionRow {
            t: first + n,
            observed: obs[n],
            upperbound: Some(best),
            alarm,
        });
        if alarm {
            start = n + 1;
        }
    }
    Ok(rows)
}
