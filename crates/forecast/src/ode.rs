//! Adaptive explicit Runge–Kutta 5(4) of Dormand and Prince with dense output.
//!
//! Written by hand rather than taken from `ode_solvers` or `diffsol` because the hot paths here (the 4,000-state
//! metapopulation benchmark and 1,000-member ensembles) need an allocation-free stepper over plain slices with the
//! right-hand side writing in place, and because the benchmark must take exactly the same steps as SciPy's
//! `solve_ivp(method="RK45")` to be a like-for-like comparison. The step-size controller, initial-step heuristic
//! (Hairer, Nørsett & Wanner, *Solving ODEs I*, II.4), RMS error norm and the quartic dense output therefore follow
//! the published scheme with SciPy's constants (safety 0.9, factors 0.2–10, error exponent −1/5).

use crate::error::{ForecastError, Result};

/// A system of first-order ODEs y' = f(t, y).
pub trait OdeSystem {
    /// Number of state variables.
    fn dim(&self) -> usize;
    /// Writes f(t, y) into `dydt` (same length as `y`).
    fn rhs(&self, t: f64, y: &[f64], dydt: &mut [f64]);
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

/// out = y + h·(Σ c_j k_j) over slices re-cut to one length, so the loop has no bounds checks and vectorises.
macro_rules! combine {
    ($out:expr, $y:expr, $h:expr; $($c:expr => $k:ident),+) => {{
        let n = $out.len();
        let out: &mut [f64] = &mut $out[..n];
        let y: &[f64] = &$y[..n];
        $( let $k: &[f64] = &$k[..n]; )+
        for i in 0..n {
            out[i] = y[i] + $h * (0.0 $(+ $c * $k[i])+);
        }
    }};
}

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

/// A reusable Dormand–Prince 5(4) integrator; its work buffers are kept between solves.
#[derive(Debug, Clone)]
pub struct Dopri5 {
    rtol: f64,
    atol: f64,
    max_steps: usize,
    k: [Vec<f64>; 7],
    y: Vec<f64>,
    y_new: Vec<f64>,
    tmp: Vec<f64>,
}

impl Dopri5 {
    /// A solver with relative tolerance `rtol` and absolute tolerance `atol` (both > 0).
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
        Ok(Dopri5 {
            rtol,
            atol,
            max_steps: 1_000_000,
            k: Default::default(),
            y: Vec::new(),
            y_new: Vec::new(),
            tmp: Vec::new(),
        })
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
    /// `out`, row after row (`t_eval.len() × dim` values). Output between steps comes from the dense output, as
    /// SciPy does, so the step sequence does not depend on the output times.
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
        out.clear();
        out.reserve(t_eval.len() * n);
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
            out.extend_from_slice(y0);
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
            let (h, t_new) = loop {
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
                combine!(tmp, y, h; A21 => k1);
                sys.rhs(t + C2 * h, tmp, k2);
                combine!(tmp, y, h; A31 => k1, A32 => k2);
                sys.rhs(t + C3 * h, tmp, k3);
                combine!(tmp, y, h; A41 => k1, A42 => k2, A43 => k3);
                sys.rhs(t + C4 * h, tmp, k4);
                combine!(tmp, y, h; A51 => k1, A52 => k2, A53 => k3, A54 => k4);
                sys.rhs(t + C5 * h, tmp, k5);
                combine!(tmp, y, h; A61 => k1, A62 => k2, A63 => k3, A64 => k4, A65 => k5);
                sys.rhs(t + h, tmp, k6);
                combine!(y_new, y, h; B1 => k1, B3 => k3, B4 => k4, B5 => k5, B6 => k6);
                sys.rhs(t + h, y_new, k7);
                stats.rhs_evals += 6;
                let acc = {
                    let (y, y_new) = (&y[..n], &y_new[..n]);
                    let (k1, k3, k4, k5, k6, k7) =
                        (&k1[..n], &k3[..n], &k4[..n], &k5[..n], &k6[..n], &k7[..n]);
                    let mut acc = 0.0;
                    for i in 0..n {
                        let e = h
                            * (E1 * k1[i]
                                + E3 * k3[i]
                                + E4 * k4[i]
                                + E5 * k5[i]
                                + E6 * k6[i]
                                + E7 * k7[i]);
                        let sc = atol + y[i].abs().max(y_new[i].abs()) * rtol;
                        let r = e / sc;
                        acc += r * r;
                    }
                    acc
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
                    break (h, t_new);
                }
                // A NaN error (a right-hand side that blew up) also lands here and shrinks the step.
                let f = SAFETY * err.powf(-0.2);
                h_abs *= if f > MIN_FACTOR { f } else { MIN_FACTOR };
                rejected = true;
                stats.rejected += 1;
            };
            // Dense output on [t, t_new] for every requested time in (t, t_new].
            while next_out < t_eval.len() && t_eval[next_out] <= t_new {
                let x = (t_eval[next_out] - t) / h;
                if t_eval[next_out] == t_new {
                    out.extend_from_slice(y_new);
                } else {
                    let (x1, x2, x3, x4) = (x, x * x, x * x * x, x * x * x * x);
                    let q: [f64; 7] = std::array::from_fn(|s| {
                        P[s][0] * x1 + P[s][1] * x2 + P[s][2] * x3 + P[s][3] * x4
                    });
                    let (q1, q3, q4, q5, q6, q7) = (q[0], q[2], q[3], q[4], q[5], q[6]);
                    let start = out.len();
                    out.resize(start + n, 0.0);
                    let dst = &mut out[start..];
                    combine!(dst, y, h; q1 => k1, q3 => k3, q4 => k4, q5 => k5, q6 => k6, q7 => k7);
                }
                next_out += 1;
            }
            std::mem::swap(y, y_new);
            std::mem::swap(k1, k7);
            t = t_new;
            stats.steps += 1;
            if y.iter().any(|v| !v.is_finite()) {
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
        let mut s = Dopri5::new(1e-10, 1e-12)?;
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
        let mut s = Dopri5::new(1e-6, 1e-9)?;
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
        assert!(Dopri5::new(0.0, 1e-6).is_err());
        assert!(Dopri5::new(1e-6, f64::NAN).is_err());
        let mut s = Dopri5::new(1e-6, 1e-6).ok();
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
        let mut s = Dopri5::new(1e-6, 1e-6).ok();
        let r = s
            .as_mut()
            .map(|s| s.solve(&Blowup, 0.0, &[1.0], &[2.0], &mut Vec::new()));
        assert!(matches!(r, Some(Err(ForecastError::Solver { .. }))));
    }
}
