//! The Dormand–Prince solver against SciPy 1.17 `solve_ivp(method="RK45")` goldens (tests/data/scipy): the same
//! number of right-hand-side evaluations (so the same steps) and the same values at the output times.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use forecast::ode::{OdeSystem, Rk5};

struct Fun(&'static str);

impl OdeSystem for Fun {
    fn dim(&self) -> usize {
        match self.0 {
            "seir" => 5,
            _ => 2,
        }
    }
    fn rhs(&self, _t: f64, y: &[f64], d: &mut [f64]) {
        match self.0 {
            "seir" => {
                let (beta, sigma, gamma, n) = (0.5, 0.2, 0.25, 1e5);
                let inf = beta * y[0] * y[2] / n;
                d[0] = -inf;
                d[1] = inf - sigma * y[1];
                d[2] = sigma * y[1] - gamma * y[2];
                d[3] = gamma * y[2];
                d[4] = sigma * y[1];
            }
            "lotka" => {
                d[0] = 1.1 * y[0] - 0.4 * y[0] * y[1];
                d[1] = 0.1 * y[0] * y[1] - 0.4 * y[1];
            }
            _ => {
                d[0] = -0.5 * y[0];
                d[1] = y[0] - 0.1 * y[1];
            }
        }
    }
}

#[test]
fn same_steps_and_values_as_scipy_rk45() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/scipy/rk45_goldens.json");
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let f = |v: &serde_json::Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let mut checked = 0;
    for case in golden["cases"].as_array().unwrap() {
        let name = match case["name"].as_str().unwrap() {
            "seir" => "seir",
            "lotka" => "lotka",
            _ => "decay",
        };
        let (rtol, atol) = (
            case["rtol"].as_f64().unwrap(),
            case["atol"].as_f64().unwrap(),
        );
        let mut s = Rk5::new(rtol, atol).unwrap();
        let t_eval = f(&case["t_eval"]);
        let mut out = Vec::new();
        let stats = s
            .solve(&Fun(name), 0.0, &f(&case["y0"]), &t_eval, &mut out)
            .unwrap();
        // SciPy counts the initial-step probe and the first f(t0) too.
        assert_eq!(
            stats.rhs_evals as u64,
            case["nfev"].as_u64().unwrap(),
            "{name} rtol {rtol}"
        );
        let n = Fun(name).dim();
        for (row, want) in case["y"].as_array().unwrap().iter().enumerate() {
            for (k, w) in f(want).into_iter().enumerate() {
                let got = out[row * n + k];
                assert!(
                    (got - w).abs() <= 1e-10 * w.abs().max(1.0),
                    "{name} rtol {rtol} t {} y{k}: {got} vs {w}",
                    t_eval[row]
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 3 * 31 * (5 + 2 + 2));
}
