//! Metapopulation SEIR: regions coupled through a sparse (or dense) mobility matrix, and regional importation risk.
//!
//! Force of infection in region i: λ_i = β_i Σ_j C_ij I_j / N_j with C = (1 − p)·Id + p·M, M the row-normalised
//! mobility matrix (row i: where region i's contacts come from) and p the fraction of contacts made away from home.

use crate::error::{ForecastError, Result};
use crate::ode::{combine_into, stage_value, OdeSystem, Rk5, SolveStats};
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

    #[inline(always)]
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
#[inline(always)]
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

/// x_i = i_i·inv_n_i (I/N for the coupling).
#[inline(always)]
fn scaled(i: &[f64], inv_n: &[f64], x: &mut [f64]) {
    for ((xk, &ik), &inv) in x.iter_mut().zip(i).zip(inv_n) {
        *xk = ik * inv;
    }
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
    kernel: Kernel,
    scratch: RefCell<(Vec<f64>, Vec<f64>)>,
    /// Whether the right-hand side's loops run in their AVX2 build where the CPU has it ([`crate::simd`]).
    simd: bool,
}

/// The coupling matrix re-laid out for the right-hand side: the diagonal (every row has one, the share of contacts
/// made at home) as a vector, and the off-diagonal entries either padded to a fixed number per row (ELLPACK, when
/// the rows are about equally long: the gather loop then has a compile-time trip count and is unrolled) or as CSR.
#[derive(Debug, Clone)]
enum Kernel {
    /// Off-diagonal entries, `width` per row (short rows padded with weight 0 at the row's own column).
    Ell {
        diag: Vec<f64>,
        width: usize,
        cols: Cols,
        vals: Vec<f64>,
    },
    /// Off-diagonal entries in CSR.
    Csr {
        diag: Vec<f64>,
        indptr: Vec<usize>,
        cols: Vec<u32>,
        vals: Vec<f64>,
    },
    /// Row-major dense matrix (used as it is).
    Dense,
}

/// Column indices of the ELLPACK layout (its values are laid out the same way). With at most 2^16 regions they
/// are 16-bit and the gathered vector is a `[f64; 2^16]` array, so every index is in bounds by its type and the
/// gather has no bounds checks (without `unsafe`); otherwise `u32` into a slice, row by row.
///
/// The 16-bit indices come in the layout that suits the build the right-hand side runs in (`crate::simd`): row by
/// row, packed four to a `u64` (ceil(width/4) words per row: one load fetches four indices) for the portable
/// build, whose gather goes one row at a time; slot-major (entry l of every row, then entry l + 1: index
/// `l·n + row`) for the AVX2 build, whose gather goes four rows at a time, their sums in one register. Both add each
/// row's terms in the same order, so they give the same bits.
#[derive(Debug, Clone)]
enum Cols {
    Packed(Vec<u64>),
    SlotMajor(Vec<u16>),
    Long(Vec<u32>),
}

/// Length of the gathered vector for `u16` column indices.
const SHORT: usize = 1 << 16;

/// Widest padded row the ELLPACK layout is used for (each width has its own unrolled loop).
const MAX_ELL_WIDTH: usize = 8;

impl Kernel {
    /// The layout of `coupling` for the right-hand side; `slot_major`: the AVX2 build's ELLPACK layout (see
    /// [`Cols`]).
    fn new(coupling: &Coupling, slot_major: bool) -> Result<Self> {
        let Coupling::Sparse(m) = coupling else {
            return Ok(Kernel::Dense);
        };
        let n = m.n;
        if u32::try_from(n).is_err() {
            return Err(ForecastError::InvalidParameter {
                name: "regions",
                value: n as f64,
                why: "at most 2^32 - 1 regions",
            });
        }
        let mut diag = vec![0.0; n];
        let mut rows: Vec<Vec<(u32, f64)>> = Vec::with_capacity(n);
        for (i, d) in diag.iter_mut().enumerate() {
            let mut row = Vec::new();
            for k in m.indptr[i]..m.indptr[i + 1] {
                if m.indices[k] == i {
                    *d = m.values[k];
                } else {
                    row.push((m.indices[k] as u32, m.values[k]));
                }
            }
            rows.push(row);
        }
        let off: usize = rows.iter().map(Vec::len).sum();
        let width = rows.iter().map(Vec::len).max().unwrap_or(0);
        // Padding costs a multiply-add per padded slot: take the fixed width only when it adds at most a quarter.
        if (1..=MAX_ELL_WIDTH).contains(&width) && 4 * width * n <= 5 * off {
            let slot_major = slot_major && n <= SHORT;
            let mut cols = Vec::with_capacity(width * n);
            let mut vals = Vec::with_capacity(width * n);
            let mut entry = |i: usize, l: usize| {
                let (c, v) = rows[i].get(l).copied().unwrap_or((i as u32, 0.0));
                cols.push(c);
                vals.push(v);
            };
            if slot_major {
                (0..width).for_each(|l| (0..n).for_each(|i| entry(i, l)));
            } else {
                (0..n).for_each(|i| (0..width).for_each(|l| entry(i, l)));
            }
            let cols = if slot_major {
                Cols::SlotMajor(cols.iter().map(|&c| c as u16).collect())
            } else if n <= SHORT {
                let words = width.div_ceil(4);
                let mut packed = vec![0u64; words * n];
                for (i, row) in cols.chunks_exact(width).enumerate() {
                    for (l, &c) in row.iter().enumerate() {
                        packed[i * words + l / 4] |= u64::from(c) << (16 * (l % 4));
                    }
                }
                Cols::Packed(packed)
            } else {
                Cols::Long(cols)
            };
            return Ok(Kernel::Ell {
                diag,
                width,
                cols,
                vals,
            });
        }
        let mut indptr = Vec::with_capacity(n + 1);
        let mut cols = Vec::with_capacity(off);
        let mut vals = Vec::with_capacity(off);
        indptr.push(0);
        for row in &rows {
            for &(c, v) in row {
                cols.push(c);
                vals.push(v);
            }
            indptr.push(cols.len());
        }
        Ok(Kernel::Csr {
            diag,
            indptr,
            cols,
            vals,
        })
    }

    /// Length of the scratch vector x = I/N the kernel gathers from (≥ n).
    fn x_len(&self, n: usize) -> usize {
        match self {
            Kernel::Ell {
                cols: Cols::Packed(_) | Cols::SlotMajor(_),
                ..
            } => SHORT.max(n),
            _ => n,
        }
    }

    /// foi = C·x over the first n entries of `x` (`x` is `x_len(n)` long).
    #[inline(always)]
    fn apply(&self, coupling: &Coupling, x: &[f64], foi: &mut [f64]) {
        let n = foi.len();
        match self {
            Kernel::Ell {
                diag,
                width,
                cols: Cols::Packed(cols),
                vals,
            } => {
                let Ok(xa) = <&[f64; SHORT]>::try_from(&x[..SHORT]) else {
                    return;
                };
                let (diag, x) = (&diag[..n], &x[..n]);
                match width {
                    1 => ell16::<1, 1>(diag, cols, vals, x, xa, foi),
                    2 => ell16::<2, 1>(diag, cols, vals, x, xa, foi),
                    3 => ell16::<3, 1>(diag, cols, vals, x, xa, foi),
                    4 => ell16::<4, 1>(diag, cols, vals, x, xa, foi),
                    5 => ell16::<5, 2>(diag, cols, vals, x, xa, foi),
                    6 => ell16::<6, 2>(diag, cols, vals, x, xa, foi),
                    7 => ell16::<7, 2>(diag, cols, vals, x, xa, foi),
                    _ => ell16::<MAX_ELL_WIDTH, 2>(diag, cols, vals, x, xa, foi),
                }
            }
            Kernel::Ell {
                diag,
                width,
                cols: Cols::SlotMajor(cols),
                vals,
            } => {
                let Ok(xa) = <&[f64; SHORT]>::try_from(&x[..SHORT]) else {
                    return;
                };
                let (diag, x) = (&diag[..n], &x[..n]);
                match width {
                    1 => ell16_slots::<1>(diag, cols, vals, x, xa, foi),
                    2 => ell16_slots::<2>(diag, cols, vals, x, xa, foi),
                    3 => ell16_slots::<3>(diag, cols, vals, x, xa, foi),
                    4 => ell16_slots::<4>(diag, cols, vals, x, xa, foi),
                    5 => ell16_slots::<5>(diag, cols, vals, x, xa, foi),
                    6 => ell16_slots::<6>(diag, cols, vals, x, xa, foi),
                    7 => ell16_slots::<7>(diag, cols, vals, x, xa, foi),
                    _ => ell16_slots::<MAX_ELL_WIDTH>(diag, cols, vals, x, xa, foi),
                }
            }
            Kernel::Ell {
                diag,
                width,
                cols: Cols::Long(cols),
                vals,
            } => {
                let x = &x[..n];
                match width {
                    1 => ell32::<1>(diag, cols, vals, x, foi),
                    2 => ell32::<2>(diag, cols, vals, x, foi),
                    3 => ell32::<3>(diag, cols, vals, x, foi),
                    4 => ell32::<4>(diag, cols, vals, x, foi),
                    5 => ell32::<5>(diag, cols, vals, x, foi),
                    6 => ell32::<6>(diag, cols, vals, x, foi),
                    7 => ell32::<7>(diag, cols, vals, x, foi),
                    _ => ell32::<MAX_ELL_WIDTH>(diag, cols, vals, x, foi),
                }
            }
            Kernel::Csr {
                diag,
                indptr,
                cols,
                vals,
            } => {
                let x = &x[..n];
                for (i, ((f, &d), &xi)) in foi.iter_mut().zip(diag).zip(x).enumerate() {
                    let (a, b) = (indptr[i], indptr[i + 1]);
                    let mut acc = d * xi;
                    for (&j, &v) in cols[a..b].iter().zip(&vals[a..b]) {
                        acc += v * x[j as usize];
                    }
                    *f = acc;
                }
            }
            Kernel::Dense => coupling.apply(n, &x[..n], foi),
        }
    }
}

/// foi_i = d_i·x_i + Σ_l v_il·x_{c_il} over exactly W entries per row, added in that order, row by row (the inner
/// loop is unrolled); `xa` is `x` padded to 2^16 entries so that a 16-bit index needs no bounds check; WORDS =
/// ceil(W/4) packed index words a row.
#[inline(always)]
fn ell16<const W: usize, const WORDS: usize>(
    diag: &[f64],
    cols: &[u64],
    vals: &[f64],
    x: &[f64],
    xa: &[f64; SHORT],
    foi: &mut [f64],
) {
    let rows = cols.chunks_exact(WORDS).zip(vals.chunks_exact(W));
    for ((f, (c, v)), (&d, &xi)) in foi.iter_mut().zip(rows).zip(diag.iter().zip(x)) {
        let mut acc = d * xi;
        for l in 0..W {
            let j = (c[l / 4] >> (16 * (l % 4))) as u16;
            acc += v[l] * xa[usize::from(j)];
        }
        *f = acc;
    }
}

/// As [`ell16`] on the slot-major layout (entry l of row i at `l·n + i`): the loop over rows vectorises (several
/// rows' sums in one register, each still added in the same order, so the result is the same as row by row).
#[inline(always)]
fn ell16_slots<const W: usize>(
    diag: &[f64],
    cols: &[u16],
    vals: &[f64],
    x: &[f64],
    xa: &[f64; SHORT],
    foi: &mut [f64],
) {
    let n = foi.len();
    let (diag, x) = (&diag[..n], &x[..n]);
    let c: [&[u16]; W] = std::array::from_fn(|l| &cols[l * n..(l + 1) * n]);
    let v: [&[f64]; W] = std::array::from_fn(|l| &vals[l * n..(l + 1) * n]);
    for i in 0..n {
        let mut acc = diag[i] * x[i];
        for l in 0..W {
            acc += v[l][i] * xa[usize::from(c[l][i])];
        }
        foi[i] = acc;
    }
}

/// As [`ell16`] with `u32` indices (bounds-checked).
#[inline(always)]
fn ell32<const W: usize>(diag: &[f64], cols: &[u32], vals: &[f64], x: &[f64], foi: &mut [f64]) {
    let rows = cols.chunks_exact(W).zip(vals.chunks_exact(W));
    for ((f, (c, v)), (&d, &xi)) in foi.iter_mut().zip(rows).zip(diag.iter().zip(x)) {
        let mut acc = d * xi;
        for l in 0..W {
            acc += v[l] * x[c[l] as usize];
        }
        *f = acc;
    }
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
        let kernel = Kernel::new(&coupling, crate::simd::avx2_available())?;
        let x_len = kernel.x_len(n);
        Ok(MetaSeir {
            kernel,
            inv_n: population.iter().map(|p| 1.0 / p).collect(),
            population,
            beta,
            sigma,
            gamma,
            coupling,
            scratch: RefCell::new((vec![0.0; x_len], vec![0.0; n])),
            simd: true,
        })
    }

    /// Whether the right-hand side's loops run in their AVX2 build where the CPU has it (`true`, the default) or
    /// always in the portable one; the results are the same bit for bit (see [`crate::simd`]).
    pub fn with_simd(mut self, enabled: bool) -> Self {
        self.simd = enabled;
        // The coupling's layout for that build (the one of `new` when it cannot be rebuilt, which cannot happen:
        // `new` built it from the same matrix).
        if let Ok(kernel) = Kernel::new(&self.coupling, enabled && crate::simd::avx2_available()) {
            self.kernel = kernel;
        }
        self
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
        solver: &mut Rk5,
    ) -> Result<(Vec<f64>, SolveStats)> {
        let mut out = Vec::new();
        let stats = self.simulate_into(y0, days, solver, &mut out)?;
        Ok((out, stats))
    }

    /// As [`simulate`](Self::simulate), into `out` (resized to (days + 1) × 4n; a buffer of that size from an
    /// earlier call is reused without touching the allocator).
    pub fn simulate_into(
        &self,
        y0: &[f64],
        days: usize,
        solver: &mut Rk5,
        out: &mut Vec<f64>,
    ) -> Result<SolveStats> {
        let t_eval: Vec<f64> = (0..=days).map(|d| d as f64).collect();
        solver.solve(self, 0.0, y0, &t_eval, out)
    }
}

impl OdeSystem for MetaSeir {
    fn dim(&self) -> usize {
        4 * self.population.len()
    }

    /// R never feeds back: f reads S, E and I only.
    fn feedback_dim(&self) -> usize {
        3 * self.population.len()
    }

    fn rhs(&self, _t: f64, y: &[f64], d: &mut [f64]) {
        crate::simd::with_avx2(
            self.simd,
            #[inline(always)]
            || {
                let n = self.population.len();
                let mut guard = self.scratch.borrow_mut();
                let (x, foi) = &mut *guard;
                scaled(&y[2 * n..3 * n], &self.inv_n, &mut x[..n]);
                self.kernel.apply(&self.coupling, x, &mut foi[..n]);
                self.derivatives(foi, y, d);
            },
        );
    }

    /// The stage values formed while f is evaluated: a first pass forms the infectious stage values (kept in
    /// `stage`) and I/N for the coupling, a second one the susceptible and exposed stage values inside the
    /// derivative loop, so they are never stored and read back. The same operations as the default, so the same
    /// result bit for bit.
    fn rhs_stage(
        &self,
        t: f64,
        y: &[f64],
        h: f64,
        a: &[f64],
        ks: &[&[f64]],
        stage: &mut [f64],
        dydt: &mut [f64],
    ) {
        crate::simd::with_avx2(
            self.simd,
            #[inline(always)]
            || match a.len().min(ks.len()) {
                1 => self.fused_stage::<1>(y, h, a, ks, stage, dydt),
                2 => self.fused_stage::<2>(y, h, a, ks, stage, dydt),
                3 => self.fused_stage::<3>(y, h, a, ks, stage, dydt),
                4 => self.fused_stage::<4>(y, h, a, ks, stage, dydt),
                5 => self.fused_stage::<5>(y, h, a, ks, stage, dydt),
                _ => {
                    let m = self.feedback_dim().min(stage.len());
                    combine_into(&mut stage[..m], y, h, a, ks);
                    self.rhs(t, stage, dydt);
                }
            },
        );
    }
}

impl MetaSeir {
    /// dS = −β S λ, dE = β S λ − σE, dI = σE − γI, dR = γI with λ = `foi` (C·I/N) and S, E, I read from `y`.
    #[inline(always)]
    fn derivatives(&self, foi: &[f64], y: &[f64], d: &mut [f64]) {
        let n = self.population.len();
        let (s, rest) = y.split_at(n);
        let (e, rest) = rest.split_at(n);
        let (i, _) = rest.split_at(n);
        let (ds, rest) = d.split_at_mut(n);
        let (de, rest) = rest.split_at_mut(n);
        let (di, dr) = rest.split_at_mut(n);
        let (sigma, gamma) = (self.sigma, self.gamma);
        let (beta, foi, s, e, i) = (&self.beta[..n], &foi[..n], &s[..n], &e[..n], &i[..n]);
        let (ds, de, di, dr) = (&mut ds[..n], &mut de[..n], &mut di[..n], &mut dr[..n]);
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

    /// [`OdeSystem::rhs_stage`] with J stage terms.
    #[inline(always)]
    fn fused_stage<const J: usize>(
        &self,
        y: &[f64],
        h: f64,
        a: &[f64],
        ks: &[&[f64]],
        stage: &mut [f64],
        d: &mut [f64],
    ) {
        let n = self.population.len();
        let (Ok(a), Some(ks)) = (<&[f64; J]>::try_from(&a[..J]), ks.get(..J)) else {
            return;
        };
        let mut guard = self.scratch.borrow_mut();
        let (x, foi) = &mut *guard;
        let block =
            |b: usize| -> [&[f64]; J] { std::array::from_fn(|j| &ks[j][b * n..(b + 1) * n]) };
        // Infectious stage values, and x = I/N for the coupling.
        let si = &mut stage[2 * n..3 * n];
        infectious_stage((h, a), &y[2 * n..3 * n], block(2), &self.inv_n, si, x);
        self.kernel.apply(&self.coupling, x, &mut foi[..n]);
        let (ds, rest) = d.split_at_mut(n);
        let (de, rest) = rest.split_at_mut(n);
        let (di, dr) = rest.split_at_mut(n);
        stage_derivatives(
            (h, a, self.sigma, self.gamma),
            (&y[..n], &y[n..2 * n], &stage[2 * n..3 * n]),
            (&self.beta, foi),
            (block(0), block(1)),
            (ds, de),
            (di, dr),
        );
    }
}

// The loops of the fused stage evaluation, each a function of its own whose written slices are parameters: so the
// compiler knows they alias nothing else (also once inlined into the AVX2 build, see `crate::simd`) and the loops
// vectorise without run-time overlap checks.

/// si = y_I + h·Σ_j a_j·k_j,I (the infectious stage values) and x = si/N.
#[inline(always)]
fn infectious_stage<const J: usize>(
    (h, a): (f64, &[f64; J]),
    yi: &[f64],
    ki: [&[f64]; J],
    inv_n: &[f64],
    si: &mut [f64],
    x: &mut [f64],
) {
    let n = si.len();
    let (yi, inv_n, x) = (&yi[..n], &inv_n[..n], &mut x[..n]);
    let ki: [&[f64]; J] = std::array::from_fn(|j| &ki[j][..n]);
    for r in 0..n {
        let v = stage_value(yi[r], h, a, std::array::from_fn(|j| ki[j][r]));
        si[r] = v;
        x[r] = v * inv_n[r];
    }
}

/// The derivatives at a stage: S and E stage values formed from y and the stage derivatives `ks` (`ke`) on the
/// fly, the infectious ones `si` read, λ = `foi`.
#[inline(always)]
fn stage_derivatives<const J: usize>(
    (h, a, sigma, gamma): (f64, &[f64; J], f64, f64),
    (ys, ye, si): (&[f64], &[f64], &[f64]),
    (beta, foi): (&[f64], &[f64]),
    (ks, ke): ([&[f64]; J], [&[f64]; J]),
    (ds, de): (&mut [f64], &mut [f64]),
    (di, dr): (&mut [f64], &mut [f64]),
) {
    let n = ds.len();
    let (ys, ye, si, beta, foi) = (&ys[..n], &ye[..n], &si[..n], &beta[..n], &foi[..n]);
    let ks: [&[f64]; J] = std::array::from_fn(|j| &ks[j][..n]);
    let ke: [&[f64]; J] = std::array::from_fn(|j| &ke[j][..n]);
    let (de, di, dr) = (&mut de[..n], &mut di[..n], &mut dr[..n]);
    for r in 0..n {
        let s = stage_value(ys[r], h, a, std::array::from_fn(|j| ks[j][r]));
        let e = stage_value(ye[r], h, a, std::array::from_fn(|j| ke[j][r]));
        let inf = beta[r] * s * foi[r];
        let prog = sigma * e;
        let rec = gamma * si[r];
        ds[r] = -inf;
        de[r] = inf - prog;
        di[r] = prog - rec;
        dr[r] = rec;
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
    use crate::ode::{ErrorNorm, Method};

    #[test]
    fn fused_stage_evaluation_equals_stage_value_then_rhs() -> Result<()> {
        // The fused pass must give the default's result bit for bit (same operations, same order), for every
        // number of stage terms and each coupling layout (ELLPACK, dense).
        for (regions, dense) in [(200, false), (40, true)] {
            let (model, y0) = crate::bench::benchmark_model(regions, 5, dense, 7)?;
            let dim = y0.len();
            let ks: Vec<Vec<f64>> = (0..6)
                .map(|j| {
                    (0..dim)
                        .map(|i| 50.0 * (0.37 * i as f64 + f64::from(j)).sin())
                        .collect()
                })
                .collect();
            let a = [0.3, -0.7, 1.1, 0.05, -2.0, 0.9];
            for terms in 1..=6 {
                let kr: Vec<&[f64]> = ks[..terms].iter().map(Vec::as_slice).collect();
                let (mut stage, mut fused) = (vec![0.0; dim], vec![0.0; dim]);
                model.rhs_stage(0.0, &y0, 0.5, &a[..terms], &kr, &mut stage, &mut fused);
                let mut formed = vec![0.0; dim];
                combine_into(&mut formed[..3 * regions], &y0, 0.5, &a[..terms], &kr);
                let mut plain = vec![0.0; dim];
                model.rhs(0.0, &formed, &mut plain);
                assert_eq!(fused, plain, "{terms} terms, dense {dense}");
                assert_ne!(plain, vec![0.0; dim]);
            }
        }
        Ok(())
    }

    #[test]
    fn avx2_and_portable_builds_agree_bit_for_bit() -> Result<()> {
        // The solver and the right-hand side in their AVX2 build (where this CPU has it, see `crate::simd`) and in
        // the portable one: the same steps and the same trajectory to the last bit, for both pairs and both norms,
        // on sparse (ELLPACK, a row count that is not a multiple of four) and dense coupling.
        if !crate::simd::avx2_available() {
            eprintln!("no AVX2 on this CPU: both runs use the portable build");
        }
        for (regions, dense) in [(301, false), (60, true)] {
            let (model, y0) = crate::bench::benchmark_model(regions, 5, dense, 11)?;
            let portable = crate::bench::benchmark_model(regions, 5, dense, 11)?
                .0
                .with_simd(false);
            let t: Vec<f64> = (0..=120).map(f64::from).collect();
            for method in [Method::DormandPrince, Method::Tsitouras] {
                for norm in [ErrorNorm::Rms, ErrorNorm::Max] {
                    let solver = Rk5::new(1e-6, 1e-6)?
                        .with_method(method)
                        .with_error_norm(norm);
                    let (mut a, mut b) = (Vec::new(), Vec::new());
                    let sa = solver.clone().solve(&model, 0.0, &y0, &t, &mut a)?;
                    let sb = solver
                        .with_simd(false)
                        .solve(&portable, 0.0, &y0, &t, &mut b)?;
                    assert_eq!(sa, sb, "{method:?} {norm:?} dense {dense}");
                    assert!(a == b, "{method:?} {norm:?} dense {dense}");
                }
            }
        }
        Ok(())
    }

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
        let mut s = Rk5::new(1e-10, 1e-8)?;
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
        let mut s = Rk5::new(1e-8, 1e-8)?;
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

    /// f from the definition, λ_i = β_i S_i Σ_j C_ij I_j / N_j, with the coupling as triplets.
    fn reference_rhs(
        pop: &[f64],
        beta: &[f64],
        (sigma, gamma): (f64, f64),
        triplets: &[(usize, usize, f64)],
        y: &[f64],
    ) -> Vec<f64> {
        let n = pop.len();
        let mut lam = vec![0.0; n];
        for &(i, j, v) in triplets {
            lam[i] += v * y[2 * n + j] / pop[j];
        }
        let mut d = vec![0.0; 4 * n];
        for k in 0..n {
            let inf = beta[k] * y[k] * lam[k];
            d[k] = -inf;
            d[n + k] = inf - sigma * y[n + k];
            d[2 * n + k] = sigma * y[n + k] - gamma * y[2 * n + k];
            d[3 * n + k] = gamma * y[2 * n + k];
        }
        d
    }

    /// Every layout of the coupling (ELLPACK with 16- or 32-bit indices, CSR for uneven rows, dense) gives the
    /// right-hand side of the definition.
    #[test]
    fn coupling_layouts_agree_with_the_definition() -> Result<()> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        // (regions, links per row: fixed or 0 = uneven 0..=9)
        for (n, links) in [(50, 3), (50, 0), (70_000, 2), (40, 39)] {
            let mut t = vec![];
            for i in 0..n {
                t.push((i, i, rng.random_range(0.5..1.0)));
                let k = if links == 0 {
                    rng.random_range(0..=9)
                } else {
                    links
                };
                for _ in 0..k {
                    let j = rng.random_range(0..n);
                    t.push((i, j, rng.random_range(0.0..0.1)));
                }
            }
            let pop: Vec<f64> = (0..n).map(|_| rng.random_range(1e3..1e5)).collect();
            let beta: Vec<f64> = (0..n).map(|_| rng.random_range(0.2..0.6)).collect();
            let y: Vec<f64> = (0..4 * n).map(|_| rng.random_range(0.0..1e3)).collect();
            let want = reference_rhs(&pop, &beta, (0.2, 0.1), &t, &y);
            let sparse = Coupling::Sparse(Csr::from_triplets(n, &t)?);
            let mut couplings = vec![sparse];
            if n <= 100 {
                let mut c = vec![0.0; n * n];
                for &(i, j, v) in &t {
                    c[i * n + j] += v;
                }
                couplings.push(Coupling::Dense(c));
            }
            for coupling in couplings {
                // Both builds' layouts (slot-major ELLPACK for AVX2 where the CPU has it, packed row by row for
                // the portable build).
                for simd in [true, false] {
                    let model =
                        MetaSeir::new(pop.clone(), beta.clone(), 0.2, 0.1, coupling.clone())?
                            .with_simd(simd);
                    let mut got = vec![0.0; 4 * n];
                    model.rhs(0.0, &y, &mut got);
                    for (k, (a, b)) in got.iter().zip(&want).enumerate() {
                        assert!(
                            (a - b).abs() <= 1e-12 * b.abs().max(1e-3),
                            "n {n}, links {links}, simd {simd}, component {k}: {a} vs {b}"
                        );
                    }
                }
            }
        }
        Ok(())
    }
}
