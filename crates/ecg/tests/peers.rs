//! Agreement with an established detector (wfdb's XQRS) on a recording without reference annotations:
//! every lead of pydicom's 12-lead ECG. Opt-in: set CARAVAN_ECG_XQRS=1 with `pip install wfdb pydicom`.
//!
//! On this 10 s recording XQRS (wfdb 4.3.1) finds no beat at all on 9 of the 12 leads (its learning phase
//! fails on short, low-amplitude leads); where it finds beats (V1, V5, V6) ours must agree one to one, and
//! ours must find the ten beats on every lead.

use std::path::Path;
use std::process::Command;

use ecg::score::{score, ScoreOptions};

const SCRIPT: &str = r#"
import json, sys
import pydicom
from wfdb import processing
ds = pydicom.dcmread(sys.argv[1])
arr = ds.waveform_array(0) / 1000.0
fs = float(ds.WaveformSequence[0].SamplingFrequency)
print(json.dumps([[int(p) for p in processing.xqrs_detect(sig=arr[:, c], fs=fs, verbose=False)] for c in range(arr.shape[1])]))
"#;

#[test]
fn agrees_with_xqrs_on_every_lead_of_the_12_lead_ecg() {
    if std::env::var("CARAVAN_ECG_XQRS").is_err() {
        eprintln!(
            "skipped: set CARAVAN_ECG_XQRS=1 (needs python3 with `pip install wfdb pydicom`)"
        );
        return;
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/dicom/waveform_ecg.dcm");
    let out = Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let peer: Vec<Vec<i64>> = serde_json::from_slice(&out.stdout).unwrap();
    let dcm = ecg::dicom::read_dicom_file(&path).unwrap();
    let rhythm = dcm.rhythm().unwrap();
    let whole = ScoreOptions {
        window_s: 0.150,
        skip_s: 0.0,
    };
    let mut compared = 0;
    for (lead, theirs) in rhythm.leads.iter().zip(&peer) {
        let ours: Vec<i64> = ecg::qrs::detect(&lead.samples, rhythm.fs)
            .unwrap()
            .into_iter()
            .map(|b| b as i64)
            .collect();
        eprintln!(
            "lead {}: xqrs {} beats, ours {}",
            lead.name,
            theirs.len(),
            ours.len()
        );
        assert_eq!(ours.len(), 10, "lead {}", lead.name);
        if theirs.is_empty() {
            continue;
        }
        compared += 1;
        // XQRS as the reference: every beat it finds we find, and we find nothing it does not.
        let s = score(theirs, &ours, rhythm.fs, &whole);
        assert_eq!(
            s.false_negatives + s.false_positives,
            0,
            "lead {}: {s:?}",
            lead.name
        );
    }
    assert!(compared >= 3, "XQRS found beats on only {compared} lead(s)");
}
