//! SIR and SEIR compartment models with a piecewise-constant transmission rate β(t).
//!
//! S′ = −β(t)SI/N, (E′ = β(t)SI/N − σE,) I′ = σE − γI (SIR: β(t)SI/N − γI), R′ = γI, no demography. A fifth
//! compartment C accumulates the flow into I, so that incidence over a day is C(t) − C(t−1) computed by the solver
//! itself rather than by differencing S (which loses precision when S is large).

use crate::error::{ForecastError, Result};
use crate::ode::{OdeSystem, Rk5};
use crate::special::is_positive;
use serde::Serialize;

/// Which compartment structure to use.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum ModelKind {
    /// Susceptible–infectious–recovered.
    Sir,
    /// Susceptible–exposed–infectious–recovered with progression rate σ (1/latent period).
    Seir {
        /// Rate of leaving the latent compartment, per day.
        sigma: f64,
    },
}

impl ModelKind {
    /// Number of ODE states including the cumulative-incidence compartment.
    pub fn dim(&self) -> usize {
        match self {
            ModelKind::Sir => 4,
            ModelKind::Seir { .. } => 5,
        }
    }
}

/// Epidemiological parameters of one trajectory.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpiParams {
    /// Transmission rate of each piece (per day).
    pub beta: Vec<f64>,
    /// Days (> 0, ascending, integers) at which β switches to the next piece; `beta.len() == knots.len() + 1`.
    pub knots: Vec<usize>,
    /// Recovery rate γ (per day).
    pub gamma: f64,
    /// Infectious individuals at t = 0 (the rest are susceptible, E(0) = R(0) = 0).
    pub i0: f64,
}

/// Daily model output at t = 1..=days.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trajectory {
    /// New infectious individuals during day t (flow into I over (t−1, t]).
    pub incidence: Vec<f64>,
    /// Infectious individuals I(t).
    pub prevalence: Vec<f64>,
    /// Susceptible individuals S(t).
    pub susceptible: Vec<f64>,
}

struct Rhs {
    kind: ModelKind,
    beta: f64,
    gamma: f64,
    inv_n: f64,
}

impl OdeSystem for Rhs {
    fn dim(&self) -> usize {
        self.kind.dim()
    }
    /// f reads S, I (SIR) or S, E, I (SEIR); R and the cumulative incidence are quadratures.
    fn feedback_dim(&self) -> usize {
        match self.kind {
            ModelKind::Sir => 2,
            ModelKind::Seir { .. } => 3,
        }
    }
    fn rhs(&self, _t: f64, y: &[f64], d: &mut [f64]) {
        match self.kind {
            ModelKind::Sir => {
                let inf = self.beta * y[0] * y[1] * self.inv_n;
                d[0] = -inf;
                d[1] = inf - self.gamma * y[1];
                d[2] = self.gamma * y[1];
                d[3] = inf;
            }
            ModelKind::Seir { sigma } => {
                let inf = self.beta * y[0] * y[2] * self.inv_n;
                d[0] = -inf;
                d[1] = inf - sigma * y[1];
                d[2] = sigma * y[1] - self.gamma * y[2];
                d[3] = self.gamma * y[2];
                d[4] = sigma * y[1];
            }
        }
    }
}

/// A closed-population compartment model.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// Compartment structure.
    pub kind: ModelKind,
    /// Population size N.
    pub population: f64,
}

impl Model {
    /// A model, checking N > 0 and σ > 0.
    pub fn new(kind: ModelKind, population: f64) -> Result<Self> {
        if !is_positive(population) {
            return Err(ForecastError::InvalidParameter {
                name: "population",
                value: population,
                why: "the population must be > 0",
            });
        }
        if let ModelKind::Seir { sigma } = kind {
            if !is_positive(sigma) {
                return Err(ForecastError::InvalidParameter {
                    name: "sigma",
                    value: sigma,
                    why: "sigma (1 / latent period) must be > 0",
                });
            }
        }
        Ok(Model { kind, population })
    }

    /// Basic reproduction number of the first piece, β₁/γ.
    pub fn r0(p: &EpiParams) -> f64 {
        p.beta.first().copied().unwrap_or(f64::NAN) / p.gamma
    }

    fn check(&self, p: &EpiParams) -> Result<()> {
        if p.beta.len() != p.knots.len() + 1 {
            return Err(ForecastError::InvalidParameter {
                name: "knots",
                value: p.knots.len() as f64,
                why: "there must be one more beta than knots",
            });
        }
        if p.knots.windows(2).any(|w| w[1] <= w[0]) || p.knots.first() == Some(&0) {
            return Err(ForecastError::InvalidParameter {
                name: "knots",
                value: p.knots.first().copied().unwrap_or(0) as f64,
                why: "knots must be ascending days after day 0",
            });
        }
        for &b in &p.beta {
            if !(b.is_finite() && b >= 0.0) {
                return Err(ForecastError::InvalidParameter {
                    name: "beta",
                    value: b,
                    why: "beta must be finite and >= 0",
                });
            }
        }
        if !is_positive(p.gamma) {
            return Err(ForecastError::InvalidParameter {
                name: "gamma",
                value: p.gamma,
                why: "gamma must be > 0",
            });
        }
        if !(p.i0.is_finite() && p.i0 > 0.0 && p.i0 <= self.population) {
            return Err(ForecastError::InvalidParameter {
                name: "i0",
                value: p.i0,
                why: "initial infectious must be in (0, N]",
            });
        }
        Ok(())
    }

    /// Integrates the model from day 0 to `days` and reports daily values; the solver restarts at each knot so the
    /// discontinuity in β never sits inside a step.
    pub fn simulate(&self, p: &EpiParams, days: usize, solver: &mut Rk5) -> Result<Trajectory> {
        self.check(p)?;
        let dim = self.kind.dim();
        let mut y = vec![0.0; dim];
        y[0] = self.population - p.i0;
        let i_idx = match self.kind {
            ModelKind::Sir => 1,
            ModelKind::Seir { .. } => 2,
        };
        y[i_idx] = p.i0;
        let mut traj = Trajectory {
            incidence: Vec::with_capacity(days),
            prevalence: Vec::with_capacity(days),
            susceptible: Vec::with_capacity(days),
        };
        let mut rhs = Rhs {
            kind: self.kind,
            beta: 0.0,
            gamma: p.gamma,
            inv_n: 1.0 / self.population,
        };
        let mut out = Vec::new();
        let mut t_eval = Vec::new();
        let mut start = 0usize;
        let mut last_c = 0.0;
        for (piece, &beta) in p.beta.iter().enumerate() {
            if start >= days {
                break;
            }
            let end = p.knots.get(piece).copied().unwrap_or(days).min(days);
            rhs.beta = beta;
            t_eval.clear();
            t_eval.extend((start + 1..=end).map(|d| d as f64));
            solver.solve(&rhs, start as f64, &y, &t_eval, &mut out)?;
            for row in out.chunks_exact(dim) {
                let c = row[dim - 1];
                traj.incidence.push((c - last_c).max(0.0));
                last_c = c;
                traj.prevalence.push(row[i_idx].max(0.0));
                traj.susceptible.push(row[0].max(0.0));
            }
            if let Some(last) = out.chunks_exact(dim).last() {
                y.copy_from_slice(last);
            }
            start = end;
        }
        Ok(traj)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sir_final_size_matches_the_final_size_equation() -> Result<()> {
        // For R0 = 2 the final attack rate z solves z = 1 − exp(−R0 z) (z ≈ 0.7968), for N → ∞ and a tiny seed.
        let m = Model::new(ModelKind::Sir, 1e7)?;
        let p = EpiParams {
            beta: vec![0.5],
            knots: vec![],
            gamma: 0.25,
            i0: 1.0,
        };
        let mut s = Rk5::new(1e-10, 1e-8)?;
        let tr = m.simulate(&p, 600, &mut s)?;
        let total: f64 = tr.incidence.iter().sum();
        assert!((total / 1e7 - 0.796812).abs() < 1e-4, "{}", total / 1e7);
        let s_end = tr.susceptible.last().copied().unwrap_or(0.0);
        assert!((s_end + total + 1.0 - 1e7).abs() < 1e-2 * 1e7 * 1e-6 + 1.0);
        Ok(())
    }

    #[test]
    fn seir_conserves_population_and_respects_knots() -> Result<()> {
        let m = Model::new(ModelKind::Seir { sigma: 0.2 }, 1e5)?;
        let p = EpiParams {
            beta: vec![0.6, 0.1],
            knots: vec![30],
            gamma: 0.2,
            i0: 10.0,
        };
        let mut s = Rk5::new(1e-9, 1e-9)?;
        let tr = m.simulate(&p, 80, &mut s)?;
        assert_eq!(tr.incidence.len(), 80);
        // R drops from 3 to 0.5 at day 30, so incidence must fall soon after and keep falling.
        assert!(tr.incidence[29] > tr.incidence[45]);
        assert!(tr.incidence[45] > tr.incidence[79]);
        let bad = EpiParams {
            beta: vec![0.6],
            knots: vec![30],
            ..p.clone()
        };
        assert!(m.simulate(&bad, 80, &mut s).is_err());
        assert!(Model::new(ModelKind::Seir { sigma: -1.0 }, 1e5).is_err());
        assert!(Model::new(ModelKind::Sir, 0.0).is_err());
        Ok(())
    }
}
