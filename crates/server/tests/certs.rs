//! Health certificates in a real node: verifying real EU test vectors through the API and the page, untrusted
//! countries and keys, issuing (DCC vaccination / test / recovery, SMART Health Card) and verifying what was
//! issued, rules deciding in the holder's language, trust-list administration, and 4xx for bad input.

#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;
use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::path::PathBuf;

fn certs_data(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../certs/tests/data")
        .join(rel)
}

/// (HC1 text, validation clock, expected family name, dob) of a dgc-testdata vector.
fn vector(rel: &str) -> (String, String, String, String) {
    let text = std::fs::read_to_string(certs_data(&format!("dgc-testdata/{rel}"))).unwrap();
    let v: Value = serde_json::from_str(text.trim_start_matches('\u{feff}')).unwrap();
    (
        v["PREFIX"].as_str().unwrap().to_owned(),
        v["TESTCTX"]["VALIDATIONCLOCK"].as_str().unwrap().to_owned(),
        v["JSON"]["nam"]["fn"].as_str().unwrap().to_owned(),
        v["JSON"]["dob"].as_str().unwrap().to_owned(),
    )
}

/// Verifies through the API, in English unless the body names a language. Fluent's bidi isolation marks around
/// variables are removed from the messages so that the tests can compare plain text.
async fn verify(c: &Client, mut body: Value) -> (StatusCode, Value) {
    if body.get("lang").is_none() {
        body["lang"] = json!("en");
    }
    let (s, mut v) = c.post("/api/v1/certs/verify", body).await;
    if let Some(reasons) = v.get_mut("reasons").and_then(Value::as_array_mut) {
        for r in reasons {
            let plain = r["message"]
                .as_str()
                .unwrap()
                .replace(['\u{2068}', '\u{2069}'], "");
            r["message"] = json!(plain);
        }
    }
    (s, v)
}

fn codes(v: &Value) -> Vec<String> {
    v["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap().to_owned())
        .collect()
}

/// Posts the verifier page's multipart form.
async fn verify_page(c: &Client, fields: &[(&str, &str)]) -> (StatusCode, String) {
    let mut form = reqwest::multipart::Form::new().text("csrf", c.csrf.clone());
    for (k, v) in fields {
        form = form.text(k.to_string(), v.to_string());
    }
    let r = c
        .http
        .post(format!("{}/ui/certs/verify", c.base))
        .multipart(form)
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

#[tokio::test]
async fn a_real_test_vector_verifies_through_the_api_the_page_and_a_bearer_token() {
    let node = start().await;
    let officer = Client::login(&node, "officer").await;
    let (hc1, clock, family, dob) = vector("DE/2DCode/raw/1.json");

    let (s, v) = verify(&officer, json!({ "text": hc1, "at": clock })).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "green", "{v}");
    assert_eq!(v["format"], "eu-dcc");
    assert_eq!(v["holder"]["family_name"], family);
    assert_eq!(v["holder"]["dob"], dob);
    assert_eq!(v["issuer"], "DE");
    assert!(v["reasons"].as_array().unwrap().is_empty());
    // Only status, name, date of birth and what the certificate is: no vaccination details, no identifier.
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    for k in &keys {
        assert!(
            [
                "status",
                "format",
                "holder",
                "certificate_type",
                "issuer",
                "reasons",
                "country",
                "untrusted",
                "checked_at",
                "lang"
            ]
            .contains(k),
            "unexpected field {k}"
        );
    }
    assert!(!v.to_string().contains("URN:UVCI"));

    // The same certificate today: the signature still verifies, but it has expired.
    let (s, v) = verify(&officer, json!({ "text": hc1 })).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["status"], "red");
    assert!(codes(&v).contains(&"validity.expired".to_owned()), "{v}");
    let expired = v["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["code"] == "validity.expired")
        .unwrap();
    assert_eq!(expired["message"], "The certificate has expired.");

    // The page.
    let (s, html) = verify_page(
        &officer,
        &[("text", &hc1), ("at", &clock[..10]), ("country", "")],
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains(r#"data-status="green""#), "{html}");
    assert!(html.contains(&family));
    assert!(html.contains(&dob));
    assert!(
        !html.contains(&hc1),
        "the page must not echo the certificate back"
    );
    assert!(html.contains(r#"<script src="/ui/certs/scan.js" defer>"#));

    // A bearer token works as for the rest of the API (no CSRF header needed).
    let (_, token) = officer
        .post("/api/v1/tokens", json!({ "name": "border" }))
        .await;
    let token = token["token"].as_str().unwrap();
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/certs/verify", node.base))
        .bearer_auth(token)
        .json(&json!({ "text": hc1, "at": clock, "lang": "ar" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "green");
    assert_eq!(v["lang"], "ar");

    // The camera script is served from the node itself, as the CSP requires.
    let r = reqwest::get(format!("{}/ui/certs/scan.js", node.base))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("BarcodeDetector"));
}

#[tokio::test]
async fn a_country_or_key_that_is_not_trusted_is_reported_as_such() {
    let node = start().await;
    let admin = Client::login(&node, "admin").await;
    let clinician = Client::login(&node, "dr.aliyev").await;
    let (hc1, clock, _, _) = vector("AT/2DCode/raw/1.json");
    let (_, v) = verify(&clinician, json!({ "text": hc1, "at": clock })).await;
    assert_eq!(v["status"], "green", "{v}");

    // The administrator stops trusting Austria: the certificate is now reported as from an untrusted country.
    let (s, r) = admin
        .send(reqwest::Method::DELETE, "/api/v1/certs/trust/AT", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["removed"], 1);
    let (_, v) = verify(&clinician, json!({ "text": hc1, "at": clock })).await;
    assert_eq!(v["status"], "red");
    assert_eq!(codes(&v), ["trust.unknown_kid"]);
    assert_eq!(v["untrusted"], "AT");
    assert!(
        v.get("holder").is_none(),
        "no claims of an unverified certificate"
    );
    assert_eq!(
        v["reasons"][0]["message"],
        "The certificate says it comes from AT, but this node trusts no signing key of AT."
    );
    let (_, list) = clinician.get("/api/v1/certs/trust").await;
    assert!(!list["countries"].as_array().unwrap().contains(&json!("AT")));

    // Re-imported from a DSC list (the DGCA form), Austria is trusted again: mutual recognition from a file.
    let all: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/certs/dgc-testdata-dsc.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let at: Vec<&Value> = all.iter().filter(|e| e["country"] == "AT").collect();
    let (s, r) = admin
        .post("/api/v1/certs/trust", serde_json::to_value(&at).unwrap())
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["imported"]["dsc"]["AT"], 1);
    let (_, v) = verify(&clinician, json!({ "text": hc1, "at": clock })).await;
    assert_eq!(v["status"], "green");

    // A certificate claiming Austria but signed by a key Austria never published: the country is trusted, the key
    // is not.
    let key = std::fs::read(certs_data("issuer/es256.key.pem")).unwrap();
    let dsc = std::fs::read(certs_data("issuer/es256.dsc.pem")).unwrap();
    let dsc_der = certs::crypto::pem_to_der(&dsc, "CERTIFICATE")
        .unwrap()
        .unwrap();
    let issuer = certs::issue::DccIssuer::new(
        certs::crypto::SigningKey::from_pkcs8_pem_or_der(certs::crypto::Algorithm::Es256, &key)
            .unwrap(),
        &dsc_der,
        "AT",
    )
    .unwrap();
    let person = certs::issue::Person {
        family_name: "Forged".into(),
        given_name: None,
        dob: "1980-01-01".into(),
    };
    let event = certs::issue::Event::Test(certs::issue::Test {
        tg: "840539006".into(),
        tt: "LP6464-4".into(),
        nm: Some("PCR".into()),
        ma: None,
        sc: "2026-01-01T10:00:00Z".into(),
        tr: "260415000".into(),
        tc: "Somewhere".into(),
        co: "AT".into(),
        is: "Not Austria".into(),
    });
    let uvci = certs::issue::new_uvci("AT").unwrap();
    let now = chrono::Utc::now().timestamp();
    let forged = issuer
        .issue(
            &certs::issue::build_dcc(&person, &event, &uvci).unwrap(),
            now - 60,
            now + 86_400,
        )
        .unwrap();
    let (_, v) = verify(&clinician, json!({ "text": forged })).await;
    assert_eq!(v["status"], "red");
    assert_eq!(v["untrusted"], "AT");
    assert!(v["reasons"][0]["message"]
        .as_str()
        .unwrap()
        .contains("trusts keys of AT, but not the one that signed it"));

    // A SMART Health Card from an issuer the node does not know.
    let card = std::fs::read_to_string(certs_data("shc/examples/example-00-d-jws.txt")).unwrap();
    let (_, v) = verify(&clinician, json!({ "text": card.trim() })).await;
    assert_eq!(
        v["status"], "green",
        "the demo trusts the spec's example issuer: {v}"
    );
    let form = [
        ("csrf", admin.csrf.as_str()),
        ("iss", "https://spec.smarthealth.cards/examples/issuer"),
    ];
    let r = admin
        .http
        .post(format!("{}/ui/certs/admin/remove", node.base))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (_, v) = verify(&clinician, json!({ "text": card.trim() })).await;
    assert_eq!(v["status"], "red");
    assert_eq!(codes(&v), ["trust.untrusted_issuer"]);
    assert_eq!(
        v["untrusted"],
        "https://spec.smarthealth.cards/examples/issuer"
    );
}

async fn first_patient(c: &Client) -> Value {
    let (_, list) = c.get("/api/v1/patients").await;
    list[0].clone()
}

#[tokio::test]
async fn issued_certificates_verify_and_the_issuing_is_audited() {
    let node = start().await;
    let clinician = Client::login(&node, "dr.aliyev").await;
    let patient = first_patient(&clinician).await;
    let pid = patient["id"].as_str().unwrap();

    let (s, issued) = clinician
        .post(
            "/api/v1/certs/issue",
            json!({
                "kind": "vaccination",
                "patient_id": pid,
                "v": { "vp": "1119349007", "mp": "EU/1/20/1528", "ma": "ORG-100030215", "dn": 2, "sd": 2, "dt": "2026-01-10" },
                "qr": "svg",
            }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{issued}");
    let hc1 = issued["text"].as_str().unwrap();
    assert!(hc1.starts_with("HC1:"));
    assert_eq!(
        issued["issuer"], "KZ",
        "the clinician's institution's country"
    );
    assert!(issued["id"]
        .as_str()
        .unwrap()
        .starts_with("URN:UVCI:01:KZ:"));
    assert!(issued["qr_svg"].as_str().unwrap().contains("<svg"));
    // The QR code carries exactly the text.
    let png = certs::qr::render_png(hc1, 4).unwrap();
    assert_eq!(certs::qr::decode_image(&png).unwrap(), hc1);

    let (_, v) = verify(&clinician, json!({ "text": hc1 })).await;
    assert_eq!(v["status"], "green", "{v}");
    assert_eq!(v["holder"]["family_name"], patient["family_name"]);
    assert_eq!(v["holder"]["given_name"], patient["given_name"]);
    assert_eq!(v["holder"]["dob"], patient["birth_date"]);
    assert_eq!(v["certificate_type"], "vaccination");

    // The node's own DSC was generated on first use and is trusted.
    let (_, list) = clinician.get("/api/v1/certs/trust").await;
    let own: Vec<&Value> = list["dsc"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["own"] == true)
        .collect();
    assert_eq!(own.len(), 1, "{list}");
    assert_eq!(own[0]["country"], "KZ");
    assert_eq!(own[0]["kid"], issued["kid"]);
    assert!(
        node.dir
            .path()
            .join("certs/issuer")
            .read_dir()
            .unwrap()
            .count()
            >= 2
    );

    // The issuing is in the patient's access log and in the intact audit chain; the health data is not.
    let (s, log) = clinician
        .get(&format!("/api/v1/patients/{pid}/access-log"))
        .await;
    assert_eq!(s, StatusCode::OK);
    let text = log.to_string();
    assert!(text.contains("health_certificate"), "{text}");
    assert!(text.contains(issued["id"].as_str().unwrap()));
    assert!(!text.contains("EU/1/20/1528"));
    let admin = Client::login(&node, "admin").await;
    let (_, chain) = admin.get("/api/v1/audit/verify").await;
    assert_eq!(chain["intact"], true);

    // A test and a recovery certificate for a holder typed in, and a SMART Health Card.
    let person = json!({ "family_name": "Ospanov", "given_name": "Daulet", "dob": "1979-03-14" });
    for (kind, event) in [
        (
            "test",
            json!({ "t": { "tt": "LP217198-3", "ma": "1232", "sc": "2026-02-01T08:30", "tr": "260415000", "tc": "Taldykorgan District Hospital" } }),
        ),
        (
            "recovery",
            json!({ "r": { "fr": "2026-01-01", "df": "2026-01-12", "du": "2026-06-30" } }),
        ),
        (
            "shc",
            json!({ "immunization": { "cvx": "208", "date": "2026-01-10", "lot": "EW0150" } }),
        ),
    ] {
        let mut body = json!({ "kind": kind, "person": person });
        body.as_object_mut()
            .unwrap()
            .extend(event.as_object().unwrap().clone());
        let (s, issued) = clinician.post("/api/v1/certs/issue", body).await;
        assert_eq!(s, StatusCode::CREATED, "{kind}: {issued}");
        let (_, v) = verify(&clinician, json!({ "text": issued["text"] })).await;
        assert_eq!(v["status"], "green", "{kind}: {v}");
        assert_eq!(v["holder"]["family_name"], "Ospanov");
        assert_eq!(v["holder"]["dob"], "1979-03-14");
        if kind == "shc" {
            assert_eq!(v["format"], "smart-health-card");
            assert!(issued["text"].as_str().unwrap().starts_with("shc:/"));
            assert_eq!(v["issuer"], "https://demo.caravan.invalid/shc");
            // The JWKS a verifier would fetch from the issuer URL.
            let jwks: Value = reqwest::get(format!("{}/.well-known/jwks.json", node.base))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(jwks["keys"][0]["kid"], issued["kid"]);
            assert!(jwks["keys"][0].get("d").is_none());
        }
    }

    // Only clinicians issue.
    for user in ["patient", "officer", "admin", "coordinator"] {
        let c = Client::login(&node, user).await;
        let (s, body) = c
            .post(
                "/api/v1/certs/issue",
                json!({ "kind": "shc", "person": person }),
            )
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{user}: {body}");
    }

    // The issuing page shows the QR code and the text.
    let form = [
        ("csrf", clinician.csrf.as_str()),
        ("kind", "vaccination"),
        ("patient_id", pid),
        ("mp", "EU/1/20/1507"),
        ("ma", "ORG-100031184"),
        ("vp", "1119349007"),
        ("dn", "1"),
        ("sd", "2"),
        ("dt", "2026-01-03"),
        ("co", "KZ"),
        ("days", "180"),
    ];
    let r = clinician
        .http
        .post(format!("{}/ui/certs/issue", node.base))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    assert!(html.contains(r#"id="cert-qr""#), "{html}");
    assert!(html.contains("data:image/png;base64,"));
    assert!(html.contains("HC1:"));
}

#[tokio::test]
async fn rules_of_the_arrival_country_decide_in_the_holders_language() {
    let node = start().await;
    let clinician = Client::login(&node, "dr.aliyev").await;
    let (_, issued) = clinician
        .post(
            "/api/v1/certs/issue",
            json!({
                "kind": "vaccination",
                "person": { "family_name": "Nurlanova", "given_name": "Aigerim", "dob": "1987-05-02" },
                "v": { "vp": "1119349007", "mp": "EU/1/20/1528", "ma": "ORG-100030215", "dn": 1, "sd": 2, "dt": chrono::Utc::now().format("%Y-%m-%d").to_string() },
            }),
        )
        .await;
    let hc1 = issued["text"].as_str().unwrap();
    // Technically valid; Germany's rules want the series complete.
    let (_, v) = verify(&clinician, json!({ "text": hc1 })).await;
    assert_eq!(v["status"], "green");
    let (s, v) = verify(
        &clinician,
        json!({ "text": hc1, "country": "DE", "lang": "en" }),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["status"], "red", "{v}");
    assert_eq!(v["country"], "DE");
    let failed: Vec<&Value> = v["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["code"] == "rule.failed")
        .collect();
    assert!(!failed.is_empty(), "{v}");
    let rule = failed[0]["rule"].as_str().unwrap();
    assert!(rule.starts_with("VR-DE-"), "{rule}");
    assert!(failed[0]["message"]
        .as_str()
        .unwrap()
        .starts_with(&format!("Rule {rule} is not met: ")));
    // In Russian the frame is Russian; the rule's own description is the best language the rule carries.
    let (_, v) = verify(
        &clinician,
        json!({ "text": hc1, "country": "DE", "lang": "ru" }),
    )
    .await;
    let msg = v["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["code"] == "rule.failed")
        .unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(msg.starts_with("Правило"), "{msg}");
    // The page shows the deciding rule too, right to left in Arabic.
    let (_, html) = verify_page(&clinician, &[("text", hc1), ("country", "DE")]).await;
    assert!(html.contains(r#"data-status="red""#));
    assert!(html.contains(&format!("<code>{rule}</code>")));
    let arabic = Client::login(&node, "dr.aliyev").await;
    let r = arabic
        .http
        .post(format!("{}/ui/lang", node.base))
        .form(&[
            ("lang", "ar"),
            ("next", "/ui/certs/verify"),
            ("csrf", &arabic.csrf),
        ])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_redirection());
    let (_, html) = verify_page(&arabic, &[("text", hc1), ("country", "DE")]).await;
    assert!(html.contains(r#"dir="rtl""#));
    assert!(html.contains("القاعدة"), "{html}");
}

#[tokio::test]
async fn bad_input_is_answered_with_4xx() {
    let node = start().await;
    let c = Client::login(&node, "dr.aliyev").await;
    let admin = Client::login(&node, "admin").await;
    let bad = [
        (json!({}), "error-cert-input"),
        (json!({ "text": "   " }), "error-cert-input"),
        (
            json!({ "text": "HC1:x", "at": "next tuesday" }),
            "error-cert-input",
        ),
        (
            json!({ "text": "HC1:x", "country": "ZZ" }),
            "error-cert-no-rules",
        ),
        (
            json!({ "text": "HC1:x", "country": "Germany" }),
            "error-cert-input",
        ),
        (json!({ "text": "x".repeat(70_000) }), "error-cert-input"),
        (json!({ "text": 42 }), "error-bad-json"),
    ];
    for (body, code) in bad {
        let (s, v) = verify(&c, body.clone()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {v}");
        assert_eq!(v["error"], code, "{body}: {v}");
    }
    // Text that is not a certificate is a red result with its reason, as a verifier app shows it.
    let (s, v) = verify(&c, json!({ "text": "hello" })).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["status"], "red");
    assert_eq!(codes(&v), ["hcert.prefix"]);
    let (s, v) = verify(
        &c,
        json!({ "text": "HC1:NCFOXN%TS3DH3ZSUZK+.V0ETD%65NL-AH" }),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["status"], "red", "{v}");

    let person = json!({ "family_name": "Test", "dob": "1990-01-01" });
    let bad_issue = [
        json!({ "kind": "passport", "person": person }),
        json!({ "kind": "vaccination", "person": person }),
        json!({ "kind": "vaccination" }),
        json!({ "kind": "vaccination", "person": person, "v": { "vp": "1119349007", "mp": "EU/1/20/1528", "ma": "ORG-100030215", "dn": 0, "sd": 2, "dt": "2026-01-10" } }),
        json!({ "kind": "vaccination", "person": person, "v": { "vp": "1119349007", "mp": "EU/1/20/1528", "ma": "ORG-100030215", "dn": 1, "sd": 2, "dt": "yesterday" } }),
        json!({ "kind": "vaccination", "person": { "family_name": "Test", "dob": "01.01.1990" }, "v": { "vp": "1119349007", "mp": "EU/1/20/1528", "ma": "ORG-100030215", "dn": 1, "sd": 2, "dt": "2026-01-10" } }),
        json!({ "kind": "test", "person": person, "t": { "tt": "LP6464-4", "sc": "soon", "tr": "260415000", "tc": "X" } }),
        json!({ "kind": "shc", "person": person, "immunization": { "cvx": "Pfizer", "date": "2026-01-10" } }),
        json!({ "kind": "shc", "person": person, "immunization": { "cvx": "208", "date": "10/01/2026" } }),
        json!({ "kind": "vaccination", "patient_id": "not-an-id", "v": {} }),
    ];
    for body in bad_issue {
        let (s, v) = c.post("/api/v1/certs/issue", body.clone()).await;
        assert!(s.is_client_error(), "{body}: {s} {v}");
        assert_ne!(s, StatusCode::FORBIDDEN, "{body}: {v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let (s, _) = c
        .post(
            "/api/v1/certs/issue",
            json!({ "kind": "vaccination", "patient_id": "0190b3a2-0000-7000-8000-000000000000", "v": { "vp": "1119349007", "mp": "EU/1/20/1528", "ma": "ORG-100030215", "dn": 1, "sd": 2, "dt": "2026-01-10" } }),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "a patient outside the scope");

    // Imports refuse what the verifier could not use.
    for (path, body) in [
        ("/api/v1/certs/trust", "not a certificate"),
        ("/api/v1/certs/trust", "{\"hello\": 1}"),
        (
            "/api/v1/certs/trust",
            "[{\"kid\":\"AAAAAAAAAAA=\",\"country\":\"DE\",\"rawData\":\"!!\"}]",
        ),
        ("/api/v1/certs/rules", "[1, 2]"),
        ("/api/v1/certs/rules", "{\"Identifier\": \"VR-XX-0001\"}"),
        ("/api/v1/certs/rules", "not json"),
    ] {
        let r = admin
            .http
            .post(format!("{}{path}", node.base))
            .header("x-csrf-token", &admin.csrf)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{path} {body}"
        );
    }
    let (s, _) = admin
        .send(
            reqwest::Method::DELETE,
            "/api/v1/certs/trust/Deutschland",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = admin
        .send(reqwest::Method::DELETE, "/api/v1/certs/trust/QQ", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // A session write without the CSRF token is refused.
    let r = c
        .http
        .post(format!("{}/api/v1/certs/verify", node.base))
        .json(&json!({ "text": "hello" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // The page shows a 4xx inside the form, not an error page.
    let (s, html) = verify_page(&c, &[("text", "HC1:x"), ("at", "nonsense")]).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains(r#"id="cert-error""#));
    assert!(html.contains(r#"id="verify-form""#));
}

#[tokio::test]
async fn rules_and_trust_lists_import_from_files_and_export_for_peers() {
    let node = start().await;
    let admin = Client::login(&node, "admin").await;
    // A single DE rule file (as published) and a PEM DSC without a country in the list.
    let rule = std::fs::read(certs_data("rules/VR-XX-0001.json")).unwrap();
    let r = admin
        .http
        .post(format!("{}/api/v1/certs/rules", node.base))
        .header("x-csrf-token", &admin.csrf)
        .body(rule)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["imported"]["rules"]["XX"], 1, "{v}");
    let pem = std::fs::read(certs_data("issuer/ps256.dsc.pem")).unwrap();
    let r = admin
        .http
        .post(format!("{}/api/v1/certs/trust?country=LU", node.base))
        .header("x-csrf-token", &admin.csrf)
        .body(pem)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (_, list) = admin.get("/api/v1/certs/trust").await;
    assert!(list["countries"].as_array().unwrap().contains(&json!("LU")));
    assert_eq!(list["rules"]["XX"], 1);
    assert!(list["rules"]["DE"].as_u64().unwrap() > 5);
    // The exchange document carries every DSC; a fresh node importing it trusts the same countries.
    let (_, doc) = admin.get("/api/v1/certs/trust/export").await;
    let n = doc["dsc"].as_array().unwrap().len();
    assert!(n >= 21, "{n}");
    let other = tempfile::tempdir().unwrap();
    let dir = caravan_server::certs_web::material::CertsDir::new(other.path());
    let report = dir.import_trust(doc.to_string().as_bytes(), None).unwrap();
    assert!(report.dsc.contains_key("LU"));
    assert_eq!(dir.load().unwrap().dsc.len(), n);
    // The changes are in the audit chain.
    let (_, chain) = admin.get("/api/v1/audit/verify").await;
    assert_eq!(chain["intact"], true);
    // The same through the admin page: import a rule file, a new DCC key for Uzbekistan, a wrong issuer URL.
    let form = reqwest::multipart::Form::new()
        .text("csrf", admin.csrf.clone())
        .text("what", "rules")
        .part(
            "file",
            reqwest::multipart::Part::bytes(
                std::fs::read(certs_data("rules/VR-YY-0001.json")).unwrap(),
            )
            .file_name("VR-YY-0001.json"),
        );
    let r = admin
        .http
        .post(format!("{}/ui/certs/admin/import", node.base))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("YY"));
    let r = admin
        .http
        .post(format!("{}/ui/certs/admin/keys", node.base))
        .form(&[
            ("csrf", admin.csrf.as_str()),
            ("kind", "dcc"),
            ("country", "UZ"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = admin
        .http
        .post(format!("{}/ui/certs/admin/settings", node.base))
        .form(&[
            ("csrf", admin.csrf.as_str()),
            ("iss", "http://insecure.example"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let (_, list) = admin.get("/api/v1/certs/trust").await;
    assert_eq!(list["rules"]["YY"], 1);
    assert!(list["dsc"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["own"] == true && d["country"] == "UZ"));
    assert_eq!(
        list["issuer"]["shc_iss"],
        "https://demo.caravan.invalid/shc"
    );
    // The admin page lists them.
    let r = admin
        .http
        .get(format!("{}/ui/certs/admin", node.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    assert!(html.contains("<td>LU</td>"));
    assert!(html.contains("https://spec.smarthealth.cards/examples/issuer"));
}

#[tokio::test]
async fn concurrent_first_issues_generate_one_key() {
    let node = start().await;
    let a = Client::login(&node, "dr.aliyev").await;
    let b = Client::login(&node, "cardio.nurlanov").await;
    let body = json!({
        "kind": "test",
        "person": { "family_name": "Test", "dob": "1990-01-01" },
        "t": { "tt": "LP6464-4", "nm": "PCR", "sc": "2026-02-01T08:30:00Z", "tr": "260415000", "tc": "Lab" },
    });
    let (r1, r2, r3, r4) = tokio::join!(
        a.post("/api/v1/certs/issue", body.clone()),
        b.post("/api/v1/certs/issue", body.clone()),
        a.post("/api/v1/certs/issue", body.clone()),
        b.post("/api/v1/certs/issue", body.clone()),
    );
    let kids: std::collections::BTreeSet<String> = [r1, r2, r3, r4]
        .iter()
        .map(|(s, v)| {
            assert_eq!(*s, StatusCode::CREATED, "{v}");
            v["kid"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(kids.len(), 1, "both clinicians are in KZ: one key");
    let (_, list) = a.get("/api/v1/certs/trust").await;
    let own = list["dsc"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["own"] == true)
        .count();
    assert_eq!(own, 1);
}
