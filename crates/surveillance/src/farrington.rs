//! Farrington et al. (1996) and the improved method of Noufaily et al. (2013), as in R `surveillance`'s
//! `algo.farrington` and `farringtonFlexible`.
//!
//! For each week a quasi-Poisson log-linear model (intercept, optional linear trend, and for the flexible method
//! a seasonal factor) is fitted to comparable weeks of past years, reweighted to down-weight past outbreaks, and
//! the upper bound is a quantile of the predictive distribution of the current count.

use chrono::{Datelike, NaiveDate};

use crate::dist::{qnbinom, qnorm, qpois, two_sided_t_pvalue};
use crate::glm::{fit_poisson, GlmFit};
use crate::{check_alpha, DetectionRow, Error, Series};

/// Power transformation used for the normal approximation of the threshold (R's `powertrans`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PowerTrans {
    /// "2/3", the default (approximately symmetric for Poisson counts).
    TwoThirds,
    /// "1/2".
    Half,
    /// "none".
    None,
}

/// Threshold of the flexible method (R's `thresholdMethod`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ThresholdMethod {
    /// "delta": normal approximation on the power-transformed scale (as in 1996, one-sided).
    Delta,
    /// "muan": negative binomial quantile at the upper confidence limit of the mean.
    Muan,
    /// "nbPlugin": negative binomial quantile with the estimated mean plugged in.
    NbPlugin,
}

/// Parameters of `algo.farrington` (R's defaults).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct FarringtonParams {
    /// Number of past years (`b`, default 5).
    pub b: usize,
    /// Half-width of the window around the reference week (`w`, default 3).
    pub w: usize,
    /// Down-weight past outbreaks (`reweight`, default true).
    pub reweight: bool,
    /// Two-sided significance level (`alpha`, default 0.05).
    pub alpha: f64,
    /// Allow a linear time trend (`trend`, default true).
    pub trend: bool,
    /// `limit54`: no alarm when fewer than `.0` cases were seen in the last `.1` weeks (default 5, 4).
    pub limit54: (f64, usize),
    /// Power transformation (`powertrans`, default "2/3").
    pub powertrans: PowerTrans,
}

impl Default for FarringtonParams {
    fn default() -> Self {
        FarringtonParams {
            b: 5,
            w: 3,
            reweight: true,
            alpha: 0.05,
            trend: true,
            limit54: (5.0, 4),
            powertrans: PowerTrans::TwoThirds,
        }
    }
}

/// Parameters of `farringtonFlexible` (R's defaults; [`FlexibleParams::noufaily`] gives the 2013 settings).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct FlexibleParams {
    /// Number of past years (`b`, default 5).
    pub b: usize,
    /// Half-width of the reference windows (`w`, default 3).
    pub w: usize,
    /// Down-weight past outbreaks (`reweight`, default true).
    pub reweight: bool,
    /// Anscombe residuals above this get weight ∝ s⁻² (`weightsThreshold`, default 2.58).
    pub weights_threshold: f64,
    /// One-sided significance level (`alpha`, default 0.05).
    pub alpha: f64,
    /// Allow a linear time trend (`trend`, default true).
    pub trend: bool,
    /// The trend is kept when its p-value is below this (`pThresholdTrend`, default 0.05).
    pub p_threshold_trend: f64,
    /// `limit54` (default 5 cases in 4 weeks).
    pub limit54: (f64, usize),
    /// Power transformation for the delta threshold (`powertrans`, default "2/3").
    pub powertrans: PowerTrans,
    /// Number of levels of the seasonal factor (`noPeriods`, default 1 = no factor).
    pub no_periods: usize,
    /// Most recent weeks left out of the fit (`pastWeeksNotIncluded`; `None` means `w`).
    pub past_weeks_not_included: Option<usize>,
    /// Threshold method (`thresholdMethod`, default delta).
    pub threshold_method: ThresholdMethod,
}

impl Default for FlexibleParams {
    fn default() -> Self {
        FlexibleParams {
            b: 5,
            w: 3,
            reweight: true,
            weights_threshold: 2.58,
            alpha: 0.05,
            trend: true,
            p_threshold_trend: 0.05,
            limit54: (5.0, 4),
            powertrans: PowerTrans::TwoThirds,
            no_periods: 1,
            past_weeks_not_included: None,
            threshold_method: ThresholdMethod::Delta,
        }
    }
}

impl FlexibleParams {
    /// The settings recommended by Noufaily et al. (2013): 10 periods, all weeks of the past years except the
    /// last 26, weights threshold 2.58, trend always kept, negative binomial plug-in threshold.
    pub fn noufaily() -> Self {
        FlexibleParams {
            no_periods: 10,
            past_weeks_not_included: Some(26),
            p_threshold_trend: 1.0,
            weights_threshold: 2.58,
            threshold_method: ThresholdMethod::NbPlugin,
            ..FlexibleParams::default()
        }
    }
}

/// A fitted (and possibly reweighted) model for one week.
struct Model {
    fit: GlmFit,
    /// Number of model parameters.
    p: usize,
    /// Overdispersion φ ≥ 1 used in the threshold.
    phi: f64,
    /// Dispersion used for standard errors (see `SeDispersion`).
    se_dispersion: f64,
    /// Prediction row for the current week.
    x0: Vec<f64>,
    /// Whether column 1 is the trend.
    has_trend: bool,
}

/// How the dispersion used for standard errors is obtained.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SeDispersion {
    /// φ itself (1996 method: the prediction passes φ explicitly).
    Phi,
    /// Σ ωᵢ·((yᵢ − μᵢ)/μᵢ)² / (n − p): the flexible method's summary of the reweighted fit, whose stored weights are
    /// the prior weights ω rather than the working weights.
    PriorWeighted,
}

/// Design for one week: rows of covariates for the fit and the prediction row.
struct Design {
    x: Vec<f64>,
    p: usize,
    x0: Vec<f64>,
}

/// Builds [1, trend?, seasonal dummies] for the fit rows `idx` (0-based) with optional levels.
fn design(
    idx: &[usize],
    levels: Option<(&[usize], usize)>,
    k: usize,
    freq: usize,
    trend: bool,
) -> Design {
    // The time covariate is centred on the current week and measured in years: the fit is invariant to this
    // affine change, and it keeps the normal equations well conditioned.
    let tc = |j: usize| (j as f64 - k as f64) / freq as f64;
    // Seasonal dummies for the levels present in the fit except the first present one (treatment contrasts).
    let (present, cur_level) = match levels {
        Some((lv, cur)) => {
            let mut present: Vec<usize> = lv.to_vec();
            present.sort_unstable();
            present.dedup();
            (present, Some(cur))
        }
        None => (Vec::new(), None),
    };
    let dummies: Vec<usize> = present.iter().skip(1).copied().collect();
    let p = 1 + usize::from(trend) + dummies.len();
    let mut x = Vec::with_capacity(idx.len() * p);
    for (r, &j) in idx.iter().enumerate() {
        x.push(1.0);
        if trend {
            x.push(tc(j));
        }
        if let Some((lv, _)) = levels {
            for d in &dummies {
                x.push(if lv[r] == *d { 1.0 } else { 0.0 });
            }
        }
    }
    let mut x0 = vec![1.0];
    if trend {
        x0.push(0.0);
    }
    for d in &dummies {
        x0.push(if Some(*d) == cur_level { 1.0 } else { 0.0 });
    }
    Design { x, p, x0 }
}

/// Fits the quasi-Poisson model, reweights (Anscombe residuals above `threshold` get weight ∝ s⁻², weights
/// normalised to sum to n) and refits.
fn fit_model(
    d: Design,
    y: &[f64],
    has_trend: bool,
    reweight: bool,
    threshold: f64,
    se_mode: SeDispersion,
    t: usize,
) -> Result<Model, Error> {
    let n = y.len();
    let ones = vec![1.0; n];
    let fit0 = fit_poisson(&d.x, d.p, y, &ones).map_err(|source| Error::Fit { t, source })?;
    let phi0 = fit0.summary_dispersion(y).max(1.0);
    let (fit, omega) = if reweight {
        let hat = fit0.hat_values(&d.x);
        let s: Vec<f64> = y
            .iter()
            .zip(&fit0.mu)
            .zip(&hat)
            .map(|((&yi, &mi), &hi)| {
                let a = 1.5 * (yi.powf(2.0 / 3.0) * mi.powf(-1.0 / 6.0) - mi.sqrt());
                a / (phi0 * (1.0 - hi)).sqrt()
            })
            .collect();
        let raw: Vec<f64> = s
            .iter()
            .map(|&si| if si > threshold { 1.0 / (si * si) } else { 1.0 })
            .collect();
        let gamma = n as f64 / raw.iter().sum::<f64>();
        let omega: Vec<f64> = raw.iter().map(|w| w * gamma).collect();
        let fit1 = fit_poisson(&d.x, d.p, y, &omega).map_err(|source| Error::Fit { t, source })?;
        (fit1, omega)
    } else {
        (fit0, ones)
    };
    if !fit.converged {
        // As in the reference, the last iterate is used; the log line carries no data, only the week index.
        tracing::warn!(
            t,
            "the regression did not converge in {} iterations",
            crate::glm::MAX_ITER
        );
    }
    let phi = fit.summary_dispersion(y).max(1.0);
    let se_dispersion = match se_mode {
        SeDispersion::Phi => phi,
        SeDispersion::PriorWeighted => fit.dispersion_with(y, &omega),
    };
    Ok(Model {
        fit,
        p: d.p,
        phi,
        se_dispersion,
        x0: d.x0,
        has_trend,
    })
}

impl Model {
    fn mu0(&self) -> f64 {
        self.fit.eta_at(&self.x0).exp()
    }

    /// Two-sided t-test p-value of the trend coefficient (df = n − p).
    fn trend_pvalue(&self, n: usize, dispersion: f64) -> f64 {
        if !self.has_trend {
            return f64::NAN;
        }
        let se = (self.fit.cov_unscaled[self.p + 1] * dispersion).sqrt();
        two_sided_t_pvalue(self.fit.beta[1] / se, (n - self.p) as f64)
    }

    /// Standard error of the linear predictor at the current week.
    fn se_link(&self) -> f64 {
        (self.fit.quad_form(&self.x0) * self.se_dispersion).sqrt()
    }
}

/// Normal-approximation upper bound on the power-transformed scale.
fn delta_threshold(mu0: f64, se_link: f64, phi: f64, z: f64, trans: PowerTrans) -> f64 {
    let se_resp = mu0 * se_link;
    let tau = phi + se_resp * se_resp / mu0;
    match trans {
        PowerTrans::TwoThirds => {
            let base = mu0.powf(2.0 / 3.0) + z * ((4.0 / 9.0) * mu0.powf(1.0 / 3.0) * tau).sqrt();
            base.max(0.0).powf(1.5)
        }
        PowerTrans::Half => {
            let base = mu0.sqrt() + z * (tau / 4.0).sqrt();
            base.max(0.0).powi(2)
        }
        PowerTrans::None => mu0 + z * (mu0 * tau).sqrt(),
    }
}

/// Negative binomial quantile with mean `mu` and variance φ·mu (Poisson when φ = 1).
fn nb_quantile(p: f64, mu: f64, phi: f64) -> Option<f64> {
    if phi > 1.0 {
        qnbinom(p, mu / (phi - 1.0), 1.0 / phi)
    } else {
        qpois(p, mu)
    }
}

fn check_common(
    b: usize,
    w: usize,
    freq: usize,
    alpha: f64,
    limit54: (f64, usize),
) -> Result<(), Error> {
    check_alpha(alpha)?;
    if 2 * w + 1 > freq {
        return Err(Error::InvalidParameter {
            name: "w",
            reason: format!(
                "a window of 2w + 1 = {} periods does not fit in a year of {freq}",
                2 * w + 1
            ),
        });
    }
    if b == 0 {
        return Err(Error::InvalidParameter {
            name: "b",
            reason: "needs at least one past year".into(),
        });
    }
    if limit54.1 == 0 {
        return Err(Error::InvalidParameter {
            name: "limit54",
            reason: "the number of weeks must be at least 1".into(),
        });
    }
    Ok(())
}

/// True when fewer than `limit54.0` cases were seen in the `limit54.1` weeks ending at index `i` (0-based).
fn too_few_cases(y: &[f64], i: usize, limit54: (f64, usize)) -> bool {
    let start = (i + 1).saturating_sub(limit54.1);
    y[start..=i].iter().sum::<f64>() < limit54.0
}

/// `algo.farrington`.
pub(crate) fn run_1996(
    series: &Series,
    p: &FarringtonParams,
    first: usize,
    last: usize,
) -> Result<Vec<DetectionRow>, Error> {
    check_common(p.b, p.w, series.freq(), p.alpha, p.limit54)?;
    let y = series.observed();
    let freq = series.freq();
    let needed = p.b * freq + p.w;
    if first <= needed {
        return Err(Error::TooShort {
            method: "farrington",
            t: first,
            needed,
        });
    }
    let z = qnorm(1.0 - p.alpha / 2.0);
    let mut rows = Vec::with_capacity(last - first + 1);
    for t in first..=last {
        let k = t - 1;
        // With too few recent cases the reference reports a bound of 0 and no alarm whatever the model says, so
        // the model is not fitted (sparse series would otherwise fail to fit for nothing).
        if too_few_cases(y, k, p.limit54) {
            rows.push(DetectionRow {
                t,
                observed: y[k],
                upperbound: Some(0.0),
                alarm: false,
            });
            continue;
        }
        let idx: Vec<usize> = (1..=p.b)
            .flat_map(|i| (k - i * freq - p.w)..=(k - i * freq + p.w))
            .filter(|&j| j < y.len())
            .collect();
        let resp: Vec<f64> = idx.iter().map(|&j| y[j]).collect();
        // A trend needs at least three years of history (Farrington et al. 1996).
        let try_trend = p.trend && p.b >= 3;
        let mut model = fit_model(
            design(&idx, None, k, freq, try_trend),
            &resp,
            try_trend,
            p.reweight,
            1.0,
            SeDispersion::Phi,
            t,
        )?;
        if try_trend {
            let summary_disp = model.fit.summary_dispersion(&resp);
            let pval = model.trend_pvalue(resp.len(), summary_disp);
            let max_resp = resp.iter().copied().fold(f64::MIN, f64::max);
            if !(pval < 0.05 && model.mu0() <= max_resp) {
                model = fit_model(
                    design(&idx, None, k, freq, false),
                    &resp,
                    false,
                    p.reweight,
                    1.0,
                    SeDispersion::Phi,
                    t,
                )?;
            }
        }
        let mu0 = model.mu0();
        let upper = delta_threshold(mu0, model.se_link(), model.phi, z, p.powertrans);
        rows.push(DetectionRow {
            t,
            observed: y[k],
            upperbound: Some(upper),
            alarm: y[k] > upper,
        });
    }
    Ok(rows)
}

/// The date `years` years before `d` (29 February maps to 1 March, as calendar arithmetic that rolls over does).
fn years_back(d: NaiveDate, years: i32) -> Option<NaiveDate> {
    let y = d.year() - years;
    NaiveDate::from_ymd_opt(y, d.month(), d.day()).or_else(|| NaiveDate::from_ymd_opt(y, 3, 1))
}

/// 0-based reference weeks for the current week `k` and the past `b` years (element 0 is `k`). Returns None when
/// a reference week falls before the start of the series.
fn reference_weeks(series: &Series, k: usize, b: usize) -> Option<Vec<usize>> {
    let freq = series.freq();
    let mut refs = vec![k];
    for i in 1..=b {
        let r = match series.dates() {
            Some(dates) => {
                // The week whose date is nearest to the same calendar day i years back (the series' weeks all
                // fall on the same weekday, so the nearest one is at most 3 days away).
                let target = years_back(dates[k], i as i32)?;
                let days = (target - dates[k]).num_days();
                let weeks = (days as f64 / 7.0).round() as i64;
                let r = k as i64 + weeks;
                usize::try_from(r).ok()?
            }
            None => k.checked_sub(i * freq)?,
        };
        refs.push(r);
    }
    Some(refs)
}

/// Seasonal levels of weeks `start..=k` (0-based): the windows around the reference weeks (and the current week's
/// window) are level `periods`; each gap between consecutive windows is split into `periods − 1` blocks of
/// near-equal length (longer blocks first), levels 1.. in time order. With one period only the windows are used.
fn seasonal_levels(
    refs: &[usize],
    w: usize,
    periods: usize,
    start: usize,
    k: usize,
) -> Vec<Option<usize>> {
    let len = k + 1 - start;
    let mut lv: Vec<Option<usize>> = vec![None; len];
    let set = |j: usize, v: usize, lv: &mut Vec<Option<usize>>| {
        if j >= start && j <= k {
            lv[j - start] = Some(v);
        }
    };
    // Current window: only the weeks up to now exist.
    for j in k.saturating_sub(w)..=k {
        set(j, periods, &mut lv);
    }
    for i in 1..refs.len() {
        let r = refs[i];
        for j in r.saturating_sub(w)..=(r + w) {
            set(j, periods, &mut lv);
        }
        if periods > 1 {
            let begin = r + w + 1;
            let end = refs[i - 1].saturating_sub(w); // exclusive
            if end > begin {
                let gap = end - begin;
                let blocks = periods - 1;
                let base = gap / blocks;
                let extra = gap % blocks;
                let mut j = begin;
                for blk in 0..blocks {
                    let l = base + usize::from(blk < extra);
                    for _ in 0..l {
                        set(j, blk + 1, &mut lv);
                        j += 1;
                    }
                }
            }
        }
    }
    lv
}

/// `farringtonFlexible`.
pub(crate) fn run_flexible(
    series: &Series,
    p: &FlexibleParams,
    first: usize,
    last: usize,
) -> Result<Vec<DetectionRow>, Error> {
    check_common(p.b, p.w, series.freq(), p.alpha, p.limit54)?;
    if p.no_periods == 0 {
        return Err(Error::InvalidParameter {
            name: "noPeriods",
            reason: "must be at least 1".into(),
        });
    }
    if p.weights_threshold.is_nan() || p.weights_threshold <= 0.0 {
        return Err(Error::InvalidParameter {
            name: "weightsThreshold",
            reason: "must be positive".into(),
        });
    }
    if p.p_threshold_trend.is_nan() || p.p_threshold_trend <= 0.0 || p.p_threshold_trend > 1.0 {
        return Err(Error::InvalidParameter {
            name: "pThresholdTrend",
            reason: "must lie in (0, 1]".into(),
        });
    }
    let y = series.observed();
    let freq = series.freq();
    let past = p.past_weeks_not_included.unwrap_or(p.w);
    let z = qnorm(1.0 - p.alpha);
    let mut rows = Vec::with_capacity(last - first + 1);
    for t in first..=last {
        let k = t - 1;
        let too_short = Error::TooShort {
            method: "farrington-flexible",
            t,
            needed: p.b * freq + p.w,
        };
        let refs = reference_weeks(series, k, p.b).ok_or_else(|| too_short.clone())?;
        // With too few recent cases the reference reports no bound (NA) and no alarm whatever the model says, so
        // the model is not fitted. The history check above still applies, as in the reference.
        if too_few_cases(y, k, p.limit54) {
            if refs[p.b] < p.w {
                return Err(too_short);
            }
            rows.push(DetectionRow {
                t,
                observed: y[k],
                upperbound: None,
                alarm: false,
            });
            continue;
        }
        let oldest = refs[p.b];
        if oldest < p.w {
            return Err(too_short);
        }
        let start = oldest - p.w;
        let levels = seasonal_levels(&refs, p.w, p.no_periods, start, k);
        let cutoff = k.checked_sub(past + 1);
        let mut idx = Vec::new();
        let mut lv = Vec::new();
        for (off, l) in levels.iter().enumerate() {
            let j = start + off;
            if let (Some(l), Some(c)) = (l, cutoff) {
                if j <= c {
                    idx.push(j);
                    lv.push(*l);
                }
            }
        }
        if idx.len() < 3 {
            return Err(too_short);
        }
        let resp: Vec<f64> = idx.iter().map(|&j| y[j]).collect();
        let seasonal = if p.no_periods > 1 {
            Some((lv.as_slice(), p.no_periods))
        } else {
            None
        };
        let mk = |trend: bool| design(&idx, seasonal, k, freq, trend);
        let mut model = fit_model(
            mk(p.trend),
            &resp,
            p.trend,
            p.reweight,
            p.weights_threshold,
            SeDispersion::PriorWeighted,
            t,
        )?;
        if p.trend {
            let pval = model.trend_pvalue(resp.len(), model.se_dispersion);
            let max_resp = resp.iter().copied().fold(f64::MIN, f64::max);
            // The trend is dropped when it is not significant, when it extrapolates beyond the largest count
            // seen, or (as the reference does, with a warning) when the fit with the trend did not converge.
            if !(model.fit.converged && pval < p.p_threshold_trend && model.mu0() <= max_resp) {
                if !model.fit.converged {
                    tracing::debug!(t, "no convergence with the time trend, fitting without it");
                }
                model = fit_model(
                    mk(false),
                    &resp,
                    false,
                    p.reweight,
                    p.weights_threshold,
                    SeDispersion::PriorWeighted,
                    t,
                )?;
            }
        }
        let mu0 = model.mu0();
        let se_link = model.se_link();
        let upper = match p.threshold_method {
            ThresholdMethod::Delta => {
                Some(delta_threshold(mu0, se_link, model.phi, z, p.powertrans))
            }
            ThresholdMethod::NbPlugin => nb_quantile(1.0 - p.alpha, mu0, model.phi),
            ThresholdMethod::Muan => {
                let mu_q = (mu0.ln() + z * se_link).exp();
                nb_quantile(1.0 - p.alpha, mu_q, model.phi)
            }
        };
        // The reference alarms on a score > 1. For the delta threshold the score is (y − μ̂)/(U − μ̂); for the
        // negative binomial thresholds it is observed to centre on the linear predictor log μ̂ instead of μ̂,
        // which only matters when U lies below log μ̂ or when μ̂ is tiny and U = 0 (then y > 0 alarms).
        let centre = match p.threshold_method {
            ThresholdMethod::Delta => mu0,
            ThresholdMethod::NbPlugin | ThresholdMethod::Muan => mu0.ln(),
        };
        let alarm = upper.is_some_and(|u| (y[k] - centre) / (u - centre) > 1.0);
        rows.push(DetectionRow {
            t,
            observed: y[k],
            upperbound: upper,
            alarm,
        });
    }
    Ok(rows)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn gaps_are_split_with_longer_blocks_first() {
        // Reference weeks 52 apart with w = 3 leave 45-week gaps: nine blocks of 5 (checked against R's behaviour).
        let refs = [399, 347, 295];
        let lv = seasonal_levels(&refs, 3, 10, 292, 399);
        assert_eq!(lv[0], Some(10));
        assert_eq!(lv[7], Some(1));
        assert_eq!(lv[11], Some(1));
        assert_eq!(lv[12], Some(2));
        // A 46-week gap gives one block of 6 then eight of 5.
        let refs = [400, 347, 295];
        let lv = seasonal_levels(&refs, 3, 10, 292, 400);
        let gap: Vec<_> = lv[(299 - 292)..(344 - 292)].to_vec();
        assert_eq!(gap.iter().filter(|l| **l == Some(1)).count(), 5);
        let gap2: Vec<_> = lv[(351 - 292)..(397 - 292)].to_vec();
        assert_eq!(gap2.iter().filter(|l| **l == Some(1)).count(), 6);
    }

    #[test]
    fn calendar_reference_weeks_take_the_nearest_same_weekday() {
        // salmNewport week 366 is Monday 2011-01-03; R's reference weeks are 314 262 209 157 105 (1-based).
        let start = NaiveDate::from_ymd_opt(2004, 1, 5).unwrap();
        let s = Series::new(vec![1.0; 400])
            .unwrap()
            .with_start_date(start)
            .unwrap();
        let refs = reference_weeks(&s, 365, 5).unwrap();
        assert_eq!(refs, vec![365, 313, 261, 208, 156, 104]);
    }
}
