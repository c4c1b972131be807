//! Distribution helpers on top of `statrs`: normal and Student-t probabilities, and the discrete quantile
//! convention of the reference (the smallest integer x with F(x) ≥ p).
//!
//! statrs' own `DiscreteCDF::inverse_cdf` panics outside [0, 1] and bisects from zero on every call; the search
//! here starts from a moment-based guess, walks to the exact boundary with the CDF and never panics.

use statrs::distribution::{
    ContinuousCDF, DiscreteCDF, NegativeBinomial, Normal, Poisson, StudentsT,
};

/// The reference nudges p down by 64 machine epsilons before the search so that a CDF value equal to p up to
/// rounding still counts as reached (left continuity of the quantile).
fn fuzz(p: f64) -> f64 {
    p * (1.0 - 64.0 * f64::EPSILON)
}

/// Standard normal quantile Φ⁻¹(p).
pub fn qnorm(p: f64) -> f64 {
    match Normal::new(0.0, 1.0) {
        Ok(n) if (0.0..=1.0).contains(&p) => n.inverse_cdf(p),
        _ => f64::NAN,
    }
}

/// Two-sided p-value of a t statistic with `df` degrees of freedom.
pub fn two_sided_t_pvalue(t: f64, df: f64) -> f64 {
    if !t.is_finite() || !df.is_finite() || df <= 0.0 {
        return f64::NAN;
    }
    match StudentsT::new(0.0, 1.0, df) {
        Ok(d) => 2.0 * d.cdf(-t.abs()),
        Err(_) => f64::NAN,
    }
}

/// Above this mean the quantile is taken from the Cornish–Fisher expansion instead of a search: integers are no
/// longer exactly representable, and the distribution's spread is negligible relative to its mean (a degenerate
/// regression can ask for means of 1e190).
const HUGE_MEAN: f64 = 1e15;

/// Cornish–Fisher approximation mean + sd·(z + γ(z² − 1)/6), rounded up to a whole number.
fn cornish_fisher(p: f64, mean: f64, sd: f64, skew: f64) -> f64 {
    let z = qnorm(p);
    (mean + sd * (z + skew * (z * z - 1.0) / 6.0)).ceil()
}

/// Smallest integer x ≥ 0 with cdf(x) ≥ p, searched from `guess`: a bracket is grown from the guess by doubling
/// steps in the direction the CDF says, then halved. The number of CDF evaluations is logarithmic in the distance
/// between the guess and the answer, which matters for very skewed distributions whose normal-approximation guess
/// can be far off.
fn discrete_quantile(p: f64, guess: f64, cdf: impl Fn(u64) -> f64) -> Option<u64> {
    if !(0.0..1.0).contains(&p) || !guess.is_finite() {
        return None;
    }
    let p = fuzz(p);
    let x = guess.clamp(0.0, 9.0e15).floor() as u64;
    // Invariant after bracketing: cdf(hi) ≥ p, and lo is either None (hi is 0) or cdf(lo) < p.
    let (mut lo, mut hi);
    if cdf(x) >= p {
        hi = x;
        let mut step = 1u64;
        loop {
            if hi == 0 {
                return Some(0);
            }
            let cand = hi.saturating_sub(step);
            if cdf(cand) >= p {
                hi = cand;
                step = step.saturating_mul(2);
            } else {
                lo = cand;
                break;
            }
        }
    } else {
        lo = x;
        let mut step = 1u64;
        loop {
            let cand = lo.checked_add(step)?;
            if cand > (1u64 << 60) {
                return None;
            }
            if cdf(cand) >= p {
                hi = cand;
                break;
            }
            lo = cand;
            step = step.saturating_mul(2);
        }
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if cdf(mid) >= p {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some(hi)
}

/// Poisson quantile (smallest x with P(X ≤ x) ≥ p); `None` for invalid arguments.
pub fn qpois(p: f64, lambda: f64) -> Option<f64> {
    if lambda == 0.0 {
        return Some(0.0);
    }
    if !(0.0..1.0).contains(&p) {
        return None;
    }
    if lambda > HUGE_MEAN && lambda.is_finite() {
        return Some(cornish_fisher(
            p,
            lambda,
            lambda.sqrt(),
            1.0 / lambda.sqrt(),
        ));
    }
    let d = Poisson::new(lambda).ok()?;
    let guess = lambda + qnorm(p) * lambda.sqrt();
    discrete_quantile(p, guess, |x| d.cdf(x)).map(|x| x as f64)
}

/// Negative binomial quantile with R's (size, prob) parameterisation, mean size·(1−prob)/prob.
pub fn qnbinom(p: f64, size: f64, prob: f64) -> Option<f64> {
    if size.is_nan() || size <= 0.0 || prob.is_nan() || prob <= 0.0 || prob > 1.0 {
        return None;
    }
    if prob == 1.0 {
        return Some(0.0);
    }
    if !(0.0..1.0).contains(&p) {
        return None;
    }
    let mean = size * (1.0 - prob) / prob;
    let sd = (mean / prob).sqrt();
    if mean > HUGE_MEAN && mean.is_finite() {
        let skew = (2.0 - prob) / (size * (1.0 - prob)).sqrt();
        return Some(cornish_fisher(p, mean, sd, skew));
    }
    let d = NegativeBinomial::new(size, prob).ok()?;
    let guess = mean + qnorm(p) * sd;
    discrete_quantile(p, guess, |x| d.cdf(x)).map(|x| x as f64)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_match_reference_values() {
        // Values printed by R 4.2.2: qpois(0.95, 3.2) = 6, qnbinom(0.9, size = 2.5, prob = 0.3) = 12,
        // qnorm(0.975) = 1.959963984540054.
        assert_eq!(qpois(0.95, 3.2), Some(6.0));
        assert_eq!(qnbinom(0.9, 2.5, 0.3), Some(12.0));
        assert!((qnorm(0.975) - 1.959_963_984_540_054).abs() < 1e-12);
    }

    #[test]
    fn quantile_is_smallest_integer_reaching_p() {
        // P(X ≤ 0) for Poisson(λ = ln 2) is exactly 0.5, so the median is 0.
        assert_eq!(qpois(0.5, std::f64::consts::LN_2), Some(0.0));
        assert_eq!(qpois(1.5, 1.0), None);
    }
}
