//! Interval measurements on pydicom's 12-lead ECG, against physiological reference ranges and the
//! acquiring device's own measurements (Mortara ELI 250, stored in the file's Waveform Annotation Sequence:
//! RR 982, PR 161, QRS 75, QT 368, QTc 370 ms). The median beat with our boundaries and the device's was
//! also plotted and inspected by eye (see README): they coincide within a few milliseconds.

use std::path::Path;

use ecg::dicom::read_dicom_file;
use ecg::measure::{measure, median_beat};
use ecg::signal::Ecg;

// A fixture loader shared by the tests below; a missing fixture should fail them loudly.
#[allow(clippy::expect_used)]
fn twelve_lead() -> (Ecg, ecg::dicom::DicomEcg) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/dicom/waveform_ecg.dcm");
    let dcm = read_dicom_file(&path).expect("fixture reads");
    let rhythm = dcm.rhythm().expect("fixture has a rhythm group").clone();
    (rhythm, dcm)
}

#[test]
fn twelve_lead_measurements_are_plausible_and_agree_with_the_device() {
    let (ecg, dcm) = twelve_lead();
    let m = measure(&ecg).unwrap();
    eprintln!("{}", serde_json::to_string(&m).unwrap());
    if let Ok(out) = std::env::var("ECG_DUMP_MEDIAN") {
        let mb = median_beat(&ecg, &m.r_peaks, m.rr_mean_ms / 1000.0).unwrap();
        let dump = serde_json::json!({"pre": mb.pre, "leads": mb.leads, "fid": m.fiducials});
        std::fs::write(out, dump.to_string()).unwrap();
    }
    // Ten beats in ten seconds at about 61 bpm.
    assert_eq!(m.beats, 10);
    // (name, ours, adult resting reference range, device value, allowed difference from the device)
    let pr = m.pr_interval_ms.expect("sinus rhythm has a P wave");
    let table = [
        (
            "heart rate",
            m.heart_rate_bpm,
            (50.0, 100.0),
            60_000.0 / 982.0,
            1.0,
        ),
        (
            "RR",
            m.rr_mean_ms,
            (600.0, 1200.0),
            dcm.device_measurement("RR Interval").unwrap(),
            5.0,
        ),
        (
            "PR",
            pr,
            (120.0, 200.0),
            dcm.device_measurement("PR Interval").unwrap(),
            10.0,
        ),
        (
            "QRS",
            m.qrs_duration_ms,
            (60.0, 110.0),
            dcm.device_measurement("QRS Duration").unwrap(),
            10.0,
        ),
        (
            "QT",
            m.qt_interval_ms,
            (320.0, 440.0),
            dcm.device_measurement("QT Interval").unwrap(),
            15.0,
        ),
        (
            "QTc Bazett",
            m.qtc_bazett_ms,
            (340.0, 450.0),
            dcm.device_measurement("QTc Interval").unwrap(),
            15.0,
        ),
        (
            "QTc Fridericia",
            m.qtc_fridericia_ms,
            (340.0, 450.0),
            370.0,
            15.0,
        ),
    ];
    for (name, ours, (lo, hi), device, tol) in table {
        assert!(
            (lo..=hi).contains(&ours),
            "{name} {ours} outside {lo}..{hi}"
        );
        assert!(
            (ours - device).abs() <= tol,
            "{name}: ours {ours}, device {device}"
        );
    }
    // At 61 bpm the two corrections stay within a few ms of QT and of each other.
    assert!((m.qtc_bazett_ms - m.qtc_fridericia_ms).abs() < 3.0);
    let rr_s: f64 = m.rr_mean_ms / 1000.0;
    assert!((m.qtc_bazett_ms - m.qt_interval_ms / rr_s.sqrt()).abs() < 1e-9);
    assert!((m.qtc_fridericia_ms - m.qt_interval_ms / rr_s.cbrt()).abs() < 1e-9);
}

#[test]
fn limb_leads_alone_give_the_same_intervals_within_tolerance() {
    let (ecg, _) = twelve_lead();
    let all = measure(&ecg).unwrap();
    let limb = Ecg::new(ecg.fs, ecg.leads[..6].to_vec()).unwrap();
    let m = measure(&limb).unwrap();
    assert_eq!(m.r_peaks.len(), all.r_peaks.len());
    assert!(
        (m.qrs_duration_ms - all.qrs_duration_ms).abs() <= 12.0,
        "{m:?}"
    );
    assert!(
        (m.qt_interval_ms - all.qt_interval_ms).abs() <= 20.0,
        "{m:?}"
    );
}

#[test]
fn heart_rate_on_record_100_matches_the_reference_annotations() {
    let rec = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/mitdb/100");
    let ecg = ecg::wfdb::read_record(&rec).unwrap().to_ecg().unwrap();
    let anns = ecg::wfdb::read_annotations(&rec, "atr").unwrap();
    let beats = ecg::score::reference_beats(&anns);
    let ref_rr = (beats[beats.len() - 1] - beats[0]) as f64 / (beats.len() - 1) as f64 / ecg.fs;
    let m = measure(&ecg).unwrap();
    assert!(
        (m.heart_rate_bpm - 60.0 / ref_rr).abs() < 0.5,
        "{} vs {}",
        m.heart_rate_bpm,
        60.0 / ref_rr
    );
    // Record 100 is sinus rhythm with normal conduction.
    eprintln!(
        "record 100: {:?} {} {} {:?}",
        m.heart_rate_bpm, m.qrs_duration_ms, m.qt_interval_ms, m.pr_interval_ms
    );
    assert!(
        (50.0..=110.0).contains(&m.qrs_duration_ms),
        "{}",
        m.qrs_duration_ms
    );
    assert!(
        m.qt_interval_ms > 250.0 && m.qt_interval_ms < 450.0,
        "{}",
        m.qt_interval_ms
    );
}

#[test]
fn too_few_beats_is_an_error_not_a_panic() {
    let flat = Ecg::new(
        500.0,
        vec![ecg::Lead {
            name: "II".into(),
            samples: vec![0.0; 5000],
        }],
    )
    .unwrap();
    assert!(measure(&flat).is_err());
    let tiny = Ecg::new(
        500.0,
        vec![ecg::Lead {
            name: "II".into(),
            samples: vec![0.0; 10],
        }],
    )
    .unwrap();
    assert!(measure(&tiny).is_err());
}

#[test]
fn intervals_survive_baseline_wander_and_noise() {
    use std::f64::consts::PI;
    let (mut ecg, _) = twelve_lead();
    let clean = measure(&ecg).unwrap();
    // Deterministic noise: a linear congruential sequence mapped to ±25 µV, plus 0.5 mV respiration wander
    // and 50 Hz mains at 50 µV.
    let mut state: u64 = 12345;
    for lead in &mut ecg.leads {
        for (i, v) in lead.samples.iter_mut().enumerate() {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
            let t = i as f64 / 1000.0;
            *v += 0.05 * u + 0.5 * (2.0 * PI * 0.25 * t).sin() + 0.05 * (2.0 * PI * 50.0 * t).sin();
        }
    }
    let noisy = measure(&ecg).unwrap();
    assert_eq!(noisy.r_peaks.len(), clean.r_peaks.len());
    let table = [
        ("QRS", noisy.qrs_duration_ms, clean.qrs_duration_ms, 8.0),
        ("QT", noisy.qt_interval_ms, clean.qt_interval_ms, 15.0),
        (
            "PR",
            noisy.pr_interval_ms.unwrap_or(0.0),
            clean.pr_interval_ms.unwrap_or(0.0),
            15.0,
        ),
        ("HR", noisy.heart_rate_bpm, clean.heart_rate_bpm, 0.5),
    ];
    for (name, a, b, tol) in table {
        eprintln!("{name}: noisy {a:.1}, clean {b:.1}");
        assert!((a - b).abs() <= tol, "{name}: noisy {a}, clean {b}");
    }
}

#[test]
fn arbitrary_signals_give_results_or_errors_never_panics() {
    let mut state: u64 = 7;
    let mut noise = |n: usize, scale: f64| -> Vec<f64> {
        (0..n)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                ((state >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * scale
            })
            .collect()
    };
    let cases: Vec<(f64, Vec<f64>)> = vec![
        (500.0, noise(5000, 1.0)),
        (500.0, noise(5000, 1e-9)),
        (250.0, vec![1.0; 3000]),
        (1000.0, noise(1200, 3.0)),
        (50.0, noise(60, 1.0)),
        (360.0, {
            let mut x = noise(4000, 0.1);
            x[1000..3000].iter_mut().for_each(|v| *v = f64::NAN);
            x
        }),
        (360.0, vec![f64::NAN; 4000]),
    ];
    for (fs, x) in cases {
        let ecg = Ecg::new(
            fs,
            vec![ecg::Lead {
                name: "II".into(),
                samples: x,
            }],
        )
        .unwrap();
        let beats = ecg::qrs::detect_ecg(&ecg).unwrap();
        let _ = measure(&ecg);
        let svg = ecg::render::render_svg(&ecg, &beats, None, &Default::default());
        assert!(svg.ends_with("</svg>\n"));
    }
}
