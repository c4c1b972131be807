//! pydicom's 12-lead ECG (`waveform_ecg.dcm`) read with dicom-rs and checked against pydicom's own decoding.

use std::path::{Path, PathBuf};

use ecg::dicom::{read_dicom_bytes, read_dicom_file};
use serde_json::Value;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/dicom")
        .join(name)
}

#[test]
fn matches_pydicom_decoding() {
    let dcm = read_dicom_file(&data("waveform_ecg.dcm")).unwrap();
    let reference: Value =
        serde_json::from_slice(&std::fs::read(data("pydicom_reference.json")).unwrap()).unwrap();
    let groups = reference["groups"].as_array().unwrap();
    assert_eq!(dcm.groups.len(), groups.len());
    for (g, r) in dcm.groups.iter().zip(groups) {
        assert_eq!(g.label, r["label"].as_str().unwrap());
        assert_eq!(g.ecg.fs, r["fs"].as_f64().unwrap());
        assert_eq!(g.ecg.len() as u64, r["samples"].as_u64().unwrap());
        let positions: Vec<usize> = r["positions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_u64().unwrap() as usize)
            .collect();
        for (c, lead) in g.ecg.leads.iter().enumerate() {
            let want = r["values_uV"][c].as_array().unwrap();
            for (k, &p) in positions.iter().enumerate() {
                let w = want[k].as_f64().unwrap() / 1000.0;
                assert!((lead.samples[p] - w).abs() < 1e-9, "{} {c} @{p}", g.label);
            }
            let sum: f64 = lead.samples.iter().sum();
            let want_sum = r["sums_uV"][c].as_f64().unwrap() / 1000.0;
            assert!((sum - want_sum).abs() < 1e-6, "{} lead {c} sum", g.label);
        }
    }
    let rhythm = dcm.rhythm().unwrap();
    assert!(rhythm.is_twelve_lead());
    let names: Vec<&str> = rhythm.leads.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ecg::signal::STANDARD_LEADS);
    // The Mortara device's own measurements travel in the Waveform Annotation Sequence.
    assert_eq!(dcm.device_measurement("QRS Duration"), Some(75.0));
    assert_eq!(dcm.device_measurement("RR Interval"), Some(982.0));
}

#[test]
fn malformed_dicom_is_rejected_with_a_reason() {
    let good = std::fs::read(data("waveform_ecg.dcm")).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "no \"DICM\" magic"),
        ("text", b"hello world".to_vec(), "no \"DICM\" magic"),
        ("preamble only", good[..132].to_vec(), "DICOM"),
        (
            "truncated in the middle",
            good[..good.len() / 2].to_vec(),
            "DICOM",
        ),
    ];
    for (name, bytes, want) in cases {
        let err = read_dicom_bytes(&bytes).unwrap_err().to_string();
        assert!(err.contains(want), "{name}: {err}");
    }
    // Every truncation point yields an error or a shorter waveform, never a panic.
    for cut in (0..good.len()).step_by(997) {
        let _ = read_dicom_bytes(&good[..cut]);
    }
}

/// The SCP-ECG fixture (written by `scripts/make_scp_fixture.py` from this DICOM file's rhythm data with the
/// default Huffman table and second differences) decodes to exactly the DICOM samples.
#[test]
fn scp_fixture_matches_the_dicom_rhythm() {
    let dcm = read_dicom_file(&data("waveform_ecg.dcm")).unwrap();
    let rhythm = dcm.rhythm().unwrap();
    let scp_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/scp/waveform_ecg.scp");
    let scp = ecg::scp::read_scp_file(&scp_path).unwrap();
    assert_eq!(scp.fs, 1000.0);
    assert_eq!(scp.len(), 10_000);
    for (a, b) in scp.leads.iter().zip(&rhythm.leads) {
        assert_eq!(a.name, b.name);
        for (x, y) in a.samples.iter().zip(&b.samples) {
            assert!((x - y).abs() < 1e-9, "{}", a.name);
        }
    }
    // Corruptions are caught by the CRCs and the structure checks, never by a panic.
    let good = std::fs::read(&scp_path).unwrap();
    let mut flipped = good.clone();
    flipped[500] ^= 0x10;
    let table: Vec<(&str, Vec<u8>, &str)> = vec![
        ("flipped bit", flipped, "CRC mismatch"),
        ("truncated", good[..good.len() - 10].to_vec(), "declares"),
        ("tiny", good[..10].to_vec(), "too short"),
    ];
    for (name, bytes, want) in table {
        let e = ecg::scp::read_scp(&bytes).unwrap_err().to_string();
        assert!(e.contains(want), "{name}: {e}");
    }
}

/// Inputs found by the `dicom` fuzz target (mutations of a cut-down copy of pydicom's file) declare values of
/// up to 4 GB; dicom-parser would allocate and zero them before failing (4.2 GB resident, seconds). The
/// guard (crate `caravan-dicom-guard`) rejects each before dicom-rs reads the value, naming the element.
#[test]
fn hostile_declared_lengths_are_rejected_before_parsing() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/dicom/fuzz");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let e = read_dicom_bytes(&bytes).unwrap_err().to_string();
        assert!(e.contains("declares") && e.contains("remain"), "{e}");
        seen += 1;
    }
    assert_eq!(seen, 12);
}

/// A later find (441 bytes). Its transfer syntax UID is "1.2.840.10008.1.2" padded with NULs and a final TAB:
/// dicom-rs trims all whitespace and reads the data set as implicit VR little endian, where a group length
/// (0000,0000) UL declares 2,415,919,104 bytes; dicom-parser's `read_value_ul` reserves that many bytes of
/// u32s before reading. The earlier hand-written pre-scan trimmed only NULs and spaces, so it walked the data
/// set as explicit VR and never saw that header. The guard now takes the transfer syntax from dicom-object's
/// own meta reader and walks the data set with dicom-parser's own token reader.
#[test]
fn open_fuzz_finding_is_rejected_before_parsing() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/dicom/fuzz-open/oom-3640ba3ee625.dcm");
    let e = read_dicom_bytes(&std::fs::read(path).unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("element (0000,0000) UL")
            && e.contains("declares 2415919104 bytes but only 98 remain"),
        "{e}"
    );
}
