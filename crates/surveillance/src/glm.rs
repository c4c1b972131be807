//! Poisson / quasi-Poisson generalised linear model with a log link, fitted by iteratively reweighted least
//! squares (IRLS).
//!
//! Written by hand rather than taken from a crate because an exact reproduction of the reference outputs needs
//! control over details no general GLM crate exposes: the starting values (μ = y + 0.1), the stopping rule (relative
//! deviance change below 1e-8, at most 25 iterations), and access to the working weights and the unscaled
//! covariance of the *last* weighted least-squares step (the quantities the reference's summary and prediction
//! standard errors are computed from). The models here are tiny (at most a dozen columns, a few hundred rows), so
//! the normal equations are solved by a Cholesky factorisation; callers centre and scale the time covariate so
//! that the system stays well conditioned.

use thiserror::Error;

/// Convergence tolerance on the relative change of the deviance (the reference's default).
pub const EPSILON: f64 = 1e-8;
/// Maximum number of IRLS iterations (the reference's default).
pub const MAX_ITER: usize = 25;

/// Why a GLM could not be fitted.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum GlmError {
    /// The design matrix has no rows or the dimensions disagree.
    #[error("the model has {rows} observations for {cols} parameters")]
    Dimensions {
        /// Number of observations.
        rows: usize,
        /// Number of parameters.
        cols: usize,
    },
    /// The weighted cross-product matrix is not positive definite (collinear or empty columns).
    #[error("the model matrix is rank deficient")]
    RankDeficient,
    /// The deviance became infinite or not a number.
    #[error("the fit diverged (non-finite deviance)")]
    Diverged,
}

/// A fitted Poisson log-link GLM.
#[derive(Debug)]
pub struct GlmFit {
    /// Number of parameters.
    pub p: usize,
    /// Coefficients.
    pub beta: Vec<f64>,
    /// Fitted means.
    pub mu: Vec<f64>,
    /// Working weights of the last least-squares step (prior weight × μ of the previous iterate).
    pub working_weights: Vec<f64>,
    /// Unscaled covariance (XᵀWX)⁻¹ of the last least-squares step, row-major p×p.
    pub cov_unscaled: Vec<f64>,
    /// Whether the deviance criterion was met within the iteration limit.
    pub converged: bool,
    sparsity: Sparsity,
}

/// Cholesky factorisation in place (lower triangle), returns false when not positive definite.
fn cholesky(a: &mut [f64], p: usize) -> bool {
    for j in 0..p {
        let orig = a[j * p + j];
        let mut d = orig;
        for k in 0..j {
            d -= a[j * p + k] * a[j * p + k];
        }
        // A pivot that has lost all but 1e-12 of its original size means the column is (numerically) a
        // combination of the previous ones.
        if d.is_nan() || d <= 1e-12 * orig.abs() || !d.is_finite() {
            return false;
        }
        let d = d.sqrt();
        a[j * p + j] = d;
        for i in (j + 1)..p {
            let mut s = a[i * p + j];
            for k in 0..j {
                s -= a[i * p + k] * a[j * p + k];
            }
            a[i * p + j] = s / d;
        }
    }
    true
}

/// Solves L Lᵀ x = b given the lower Cholesky factor.
fn chol_solve(l: &[f64], p: usize, b: &mut [f64]) {
    for i in 0..p {
        let mut s = b[i];
        for k in 0..i {
            s -= l[i * p + k] * b[k];
        }
        b[i] = s / l[i * p + i];
    }
    for i in (0..p).rev() {
        let mut s = b[i];
        for k in (i + 1)..p {
            s -= l[k * p + i] * b[k];
        }
        b[i] = s / l[i * p + i];
    }
}

/// Inverse of L Lᵀ.
fn chol_inverse(l: &[f64], p: usize) -> Vec<f64> {
    let mut inv = vec![0.0; p * p];
    let mut col = vec![0.0; p];
    for j in 0..p {
        col.iter_mut().for_each(|c| *c = 0.0);
        col[j] = 1.0;
        chol_solve(l, p, &mut col);
        for i in 0..p {
            inv[i * p + j] = col[i];
        }
    }
    inv
}

/// Column indices of the non-zero entries of each row (flattened, with row offsets). Seasonal designs are mostly
/// zeros (one dummy per row), so the cross products and leverages only visit the non-zero entries.
#[derive(Debug)]
struct Sparsity {
    cols: Vec<usize>,
    offsets: Vec<usize>,
}

impl Sparsity {
    fn new(x: &[f64], n: usize, p: usize) -> Self {
        let mut cols = Vec::with_capacity(n * 3);
        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0);
        for i in 0..n {
            for (j, v) in x[i * p..(i + 1) * p].iter().enumerate() {
                if *v != 0.0 {
                    cols.push(j);
                }
            }
            offsets.push(cols.len());
        }
        Sparsity { cols, offsets }
    }

    fn row(&self, i: usize) -> &[usize] {
        &self.cols[self.offsets[i]..self.offsets[i + 1]]
    }
}

/// Fits log μ = Xβ by IRLS. `x` is row-major n×p, `prior` the prior weights (all > 0).
pub fn fit_poisson(x: &[f64], p: usize, y: &[f64], prior: &[f64]) -> Result<GlmFit, GlmError> {
    irls(x, p, y, prior, None, None, EPSILON)
}

/// IRLS for the log link with Poisson variance (`theta` None) or negative binomial variance μ + μ²/θ, from
/// μ = y + 0.1 or from a given linear predictor, stopping at relative deviance change `eps`.
fn irls(
    x: &[f64],
    p: usize,
    y: &[f64],
    prior: &[f64],
    theta: Option<f64>,
    start_eta: Option<&[f64]>,
    eps: f64,
) -> Result<GlmFit, GlmError> {
    let n = y.len();
    if n == 0 || p == 0 || x.len() != n * p || prior.len() != n || n < p {
        return Err(GlmError::Dimensions { rows: n, cols: p });
    }
    let sp = Sparsity::new(x, n, p);
    // y·log y is constant over the iterations, and log μ is the linear predictor, so the deviance needs no
    // logarithm inside the loop: 2·w·(y·log y − y·η − (y − μ)).
    let ylogy: Vec<f64> = y
        .iter()
        .map(|&v| if v > 0.0 { v * v.ln() } else { 0.0 })
        .collect();
    let dev_of = |eta: &[f64], mu: &[f64]| -> f64 {
        (0..n)
            .map(|i| {
                let ylog = if y[i] > 0.0 {
                    ylogy[i] - y[i] * eta[i]
                } else {
                    0.0
                };
                match theta {
                    None => 2.0 * prior[i] * (ylog - (y[i] - mu[i])),
                    Some(th) => {
                        let yt = y[i] + th;
                        2.0 * prior[i] * (ylog - yt * (yt / (mu[i] + th)).ln())
                    }
                }
            })
            .sum()
    };
    let (mut mu, mut eta): (Vec<f64>, Vec<f64>) = match start_eta {
        Some(e) if e.len() == n => (e.iter().map(|v| v.exp()).collect(), e.to_vec()),
        _ => {
            let mu: Vec<f64> = y.iter().map(|v| v + 0.1).collect();
            let eta = mu.iter().map(|m| m.ln()).collect();
            (mu, eta)
        }
    };
    let mut dev_old = dev_of(&eta, &mu);
    let mut w = vec![0.0; n];
    let mut xtwx = vec![0.0; p * p];
    let mut rhs = vec![0.0; p];
    let mut beta = vec![0.0; p];
    let mut converged = false;
    for _ in 0..MAX_ITER {
        xtwx.iter_mut().for_each(|v| *v = 0.0);
        rhs.iter_mut().for_each(|v| *v = 0.0);
        for i in 0..n {
            let wi = match theta {
                None => prior[i] * mu[i],
                Some(th) => prior[i] * mu[i] / (1.0 + mu[i] / th),
            };
            w[i] = wi;
            let zi = eta[i] + (y[i] - mu[i]) / mu[i];
            let row = &x[i * p..(i + 1) * p];
            let nz = sp.row(i);
            for (ai, &a) in nz.iter().enumerate() {
                let wa = wi * row[a];
                rhs[a] += wa * zi;
                for &b in &nz[..=ai] {
                    xtwx[a * p + b] += wa * row[b];
                }
            }
        }
        if !cholesky(&mut xtwx, p) {
            return Err(GlmError::RankDeficient);
        }
        beta.copy_from_slice(&rhs);
        chol_solve(&xtwx, p, &mut beta);
        for i in 0..n {
            let row = &x[i * p..(i + 1) * p];
            eta[i] = sp.row(i).iter().map(|&j| row[j] * beta[j]).sum();
            mu[i] = eta[i].exp();
        }
        let dev = dev_of(&eta, &mu);
        if !dev.is_finite() {
            return Err(GlmError::Diverged);
        }
        if (dev - dev_old).abs() / (dev.abs() + 0.1) < eps {
            converged = true;
            break;
        }
        dev_old = dev;
    }
    let cov_unscaled = chol_inverse(&xtwx, p);
    Ok(GlmFit {
        p,
        beta,
        mu,
        working_weights: w,
        cov_unscaled,
        converged,
        sparsity: sp,
    })
}

/// Score of the negative binomial log-likelihood in θ at fixed means.
fn theta_score(y: &[f64], mu: &[f64], theta: f64) -> f64 {
    use statrs::function::gamma::digamma;
    let dt = digamma(theta);
    y.iter()
        .zip(mu)
        .map(|(&y, &m)| {
            digamma(y + theta) - dt + theta.ln() + 1.0
                - (theta + m).ln()
                - (y + theta) / (m + theta)
        })
        .sum()
}

/// Maximum-likelihood θ at fixed means; `None` when the likelihood increases without bound (no overdispersion).
fn theta_ml(y: &[f64], mu: &[f64]) -> Option<f64> {
    // The score is positive below the maximum and negative above it. Far above the maximum it is a sum of
    // tiny terms swamped by rounding, so the bracket is grown outwards from the moment estimate
    // n / Σ(y/μ − 1)² rather than taken from fixed far ends, and then halved (bisection on log θ).
    let f = |lt: f64| theta_score(y, mu, lt.exp());
    let n = y.len() as f64;
    let ss: f64 = y.iter().zip(mu).map(|(y, m)| (y / m - 1.0).powi(2)).sum();
    let start = if ss > 0.0 {
        (n / ss).ln().clamp(-15.0, 15.0)
    } else {
        15.0
    };
    const LIMIT: f64 = 18.0;
    let (mut lo, mut hi);
    if f(start) > 0.0 {
        lo = start;
        hi = start + 1.0;
        while f(hi) > 0.0 {
            if hi > LIMIT {
                return None;
            }
            lo = hi;
            hi += 1.0;
        }
    } else {
        hi = start;
        lo = start - 1.0;
        while f(lo) <= 0.0 {
            if lo < -LIMIT {
                return Some(lo.exp());
            }
            hi = lo;
            lo -= 1.0;
        }
    }
    while hi - lo > 1e-13 {
        let mid = 0.5 * (lo + hi);
        if f(mid) > 0.0 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Some((0.5 * (lo + hi)).exp())
}

/// Negative binomial GLM with a log link and θ estimated by maximum likelihood, alternating between IRLS at
/// fixed θ and the θ that maximises the likelihood at fixed means until both settle. The result is the joint
/// maximum-likelihood estimate (the reference's alternating fit agrees with it to about 1e-11 in the means).
/// Returns the fit and θ (`None` when the data show no overdispersion: the Poisson fit).
pub fn fit_negbin(x: &[f64], p: usize, y: &[f64]) -> Result<(GlmFit, Option<f64>), GlmError> {
    let ones = vec![1.0; y.len()];
    let mut fit = irls(x, p, y, &ones, None, None, 1e-12)?;
    let Some(mut theta) = theta_ml(y, &fit.mu) else {
        return Ok((fit, None));
    };
    for _ in 0..200 {
        let eta: Vec<f64> = fit.mu.iter().map(|m| m.ln()).collect();
        fit = irls(x, p, y, &ones, Some(theta), Some(&eta), 1e-13)?;
        let Some(next) = theta_ml(y, &fit.mu) else {
            return Ok((fit, None));
        };
        let done = ((next - theta) / theta).abs() < 1e-11;
        theta = next;
        if done {
            break;
        }
    }
    let eta: Vec<f64> = fit.mu.iter().map(|m| m.ln()).collect();
    let fit = irls(x, p, y, &ones, Some(theta), Some(&eta), 1e-13)?;
    Ok((fit, Some(theta)))
}

impl GlmFit {
    /// Linear predictor at a new covariate row.
    pub fn eta_at(&self, x0: &[f64]) -> f64 {
        x0.iter().zip(&self.beta).map(|(a, b)| a * b).sum()
    }

    /// x0ᵀ (XᵀWX)⁻¹ x0, the unscaled variance of the linear predictor at x0.
    pub fn quad_form(&self, x0: &[f64]) -> f64 {
        let p = self.p;
        let mut s = 0.0;
        for a in 0..p {
            for b in 0..p {
                s += x0[a] * self.cov_unscaled[a * p + b] * x0[b];
            }
        }
        s
    }

    /// Leverages h_ii = w_i x_iᵀ (XᵀWX)⁻¹ x_i of the last least-squares step.
    pub fn hat_values(&self, x: &[f64]) -> Vec<f64> {
        let p = self.p;
        self.working_weights
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let row = &x[i * p..(i + 1) * p];
                let nz = self.sparsity.row(i);
                let mut q = 0.0;
                for &a in nz {
                    for &b in nz {
                        q += row[a] * self.cov_unscaled[a * p + b] * row[b];
                    }
                }
                w * q
            })
            .collect()
    }

    /// Σ wᵢ·rᵢ² / (n − p) with rᵢ = (yᵢ − μᵢ)/μᵢ the working residuals and wᵢ the given weights.
    pub fn dispersion_with(&self, y: &[f64], weights: &[f64]) -> f64 {
        let n = y.len();
        let s: f64 = y
            .iter()
            .zip(&self.mu)
            .zip(weights)
            .map(|((y, m), w)| {
                let r = (y - m) / m;
                w * r * r
            })
            .sum();
        if n > self.p {
            s / (n - self.p) as f64
        } else {
            f64::NAN
        }
    }

    /// The dispersion a standard GLM summary reports: weighted Pearson statistic over the residual degrees of
    /// freedom, using the working weights of the last step.
    pub fn summary_dispersion(&self, y: &[f64]) -> f64 {
        self.dispersion_with(y, &self.working_weights)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn intercept_only_fit_is_the_mean() {
        let y = [1.0, 2.0, 3.0, 6.0];
        let x = [1.0; 4];
        let fit = fit_poisson(&x, 1, &y, &[1.0; 4]).unwrap();
        assert!(fit.converged);
        assert!((fit.beta[0].exp() - 3.0).abs() < 1e-9);
    }

    #[test]
    fn collinear_design_is_an_error() {
        let y = [1.0, 2.0, 3.0];
        let x = [1.0, 2.0, 1.0, 2.0, 1.0, 2.0];
        assert_eq!(
            fit_poisson(&x, 2, &y, &[1.0; 3]).unwrap_err(),
            GlmError::RankDeficient
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod negbin_tests {
    use super::*;

    #[test]
    fn negbin_fit_matches_reference() {
        // salmonella.agona weeks 1..199 with one pair of harmonics: R's MASS::glm.nb gives θ = 3.746216 and a
        // prediction of 3.70591365734602 at week 200.
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/shared/salmonella_agona.csv"
        ))
        .unwrap();
        let y: Vec<f64> = text
            .lines()
            .skip(1)
            .take(199)
            .map(|l| l.split(',').nth(2).unwrap().parse().unwrap())
            .collect();
        let row = |t: f64| {
            let a = std::f64::consts::TAU * t / 52.0;
            [1.0, a.cos(), a.sin()]
        };
        let x: Vec<f64> = (1..=199).flat_map(|t| row(t as f64)).collect();
        let (fit, theta) = fit_negbin(&x, 3, &y).unwrap();
        let theta = theta.unwrap();
        eprintln!("theta {theta}");
        assert!((theta - 3.746216).abs() < 1e-5, "theta {theta}");
        let mu = fit.eta_at(&row(200.0)).exp();
        assert!((mu / 3.70591365734602 - 1.0).abs() < 1e-9, "mu {mu}");
    }
}
