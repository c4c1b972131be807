//! Adaptive explicit Runge–Kutta 5(4) pairs with dense output: Dormand–Prince (SciPy's RK45, step for step) and
//! Tsitouras (2011).
//!
//! Written by hand rather than taken from `ode_solvers` or `diffsol` because the hot paths here (the 4,000-state
//! metapopulation benchmark and 1,000-member ensembles) need an allocation-free stepper over plain slices with the
//! right-hand side writing in place, and because the benchmark must take exactly the same steps as SciPy's
//! `solve_ivp(method="RK45")` to be a like-for-like comparison. The step-size controller, initial-step heuristic
//! (Hairer, Nørsett & Wanner, *Solving ODEs I*, II.4), RMS error norm and the quartic dense output therefore follow
//! the published scheme with SciPy's constants (safety 0.9, factors 0.2–10, error exponent −1/5).
//!
//! The Tsitouras 5(4) pair (Ch. Tsitouras, *Runge–Kutta pairs of order 5(4) satisfying only the first column
//! simplifying assumption*, Comput. Math. Appl. 62 (2011) 770–775; coefficients and its quartic continuous
//! extension as tabulated there) costs the same per step (seven stages, first same as last: six right-hand sides),
//! is run with the same controller, and has smaller error constants: at the same tolerances it takes fewer steps
//! and is more accurate on the benchmark model (measured against a tight reference in `bench`).

use crate::error::{ForecastError, Result};

/// A system of first-order ODEs y' = f(t, y).
pub trait OdeSystem {
    /// Number of state variables.
    fn dim(&self) -> usize;
    /// Writes f(t, y) into `dydt` (same length as `y`).
    fn rhs(&self, t: f64, y: &[f64], dydt: &mut [f64]);
    /// How many leading components f reads: `rhs` must depend on `y[..feedback_dim()]` only. The rest are
    /// quadratures (e.g. the recovered or a cumulative-incidence compartment), integrated with the same steps,
    /// error control and output, but whose intermediate stage values are never formed since nothing reads them.
    /// The default, `dim()`, is always correct.
    fn feedback_dim(&self) -> usize {
        self.dim()
    }
}

const C2: f64 = 1.0 / 5.0;
const C3: f64 = 3.0 / 10.0;
const C4: f64 = 4.0 / 5.0;
const C5: f64 = 8.0 / 9.0;
const A21: f64 = 1.0 / 5.0;
const A31: f64 = 3.0 / 40.0;
const A32: f64 = 9.0 / 40.0;
const A41: f64 = 44.0 / 45.0;
const A42: f64 = -56.0 / 15.0;
const A43: f64 = 32.0 / 9.0;
const A51: f64 = 19372.0 / 6561.0;
const A52: f64 = -25360.0 / 2187.0;
const A53: f64 = 64448.0 / 6561.0;
const A54: f64 = -212.0 / 729.0;
const A61: f64 = 9017.0 / 3168.0;
const A62: f64 = -355.0 / 33.0;
const A63: f64 = 46732.0 / 5247.0;
const A64: f64 = 49.0 / 176.0;
const A65: f64 = -5103.0 / 18656.0;
const B1: f64 = 35.0 / 384.0;
const B3: f64 = 500.0 / 1113.0;
const B4: f64 = 125.0 / 192.0;
const B5: f64 = -2187.0 / 6784.0;
const B6: f64 = 11.0 / 84.0;
// Difference between the 5th- and embedded 4th-order weights.
const E1: f64 = -71.0 / 57600.0;
const E3: f64 = 71.0 / 16695.0;
const E4: f64 = -71.0 / 1920.0;
const E5: f64 = 17253.0 / 339200.0;
const E6: f64 = -22.0 / 525.0;
const E7: f64 = 1.0 / 40.0;
// Quartic continuous extension (Shampine 1986), one row per stage, coefficients of x, x², x³, x⁴.
const P: [[f64; 4]; 7] = [
    [
        1.0,
        -8048581381.0 / 2820520608.0,
        8663915743.0 / 2820520608.0,
        -12715105075.0 / 11282082432.0,
    ],
    [0.0, 0.0, 0.0, 0.0],
    [
        0.0,
        131558114200.0 / 32700410799.0,
        -68118460800.0 / 10900136933.0,
        87487479700.0 / 32700410799.0,
    ],
    [
        0.0,
        -1754552775.0 / 470086768.0,
        14199869525.0 / 1410260304.0,
        -10690763975.0 / 1880347072.0,
    ],
    [
        0.0,
        127303824393.0 / 49829197408.0,
        -318862633887.0 / 49829197408.0,
        701980252875.0 / 199316789632.0,
    ],
    [
        0.0,
        -282668133.0 / 205662961.0,
        2019193451.0 / 616988883.0,
        -1453857185.0 / 822651844.0,
    ],
    [
        0.0,
        40617522.0 / 29380423.0,
        -110615467.0 / 29380423.0,
        69997945.0 / 29380423.0,
    ],
];
const SAFETY: f64 = 0.9;
const MIN_FACTOR: f64 = 0.2;
const MAX_FACTOR: f64 = 10.0;

// Tsitouras 5(4) (2011). TA_ij are the stage coefficients, TB_j the fifth-order weights (TB7 = 0, the seventh
// stage is f(t + h, y_new)), TE_j the difference between the fifth- and fourth-order weights.
const TC2: f64 = 0.161;
const TC3: f64 = 0.327;
const TC4: f64 = 0.9;
const TC5: f64 = 0.980_025_540_904_509_7;
const TA21: f64 = 0.161;
const TA31: f64 = -0.008_480_655_492_356_989;
const TA32: f64 = 0.335_480_655_492_357;
const TA41: f64 = 2.897_153_057_105_493_5;
const TA42: f64 = -6.359_448_489_975_075;
const TA43: f64 = 4.362_295_432_869_581_5;
const TA51: f64 = 5.325_864_828_439_257;
const TA52: f64 = -11.748_883_564_062_828;
const TA53: f64 = 7.495_539_342_889_836_5;
const TA54: f64 = -0.092_495_066_361_755_25;
const TA61: f64 = 5.861_455_442_946_42;
const TA62: f64 = -12.920_969_317_847_11;
const TA63: f64 = 8.159_367_898_576_159;
const TA64: f64 = -0.071_584_973_281_401;
const TA65: f64 = -0.028_269_050_394_068_383;
const TB1: f64 = 0.096_460_766_818_065_23;
const TB2: f64 = 0.01;
const TB3: f64 = 0.479_889_650_414_499_6;
const TB4: f64 = 1.379_008_574_103_742;
const TB5: f64 = -3.290_069_515_436_081;
const TB6: f64 = 2.324_710_524_099_774;
const TE1: f64 = -0.001_780_011_052_225_777_1;
const TE2: f64 = -0.000_816_434_459_656_746_9;
const TE3: f64 = 0.007_880_878_010_261_995;
const TE4: f64 = -0.144_711_007_173_262_9;
const TE5: f64 = 0.582_357_165_452_555_2;
const TE6: f64 = -0.458_082_105_929_186_97;
const TE7: f64 = 1.0 / 66.0;
// Its quartic continuous extension, one row per stage, coefficients of x, x², x³, x⁴.
const TP: [[f64; 4]; 7] = [
    [
        1.0,
        -2.763_706_197_274_826,
        2.913_255_461_821_912_6,
        -1.053_088_497_729_021_6,
    ],
    [0.0, 0.1317, -0.2234, 0.1017],
    [
        0.0,
        3.930_296_236_894_751_6,
        -5.941_033_872_131_505,
        2.490_627_285_651_253,
    ],
    [
        0.0,
        -12.411_077_166_933_676,
        30.338_188_630_282_32,
        -16.548_102_889_244_902,
    ],
    [
        0.0,
        37.509_313_416_511_04,
        -88.178_904_894_766_4,
        47.379_521_962_819_28,
    ],
    [
        0.0,
        -27.896_526_289_197_286,
        65.091_894_674_793_66,
        -34.870_657_861_496_61,
    ],
    [0.0, 1.5, -4.0, 2.5],
];

/// Which embedded 5(4) pair a [`Rk5`] solver steps with. Both have seven stages with the last equal to the first
/// of the next step (six right-hand sides per step), a fourth-order error estimate and a quartic dense output,
/// and both run under the same controller, initial step and error norm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Method {
    /// Dormand–Prince 5(4) with Shampine's dense output: SciPy's `solve_ivp(method="RK45")` step for step.
    #[default]
    DormandPrince,
    /// Tsitouras 5(4) (2011) with its own dense output: smaller error constants, so fewer steps for a tolerance.
    Tsitouras,
}

/// out = y + h·(Σ c_j k_j) over slices re-cut to one length, so the loop has no bounds checks and vectorises.
macro_rules! combine {
    ($out:expr, $y:expr, $h:expr; $c0:expr => $k0:ident $(, $c:expr => $k:ident)*) => {{
        let n = $out.len();
        let out: &mut [f64] = &mut $out[..n];
        let y: &[f64] = &$y[..n];
        let $k0: &[f64] = &$k0[..n];
        $( let $k: &[f64] = &$k[..n]; )*
        for i in 0..n {
            out[i] = y[i] + $h * ($c0 * $k0[i] $(+ $c * $k[i])*);
        }
    }};
}

/// Elements per block of the error norm (eight independent partial sums, so the loop vectorises) and of the
/// dense output (a block of the seven input vectors stays in L1 while every output row of the step is written).
const LANES: usize = 8;
const BLOCK: usize = 512;

/// The error sum of a step attempt and, at the same time, its dense output, for a pair whose error weights and
/// continuous-extension rows are `e` and `p` on the stage derivatives `ks` (only the stages with a nonzero weight
/// are passed: Dormand–Prince gives k2 none, so it is not read).
///
/// Returns Σ_i (err_i / (atol + max(|y_i|, |y_new_i|)·rtol))² with err = h·Σ_j e_j k_j, and whether y_new is
/// finite. Eight partial sums instead of one running sum: a single sum is a chain of dependent additions (and
/// SciPy's BLAS-based norm does not add in index order either).
///
/// It also writes the state at each time of `times` (those of the output grid in (t, t_new]) into consecutive rows
/// of `dst`: y_new itself at t_new, the quartic continuous extension y + h·Σ_j q_j(x) k_j elsewhere
/// (q_j(x) = Σ_m p_j[m]·x^(m+1), x = (time − t)/h). Both read the same vectors, so they share one pass, block by
/// block (a block of every input stays in L1 while all the rows are written). The rows are written before the step
/// is known to be accepted; after a rejection they are written again by the step that finally covers them.
#[allow(clippy::too_many_arguments)]
fn error_and_output<const K: usize>(
    (h, rtol, atol): (f64, f64, f64),
    (t, t_new): (f64, f64),
    y: &[f64],
    y_new: &[f64],
    ks: [&[f64]; K],
    (e, p): (&[f64; K], &[[f64; 4]; K]),
    times: &[f64],
    dst: &mut [f64],
) -> (f64, bool) {
    let n = y.len();
    let mut acc = [0.0; LANES];
    let mut fin = [0.0; LANES];
    let mut start = 0;
    while start < n {
        let end = (start + BLOCK).min(n);
        let len = end - start;
        let (yb, ynb) = (&y[start..end], &y_new[start..end]);
        let kb: [&[f64]; K] = std::array::from_fn(|j| &ks[j][start..end]);
        let full = len - len % LANES;
        let mut b = 0;
        while b < full {
            let (y8, yn8) = (&yb[b..b + LANES], &ynb[b..b + LANES]);
            let k8: [&[f64]; K] = std::array::from_fn(|j| &kb[j][b..b + LANES]);
            for l in 0..LANES {
                let mut s = e[0] * k8[0][l];
                for j in 1..K {
                    s += e[j] * k8[j][l];
                }
                let r = (h * s) / (atol + y8[l].abs().max(yn8[l].abs()) * rtol);
                acc[l] += r * r;
                // y_new·0 is NaN exactly when y_new is ±inf or NaN.
                fin[l] += yn8[l] * 0.0;
            }
            b += LANES;
        }
        for (l, i) in (full..len).enumerate() {
            let mut s = e[0] * kb[0][i];
            for j in 1..K {
                s += e[j] * kb[j][i];
            }
            let r = (h * s) / (atol + yb[i].abs().max(ynb[i].abs()) * rtol);
            acc[l] += r * r;
            fin[l] += ynb[i] * 0.0;
        }
        for (row, &time) in dst.chunks_exact_mut(n).zip(times) {
            let out = &mut row[start..end];
            if time == t_new {
                out.copy_from_slice(ynb);
            } else {
                let x = (time - t) / h;
                let (x1, x2, x3, x4) = (x, x * x, x * x * x, x * x * x * x);
                let q: [f64; K] =
                    std::array::from_fn(|j| p[j][0] * x1 + p[j][1] * x2 + p[j][2] * x3 + p[j][3] * x4);
                for i in 0..len {
                    let mut s = q[0] * kb[0][i];
                    for j in 1..K {
                        s += q[j] * kb[j][i];
                    }
                    out[i] = yb[i] + h * s;
                }
            }
        }
        start = end;
    }
    let total: f64 = acc.iter().sum();
    let zero: f64 = fin.iter().sum();
    (total, zero == 0.0)
}

/// Dormand–Prince error weights and dense-output rows of k1, k3..k7 (k2 has none).
const DP_E: [f64; 6] = [E1, E3, E4, E5, E6, E7];
const DP_P: [[f64; 4]; 6] = [P[0], P[2], P[3], P[4], P[5], P[6]];
/// Tsitouras error weights of k1..k7.
const TS_E: [f64; 7] = [TE1, TE2, TE3, TE4, TE5, TE6, TE7];

/// Work counters of one solve.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SolveStats {
    /// Accepted steps.
    pub steps: usize,
    /// Rejected step attempts.
    pub rejected: usize,
    /// Right-hand-side evaluations.
    pub rhs_evals: usize,
}

/// A reusable adaptive Runge–Kutta 5(4) integrator (Dormand–Prince unless [`with_method`](Self::with_method) says
/// otherwise); its work buffers are kept between solves.
#[derive(Debug, Clone)]
pub struct Rk5 {
    method: Method,
    rtol: f64,
    atol: f64,
    max_steps: usize,
    k: [Vec<f64>; 7],
    y: Vec<f64>,
    y_new: Vec<f64>,
    tmp: Vec<f64>,
}

impl Rk5 {
    /// A Dormand–Prince solver (SciPy's RK45) with relative tolerance `rtol` and absolute tolerance `atol` (both
    /// > 0).
    pub fn new(rtol: f64, atol: f64) -> Result<Self> {
        if !crate::special::is_positive(rtol) {
            return Err(ForecastError::InvalidParameter {
                name: "rtol",
                value: rtol,
                why: "the relative tolerance must be > 0",
            });
        }
        if !crate::special::is_positive(atol) {
            return Err(ForecastError::InvalidParameter {
                name: "atol",
                value: atol,
                why: "the absolute tolerance must be > 0",
            });
        }
        Ok(Rk5 {
            method: Method::DormandPrince,
            rtol,
            atol,
            max_steps: 1_000_000,
            k: Default::default(),
            y: Vec::new(),
            y_new: Vec::new(),
            tmp: Vec::new(),
        })
    }

    /// Steps with `method` instead.
    pub fn with_method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }

    /// The pair this solver steps with.
    pub fn method(&self) -> Method {
        self.method
    }

    /// Caps the number of attempted steps of one solve (default one million).
    pub fn with_max_steps(mut self, max_steps: usize) -> Self {
        self.max_steps = max_steps;
        self
    }

    fn rms(x: impl Iterator<Item = f64>, n: usize) -> f64 {
        (x.map(|v| v * v).sum::<f64>() / n as f64).sqrt()
    }

    /// Integrates from `t0`, `y0` and writes the state at every time of `t_eval` (ascending, all ≥ `t0`) into
    /// `out`, row after row (`out` is resized to `t_eval.len() × dim` values and every value is overwritten; pass
    /// the same vector again to reuse its memory; after an error its contents are unspecified). Output between
    /// steps comes from the dense output, as SciPy does, so the step sequence does not depend on the output times.
    pub fn solve<S: OdeSystem + ?Sized>(
        &mut self,
        sys: &S,
        t0: f64,
        y0: &[f64],
        t_eval: &[f64],
        out: &mut Vec<f64>,
    ) -> Result<SolveStats> {
        let n = sys.dim();
        let m = sys.feedback_dim().min(n);
        if y0.len() != n {
            return Err(ForecastError::InvalidParameter {
                name: "y0",
                value: y0.len() as f64,
                why: "the initial state has the wrong length",
            });
        }
        let ascending = t_eval.windows(2).all(|w| w[1] >= w[0]);
        if !ascending || t_eval.first().is_some_and(|&t| t.is_nan() || t < t0) {
            return Err(ForecastError::InvalidParameter {
                name: "t_eval",
                value: t0,
                why: "output times must be ascending and not before t0",
            });
        }
        // Every row is written below, so a buffer of the right size from an earlier solve is reused as it is,
        // and a new one comes zeroed from the allocator (no separate pass of zeros over it).
        let total = t_eval.len() * n;
        if out.capacity() < total {
            *out = vec![0.0; total];
        } else {
            out.truncate(total);
            out.resize(total, 0.0);
        }
        let mut stats = SolveStats::default();
        let Some(&t_end) = t_eval.last() else {
            return Ok(stats);
        };
        for v in self
            .k
            .iter_mut()
            .chain([&mut self.y, &mut self.y_new, &mut self.tmp])
        {
            v.clear();
            v.resize(n, 0.0);
        }
        self.y.copy_from_slice(y0);
        let (rtol, atol) = (self.rtol, self.atol);
        let mut next_out = 0;
        while next_out < t_eval.len() && t_eval[next_out] == t0 {
            out[next_out * n..(next_out + 1) * n].copy_from_slice(y0);
            next_out += 1;
        }
        if t_end == t0 {
            return Ok(stats);
        }
        let [k1, k2, k3, k4, k5, k6, k7] = &mut self.k;
        let (y, y_new, tmp) = (&mut self.y, &mut self.y_new, &mut self.tmp);

        sys.rhs(t0, y, k1);
        stats.rhs_evals += 1;
        // Initial step (Hairer–Nørsett–Wanner II.4).
        let mut h_abs = {
            let interval = t_end - t0;
            let d0 = Self::rms(y.iter().map(|&v| v / (atol + v.abs() * rtol)), n);
            let d1 = Self::rms(
                y.iter()
                    .zip(k1.iter())
                    .map(|(&v, &f)| f / (atol + v.abs() * rtol)),
                n,
            );
            let h0 = if d0 < 1e-5 || d1 < 1e-5 {
                1e-6
            } else {
                0.01 * d0 / d1
            };
            let h0 = h0.min(interval);
            for i in 0..n {
                tmp[i] = y[i] + h0 * k1[i];
            }
            sys.rhs(t0 + h0, tmp, k2);
            stats.rhs_evals += 1;
            let d2 = Self::rms(
                (0..n).map(|i| (k2[i] - k1[i]) / (atol + y[i].abs() * rtol)),
                n,
            ) / h0;
            let h1 = if d1 <= 1e-15 && d2 <= 1e-15 {
                (h0 * 1e-3).max(1e-6)
            } else {
                (0.01 / d1.max(d2)).powf(1.0 / 5.0)
            };
            (100.0 * h0).min(h1).min(interval)
        };
        let mut t = t0;
        let mut attempts = 0usize;
        while t < t_end {
            let min_step = 10.0 * (next_after(t) - t).abs();
            if h_abs < min_step {
                h_abs = min_step;
            }
            let mut rejected = false;
            let (t_new, finite, last) = loop {
                attempts += 1;
                if attempts > self.max_steps {
                    return Err(ForecastError::Solver {
                        t,
                        why: "too many steps (the problem may be stiff or the tolerance too tight)",
                    });
                }
                if h_abs < min_step {
                    return Err(ForecastError::Solver {
                        t,
                        why: "step size became too small",
                    });
                }
                let mut t_new = t + h_abs;
                if t_new > t_end {
                    t_new = t_end;
                }
                let h = t_new - t;
                // Stage values only for the components the right-hand side reads.
                match self.method {
                    Method::DormandPrince => {
                        combine!(tmp[..m], y, h; A21 => k1);
                        sys.rhs(t + C2 * h, tmp, k2);
                        combine!(tmp[..m], y, h; A31 => k1, A32 => k2);
                        sys.rhs(t + C3 * h, tmp, k3);
                        combine!(tmp[..m], y, h; A41 => k1, A42 => k2, A43 => k3);
                        sys.rhs(t + C4 * h, tmp, k4);
                        combine!(tmp[..m], y, h; A51 => k1, A52 => k2, A53 => k3, A54 => k4);
                        sys.rhs(t + C5 * h, tmp, k5);
                        combine!(tmp[..m], y, h; A61 => k1, A62 => k2, A63 => k3, A64 => k4, A65 => k5);
                        sys.rhs(t + h, tmp, k6);
                        combine!(y_new, y, h; B1 => k1, B3 => k3, B4 => k4, B5 => k5, B6 => k6);
                    }
                    Method::Tsitouras => {
                        combine!(tmp[..m], y, h; TA21 => k1);
                        sys.rhs(t + TC2 * h, tmp, k2);
                        combine!(tmp[..m], y, h; TA31 => k1, TA32 => k2);
                        sys.rhs(t + TC3 * h, tmp, k3);
                        combine!(tmp[..m], y, h; TA41 => k1, TA42 => k2, TA43 => k3);
                        sys.rhs(t + TC4 * h, tmp, k4);
                        combine!(tmp[..m], y, h; TA51 => k1, TA52 => k2, TA53 => k3, TA54 => k4);
                        sys.rhs(t + TC5 * h, tmp, k5);
                        combine!(tmp[..m], y, h; TA61 => k1, TA62 => k2, TA63 => k3, TA64 => k4, TA65 => k5);
                        sys.rhs(t + h, tmp, k6);
                        combine!(y_new, y, h; TB1 => k1, TB2 => k2, TB3 => k3, TB4 => k4, TB5 => k5, TB6 => k6);
                    }
                }
                sys.rhs(t + h, y_new, k7);
                stats.rhs_evals += 6;
                // The output rows in (t, t_new], written with the error sum (kept only if the step is accepted).
                let mut last = next_out;
                while last < t_eval.len() && t_eval[last] <= t_new {
                    last += 1;
                }
                let rows = &t_eval[next_out..last];
                let dst = &mut out[next_out * n..last * n];
                let (acc, finite) = match self.method {
                    Method::DormandPrince => error_and_output(
                        (h, rtol, atol),
                        (t, t_new),
                        y,
                        y_new,
                        [k1, k3, k4, k5, k6, k7],
                        (&DP_E, &DP_P),
                        rows,
                        dst,
                    ),
                    Method::Tsitouras => error_and_output(
                        (h, rtol, atol),
                        (t, t_new),
                        y,
                        y_new,
                        [k1, k2, k3, k4, k5, k6, k7],
                        (&TS_E, &TP),
                        rows,
                        dst,
                    ),
                };
                let err = (acc / n as f64).sqrt();
                if err < 1.0 {
                    let mut factor = if err == 0.0 {
                        MAX_FACTOR
                    } else {
                        MAX_FACTOR.min(SAFETY * err.powf(-0.2))
                    };
                    if rejected {
                        factor = factor.min(1.0);
                    }
                    h_abs *= factor;
                    break (t_new, finite, last);
                }
                // A NaN error (a right-hand side that blew up) also lands here and shrinks the step.
                let f = SAFETY * err.powf(-0.2);
                h_abs *= if f > MIN_FACTOR { f } else { MIN_FACTOR };
                rejected = true;
                stats.rejected += 1;
            };
            next_out = last;
            std::mem::swap(y, y_new);
            std::mem::swap(k1, k7);
            t = t_new;
            stats.steps += 1;
            if !finite {
                return Err(ForecastError::Solver {
                    t,
                    why: "the solution is no longer finite",
                });
            }
        }
        Ok(stats)
    }
}

/// The next representable f64 above `t` (for the minimum step, as 10 ulps).
fn next_after(t: f64) -> f64 {
    if t.is_nan() || t == f64::INFINITY {
        return t;
    }
    if t == 0.0 {
        return f64::from_bits(1);
    }
    let bits = t.to_bits();
    if t > 0.0 {
        f64::from_bits(bits + 1)
    } else {
        f64::from_bits(bits - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Decay;
    impl OdeSystem for Decay {
        fn dim(&self) -> usize {
            2
        }
        fn rhs(&self, _t: f64, y: &[f64], d: &mut [f64]) {
            d[0] = -0.5 * y[0];
            d[1] = y[0] - 0.1 * y[1];
        }
    }

    #[test]
    fn matches_analytic_solution() -> Result<()> {
        let mut s = Rk5::new(1e-10, 1e-12)?;
        let ts: Vec<f64> = (0..=40).map(|i| i as f64 * 0.5).collect();
        let mut out = Vec::new();
        let st = s.solve(&Decay, 0.0, &[1.0, 0.0], &ts, &mut out)?;
        assert!(st.steps > 5);
        for (i, &t) in ts.iter().enumerate() {
            let a = (-0.5 * t).exp();
            let b = ((-0.1 * t).exp() - (-0.5 * t).exp()) / 0.4;
            assert!((out[2 * i] - a).abs() < 1e-9, "t={t}");
            assert!((out[2 * i + 1] - b).abs() < 1e-9, "t={t}");
        }
        Ok(())
    }

    #[test]
    fn dense_output_is_accurate_between_steps() -> Result<()> {
        // Loose tolerance gives long steps; interpolated points must still be close to the truth.
        let mut s = Rk5::new(1e-6, 1e-9)?;
        let ts: Vec<f64> = (0..=200).map(|i| i as f64 * 0.1).collect();
        let mut out = Vec::new();
        let st = s.solve(&Decay, 0.0, &[1.0, 0.0], &ts, &mut out)?;
        assert!(st.steps < 100);
        for (i, &t) in ts.iter().enumerate() {
            assert!((out[2 * i] - (-0.5 * t).exp()).abs() < 1e-5);
        }
        Ok(())
    }

    #[test]
    fn rejects_bad_arguments() {
        assert!(Rk5::new(0.0, 1e-6).is_err());
        assert!(Rk5::new(1e-6, f64::NAN).is_err());
        let mut s = Rk5::new(1e-6, 1e-6).ok();
        let r = s
            .as_mut()
            .map(|s| s.solve(&Decay, 0.0, &[1.0], &[1.0], &mut Vec::new()));
        assert!(matches!(r, Some(Err(_))));
        let r = s
            .as_mut()
            .map(|s| s.solve(&Decay, 0.0, &[1.0, 0.0], &[2.0, 1.0], &mut Vec::new()));
        assert!(matches!(r, Some(Err(_))));
    }

    struct Blowup;
    impl OdeSystem for Blowup {
        fn dim(&self) -> usize {
            1
        }
        fn rhs(&self, _t: f64, y: &[f64], d: &mut [f64]) {
            d[0] = y[0] * y[0];
        }
    }

    #[test]
    fn finite_time_blowup_is_an_error_not_a_hang() {
        let mut s = Rk5::new(1e-6, 1e-6).ok();
        let r = s
            .as_mut()
            .map(|s| s.solve(&Blowup, 0.0, &[1.0], &[2.0], &mut Vec::new()));
        assert!(matches!(r, Some(Err(ForecastError::Solver { .. }))));
    }

    /// Lotka–Volterra with a third, quadrature component (the integral of the prey), optionally declared as one.
    struct Lotka {
        declare_quadrature: bool,
    }
    impl OdeSystem for Lotka {
        fn dim(&self) -> usize {
            3
        }
        fn feedback_dim(&self) -> usize {
            if self.declare_quadrature {
                2
            } else {
                3
            }
        }
        fn rhs(&self, _t: f64, y: &[f64], d: &mut [f64]) {
            d[0] = 1.1 * y[0] - 0.4 * y[0] * y[1];
            d[1] = 0.1 * y[0] * y[1] - 0.4 * y[1];
            d[2] = y[0];
        }
    }

    #[test]
    fn quadratures_are_integrated_identically_without_their_stage_values() -> Result<()> {
        let ts: Vec<f64> = (0..=100).map(|i| i as f64 * 0.3).collect();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let mut s = Rk5::new(1e-6, 1e-8)?;
        let sa = s.solve(
            &Lotka {
                declare_quadrature: false,
            },
            0.0,
            &[10.0, 5.0, 0.0],
            &ts,
            &mut a,
        )?;
        let sb = s.solve(
            &Lotka {
                declare_quadrature: true,
            },
            0.0,
            &[10.0, 5.0, 0.0],
            &ts,
            &mut b,
        )?;
        assert_eq!(sa, sb);
        // Bit for bit: the skipped stage values are never read.
        assert_eq!(a, b);
        Ok(())
    }

    #[test]
    fn rejected_steps_leave_no_stale_output() -> Result<()> {
        // A loose tolerance on an oscillator rejects steps. The steps do not depend on the output times (only on
        // the end time), so each row of a dense grid must equal, bit for bit, the same time requested alone: a row
        // left from a rejected attempt would not.
        let t_end = 30.0;
        let ts: Vec<f64> = (0..=600).map(|i| i as f64 * 0.05).collect();
        let sys = Lotka {
            declare_quadrature: true,
        };
        let y0 = [10.0, 5.0, 0.0];
        let mut s = Rk5::new(1e-3, 1e-6)?;
        let mut grid = Vec::new();
        let st = s.solve(&sys, 0.0, &y0, &ts, &mut grid)?;
        assert!(st.rejected > 0, "{st:?}");
        let mut single = Vec::new();
        for (row, &time) in ts.iter().enumerate().step_by(7) {
            let st1 = s.solve(&sys, 0.0, &y0, &[time, t_end], &mut single)?;
            assert_eq!(st1, st);
            assert_eq!(&grid[3 * row..3 * row + 3], &single[..3], "t = {time}");
        }
        // And the loose solution is still a solution (the oscillation drifts in phase at rtol 1e-3).
        let mut tight = Vec::new();
        Rk5::new(1e-11, 1e-11)?.solve(&sys, 0.0, &y0, &ts, &mut tight)?;
        for (a, b) in grid.iter().zip(&tight) {
            assert!((a - b).abs() <= 0.2 * b.abs().max(1.0), "{a} vs {b}");
        }
        Ok(())
    }

    #[test]
    fn output_buffer_is_resized_and_fully_overwritten() -> Result<()> {
        let ts: Vec<f64> = (0..=20).map(f64::from).collect();
        let mut s = Rk5::new(1e-8, 1e-10)?;
        let mut fresh = Vec::new();
        s.solve(&Decay, 0.0, &[1.0, 0.0], &ts, &mut fresh)?;
        // A longer buffer full of garbage, then one of the right size: same answer, right length.
        let mut reused = vec![f64::NAN; 1000];
        s.solve(&Decay, 0.0, &[1.0, 0.0], &ts, &mut reused)?;
        assert_eq!(reused, fresh);
        reused.iter_mut().for_each(|v| *v = -7.0);
        s.solve(&Decay, 0.0, &[1.0, 0.0], &ts, &mut reused)?;
        assert_eq!(reused, fresh);
        // Output exactly at t0 and repeated times.
        let mut out = vec![f64::NAN; 3];
        s.solve(&Decay, 0.0, &[1.0, 0.0], &[0.0, 0.0, 2.0, 2.0], &mut out)?;
        assert_eq!(out.len(), 8);
        assert_eq!(&out[..4], &[1.0, 0.0, 1.0, 0.0]);
        assert_eq!(out[4..6], out[6..8]);
        assert!((out[4] - (-1.0f64).exp()).abs() < 1e-8);
        Ok(())
    }
}
