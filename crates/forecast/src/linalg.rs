//! Dense symmetric-positive-definite helpers for the small (≤ ~30 × 30) matrices of the fits.
//!
//! Hand-written because only a Cholesky factorisation and an inverse of a handful of parameters are needed;
//! `nalgebra` or `faer` would more than double this crate's cold build time on the shared build machine.

use crate::error::{ForecastError, Result};

/// Lower-triangular Cholesky factor L (row-major, n × n) of the symmetric matrix `a`, with A = L Lᵀ.
pub fn cholesky(a: &[f64], n: usize) -> Result<Vec<f64>> {
    if a.len() != n * n {
        return Err(ForecastError::Singular("matrix has the wrong size"));
    }
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= l[i * n + k] * l[j * n + k];
            }
            if i == j {
                if !(s.is_finite() && s > 0.0) {
                    return Err(ForecastError::Singular(
                        "the information matrix is not positive definite (a parameter is not identifiable from \
                         these data; fix it with an option such as --rho or --i0)",
                    ));
                }
                l[i * n + i] = s.sqrt();
            } else {
                l[i * n + j] = s / l[j * n + j];
            }
        }
    }
    Ok(l)
}

/// Inverse of a symmetric positive-definite matrix through its Cholesky factor.
pub fn spd_inverse(a: &[f64], n: usize) -> Result<Vec<f64>> {
    let l = cholesky(a, n)?;
    // Solve L Lᵀ X = I column by column.
    let mut inv = vec![0.0; n * n];
    let mut z = vec![0.0; n];
    for col in 0..n {
        for i in 0..n {
            let mut s = if i == col { 1.0 } else { 0.0 };
            for k in 0..i {
                s -= l[i * n + k] * z[k];
            }
            z[i] = s / l[i * n + i];
        }
        for i in (0..n).rev() {
            let mut s = z[i];
            for k in i + 1..n {
                s -= l[k * n + i] * inv[k * n + col];
            }
            inv[i * n + col] = s / l[i * n + i];
        }
    }
    Ok(inv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_of_spd_matrix() -> Result<()> {
        let a = [4.0, 2.0, 0.6, 2.0, 5.0, 1.0, 0.6, 1.0, 3.0];
        let inv = spd_inverse(&a, 3)?;
        for i in 0..3 {
            for j in 0..3 {
                let v: f64 = (0..3).map(|k| a[i * 3 + k] * inv[k * 3 + j]).sum();
                assert!((v - if i == j { 1.0 } else { 0.0 }).abs() < 1e-12);
            }
        }
        assert!(cholesky(&[1.0, 2.0, 2.0, 1.0], 2).is_err());
        Ok(())
    }
}
