//! CUSUM for Poisson counts (Rossi et al. 1999), as in R `surveillance::algo.cusum`.
//!
//! Counts are standardised against the reference mean m (the mean of all weeks before the range) with one of
//! several transformations, and the one-sided cumulative sum S_t = max(0, S_{t−1} + x_t − k) alarms at S_t ≥ h.
//! The upper bound is the smallest count that would raise an alarm given S_{t−1}.

use crate::{DetectionRow, Error, Series};

/// Standardisation of the counts (R's `trans`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CusumTrans {
    /// (y − m)/√m.
    Standard,
    /// Rossi's approximate normal transform (y − 3m + 2√(y·m))/(2√m).
    Rossi,
    /// Anscombe residual 3/2·(y^{2/3} − m^{2/3})/m^{1/6}.
    Anscombe,
    /// Pearson residual of a negative binomial with variance m + alpha·m².
    PearsonNegBin(f64),
}

/// Parameters of `algo.cusum` (R's defaults k = 1.04, h = 2.26, m = mean of the weeks before the range).
#[derive(Debug, Clone, PartialEq)]
pub struct CusumParams {
    /// Reference value (`k`).
    pub k: f64,
    /// Decision interval (`h`).
    pub h: f64,
    /// Reference mean (`m`); `None` = mean of all weeks before the range.
    pub m: Option<f64>,
    /// Transformation (`trans`).
    pub trans: CusumTrans,
}

impl Default for CusumParams {
    fn default() -> Self {
        CusumParams {
            k: 1.04,
            h: 2.26,
            m: None,
            trans: CusumTrans::Standard,
        }
    }
}

impl CusumTrans {
    fn apply(&self, y: f64, m: f64) -> f64 {
        match self {
            CusumTrans::Standard => (y - m) / m.sqrt(),
            CusumTrans::Rossi => (y - 3.0 * m + 2.0 * (y * m).sqrt()) / (2.0 * m.sqrt()),
            CusumTrans::Anscombe => {
                1.5 * (y.powf(2.0 / 3.0) - m.powf(2.0 / 3.0)) / m.powf(1.0 / 6.0)
            }
            CusumTrans::PearsonNegBin(a) => (y - m) / (m + a * m * m).sqrt(),
        }
    }

    /// The count y at which the transform equals x (the inverse of `apply`), for the upper bound.
    fn invert(&self, x: f64, m: f64) -> f64 {
        match self {
            CusumTrans::Standard => m + x * m.sqrt(),
            CusumTrans::Rossi => {
                // Solve y + 2√m·√y − (3m + 2√m·x) = 0 for √y ≥ 0.
                let c = 3.0 * m + 2.0 * m.sqrt() * x;
                let r = -m.sqrt() + (m + c).max(0.0).sqrt();
                r.max(0.0).powi(2)
            }
            CusumTrans::Anscombe => {
                let base = m.powf(2.0 / 3.0) + x * m.powf(1.0 / 6.0) / 1.5;
                base.max(0.0).powf(1.5)
            }
            CusumTrans::PearsonNegBin(a) => m + x * (m + a * m * m).sqrt(),
        }
    }
}

pub(crate) fn run(
    series: &Series,
    p: &CusumParams,
    first: usize,
    last: usize,
) -> Result<Vec<DetectionRow>, Error> {
    if p.h.is_nan() || p.h <= 0.0 || !p.k.is_finite() || !p.h.is_finite() {
        return Err(Error::InvalidParameter {
            name: "h",
            reason: "k must be finite and h positive".into(),
        });
    }
    if let CusumTrans::PearsonNegBin(a) = p.trans {
        if a.is_nan() || a < 0.0 {
            return Err(Error::InvalidParameter {
                name: "alpha",
                reason: "the negative binomial dispersion must be non-negative".into(),
            });
        }
    }
    let y = series.observed();
    let m = match p.m {
        Some(m) => m,
        None => {
            if first <= 1 {
                return Err(Error::TooShort {
                    method: "cusum",
                    t: first,
                    needed: 1,
                });
            }
            y[..first - 1].iter().sum::<f64>() / (first - 1) as f64
        }
    };
    if m.is_nan() || m <= 0.0 || !m.is_finite() {
        return Err(Error::InvalidParameter {
            name: "m",
            reason: format!("the reference mean must be positive (got {m})"),
        });
    }
    let mut s_prev = 0.0;
    let mut rows = Vec::with_capacity(last - first + 1);
    for t in first..=last {
        let yt = y[t - 1];
        let s = (s_prev + p.trans.apply(yt, m) - p.k).max(0.0);
        // The reference rounds the bound up to a whole count for the standard transform only.
        let raw = p.trans.invert(p.h + p.k - s_prev, m);
        let upper = match p.trans {
            // Adding 0.0 turns a −0 (the ceiling of a small negative number) into 0.
            CusumTrans::Standard => raw.ceil().max(0.0) + 0.0,
            _ => raw,
        };
        rows.push(DetectionRow {
            t,
            observed: yt,
            upperbound: Some(upper),
            alarm: s >= p.h,
        });
        s_prev = s;
    }
    Ok(rows)
}
