//! Parameter recovery on simulated outbreaks with known truth (fixed seeds), and ensemble forecasts that cover the
//! truth.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use forecast::ensemble::{forecast, ForecastConfig};
use forecast::fit::{fit, FitSpec, Likelihood, Observation};
use forecast::model::{EpiParams, Model, ModelKind};
use forecast::sim::simulate_reports;
use rand::SeedableRng;

struct Case {
    seed: u64,
    kind: ModelKind,
    n: f64,
    beta: f64,
    gamma: f64,
    i0: f64,
    rho: f64,
    size: f64,
    days: usize,
}

#[test]
fn constant_beta_parameters_are_recovered() {
    let cases = [
        Case {
            seed: 1,
            kind: ModelKind::Seir { sigma: 1.0 / 3.0 },
            n: 1e5,
            beta: 0.6,
            gamma: 0.25,
            i0: 5.0,
            rho: 0.4,
            size: 20.0,
            days: 100,
        },
        Case {
            seed: 2,
            kind: ModelKind::Seir { sigma: 0.5 },
            n: 5e5,
            beta: 0.5,
            gamma: 0.25,
            i0: 20.0,
            rho: 0.3,
            size: 10.0,
            days: 120,
        },
        Case {
            seed: 3,
            kind: ModelKind::Sir,
            n: 2e4,
            beta: 0.8,
            gamma: 0.4,
            i0: 3.0,
            rho: 0.6,
            size: 30.0,
            days: 60,
        },
    ];
    for c in cases {
        let model = Model::new(c.kind, c.n).unwrap();
        let truth = EpiParams {
            beta: vec![c.beta],
            knots: vec![],
            gamma: c.gamma,
            i0: c.i0,
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(c.seed);
        let data = simulate_reports(
            &mut rng,
            &model,
            &truth,
            Observation::Incidence,
            c.rho,
            c.size,
            c.days,
        )
        .unwrap();
        let spec = FitSpec::new(model.clone(), Observation::Incidence, Likelihood::NegBin);
        let f = fit(&spec, &data).unwrap();
        let r0 = c.beta / c.gamma;
        // The optimiser must have found a point at least as good as the truth.
        let at_truth = f.objective_at(
            &data,
            &f.encode(&forecast::fit::Decoded {
                epi: truth.clone(),
                rho: c.rho,
                dispersion: Some(c.size),
            }),
        );
        assert!(
            f.objective_at(&data, &f.theta) <= at_truth + 1e-6,
            "seed {}: optimum worse than truth",
            c.seed
        );
        eprintln!(
            "seed {}: beta {:?} gamma {:?} R0 {:?} rho {:?} phi {:?}",
            c.seed, f.beta[0], f.gamma, f.r0, f.rho, f.dispersion
        );
        for (name, est, want, tol) in [
            // β and γ are only weakly identified separately from incidence with ρ unknown; R0 is well identified.
            ("beta", f.beta[0], c.beta, 0.3),
            ("gamma", f.gamma, c.gamma, 0.35),
            ("R0", f.r0, r0, 0.15),
            ("rho", f.rho, c.rho, 0.15),
        ] {
            assert!(
                (est.value / want - 1.0).abs() < tol,
                "seed {} {name}: {} vs {want}",
                c.seed,
                est.value
            );
            assert!(
                est.low <= want && want <= est.high,
                "seed {} {name}: {want} not in [{}, {}]",
                c.seed,
                est.low,
                est.high
            );
        }
    }
}

#[test]
fn poisson_data_fit_by_nb_converges() {
    // No overdispersion at all: the NB size has no finite MLE; the weak prior on log φ keeps the fit well posed.
    let model = Model::new(ModelKind::Seir { sigma: 0.3 }, 5e4).unwrap();
    let truth = EpiParams {
        beta: vec![0.6],
        knots: vec![],
        gamma: 0.3,
        i0: 5.0,
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(17);
    let data = simulate_reports(
        &mut rng,
        &model,
        &truth,
        Observation::Incidence,
        0.5,
        f64::INFINITY,
        120,
    )
    .unwrap();
    let f = fit(
        &FitSpec::new(model, Observation::Incidence, Likelihood::NegBin),
        &data,
    )
    .unwrap();
    assert!(f.dispersion.unwrap().value > 20.0, "{:?}", f.dispersion);
    assert!((f.r0.value / 2.0 - 1.0).abs() < 0.25, "{:?}", f.r0);
    assert!(f.r0.low <= 2.0 && 2.0 <= f.r0.high, "{:?}", f.r0);
}

#[test]
fn piecewise_r_of_t_is_recovered() {
    // An intervention on day 40 cuts transmission from R = 2.5 to R = 0.8.
    let model = Model::new(ModelKind::Seir { sigma: 0.25 }, 1e6).unwrap();
    let gamma = 0.2;
    let truth = EpiParams {
        beta: vec![0.5, 0.16],
        knots: vec![40],
        gamma,
        i0: 10.0,
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let data = simulate_reports(
        &mut rng,
        &model,
        &truth,
        Observation::Incidence,
        0.5,
        50.0,
        90,
    )
    .unwrap();
    let mut spec = FitSpec::new(model, Observation::Incidence, Likelihood::NegBin);
    spec.knots = vec![20, 40, 60];
    // R(t) needs the generation interval: the infectious period is taken as known, as in any R_t method.
    spec.fixed_gamma = Some(gamma);
    spec.rw_sd = 1.0;
    let f = fit(&spec, &data).unwrap();
    let r = f.r_of_t(90);
    eprintln!("pieces {:?} gamma {:?}", f.beta, f.gamma);
    // Early pieces are informed by few cases; test the well-informed ones either side of the change.
    for (day, want) in [(30, 2.5), (50, 0.8), (80, 0.8)] {
        assert!(
            (r[day - 1] / want - 1.0).abs() < 0.2,
            "day {day}: R {} vs {want}",
            r[day - 1]
        );
    }
}

/// SEIR (σ = 1/3, γ = 0.25, R0 = 2.2, N = 200,000), 30 % reported with NB(20) noise, 110 days, seed 5.
fn outbreak_110_days() -> (Model, Vec<f64>) {
    let model = Model::new(ModelKind::Seir { sigma: 1.0 / 3.0 }, 2e5).unwrap();
    let truth = EpiParams {
        beta: vec![0.55],
        knots: vec![],
        gamma: 0.25,
        i0: 5.0,
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let all = simulate_reports(
        &mut rng,
        &model,
        &truth,
        Observation::Incidence,
        0.3,
        20.0,
        110,
    )
    .unwrap();
    (model, all)
}

#[test]
fn growth_phase_only_fit_says_gamma_is_not_identifiable() {
    let (model, all) = outbreak_110_days();
    let spec = FitSpec::new(model, Observation::Incidence, Likelihood::NegBin);
    let err = fit(&spec, &all[..60])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("--gamma"), "{err}");
}

#[test]
fn ensemble_forecast_covers_the_truth() {
    let (model, all) = outbreak_110_days();
    // Fit the first 60 days (before the peak) and forecast 50 more.
    let data = &all[..60];
    let mut spec = FitSpec::new(model, Observation::Incidence, Likelihood::NegBin);
    // Before the peak only the growth rate is identified, not β and γ separately: the infectious period is known.
    spec.fixed_gamma = Some(0.25);
    let f = fit(&spec, data).unwrap();
    let t0 = std::time::Instant::now();
    let fc = forecast(
        &f,
        data,
        &ForecastConfig {
            horizon: 50,
            members: 1000,
            seed: 3,
        },
    )
    .unwrap();
    let elapsed = t0.elapsed();
    eprintln!(
        "1,000-member ensemble in {elapsed:?}, {} redrawn",
        fc.redrawn
    );
    assert_eq!(fc.days.len(), 110);
    let mut inside = 0;
    for d in &fc.days[60..] {
        assert!(d.lo95 <= d.lo50 && d.lo50 <= d.median && d.median <= d.hi50 && d.hi50 <= d.hi95);
        if d.lo95 <= all[d.day - 1] && all[d.day - 1] <= d.hi95 {
            inside += 1;
        }
    }
    assert!(
        inside >= 45,
        "only {inside}/50 forecast days inside the 95 % band"
    );
    let sc = fc.score(&all, 61, 110).unwrap();
    eprintln!("score {sc:?}");
    assert!(sc.coverage95 >= 0.9 && sc.coverage50 >= 0.3, "{sc:?}");
    assert!(sc.crps > 0.0 && sc.wis > 0.0 && sc.crps.is_finite());
    // Against a deliberately wrong truth (the observations tripled) every score must be worse.
    let wrong: Vec<f64> = all.iter().map(|v| 3.0 * v).collect();
    let bad = fc.score(&wrong, 61, 110).unwrap();
    assert!(bad.crps > sc.crps && bad.wis > sc.wis && bad.coverage95 < sc.coverage95);
    assert!(fc.score(&all, 0, 10).is_err() && fc.score(&all[..50], 61, 110).is_err());
    // The same seed gives the same ensemble.
    let again = forecast(
        &f,
        data,
        &ForecastConfig {
            horizon: 50,
            members: 1000,
            seed: 3,
        },
    )
    .unwrap();
    assert_eq!(again.days, fc.days);
}
