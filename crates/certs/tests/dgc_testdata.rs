//! Runs the whole EU dgc-testdata suite (copied under tests/data/dgc-testdata) and requires every assertion to pass.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use certs::conformance::{run_dgc_testdata, Outcome};
use std::path::Path;

#[test]
fn dgc_testdata_all_flags_pass() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/dgc-testdata");
    let report = run_dgc_testdata(&dir).expect("runs");
    let mut out = Vec::new();
    report.write(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    println!("{text}");
    assert!(report.files >= 400, "only {} files", report.files);
    let failures: Vec<_> = report
        .assertions
        .iter()
        .filter(|a| matches!(a.outcome, Outcome::Failed(_)))
        .collect();
    assert!(failures.is_empty(), "{} failures:\n{text}", failures.len());
}
