//! The 1978 boarding-school outbreak (SIR, N = 763, I(0) = 1, fitted to beds in use I(t)) against the reference
//! fits computed with R (deSolve + optim) on the project's machine: table of (criterion, β, γ).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use forecast::data::read_column_file;
use forecast::fit::{fit, FitSpec, Likelihood, Observation};
use forecast::model::{Model, ModelKind};
use std::path::PathBuf;

fn school() -> Vec<f64> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/influenza_england_1978_school.csv");
    read_column_file(&p, "in_bed").unwrap()
}

#[test]
fn boarding_school_reference_fits() {
    let data = school();
    let table = [
        (Likelihood::NegBin, 1.7266, 0.5410, 3.191),
        (Likelihood::LeastSquares, 1.6692, 0.4435, 3.764),
        (Likelihood::Poisson, 1.6894, 0.4761, 3.548),
    ];
    for (lik, beta, gamma, r0) in table {
        let mut spec = FitSpec::new(
            Model::new(ModelKind::Sir, 763.0).unwrap(),
            Observation::Prevalence,
            lik,
        );
        spec.fixed_i0 = Some(1.0);
        spec.fixed_rho = Some(1.0);
        let f = fit(&spec, &data).unwrap();
        let rel = |a: f64, b: f64| (a - b).abs() / b;
        eprintln!(
            "{lik:?}: beta {} gamma {} R0 {} nll {} sse {}",
            f.beta[0].value, f.gamma.value, f.r0.value, f.nll, f.sse
        );
        assert!(
            rel(f.beta[0].value, beta) < 0.01,
            "{lik:?} beta {}",
            f.beta[0].value
        );
        assert!(
            rel(f.gamma.value, gamma) < 0.01,
            "{lik:?} gamma {}",
            f.gamma.value
        );
        assert!(rel(f.r0.value, r0) < 0.01, "{lik:?} R0 {}", f.r0.value);
        // The intervals must bracket the estimate and be of a plausible width.
        for e in [f.beta[0], f.gamma, f.r0] {
            assert!(e.low < e.value && e.value < e.high);
            assert!(e.high / e.low < 1.5, "{e:?}");
        }
        if lik == Likelihood::NegBin {
            let phi = f.dispersion.unwrap().value;
            assert!(rel(phi, 11.97) < 0.02, "phi {phi}");
            assert!((f.nll - 60.835).abs() < 0.01, "nll {}", f.nll);
        }
        if lik == Likelihood::LeastSquares {
            assert!((f.sse - 4121.9).abs() < 1.0, "sse {}", f.sse);
        }
    }
}

#[test]
fn boarding_school_profile_intervals() {
    let data = school();
    let mut spec = FitSpec::new(
        Model::new(ModelKind::Sir, 763.0).unwrap(),
        Observation::Prevalence,
        Likelihood::NegBin,
    );
    spec.fixed_i0 = Some(1.0);
    spec.fixed_rho = Some(1.0);
    let f = fit(&spec, &data).unwrap();
    let p = f.profile_intervals(&data).unwrap();
    eprintln!(
        "profile {p:?}\nwald beta {:?} gamma {:?} R0 {:?} phi {:?}",
        f.beta[0], f.gamma, f.r0, f.dispersion
    );
    let phi = p.dispersion.unwrap();
    for (prof, wald) in [
        (p.beta, f.beta[0]),
        (p.gamma, f.gamma),
        (p.r0, f.r0),
        (phi, f.dispersion.unwrap()),
    ] {
        assert!(prof.low < prof.value && prof.value < prof.high, "{prof:?}");
        // Close to the Wald interval where the likelihood is near-quadratic (β, γ, R0), never wildly different.
        let w = wald.high.ln() - wald.low.ln();
        assert!(
            (prof.low.ln() - wald.low.ln()).abs() < 0.5 * w,
            "{prof:?} vs {wald:?}"
        );
        assert!(
            (prof.high.ln() - wald.high.ln()).abs() < 0.5 * w,
            "{prof:?} vs {wald:?}"
        );
    }
    // ρ was fixed, so its interval is degenerate.
    assert_eq!((p.rho.low, p.rho.high), (1.0, 1.0));
}
