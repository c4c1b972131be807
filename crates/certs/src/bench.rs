//! `caravan cert bench`: full HC1 verifications per second on one core, side by side (in the same run) with the
//! Python baseline (`bench/baseline.py`: base45 + zlib + cbor2 + cryptography, keys cached), `openssl speed
//! ecdsap256` (raw P-256 verification, the ceiling) and raw `aws-lc-rs` P-256 verification of the same messages.

use crate::error::{Error, Result};
use crate::hcert;
use crate::trust::{Dsc, TrustList};
use crate::verifier::{Clock, Status, Verifier};
use base64::Engine as _;
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

const BASELINE_PY: &str = include_str!("../bench/baseline.py");

/// One benchmark case.
#[derive(Debug, Clone)]
pub struct Case {
    pub prefix: String,
    pub certificate_b64: String,
    pub clock: i64,
    pub es256: bool,
}

/// Collects the expected-valid `HC1:` cases (EXPECTEDVERIFY true) that this verifier accepts at their clock, and
/// a trust list holding all their DSCs.
pub fn collect_cases(dir: &Path, check_schema: bool) -> Result<(Vec<Case>, TrustList)> {
    let mut files = Vec::new();
    walk(dir, &mut files)?;
    let mut candidates = Vec::new();
    let mut trust = TrustList::new();
    for path in files {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let Ok(case) = serde_json::from_str::<Value>(text.trim_start_matches('\u{feff}')) else {
            continue;
        };
        let expected = case
            .pointer("/EXPECTEDRESULTS/EXPECTEDVERIFY")
            .and_then(Value::as_bool)
            == Some(true);
        let prefix = case
            .get("PREFIX")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let cert = case
            .pointer("/TESTCTX/CERTIFICATE")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let clock = case
            .pointer("/TESTCTX/VALIDATIONCLOCK")
            .and_then(Value::as_str)
            .and_then(|c| Clock::parse(c).ok());
        if !expected || !prefix.starts_with("HC1:") || cert.is_empty() {
            continue;
        }
        let Some(clock) = clock else { continue };
        let Ok(der) = base64::engine::general_purpose::STANDARD
            .decode(cert.split_whitespace().collect::<String>())
        else {
            continue;
        };
        let Ok(dsc) = Dsc::from_der(&der, None) else {
            continue;
        };
        trust.add_dsc(dsc);
        let es256 = hcert::decode_text(prefix).ok().and_then(|c| c.alg) == Some(-7);
        candidates.push(Case {
            prefix: prefix.to_string(),
            certificate_b64: cert.to_string(),
            clock: clock.now(),
            es256,
        });
    }
    let mut verifier = Verifier::new(trust, None, Clock::System);
    verifier.check_schema = check_schema;
    let cases: Vec<Case> = candidates
        .into_iter()
        .filter(|c| verifier.verify_at(&c.prefix, c.clock).status == Status::Green)
        .collect();
    if cases.is_empty() {
        return Err(Error::Io(format!(
            "no expected-valid HC1 case verifies under {}",
            dir.display()
        )));
    }
    Ok((cases, verifier.trust))
}

fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) -> Result<()> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| Error::Io(format!("{}: {e}", dir.display())))?;
    let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            walk(&p, out)?;
        } else if p.extension().is_some_and(|e| e == "json") {
            out.push(p);
        }
    }
    Ok(())
}

/// This thread's CPU time in seconds (Linux `/proc/thread-self/schedstat`, nanosecond resolution), or wall time
/// where that is unavailable. Rates are per CPU second, like `openssl speed` (user time) and the Python baseline
/// (`time.thread_time`), so the comparison holds on a loaded machine.
pub fn cpu_seconds() -> f64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
        })
        .map(|ns| ns as f64 / 1e9)
        .unwrap_or_else(|| START.get_or_init(Instant::now).elapsed().as_secs_f64())
}

/// Verifications per CPU second of `verifier` over `cases`, for about `seconds` of wall time.
pub fn measure(verifier: &Verifier, cases: &[Case], seconds: f64) -> f64 {
    let deadline = Duration::from_secs_f64(seconds.max(0.1));
    let start = Instant::now();
    let cpu = cpu_seconds();
    let mut n = 0u64;
    let mut green = 0u64;
    while start.elapsed() < deadline {
        for c in cases {
            green += u64::from(verifier.verify_at(&c.prefix, c.clock).status == Status::Green);
        }
        n += cases.len() as u64;
    }
    std::hint::black_box(green);
    n as f64 / (cpu_seconds() - cpu)
}

/// Raw `aws-lc-rs` P-256 verifications per CPU second over the ES256 cases' own messages and keys.
pub fn measure_raw_p256(trust: &TrustList, cases: &[Case], seconds: f64) -> Option<f64> {
    let mut jobs = Vec::new();
    for c in cases.iter().filter(|c| c.es256) {
        let cose = hcert::decode_text(&c.prefix).ok()?;
        let dsc = trust.dscs(cose.kid.as_deref()?).first()?;
        jobs.push((
            dsc.key.clone(),
            cose.sig_structure(),
            cose.signature.clone(),
        ));
    }
    if jobs.is_empty() {
        return None;
    }
    let deadline = Duration::from_secs_f64(seconds.max(0.1));
    let start = Instant::now();
    let cpu = cpu_seconds();
    let mut n = 0u64;
    while start.elapsed() < deadline {
        for (key, msg, sig) in &jobs {
            std::hint::black_box(key.verify(crate::crypto::Algorithm::Es256, msg, sig).ok());
        }
        n += jobs.len() as u64;
    }
    Some(n as f64 / (cpu_seconds() - cpu))
}

/// Runs the Python baseline on `cases`; `None` (with the reason) when Python or its packages are missing.
fn python_rate(
    python: &str,
    cases: &[Case],
    seconds: f64,
) -> std::result::Result<(f64, u64), String> {
    let dir = std::env::temp_dir().join(format!("caravan-cert-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let script = dir.join("baseline.py");
    let data = dir.join("cases.json");
    std::fs::write(&script, BASELINE_PY).map_err(|e| e.to_string())?;
    let list: Vec<Value> = cases
        .iter()
        .map(|c| json!({"prefix": c.prefix, "certificate": c.certificate_b64, "clock": c.clock}))
        .collect();
    std::fs::write(&data, Value::Array(list).to_string()).map_err(|e| e.to_string())?;
    let output = std::process::Command::new(python)
        .arg(&script)
        .arg(&data)
        .arg(seconds.to_string())
        .output()
        .map_err(|e| format!("cannot run {python}: {e}"));
    let _ = std::fs::remove_dir_all(&dir);
    let output = output?;
    if !output.status.success() {
        let err = String::from_utf8_lossy(&output.stderr);
        return Err(err.lines().last().unwrap_or("failed").to_string());
    }
    let v: Value =
        serde_json::from_slice(&output.stdout).map_err(|e| format!("baseline output: {e}"))?;
    Ok((
        v["per_second"].as_f64().unwrap_or(0.0),
        v["ok"].as_u64().unwrap_or(0),
    ))
}

/// `openssl speed ecdsap256` verify/s, single process.
fn openssl_rate(seconds: f64) -> std::result::Result<f64, String> {
    let secs = (seconds.ceil() as u64).max(1).to_string();
    let output = std::process::Command::new("openssl")
        .args(["speed", "-seconds", &secs, "ecdsap256"])
        .output()
        .map_err(|e| format!("cannot run openssl: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find(|l| l.contains("ecdsa") && l.contains("nistp256"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| "no ecdsap256 line in `openssl speed` output".to_string())
}

/// Runs the whole comparison and prints it.
pub fn run(
    dir: &Path,
    seconds: f64,
    python: &str,
    check_schema: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let io = |e: std::io::Error| Error::Io(e.to_string());
    let (cases, trust) = collect_cases(dir, check_schema)?;
    let es: Vec<Case> = cases.iter().filter(|c| c.es256).cloned().collect();
    let mut verifier = Verifier::new(trust, None, Clock::System);
    verifier.check_schema = check_schema;
    writeln!(
        out,
        "cases: {} expected-valid HC1 ({} ES256), schema validation {}, one core, rates per CPU second",
        cases.len(),
        es.len(),
        if check_schema { "on" } else { "off" }
    )
    .map_err(io)?;
    // Warm up (schema compilation, caches) before timing.
    measure(&verifier, &cases, 0.2);
    let rust_all = measure(&verifier, &cases, seconds);
    let rust_es = if es.is_empty() {
        None
    } else {
        Some(measure(&verifier, &es, seconds))
    };
    let raw = measure_raw_p256(&verifier.trust, &cases, seconds);
    writeln!(
        out,
        "rust   full verification, all cases  : {rust_all:>10.0} /s"
    )
    .map_err(io)?;
    if let Some(r) = rust_es {
        writeln!(out, "rust   full verification, ES256 cases: {r:>10.0} /s").map_err(io)?;
    }
    if let Some(r) = raw {
        writeln!(out, "aws-lc raw P-256 verify (same msgs)  : {r:>10.0} /s").map_err(io)?;
    }
    let py_all = python_rate(python, &cases, seconds);
    let py_es = if es.is_empty() {
        Err("no ES256 case".to_string())
    } else {
        python_rate(python, &es, seconds)
    };
    match &py_all {
        Ok((r, ok)) => writeln!(
            out,
            "python full verification, all cases  : {r:>10.0} /s ({ok}/{} accepted)",
            cases.len()
        ),
        Err(e) => writeln!(out, "python baseline skipped: {e}"),
    }
    .map_err(io)?;
    if let Ok((r, _)) = &py_es {
        writeln!(out, "python full verification, ES256 cases: {r:>10.0} /s").map_err(io)?;
    }
    let ossl = openssl_rate(seconds);
    match &ossl {
        Ok(r) => writeln!(out, "openssl speed ecdsap256 verify       : {r:>10.0} /s"),
        Err(e) => writeln!(out, "openssl skipped: {e}"),
    }
    .map_err(io)?;
    if let Ok((p, _)) = py_all {
        writeln!(out, "ratio rust/python (all cases)  : {:.2}x", rust_all / p).map_err(io)?;
    }
    if let (Some(r), Ok((p, _))) = (rust_es, py_es) {
        writeln!(out, "ratio rust/python (ES256 cases): {:.2}x", r / p).map_err(io)?;
    }
    if let (Some(r), Ok(o)) = (rust_es, &ossl) {
        writeln!(
            out,
            "ratio rust ES256 full / openssl raw P-256: {:.1}%",
            100.0 * r / o
        )
        .map_err(io)?;
    }
    if let (Some(r), Some(w)) = (rust_es, raw) {
        writeln!(
            out,
            "ratio rust ES256 full / aws-lc raw P-256 : {:.1}%",
            100.0 * r / w
        )
        .map_err(io)?;
    }
    Ok(())
}
