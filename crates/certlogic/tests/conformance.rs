//! Conformance over the published test data copied into `tests/data` (see `tests/data/SOURCES.md`).

// Helpers outside #[test] functions unwrap too: a fixture that fails to load must fail the test.
#![allow(clippy::unwrap_used)]

use certlogic::conformance::{run_certlogic_suite, run_rules_suite};
use std::path::PathBuf;

fn data(sub: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(sub)
}

#[test]
fn certlogic_specification_test_suite_passes_completely() {
    let report = run_certlogic_suite(&data("certlogic/testSuite")).unwrap();
    assert_eq!(report.failures, Vec::<String>::new());
    // 60 cases with 232 assertions, of which 14 carry (or inherit) a "skip" directive.
    assert_eq!((report.passed, report.skipped), (218, 14));
}

#[test]
fn certlogic_validation_test_suite_passes_completely() {
    let report = run_certlogic_suite(&data("certlogic/validation-testSuite")).unwrap();
    assert_eq!(report.failures, Vec::<String>::new());
    assert_eq!((report.passed, report.skipped), (23, 0));
}

#[test]
fn whole_certlogic_folder_counts_both_suites() {
    let report = run_certlogic_suite(&data("certlogic")).unwrap();
    assert_eq!(report.summary(), "241 passed, 0 failed, 14 skipped");
}

#[test]
fn country_rules_tests_pass_completely() {
    let report = run_rules_suite(&data("dcc-rules")).unwrap();
    assert_eq!(report.failures, Vec::<String>::new());
    assert_eq!(report.summary(), "518 passed, 0 failed, 0 skipped");
}

#[test]
fn a_single_suite_file_can_be_run() {
    let report = run_certlogic_suite(&data("certlogic/testSuite/ins-with-nulls.json")).unwrap();
    assert_eq!(report.summary(), "5 passed, 0 failed, 4 skipped");
    let report = run_rules_suite(&data("dcc-rules/NL/GR-NL-0002/rule.json")).unwrap();
    assert_eq!(report.summary(), "4 passed, 0 failed, 0 skipped");
}
