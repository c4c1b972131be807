//! Fitting SIR/SEIR models to reported counts by negative-binomial, Poisson or least-squares criteria, with
//! Wald confidence intervals from the numerical Hessian on the transformed (log / logit) parameter scale.
//!
//! Optimisation is Nelder–Mead (`argmin`) from a small grid of starting points followed by restarts at the best
//! point until the objective stops improving, which is robust for these 3–15 parameter problems whose objective
//! needs an ODE solve per evaluation and has no cheap gradient.

use crate::error::{ForecastError, Result};
use crate::linalg::spd_inverse;
use crate::model::{EpiParams, Model, ModelKind, Trajectory};
use crate::ode::Rk5;
use crate::special::{is_positive, nb_logpmf, normal_quantile, poisson_logpmf};
use argmin::core::{CostFunction, Executor, State, TerminationReason};
use argmin::solver::neldermead::NelderMead;
use serde::Serialize;

/// What the observed series counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Observation {
    /// Reported new cases per day: ρ × (flow into I during the day).
    Incidence,
    /// Cases present on the day (e.g. beds in use): ρ × I(t).
    Prevalence,
}

/// The fitting criterion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Likelihood {
    /// Negative binomial with mean μ and free size φ (variance μ + μ²/φ).
    NegBin,
    /// Poisson.
    Poisson,
    /// Ordinary least squares (a Gaussian likelihood with the variance profiled out).
    LeastSquares,
}

/// What to fit and how.
#[derive(Debug, Clone)]
pub struct FitSpec {
    /// The compartment model and population.
    pub model: Model,
    /// What the data count.
    pub observation: Observation,
    /// The criterion.
    pub likelihood: Likelihood,
    /// Fix I(0) to this value instead of estimating it.
    pub fixed_i0: Option<f64>,
    /// Fix the reporting fraction ρ instead of estimating it.
    pub fixed_rho: Option<f64>,
    /// Fix the recovery rate γ (1 / infectious period) instead of estimating it: needed when only the growth
    /// phase is observed, since incidence then identifies the growth rate but not β and γ separately.
    pub fixed_gamma: Option<f64>,
    /// Days at which β(t) changes (empty: constant β).
    pub knots: Vec<usize>,
    /// Prior standard deviation of the log-β jump at each knot (a Gaussian random-walk penalty; ignored without
    /// knots). Small values give a smooth R(t), large values independent pieces.
    pub rw_sd: f64,
}

impl FitSpec {
    /// A constant-β fit with I(0) and ρ estimated.
    pub fn new(model: Model, observation: Observation, likelihood: Likelihood) -> Self {
        FitSpec {
            model,
            observation,
            likelihood,
            fixed_i0: None,
            fixed_rho: None,
            fixed_gamma: None,
            knots: Vec::new(),
            rw_sd: 0.5,
        }
    }

    fn layout(&self) -> Layout {
        Layout {
            n_beta: self.knots.len() + 1,
            gamma: self.fixed_gamma.is_none(),
            rho: self.fixed_rho.is_none(),
            i0: self.fixed_i0.is_none(),
            phi: self.likelihood == Likelihood::NegBin,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Layout {
    n_beta: usize,
    gamma: bool,
    rho: bool,
    i0: bool,
    phi: bool,
}

impl Layout {
    fn gamma(&self) -> Option<usize> {
        self.gamma.then_some(self.n_beta)
    }
    fn rho(&self) -> Option<usize> {
        self.rho.then(|| self.n_beta + usize::from(self.gamma))
    }
    fn i0(&self) -> Option<usize> {
        self.i0
            .then(|| self.n_beta + usize::from(self.gamma) + usize::from(self.rho))
    }
    fn phi(&self) -> Option<usize> {
        self.phi.then(|| {
            self.n_beta + usize::from(self.gamma) + usize::from(self.rho) + usize::from(self.i0)
        })
    }
    fn len(&self) -> usize {
        self.n_beta
            + usize::from(self.gamma)
            + usize::from(self.rho)
            + usize::from(self.i0)
            + usize::from(self.phi)
    }
}

fn logit(p: f64) -> f64 {
    (p / (1.0 - p)).ln()
}

fn expit(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Parameters in natural units, decoded from the optimiser's unconstrained vector.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decoded {
    /// Transmission and recovery parameters.
    pub epi: EpiParams,
    /// Reporting fraction ρ.
    pub rho: f64,
    /// Negative-binomial size φ (None for other likelihoods).
    pub dispersion: Option<f64>,
}

/// One estimate with its 95 % interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    /// Point estimate.
    pub value: f64,
    /// Lower 95 % limit.
    pub low: f64,
    /// Upper 95 % limit.
    pub high: f64,
}

/// A finished fit.
#[derive(Debug, Clone)]
pub struct Fit {
    /// The specification that was fitted.
    pub spec: FitSpec,
    /// Parameters at the optimum.
    pub params: Decoded,
    /// Unconstrained parameter vector at the optimum (log β.., log γ, logit ρ, log I(0), log φ as present).
    pub theta: Vec<f64>,
    /// Covariance of `theta` (row-major), the inverse Hessian of the penalised negative log-likelihood.
    pub covariance: Vec<f64>,
    /// Negative log-likelihood at the optimum (for least squares: the profiled Gaussian one).
    pub nll: f64,
    /// Sum of squared residuals at the optimum.
    pub sse: f64,
    /// Expected observations at the optimum, one per data point.
    pub fitted: Vec<f64>,
    /// Objective evaluations used.
    pub evaluations: usize,
    /// β of every piece with 95 % intervals.
    pub beta: Vec<Estimate>,
    /// γ with its interval.
    pub gamma: Estimate,
    /// R0 = β₁/γ with its interval.
    pub r0: Estimate,
    /// ρ with its interval (degenerate when fixed).
    pub rho: Estimate,
    /// I(0) with its interval (degenerate when fixed).
    pub i0: Estimate,
    /// Negative-binomial size with its interval (None for other likelihoods).
    pub dispersion: Option<Estimate>,
}

struct Problem<'a> {
    spec: &'a FitSpec,
    layout: Layout,
    data: &'a [f64],
    rtol: f64,
    /// Centre of the weak prior on log I(0).
    i0_centre: f64,
}

/// Standard deviation of the weak Gaussian prior on logit ρ (centred on ρ = 1/2): ρ is only identified once
/// susceptible depletion bends the curve, so before the peak the likelihood is flat along ρ·I(0) = const and the
/// prior keeps the information matrix invertible and ensemble draws plausible. Its 95 % range is ρ ∈ (0.05, 0.95).
pub const RHO_PRIOR_SD: f64 = 1.5;
/// Standard deviation of the weak Gaussian prior on log I(0), centred on (first non-zero count) / ½.
pub const I0_PRIOR_SD: f64 = 3.0;
/// Centre and standard deviation of the weak Gaussian prior on the log NB size φ. Without it, data no more
/// variable than Poisson send φ to infinity, where the likelihood is flat and no optimum exists; its 95 % range
/// (φ from 0.03 to 3,600) leaves every realistic dispersion to the data (it moves the boarding-school φ by < 1 %).
pub const PHI_PRIOR: (f64, f64) = (std::f64::consts::LN_10, 3.0);

impl FitSpec {
    fn i0_centre(&self, data: &[f64]) -> f64 {
        let first = data.iter().copied().find(|&v| v > 0.0).unwrap_or(1.0);
        (first / self.fixed_rho.unwrap_or(0.5)).max(1.0).ln()
    }
}

impl Problem<'_> {
    /// Natural-unit parameters from `theta`; missing entries (a vector of the wrong length) decode as NaN, which
    /// every caller rejects, rather than panicking.
    fn decode(&self, theta: &[f64]) -> Decoded {
        let l = self.layout;
        let at = |i: usize| theta.get(i).copied().unwrap_or(f64::NAN);
        Decoded {
            epi: EpiParams {
                beta: (0..l.n_beta).map(|k| at(k).exp()).collect(),
                knots: self.spec.knots.clone(),
                gamma: match l.gamma() {
                    Some(i) => at(i).exp(),
                    None => self.spec.fixed_gamma.unwrap_or(1.0),
                },
                i0: match l.i0() {
                    Some(i) => at(i).exp(),
                    None => self.spec.fixed_i0.unwrap_or(1.0),
                },
            },
            rho: match l.rho() {
                Some(i) => expit(at(i)),
                None => self.spec.fixed_rho.unwrap_or(1.0),
            },
            dispersion: l.phi().map(|i| at(i).exp()),
        }
    }

    fn expected(&self, d: &Decoded, solver: &mut Rk5) -> Result<Vec<f64>> {
        let tr: Trajectory = self.spec.model.simulate(&d.epi, self.data.len(), solver)?;
        let series = match self.spec.observation {
            Observation::Incidence => tr.incidence,
            Observation::Prevalence => tr.prevalence,
        };
        Ok(series.into_iter().map(|v| d.rho * v).collect())
    }

    /// Negative log-likelihood (without the random-walk penalty) and SSE at `theta`.
    fn nll(&self, theta: &[f64], solver: &mut Rk5) -> Result<(f64, f64, Vec<f64>)> {
        let d = self.decode(theta);
        if d.epi.i0 > self.spec.model.population {
            return Err(ForecastError::InvalidParameter {
                name: "i0",
                value: d.epi.i0,
                why: "above the population",
            });
        }
        let mu = self.expected(&d, solver)?;
        let sse: f64 = mu
            .iter()
            .zip(self.data)
            .map(|(m, y)| (y - m) * (y - m))
            .sum();
        let n = self.data.len() as f64;
        let nll = match self.spec.likelihood {
            Likelihood::NegBin => {
                let size = d.dispersion.unwrap_or(f64::INFINITY);
                -mu.iter()
                    .zip(self.data)
                    .map(|(&m, &y)| nb_logpmf(y, m, size))
                    .sum::<f64>()
            }
            Likelihood::Poisson => -mu
                .iter()
                .zip(self.data)
                .map(|(&m, &y)| poisson_logpmf(y, m))
                .sum::<f64>(),
            Likelihood::LeastSquares => {
                0.5 * n * ((sse / n).max(1e-300).ln() + 1.0 + (2.0 * std::f64::consts::PI).ln())
            }
        };
        Ok((nll, sse, mu))
    }

    /// Random-walk penalty on log β and the weak priors on ρ, I(0) and φ (only for the parameters that are fitted).
    fn penalty(&self, theta: &[f64]) -> f64 {
        let s2 = self.spec.rw_sd * self.spec.rw_sd;
        let rw: f64 = theta[..self.layout.n_beta]
            .windows(2)
            .map(|w| (w[1] - w[0]).powi(2) / (2.0 * s2))
            .sum();
        let rho = self
            .layout
            .rho()
            .map_or(0.0, |i| (theta[i] / RHO_PRIOR_SD).powi(2) / 2.0);
        let i0 = self.layout.i0().map_or(0.0, |i| {
            ((theta[i] - self.i0_centre) / I0_PRIOR_SD).powi(2) / 2.0
        });
        let phi = self.layout.phi().map_or(0.0, |i| {
            ((theta[i] - PHI_PRIOR.0) / PHI_PRIOR.1).powi(2) / 2.0
        });
        rw + rho + i0 + phi
    }

    fn objective(&self, theta: &[f64], solver: &mut Rk5) -> f64 {
        if theta.len() != self.layout.len()
            || theta.iter().any(|v| !v.is_finite() || v.abs() > 50.0)
        {
            return BAD;
        }
        match self.nll(theta, solver) {
            Ok((v, _, _)) if v.is_finite() => v + self.penalty(theta),
            _ => BAD,
        }
    }
}

/// Objective value for points where the model cannot be evaluated; finite so the simplex arithmetic stays sane.
pub(crate) const BAD: f64 = 1e100;

struct Cost<'a> {
    f: &'a dyn Fn(&[f64]) -> f64,
    evals: std::cell::Cell<usize>,
}

impl CostFunction for Cost<'_> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, p: &Self::Param) -> std::result::Result<f64, argmin::core::Error> {
        self.evals.set(self.evals.get() + 1);
        Ok((self.f)(p))
    }
}

/// Nelder–Mead on `f` from `start` with an axis-aligned initial simplex of size `step`; returns the best point,
/// its value and whether the simplex converged (rather than running out of iterations).
pub(crate) fn nelder_mead_fn(
    f: &dyn Fn(&[f64]) -> f64,
    start: &[f64],
    step: f64,
    max_iters: u64,
    evals: &mut usize,
) -> Result<(Vec<f64>, f64, bool)> {
    let cost = Cost {
        f,
        evals: std::cell::Cell::new(0),
    };
    let mut simplex = vec![start.to_vec()];
    for i in 0..start.len() {
        let mut v = start.to_vec();
        v[i] += step;
        simplex.push(v);
    }
    let nm = NelderMead::new(simplex)
        .with_sd_tolerance(1e-10)
        .map_err(|e| ForecastError::NoConvergence(e.to_string()))?;
    let res = Executor::new(cost, nm)
        .configure(|s| s.max_iters(max_iters))
        .timer(false)
        .run()
        .map_err(|e| ForecastError::NoConvergence(e.to_string()))?;
    *evals += res.problem.problem.as_ref().map_or(0, |c| c.evals.get());
    let state = res.state();
    let converged = matches!(
        state.get_termination_reason(),
        Some(TerminationReason::SolverConverged)
    );
    let best = state
        .get_best_param()
        .cloned()
        .ok_or_else(|| ForecastError::NoConvergence("the optimiser returned no point".into()))?;
    Ok((best, state.get_best_cost(), converged))
}

fn nelder_mead(
    problem: &Problem<'_>,
    start: &[f64],
    step: f64,
    max_iters: u64,
    evals: &mut usize,
) -> Result<(Vec<f64>, f64, bool)> {
    let solver = std::cell::RefCell::new(Rk5::new(problem.rtol, 1e-8)?);
    let f = |th: &[f64]| problem.objective(th, &mut solver.borrow_mut());
    nelder_mead_fn(&f, start, step, max_iters, evals)
}

/// Names of the unconstrained parameters, in order, for messages.
fn param_names(l: &Layout) -> Vec<String> {
    let mut v: Vec<String> = (0..l.n_beta)
        .map(|k| {
            if l.n_beta == 1 {
                "beta".to_string()
            } else {
                format!("beta[{}]", k + 1)
            }
        })
        .collect();
    if l.gamma {
        v.push("gamma".into());
    }
    if l.rho {
        v.push("rho".into());
    }
    if l.i0 {
        v.push("i0".into());
    }
    if l.phi {
        v.push("dispersion".into());
    }
    v
}

/// Central-difference gradient of `f` at `x`.
fn gradient(f: &mut dyn FnMut(&[f64]) -> f64, x: &[f64], h: f64) -> Vec<f64> {
    let mut p = x.to_vec();
    (0..x.len())
        .map(|i| {
            p[i] = x[i] + h;
            let fp = f(&p);
            p[i] = x[i] - h;
            let fm = f(&p);
            p[i] = x[i];
            (fp - fm) / (2.0 * h)
        })
        .collect()
}

/// Saddle-free Newton iterations (steps along the Hessian's eigenvectors scaled by |eigenvalue|) with
/// backtracking; returns the point, its value and whether the gradient vanished there.
pub(crate) fn newton_polish(
    f: &mut dyn FnMut(&[f64]) -> f64,
    mut x: Vec<f64>,
    mut fx: f64,
    evals: &mut usize,
) -> (Vec<f64>, f64, bool) {
    let n = x.len();
    fx = fx.min(f(&x));
    'outer: for _ in 0..50 {
        let g = gradient(f, &x, 1e-4);
        *evals += 2 * n;
        let h = hessian(f, &x, 1e-3);
        *evals += 1 + 4 * n + 2 * n * n;
        let (vals, vecs) = crate::linalg::symmetric_eigen(&h, n);
        let big = vals.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-12);
        // Clear negative curvature means a saddle (Nelder–Mead can stop on one): move along that direction.
        if let Some(k) = (0..n)
            .filter(|&k| vals[k] < -1e-5 * big)
            .min_by(|&a, &b| vals[a].total_cmp(&vals[b]))
        {
            let mut t = 1.0;
            for _ in 0..12 {
                for sign in [1.0, -1.0] {
                    let trial: Vec<f64> =
                        (0..n).map(|i| x[i] + sign * t * vecs[i * n + k]).collect();
                    let ft = f(&trial);
                    *evals += 1;
                    if ft < fx {
                        x = trial;
                        fx = ft;
                        continue 'outer;
                    }
                }
                t *= 0.5;
            }
        }
        let mut step = vec![0.0; n];
        for k in 0..n {
            let proj: f64 = (0..n).map(|i| vecs[i * n + k] * g[i]).sum();
            let lam = vals[k].abs().max(1e-8 * big);
            for i in 0..n {
                step[i] -= proj / lam * vecs[i * n + k];
            }
        }
        // Converged when the Newton decrement gᵀ|H|⁻¹g is below the noise of the ODE-based objective; unlike a
        // gradient threshold this is invariant to the very different curvatures of the parameters.
        let decrement: f64 = -g.iter().zip(&step).map(|(a, b)| a * b).sum::<f64>();
        if decrement < 1e-5 {
            return (x, fx, true);
        }
        // Keep steps on the log/logit scale modest.
        let norm = step.iter().map(|v| v * v).sum::<f64>().sqrt();
        if norm > 2.0 {
            step.iter_mut().for_each(|v| *v *= 2.0 / norm);
        }
        let mut alpha = 1.0;
        let mut moved = false;
        for _ in 0..30 {
            let trial: Vec<f64> = x.iter().zip(&step).map(|(a, b)| a + alpha * b).collect();
            let ft = f(&trial);
            *evals += 1;
            if ft < fx {
                x = trial;
                fx = ft;
                moved = true;
                break;
            }
            alpha *= 0.5;
        }
        if !moved {
            // No decrease along a descent direction: converged when the decrease the quadratic model predicts is
            // below the noise of the ODE-based objective.
            let predicted: f64 = -g.iter().zip(&step).map(|(a, b)| a * b).sum::<f64>();
            return (x, fx, predicted < 1e-5);
        }
    }
    (x, fx, false)
}

/// Central-difference Hessian of `f` at `x`, with a step per coordinate scaled to its curvature.
///
/// A single step for all coordinates fails here: near R0 ≈ 1 the curvature along log β is ~10⁵ times that along
/// log φ, and a step suited to the flat coordinates lets fourth-order terms swamp the stiff cross-derivatives
/// (enough to make a minimum look like a saddle). A first pass measures the diagonal with h = 10⁻³; each coordinate
/// then gets h_i = 0.1/√|H_ii| (kept within [10⁻⁵, 10⁻²]), so every probe changes f by about 0.005.
pub(crate) fn hessian(f: &mut dyn FnMut(&[f64]) -> f64, x: &[f64], h0: f64) -> Vec<f64> {
    let n = x.len();
    let f0 = f(x);
    let mut p = x.to_vec();
    let mut second = |p: &mut Vec<f64>, i: usize, h: f64| {
        p[i] = x[i] + h;
        let fp = f(p);
        p[i] = x[i] - h;
        let fm = f(p);
        p[i] = x[i];
        (fp - 2.0 * f0 + fm) / (h * h)
    };
    let steps: Vec<f64> = (0..n)
        .map(|i| {
            let d = second(&mut p, i, h0).abs();
            if d > 0.0 && d.is_finite() {
                (0.1 / d.sqrt()).clamp(1e-5, 1e-2)
            } else {
                h0
            }
        })
        .collect();
    let mut hes = vec![0.0; n * n];
    for i in 0..n {
        hes[i * n + i] = second(&mut p, i, steps[i]);
    }
    for i in 0..n {
        for j in 0..i {
            let mut val = 0.0;
            for (si, sj, sign) in [
                (1.0, 1.0, 1.0),
                (1.0, -1.0, -1.0),
                (-1.0, 1.0, -1.0),
                (-1.0, -1.0, 1.0),
            ] {
                p[i] = x[i] + si * steps[i];
                p[j] = x[j] + sj * steps[j];
                val += sign * f(&p);
            }
            p[i] = x[i];
            p[j] = x[j];
            let v = val / (4.0 * steps[i] * steps[j]);
            hes[i * n + j] = v;
            hes[j * n + i] = v;
        }
    }
    hes
}

/// Fits `spec` to the daily series `data` (row k is day k, the state at day 0 is the initial condition).
pub fn fit(spec: &FitSpec, data: &[f64]) -> Result<Fit> {
    crate::data::validate_series(data, "reported")?;
    let layout = spec.layout();
    let need = layout.len() + 2;
    if data.len() < need.max(5) {
        return Err(ForecastError::TooShort {
            got: data.len(),
            need: need.max(5),
            why: "the fit needs more data points than parameters",
        });
    }
    if data.iter().all(|&v| v == 0.0) {
        return Err(ForecastError::NoCases);
    }
    if let Some(rho) = spec.fixed_rho {
        if !(rho > 0.0 && rho <= 1.0) {
            return Err(ForecastError::InvalidParameter {
                name: "rho",
                value: rho,
                why: "the reporting fraction must be in (0, 1]",
            });
        }
    }
    if let Some(g) = spec.fixed_gamma {
        if !is_positive(g) {
            return Err(ForecastError::InvalidParameter {
                name: "gamma",
                value: g,
                why: "the recovery rate must be > 0",
            });
        }
    }
    if let Some(i0) = spec.fixed_i0 {
        if !(is_positive(i0) && i0 < spec.model.population) {
            return Err(ForecastError::InvalidParameter {
                name: "i0",
                value: i0,
                why: "initial infectious must be in (0, N)",
            });
        }
    }
    if !spec.knots.is_empty() && !is_positive(spec.rw_sd) {
        return Err(ForecastError::InvalidParameter {
            name: "rw_sd",
            value: spec.rw_sd,
            why: "the random-walk SD must be > 0",
        });
    }
    if spec.knots.iter().any(|&k| k == 0 || k >= data.len())
        || spec.knots.windows(2).any(|w| w[1] <= w[0])
    {
        return Err(ForecastError::InvalidParameter {
            name: "knots",
            value: spec.knots.first().copied().unwrap_or(0) as f64,
            why: "knots must be ascending days inside the data",
        });
    }
    let problem = Problem {
        spec,
        layout,
        data,
        rtol: 1e-9,
        i0_centre: spec.i0_centre(data),
    };
    let mut evals = 0usize;

    // Starting grid over the generation time and R0, with ρ = 1/2, I(0) from the first counts and φ = 10.
    let first_nonzero = data.iter().copied().find(|&v| v > 0.0).unwrap_or(1.0);
    let mut starts: Vec<(f64, Vec<f64>)> = Vec::new();
    let mut solver = Rk5::new(problem.rtol, 1e-8)?;
    let gammas = match spec.fixed_gamma {
        Some(g) => vec![g],
        None => vec![0.5f64, 0.2, 0.1],
    };
    for &gamma in &gammas {
        for &r0 in &[1.3f64, 2.0, 3.5] {
            let mut th = vec![0.0; layout.len()];
            for b in th.iter_mut().take(layout.n_beta) {
                *b = (r0 * gamma).ln();
            }
            if let Some(i) = layout.gamma() {
                th[i] = gamma.ln();
            }
            let rho0 = spec.fixed_rho.unwrap_or(0.5);
            if let Some(i) = layout.rho() {
                th[i] = logit(rho0);
            }
            if let Some(i) = layout.i0() {
                th[i] = (first_nonzero / rho0)
                    .min(spec.model.population * 0.01)
                    .max(spec.model.population.min(2.0) * 0.5)
                    .ln();
            }
            if let Some(i) = layout.phi() {
                th[i] = 10f64.ln();
            }
            let v = problem.objective(&th, &mut solver);
            evals += 1;
            starts.push((v, th));
        }
    }
    starts.sort_by(|a, b| a.0.total_cmp(&b.0));
    let max_iters = 400 * layout.len() as u64;
    let mut best: Option<(Vec<f64>, f64, bool)> = None;
    for (_, th) in starts.iter().take(3) {
        let r = nelder_mead(&problem, th, 0.3, max_iters, &mut evals)?;
        if best.as_ref().is_none_or(|b| r.1 < b.1) {
            best = Some(r);
        }
    }
    let Some((mut theta, mut value, mut converged)) = best else {
        return Err(ForecastError::NoConvergence("no starting point".into()));
    };
    // Restart from the best point with a fresh simplex until the objective stops improving: a collapsed simplex
    // is Nelder–Mead's usual failure.
    for _ in 0..8 {
        let (th, v, conv) = nelder_mead(&problem, &theta, 0.05, max_iters, &mut evals)?;
        let improved = value - v;
        if v <= value {
            theta = th;
            value = v;
            converged = conv;
        }
        if improved.abs() < 1e-7 {
            break;
        }
    }
    // Nelder–Mead can stall on the long curved ridges these likelihoods have (β against γ, ρ against I(0)); a few
    // saddle-free Newton steps on the finite-difference derivatives finish the job and certify the optimum.
    let mut psolver = Rk5::new(1e-11, 1e-10)?;
    let mut pf = |th: &[f64]| problem.objective(th, &mut psolver);
    let (th, v, grad_ok) = newton_polish(&mut pf, theta.clone(), value, &mut evals);
    if v <= value {
        theta = th;
        value = v;
    }
    converged = converged || grad_ok;
    if !grad_ok {
        tracing::debug!(?theta, "newton polish failed");
        return Err(ForecastError::NoConvergence(format!(
            "no optimum could be certified (objective {value:.6} after {evals} evaluations); the data may not \
             identify every parameter: try fixing --gamma, --rho or --i0"
        )));
    }
    if !(value.is_finite() && value < BAD && converged) {
        return Err(ForecastError::NoConvergence(format!(
            "Nelder–Mead stopped without converging (objective {value:.6}, {evals} evaluations)"
        )));
    }
    let (nll, sse, fitted) = problem.nll(&theta, &mut solver)?;
    tracing::debug!(evaluations = evals, nll, "fit converged");

    let mut hsolver = Rk5::new(1e-11, 1e-10)?;
    let mut f = |th: &[f64]| problem.objective(th, &mut hsolver);
    let h = hessian(&mut f, &theta, 1e-3);
    let n = theta.len();
    let cov = match spd_inverse(&h, n) {
        Ok(c) => c,
        Err(e) => {
            let (vals, _) = crate::linalg::symmetric_eigen(&h, n);
            tracing::warn!(?vals, theta = ?theta, "Hessian not positive definite");
            return Err(e);
        }
    };
    // A parameter that ran off to the edge of its range, or whose interval spans more than a factor e^±20, is not
    // estimated by these data (typically γ when only the growth phase is observed): refuse rather than print it.
    let names = param_names(&layout);
    for i in 0..n {
        let sd = cov[i * n + i].max(0.0).sqrt();
        if theta[i].abs() > 20.0 || !sd.is_finite() || sd > 10.0 {
            return Err(ForecastError::NotIdentifiable(format!(
                "{} is not identified by these data (estimate {:.3e}, log-scale SE {sd:.1}); fix it with an option \
                 such as --gamma, --rho or --i0, or use more of the epidemic curve",
                names[i],
                theta[i].exp()
            )));
        }
    }
    let z = normal_quantile(0.975);
    let wald = |grad: &[(usize, f64)], center: f64, back: &dyn Fn(f64) -> f64| -> Estimate {
        let mut var = 0.0;
        for &(i, a) in grad {
            for &(j, b) in grad {
                var += a * b * cov[i * n + j];
            }
        }
        let sd = var.max(0.0).sqrt();
        Estimate {
            value: back(center),
            low: back(center - z * sd),
            high: back(center + z * sd),
        }
    };
    let exp = |x: f64| x.exp();
    let params = problem.decode(&theta);
    let beta: Vec<Estimate> = (0..layout.n_beta)
        .map(|k| wald(&[(k, 1.0)], theta[k], &exp))
        .collect();
    let fixed = |v: f64| Estimate {
        value: v,
        low: v,
        high: v,
    };
    let (gamma, r0) = match layout.gamma() {
        Some(g) => (
            wald(&[(g, 1.0)], theta[g], &exp),
            wald(&[(0, 1.0), (g, -1.0)], theta[0] - theta[g], &exp),
        ),
        None => {
            let lg = params.epi.gamma.ln();
            (
                fixed(params.epi.gamma),
                wald(&[(0, 1.0)], theta[0] - lg, &exp),
            )
        }
    };
    let rho = match layout.rho() {
        Some(i) => wald(&[(i, 1.0)], theta[i], &expit),
        None => fixed(params.rho),
    };
    let i0 = match layout.i0() {
        Some(i) => wald(&[(i, 1.0)], theta[i], &exp),
        None => fixed(params.epi.i0),
    };
    let dispersion = layout.phi().map(|i| wald(&[(i, 1.0)], theta[i], &exp));
    Ok(Fit {
        spec: spec.clone(),
        params,
        theta,
        covariance: cov,
        nll,
        sse,
        fitted,
        evaluations: evals,
        beta,
        gamma,
        r0,
        rho,
        i0,
        dispersion,
    })
}

impl Fit {
    /// Decodes an unconstrained parameter vector (e.g. a draw from the fit's covariance) into natural units.
    pub fn decode(&self, theta: &[f64]) -> Decoded {
        let problem = Problem {
            spec: &self.spec,
            layout: self.spec.layout(),
            data: &[],
            rtol: 1e-9,
            i0_centre: 0.0,
        };
        problem.decode(theta)
    }

    /// The penalised objective (negative log-likelihood plus random-walk penalty and weak priors) that the fit
    /// minimised, at the unconstrained parameter vector `theta`, for the same data.
    pub fn objective_at(&self, data: &[f64], theta: &[f64]) -> f64 {
        let problem = Problem {
            spec: &self.spec,
            layout: self.spec.layout(),
            data,
            rtol: 1e-9,
            i0_centre: self.spec.i0_centre(data),
        };
        match Rk5::new(1e-9, 1e-8) {
            Ok(mut s) => problem.objective(theta, &mut s),
            Err(_) => f64::NAN,
        }
    }

    /// The unconstrained vector of natural-unit parameters (inverse of [`Fit::decode`]).
    pub fn encode(&self, d: &Decoded) -> Vec<f64> {
        let l = self.spec.layout();
        let mut th = vec![0.0; l.len()];
        for (k, b) in d.epi.beta.iter().enumerate().take(l.n_beta) {
            th[k] = b.ln();
        }
        if let Some(i) = l.gamma() {
            th[i] = d.epi.gamma.ln();
        }
        if let Some(i) = l.rho() {
            th[i] = logit(d.rho);
        }
        if let Some(i) = l.i0() {
            th[i] = d.epi.i0.ln();
        }
        if let Some(i) = l.phi() {
            th[i] = d.dispersion.unwrap_or(1.0).ln();
        }
        th
    }

    /// R(t) = β(t)/γ for days 1..=days (the reproduction number in a fully susceptible population).
    pub fn r_of_t(&self, days: usize) -> Vec<f64> {
        let p = &self.params.epi;
        (1..=days)
            .map(|d| {
                let piece = p.knots.iter().take_while(|&&k| k < d).count();
                p.beta.get(piece).copied().unwrap_or(f64::NAN) / p.gamma
            })
            .collect()
    }

    /// The model kind that was fitted.
    pub fn kind(&self) -> ModelKind {
        self.spec.model.kind
    }
}

/// Profile-likelihood 95 % intervals: for each quantity, the range of values whose profiled penalised negative
/// log-likelihood stays within ½χ²₁(0.95) = 1.9207 of the optimum (the other parameters re-optimised at every
/// point). More faithful than the Wald intervals when the likelihood is skewed, at the cost of many more fits.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProfileIntervals {
    /// β of the first piece.
    pub beta: Estimate,
    /// γ (degenerate when fixed).
    pub gamma: Estimate,
    /// R0 = β₁/γ.
    pub r0: Estimate,
    /// ρ (degenerate when fixed).
    pub rho: Estimate,
    /// NB size (None for other likelihoods).
    pub dispersion: Option<Estimate>,
}

/// Half the 95 % quantile of χ² with one degree of freedom.
const HALF_CHI2_95: f64 = 1.920_729_410_347_062;

impl Fit {
    /// Profile-likelihood intervals for β₁, γ, R0, ρ and the dispersion, refitting on `data` (the data of the fit).
    pub fn profile_intervals(&self, data: &[f64]) -> Result<ProfileIntervals> {
        let layout = self.spec.layout();
        let problem = Problem {
            spec: &self.spec,
            layout,
            data,
            rtol: 1e-9,
            i0_centre: self.spec.i0_centre(data),
        };
        let best = self.objective_at(data, &self.theta);
        if !best.is_finite() {
            return Err(ForecastError::NoConvergence(
                "the fit's optimum cannot be re-evaluated on these data".into(),
            ));
        }
        let n = self.theta.len();
        let fixed = |v: f64| Estimate {
            value: v,
            low: v,
            high: v,
        };
        // Each target is a·θ for a coefficient vector a with a[pivot] = 1.
        let interval = |a: &[f64],
                        pivot: usize,
                        back: &dyn Fn(f64) -> f64,
                        wald: Estimate|
         -> Result<Estimate> {
            let c_hat: f64 = a.iter().zip(&self.theta).map(|(x, y)| x * y).sum();
            let rest: Vec<usize> = (0..n).filter(|&i| i != pivot).collect();
            let full = |c: f64, w: &[f64]| -> Vec<f64> {
                let mut th = vec![0.0; n];
                for (k, &i) in rest.iter().enumerate() {
                    th[i] = w[k];
                }
                th[pivot] = c - rest.iter().map(|&i| a[i] * th[i]).sum::<f64>();
                th
            };
            let solver = std::cell::RefCell::new(Rk5::new(1e-9, 1e-8)?);
            let mut evals = 0usize;
            let mut profile = |c: f64, warm: &mut Vec<f64>| -> Result<f64> {
                if rest.is_empty() {
                    return Ok(problem.objective(&full(c, &[]), &mut solver.borrow_mut()));
                }
                let f = |w: &[f64]| problem.objective(&full(c, w), &mut solver.borrow_mut());
                let (w, mut v, _) = nelder_mead_fn(&f, warm, 0.05, 300 * n as u64, &mut evals)?;
                let (w2, v2, _) = nelder_mead_fn(&f, &w, 0.02, 300 * n as u64, &mut evals)?;
                *warm = if v2 <= v { w2 } else { w };
                v = v.min(v2);
                Ok(v)
            };
            let start: Vec<f64> = rest.iter().map(|&i| self.theta[i]).collect();
            let level = best + HALF_CHI2_95;
            let wald_half = |end: f64| {
                let e = end.ln() - back(c_hat).ln();
                if e.is_finite() && e.abs() > 1e-6 {
                    e.abs()
                } else {
                    0.1
                }
            };
            let mut ends = [0.0; 2];
            for (side, sign) in [(0usize, -1.0f64), (1, 1.0)] {
                let mut warm = start.clone();
                let mut inner = c_hat;
                let mut step = wald_half(if side == 0 { wald.low } else { wald.high });
                let mut outer = c_hat + sign * step;
                // Expand until the profile crosses the level (or 12 doublings: then the interval is open).
                let mut crossed = false;
                for _ in 0..12 {
                    let v = profile(outer, &mut warm)?;
                    if v >= level {
                        crossed = true;
                        break;
                    }
                    inner = outer;
                    step *= 2.0;
                    outer = c_hat + sign * step;
                }
                if !crossed {
                    ends[side] = if sign < 0.0 {
                        f64::NEG_INFINITY
                    } else {
                        f64::INFINITY
                    };
                    continue;
                }
                for _ in 0..30 {
                    if (outer - inner).abs() < 1e-4 {
                        break;
                    }
                    let mid = 0.5 * (inner + outer);
                    if profile(mid, &mut warm)? >= level {
                        outer = mid;
                    } else {
                        inner = mid;
                    }
                }
                ends[side] = 0.5 * (inner + outer);
            }
            tracing::debug!(evaluations = evals, "profile interval");
            Ok(Estimate {
                value: back(c_hat),
                low: back(ends[0]),
                high: back(ends[1]),
            })
        };
        let unit = |i: usize| {
            let mut a = vec![0.0; n];
            a[i] = 1.0;
            a
        };
        let exp = |x: f64| x.exp();
        let beta = interval(&unit(0), 0, &exp, self.beta[0])?;
        let (gamma, r0) = match layout.gamma() {
            Some(g) => {
                let mut a = unit(0);
                a[g] = -1.0;
                (
                    interval(&unit(g), g, &exp, self.gamma)?,
                    interval(&a, 0, &exp, self.r0)?,
                )
            }
            None => (fixed(self.gamma.value), {
                let e = interval(&unit(0), 0, &exp, self.beta[0])?;
                let g = self.gamma.value;
                Estimate {
                    value: e.value / g,
                    low: e.low / g,
                    high: e.high / g,
                }
            }),
        };
        let rho = match layout.rho() {
            Some(i) => interval(&unit(i), i, &expit, self.rho)?,
            None => fixed(self.rho.value),
        };
        let dispersion = match (layout.phi(), self.dispersion) {
            (Some(i), Some(w)) => Some(interval(&unit(i), i, &exp, w)?),
            _ => None,
        };
        Ok(ProfileIntervals {
            beta,
            gamma,
            r0,
            rho,
            dispersion,
        })
    }
}
