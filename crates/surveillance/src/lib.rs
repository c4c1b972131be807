//! Outbreak (aberration) detection on weekly count series.
//!
//! The methods reproduce the behaviour of the R package `surveillance` 1.20.3 (alarms identical, upper bounds
//! within 1e-6 relative on the reference outputs), implemented from the published formulas: EARS C1/C2/C3
//! (Hutwagner et al.), Farrington et al. (1996), the improved Farrington method of Noufaily et al. (2013),
//! CUSUM (Rossi et al. 1999), the Bayesian predictive method (Riebler 2004), the CDC historical limits (Stroup
//! et al. 1989) and the negative binomial GLR detector (Höhle & Paul 2008).
//!
//! ```
//! use surveillance::{detect, Method, Series, EarsParams};
//! let series = Series::new(vec![3.0, 4.0, 2.0, 5.0, 3.0, 4.0, 2.0, 12.0]).unwrap();
//! let rows = detect(&series, &Method::EarsC1(EarsParams::default()), 8..=8).unwrap();
//! assert!(rows[0].alarm);
//! ```

mod bayes;
pub mod bench;
pub mod cli;
mod cusum;
mod dist;
mod ears;
mod farrington;
pub mod glm;
mod glr;
mod historical;

use std::ops::RangeInclusive;

use chrono::NaiveDate;
use thiserror::Error;

pub use bayes::BayesParams;
pub use cusum::{CusumParams, CusumReference, CusumTrans};
pub use ears::EarsParams;
pub use farrington::{FarringtonParams, FlexibleParams, PowerTrans, ThresholdMethod};
pub use glr::{GlrDirection, GlrParams};
pub use historical::CdcParams;

/// Everything that can go wrong in detection.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum Error {
    /// The series has no observations.
    #[error("the series is empty")]
    EmptySeries,
    /// A count is negative.
    #[error("observation {t} is negative ({value})")]
    NegativeCount {
        /// 1-based week index.
        t: usize,
        /// The offending value.
        value: f64,
    },
    /// A count is NaN or infinite.
    #[error("observation {t} is not a finite number")]
    NonFiniteCount {
        /// 1-based week index.
        t: usize,
    },
    /// The requested range does not lie inside the series.
    #[error("range {first}:{last} is outside the data (weeks 1 to {len})")]
    RangeOutside {
        /// First requested week.
        first: usize,
        /// Last requested week.
        last: usize,
        /// Length of the series.
        len: usize,
    },
    /// The series is too short before the range for the method's baseline.
    #[error("{method} needs at least {needed} weeks before week {t} (the series is too short for this range)")]
    TooShort {
        /// Method name.
        method: &'static str,
        /// First week of the range that cannot be computed.
        t: usize,
        /// Number of weeks of history the method needs.
        needed: usize,
    },
    /// A parameter is out of its domain.
    #[error("invalid parameter {name}: {reason}")]
    InvalidParameter {
        /// Parameter name (R's argument name).
        name: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The regression model could not be fitted.
    #[error("the regression at week {t} could not be fitted: {source}")]
    Fit {
        /// 1-based week index.
        t: usize,
        /// The cause.
        source: glm::GlmError,
    },
    /// The series' dates are inconsistent with its frequency.
    #[error("invalid dates: {0}")]
    Dates(String),
}

/// A series of counts per period (weeks by default), with optional calendar information.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    observed: Vec<f64>,
    freq: usize,
    dates: Option<Vec<NaiveDate>>,
}

impl Series {
    /// A weekly series (52 periods a year) indexed by position. Counts must be finite and non-negative.
    pub fn new(observed: Vec<f64>) -> Result<Self, Error> {
        if observed.is_empty() {
            return Err(Error::EmptySeries);
        }
        for (i, &v) in observed.iter().enumerate() {
            if !v.is_finite() {
                return Err(Error::NonFiniteCount { t: i + 1 });
            }
            if v < 0.0 {
                return Err(Error::NegativeCount { t: i + 1, value: v });
            }
        }
        Ok(Series {
            observed,
            freq: 52,
            dates: None,
        })
    }

    /// Sets the number of periods per year (52 for weekly data).
    pub fn with_frequency(mut self, freq: usize) -> Result<Self, Error> {
        if freq == 0 {
            return Err(Error::InvalidParameter {
                name: "freq",
                reason: "must be at least 1".into(),
            });
        }
        self.freq = freq;
        Ok(self)
    }

    /// Attaches the calendar date of every period (weekly data: one date per week, 7 days apart). With dates,
    /// Farrington flexible finds the reference week of each past year by calendar (the same weekday nearest to
    /// the date one, two, … years back) instead of by stepping `freq` periods back.
    pub fn with_dates(mut self, dates: Vec<NaiveDate>) -> Result<Self, Error> {
        if dates.len() != self.observed.len() {
            return Err(Error::Dates(format!(
                "{} dates for {} observations",
                dates.len(),
                self.observed.len()
            )));
        }
        for (i, pair) in dates.windows(2).enumerate() {
            if (pair[1] - pair[0]).num_days() != 7 {
                return Err(Error::Dates(format!(
                    "weeks {} and {} are not 7 days apart",
                    i + 1,
                    i + 2
                )));
            }
        }
        self.dates = Some(dates);
        Ok(self)
    }

    /// A weekly series starting at `start` (consecutive weeks).
    pub fn with_start_date(self, start: NaiveDate) -> Result<Self, Error> {
        let dates = (0..self.observed.len())
            .map(|i| start + chrono::Duration::days(7 * i as i64))
            .collect();
        self.with_dates(dates)
    }

    /// A weekly series whose first week is ISO week `week` of ISO year `year` (dated by its Monday).
    pub fn with_start_week(self, year: i32, week: u32) -> Result<Self, Error> {
        let monday = NaiveDate::from_isoywd_opt(year, week, chrono::Weekday::Mon)
            .ok_or_else(|| Error::Dates(format!("{year}-W{week:02} is not an ISO week")))?;
        self.with_start_date(monday)
    }

    /// The counts.
    pub fn observed(&self) -> &[f64] {
        &self.observed
    }

    /// Periods per year.
    pub fn freq(&self) -> usize {
        self.freq
    }

    /// Calendar dates, when known.
    pub fn dates(&self) -> Option<&[NaiveDate]> {
        self.dates.as_deref()
    }

    /// Number of periods.
    pub fn len(&self) -> usize {
        self.observed.len()
    }

    /// Always false: a `Series` cannot be empty.
    pub fn is_empty(&self) -> bool {
        self.observed.is_empty()
    }
}

/// A detection method with its parameters (defaults are R's).
///
/// In serde form (for configuration) the method is tagged by its command-line name and missing parameters take
/// R's defaults: `{"method": "farrington-flexible", "b": 4, "threshold_method": "NbPlugin"}`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "method", rename_all = "kebab-case")]
pub enum Method {
    /// EARS C1 (`earsC`, method "C1").
    EarsC1(EarsParams),
    /// EARS C2 (`earsC`, method "C2").
    EarsC2(EarsParams),
    /// EARS C3 as the R package computes it (upper bound from the current count).
    EarsC3(EarsParams),
    /// EARS C3 as published (alarm when C3 exceeds the threshold, bound from the baseline mean).
    EarsC3Textbook(EarsParams),
    /// Farrington et al. (1996), `algo.farrington`.
    Farrington(FarringtonParams),
    /// Improved Farrington (Noufaily et al. 2013), `farringtonFlexible`.
    FarringtonFlexible(FlexibleParams),
    /// CUSUM, `algo.cusum`.
    Cusum(CusumParams),
    /// Bayesian predictive method, `algo.bayes`.
    Bayes(BayesParams),
    /// CDC historical limits, `algo.cdc`.
    Cdc(CdcParams),
    /// Negative binomial GLR detector, `algo.glrnb` (the bound is the GLR statistic).
    Glrnb(GlrParams),
}

/// Deserialised by hand rather than with serde's internally tagged enums: those buffer the input, and when any
/// crate of the build enables serde_json's `arbitrary_precision` (fhirbolt does) buffered numbers arrive as maps
/// and every `f64` parameter fails. Reading a `serde_json::Value` and dispatching on the tag avoids the buffer.
impl<'de> serde::Deserialize<'de> for Method {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let mut v = serde_json::Value::deserialize(d)?;
        let obj = v
            .as_object_mut()
            .ok_or_else(|| D::Error::custom("a method is an object with a \"method\" key"))?;
        let tag = match obj.remove("method") {
            Some(serde_json::Value::String(t)) => t,
            _ => return Err(D::Error::missing_field("method")),
        };
        fn params<T: serde::de::DeserializeOwned, E: serde::de::Error>(
            v: serde_json::Value,
        ) -> Result<T, E> {
            T::deserialize(v).map_err(E::custom)
        }
        Ok(match tag.as_str() {
            "ears-c1" => Method::EarsC1(params(v)?),
            "ears-c2" => Method::EarsC2(params(v)?),
            "ears-c3" => Method::EarsC3(params(v)?),
            "ears-c3-textbook" => Method::EarsC3Textbook(params(v)?),
            "farrington" => Method::Farrington(params(v)?),
            "farrington-flexible" => Method::FarringtonFlexible(params(v)?),
            "cusum" => Method::Cusum(params(v)?),
            "bayes" => Method::Bayes(params(v)?),
            "cdc" => Method::Cdc(params(v)?),
            "glrnb" => Method::Glrnb(params(v)?),
            other => {
                return Err(D::Error::unknown_variant(
                    other,
                    &[
                        "ears-c1",
                        "ears-c2",
                        "ears-c3",
                        "ears-c3-textbook",
                        "farrington",
                        "farrington-flexible",
                        "cusum",
                        "bayes",
                        "cdc",
                        "glrnb",
                    ],
                ))
            }
        })
    }
}

impl Method {
    /// The method's name as used on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Method::EarsC1(_) => "ears-c1",
            Method::EarsC2(_) => "ears-c2",
            Method::EarsC3(_) => "ears-c3",
            Method::EarsC3Textbook(_) => "ears-c3-textbook",
            Method::Farrington(_) => "farrington",
            Method::FarringtonFlexible(_) => "farrington-flexible",
            Method::Cusum(_) => "cusum",
            Method::Bayes(_) => "bayes",
            Method::Cdc(_) => "cdc",
            Method::Glrnb(_) => "glrnb",
        }
    }
}

/// One output row: week index, count, upper bound (None where the method gives none) and alarm.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DetectionRow {
    /// 1-based period index.
    pub t: usize,
    /// The count.
    pub observed: f64,
    /// Upper bound of the expected count; `None` where the reference reports NA.
    pub upperbound: Option<f64>,
    /// Whether an alarm is raised.
    pub alarm: bool,
}

/// Runs `method` on `series` for the 1-based weeks in `range` (inclusive).
pub fn detect(
    series: &Series,
    method: &Method,
    range: RangeInclusive<usize>,
) -> Result<Vec<DetectionRow>, Error> {
    let (first, last) = (*range.start(), *range.end());
    if first == 0 || first > last || last > series.len() {
        return Err(Error::RangeOutside {
            first,
            last,
            len: series.len(),
        });
    }
    let span = tracing::debug_span!(
        "detect",
        method = method.name(),
        first,
        last,
        len = series.len()
    );
    let _guard = span.enter();
    match method {
        Method::EarsC1(p) => ears::run(series, p, ears::Variant::C1, first, last),
        Method::EarsC2(p) => ears::run(series, p, ears::Variant::C2, first, last),
        Method::EarsC3(p) => ears::run(series, p, ears::Variant::C3Compat, first, last),
        Method::EarsC3Textbook(p) => ears::run(series, p, ears::Variant::C3Textbook, first, last),
        Method::Farrington(p) => farrington::run_1996(series, p, first, last),
        Method::FarringtonFlexible(p) => farrington::run_flexible(series, p, first, last),
        Method::Cusum(p) => cusum::run(series, p, first, last),
        Method::Bayes(p) => bayes::run(series, p, first, last),
        Method::Cdc(p) => historical::run_cdc(series, p, first, last),
        Method::Glrnb(p) => glr::run(series, p, first, last),
    }
}

/// Checks that alpha lies strictly between 0 and 1.
pub(crate) fn check_alpha(alpha: f64) -> Result<(), Error> {
    if alpha > 0.0 && alpha < 1.0 {
        Ok(())
    } else {
        Err(Error::InvalidParameter {
            name: "alpha",
            reason: format!("{alpha} is not strictly between 0 and 1"),
        })
    }
}

/// Covariate row [1, cos(2πt/freq), sin(2πt/freq)] of the one-harmonic seasonal regressions (CUSUM's and
/// GLR-NB's in-control means).
pub(crate) fn harmonic_row(t: usize, freq: usize) -> [f64; 3] {
    let a = std::f64::consts::TAU * t as f64 / freq as f64;
    [1.0, a.cos(), a.sin()]
}

/// Mean and sample standard deviation (n − 1).
pub(crate) fn mean_sd(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let ss: f64 = x.iter().map(|v| (v - mean) * (v - mean)).sum();
    (mean, (ss / (n - 1.0)).sqrt())
}
