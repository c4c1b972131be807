//! Conformance of Cori et al. R_t against EpiEstim 2.2-4 on the Flu2009 data (goldens in tests/data).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use forecast::data::read_column_file;
use forecast::rt::{cori_rt_parametric, discretise_serial_interval, CoriConfig};
use std::path::PathBuf;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn golden(name: &str) -> Vec<Vec<f64>> {
    let text = std::fs::read_to_string(data(name)).unwrap_or_default();
    text.lines()
        .skip(1)
        .map(|l| {
            l.split(',')
                .map(|c| c.parse::<f64>().unwrap_or(f64::NAN))
                .collect()
        })
        .collect()
}

#[test]
fn serial_interval_matches_epiestim() {
    let want = golden("flu2009_si_distr.csv");
    assert_eq!(want.len(), 33);
    let got = discretise_serial_interval(2.6, 1.5, 32).unwrap();
    // EpiEstim pads the distribution with a final zero at lag T = 32.
    for (row, w) in want.iter().enumerate() {
        let g = got.get(row).copied().unwrap_or(0.0);
        assert!((g - w[1]).abs() < 1e-12, "lag {}: {} vs {}", w[0], g, w[1]);
    }
}

#[test]
fn flu2009_rt_matches_epiestim() {
    let incidence = read_column_file(&data("flu2009_incidence.csv"), "incidence").unwrap();
    let cfg = CoriConfig {
        quantiles: vec![0.025, 0.975],
        ..CoriConfig::default()
    };
    let got = cori_rt_parametric(&incidence, 2.6, 1.5, &cfg).unwrap();
    let want = golden("flu2009_rt_si2.6_1.5.csv");
    assert_eq!(got.len(), want.len());
    let mut checked = 0;
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.t_start as f64, w[0]);
        assert_eq!(g.t_end as f64, w[1]);
        for (name, a, b) in [
            ("mean", g.mean, w[2]),
            ("sd", g.sd, w[3]),
            ("q025", g.quantiles[0], w[4]),
            ("q975", g.quantiles[1], w[5]),
        ] {
            assert!(
                (a - b).abs() < 1e-4,
                "window {}: {name} {a} vs {b}",
                g.t_start
            );
            assert!(
                (a - b).abs() <= 1e-8 * b.abs().max(1.0),
                "window {}: {name} {a} vs {b}",
                g.t_start
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 25 * 4);
}
