//! CUSUM for Poisson counts (Rossi et al. 1999), as in R `surveillance::algo.cusum`.
//!
//! Counts are standardised against the reference mean m (the mean of all weeks before the range) with one of
//! several transformations, and the one-sided cumulative sum S_t = max(0, S_{t−1} + x_t − k) alarms at S_t ≥ h.
//! The upper bound is the smallest count that would raise an alarm given S_{t−1}.

use crate::glm::fit_poisson;
use crate::{DetectionRow, Error, Series};

/// Standardisation of the counts (R's `trans`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
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

/// Reference (in-control) mean of the CUSUM (R's `m`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum CusumReference {
    /// The mean of all weeks before the range (R's `m = NULL`, the default).
    PreRangeMean,
    /// A fixed value.
    Fixed(f64),
    /// Week-specific means from a Poisson regression log m_t = β₀ + β₁cos(2πt/freq) + β₂sin(2πt/freq) on all
    /// weeks before the range (R's `m = "glm"`).
    HarmonicGlm,
}

/// Parameters of `algo.cusum` (R's defaults k = 1.04, h = 2.26, m = mean of the weeks before the range).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct CusumParams {
    /// Reference value (`k`).
    pub k: f64,
    /// Decision interval (`h`).
    pub h: f64,
    /// Reference mean (`m`).
    pub m: CusumReference,
    /// Transformation (`trans`).
    pub trans: CusumTrans,
}

impl Default for CusumParams {
    fn default() -> Self {
        CusumParams {
            k: 1.04,
            h: 2.26,
            m: CusumReference::PreRangeMean,
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
                // The root is squared as it is, as the reference does: a negative root (a bound below the
                // transform's minimum) still gives a small positive count; with no real root the bound is 0.
                if m + c < 0.0 {
                    return 0.0;
                }
                let r = -m.sqrt() + (m + c).sqrt();
                r.powi(2)
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
    let too_short = Error::TooShort {
        method: "cusum",
        t: first,
        needed: 1,
    };
    let n_range = last - first + 1;
    let means: Vec<f64> = match p.m {
        CusumReference::Fixed(m) => vec![m; n_range],
        CusumReference::PreRangeMean => {
            if first <= 1 {
                return Err(too_short);
            }
            vec![y[..first - 1].iter().sum::<f64>() / (first - 1) as f64; n_range]
        }
        CusumReference::HarmonicGlm => {
            if first <= 3 {
                return Err(Error::TooShort {
                    method: "cusum",
                    t: first,
                    needed: 3,
                });
            }
            let freq = series.freq();
            let row = |t: usize| crate::harmonic_row(t, freq);
            let x: Vec<f64> = (1..first).flat_map(row).collect();
            let ones = vec![1.0; first - 1];
            let fit = fit_poisson(&x, 3, &y[..first - 1], &ones)
                .map_err(|source| Error::Fit { t: first, source })?;
            (first..=last).map(|t| fit.eta_at(&row(t)).exp()).collect()
        }
    };
    if let Some(m) = means
        .iter()
        .find(|m| m.is_nan() || **m <= 0.0 || !m.is_finite())
    {
        return Err(Error::InvalidParameter {
            name: "m",
            reason: format!("the reference mean must be positive (got {m})"),
        });
    }
    let mut s_prev = 0.0;
    let mut rows = Vec::with_capacity(last - first + 1);
    for (t, &m) in (first..=last).zip(&means) {
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
