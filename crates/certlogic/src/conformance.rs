//! Conformance runners over the published test data: the CertLogic specification's test suite (and its validation
//! test suite), and the country business rules with their tests.

use crate::files::{json_files, read_json};
use crate::rules::{evaluate_rule, rule_from_json, Outcome, Rule};
use crate::{evaluate, validate_format, Issue, LoadError};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The tally of a conformance run and the failures in it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Assertions (or rule tests) that gave the expected result.
    pub passed: usize,
    /// One line per assertion (or rule test) that did not.
    pub failures: Vec<String>,
    /// Assertions skipped by a `"skip"` directive in the suite.
    pub skipped: usize,
}

impl Report {
    fn check(&mut self, ok: bool, failure: impl FnOnce() -> String) {
        if ok {
            self.passed += 1;
        } else {
            self.failures.push(failure());
        }
    }

    /// The summary line `N passed, M failed, K skipped`.
    pub fn summary(&self) -> String {
        format!(
            "{} passed, {} failed, {} skipped",
            self.passed,
            self.failures.len(),
            self.skipped
        )
    }
}

fn is_skip(v: &Value) -> bool {
    v.get("directive").and_then(Value::as_str) == Some("skip")
}

/// A test file's name relative to the suite directory (or the file's own name when the suite is one file).
fn display(path: &Path, root: &Path) -> String {
    match path.strip_prefix(root) {
        Ok(relative) if !relative.as_os_str().is_empty() => relative.display().to_string(),
        _ => path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        ),
    }
}

/// Runs the CertLogic specification's test suites found under `dir` (searched recursively; or `dir` itself, if it
/// is one suite file): evaluation suites
/// (`cases[].assertions[]`, one count per assertion) and validation suites (`cases[].issues`, one count per case).
/// `"skip"` directives on a file, a case or an assertion are honoured; JSON files of any other shape (the schemas)
/// are ignored.
pub fn run_certlogic_suite(dir: &Path) -> Result<Report, LoadError> {
    let mut files = Vec::new();
    json_files(dir, &mut files)?;
    let mut report = Report::default();
    let mut suites = 0;
    for path in &files {
        let suite = read_json(path)?;
        let Some(cases) = suite.get("cases").and_then(Value::as_array) else {
            continue;
        };
        suites += 1;
        let name = display(path, dir);
        let file_skip = is_skip(&suite);
        for (ci, case) in cases.iter().enumerate() {
            let case_name = case
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("(unnamed)");
            let case_skip = file_skip || is_skip(case);
            if let Some(expected) = case.get("issues") {
                if case_skip {
                    report.skipped += 1;
                    continue;
                }
                let expr = case.get("certLogicExpression").unwrap_or(&Value::Null);
                let issues = validate_format(expr);
                let ok = serde_json::to_value(&issues).ok().as_ref() == Some(expected);
                report.check(ok, || {
                    format!(
                        "{name}: validation case #{ci} {expr}: expected issues {expected}, got {}",
                        issues_json(&issues)
                    )
                });
                continue;
            }
            let Some(assertions) = case.get("assertions").and_then(Value::as_array) else {
                return Err(LoadError::Shape {
                    path: path.clone(),
                    what: format!("case #{ci} has neither assertions nor issues"),
                });
            };
            for (ai, assertion) in assertions.iter().enumerate() {
                if case_skip || is_skip(assertion) {
                    report.skipped += 1;
                    continue;
                }
                let Some(expr) = assertion
                    .get("certLogicExpression")
                    .or_else(|| case.get("certLogicExpression"))
                else {
                    return Err(LoadError::Shape {
                        path: path.clone(),
                        what: format!(
                            "case {case_name:?} assertion #{ai} has no CertLogic expression"
                        ),
                    });
                };
                let data = assertion.get("data").unwrap_or(&Value::Null);
                let expected = assertion.get("expected").unwrap_or(&Value::Null);
                let actual = evaluate(expr, data);
                report.check(actual.as_ref() == Ok(expected), || {
                    let got = match &actual {
                        Ok(v) => v.to_string(),
                        Err(e) => format!("error: {e}"),
                    };
                    format!("{name}: {case_name:?} assertion #{ai}: expected {expected}, got {got}")
                });
            }
        }
    }
    if suites == 0 {
        return Err(LoadError::Shape {
            path: dir.to_owned(),
            what: "no CertLogic test suite files found".to_owned(),
        });
    }
    tracing::info!(
        suites,
        passed = report.passed,
        failed = report.failures.len(),
        skipped = report.skipped,
        "CertLogic conformance"
    );
    Ok(report)
}

fn issues_json(issues: &[Issue]) -> String {
    serde_json::to_string(issues).unwrap_or_default()
}

/// One test of a business rule: a payload, an external context and the expected result.
#[derive(Clone, Debug)]
pub struct RuleTest {
    /// The test file.
    pub path: PathBuf,
    /// The test's name.
    pub name: String,
    /// The DCC payload (`null` when the test has none).
    pub payload: Value,
    /// The external context.
    pub external: Value,
    /// Whether the rule should pass.
    pub expected: bool,
}

/// A rule with its tests, as laid out in the business-rules test data (`CC/RULE-ID/rule.json` and
/// `CC/RULE-ID/tests/*.json`).
#[derive(Clone, Debug)]
pub struct RuleWithTests {
    /// The rule file.
    pub path: PathBuf,
    /// The rule.
    pub rule: Rule,
    /// Its tests.
    pub tests: Vec<RuleTest>,
}

/// Finds every `rule.json` under `dir` and loads it with the tests in its `tests` directory.
pub fn load_rule_tests(dir: &Path) -> Result<Vec<RuleWithTests>, LoadError> {
    let mut files = Vec::new();
    json_files(dir, &mut files)?;
    let mut out = Vec::new();
    for path in files
        .iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "rule.json"))
    {
        let value = read_json(path)?;
        let rule = rule_from_json(path, value)?;
        let mut tests = Vec::new();
        let tests_dir = path.with_file_name("tests");
        if tests_dir.is_dir() {
            let mut test_files = Vec::new();
            json_files(&tests_dir, &mut test_files)?;
            for test_path in test_files {
                let test = read_json(&test_path)?;
                let expected = test
                    .get("expected")
                    .and_then(Value::as_bool)
                    .ok_or_else(|| LoadError::Shape {
                        path: test_path.clone(),
                        what: "a rule test needs a boolean \"expected\"".to_owned(),
                    })?;
                tests.push(RuleTest {
                    name: test
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("(unnamed)")
                        .to_owned(),
                    payload: test.get("payload").cloned().unwrap_or(Value::Null),
                    external: test.get("external").cloned().unwrap_or(Value::Null),
                    expected,
                    path: test_path,
                });
            }
        }
        out.push(RuleWithTests {
            path: path.clone(),
            rule,
            tests,
        });
    }
    if out.is_empty() {
        return Err(LoadError::Shape {
            path: dir.to_owned(),
            what: "no rule.json files found".to_owned(),
        });
    }
    Ok(out)
}

/// Runs every rule test under `dir`: the rule must pass when the test expects `true` and fail when it expects `false`;
/// an open outcome (an evaluation error) is always a failure.
pub fn run_rules_suite(dir: &Path) -> Result<Report, LoadError> {
    let rules = load_rule_tests(dir)?;
    let mut report = Report::default();
    for RuleWithTests { rule, tests, .. } in &rules {
        for test in tests {
            let (outcome, reason) = evaluate_rule(rule, &test.payload, &test.external);
            let wanted = if test.expected {
                Outcome::Passed
            } else {
                Outcome::Failed
            };
            report.check(outcome == wanted, || {
                format!(
                    "{} {:?}: expected {wanted:?}, got {outcome:?}{}",
                    display(&test.path, dir),
                    test.name,
                    reason.map(|r| format!(" ({r})")).unwrap_or_default()
                )
            });
        }
    }
    tracing::info!(
        rules = rules.len(),
        passed = report.passed,
        failed = report.failures.len(),
        "business rules conformance"
    );
    Ok(report)
}
