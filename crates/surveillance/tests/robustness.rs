//! Nothing panics: random series (empty-ish, all zeros, huge counts, fractions), random ranges and random
//! parameters go through every method; each call must return rows for exactly the range or a typed error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use surveillance::*;

fn random_series(rng: &mut StdRng) -> Vec<f64> {
    let len = match rng.gen_range(0..4) {
        0 => rng.gen_range(1..20),
        1 => rng.gen_range(20..120),
        _ => rng.gen_range(250..420),
    };
    let kind = rng.gen_range(0..5);
    (0..len)
        .map(|_| match kind {
            0 => 0.0,
            1 => rng.gen_range(0..3) as f64,
            2 => rng.gen_range(0..1_000_000_000u64) as f64,
            3 => rng.gen_range(0.0..5.0),
            _ => {
                if rng.gen_bool(0.9) {
                    0.0
                } else {
                    rng.gen_range(1..50) as f64
                }
            }
        })
        .collect()
}

fn random_method(rng: &mut StdRng) -> Method {
    let alpha = if rng.gen_bool(0.9) {
        rng.gen_range(0.001..0.5)
    } else {
        rng.gen_range(-1.0..2.0)
    };
    let b = rng.gen_range(0..7);
    let w = rng.gen_range(0..8);
    let ears = EarsParams {
        baseline: rng.gen_range(0..12),
        min_sigma: rng.gen_range(-0.5..2.0),
        alpha,
    };
    match rng.gen_range(0..10) {
        0 => Method::EarsC1(ears),
        1 => Method::EarsC2(ears),
        2 => Method::EarsC3(ears),
        3 => Method::EarsC3Textbook(ears),
        4 => Method::Farrington(FarringtonParams {
            b,
            w,
            alpha,
            trend: rng.gen_bool(0.5),
            reweight: rng.gen_bool(0.8),
            ..FarringtonParams::default()
        }),
        5 => Method::FarringtonFlexible(FlexibleParams {
            b,
            w,
            alpha,
            no_periods: rng.gen_range(0..12),
            past_weeks_not_included: Some(rng.gen_range(0..40)),
            p_threshold_trend: rng.gen_range(0.0..1.2),
            weights_threshold: rng.gen_range(-1.0..3.0),
            threshold_method: [
                ThresholdMethod::Delta,
                ThresholdMethod::Muan,
                ThresholdMethod::NbPlugin,
            ][rng.gen_range(0..3)],
            ..FlexibleParams::default()
        }),
        6 => Method::Cusum(CusumParams {
            k: rng.gen_range(-1.0..3.0),
            h: rng.gen_range(-1.0..6.0),
            m: [
                CusumReference::PreRangeMean,
                CusumReference::Fixed(rng.gen_range(-1.0..5.0)),
                CusumReference::HarmonicGlm,
            ][rng.gen_range(0..3)],
            trans: [
                CusumTrans::Standard,
                CusumTrans::Rossi,
                CusumTrans::Anscombe,
                CusumTrans::PearsonNegBin(0.2),
            ][rng.gen_range(0..4)],
        }),
        7 => Method::Bayes(BayesParams {
            b,
            w,
            act_y: rng.gen_bool(0.5),
            alpha,
        }),
        8 => Method::Cdc(CdcParams {
            b,
            m: rng.gen_range(0..4),
            alpha,
        }),
        _ => Method::Glrnb(GlrParams {
            c_arl: rng.gen_range(-1.0..8.0),
            direction: if rng.gen_bool(0.5) {
                GlrDirection::Increase
            } else {
                GlrDirection::Decrease
            },
        }),
    }
}

#[test]
fn random_inputs_never_panic() {
    let mut rng = StdRng::seed_from_u64(42);
    let (mut ok, mut err) = (0, 0);
    for _ in 0..1500 {
        let y = random_series(&mut rng);
        let series = Series::new(y.clone()).unwrap();
        let method = random_method(&mut rng);
        let first = rng.gen_range(0..=y.len() + 2);
        let last = rng.gen_range(first.saturating_sub(1)..=(first + 30).min(y.len() + 3));
        let t0 = std::time::Instant::now();
        let res = detect(&series, &method, first..=last);
        let secs = t0.elapsed().as_secs_f64();
        if secs > 0.5 {
            eprintln!(
                "SLOW {secs:.2}s len {} range {first}..={last} {method:?} y[0..5]={:?}",
                y.len(),
                &y[..y.len().min(5)]
            );
        }
        match res {
            Ok(rows) => {
                ok += 1;
                assert_eq!(rows.len(), last - first + 1, "{method:?}");
                for (r, t) in rows.iter().zip(first..) {
                    assert_eq!(r.t, t);
                    assert!(r.observed.is_finite());
                }
            }
            Err(e) => {
                err += 1;
                assert!(!e.to_string().is_empty());
            }
        }
    }
    // Both outcomes must have been exercised for the test to mean anything.
    assert!(ok > 100 && err > 100, "ok {ok}, err {err}");
}

#[test]
fn invalid_series_are_rejected() {
    assert_eq!(Series::new(vec![]), Err(Error::EmptySeries));
    assert!(matches!(
        Series::new(vec![1.0, -1.0]),
        Err(Error::NegativeCount { t: 2, .. })
    ));
    assert!(matches!(
        Series::new(vec![f64::NAN]),
        Err(Error::NonFiniteCount { t: 1 })
    ));
    assert!(matches!(
        Series::new(vec![f64::INFINITY]),
        Err(Error::NonFiniteCount { t: 1 })
    ));
    let s = Series::new(vec![1.0; 10]).unwrap();
    assert!(s.clone().with_frequency(0).is_err());
    let d = chrono::NaiveDate::from_ymd_opt(2020, 1, 6).unwrap();
    assert!(s.clone().with_dates(vec![d; 9]).is_err());
    assert!(s.with_dates(vec![d; 10]).is_err());
}
