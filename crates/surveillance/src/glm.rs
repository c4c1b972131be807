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
                2.0 * prior[i] * (ylog - (y[i] - mu[i]))
            })
            .sum()
    };
    let mut mu: Vec<f64> = y.iter().map(|v| v + 0.1).collect();
    let mut eta: Vec<f64> = mu.iter().map(|m| m.ln()).collect();
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
            let wi = prior[i] * mu[i];
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
        if (dev - dev_old).abs() / (dev.abs() + 0.1) < EPSILON {
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
