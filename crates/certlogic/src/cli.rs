//! Command-line interface: conformance runners, expression evaluation, a rule check and a benchmark.
//!
//! The `caravan` binary mounts [`Command`] (e.g. `caravan cert conformance certlogic DIR`). Results go to stdout,
//! errors to stderr as one line.

use crate::conformance::{load_rule_tests, run_certlogic_suite, run_rules_suite, Report};
use crate::rules::{
    check, evaluate_rule, load_rules, load_value_sets, CertificateType, External, RuleQuery,
};
use crate::{evaluate, DateTime, Outcome};
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Which conformance suite to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Suite {
    /// The CertLogic specification's test suite (`testSuite/`, 232 assertions) and validation test suite.
    Certlogic,
    /// Country business rules with their tests (`CC/RULE-ID/rule.json` + `tests/*.json`).
    Rules,
}

/// The `certlogic` commands.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum Command {
    /// Run a conformance suite: one line per failing case, then `N passed, M failed, K skipped`.
    Conformance {
        /// `certlogic` (specification test suite) or `rules` (country rules with their tests).
        #[arg(value_enum)]
        suite: Suite,
        /// The directory holding the suite.
        dir: PathBuf,
    },
    /// Evaluate a CertLogic expression against a data context and print the result as JSON.
    Eval {
        /// The expression: a JSON file, or inline JSON.
        logic: String,
        /// The data context: a JSON file, or inline JSON.
        #[arg(default_value = "null")]
        data: String,
    },
    /// Check a DCC payload (JSON) against business rules and print {status, deciding, outcomes} as JSON.
    Rules {
        /// A rule file or a directory of rules.
        #[arg(long)]
        rules: PathBuf,
        /// Country of arrival (ISO 3166-1 alpha-2) whose acceptance rules apply.
        #[arg(long)]
        country: String,
        /// Issuing country, whose invalidation rules apply.
        #[arg(long)]
        issuer: Option<String>,
        /// Validation clock (a CertLogic date-time); default: now.
        #[arg(long)]
        at: Option<String>,
        /// Language of the rule descriptions (English fallback).
        #[arg(long, default_value = "en")]
        lang: String,
        /// Value sets: a compressed `{id: [codes]}` file, or EU value-set documents (file or directory).
        #[arg(long)]
        value_sets: Option<PathBuf>,
        /// Certificate type; default: from the payload's v/t/r.
        #[arg(long = "type", value_enum)]
        certificate_type: Option<CertificateType>,
        /// The DCC payload (JSON file).
        payload: PathBuf,
    },
    /// Check rules without evaluating them: one line per problem, then `N rules, M with problems`.
    Lint {
        /// A rule file or a directory of rules.
        rules: PathBuf,
    },
    /// Measure rule evaluations per second over the tests of the rules in DIR (one core).
    Bench {
        /// Directory of rules with tests (as for `conformance rules`).
        dir: PathBuf,
        /// How long to measure each engine.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// A folder whose `node_modules` holds certlogic-js (the reference implementation), to measure it side by
        /// side; default: the `CERTLOGIC_JS_DIR` environment variable, else the peer is skipped.
        #[arg(long, env = "CERTLOGIC_JS_DIR")]
        certlogic_js: Option<PathBuf>,
    },
}

/// Runs a command, printing to stdout and stderr.
pub fn run(cmd: Command) -> ExitCode {
    run_to(
        cmd,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    )
}

/// Runs a command, writing results to `out` and the error line to `err`. Exit code: 0 on success, 1 when a
/// conformance run has failures, 2 on an error.
pub fn run_to(cmd: Command, out: &mut dyn Write, err: &mut dyn Write) -> ExitCode {
    match execute(cmd, out) {
        Ok(code) => code,
        Err(message) => {
            let _ = writeln!(err, "error: {message}");
            ExitCode::from(2)
        }
    }
}

fn io_err(e: std::io::Error) -> String {
    format!("cannot write output: {e}")
}

fn json_arg(arg: &str) -> Result<Value, String> {
    let path = Path::new(arg);
    if path.is_file() {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {arg}: {e}"))?;
        serde_json::from_str(text.trim_start_matches('\u{feff}'))
            .map_err(|e| format!("{arg} is not valid JSON: {e}"))
    } else {
        serde_json::from_str(arg)
            .map_err(|e| format!("{arg:?} is neither a file nor valid JSON: {e}"))
    }
}

fn now() -> Result<DateTime, String> {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| format!("system clock before 1970: {e}"))?
        .as_millis();
    DateTime::from_unix_millis(i64::try_from(ms).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())
}

fn print_report(report: &Report, out: &mut dyn Write) -> Result<ExitCode, String> {
    for line in &report.failures {
        writeln!(out, "{line}").map_err(io_err)?;
    }
    writeln!(out, "{}", report.summary()).map_err(io_err)?;
    Ok(if report.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn execute(cmd: Command, out: &mut dyn Write) -> Result<ExitCode, String> {
    match cmd {
        Command::Conformance { suite, dir } => {
            let report = match suite {
                Suite::Certlogic => run_certlogic_suite(&dir),
                Suite::Rules => run_rules_suite(&dir),
            }
            .map_err(|e| e.to_string())?;
            print_report(&report, out)
        }
        Command::Eval { logic, data } => {
            let result =
                evaluate(&json_arg(&logic)?, &json_arg(&data)?).map_err(|e| e.to_string())?;
            writeln!(out, "{result}").map_err(io_err)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Rules {
            rules,
            country,
            issuer,
            at,
            lang,
            value_sets,
            certificate_type,
            payload,
        } => {
            let all = load_rules(&rules).map_err(|e| e.to_string())?;
            let payload = json_arg(&payload.to_string_lossy())?;
            let clock = match at {
                Some(at) => DateTime::parse(&at).map_err(|e| format!("--at: {e}"))?,
                None => now()?,
            };
            let certificate_type = certificate_type
                .or_else(|| CertificateType::of_payload(&payload))
                .ok_or("cannot tell the certificate type from the payload (exactly one of v, t, r must be a non-empty array); give --type")?;
            let query = RuleQuery {
                arrival_country: &country,
                issuer_country: issuer.as_deref(),
                certificate_type,
                clock,
            };
            let mut external = External::new(clock, country.to_ascii_uppercase());
            external.issuer_country_code = issuer.clone();
            external.language = lang;
            if let Some(path) = value_sets {
                external.value_sets = load_value_sets(&path).map_err(|e| e.to_string())?;
            }
            let report = serde_json::to_string(&check(&all, &query, &payload, &external))
                .map_err(|e| format!("cannot render the verdict: {e}"))?;
            writeln!(out, "{report}").map_err(io_err)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Lint { rules } => {
            let rules = load_rules(&rules).map_err(|e| e.to_string())?;
            let mut flawed = 0;
            for rule in &rules {
                let problems = rule.problems();
                flawed += usize::from(!problems.is_empty());
                for problem in problems {
                    writeln!(out, "{} {}: {problem}", rule.identifier, rule.version)
                        .map_err(io_err)?;
                }
            }
            writeln!(out, "{} rules, {flawed} with problems", rules.len()).map_err(io_err)?;
            Ok(if flawed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Bench {
            dir,
            seconds,
            certlogic_js,
        } => bench(&dir, seconds, certlogic_js.as_deref(), out),
    }
}

fn bench(
    dir: &Path,
    seconds: f64,
    certlogic_js: Option<&Path>,
    out: &mut dyn Write,
) -> Result<ExitCode, String> {
    if !(seconds.is_finite() && seconds > 0.0) {
        return Err(format!(
            "--seconds must be a positive number, not {seconds}"
        ));
    }
    let rules = load_rule_tests(dir).map_err(|e| e.to_string())?;
    let cases: Vec<_> = rules
        .iter()
        .flat_map(|r| r.tests.iter().map(move |t| (&r.rule, t)))
        .collect();
    if cases.is_empty() {
        return Err(format!("no rule tests under {}", dir.display()));
    }
    // Rates are per CPU second of the measuring thread, so that other work on a shared machine does not distort
    // them; the wall-clock time is printed as well.
    let cpu_err = |e: std::io::Error| format!("cannot read the CPU clock: {e}");
    let budget = Duration::from_secs_f64(seconds);
    let (wall, cpu) = (
        Instant::now(),
        cpu_time::ThreadTime::try_now().map_err(cpu_err)?,
    );
    let (mut evaluations, mut passed) = (0u64, 0u64);
    let mut cpu_elapsed = Duration::ZERO;
    while cpu_elapsed < budget {
        for (rule, test) in &cases {
            let (outcome, _) = evaluate_rule(rule, &test.payload, &test.external);
            passed += u64::from(outcome == Outcome::Passed);
            evaluations += 1;
        }
        cpu_elapsed = cpu.try_elapsed().map_err(cpu_err)?;
    }
    let (elapsed, wall) = (cpu_elapsed.as_secs_f64(), wall.elapsed().as_secs_f64());
    let rate = evaluations as f64 / elapsed;
    writeln!(
        out,
        "certlogic (Rust): {evaluations} evaluations of {} rules over {} tests in {elapsed:.2} CPU s ({wall:.2} s wall): \
         {rate:.0} evaluations/s ({:.2} µs each, {passed} passed)",
        rules.len(),
        cases.len(),
        1e6 / rate
    )
    .map_err(io_err)?;
    match certlogic_js {
        None => writeln!(out, "certlogic-js: skipped (set CERTLOGIC_JS_DIR or --certlogic-js to a folder whose node_modules holds certlogic-js)")
            .map_err(io_err)?,
        Some(peer_dir) => {
            let (peer_evaluations, peer_elapsed, peer_passed) = peer::bench(peer_dir, dir, seconds)?;
            let peer_rate = peer_evaluations as f64 / peer_elapsed;
            writeln!(
                out,
                "certlogic-js (node): {peer_evaluations} evaluations in {peer_elapsed:.2} CPU s: {peer_rate:.0} evaluations/s \
                 ({:.2} µs each, {peer_passed} passed)",
                1e6 / peer_rate
            )
            .map_err(io_err)?;
            writeln!(out, "ratio Rust / certlogic-js: {:.2}×", rate / peer_rate).map_err(io_err)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs certlogic-js, the reference implementation, through `node` (it is executed, not ported).
pub mod peer {
    use serde_json::Value;
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// The driver script, embedded so that the CLI works from any directory.
    const SCRIPT: &str = include_str!("../peer/certlogic-js.js");

    fn node_path(dir: &Path) -> PathBuf {
        let modules = dir.join("node_modules");
        if modules.is_dir() {
            modules
        } else {
            dir.to_owned()
        }
    }

    /// A temporary file name unique to this process and call (tests call the peer from parallel threads).
    fn temp_file(stem: &str, ext: &str) -> PathBuf {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        std::env::temp_dir().join(format!("{stem}-{}-{n}.{ext}", std::process::id()))
    }

    fn run(dir: &Path, args: &[&std::ffi::OsStr]) -> Result<String, String> {
        let script = temp_file("certlogic-js-peer", "js");
        std::fs::write(&script, SCRIPT)
            .map_err(|e| format!("cannot write {}: {e}", script.display()))?;
        let output = Command::new("node")
            .arg(&script)
            .args(args)
            .env("NODE_PATH", node_path(dir))
            .output();
        let _ = std::fs::remove_file(&script);
        let output =
            output.map_err(|e| format!("cannot run node (needed for certlogic-js): {e}"))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(format!(
                "certlogic-js failed: {}",
                stderr
                    .lines()
                    .find(|l| l.contains("Error"))
                    .unwrap_or(stderr.trim())
            ));
        }
        String::from_utf8(output.stdout)
            .map_err(|e| format!("certlogic-js printed invalid UTF-8: {e}"))
    }

    /// Measures certlogic-js over the rule tests under `rules_dir`: (evaluations, CPU seconds, passed).
    pub fn bench(dir: &Path, rules_dir: &Path, seconds: f64) -> Result<(u64, f64, u64), String> {
        let secs = seconds.to_string();
        let text = run(
            dir,
            &["bench".as_ref(), rules_dir.as_os_str(), secs.as_ref()],
        )?;
        let mut fields = text.split_whitespace();
        let mut next = |what: &str| {
            fields
                .next()
                .ok_or_else(|| format!("certlogic-js printed no {what}: {text:?}"))
        };
        let evaluations = next("count")?
            .parse()
            .map_err(|e| format!("certlogic-js count: {e}"))?;
        let elapsed = next("time")?
            .parse()
            .map_err(|e| format!("certlogic-js time: {e}"))?;
        let passed = next("passed count")?
            .parse()
            .map_err(|e| format!("certlogic-js passed count: {e}"))?;
        Ok((evaluations, elapsed, passed))
    }

    fn results(values: Vec<Value>) -> Vec<Result<Value, String>> {
        values
            .into_iter()
            .map(|r| match (r.get("value"), r.get("error")) {
                (_, Some(e)) => Err(e.as_str().unwrap_or_default().to_owned()),
                // `undefined` results are dropped by JSON.stringify; they count as null.
                (v, None) => Ok(v.cloned().unwrap_or(Value::Null)),
            })
            .collect()
    }

    /// Evaluates every expression against every data context with certlogic-js: one row of results per context
    /// (this avoids repeating large contexts, such as value sets, once per expression).
    pub fn evaluate_matrix(
        dir: &Path,
        logics: &[Value],
        contexts: &[Value],
    ) -> Result<Vec<Vec<Result<Value, String>>>, String> {
        let input = temp_file("certlogic-js-matrix", "json");
        let json = serde_json::json!({"logics": logics, "contexts": contexts});
        std::fs::write(&input, json.to_string())
            .map_err(|e| format!("cannot write {}: {e}", input.display()))?;
        let text = run(dir, &["matrix".as_ref(), input.as_os_str()]);
        let _ = std::fs::remove_file(&input);
        let rows: Vec<Vec<Value>> =
            serde_json::from_str(&text?).map_err(|e| format!("certlogic-js output: {e}"))?;
        Ok(rows.into_iter().map(results).collect())
    }

    /// Evaluates each `[expression, data]` pair with certlogic-js: `Ok(value)` or `Err(message)` per pair.
    pub fn evaluate_all(
        dir: &Path,
        pairs: &[(Value, Value)],
    ) -> Result<Vec<Result<Value, String>>, String> {
        let input = temp_file("certlogic-js-input", "json");
        let json = Value::Array(
            pairs
                .iter()
                .map(|(e, d)| Value::Array(vec![e.clone(), d.clone()]))
                .collect(),
        );
        std::fs::write(&input, json.to_string())
            .map_err(|e| format!("cannot write {}: {e}", input.display()))?;
        let text = run(dir, &["eval".as_ref(), input.as_os_str()]);
        let _ = std::fs::remove_file(&input);
        let values: Vec<Value> =
            serde_json::from_str(&text?).map_err(|e| format!("certlogic-js output: {e}"))?;
        Ok(results(values))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use serde_json::json;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: Command,
    }

    fn run_args(args: &[&str]) -> (ExitCode, String, String) {
        let cli =
            Cli::try_parse_from(std::iter::once("certlogic").chain(args.iter().copied())).unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run_to(cli.cmd, &mut out, &mut err);
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn eval_prints_json_and_errors_are_one_line() {
        let (code, out, _) = run_args(&[
            "eval",
            r#"{"plusTime": [{"var": "d"}, 1, "month"]}"#,
            r#"{"d": "2021-01-31"}"#,
        ]);
        assert_eq!(code, ExitCode::SUCCESS);
        assert_eq!(out.trim(), "\"2021-03-03T00:00:00.000Z\"");
        let (code, out, err) = run_args(&["eval", r#"{"map": [[1], 1]}"#]);
        assert_eq!(code, ExitCode::from(2));
        assert!(out.is_empty());
        assert_eq!(err.trim(), "error: unrecognised operator: \"map\"");
        assert_eq!(err.lines().count(), 1);
    }

    #[test]
    fn conformance_on_a_missing_directory_is_an_error() {
        let (code, _, err) = run_args(&["conformance", "rules", "/nonexistent/certlogic-rules"]);
        assert_eq!(code, ExitCode::from(2));
        assert!(
            err.starts_with("error: cannot read /nonexistent/certlogic-rules"),
            "{err}"
        );
    }

    fn fixture(sub: &str) -> String {
        format!("{}/tests/data/{sub}", env!("CARGO_MANIFEST_DIR"))
    }

    #[test]
    fn conformance_prints_failures_then_the_summary_line() {
        let (code, out, _) = run_args(&["conformance", "certlogic", &fixture("certlogic")]);
        assert_eq!(code, ExitCode::SUCCESS);
        assert_eq!(out, "241 passed, 0 failed, 14 skipped\n");

        let dir = tempfile::tempdir().unwrap();
        let suite = json!({"name": "mixed", "cases": [
            {"name": "plus", "certLogicExpression": {"+": [{"var": "a"}, 1]}, "assertions": [
                {"data": {"a": 1}, "expected": 2},
                {"data": {"a": 1}, "expected": 3},
                {"data": {"a": "x"}, "expected": 0, "directive": "skip"}
            ]},
            {"name": "error", "certLogicExpression": {"+": [{"var": "a"}, 1]}, "assertions": [{"data": {"a": "x"}, "expected": 1}]}
        ]});
        std::fs::write(dir.path().join("suite.json"), suite.to_string()).unwrap();
        let (code, out, _) = run_args(&["conformance", "certlogic", dir.path().to_str().unwrap()]);
        assert_eq!(code, ExitCode::from(1));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert_eq!(
            lines[0],
            "suite.json: \"plus\" assertion #1: expected 3, got 2"
        );
        assert!(
            lines[1].starts_with(
                "suite.json: \"error\" assertion #0: expected 1, got error: \"+\" operation"
            ),
            "{}",
            lines[1]
        );
        assert_eq!(lines[2], "1 passed, 2 failed, 1 skipped");
    }

    #[test]
    fn rules_conformance_covers_every_rule_test() {
        let (code, out, _) = run_args(&["conformance", "rules", &fixture("dcc-rules/DE")]);
        assert_eq!(code, ExitCode::SUCCESS);
        assert_eq!(out, "68 passed, 0 failed, 0 skipped\n");
    }

    #[test]
    fn rules_command_prints_status_and_deciding_rules() {
        let dir = tempfile::tempdir().unwrap();
        let payload = dir.path().join("payload.json");
        let dcc = json!({"ver": "1.3.0", "dob": "1964-08-12", "v": [{"tg": "840539006", "vp": "1119349007",
            "mp": "EU/1/20/1528", "ma": "ORG-100030215", "dn": 1, "sd": 2, "dt": "2021-05-29", "co": "DE"}]});
        std::fs::write(&payload, dcc.to_string()).unwrap();
        let args = [
            "rules",
            "--rules",
            &fixture("dcc-rules/DE"),
            "--country",
            "DE",
            "--at",
            "2021-12-01T12:00:00Z",
            "--lang",
            "de",
            "--value-sets",
            &fixture("dcc-rules/valuesets/valueSets.json"),
            payload.to_str().unwrap(),
        ];
        let (code, out, err) = run_args(&args);
        assert_eq!(code, ExitCode::SUCCESS, "{err}");
        let report: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(report["status"], "red");
        assert_eq!(report["deciding"], json!(["VR-DE-0001"]));
        assert_eq!(report["outcomes"].as_array().unwrap().len(), 4);
        assert_eq!(report["outcomes"][0]["language"], "de");

        let (code, _, err) = run_args(&[
            "rules",
            "--rules",
            &fixture("dcc-rules/DE"),
            "--country",
            "DE",
            "--at",
            "yesterday",
            payload.to_str().unwrap(),
        ]);
        assert_eq!(code, ExitCode::from(2));
        assert_eq!(
            err,
            "error: --at: not an allowed date or date-time format: \"yesterday\"\n"
        );
    }

    #[test]
    fn lint_checks_every_rule() {
        let (code, out, _) = run_args(&["lint", &fixture("dcc-rules")]);
        assert_eq!(code, ExitCode::SUCCESS);
        assert_eq!(out, "77 rules, 0 with problems\n");
        let dir = tempfile::tempdir().unwrap();
        let mut rule: Value = serde_json::from_str(
            &std::fs::read_to_string(fixture("dcc-rules/NL/GR-NL-0002/rule.json")).unwrap(),
        )
        .unwrap();
        rule["AffectedFields"] = json!([]);
        std::fs::write(dir.path().join("rule.json"), rule.to_string()).unwrap();
        let (code, out, _) = run_args(&["lint", dir.path().to_str().unwrap()]);
        assert_eq!(code, ExitCode::from(1));
        assert_eq!(
            out,
            "GR-NL-0002 1.0.0: AffectedFields lacks fields the logic reads: [\"v\"]\n1 rules, 1 with problems\n"
        );
    }

    #[test]
    fn bench_reports_a_rate() {
        let (code, out, _) = run_args(&["bench", &fixture("dcc-rules/NL"), "--seconds", "0.05"]);
        assert_eq!(code, ExitCode::SUCCESS);
        assert!(out.contains("evaluations/s"), "{out}");
        // A peer that cannot run is an error, not a silently missing comparison.
        let (code, out, err) = run_args(&[
            "bench",
            &fixture("dcc-rules/NL"),
            "--seconds",
            "0.01",
            "--certlogic-js",
            "/nonexistent/certlogic-js",
        ]);
        assert_eq!(code, ExitCode::from(2));
        assert!(out.starts_with("certlogic (Rust): "), "{out}");
        assert!(
            err.contains("certlogic-js failed") || err.contains("cannot run node"),
            "{err}"
        );
        let (code, _, err) = run_args(&["bench", &fixture("dcc-rules/NL"), "--seconds=-1"]);
        assert_eq!(code, ExitCode::from(2));
        assert!(err.contains("--seconds"), "{err}");
    }
}
