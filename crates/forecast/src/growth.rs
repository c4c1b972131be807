//! Links between the epidemic growth rate r and the reproduction number (Wallinga & Lipsitch 2007).

use crate::error::{ForecastError, Result};
use crate::special::is_positive;

/// R for an SEIR model with latent rate σ and recovery rate γ growing at rate r: R = (1 + r/σ)(1 + r/γ).
pub fn r_from_growth_seir(r: f64, sigma: f64, gamma: f64) -> Result<f64> {
    if !(is_positive(sigma) && is_positive(gamma) && r.is_finite()) {
        return Err(ForecastError::InvalidParameter {
            name: "sigma/gamma/r",
            value: sigma.min(gamma),
            why: "sigma and gamma must be > 0 and r finite",
        });
    }
    Ok((1.0 + r / sigma) * (1.0 + r / gamma))
}

/// R for a gamma-distributed generation interval with the given mean and SD growing at rate r:
/// R = (1 + r·θ)^k with shape k = (mean/sd)² and scale θ = sd²/mean.
pub fn r_from_growth_gamma(r: f64, mean: f64, sd: f64) -> Result<f64> {
    if !(is_positive(mean) && is_positive(sd) && r.is_finite()) {
        return Err(ForecastError::InvalidParameter {
            name: "mean/sd/r",
            value: mean.min(sd),
            why: "the generation-interval mean and SD must be > 0 and r finite",
        });
    }
    let k = (mean / sd).powi(2);
    let theta = sd * sd / mean;
    let base = 1.0 + r * theta;
    if base <= 0.0 {
        return Err(ForecastError::InvalidParameter {
            name: "r",
            value: r,
            why: "the decline is too fast for this generation interval (1 + r·θ <= 0)",
        });
    }
    Ok(base.powf(k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_anchor_and_limits() -> Result<()> {
        // Li et al. (NEJM 2020): serial interval 7.5 ± 3.4 days, growth 0.10/day → R ≈ 2.01.
        let r = r_from_growth_gamma(0.10, 7.5, 3.4)?;
        assert!((r - 2.01).abs() < 0.005, "{r}");
        // No growth means R = 1 whatever the interval.
        assert_eq!(r_from_growth_gamma(0.0, 5.0, 2.0)?, 1.0);
        assert_eq!(r_from_growth_seir(0.0, 0.2, 0.25)?, 1.0);
        assert!((r_from_growth_seir(0.1, 0.2, 0.25)? - 1.5 * 1.4).abs() < 1e-12);
        assert!(r_from_growth_gamma(-1.0, 7.5, 3.4).is_err());
        assert!(r_from_growth_seir(0.1, 0.0, 0.25).is_err());
        Ok(())
    }
}
