//! EARS C1, C2 and C3 (Hutwagner et al. 2003), as in R `surveillance::earsC`.
//!
//! C1 compares the count with the mean and standard deviation of the previous `baseline` weeks; C2 does the same
//! with a two-week guard band; C3 accumulates the positive parts of C2 − 1 over the current and two previous
//! weeks. The R package's C3 upper bound is computed from the current count rather than from the baseline mean
//! (`Variant::C3Compat` reproduces that); `Variant::C3Textbook` is the published rule.

use crate::dist::qnorm;
use crate::{check_alpha, mean_sd, DetectionRow, Error, Series};

/// Parameters of the EARS methods (R's `earsC` control list).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct EarsParams {
    /// Number of baseline weeks (`baseline`, default 7).
    pub baseline: usize,
    /// Lower bound applied to the baseline standard deviation (`minSigma`, default 0).
    pub min_sigma: f64,
    /// Significance level (`alpha`, default 0.001): the threshold is the standard normal (1 − alpha) quantile.
    pub alpha: f64,
}

impl Default for EarsParams {
    fn default() -> Self {
        EarsParams {
            baseline: 7,
            min_sigma: 0.0,
            alpha: 0.001,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Variant {
    C1,
    C2,
    C3Compat,
    C3Textbook,
}

/// max(a, b) that keeps a NaN in `a` (as R's `pmax` does), unlike `f64::max`: a zero-variance baseline gives a
/// NaN statistic, and the reference then reports no upper bound rather than a clamped one.
fn pmax(a: f64, b: f64) -> f64 {
    if a.is_nan() {
        a
    } else {
        a.max(b)
    }
}

/// Mean and standard deviation (floored at `min_sigma`) of the `b` weeks ending `lag` weeks before index `i`
/// (0-based), i.e. y[i−lag−b+1 ..= i−lag].
fn baseline_stats(y: &[f64], i: usize, b: usize, lag: usize, min_sigma: f64) -> (f64, f64) {
    let end = i + 1 - lag;
    let (m, s) = mean_sd(&y[end - b..end]);
    (m, s.max(min_sigma))
}

/// The C2 statistic at 0-based index `i` and its baseline mean and sd.
fn c2(y: &[f64], i: usize, b: usize, min_sigma: f64) -> (f64, f64, f64) {
    let (m, s) = baseline_stats(y, i, b, 3, min_sigma);
    ((y[i] - m) / s, m, s)
}

pub(crate) fn run(
    series: &Series,
    p: &EarsParams,
    variant: Variant,
    first: usize,
    last: usize,
) -> Result<Vec<DetectionRow>, Error> {
    check_alpha(p.alpha)?;
    if p.baseline < 2 {
        return Err(Error::InvalidParameter {
            name: "baseline",
            reason: "needs at least 2 weeks to estimate a standard deviation".into(),
        });
    }
    if p.min_sigma.is_nan() || p.min_sigma < 0.0 || !p.min_sigma.is_finite() {
        return Err(Error::InvalidParameter {
            name: "minSigma",
            reason: "must be a finite non-negative number".into(),
        });
    }
    let b = p.baseline;
    // Weeks of history needed before the first week of the range.
    let needed = match variant {
        Variant::C1 => b,
        Variant::C2 => b + 2,
        Variant::C3Compat | Variant::C3Textbook => b + 4,
    };
    if first <= needed {
        return Err(Error::TooShort {
            method: match variant {
                Variant::C1 => "ears-c1",
                Variant::C2 => "ears-c2",
                Variant::C3Compat => "ears-c3",
                Variant::C3Textbook => "ears-c3-textbook",
            },
            t: first,
            needed,
        });
    }
    let y = series.observed();
    let z = qnorm(1.0 - p.alpha);
    let rows = (first..=last)
        .map(|t| {
            let i = t - 1;
            let (upper, alarm) = match variant {
                Variant::C1 => {
                    let (m, s) = baseline_stats(y, i, b, 1, p.min_sigma);
                    let u = m + z * s;
                    (u, y[i] > u)
                }
                Variant::C2 => {
                    let (m, s) = baseline_stats(y, i, b, 3, p.min_sigma);
                    let u = m + z * s;
                    (u, y[i] > u)
                }
                Variant::C3Compat => {
                    let (_, _, s) = c2(y, i, b, p.min_sigma);
                    let l = pmax(c2(y, i - 1, b, p.min_sigma).0 - 1.0, 0.0)
                        + pmax(c2(y, i - 2, b, p.min_sigma).0 - 1.0, 0.0);
                    let u = pmax(y[i] + s * (z - l), 0.0);
                    (u, y[i] > u)
                }
                Variant::C3Textbook => {
                    let (stat, m, s) = c2(y, i, b, p.min_sigma);
                    let l = pmax(c2(y, i - 1, b, p.min_sigma).0 - 1.0, 0.0)
                        + pmax(c2(y, i - 2, b, p.min_sigma).0 - 1.0, 0.0);
                    let c3 = l + pmax(stat - 1.0, 0.0);
                    // The smallest count that would make C3 exceed the threshold; when the two previous weeks
                    // alone exceed it, every count alarms and the bound is 0.
                    let u = if l > z {
                        0.0
                    } else {
                        pmax(m + s * (1.0 + z - l), 0.0)
                    };
                    (u, c3 > z)
                }
            };
            DetectionRow {
                t,
                observed: y[i],
                upperbound: if upper.is_nan() { None } else { Some(upper) },
                alarm,
            }
        })
        .collect();
    Ok(rows)
}
