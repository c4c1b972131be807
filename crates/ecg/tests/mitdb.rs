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
