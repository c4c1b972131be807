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
    /// f at an intermediate stage of an explicit Runge–Kutta step: writes f(t, y + h·Σ_j a[j]·ks[j]) into `dydt`
    /// (`a` and `ks` have the same length, 1 to 6; every vector is `dim()` long).
    ///
    /// The default forms the stage value in `stage` (its first `feedback_dim()` components, the only ones f
    /// reads) and calls [`rhs`](Self::rhs). A system may instead form the stage values as it evaluates f, one pass
    /// instead of two; it must then give exactly the same result (the same floating-point operations in the same
    /// order: each component y_i + h·(a_0·k_0,i + a_1·k_1,i + …), see [`stage_value`]).
    #[allow(clippy::too_many_arguments)]
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
        let m = self.feedback_dim().min(y.len()).min(stage.len());
        combine_into(&mut stage[..m], y, h, a, ks);
        self.rhs(t, stage, dydt);
    }
}

/// One component of a stage value, y + h·(a_0·k_0 + a_1·k_1 + …) in that order (what [`OdeSystem::rhs_stage`]
/// must reproduce).
#[inline(always)]
pub fn stage_value<const J: usize>(y: f64, h: f64, a: &[f64; J], k: [f64; J]) -> f64 {
    let mut s = a[0] * k[0];
    for j in 1..J {
        s += a[j] * k[j];
    }
    y + h * s
}

/// out_i = y_i + h·Σ_j a_j·ks_j,i for i < out.len() (the other vectors are at least that long; `a` and `ks` have
/// 1 to 6 entries, more are ignored).
#[inline(always)]
pub fn combine_into(out: &mut [f64], y: &[f64], h: f64, a: &[f64], ks: &[&[f64]]) {
    #[inline(always)]
    fn fixed<const J: usize>(out: &mut [f64], y: &[f64], h: f64, a: &[f64], ks: &[&[f64]]) {
        let (Ok(a), Some(ks)) = (<&[f64; J]>::try_from(&a[..J]), ks.get(..J)) else {
            return;
        };
        let n = out.len();
        let y = &y[..n];
        let ks: [&[f64]; J] = std::array::from_fn(|j| &ks[j][..n]);
        for i in 0..n {
            out[i] = stage_value(y[i], h, a, std::array::from_fn(|j| ks[j][i]));
        }
    }
    match a.len().min(ks.len()) {
        0 => out.copy_from_slice(&y[..out.len()]),
        1 => fixed::<1>(out, y, h, a, ks),
        2 => fixed::<2>(out, y, h, a, ks),
        3 => fixed::<3>(out, y, h, a, ks),
        4 => fixed::<4>(out, y, h, a, ks),
        5 => fixed::<5>(out, y, h, a, ks),
        _ => fixed::<6>(out, y, h, a, ks),
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
const TE1: f64 = -0.001_780_011_052_225_777;
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

/// How a step's error estimate is reduced to one number (the step is accepted when it is below 1). Both scale
/// component i of the estimate by atol + rtol·max(|y_i|, |y_new_i|).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErrorNorm {
    /// Root mean square over the components (SciPy's and Hairer's choice): a single component may exceed its
    /// tolerance by up to √dim when the others are well inside theirs.
    #[default]
    Rms,
    /// Largest scaled component: every component must be within its own tolerance. Stricter than `Rms` at the same
    /// tolerances, so it takes more steps there; at a looser tolerance it can reach a given worst-case error in
    /// fewer steps (the benchmark measures this, see the crate README).
    Max,
}

/// Elements per block of the error norm (eight independent partial sums, so the loop vectorises) and of the
/// dense output (a block of the seven input vectors stays in L1 while every output row of the step is written).
const LANES: usize = 8;
const BLOCK: usize = 512;

/// The error sum of a step attempt and, at the same time, its dense output, for a pair whose error weights and
/// continuous-extension rows are `e` and `p` on the stage derivatives `ks` (only the stages with a nonzero weight
/// are passed: Dormand–Prince gives k2 none, so it is not read).
///
/// Returns Σ_i (err_i / (atol + max(|y_i|, |y_new_i|)·rtol))² with err = h·Σ_j e_j k_j (with `MAX`, the largest
/// |err_i / (atol + max(|y_i|, |y_new_i|)·rtol)| instead, NaN if any is NaN), and whether y_new is finite. Eight partial sums instead of one running sum: a single sum is a chain of dependent additions (and
/// SciPy's BLAS-based norm does not add in index order either).
///
/// It also writes the state at each time of `times` (those of the output grid in (t, t_new]) into consecutive rows
/// of `dst`: y_new itself at t_new, the quartic continuous extension y + h·Σ_j q_j(x) k_j elsewhere
/// (q_j(x) = Σ_m p_j[m]·x^(m+1), x = (time − t)/h). Both read the same vectors, so they share one pass, block by
/// block (a block of every input stays in L1 while all the rows are written). The rows are written before the step
/// is known to be accepted; after a rejection they are written again by the step that finally covers them.
///
/// Runs in the AVX2 build when `simd` and the CPU allow ([`crate::simd`]).
#[allow(clippy::too_many_arguments)]
fn error_and_output<const K: usize, const MAX: bool>(
    simd: bool,
    tol: (f64, f64, f64),
    span: (f64, f64),
    y: &[f64],
    y_new: &[f64],
    ks: [&[f64]; K],
    ep: (&[f64; K], &[[f64; 4]; K]),
    times: &[f64],
    dst: &mut [f64],
) -> (f64, bool) {
    crate::simd::with_avx2(
        simd,
        #[inline(always)]
        || error_and_output_body::<K, MAX>(tol, span, y, y_new, ks, ep, times, dst),
    )
}

/// [`error_and_output`]'s work, inlined into both builds.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn error_and_output_body<const K: usize, const MAX: bool>(
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
    // h folded into the weights: err = Σ_j (h·e_j)·k_j, output y + Σ_j (h·q_j(x))·k_j.
    let eh: [f64; K] = std::array::from_fn(|j| h * e[j]);
    let weights = |time: f64| -> [f64; K] {
        let x = (time - t) / h;
        let (x1, x2, x3, x4) = (x, x * x, x * x * x, x * x * x * x);
        std::array::from_fn(|j| h * (p[j][0] * x1 + p[j][1] * x2 + p[j][2] * x3 + p[j][3] * x4))
    };
    let mut acc = [0.0f64; LANES];
    let mut fin = [0.0; LANES];
    // With MAX: r·0 summed, NaN exactly when some r is (f64::max would drop a NaN).
    let mut nan = [0.0; LANES];
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
                let mut s = eh[0] * k8[0][l];
                for j in 1..K {
                    s += eh[j] * k8[j][l];
                }
                let r = s / (atol + y8[l].abs().max(yn8[l].abs()) * rtol);
                if MAX {
                    acc[l] = acc[l].max(r.abs());
                    nan[l] += r * 0.0;
                } else {
                    acc[l] += r * r;
                }
                // y_new·0 is NaN exactly when y_new is ±inf or NaN.
                fin[l] += yn8[l] * 0.0;
            }
            b += LANES;
        }
        for (l, i) in (full..len).enumerate() {
            let mut s = eh[0] * kb[0][i];
            for j in 1..K {
                s += eh[j] * kb[j][i];
            }
            let r = s / (atol + yb[i].abs().max(ynb[i].abs()) * rtol);
            if MAX {
                acc[l] = acc[l].max(r.abs());
                nan[l] += r * 0.0;
            } else {
                acc[l] += r * r;
            }
            fin[l] += ynb[i] * 0.0;
        }
        // Rows two at a time where there are two: one load of each k serves both.
        let mut pending: Option<(&mut [f64], [f64; K])> = None;
        for (row, &time) in dst.chunks_exact_mut(n).zip(times) {
            let out = &mut row[start..end];
            if time == t_new {
                out.copy_from_slice(ynb);
                continue;
            }
            let q = weights(time);
            match pending.take() {
                None => pending = Some((out, q)),
                Some((first, q1)) => {
                    let (first, out) = (&mut first[..len], &mut out[..len]);
                    for i in 0..len {
                        let (mut s1, mut s2) = (q1[0] * kb[0][i], q[0] * kb[0][i]);
                        for j in 1..K {
                            s1 += q1[j] * kb[j][i];
                            s2 += q[j] * kb[j][i];
                        }
                        first[i] = yb[i] + s1;
                        out[i] = yb[i] + s2;
                    }
                }
            }
        }
        if let Some((out, q)) = pending {
            let out = &mut out[..len];
            for i in 0..len {
                let mut s = q[0] * kb[0][i];
                for j in 1..K {
                    s += q[j] * kb[j][i];
                }
                out[i] = yb[i] + s;
            }
        }
        start = end;
    }
    let total: f64 = if MAX {
        let nan: f64 = nan.iter().sum();
        acc.iter().fold(nan, |m, &a| m.max(a)) + nan
    } else {
        acc.iter().sum()
    };
    let zero: f64 = fin.iter().sum();
    (total, zero == 0.0)
}

/// [`combine_into`] in the AVX2 build when `simd` and the CPU allow ([`crate::simd`]).
fn combine(simd: bool, out: &mut [f64], y: &[f64], h: f64, a: &[f64], ks: &[&[f64]]) {
    crate::simd::with_avx2(
        simd,
        #[inline(always)]
        || combine_into(out, y, h, a, ks),
    );
}

/// Dormand–Prince error weights and dense-output rows of k1, k3..k7 (k2 has none).
const DP_E: [f64; 6] = [E1, E3, E4, E5, E6, E7];
const DP_P: [[f64; 4]; 6] = [P[0], P[2], P[3], P[4], P[5], P[6]];
/// Dormand–Prince fifth-order weights of k1, k3..k6 (k2 has none).
const DP_B: [f64; 5] = [B1, B3, B4, B5, B6];
/// Tsitouras error weights of k1..k7.
const TS_E: [f64; 7] = [TE1, TE2, TE3, TE4, TE5, TE6, TE7];
/// Tsitouras fifth-order weights of k1..k6.
const TS_B: [f64; 6] = [TB1, TB2, TB3, TB4, TB5, TB6];

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
    norm: ErrorNorm,
    rtol: f64,
    atol: f64,
    max_steps: usize,
    max_step: f64,
    k: [Vec<f64>; 7],
    y: Vec<f64>,
    y_new: Vec<f64>,
    tmp: Vec<f64>,
    /// Whether the AVX2 build of the stepper is used where the CPU has it ([`crate::simd`]).
    simd: bool,
}

/// The former name of [`Rk5`] (kept so code written against it still builds; `Rk5::new` still steps with
/// Dormand–Prince).
pub type Dopri5 = Rk5;

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
            norm: ErrorNorm::Rms,
            rtol,
            atol,
            max_steps: 1_000_000,
            max_step: f64::INFINITY,
            k: Default::default(),
            y: Vec::new(),
            y_new: Vec::new(),
            tmp: Vec::new(),
            simd: true,
        })
    }

    /// Steps with `method` instead.
    pub fn with_method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }

    /// Reduces the error estimate with `norm` instead of the default RMS norm (the initial-step heuristic keeps
    /// its RMS norms).
    pub fn with_error_norm(mut self, norm: ErrorNorm) -> Self {
        self.norm = norm;
        self
    }

    /// Whether the stepper's loops run in their AVX2 build where the CPU has it (`true`, the default) or always in
    /// the portable one; the results are the same bit for bit (see [`crate::simd`]), only the speed differs.
    pub fn with_simd(mut self, enabled: bool) -> Self {
        self.simd = enabled;
        self
    }

    /// The error norm of the step-size control.
    pub fn error_norm(&self) -> ErrorNorm {
        self.norm
    }

    /// The pair this solver steps with.
    pub fn method(&self) -> Method {
        self.method
    }

    /// Caps the step size (as SciPy's `max_step`; default unbounded). Rejected unless finite and > 0.
    pub fn with_max_step(mut self, max_step: f64) -> Result<Self> {
        if !crate::special::is_positive(max_step) {
            return Err(ForecastError::InvalidParameter {
                name: "max_step",
                value: max_step,
                why: "the largest step must be > 0",
            });
        }
        self.max_step = max_step;
        Ok(self)
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
            if h_abs > self.max_step {
                h_abs = self.max_step;
            } else if h_abs < min_step {
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
                        sys.rhs_stage(t + C2 * h, y, h, &[A21], &[k1], tmp, k2);
                        sys.rhs_stage(t + C3 * h, y, h, &[A31, A32], &[k1, k2], tmp, k3);
                        sys.rhs_stage(t + C4 * h, y, h, &[A41, A42, A43], &[k1, k2, k3], tmp, k4);
                        let a5 = [A51, A52, A53, A54];
                        sys.rhs_stage(t + C5 * h, y, h, &a5, &[k1, k2, k3, k4], tmp, k5);
                        let a6 = [A61, A62, A63, A64, A65];
                        sys.rhs_stage(t + h, y, h, &a6, &[k1, k2, k3, k4, k5], tmp, k6);
                        combine(self.simd, y_new, y, h, &DP_B, &[k1, k3, k4, k5, k6]);
                    }
                    Method::Tsitouras => {
                        sys.rhs_stage(t + TC2 * h, y, h, &[TA21], &[k1], tmp, k2);
                        sys.rhs_stage(t + TC3 * h, y, h, &[TA31, TA32], &[k1, k2], tmp, k3);
                        let a4 = [TA41, TA42, TA43];
                        sys.rhs_stage(t + TC4 * h, y, h, &a4, &[k1, k2, k3], tmp, k4);
                        let a5 = [TA51, TA52, TA53, TA54];
                        sys.rhs_stage(t + TC5 * h, y, h, &a5, &[k1, k2, k3, k4], tmp, k5);
                        let a6 = [TA61, TA62, TA63, TA64, TA65];
                        sys.rhs_stage(t + h, y, h, &a6, &[k1, k2, k3, k4, k5], tmp, k6);
                        combine(self.simd, y_new, y, h, &TS_B, &[k1, k2, k3, k4, k5, k6]);
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
                let tol = (h, rtol, atol);
                let span = (t, t_new);
                let (acc, finite) = match (self.method, self.norm) {
                    (Method::DormandPrince, ErrorNorm::Rms) => error_and_output::<6, false>(
                        self.simd,
                        tol,
                        span,
                        y,
                        y_new,
                        [k1, k3, k4, k5, k6, k7],
                        (&DP_E, &DP_P),
                        rows,
                        dst,
                    ),
                    (Method::DormandPrince, ErrorNorm::Max) => error_and_output::<6, true>(
                        self.simd,
                        tol,
                        span,
                        y,
                        y_new,
                        [k1, k3, k4, k5, k6, k7],
                        (&DP_E, &DP_P),
                        rows,
                        dst,
                    ),
                    (Method::Tsitouras, ErrorNorm::Rms) => error_and_output::<7, false>(
                        self.simd,
                        tol,
                        span,
                        y,
                        y_new,
                        [k1, k2, k3, k4, k5, k6, k7],
                        (&TS_E, &TP),
                        rows,
                        dst,
                    ),
                    (Method::Tsitouras, ErrorNorm::Max) => error_and_output::<7, true>(
                        self.simd,
                        tol,
                        span,
                        y,
                        y_new,
                        [k1, k2, k3, k4, k5, k6, k7],
                        (&TS_E, &TP),
                        rows,
                        dst,
                    ),
                };
                let err = match self.norm {
                    ErrorNorm::Rms => (acc / n as f64).sqrt(),
                    ErrorNorm::Max => acc,
                };
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

    /// A pair's coefficients as full arrays: c, A (row i = stage i), b (fifth order, b7 = 0), e = b − b̂ and the
    /// continuous extension.
    struct Tableau {
        c: [f64; 7],
        a: [[f64; 7]; 7],
        b: [f64; 7],
        e: [f64; 7],
        p: [[f64; 4]; 7],
    }

    fn dormand_prince() -> Tableau {
        Tableau {
            c: [0.0, C2, C3, C4, C5, 1.0, 1.0],
            a: [
                [0.0; 7],
                [A21, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
                [A31, A32, 0.0, 0.0, 0.0, 0.0, 0.0],
                [A41, A42, A43, 0.0, 0.0, 0.0, 0.0],
                [A51, A52, A53, A54, 0.0, 0.0, 0.0],
                [A61, A62, A63, A64, A65, 0.0, 0.0],
                [B1, 0.0, B3, B4, B5, B6, 0.0],
            ],
            b: [B1, 0.0, B3, B4, B5, B6, 0.0],
            e: [E1, 0.0, E3, E4, E5, E6, E7],
            p: P,
        }
    }

    fn tsitouras() -> Tableau {
        Tableau {
            c: [0.0, TC2, TC3, TC4, TC5, 1.0, 1.0],
            a: [
                [0.0; 7],
                [TA21, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
                [TA31, TA32, 0.0, 0.0, 0.0, 0.0, 0.0],
                [TA41, TA42, TA43, 0.0, 0.0, 0.0, 0.0],
                [TA51, TA52, TA53, TA54, 0.0, 0.0, 0.0],
                [TA61, TA62, TA63, TA64, TA65, 0.0, 0.0],
                [TB1, TB2, TB3, TB4, TB5, TB6, 0.0],
            ],
            b: [TB1, TB2, TB3, TB4, TB5, TB6, 0.0],
            e: TS_E,
            p: TP,
        }
    }

    /// Residuals of the order conditions (one per rooted tree) up to `order` for weights `w`.
    fn order_residuals(t: &Tableau, w: &[f64; 7], order: usize) -> Vec<f64> {
        let av = |v: &[f64; 7]| -> [f64; 7] {
            std::array::from_fn(|i| (0..7).map(|j| t.a[i][j] * v[j]).sum())
        };
        let mul = |u: &[f64; 7], v: &[f64; 7]| -> [f64; 7] { std::array::from_fn(|i| u[i] * v[i]) };
        let dot = |v: &[f64; 7]| -> f64 { (0..7).map(|i| w[i] * v[i]).sum() };
        let c = t.c;
        let one = [1.0; 7];
        let c2 = mul(&c, &c);
        let c3 = mul(&c2, &c);
        let ac = av(&c);
        let ac2 = av(&c2);
        let aac = av(&ac);
        let mut r = vec![dot(&one) - 1.0];
        if order >= 2 {
            r.push(dot(&c) - 1.0 / 2.0);
        }
        if order >= 3 {
            r.extend([dot(&c2) - 1.0 / 3.0, dot(&ac) - 1.0 / 6.0]);
        }
        if order >= 4 {
            r.extend([
                dot(&c3) - 1.0 / 4.0,
                dot(&mul(&c, &ac)) - 1.0 / 8.0,
                dot(&ac2) - 1.0 / 12.0,
                dot(&aac) - 1.0 / 24.0,
            ]);
        }
        if order >= 5 {
            r.extend([
                dot(&mul(&c3, &c)) - 1.0 / 5.0,
                dot(&mul(&c2, &ac)) - 1.0 / 10.0,
                dot(&mul(&c, &ac2)) - 1.0 / 15.0,
                dot(&mul(&c, &aac)) - 1.0 / 30.0,
                dot(&mul(&ac, &ac)) - 1.0 / 20.0,
                dot(&av(&c3)) - 1.0 / 20.0,
                dot(&av(&mul(&c, &ac))) - 1.0 / 40.0,
                dot(&av(&ac2)) - 1.0 / 60.0,
                dot(&av(&aac)) - 1.0 / 120.0,
            ]);
        }
        r
    }

    #[test]
    fn both_pairs_satisfy_their_order_conditions() {
        for (name, t) in [
            ("Dormand-Prince", dormand_prince()),
            ("Tsitouras", tsitouras()),
        ] {
            for i in 0..7 {
                let row: f64 = t.a[i].iter().sum();
                assert!(
                    (row - t.c[i]).abs() < 1e-14,
                    "{name}: row {i} sums to {row}"
                );
            }
            // Fifth order (all 17 trees) for b; fourth (8 trees) for the embedded b̂ = b − e, and not fifth, or
            // the error estimate would vanish.
            let r5 = order_residuals(&t, &t.b, 5);
            assert_eq!(r5.len(), 17);
            assert!(r5.iter().all(|r| r.abs() < 1e-13), "{name}: {r5:?}");
            let bhat: [f64; 7] = std::array::from_fn(|j| t.b[j] - t.e[j]);
            let r4 = order_residuals(&t, &bhat, 4);
            assert!(r4.iter().all(|r| r.abs() < 1e-13), "{name}: {r4:?}");
            let r5hat = order_residuals(&t, &bhat, 5);
            assert!(r5hat.iter().any(|r| r.abs() > 1e-6), "{name}: {r5hat:?}");
            // The continuous extension: b(1) = b, and quadrature conditions of order 4 at every θ.
            for theta in [0.1f64, 0.37, 0.5, 0.81, 1.0] {
                let bt: [f64; 7] = std::array::from_fn(|j| {
                    (0..4).map(|m| t.p[j][m] * theta.powi(m as i32 + 1)).sum()
                });
                for q in 1..=4 {
                    let lhs: f64 = (0..7).map(|j| bt[j] * t.c[j].powi(q - 1)).sum();
                    let rhs = theta.powi(q) / f64::from(q);
                    assert!((lhs - rhs).abs() < 1e-13, "{name}: θ {theta} q {q}");
                }
                if theta == 1.0 {
                    for (j, (&bj, &b)) in bt.iter().zip(&t.b).enumerate() {
                        assert!((bj - b).abs() < 1e-13, "{name}: b_{j}(1)");
                    }
                }
            }
        }
    }

    /// y' = y·cos t, y(0) = 1: y = exp(sin t).
    struct Periodic;
    impl OdeSystem for Periodic {
        fn dim(&self) -> usize {
            1
        }
        fn rhs(&self, t: f64, y: &[f64], d: &mut [f64]) {
            d[0] = y[0] * t.cos();
        }
    }

    #[test]
    fn both_pairs_converge_with_order_five() -> Result<()> {
        // Fixed steps (a step cap far below what the loose tolerance allows): the global error at t = 2.5, 5, 7.5,
        // 10 must fall as h^5 (a mistyped coefficient drops the order to 1–4). h = 10/N, N = 40..320.
        let ts = [0.0, 2.5, 5.0, 7.5, 10.0];
        for method in [Method::DormandPrince, Method::Tsitouras] {
            let mut errs = Vec::new();
            for steps in [40u32, 80, 160, 320] {
                let h = 10.0 / f64::from(steps);
                let mut s = Rk5::new(1.0, 1.0)?.with_method(method).with_max_step(h)?;
                let mut out = Vec::new();
                let st = s.solve(&Periodic, 0.0, &[1.0], &ts, &mut out)?;
                // All at h except the first few (the initial step is smaller and grows tenfold a step).
                let n = steps as usize;
                assert!((n..=n + 8).contains(&st.steps), "{method:?} {st:?}");
                let err = ts
                    .iter()
                    .zip(&out)
                    .map(|(&t, &y)| (y - t.sin().exp()).abs())
                    .fold(0.0f64, f64::max);
                errs.push(err);
            }
            for w in errs.windows(2) {
                let order = (w[0] / w[1]).log2();
                assert!(
                    (4.6..=5.6).contains(&order),
                    "{method:?}: order {order} from {errs:?}"
                );
            }
        }
        assert!(Rk5::new(1e-6, 1e-6)
            .and_then(|s| s.with_max_step(0.0))
            .is_err());
        assert!(Rk5::new(1e-6, 1e-6)
            .and_then(|s| s.with_max_step(f64::NAN))
            .is_err());
        Ok(())
    }

    #[test]
    fn tsitouras_matches_dormand_prince_at_tight_tolerance() -> Result<()> {
        let ts: Vec<f64> = (0..=100).map(|i| f64::from(i) * 0.3).collect();
        let sys = Lotka {
            declare_quadrature: true,
        };
        let y0 = [10.0, 5.0, 0.0];
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let sa = Rk5::new(1e-11, 1e-11)?.solve(&sys, 0.0, &y0, &ts, &mut a)?;
        let sb = Rk5::new(1e-11, 1e-11)?
            .with_method(Method::Tsitouras)
            .solve(&sys, 0.0, &y0, &ts, &mut b)?;
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() <= 1e-8 * x.abs().max(1.0), "{x} vs {y}");
        }
        // Different methods, so different steps: the comparison is not trivially of one solve with itself; at the
        // same tolerance Tsitouras needs fewer.
        assert_ne!(sa.rhs_evals, sb.rhs_evals);
        assert!(sb.steps < sa.steps, "{sa:?} {sb:?}");
        Ok(())
    }

    #[test]
    fn max_norm_bounds_every_component() -> Result<()> {
        // The reduction itself: for random inputs, error_and_output::<_, true> returns the largest scaled component
        // and ::<_, false> the sum of squares (checked against a plain loop), over lengths that exercise both the
        // eight-lane blocks and the tail, and a NaN anywhere in the estimate makes the max NaN (a rejection).
        let mut seed = 12345u64;
        let mut rnd = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        for n in [1usize, 7, 8, 9, 515, 1030] {
            let y: Vec<f64> = (0..n).map(|_| 100.0 * rnd()).collect();
            let y_new: Vec<f64> = (0..n).map(|_| 100.0 * rnd()).collect();
            let ks: Vec<Vec<f64>> = (0..7).map(|_| (0..n).map(|_| rnd()).collect()).collect();
            let kr: [&[f64]; 7] = std::array::from_fn(|j| ks[j].as_slice());
            let (h, rtol, atol) = (0.7, 1e-3, 1e-4);
            let scaled: Vec<f64> = (0..n)
                .map(|i| {
                    let e: f64 = (0..7).map(|j| h * TS_E[j] * kr[j][i]).sum();
                    e / (atol + y[i].abs().max(y_new[i].abs()) * rtol)
                })
                .collect();
            let max = scaled.iter().fold(0.0f64, |m, r| m.max(r.abs()));
            let sq: f64 = scaled.iter().map(|r| r * r).sum();
            let args = (
                (h, rtol, atol),
                (0.0, h),
                &y[..],
                &y_new[..],
                kr,
                (&TS_E, &TP),
            );
            let (m, fin) = error_and_output::<7, true>(
                true,
                args.0,
                args.1,
                args.2,
                args.3,
                args.4,
                args.5,
                &[],
                &mut [],
            );
            assert!(fin);
            assert!((m - max).abs() <= 1e-12 * max, "n {n}: {m} vs {max}");
            let (s, _) = error_and_output::<7, false>(
                true,
                args.0,
                args.1,
                args.2,
                args.3,
                args.4,
                args.5,
                &[],
                &mut [],
            );
            assert!((s - sq).abs() <= 1e-12 * sq, "n {n}: {s} vs {sq}");
            let mut bad = ks.clone();
            bad[3][n / 2] = f64::NAN;
            let br: [&[f64]; 7] = std::array::from_fn(|j| bad[j].as_slice());
            let (m, _) = error_and_output::<7, true>(
                true,
                args.0,
                args.1,
                args.2,
                args.3,
                br,
                args.5,
                &[],
                &mut [],
            );
            assert!(m.is_nan(), "n {n}");
        }
        // In a solve: at the same tolerances the max norm is the stricter (more steps, no larger error), and at a
        // tenfold tolerance it is still a solution of the expected accuracy.
        let ts: Vec<f64> = (0..=100).map(|i| f64::from(i) * 0.3).collect();
        let sys = Lotka {
            declare_quadrature: true,
        };
        let y0 = [10.0, 5.0, 0.0];
        let mut exact = Vec::new();
        Rk5::new(1e-12, 1e-12)?.solve(&sys, 0.0, &y0, &ts, &mut exact)?;
        let worst = |out: &[f64]| {
            out.iter()
                .zip(&exact)
                .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
                .fold(0.0f64, f64::max)
        };
        for method in [Method::DormandPrince, Method::Tsitouras] {
            let (mut rms, mut max, mut loose) = (Vec::new(), Vec::new(), Vec::new());
            let s_rms = Rk5::new(1e-6, 1e-6)?
                .with_method(method)
                .solve(&sys, 0.0, &y0, &ts, &mut rms)?;
            let mut solver = Rk5::new(1e-6, 1e-6)?
                .with_method(method)
                .with_error_norm(ErrorNorm::Max);
            assert_eq!(solver.error_norm(), ErrorNorm::Max);
            let s_max = solver.solve(&sys, 0.0, &y0, &ts, &mut max)?;
            assert!(
                s_max.steps > s_rms.steps,
                "{method:?}: {s_max:?} vs {s_rms:?}"
            );
            assert!(worst(&max) <= worst(&rms), "{method:?}");
            let s_loose = Rk5::new(1e-5, 1e-5)?
                .with_method(method)
                .with_error_norm(ErrorNorm::Max)
                .solve(&sys, 0.0, &y0, &ts, &mut loose)?;
            assert!(s_loose.steps < s_max.steps, "{method:?}");
            assert!(worst(&loose) < 1e-3, "{method:?}: {}", worst(&loose));
        }
        // A blow-up is still an error, not a hang, under the max norm.
        let r = Rk5::new(1e-6, 1e-6).map(|s| {
            s.with_method(Method::Tsitouras)
                .with_error_norm(ErrorNorm::Max)
                .solve(&Blowup, 0.0, &[1.0], &[2.0], &mut Vec::new())
        });
        assert!(matches!(r, Ok(Err(ForecastError::Solver { .. }))));
        Ok(())
    }

    #[test]
    fn tsitouras_rejects_bad_arguments() {
        assert!(Rk5::new(-1.0, 1e-6)
            .map(|s| s.with_method(Method::Tsitouras))
            .is_err());
        let mut s = Rk5::new(1e-6, 1e-6)
            .map(|s| s.with_method(Method::Tsitouras))
            .ok();
        for (y0, ts) in [
            (&[1.0][..], &[1.0][..]),
            (&[1.0, 0.0][..], &[2.0, 1.0][..]),
            (&[1.0, 0.0][..], &[-1.0][..]),
            (&[1.0, 0.0][..], &[f64::NAN][..]),
        ] {
            let r = s
                .as_mut()
                .map(|s| s.solve(&Decay, 0.0, y0, ts, &mut Vec::new()));
            assert!(matches!(
                r,
                Some(Err(ForecastError::InvalidParameter { .. }))
            ));
        }
        let r = s
            .as_mut()
            .map(|s| s.solve(&Blowup, 0.0, &[1.0], &[2.0], &mut Vec::new()));
        assert!(matches!(r, Some(Err(ForecastError::Solver { .. }))));
    }

    #[test]
    fn default_stage_evaluation_is_the_stage_value_then_rhs() {
        // rhs_stage's default must equal forming y + h·Σ a_j k_j by stage_value and calling rhs, for 1..6 terms.
        let y = [10.0, 5.0, 0.0];
        let ks: Vec<Vec<f64>> = (0..6)
            .map(|j| vec![0.5 + f64::from(j), -1.25 * f64::from(j), 3.0])
            .collect();
        let a = [0.3, -0.7, 1.1, 0.05, -2.0, 0.9];
        let sys = Lotka {
            declare_quadrature: true,
        };
        for terms in 1..=6 {
            let kr: Vec<&[f64]> = ks[..terms].iter().map(Vec::as_slice).collect();
            let (mut stage, mut d) = ([0.0; 3], [0.0; 3]);
            sys.rhs_stage(0.0, &y, 0.1, &a[..terms], &kr, &mut stage, &mut d);
            let mut expect = [0.0; 3];
            for i in 0..2 {
                let mut s = a[0] * kr[0][i];
                for j in 1..terms {
                    s += a[j] * kr[j][i];
                }
                expect[i] = y[i] + 0.1 * s;
            }
            let mut de = [0.0; 3];
            sys.rhs(0.0, &expect, &mut de);
            assert_eq!(&stage[..2], &expect[..2]);
            assert_eq!(d, de);
        }
    }

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
