//! The HL7 aECG fixture (record 100's first 10 s, written from the schema structure) read back and compared
//! with the WFDB reader: same values, same beats.

use std::path::Path;

use ecg::aecg::read_aecg_file;

#[test]
fn aecg_fixture_matches_the_wfdb_record() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let a = read_aecg_file(&dir.join("aecg/mitdb100_10s.xml")).unwrap();
    let w = ecg::wfdb::read_record(&dir.join("mitdb/100"))
        .unwrap()
        .to_ecg()
        .unwrap();
    assert_eq!(a.fs, 360.0);
    assert_eq!(a.len(), 3600);
    let names: Vec<&str> = a.leads.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["II", "V5"]);
    for (la, lw) in a.leads.iter().zip(&w.leads) {
        for (x, y) in la.samples.iter().zip(&lw.samples[..3600]) {
            assert!((x - y).abs() < 1e-12);
        }
    }
    let beats_a = ecg::qrs::detect(&a.leads[0].samples, a.fs).unwrap();
    let beats_w: Vec<usize> = ecg::qrs::detect(&w.leads[0].samples, w.fs)
        .unwrap()
        .into_iter()
        .filter(|&b| b < 3600)
        .collect();
    assert_eq!(beats_a.len(), 13, "{beats_a:?}");
    assert_eq!(beats_a, beats_w);
}
