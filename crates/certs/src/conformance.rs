//! Conformance runner for the EU dgc-testdata repository.
//!
//! Every `*.json` test file under the directory is run; every `EXPECTED*` flag it sets is one assertion, checked
//! with this crate's own pipeline stages on the fields the flag names (see the dgc-testdata README): the trust list
//! is built from `TESTCTX.CERTIFICATE`, the validation clock from `TESTCTX.VALIDATIONCLOCK`. A failing assertion
//! counts as skipped only when the data's `tests/known_issues.csv` lists it (same matching as the official runner:
//! test name + country + test set, or test name + country).

use crate::error::{Error, Result};
use crate::hcert::{self, Claims, CoseSign1};
use crate::trust::{Dsc, TrustList};
use crate::verifier::{self, Clock};
use base64::Engine as _;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The flags the runner knows, with the official runner's test name (used by `known_issues.csv`).
const FLAGS: [(&str, &[&str]); 12] = [
    ("EXPECTEDVERIFY", &["test_verification_check"]),
    ("EXPECTEDDECODE", &["test_cose_json", "test_cose_cbor"]),
    ("EXPECTEDB45DECODE", &["test_b45decode"]),
    ("EXPECTEDUNPREFIX", &["test_un_prefix"]),
    ("EXPECTEDCOMPRESSION", &["test_compression"]),
    ("EXPECTEDSCHEMAVALIDATION", &["test_cose_schema"]),
    ("EXPECTEDKEYUSAGE", &["test_expected_key_usage"]),
    ("EXPECTEDEXPIRATIONCHECK", &["test_expiration_check"]),
    ("EXPECTEDPICTUREDECODE", &["test_picture_decode"]),
    ("EXPECTEDVALIDJSON", &["test_cbor_json"]),
    // The official runner has no test for VALIDOBJECT; it validates the same payload against the same schema as
    // test_cose_schema, so that test's known issues (schema defects in the data) apply to it too.
    ("EXPECTEDVALIDOBJECT", &["test_cose_schema"]),
    ("EXPECTEDENCODE", &["test_encode"]),
];

/// The outcome of one assertion.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Passed,
    Failed(String),
    /// Failed, but listed in `known_issues.csv` (the value is the listed reason).
    Skipped(String),
}

/// One assertion: a flag of a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Assertion {
    pub file: String,
    pub flag: String,
    pub expected: bool,
    pub outcome: Outcome,
    /// Set when the field the flag names is absent and the step was checked on derived input (see there).
    pub derived: Option<&'static str>,
}

/// All assertions of a run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub assertions: Vec<Assertion>,
    pub files: usize,
}

impl Report {
    pub fn passed(&self) -> usize {
        self.assertions
            .iter()
            .filter(|a| a.outcome == Outcome::Passed)
            .count()
    }
    pub fn failed(&self) -> usize {
        self.assertions
            .iter()
            .filter(|a| matches!(a.outcome, Outcome::Failed(_)))
            .count()
    }
    pub fn skipped(&self) -> usize {
        self.assertions
            .iter()
            .filter(|a| matches!(a.outcome, Outcome::Skipped(_)))
            .count()
    }

    /// One line per failing or skipped assertion, then `N passed, M failed, K skipped`.
    pub fn write(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        for a in &self.assertions {
            match &a.outcome {
                Outcome::Passed => {}
                Outcome::Failed(why) => writeln!(
                    out,
                    "FAIL {} {} (expected {}): {why}",
                    a.file, a.flag, a.expected
                )?,
                Outcome::Skipped(why) => {
                    writeln!(out, "SKIP {} {} (known issue {why})", a.file, a.flag)?
                }
            }
        }
        let mut derived: Vec<(&str, &str, usize)> = Vec::new();
        for a in &self.assertions {
            if let Some(how) = a.derived {
                match derived
                    .iter_mut()
                    .find(|(f, h, _)| *f == a.flag && *h == how)
                {
                    Some(d) => d.2 += 1,
                    None => derived.push((&a.flag, how, 1)),
                }
            }
        }
        for (flag, how, n) in derived {
            writeln!(
                out,
                "note: {n} {flag} assertions checked on derived input ({how})"
            )?;
        }
        writeln!(
            out,
            "{} files, {} assertions",
            self.files,
            self.assertions.len()
        )?;
        writeln!(
            out,
            "{} passed, {} failed, {} skipped",
            self.passed(),
            self.failed(),
            self.skipped()
        )
    }
}

/// Known issues: `test_name:country:test_set` → reason.
fn load_known_issues(dir: &Path) -> HashMap<String, String> {
    let mut map = HashMap::new();
    let Ok(text) = std::fs::read_to_string(dir.join("tests").join("known_issues.csv")) else {
        return map;
    };
    for line in text.lines().skip(1) {
        let cols: Vec<&str> = line.splitn(4, ',').collect();
        if let [name, country, set, reason] = cols.as_slice() {
            map.insert(format!("{name}:{country}:{set}"), reason.trim().to_string());
        }
    }
    map
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let io = |e: std::io::Error| Error::Io(format!("{}: {e}", dir.display()));
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .map_err(io)?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
    Ok(())
}

/// Runs every test file under `dir`.
pub fn run_dgc_testdata(dir: &Path) -> Result<Report> {
    let known = load_known_issues(dir);
    let mut files = Vec::new();
    collect_files(dir, &mut files)?;
    let mut report = Report::default();
    for path in files {
        let rel = path.strip_prefix(dir).unwrap_or(&path);
        let rel_name = rel.display().to_string();
        let country = rel
            .components()
            .next()
            .map(|c| c.as_os_str().to_string_lossy().to_string())
            .unwrap_or_default();
        let set = path
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
        let case: Value = match serde_json::from_str(text.trim_start_matches('\u{feff}')) {
            Ok(v) => v,
            Err(e) => {
                report.assertions.push(Assertion {
                    file: rel_name,
                    flag: "FILE".into(),
                    expected: true,
                    outcome: Outcome::Failed(format!("not JSON: {e}")),
                    derived: None,
                });
                continue;
            }
        };
        if case.get("EXPECTEDRESULTS").is_none() {
            continue;
        }
        report.files += 1;
        let case = TestCase::new(&case);
        for (flag, expected) in case.flags() {
            let derived = case.derived(&flag);
            let result = case.check(&flag);
            let ok = result.is_ok() == expected;
            let outcome = if ok {
                Outcome::Passed
            } else {
                let why = match result {
                    Ok(()) => "the step succeeded".to_string(),
                    Err(e) => e,
                };
                let names = FLAGS
                    .iter()
                    .find(|(f, _)| *f == flag)
                    .map(|(_, n)| *n)
                    .unwrap_or(&[]);
                let listed = names.iter().find_map(|n| {
                    known
                        .get(&format!("{n}:{country}:{set}"))
                        .or_else(|| known.get(&format!("{n}:{country}:")))
                });
                match listed {
                    Some(reason) => Outcome::Skipped(reason.clone()),
                    None => Outcome::Failed(why),
                }
            };
            report.assertions.push(Assertion {
                file: rel_name.clone(),
                flag,
                expected,
                outcome,
                derived,
            });
        }
    }
    Ok(report)
}

/// One test file.
struct TestCase<'a> {
    case: &'a Value,
}

type Step<T> = std::result::Result<T, String>;

impl<'a> TestCase<'a> {
    fn new(case: &'a Value) -> Self {
        TestCase { case }
    }

    fn field(&self, name: &str) -> Option<&'a str> {
        self.case.get(name).and_then(Value::as_str)
    }

    fn ctx(&self, name: &str) -> Option<&'a Value> {
        self.case.get("TESTCTX").and_then(|c| c.get(name))
    }

    /// The flags set, tolerating the data's typos: nested `EXPECTEDRESULTS` objects are flattened, and the
    /// unknown `EXPTECTEDEXPIRED` is ignored.
    fn flags(&self) -> Vec<(String, bool)> {
        let mut out = Vec::new();
        fn walk(v: &Value, out: &mut Vec<(String, bool)>) {
            if let Some(obj) = v.as_object() {
                for (k, v) in obj {
                    match (k.as_str(), v) {
                        // Not a dgc-testdata flag (a misspelling whose intent is unclear: "expired: true" on
                        // certificates that are valid at the clock); the official runner ignores it, so do we.
                        ("EXPTECTEDEXPIRED", _) => {}
                        (k, Value::Bool(b)) => out.push((k.to_string(), *b)),
                        (_, nested @ Value::Object(_)) => walk(nested, out),
                        _ => {}
                    }
                }
            }
        }
        if let Some(er) = self.case.get("EXPECTEDRESULTS") {
            walk(er, &mut out);
        }
        out
    }

    fn check(&self, flag: &str) -> Step<()> {
        match flag {
            "EXPECTEDUNPREFIX" => self.unprefix(),
            "EXPECTEDB45DECODE" => self.b45decode(),
            "EXPECTEDCOMPRESSION" => self.compression(),
            "EXPECTEDPICTUREDECODE" => self.picture(),
            "EXPECTEDVERIFY" => self.verify(),
            "EXPECTEDDECODE" => self.decode(),
            "EXPECTEDVALIDJSON" => self.valid_json(),
            "EXPECTEDSCHEMAVALIDATION" => self.schema(),
            "EXPECTEDEXPIRATIONCHECK" => self.expiration(),
            "EXPECTEDKEYUSAGE" => self.key_usage(),
            "EXPECTEDVALIDOBJECT" => self.valid_object(),
            "EXPECTEDENCODE" => self.encode(),
            other => Err(format!("unknown flag {other}")),
        }
    }

    fn hex_field(&self, name: &str) -> Step<Vec<u8>> {
        let text = self.field(name).ok_or_else(|| format!("no {name} field"))?;
        hex::decode(text.trim()).map_err(|e| format!("{name} is not hex: {e}"))
    }

    fn unprefix(&self) -> Step<()> {
        let prefix = self.field("PREFIX").ok_or("no PREFIX field")?;
        let b45 = hcert::strip_prefix(prefix).map_err(|e| e.to_string())?;
        match self.field("BASE45") {
            Some(expected) if expected != b45 => Err("unprefixed text differs from BASE45".into()),
            _ => Ok(()),
        }
    }

    /// Some files set a flag but omit the field it names (COMPRESSED, 2DCODE). The step is then checked on the
    /// same data derived from the fields that are present, and the assertion is reported as derived.
    fn derived(&self, flag: &str) -> Option<&'static str> {
        match flag {
            "EXPECTEDB45DECODE" | "EXPECTEDCOMPRESSION" if self.field("COMPRESSED").is_none() => {
                Some("no COMPRESSED: Base45 of BASE45/PREFIX must inflate to COSE")
            }
            "EXPECTEDPICTUREDECODE" if self.field("2DCODE").is_none() => {
                Some("no 2DCODE: PREFIX rendered as a QR PNG by this crate and read back")
            }
            _ => None,
        }
    }

    /// COMPRESSED, else the Base45 decoding of BASE45 (or of the unprefixed PREFIX).
    fn compressed(&self) -> Step<Vec<u8>> {
        if self.field("COMPRESSED").is_some() {
            return self.hex_field("COMPRESSED");
        }
        let b45 = match self.field("BASE45") {
            Some(b) => b,
            None => hcert::strip_prefix(
                self.field("PREFIX")
                    .ok_or("no COMPRESSED, BASE45 or PREFIX field")?,
            )
            .map_err(|e| e.to_string())?,
        };
        hcert::base45_decode(b45).map_err(|e| e.to_string())
    }

    fn b45decode(&self) -> Step<()> {
        let b45 = self.field("BASE45").ok_or("no BASE45 field")?;
        let decoded = hcert::base45_decode(b45).map_err(|e| e.to_string())?;
        if self.field("COMPRESSED").is_some() {
            if decoded != self.hex_field("COMPRESSED")? {
                return Err("Base45 decoding differs from COMPRESSED".into());
            }
        } else if hcert::inflate(&decoded).map_err(|e| e.to_string())? != self.hex_field("COSE")? {
            return Err("Base45 decoding does not inflate to COSE".into());
        }
        Ok(())
    }

    fn compression(&self) -> Step<()> {
        let inflated = hcert::inflate(&self.compressed()?).map_err(|e| e.to_string())?;
        if inflated != self.hex_field("COSE")? {
            return Err("inflated data differs from COSE".into());
        }
        Ok(())
    }

    fn picture(&self) -> Step<()> {
        let png = match self.field("2DCODE") {
            Some(b64) => base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| format!("2DCODE is not Base64: {e}"))?,
            None => {
                crate::qr::render_png(self.field("PREFIX").ok_or("no 2DCODE or PREFIX field")?, 4)
                    .map_err(|e| e.to_string())?
            }
        };
        let text = crate::qr::decode_image(&png).map_err(|e| e.to_string())?;
        match self.field("PREFIX") {
            Some(prefix) if prefix != text => Err("QR content differs from PREFIX".into()),
            _ => Ok(()),
        }
    }

    /// The COSE message from the COSE field, else from the whole PREFIX chain.
    fn cose(&self) -> Step<CoseSign1> {
        if self.field("COSE").is_some() {
            CoseSign1::parse(&self.hex_field("COSE")?).map_err(|e| e.to_string())
        } else {
            let prefix = self.field("PREFIX").ok_or("no COSE or PREFIX field")?;
            hcert::decode_text(prefix).map_err(|e| e.to_string())
        }
    }

    fn claims(&self) -> Step<Claims> {
        Claims::parse(&self.cose()?.payload).map_err(|e| e.to_string())
    }

    fn dsc(&self) -> Step<Dsc> {
        let b64 = self
            .ctx("CERTIFICATE")
            .and_then(Value::as_str)
            .ok_or("no TESTCTX.CERTIFICATE")?;
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64.split_whitespace().collect::<String>())
            .map_err(|e| format!("CERTIFICATE is not Base64: {e}"))?;
        Dsc::from_der(&der, None).map_err(|e| e.to_string())
    }

    fn clock(&self) -> Step<i64> {
        let text = self
            .ctx("VALIDATIONCLOCK")
            .or_else(|| self.ctx("validationClockInstant"))
            .and_then(Value::as_str)
            .ok_or("no TESTCTX.VALIDATIONCLOCK")?;
        Ok(Clock::parse(text).map_err(|e| e.to_string())?.now())
    }

    fn verify(&self) -> Step<()> {
        let mut trust = TrustList::new();
        trust.add_dsc(self.dsc()?);
        verifier::verify_cose_signature(&trust, self.cose()?)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn decode(&self) -> Step<()> {
        let claims = self.claims()?;
        if let Some(json) = self.case.get("JSON") {
            if !same_json(&claims.dcc, json) {
                return Err("decoded DCC differs from JSON".into());
            }
        }
        if self.field("CBOR").is_some() {
            let cbor = crate::cbor::parse(&self.hex_field("CBOR")?).map_err(|e| e.to_string())?;
            let cbor = dcc_of(&crate::cbor::to_json(&cbor).map_err(|e| e.to_string())?);
            if !same_json(&claims.dcc, &cbor) {
                return Err("decoded DCC differs from CBOR".into());
            }
        }
        Ok(())
    }

    fn valid_json(&self) -> Step<()> {
        let prefix = self.field("PREFIX").ok_or("no PREFIX field")?;
        let cose = hcert::decode_text(prefix).map_err(|e| e.to_string())?;
        let claims = Claims::parse(&cose.payload).map_err(|e| e.to_string())?;
        let json = self.case.get("JSON").ok_or("no JSON field")?;
        if !same_json(&claims.dcc, json) {
            return Err("decoded DCC differs from JSON".into());
        }
        Ok(())
    }

    fn schema(&self) -> Step<()> {
        crate::schema::validate_dcc(&self.claims()?.dcc)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn expiration(&self) -> Step<()> {
        let errors = verifier::check_validity(&self.claims()?, &self.dsc()?, self.clock()?);
        match errors.first() {
            None => Ok(()),
            Some(e) => Err(e.to_string()),
        }
    }

    fn key_usage(&self) -> Step<()> {
        verifier::check_key_usage(&self.claims()?, &self.dsc()?)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn valid_object(&self) -> Step<()> {
        let json = self.case.get("JSON").ok_or("no JSON field")?;
        crate::schema::validate_dcc(json)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn encode(&self) -> Step<()> {
        let json = self.case.get("JSON").ok_or("no JSON field")?;
        let ours = crate::cbor::from_json(json)
            .and_then(|v| crate::cbor::to_vec(&v))
            .map_err(|e| e.to_string())?;
        let ours = crate::cbor::parse(&ours)
            .and_then(|v| crate::cbor::to_json(&v))
            .map_err(|e| e.to_string())?;
        let theirs = crate::cbor::parse(&self.hex_field("CBOR")?)
            .and_then(|v| crate::cbor::to_json(&v))
            .map_err(|e| e.to_string())?;
        if !same_json(&ours, &dcc_of(&theirs)) {
            return Err("CBOR encoding of JSON differs from CBOR".into());
        }
        Ok(())
    }
}

/// The CBOR field holds either the DCC or the whole CWT claims; take the DCC.
fn dcc_of(v: &Value) -> Value {
    v.get("-260")
        .and_then(|h| h.get("1"))
        .cloned()
        .unwrap_or_else(|| v.clone())
}

/// JSON equality where date-times compare by instant (issuers differ in `Z` vs `+00:00` and in fractional
/// seconds, and CBOR date tags come back as `…Z`) and numbers compare by value.
pub fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same_json(v, w))
        }
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::String(x), Value::String(y)) => {
            x == y || matches!((instant(x), instant(y)), (Some(p), Some(q)) if p == q)
        }
        _ => a == b,
    }
}

fn instant(s: &str) -> Option<i64> {
    if s.len() < 19 || !s.contains('T') {
        return None;
    }
    Clock::parse(s).ok().map(Clock::now)
}
