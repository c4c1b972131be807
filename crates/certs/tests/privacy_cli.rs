//! Privacy (no log event, no socket during verification) and the CLI contract.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use certs::crypto::{Algorithm, SigningKey};
use certs::issue::{build_dcc, DccIssuer, Event, Person, Test};
use certs::{Clock, Status, TrustList, Verifier};
use clap::Parser;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tracing_subscriber::layer::SubscriberExt;

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel)
}

const IAT: i64 = 1_796_083_200;

fn issued() -> (String, TrustList) {
    let key = SigningKey::from_pkcs8_pem_or_der(
        Algorithm::Es256,
        &std::fs::read(data("issuer/es256.key.pem")).unwrap(),
    )
    .unwrap();
    let pem = std::fs::read(data("issuer/es256.dsc.pem")).unwrap();
    let der = certs::crypto::pem_to_der(&pem, "CERTIFICATE")
        .unwrap()
        .unwrap();
    let issuer = DccIssuer::new(key, &der, "AT").unwrap();
    let person = Person {
        family_name: "Testperson".into(),
        given_name: Some("Privacy".into()),
        dob: "1970-01-01".into(),
    };
    let event = Event::Test(Test {
        tg: "840539006".into(),
        tt: "LP6464-4".into(),
        nm: None,
        ma: None,
        sc: "2026-11-30T10:00:00Z".into(),
        tr: "260415000".into(),
        tc: "Test centre".into(),
        co: "AT".into(),
        is: "Ministry of Health, Austria".into(),
    });
    let text = issuer
        .issue(
            &build_dcc(&person, &event, "URN:UVCI:01:AT:P").unwrap(),
            IAT,
            IAT + 86_400,
        )
        .unwrap();
    let mut trust = TrustList::new();
    trust.add_pem(&pem, None).unwrap();
    (text, trust)
}

/// Counts every tracing event (at any level) and keeps its rendered fields.
struct Capture(Arc<AtomicUsize>, Arc<std::sync::Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        self.0.fetch_add(1, Ordering::SeqCst);
        self.1.lock().unwrap().push(format!("{event:?}"));
    }
    fn enabled(
        &self,
        _m: &tracing::Metadata<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        true
    }
}

#[test]
fn verification_emits_no_log_event() {
    let (text, trust) = issued();
    let count = Arc::new(AtomicUsize::new(0));
    let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
    let subscriber = tracing_subscriber::registry().with(Capture(count.clone(), lines.clone()));
    tracing::subscriber::with_default(subscriber, || {
        // Prove the capture works at all.
        tracing::trace!("probe");
        let v = Verifier::new(trust.clone(), None, Clock::Fixed(IAT + 60));
        for input in [text.as_str(), "HC1:broken", "shc:/0001", "{}"] {
            std::hint::black_box(v.verify(input));
        }
        assert_eq!(v.verify(&text).status, Status::Green);
    });
    assert_eq!(
        count.load(Ordering::SeqCst),
        1,
        "events: {:?}",
        lines.lock().unwrap()
    );
}

#[test]
fn rule_evaluation_logs_nothing_about_the_holder() {
    let (text, trust) = issued();
    let rules = certs::rules::RuleSet::load_dir(&data("rules")).unwrap();
    let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
    let subscriber =
        tracing_subscriber::registry().with(Capture(Arc::new(AtomicUsize::new(0)), lines.clone()));
    tracing::subscriber::with_default(subscriber, || {
        let cfg = certs::RulesConfig {
            rules,
            country: "DE".into(),
            lang: "en".into(),
        };
        std::hint::black_box(Verifier::new(trust, Some(cfg), Clock::Fixed(IAT + 60)).verify(&text));
    });
    // The rules engine may log rule identifiers and outcomes, never the holder's name or birth date.
    for line in lines.lock().unwrap().iter() {
        assert!(
            !line.contains("Testperson")
                && !line.contains("Privacy")
                && !line.contains("1970-01-01"),
            "{line}"
        );
    }
}

fn sockets() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| {
                    std::fs::read_link(e.path())
                        .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
                })
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn verification_has_no_network_code_and_opens_no_socket() {
    // Static: no networking API anywhere in the library source.
    for entry in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("src")).unwrap() {
        let src = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for api in [
            "std::net",
            "TcpStream",
            "UdpSocket",
            "reqwest",
            "hyper",
            "ureq",
        ] {
            assert!(!src.contains(api), "{api} in the library");
        }
    }
    // Dynamic: verifications leave no socket open.
    let (text, trust) = issued();
    let before = sockets();
    let v = Verifier::new(trust, None, Clock::Fixed(IAT + 60));
    for _ in 0..50 {
        assert_eq!(v.verify(&text).status, Status::Green);
    }
    assert_eq!(sockets(), before);
}

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: certs::cli::Command,
}

fn run(args: &[&str]) -> (std::process::ExitCode, String) {
    let cli = Cli::try_parse_from(std::iter::once("cert").chain(args.iter().copied())).unwrap();
    let mut out = Vec::new();
    let code = certs::cli::execute(cli.command, &mut out).unwrap();
    (code, String::from_utf8(out).unwrap())
}

#[test]
fn cli_verify_prints_one_json_object_per_input() {
    let (text, _) = issued();
    let trust = data("issuer/es256.dsc.pem");
    let (code, out) = run(&[
        "verify",
        "--trust",
        trust.to_str().unwrap(),
        "--at",
        "2026-12-01T01:00:00Z",
        &text,
        "HC2:XYZ",
    ]);
    assert_eq!(code, std::process::ExitCode::from(1));
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["status"], "green");
    assert_eq!(lines[0]["claims"]["family_name"], "Testperson");
    assert_eq!(lines[0]["claims"]["dob"], "1970-01-01");
    assert_eq!(lines[1]["status"], "red");
    assert_eq!(lines[1]["reasons"][0]["code"], "hcert.prefix");
    // With rules for DE (its vaccination rule does not apply to a test certificate): still green.
    let (code, out) = run(&[
        "verify",
        "--trust",
        trust.to_str().unwrap(),
        "--rules",
        data("rules").to_str().unwrap(),
        "--country",
        "DE",
        "--at",
        "2026-12-01T01:00:00Z",
        &text,
    ]);
    assert_eq!(code, std::process::ExitCode::SUCCESS, "{out}");
}

#[test]
fn cli_issue_writes_png_and_svg() {
    let dir = std::env::temp_dir().join(format!("certs-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let spec = dir.join("spec.json");
    std::fs::write(&spec, r#"{"person":{"family_name":"Doe","given_name":"Jane","dob":"1980-05-06"},
        "event":{"type":"recovery","tg":"840539006","fr":"2026-10-01","co":"AT","is":"Ministry","df":"2026-10-12","du":"2027-03-30"}}"#).unwrap();
    let png = dir.join("qr.png");
    let svg = dir.join("qr.svg");
    let (_, out) = run(&[
        "issue",
        "--key",
        data("issuer/ps256.key.pem").to_str().unwrap(),
        "--cert",
        data("issuer/ps256.dsc.pem").to_str().unwrap(),
        "--alg",
        "PS256",
        "--country",
        "AT",
        "--payload",
        spec.to_str().unwrap(),
        "--iat",
        "2026-12-01",
        "--png",
        png.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
    ]);
    let text = out.trim();
    assert_eq!(
        certs::qr::decode_image(&std::fs::read(&png).unwrap()).unwrap(),
        text
    );
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    let (code, out) = run(&[
        "verify",
        "--trust",
        data("issuer/ps256.dsc.pem").to_str().unwrap(),
        "--at",
        "2026-12-02",
        png.to_str().unwrap(),
    ]);
    assert_eq!(code, std::process::ExitCode::SUCCESS, "{out}");
    assert!(out.contains("\"certificate_type\":\"recovery\""));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn cli_conformance_ends_with_the_summary_line() {
    let (code, out) = run(&[
        "conformance",
        "dgc-testdata",
        data("dgc-testdata/common").to_str().unwrap(),
    ]);
    let last = out.lines().last().unwrap();
    assert!(last.ends_with(" passed, 0 failed, 0 skipped"), "{out}");
    assert_eq!(code, std::process::ExitCode::SUCCESS);
}

#[test]
fn cli_runs_the_certlogic_suites_too() {
    let certlogic = concat!(env!("CARGO_MANIFEST_DIR"), "/../certlogic/tests/data");
    for (suite, dir) in [("certlogic", "certlogic"), ("rules", "dcc-rules")] {
        let (code, out) = run(&["conformance", suite, &format!("{certlogic}/{dir}")]);
        let last = out.lines().last().unwrap_or_default();
        assert!(last.contains(" passed, 0 failed"), "{suite}: {out}");
        assert_eq!(code, std::process::ExitCode::SUCCESS, "{suite}");
    }
}
