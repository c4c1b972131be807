//! Pixel decoding and rendering compared with pydicom on pydicom's and pydicom-data's test
//! files (expected values in tests/data/expected_pixels.json, made by make_expected.py).
// Helpers outside #[test] functions are test code too.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use sha2::{Digest, Sha256};

const EXPECTED: &str = include_str!("data/expected_pixels.json");

/// Transfer syntaxes dicom-rs 0.10 cannot decode: 12-bit JPEG (process 2 & 4). They must fail
/// with a clear error, never panic.
const KNOWN_UNSUPPORTED: &[&str] = &["JPGExtended.dcm"];

/// JPEG-LS lossless (.80) and near-lossless (.81) transfer syntaxes, found in the file meta group.
fn is_jpeg_ls(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(1024)];
    [
        &b"1.2.840.10008.1.2.4.80"[..],
        &b"1.2.840.10008.1.2.4.81"[..],
    ]
    .iter()
    .any(|ts| head.windows(ts.len()).any(|w| w == *ts))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha_i64(values: &[i64]) -> String {
    let mut h = Sha256::new();
    for v in values {
        h.update(v.to_le_bytes());
    }
    hex(&h.finalize())
}

#[test]
fn decoded_pixels_match_pydicom() {
    let expected: serde_json::Value = serde_json::from_str(EXPECTED).expect("json");
    let cases = expected["cases"].as_array().expect("cases");
    let (mut exact, mut tolerant, mut refused, mut render_ok) = (0, 0, 0, 0);
    let mut failures = Vec::new();
    for case in cases {
        let name = case["file"].as_str().expect("file");
        let path = format!("{}/tests/data/pixels/{name}", env!("CARGO_MANIFEST_DIR"));
        let bytes = std::fs::read(&path).expect("fixture");
        let result = imaging::render::open(&bytes).and_then(|obj| {
            let values = imaging::render::stored_values(&obj, 0)?;
            let rendered = if case["samples_per_pixel"] == 1 {
                Some(imaging::render::render_pixels(&obj, 0, None)?.3)
            } else {
                None
            };
            Ok((values, rendered))
        });
        // Without the `jpeg-ls` feature (CharLS needs cmake) JPEG-LS images must be refused
        // with an error that names the missing codec.
        let jpeg_ls_off = !cfg!(feature = "jpeg-ls") && is_jpeg_ls(&bytes);
        if jpeg_ls_off {
            match &result {
                Err(e) if e.to_string().contains("JPEG-LS") => refused += 1,
                Err(e) => failures.push(format!("{name}: refused without naming JPEG-LS: {e}")),
                Ok(_) => failures.push(format!("{name}: decoded without the jpeg-ls feature")),
            }
            continue;
        }
        if case.get("pydicom_error").is_some() || KNOWN_UNSUPPORTED.contains(&name) {
            match result {
                Err(e) => {
                    eprintln!("{name}: refused as expected: {e}");
                    refused += 1;
                }
                Ok(_) if KNOWN_UNSUPPORTED.contains(&name) => {
                    failures.push(format!("{name}: now decodes; move it to the compared set"))
                }
                Ok(_) => failures.push(format!("{name}: pydicom refuses it but we decoded it")),
            }
            continue;
        }
        let (values, rendered) = match result {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        let n = (case["rows"].as_u64().expect("rows")
            * case["columns"].as_u64().expect("cols")
            * case["samples_per_pixel"].as_u64().expect("spp")) as usize;
        if values.len() != n {
            failures.push(format!("{name}: {} values, expected {n}", values.len()));
            continue;
        }
        let lossy = case["lossy"].as_bool().unwrap_or(false);
        if sha_i64(&values) == case["sha256"].as_str().expect("sha") {
            exact += 1;
        } else if lossy {
            // Lossy decoders may round differently: every sampled value within 2 and the mean
            // within 0.5 of pydicom's.
            let idx = case["sample_index"].as_array().expect("idx");
            let want = case["sample_value"].as_array().expect("vals");
            let worst = idx
                .iter()
                .zip(want)
                .map(|(i, w)| {
                    (values[i.as_u64().expect("i") as usize] - w.as_i64().expect("w")).abs()
                })
                .max()
                .unwrap_or(0);
            let sum: i64 = values.iter().sum();
            let mean_diff = (sum - case["sum"].as_i64().expect("sum")).abs() as f64 / n as f64;
            if worst <= 2 && mean_diff <= 0.5 {
                tolerant += 1;
            } else {
                failures.push(format!(
                    "{name}: lossy decode differs (worst sample {worst}, mean {mean_diff:.3})"
                ));
                continue;
            }
        } else {
            failures.push(format!(
                "{name}: lossless decode differs from pydicom (sum {} vs {})",
                values.iter().sum::<i64>(),
                case["sum"]
            ));
            continue;
        }
        if let Some(r) = rendered {
            let sha = hex(&Sha256::digest(&r));
            let sum: i64 = r.iter().map(|&b| i64::from(b)).sum();
            let exact = sha == case["render_sha256"].as_str().expect("rsha");
            let mean_diff =
                (sum - case["render_sum"].as_i64().expect("rsum")).abs() as f64 / r.len() as f64;
            if exact || (lossy && mean_diff < 1.0) {
                render_ok += 1;
            } else {
                failures.push(format!(
                    "{name}: rendering differs (sum {sum} vs {})",
                    case["render_sum"]
                ));
            }
        }
    }
    eprintln!(
        "pixel conformance: {exact} exact, {tolerant} within lossy tolerance, {refused} refused as expected, {render_ok} renderings equal, of {} files",
        cases.len()
    );
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn monochrome1_renders_inverted() {
    let bytes = std::fs::read(format!(
        "{}/tests/data/pixels/RG1_UNCR_subsampled.dcm",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture");
    let obj = imaging::render::open(&bytes).expect("open");
    let (values, g) = imaging::render::monochrome_values(&obj, 0).expect("values");
    assert_eq!(g.photometric, "MONOCHROME1");
    let window = imaging::render::dataset_window(&obj).expect("window in the data set");
    let (_, _, _, shown) = imaging::render::render_pixels(&obj, 0, Some(window)).expect("render");
    let plain = imaging::render::window_to_u8(&values, window, false);
    assert!(shown.iter().zip(&plain).all(|(a, b)| *a == 255 - *b));
    // The lowest stored value is shown brightest.
    let min_at = values
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
        .expect("pixels");
    assert_eq!(Some(&shown[min_at]), shown.iter().max());
}

#[test]
fn multi_frame_and_bad_frames() {
    let bytes = std::fs::read(format!(
        "{}/tests/data/pixels/emri_small_RLE.dcm",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture");
    let obj = imaging::render::open(&bytes).expect("open");
    let last = imaging::render::stored_values(&obj, 9).expect("frame 10");
    let first = imaging::render::stored_values(&obj, 0).expect("frame 1");
    assert_eq!(last.len(), 64 * 64);
    assert_ne!(first, last);
    assert!(imaging::render::stored_values(&obj, 10).is_err());
    let png =
        imaging::render::render(&obj, &imaging::render::RenderOptions::default()).expect("png");
    assert_eq!(&png[1..4], b"PNG");
}
