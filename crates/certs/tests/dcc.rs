//! EU DCC: issue → verify round trips (ES256 and PS256), QR rendering and decoding, trust-list exchange,
//! rules → status, bad input, the CLI, and the privacy guarantee that verification emits no log event.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use certs::crypto::{Algorithm, SigningKey};
use certs::issue::{build_dcc, DccIssuer, Event, Person, Vaccination};
use certs::{Clock, Status, TrustList, Verifier};
use std::path::{Path, PathBuf};

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel)
}

fn issuer(alg: Algorithm, key: &str, cert: &str) -> (DccIssuer, TrustList) {
    let key = SigningKey::from_pkcs8_pem_or_der(alg, &std::fs::read(data(key)).unwrap()).unwrap();
    let pem = std::fs::read(data(cert)).unwrap();
    let der = certs::crypto::pem_to_der(&pem, "CERTIFICATE")
        .unwrap()
        .unwrap();
    let mut trust = TrustList::new();
    trust.add_pem(&pem, Some("AT")).unwrap();
    (DccIssuer::new(key, &der, "AT").unwrap(), trust)
}

fn person() -> Person {
    Person {
        family_name: "Musterfrau-Gößinger".into(),
        given_name: Some("Gabriele".into()),
        dob: "1998-02-26".into(),
    }
}

fn vaccination() -> Event {
    Event::Vaccination(Vaccination {
        tg: "840539006".into(),
        vp: "1119349007".into(),
        mp: "EU/1/20/1528".into(),
        ma: "ORG-100030215".into(),
        dn: 2,
        sd: 2,
        dt: "2021-02-18".into(),
        co: "AT".into(),
        is: "Ministry of Health, Austria".into(),
    })
}

// 2026-12-01 (after the test DSCs were made) and one year later.
const IAT: i64 = 1_796_083_200;
const EXP: i64 = IAT + 365 * 86_400;

#[test]
fn issue_then_verify_es256_and_ps256() {
    for (alg, key, cert) in [
        (
            Algorithm::Es256,
            "issuer/es256.key.pem",
            "issuer/es256.dsc.pem",
        ),
        (
            Algorithm::Ps256,
            "issuer/ps256.key.pem",
            "issuer/ps256.dsc.pem",
        ),
    ] {
        let (issuer, trust) = issuer(alg, key, cert);
        let dcc = build_dcc(
            &person(),
            &vaccination(),
            "URN:UVCI:01:AT:10807843F94AEE0EE5093FBC254BD813",
        )
        .unwrap();
        assert_eq!(dcc["nam"]["fnt"], "MUSTERFRAU<GOESSINGER");
        let text = issuer.issue(&dcc, IAT, EXP).unwrap();
        assert!(text.starts_with("HC1:"));
        let v = Verifier::new(trust.clone(), None, Clock::Fixed(IAT + 86_400)).verify(&text);
        assert_eq!(v.status, Status::Green, "{alg:?}: {:?}", v.reasons);
        let claims = v.claims.unwrap();
        assert_eq!(claims.family_name.as_deref(), Some("Musterfrau-Gößinger"));
        assert_eq!(claims.dob.as_deref(), Some("1998-02-26"));
        assert_eq!(claims.certificate_type.as_deref(), Some("vaccination"));
        // Expired after exp, not yet valid before iat.
        let late = Verifier::new(trust.clone(), None, Clock::Fixed(EXP + 1)).verify(&text);
        assert!(late.status == Status::Red && late.has("validity.expired"));
        let early = Verifier::new(trust.clone(), None, Clock::Fixed(IAT - 1)).verify(&text);
        assert!(early.has("validity.not_yet_valid"));
        // Unknown signer: an empty trust list.
        let none = Verifier::new(TrustList::new(), None, Clock::Fixed(IAT)).verify(&text);
        assert!(none.has("trust.unknown_kid"));
        assert!(none.claims.is_none());
    }
}

#[test]
fn key_usage_restricts_types() {
    let key = SigningKey::from_pkcs8_pem_or_der(
        Algorithm::Es256,
        &std::fs::read(data("issuer/es256.key.pem")).unwrap(),
    )
    .unwrap();
    let pem = std::fs::read(data("issuer/es256-test-only.dsc.pem")).unwrap();
    let der = certs::crypto::pem_to_der(&pem, "CERTIFICATE")
        .unwrap()
        .unwrap();
    let issuer = DccIssuer::new(key, &der, "AT").unwrap();
    let mut trust = TrustList::new();
    trust.add_pem(&pem, None).unwrap();
    let dcc = build_dcc(&person(), &vaccination(), "URN:UVCI:01:AT:X").unwrap();
    let v = Verifier::new(trust, None, Clock::Fixed(IAT))
        .verify(&issuer.issue(&dcc, IAT, EXP).unwrap());
    assert!(v.has("trust.key_usage"), "{:?}", v.reasons);
}

#[test]
fn issuer_refuses_schema_invalid_payloads_and_wrong_keys() {
    let (issuer, _) = issuer(
        Algorithm::Es256,
        "issuer/es256.key.pem",
        "issuer/es256.dsc.pem",
    );
    let mut dcc = build_dcc(&person(), &vaccination(), "URN:UVCI:01:AT:X").unwrap();
    dcc["dob"] = "26.02.1998".into();
    assert_eq!(
        issuer.issue(&dcc, IAT, EXP).unwrap_err().code(),
        "schema.invalid"
    );
    let rsa = SigningKey::from_pkcs8_pem_or_der(
        Algorithm::Ps256,
        &std::fs::read(data("issuer/ps256.key.pem")).unwrap(),
    )
    .unwrap();
    let der = certs::crypto::pem_to_der(
        &std::fs::read(data("issuer/es256.dsc.pem")).unwrap(),
        "CERTIFICATE",
    )
    .unwrap()
    .unwrap();
    assert!(DccIssuer::new(rsa, &der, "AT").is_err());
}

#[test]
fn qr_png_and_svg_round_trip() {
    let (issuer, trust) = issuer(
        Algorithm::Es256,
        "issuer/es256.key.pem",
        "issuer/es256.dsc.pem",
    );
    let dcc = build_dcc(&person(), &vaccination(), "URN:UVCI:01:AT:X").unwrap();
    let text = issuer.issue(&dcc, IAT, EXP).unwrap();
    let png = certs::qr::render_png(&text, 4).unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    assert_eq!(certs::qr::decode_image(&png).unwrap(), text);
    let svg = certs::qr::render_svg(&text).unwrap();
    assert!(svg.contains("<svg") && svg.contains("</svg>"));
    assert_eq!(
        Verifier::new(trust, None, Clock::Fixed(IAT))
            .verify(&certs::qr::decode_image(&png).unwrap())
            .status,
        Status::Green
    );
}

#[test]
fn trust_list_exchange_round_trip() {
    let (_, trust) = issuer(
        Algorithm::Es256,
        "issuer/es256.key.pem",
        "issuer/es256.dsc.pem",
    );
    let doc = trust.to_json();
    let back = TrustList::from_json(&doc).unwrap();
    assert_eq!(back.dsc_count(), 1);
    assert_eq!(back.countries(), vec!["AT".to_string()]);
    // A listed kid that disagrees with the certificate is refused.
    let mut forged = doc.clone();
    forged["dsc"][0]["kid"] = "AAAAAAAAAAA=".into();
    assert!(TrustList::from_json(&forged).is_err());
}

#[test]
fn bad_input_gets_a_precise_reason_and_never_panics() {
    let v = Verifier::new(TrustList::new(), None, Clock::Fixed(IAT));
    let cases = [
        ("", "input.empty"),
        ("HC2:NCF", "hcert.prefix"),
        ("NCFOXN%TS3DH", "hcert.prefix"),
        ("HC1:NCF~", "hcert.base45"),
        ("HC1:0", "hcert.base45"),
        ("HC1:GGW", "hcert.base45"),
        ("HC1:NCFOXN", "hcert.zlib"),
    ];
    for (input, code) in cases {
        let r = v.verify(input);
        assert_eq!(r.status, Status::Red);
        assert_eq!(r.reasons[0].code, code, "{input:?}: {:?}", r.reasons);
    }
    let long = format!("HC1:{}", "A".repeat(10_000));
    assert_eq!(v.verify(&long).reasons[0].code, "input.too_long");
    // Every truncation of a real certificate is rejected without a panic.
    let (issuer, trust) = issuer(
        Algorithm::Es256,
        "issuer/es256.key.pem",
        "issuer/es256.dsc.pem",
    );
    let text = issuer
        .issue(
            &build_dcc(&person(), &vaccination(), "URN:UVCI:01:AT:X").unwrap(),
            IAT,
            EXP,
        )
        .unwrap();
    let v = Verifier::new(trust, None, Clock::Fixed(IAT));
    for cut in 0..text.len() {
        assert_eq!(v.verify(&text[..cut]).status, Status::Red);
    }
}

#[test]
fn rules_map_to_status() {
    let (issuer, trust) = issuer(
        Algorithm::Es256,
        "issuer/es256.key.pem",
        "issuer/es256.dsc.pem",
    );
    let text = issuer
        .issue(
            &build_dcc(&person(), &vaccination(), "URN:UVCI:01:AT:X").unwrap(),
            IAT,
            EXP,
        )
        .unwrap();
    let dir = data("rules");
    let rules = certs::rules::RuleSet::load_dir(&dir).unwrap();
    let cfg = |country: &str| {
        Some(certs::RulesConfig {
            rules: rules.clone(),
            country: country.into(),
            lang: "de".into(),
        })
    };
    // DE accepts this vaccine (rule VR-DE-0002 passes) → green.
    let v = Verifier::new(trust.clone(), cfg("DE"), Clock::Fixed(IAT)).verify(&text);
    assert_eq!(v.status, Status::Green, "{:?}", v.reasons);
    assert!(!v.rules.is_empty());
    // XX requires a product that is not this one → red, naming the rule, in German.
    let v = Verifier::new(trust.clone(), cfg("XX"), Clock::Fixed(IAT)).verify(&text);
    assert_eq!(v.status, Status::Red);
    assert_eq!(v.reasons[0].code, "rule.failed");
    assert_eq!(v.reasons[0].rule.as_deref(), Some("VR-XX-0001"));
    assert!(v.reasons[0].message.contains("Impfstoff"));
    // YY's rule reads a value set that is not loaded → open → yellow.
    let v = Verifier::new(trust, cfg("YY"), Clock::Fixed(IAT)).verify(&text);
    assert_eq!(v.status, Status::Yellow, "{:?}", v.reasons);
    assert_eq!(v.reasons[0].code, "rule.open");
}
