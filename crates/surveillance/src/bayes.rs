//! Bayesian predictive method (Riebler 2004), as in R `surveillance::algo.bayes`.
//!
//! With a non-informative Gamma prior on a Poisson rate, the predictive distribution of the current count given
//! n baseline counts summing to S is negative binomial with size S + ½ and probability n/(n + 1); the upper bound
//! is its (1 − alpha) quantile.

use crate::dist::qnbinom;
use crate::{check_alpha, DetectionRow, Error, Series};

/// Parameters of `algo.bayes` (R's defaults: `b = 0`, `w = 6`, `actY = TRUE`, `alpha = 0.05`, the "bayes1"
/// preset). "bayes2" is b = 1, w = 6, actY; "bayes3" is b = 2, w = 4, not actY.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct BayesParams {
    /// Number of past years whose ±w windows enter the baseline (`b`).
    pub b: usize,
    /// Window half-width, and the number of recent weeks used when `act_y` (`w`).
    pub w: usize,
    /// Include the last `w` weeks of the current year (`actY`).
    pub act_y: bool,
    /// Significance level (`alpha`).
    pub alpha: f64,
}

impl Default for BayesParams {
    fn default() -> Self {
        BayesParams {
            b: 0,
            w: 6,
            act_y: true,
            alpha: 0.05,
        }
    }
}

pub(crate) fn run(
    series: &Series,
    p: &BayesParams,
    first: usize,
    last: usize,
) -> Result<Vec<DetectionRow>, Error> {
    check_alpha(p.alpha)?;
    if p.b == 0 && (!p.act_y || p.w == 0) {
        return Err(Error::InvalidParameter {
            name: "b",
            reason: "the baseline is empty (b = 0 needs actY and w ≥ 1)".into(),
        });
    }
    let y = series.observed();
    let freq = series.freq();
    if p.b > 0 && p.w >= freq {
        return Err(Error::InvalidParameter {
            name: "w",
            reason: format!("the window half-width must be shorter than a year of {freq} periods"),
        });
    }
    let needed = if p.b > 0 { p.b * freq + p.w } else { p.w };
    if first <= needed {
        return Err(Error::TooShort {
            method: "bayes",
            t: first,
            needed,
        });
    }
    (first..=last)
        .map(|t| {
            let k = t - 1;
            let mut sum = 0.0;
            let mut n = 0usize;
            for i in 1..=p.b {
                let c = k - i * freq;
                for v in &y[(c - p.w)..=(c + p.w)] {
                    sum += v;
                    n += 1;
                }
            }
            if p.act_y {
                for v in &y[k - p.w..k] {
                    sum += v;
                    n += 1;
                }
            }
            let nf = n as f64;
            let upper = qnbinom(1.0 - p.alpha, sum + 0.5, nf / (nf + 1.0));
            Ok(DetectionRow {
                t,
                observed: y[k],
                upperbound: upper,
                alarm: upper.is_some_and(|u| y[k] > u),
            })
        })
        .collect()
}
