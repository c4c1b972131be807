//! CDC historical limits (Stroup et al. 1989), as in R `surveillance::algo.cdc`.
//!
//! The current 4-week total (this week and the three before) is compared with the 4-week totals of the same
//! period and of the periods just before and after it in each of the past `b` years (3·b values): the upper
//! bound is mean + z_{1−α/2}·sd·√(1 + 1/n).

use crate::dist::qnorm;
use crate::{check_alpha, mean_sd, DetectionRow, Error, Series};

/// Parameters of `algo.cdc` (R's defaults b = 5, m = 1, alpha = 0.025).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct CdcParams {
    /// Number of past years (`b`).
    pub b: usize,
    /// Number of 4-week periods on each side of the comparable period (`m`).
    pub m: usize,
    /// Significance level (`alpha`); the bound uses the two-sided z_{1−α/2}.
    pub alpha: f64,
}

impl Default for CdcParams {
    fn default() -> Self {
        CdcParams {
            b: 5,
            m: 1,
            alpha: 0.025,
        }
    }
}

/// Sum of the 4 weeks ending at 0-based index `e`.
fn four_week(y: &[f64], e: usize) -> f64 {
    y[e - 3..=e].iter().sum()
}

/// Runs the method. The `observed` of each row is the current 4-week total, the quantity the bound applies to.
pub(crate) fn run_cdc(
    series: &Series,
    p: &CdcParams,
    first: usize,
    last: usize,
) -> Result<Vec<DetectionRow>, Error> {
    check_alpha(p.alpha)?;
    if p.b == 0 || p.b * (2 * p.m + 1) < 2 {
        return Err(Error::InvalidParameter {
            name: "b",
            reason: "the baseline needs at least two 4-week totals".into(),
        });
    }
    let y = series.observed();
    let freq = series.freq();
    if 4 * p.m >= freq {
        return Err(Error::InvalidParameter {
            name: "m",
            reason: format!(
                "4·m = {} weeks must stay within a year of {freq} periods",
                4 * p.m
            ),
        });
    }
    // The oldest total ends at k − b·freq − 4m and starts three weeks earlier.
    let needed = p.b * freq + 4 * p.m + 3;
    if first <= needed {
        return Err(Error::TooShort {
            method: "cdc",
            t: first,
            needed,
        });
    }
    let z = qnorm(1.0 - p.alpha / 2.0);
    let rows = (first..=last)
        .map(|t| {
            let k = t - 1;
            let mut base = Vec::with_capacity(p.b * (2 * p.m + 1));
            for i in 1..=p.b {
                let c = k - i * freq;
                for j in 0..=(2 * p.m) {
                    // Periods end at c − 4m, …, c, …, c + 4m.
                    let e = c + 4 * j - 4 * p.m;
                    base.push(four_week(y, e));
                }
            }
            let (mean, sd) = mean_sd(&base);
            let n = base.len() as f64;
            let upper = mean + z * sd * (1.0 + 1.0 / n).sqrt();
            let current = four_week(y, k);
            DetectionRow {
                t,
                observed: current,
                upperbound: Some(upper),
                alarm: current > upper,
            }
        })
        .collect();
    Ok(rows)
}
