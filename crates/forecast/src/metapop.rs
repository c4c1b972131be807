//! Metapopulation SEIR: regions coupled through a sparse (or dense) mobility matrix, and regional importation risk.
//!
//! Force of infection in region i: λ_i = β_i Σ_j C_ij I_j / N_j with C = (1 − p)·Id + p·M, M the row-normalised
//! mobility matrix (row i: where region i's contacts come from) and p the fraction of contacts made away from home.

use crate::error::{ForecastError, Result};
use crate::ode::{Dopri5, OdeSystem, SolveStats};
use crate::special::is_positive;
use std::cell::RefCell;

/// A square sparse matrix in compressed sparse row form.
///
/// Hand-written: the model needs only construction from triplets and y = A·x, a dozen lines, where `sprs` would
/// add a dependency tree for no extra capability.
#[derive(Debug, Clone, PartialEq)]
pub struct Csr {
    n: usize,
    indptr: Vec<usize>,
    indices: Vec<usize>,
    values: Vec<f64>,
}

impl Csr {
    /// Builds an n × n matrix from (row, column, value) triplets; duplicates are summed.
    pub fn from_triplets(n: usize, triplets: &[(usize, usize, f64)]) -> Result<Self> {
        let mut rows: Vec<Vec<(usize, f64)>> = vec![Vec::new(); n];
        for &(i, j, v) in triplets {
            if i >= n || j >= n {
                return Err(ForecastError::InvalidParameter {
                    name: "matrix index",
                    value: i.max(j) as f64,
                    why: "a row or column index is outside the matrix",
                });
            }
            if !v.is_finite() {
                return Err(ForecastError::InvalidParameter {
                    name: "matrix value",
                    value: v,
                    why: "matrix entries must be finite",
                });
            }
            rows[i].push((j, v));
        }
        let mut m = Csr {
            n,
            indptr: Vec::with_capacity(n + 1),
            indices: Vec::with_capacity(triplets.len()),
            values: Vec::with_capacity(triplets.len()),
        };
        m.indptr.push(0);
        for mut row in rows {
            row.sort_by_key(|&(j, _)| j);
            for (j, v) in row {
                if m.indices.len() > *m.indptr.last().unwrap_or(&0) && m.indices.last() == Some(&j)
                {
                    if let Some(last) = m.values.last_mut() {
                        *last += v;
                    }
                } else {
                    m.indices.push(j);
                    m.values.push(v);
                }
            }
            m.indptr.push(m.indices.len());
        }
        Ok(m)
    }

    /// Dimension n.
    pub fn dim(&self) -> usize {
        self.n
    }

    /// Number of stored entries.
    pub fn nnz(&self) -> usize {
        self.values.len()
    }

    /// Row pointers, column indices and values (the CSR arrays).
    pub fn parts(&self) -> (&[usize], &[usize], &[f64]) {
        (&self.indptr, &self.indices, &self.values)
    }

    /// y = A·x.
    pub fn matvec(&self, x: &[f64], y: &mut [f64]) {
        for (i, yi) in y.iter_mut().enumerate().take(self.n) {
            let (a, b) = (self.indptr[i], self.indptr[i + 1]);
            *yi = self.indices[a..b]
                .iter()
                .zip(&self.values[a..b])
                .map(|(&j, &v)| v * x[j])
                .sum();
        }
    }

    /// The same pattern with each row scaled to sum to one (rows that sum to zero stay zero).
    pub fn row_normalised(&self) -> Csr {
        let mut m = self.clone();
        for i in 0..self.n {
            let (a, b) = (self.indptr[i], self.indptr[i + 1]);
            let s: f64 = m.values[a..b].iter().sum();
            if s != 0.0 {
                m.values[a..b].iter_mut().for_each(|v| *v /= s);
            }
        }
        m
    }
}

/// How regions are coupled.
#[derive(Debug, Clone, PartialEq)]
pub enum Coupling {
    /// Sparse coupling matrix C.
    Sparse(Csr),
    /// Dense coupling matrix C, row-major n × n.
    Dense(Vec<f64>),
}

impl Coupling {
    /// C = (1 − p)·Id + p·M from a mobility matrix M (rows are normalised here).
    pub fn from_mobility(mobility: &Csr, p: f64) -> Result<Self> {
        if !(0.0..=1.0).contains(&p) {
            return Err(ForecastError::InvalidParameter {
                name: "p",
                value: p,
                why: "the share of contacts away from home must be in [0, 1]",
            });
        }
        let m = mobility.row_normalised();
        let mut t = Vec::with_capacity(m.nnz() + m.n);
        for i in 0..m.n {
            t.push((i, i, 1.0 - p));
            let (a, b) = (m.indptr[i], m.indptr[i + 1]);
            for k in a..b {
                t.push((i, m.indices[k], p * m.values[k]));
            }
        }
        Ok(Coupling::Sparse(Csr::from_triplets(m.n, &t)?))
    }

    fn apply(&self, n: usize, x: &[f64], y: &mut [f64]) {
        match self {
            Coupling::Sparse(m) => m.matvec(x, y),
            Coupling::Dense(c) => {
                for (i, yi) in y.iter_mut().enumerate().take(n) {
                    *yi = dot(&c[i * n..(i + 1) * n], x);
                }
            }
        }
    }
}

/// Dot product with eight independent accumulators (over exact chunks) so the compiler can vectorise it (a single running sum would
/// force strictly sequential floating-point additions).
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (xa, xb) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += xa[l] * xb[l];
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// A metapopulation SEIR. State layout: S of all regions, then E, then I, then R (4n values).
#[derive(Debug)]
pub struct MetaSeir {
    population: Vec<f64>,
    inv_n: Vec<f64>,
    beta: Vec<f64>,
    sigma: f64,
    gamma: f64,
    coupling: Coupling,
    scratch: RefCell<(Vec<f64>, Vec<f64>)>,
}

impl MetaSeir {
    /// A model with per-region populations and transmission rates, common σ and γ, and a coupling matrix.
    pub fn new(
        population: Vec<f64>,
        beta: Vec<f64>,
        sigma: f64,
        gamma: f64,
        coupling: Coupling,
    ) -> Result<Self> {
        let n = population.len();
        let cdim = match &coupling {
            Coupling::Sparse(m) => m.dim(),
            Coupling::Dense(c) => (c.len() as f64).sqrt() as usize,
        };
        if n == 0
            || beta.len() != n
            || cdim != n
            || matches!(&coupling, Coupling::Dense(c) if c.len() != n * n)
        {
            return Err(ForecastError::InvalidParameter {
                name: "regions",
                value: n as f64,
                why:
                    "populations, betas and the coupling matrix must all have one entry per region",
            });
        }
        if let Some(&p) = population.iter().find(|&&p| !is_positive(p)) {
            return Err(ForecastError::InvalidParameter {
                name: "population",
                value: p,
                why: "every region's population must be > 0",
            });
        }
        if let Some(&b) = beta.iter().find(|&&b| !(b.is_finite() && b >= 0.0)) {
            return Err(ForecastError::InvalidParameter {
                name: "beta",
                value: b,
                why: "beta must be finite and >= 0",
            });
        }
        if !is_positive(sigma) || !is_positive(gamma) {
            return Err(ForecastError::InvalidParameter {
                name: "sigma/gamma",
                value: sigma.min(gamma),
                why: "sigma and gamma must be > 0",
            });
        }
        Ok(MetaSeir {
            inv_n: population.iter().map(|p| 1.0 / p).collect(),
            population,
            beta,
            sigma,
            gamma,
            coupling,
            scratch: RefCell::new((vec![0.0; n], vec![0.0; n])),
        })
    }

    /// Populations of the regions.
    pub fn population(&self) -> &[f64] {
        &self.population
    }

    /// Transmission rates of the regions.
    pub fn beta(&self) -> &[f64] {
        &self.beta
    }

    /// The coupling matrix.
    pub fn coupling(&self) -> &Coupling {
        &self.coupling
    }

    /// Sets every region's transmission rate to `beta` (for fitting, which evaluates many values).
    pub fn set_uniform_beta(&mut self, beta: f64) -> Result<()> {
        if !(beta.is_finite() && beta >= 0.0) {
            return Err(ForecastError::InvalidParameter {
                name: "beta",
                value: beta,
                why: "beta must be finite and >= 0",
            });
        }
        self.beta.iter_mut().for_each(|b| *b = beta);
        Ok(())
    }

    /// Number of regions.
    pub fn regions(&self) -> usize {
        self.population.len()
    }

    /// Initial state with `infectious[i]` infectious people in region i and everyone else susceptible.
    pub fn initial_state(&self, infectious: &[f64]) -> Result<Vec<f64>> {
        let n = self.regions();
        if infectious.len() != n {
            return Err(ForecastError::InvalidParameter {
                name: "infectious",
                value: infectious.len() as f64,
                why: "one initial count per region is needed",
            });
        }
        let mut y = vec![0.0; 4 * n];
        for i in 0..n {
            let inf = infectious[i];
            if !(inf.is_finite() && inf >= 0.0 && inf <= self.population[i]) {
                return Err(ForecastError::InvalidParameter {
                    name: "infectious",
                    value: inf,
                    why: "initial infectious must be in [0, N_i]",
                });
            }
            y[i] = self.population[i] - inf;
            y[2 * n + i] = inf;
        }
        Ok(y)
    }

    /// Integrates to `days` and returns the state at every whole day 0..=days (rows of 4n values).
    pub fn simulate(
        &self,
        y0: &[f64],
        days: usize,
        solver: &mut Dopri5,
    ) -> Result<(Vec<f64>, SolveStats)> {
        let t_eval: Vec<f64> = (0..=days).map(|d| d as f64).collect();
        let mut out = Vec::new();
        let stats = solver.solve(self, 0.0, y0, &t_eval, &mut out)?;
        Ok((out, stats))
    }
}

impl OdeSystem for MetaSeir {
    fn dim(&self) -> usize {
        4 * self.population.len()
    }

    fn rhs(&self, _t: f64, y: &[f64], d: &mut [f64]) {
        let n = self.population.len();
        let mut guard = self.scratch.borrow_mut();
        let (x, foi) = &mut *guard;
        let (s, rest) = y.split_at(n);
        let (e, rest) = rest.split_at(n);
        let (i, _) = rest.split_at(n);
        for ((xk, &ik), &inv) in x.iter_mut().zip(i).zip(&self.inv_n) {
            *xk = ik * inv;
        }
        let (ds, rest) = d.split_at_mut(n);
        let (de, rest) = rest.split_at_mut(n);
        let (di, dr) = rest.split_at_mut(n);
        let (sigma, gamma) = (self.sigma, self.gamma);
        let (beta, s, e, i) = (&self.beta[..n], &s[..n], &e[..n], &i[..n]);
        let (ds, de, di, dr) = (&mut ds[..n], &mut de[..n], &mut di[..n], &mut dr[..n]);
        match &self.coupling {
            // Sparse coupling: one fused pass per region (gather the force of infection, then the derivatives),
            // which keeps everything for a region in registers.
            Coupling::Sparse(m) => {
                let (indptr, indices, values) = (&m.indptr[..=n], &m.indices, &m.values);
                let x: &[f64] = x;
                for k in 0..n {
                    let (a, b) = (indptr[k], indptr[k + 1]);
                    let mut f = 0.0;
                    for (&j, &v) in indices[a..b].iter().zip(&values[a..b]) {
                        f += v * x[j];
                    }
                    let inf = beta[k] * s[k] * f;
                    let prog = sigma * e[k];
                    let rec = gamma * i[k];
                    ds[k] = -inf;
                    de[k] = inf - prog;
                    di[k] = prog - rec;
                    dr[k] = rec;
                }
            }
            Coupling::Dense(_) => {
                self.coupling.apply(n, x, foi);
                let foi = &foi[..n];
                for k in 0..n {
                    let inf = beta[k] * s[k] * foi[k];
                    let prog = sigma * e[k];
                    let rec = gamma * i[k];
                    ds[k] = -inf;
                    de[k] = inf - prog;
                    di[k] = prog - rec;
                    dr[k] = rec;
                }
            }
        }
    }
}

/// Expected importations of infection into each region and the probability of at least one.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportRisk {
    /// Expected number of infectious travellers arriving in region i over the period (Poisson mean λ_i).
    pub expected: Vec<f64>,
    /// P(at least one importation) = 1 − exp(−λ_i).
    pub prob_at_least_one: Vec<f64>,
}

/// Importation risk over `days` days at a fixed epidemic state: λ_i = days · Σ_{j≠i} m_ij · I_j / N_j, where
/// `flows` holds m_ij, the travellers per day from region j into region i (row = destination).
pub fn importation_risk(
    flows: &Csr,
    infectious: &[f64],
    population: &[f64],
    days: f64,
) -> Result<ImportRisk> {
    let n = flows.dim();
    if infectious.len() != n || population.len() != n {
        return Err(ForecastError::InvalidParameter {
            name: "regions",
            value: n as f64,
            why: "one infectious count and population per region is needed",
        });
    }
    if !(days.is_finite() && days >= 0.0) {
        return Err(ForecastError::InvalidParameter {
            name: "days",
            value: days,
            why: "the period must be >= 0 days",
        });
    }
    for (&i, &p) in infectious.iter().zip(population) {
        if !(is_positive(p) && i.is_finite() && i >= 0.0) {
            return Err(ForecastError::InvalidParameter {
                name: "population/infectious",
                value: p,
                why: "populations must be > 0 and infectious counts >= 0",
            });
        }
    }
    let (indptr, indices, values) = flows.parts();
    let mut expected = vec![0.0; n];
    for (dst, lam) in expected.iter_mut().enumerate() {
        let mut s = 0.0;
        for k in indptr[dst]..indptr[dst + 1] {
            let src = indices[k];
            if src != dst {
                s += values[k].max(0.0) * infectious[src] / population[src];
            }
        }
        *lam = days * s;
    }
    let prob_at_least_one = expected.iter().map(|&l| -(-l).exp_m1()).collect();
    Ok(ImportRisk {
        expected,
        prob_at_least_one,
    })
}

/// Importation risk accumulated along a simulated trajectory (`states`: rows of 4n values at whole days, as
/// returned by [`MetaSeir::simulate`]), summing daily expected imports over days first..=last.
pub fn importation_risk_along(
    flows: &Csr,
    model: &MetaSeir,
    states: &[f64],
    first: usize,
    last: usize,
) -> Result<ImportRisk> {
    let n = model.regions();
    let rows: Vec<&[f64]> = states.chunks_exact(4 * n).collect();
    if first > last || last >= rows.len() {
        return Err(ForecastError::InvalidParameter {
            name: "days",
            value: last as f64,
            why: "the day range is outside the simulated trajectory",
        });
    }
    let mut total = vec![0.0; n];
    for row in &rows[first..=last] {
        let r = importation_risk(flows, &row[2 * n..3 * n], &model.population, 1.0)?;
        total.iter_mut().zip(r.expected).for_each(|(t, v)| *t += v);
    }
    let prob_at_least_one = total.iter().map(|&l| -(-l).exp_m1()).collect();
    Ok(ImportRisk {
        expected: total,
        prob_at_least_one,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csr_matvec_and_normalisation() -> Result<()> {
        let m = Csr::from_triplets(3, &[(0, 1, 2.0), (0, 2, 2.0), (2, 0, 1.0), (0, 1, 1.0)])?;
        assert_eq!(m.nnz(), 3);
        let mut y = vec![0.0; 3];
        m.matvec(&[1.0, 2.0, 3.0], &mut y);
        assert_eq!(y, vec![12.0, 0.0, 1.0]);
        m.row_normalised().matvec(&[1.0, 2.0, 3.0], &mut y);
        assert!((y[0] - (3.0 * 2.0 + 2.0 * 3.0) / 5.0).abs() < 1e-12);
        assert!(Csr::from_triplets(2, &[(2, 0, 1.0)]).is_err());
        Ok(())
    }

    #[test]
    fn uncoupled_regions_match_the_single_region_model() -> Result<()> {
        use crate::model::{EpiParams, Model, ModelKind};
        let mob = Csr::from_triplets(2, &[(0, 1, 1.0), (1, 0, 1.0)])?;
        let meta = MetaSeir::new(
            vec![1e5, 2e5],
            vec![0.5, 0.4],
            0.25,
            0.2,
            Coupling::from_mobility(&mob, 0.0)?,
        )?;
        let y0 = meta.initial_state(&[10.0, 0.0])?;
        let mut s = Dopri5::new(1e-10, 1e-8)?;
        let (states, _) = meta.simulate(&y0, 100, &mut s)?;
        let single = Model::new(ModelKind::Seir { sigma: 0.25 }, 1e5)?;
        let tr = single.simulate(
            &EpiParams {
                beta: vec![0.5],
                knots: vec![],
                gamma: 0.2,
                i0: 10.0,
            },
            100,
            &mut s,
        )?;
        for day in [10, 50, 100] {
            let i_meta = states[day * 8 + 4];
            assert!((i_meta / tr.prevalence[day - 1] - 1.0).abs() < 1e-6);
            // Region 1 never gets infected without coupling.
            assert_eq!(states[day * 8 + 5], 0.0);
        }
        Ok(())
    }

    #[test]
    fn coupling_spreads_infection_and_conserves_people() -> Result<()> {
        let mob = Csr::from_triplets(3, &[(0, 1, 1.0), (1, 0, 1.0), (1, 2, 1.0), (2, 1, 1.0)])?;
        let meta = MetaSeir::new(
            vec![1e4; 3],
            vec![0.5; 3],
            0.3,
            0.2,
            Coupling::from_mobility(&mob, 0.1)?,
        )?;
        let y0 = meta.initial_state(&[5.0, 0.0, 0.0])?;
        let mut s = Dopri5::new(1e-8, 1e-8)?;
        let (states, _) = meta.simulate(&y0, 200, &mut s)?;
        let last = &states[200 * 12..];
        for r in 0..3 {
            let total: f64 = (0..4).map(|c| last[c * 3 + r]).sum();
            assert!((total - 1e4).abs() < 1e-4);
            // Every region, even the one two hops away, has had an epidemic.
            assert!(last[9 + r] > 5000.0, "region {r} recovered {}", last[9 + r]);
        }
        Ok(())
    }

    #[test]
    fn importation_risk_is_poisson() -> Result<()> {
        // 100 travellers a day from region 1 (1 % infectious) into region 0 over 2 days: λ = 2.
        let flows = Csr::from_triplets(2, &[(0, 1, 100.0), (0, 0, 5.0)])?;
        let r = importation_risk(&flows, &[0.0, 100.0], &[1e3, 1e4], 2.0)?;
        assert!((r.expected[0] - 2.0).abs() < 1e-12);
        assert!((r.prob_at_least_one[0] - (1.0 - (-2.0f64).exp())).abs() < 1e-12);
        assert_eq!(r.expected[1], 0.0);
        assert!(importation_risk(&flows, &[0.0], &[1e3, 1e4], 2.0).is_err());
        Ok(())
    }
}
