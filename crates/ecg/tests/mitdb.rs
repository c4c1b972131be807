//! Record 100 of the MIT-BIH Arrhythmia Database against its reference annotations.

use std::path::{Path, PathBuf};

use ecg::score::{reference_beats, score, ScoreOptions};
use ecg::wfdb::{read_annotations, read_record};

fn record() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/mitdb/100")
}

#[test]
fn reads_record_100_header_signals_and_annotations() {
    let rec = read_record(&record()).unwrap();
    assert_eq!(rec.header.fs, 360.0);
    assert_eq!(rec.adu.len(), 2);
    assert_eq!(rec.adu[0].len(), 650_000);
    // The header's initial values and checksums (verified while reading) pin the 212 decoding.
    assert_eq!(rec.adu[0][0], 995);
    assert_eq!(rec.adu[1][0], 1011);
    let anns = read_annotations(&record(), "atr").unwrap();
    assert_eq!(anns.len(), 2274);
    assert_eq!(reference_beats(&anns).len(), 2273);
    assert_eq!(anns[0].symbol(), "+");
    assert_eq!(anns[0].aux.as_deref(), Some("(N"));
    assert_eq!(anns[1].sample, 77);
    let count = |s: &str| anns.iter().filter(|a| a.symbol() == s).count();
    assert_eq!((count("N"), count("A"), count("V")), (2239, 33, 1));
    let ecg = rec.to_ecg().unwrap();
    assert_eq!(ecg.leads[0].name, "MLII");
    assert_eq!(ecg.leads[1].name, "V5");
    assert!((ecg.leads[0].samples[0] - (995.0 - 1024.0) / 200.0).abs() < 1e-12);
}

#[test]
fn record_100_v5_and_both_leads() {
    let ecg = read_record(&record()).unwrap().to_ecg().unwrap();
    let reference = reference_beats(&read_annotations(&record(), "atr").unwrap());
    let v5: Vec<i64> = ecg::qrs::detect(&ecg.leads[1].samples, ecg.fs)
        .unwrap()
        .into_iter()
        .map(|d| d as i64)
        .collect();
    let both: Vec<i64> = ecg::qrs::detect_ecg(&ecg)
        .unwrap()
        .into_iter()
        .map(|d| d as i64)
        .collect();
    for (name, det) in [("V5", v5), ("MLII+V5", both)] {
        let s = score(&reference, &det, ecg.fs, &ScoreOptions::default());
        eprintln!("{name}: {s:?}");
        assert!(
            s.sensitivity >= 99.5 && s.positive_predictivity >= 99.5,
            "{name}: {s:?}"
        );
    }
}

#[test]
fn record_100_is_detected_perfectly() {
    let rec = read_record(&record()).unwrap();
    let ecg = rec.to_ecg().unwrap();
    let anns = read_annotations(&record(), "atr").unwrap();
    let det = ecg::qrs::detect(&ecg.leads[0].samples, ecg.fs).unwrap();
    let det: Vec<i64> = det.iter().map(|&d| d as i64).collect();
    let s = score(
        &reference_beats(&anns),
        &det,
        ecg.fs,
        &ScoreOptions::default(),
    );
    eprintln!("{s:?}");
    assert_eq!(s.sensitivity, 100.0, "{s:?}");
    assert_eq!(s.positive_predictivity, 100.0, "{s:?}");
}

/// SplitMix64: a tiny deterministic generator so the synthesised noise is the same on every run.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal deviate (Box–Muller).
    fn gauss(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

fn wander(x: &mut [f64], fs: f64) {
    use std::f64::consts::PI;
    for (i, v) in x.iter_mut().enumerate() {
        let t = i as f64 / fs;
        // Respiration-like wander, a slower drift and a 1.5 mV baseline shift every 97 s that settles over
        // half a second (a raised-cosine transition: wander, not an abrupt electrode pop).
        let phase = t % 97.0;
        let up = (t / 97.0).floor() as i64 % 2 == 1;
        let ramp = if phase < 0.5 {
            0.5 - 0.5 * (PI * phase / 0.5).cos()
        } else {
            1.0
        };
        let shift = 1.5 * if up { ramp } else { 1.0 - ramp };
        let shift = if t < 97.0 { 0.0 } else { shift };
        *v += 1.0 * (2.0 * PI * 0.15 * t).sin()
            + 0.5 * (2.0 * PI * 0.4 * t + 1.0).sin()
            + 0.8 * (2.0 * PI * 0.01 * t).sin()
            + shift;
    }
}

fn noise(x: &mut [f64], fs: f64, sigma: f64, seed: u64) {
    use std::f64::consts::PI;
    let mut rng = Rng(seed);
    for (i, v) in x.iter_mut().enumerate() {
        let t = i as f64 / fs;
        // White (muscle-like) noise plus 60 Hz mains interference.
        *v += sigma * rng.gauss() + 0.2 * (2.0 * PI * 60.0 * t).sin();
    }
}

/// Blanks ten-second segments (WFDB invalid samples, NaN here) and returns them as excluded intervals.
fn gaps(x: &mut [f64], fs: f64, seed: u64) -> Vec<(i64, i64)> {
    let mut rng = Rng(seed);
    let len = (10.0 * fs) as usize;
    let mut out = Vec::new();
    for k in 0..8 {
        // One gap in each 225-second stretch, at a random place inside it.
        let stretch = x.len() / 8;
        let start = k * stretch + (rng.uniform() * (stretch - len) as f64) as usize;
        for v in &mut x[start..start + len] {
            *v = f64::NAN;
        }
        out.push((start as i64, (start + len) as i64));
    }
    out
}

#[test]
fn robust_to_baseline_wander_noise_and_missing_segments() {
    use ecg::score::score_excluding;
    let rec = read_record(&record()).unwrap();
    let ecg = rec.to_ecg().unwrap();
    let fs = ecg.fs;
    let reference = reference_beats(&read_annotations(&record(), "atr").unwrap());
    let clean = ecg.leads[0].samples.clone();
    type Scenario = (
        &'static str,
        fn(&mut Vec<f64>, f64) -> Vec<(i64, i64)>,
        f64,
        f64,
    );
    let table: &[Scenario] = &[
        ("clean", |_, _| vec![], 100.0, 100.0),
        (
            "baseline wander",
            |x, fs| {
                wander(x, fs);
                vec![]
            },
            99.9,
            99.9,
        ),
        (
            "noise 0.1 mV + mains",
            |x, fs| {
                noise(x, fs, 0.1, 1);
                vec![]
            },
            99.9,
            99.9,
        ),
        (
            "noise 0.2 mV + mains",
            |x, fs| {
                noise(x, fs, 0.2, 2);
                vec![]
            },
            99.5,
            99.5,
        ),
        ("missing segments", |x, fs| gaps(x, fs, 3), 100.0, 100.0),
        (
            "noise 0.3 mV + mains",
            |x, fs| {
                noise(x, fs, 0.3, 6);
                vec![]
            },
            99.5,
            99.5,
        ),
        (
            "all together",
            |x, fs| {
                wander(x, fs);
                noise(x, fs, 0.1, 4);
                gaps(x, fs, 5)
            },
            99.9,
            99.9,
        ),
    ];
    for (name, make, min_se, min_ppv) in table {
        let mut x = clean.clone();
        let excluded = make(&mut x, fs);
        let det: Vec<i64> = ecg::qrs::detect(&x, fs)
            .unwrap()
            .into_iter()
            .map(|d| d as i64)
            .collect();
        // Nothing may be detected inside a gap.
        for &(a, b) in &excluded {
            assert!(!det.iter().any(|&d| d >= a && d < b), "{name}: beat in gap");
        }
        let s = score_excluding(&reference, &det, fs, &ScoreOptions::default(), &excluded);
        eprintln!("{name}: {s:?}");
        assert!(s.sensitivity >= *min_se, "{name}: {s:?}");
        assert!(s.positive_predictivity >= *min_ppv, "{name}: {s:?}");
    }
}
