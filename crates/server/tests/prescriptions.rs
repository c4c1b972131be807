//! e-Prescription on a real node (SQLite, demo seed with the starter tables): allergy and interaction warnings with
//! their reasons, the severe-warning override (refused without a reason, audited with one), the signed QR payload
//! verified with the published keys only (and a tampered one refused), dispensing, scoping and bad input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use caravan_server::rx::sign;
use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn aigerim(c: &Client) -> String {
    let (s, v) = c.get("/api/v1/patients?name=Nurlanova").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v[0]["id"].as_str().unwrap().to_owned()
}

fn rx(patient: &str, code: &str) -> Value {
    json!({ "patient_id": patient, "medication": code, "dose": "500", "times_per_day": 3, "duration_days": 7 })
}

#[tokio::test]
async fn warnings_override_qr_and_dispense() {
    let node = start().await;
    let doc = Client::login(&node, "dr.aliyev").await;
    let pid = aigerim(&doc).await;

    // The starter formulary is there (demo seed); the allergy is recorded on the patient.
    let (s, f) = doc.get("/api/v1/rx/formulary?q=amoxicillin").await;
    assert_eq!(s, StatusCode::OK);
    assert!(f.as_array().unwrap().iter().any(|i| i["code"] == "308191"));
    let (s, a) = doc
        .post(
            &format!("/api/v1/patients/{pid}/allergies"),
            json!({ "substance": "Penicillin", "criticality": "high", "reaction": "urticaria" }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{a}");
    let (_, list) = doc
        .get(&format!("/api/v1/patients/{pid}/allergies?format=fhir"))
        .await;
    assert_eq!(
        list["entry"][0]["resource"]["resourceType"],
        "AllergyIntolerance"
    );
    assert_eq!(list["entry"][0]["resource"]["code"]["text"], "penicillin");

    // Amoxicillin: a severe allergy warning with its reason; without an override reason it is refused.
    let (s, check) = doc.post("/api/v1/rx/check", rx(&pid, "308191")).await;
    assert_eq!(s, StatusCode::OK, "{check}");
    assert_eq!(check["override_required"], true);
    assert_eq!(check["warnings"][0]["kind"], "allergy");
    assert_eq!(check["warnings"][0]["severity"], "high");
    assert!(check["warnings"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("penicillin"));
    let (s, e) = doc
        .post("/api/v1/rx/prescriptions", rx(&pid, "308191"))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    assert_eq!(e["error"], "error-rx-override-required");
    let (_, before) = doc
        .get(&format!("/api/v1/patients/{pid}/prescriptions"))
        .await;
    assert!(
        before.as_array().unwrap().is_empty(),
        "nothing written: {before}"
    );
    // Cefalexin: only a moderate cross-reactivity warning, written without an override.
    let (s, cef) = doc
        .post("/api/v1/rx/prescriptions", rx(&pid, "309114"))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{cef}");
    assert_eq!(cef["warnings"][0]["severity"], "moderate");
    assert!(cef["warnings"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("cross-reactivity"));
    assert_eq!(cef["override_reason"], Value::Null);
    // With a reason the amoxicillin is written, and the override is in the patient's access log.
    let mut body = rx(&pid, "308191");
    body["override_reason"] = json!("tolerated amoxicillin in 2023 under observation");
    let (s, amox) = doc.post("/api/v1/rx/prescriptions", body).await;
    assert_eq!(s, StatusCode::CREATED, "{amox}");
    assert_eq!(amox["dosage"]["quantity"], 21);
    let (_, log) = doc.get(&format!("/api/v1/patients/{pid}/access-log")).await;
    let log = log.to_string();
    assert!(log.contains("prescription-override"), "{log}");
    assert!(log.contains("tolerated amoxicillin in 2023"), "{log}");

    // Interactions: simvastatin first, then clarithromycin warns (ONC high-priority, with its source).
    let (s, _) = doc
        .post("/api/v1/rx/prescriptions", rx(&pid, "198211"))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (_, check) = doc.post("/api/v1/rx/check", rx(&pid, "197517")).await;
    let w = &check["warnings"][0];
    assert_eq!(w["kind"], "interaction", "{check}");
    assert_eq!(w["severity"], "high");
    assert_eq!(w["subject"], "simvastatin 40 MG Oral Tablet");
    assert!(w["reason"].as_str().unwrap().contains("rhabdomyolysis"));
    assert!(w["source"].as_str().unwrap().contains("Phansalkar"));
    // Paracetamol has nothing to say.
    let (_, check) = doc.post("/api/v1/rx/check", rx(&pid, "198440")).await;
    assert_eq!(check["warnings"], json!([]), "{check}");

    // The QR payload verifies with the published keys only; altered, it does not.
    let (s, keys) = reqwest::get(format!("{}/.well-known/caravan-rx-keys.json", node.base))
        .await
        .unwrap()
        .json::<Value>()
        .await
        .map(|v| (StatusCode::OK, v))
        .unwrap();
    assert_eq!(s, StatusCode::OK);
    let keys = sign::parse_keys(&keys.to_string()).unwrap();
    let token = amox["token"].as_str().unwrap();
    let payload = sign::verify(&sign::qr_text(token), &keys, chrono::Utc::now()).unwrap();
    assert_eq!(payload.id, amox["id"].as_str().unwrap());
    assert_eq!(payload.mc, "308191");
    assert_eq!(payload.q, 21);
    assert_eq!(payload.pn, "Aigerim Nurlanova");
    let parts: Vec<&str> = token.split('.').collect();
    let mut forged: Value = serde_json::from_slice(
        &caravan_federation::keys::b64url_decode(parts[1], "payload").unwrap(),
    )
    .unwrap();
    forged["q"] = json!(210);
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        caravan_federation::keys::b64url(forged.to_string().as_bytes()),
        parts[2]
    );
    assert_eq!(
        sign::verify(&forged, &keys, chrono::Utc::now()),
        Err(sign::VerifyError::BadSignature)
    );
    let (_, v) = doc
        .post("/api/v1/rx/verify", json!({ "code": forged }))
        .await;
    assert_eq!(v["valid"], false);
    let (_, v) = doc
        .post("/api/v1/rx/verify", json!({ "code": sign::qr_text(token) }))
        .await;
    assert_eq!(v["valid"], true, "{v}");

    // Pages: the prescription with its QR code, the printable form, the patient's page.
    let id = amox["id"].as_str().unwrap();
    for path in [
        format!("/ui/rx/{id}"),
        format!("/ui/rx/{id}/print"),
        format!("/ui/patients/{pid}/rx"),
    ] {
        let r = doc
            .http
            .get(format!("{}{path}", node.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let html = r.text().await.unwrap();
        assert!(html.contains("amoxicillin 500 MG Oral Capsule"), "{path}");
        if path.ends_with("/print") {
            assert!(html.contains("<svg") && html.contains("@media print"));
        }
    }

    // The prescriber does not dispense; the pharmacy does, which completes it; a second dispense is refused;
    // FHIR shows both resources.
    let (s, e) = doc
        .post(
            &format!("/api/v1/rx/prescriptions/{id}/dispense"),
            json!({ "performer": "Dr Aliyev" }),
        )
        .await;
    assert_eq!(
        (s, e["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("error-forbidden"))
    );
    let pharmacy = Client::login(&node, "pharmacist").await;
    let (s, d) = pharmacy
        .post(
            &format!("/api/v1/rx/prescriptions/{id}/dispense"),
            json!({ "performer": "Pharmacy No. 7, Taldykorgan" }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{d}");
    assert_eq!(d["quantity"], 21);
    let (s, e) = pharmacy
        .post(
            &format!("/api/v1/rx/prescriptions/{id}/dispense"),
            json!({ "performer": "again" }),
        )
        .await;
    assert_eq!(
        (s, e["error"].as_str()),
        (StatusCode::CONFLICT, Some("error-rx-not-active"))
    );
    let (_, b) = doc
        .get(&format!("/api/v1/rx/prescriptions/{id}/fhir"))
        .await;
    assert_eq!(
        b["entry"][0]["resource"]["resourceType"],
        "MedicationRequest"
    );
    assert_eq!(b["entry"][0]["resource"]["status"], "completed");
    assert_eq!(
        b["entry"][0]["resource"]["contained"][0]["code"]["coding"][0]["system"],
        "http://www.nlm.nih.gov/research/umls/rxnorm"
    );
    assert_eq!(
        b["entry"][1]["resource"]["resourceType"],
        "MedicationDispense"
    );

    // Scope and roles: another hospital does not see it; a patient reads but cannot prescribe.
    let wang = Client::login(&node, "dr.wang").await;
    assert_eq!(
        wang.get(&format!("/api/v1/rx/prescriptions/{id}")).await.0,
        StatusCode::NOT_FOUND
    );
    let patient = Client::login(&node, "patient").await;
    assert_eq!(
        patient
            .get(&format!("/api/v1/rx/prescriptions/{id}"))
            .await
            .0,
        StatusCode::OK
    );
    let (s, e) = patient
        .post("/api/v1/rx/prescriptions", rx(&pid, "198440"))
        .await;
    assert_eq!(
        (s, e["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("error-forbidden"))
    );
}

#[tokio::test]
async fn bad_input_is_refused_with_a_reason() {
    let node = start().await;
    let doc = Client::login(&node, "dr.aliyev").await;
    let admin = Client::login(&node, "admin").await;
    let pid = aigerim(&doc).await;
    for (body, code) in [
        (rx(&pid, "000000"), "error-rx-unknown-medication"),
        (
            json!({ "patient_id": pid, "medication": "198440", "dose": "-1", "times_per_day": 3, "duration_days": 7 }),
            "error-rx-dosage",
        ),
        (
            json!({ "patient_id": pid, "medication": "198440", "dose": "1", "times_per_day": 0, "duration_days": 7 }),
            "error-rx-dosage",
        ),
        (
            json!({ "patient_id": pid, "medication": "198440" }),
            "error-bad-json",
        ),
        (
            json!({ "patient_id": pid, "medication": "198440", "dose": "1", "times_per_day": 1, "duration_days": 1, "destination": "center-kz" }),
            "error-rx-destination",
        ),
    ] {
        let (s, e) = doc.post("/api/v1/rx/prescriptions", body).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
        assert_eq!(e["error"], code, "{e}");
    }
    let (s, e) = doc
        .post(
            &format!("/api/v1/patients/{pid}/allergies"),
            json!({ "substance": " " }),
        )
        .await;
    assert_eq!(
        (s, e["error"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("error-rx-allergy"))
    );

    // A bad table names its row and leaves the stored table as it was.
    let import = |body: &'static str| {
        admin
            .http
            .post(format!("{}/api/v1/rx/tables/interactions", node.base))
            .header("x-csrf-token", &admin.csrf)
            .body(body)
            .send()
    };
    let (_, before) = admin.get("/api/v1/rx/tables/interactions").await;
    let r = import("a,b,severity,reason,source\nx,y,high,r,s\nx,z,severe,r,s\n")
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let e: Value = r.json().await.unwrap();
    assert!(e["message"].as_str().unwrap().starts_with("row 2:"), "{e}");
    assert_eq!(admin.get("/api/v1/rx/tables/interactions").await.1, before);
    let r = import("[{\"a\":\"x\",\"b\":\"y\",\"severity\":\"low\",\"reason\":\"r\"}]")
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        admin
            .get("/api/v1/rx/tables/interactions")
            .await
            .1
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Only administrators import.
    let (s, _) = doc
        .send(
            reqwest::Method::POST,
            "/api/v1/rx/tables/formulary",
            Some(json!([])),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

/// A prescription written after a video visit carries the visit (FHIR `MedicationRequest.encounter`): through the
/// JSON API, and through the prescribing form opened from the visit page. A cancelled visit, a visit of another
/// patient and a visit the prescriber cannot see are refused, and nothing is written.
#[tokio::test]
async fn a_prescription_follows_a_visit() {
    let node = start().await;
    let doc = Client::login(&node, "dr.aliyev").await;
    let pid = aigerim(&doc).await;
    let (_, patients) = doc.get("/api/v1/patients").await;
    let other = patients
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .find(|id| *id != pid)
        .unwrap();
    let (s, sched) = doc
        .post(
            "/api/v1/visits/schedules",
            json!({ "service": "video clinic" }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{sched}");
    let start = (chrono::Utc::now() + chrono::Duration::hours(2)).to_rfc3339();
    let (_, slots) = doc
        .post(
            &format!(
                "/api/v1/visits/schedules/{}/slots",
                sched["id"].as_str().unwrap()
            ),
            json!({ "start": start, "minutes": 20, "count": 2 }),
        )
        .await;
    let mut visits = Vec::new();
    for slot in slots.as_array().unwrap() {
        let (s, v) = doc
            .post(
                "/api/v1/visits",
                json!({ "patient_id": pid, "slot_id": slot["id"] }),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        visits.push(v["visit"]["id"].as_str().unwrap().to_owned());
    }
    let (held, cancelled) = (&visits[0], &visits[1]);
    let (s, v) = doc
        .post(&format!("/api/v1/visits/{cancelled}/cancel"), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");

    let with_visit = |patient: &str, visit: &str| {
        let mut r = rx(patient, "198440");
        r["visit_id"] = json!(visit);
        r
    };
    for (body, status, code) in [
        (with_visit(&pid, cancelled), 422, Some("error-rx-visit")),
        (with_visit(&other, held), 422, Some("error-rx-visit")),
        (with_visit(&pid, "not-a-visit"), 400, None),
    ] {
        let (s, e) = doc.post("/api/v1/rx/prescriptions", body).await;
        assert_eq!(s.as_u16(), status, "{e}");
        if let Some(code) = code {
            assert_eq!(e["error"], code);
        }
    }
    // A clinician of another hospital sees neither the patient nor the visit.
    let wang = Client::login(&node, "dr.wang").await;
    let (s, _) = wang
        .post("/api/v1/rx/prescriptions", with_visit(&pid, held))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, none) = doc
        .get(&format!("/api/v1/patients/{pid}/prescriptions"))
        .await;
    assert!(
        none.as_array().unwrap().is_empty(),
        "nothing written: {none}"
    );

    // The visit page links to the form with the visit; submitting it writes the prescription with the visit.
    let html = |path: String| {
        let http = doc.http.clone();
        let url = format!("{}{path}", node.base);
        async move {
            let r = http.get(url).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            r.text().await.unwrap()
        }
    };
    let page = html(format!("/ui/visits/{held}")).await;
    let link = format!("/ui/patients/{pid}/rx?visit={held}");
    assert!(page.contains(&link), "{page}");
    assert!(
        !html(format!("/ui/visits/{cancelled}"))
            .await
            .contains("id=\"visit-prescribe\""),
        "no prescribing after a cancelled visit"
    );
    let form = html(link).await;
    assert!(form.contains(&format!("name=\"visit\" value=\"{held}\"")));
    let r = doc
        .http
        .post(format!("{}/ui/patients/{pid}/rx", node.base))
        .form(&[
            ("csrf", doc.csrf.as_str()),
            ("visit", held.as_str()),
            ("medication", "198440"),
            ("dose", "500"),
            ("times_per_day", "3"),
            ("duration_days", "5"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (_, list) = doc
        .get(&format!("/api/v1/patients/{pid}/prescriptions"))
        .await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["visit_id"], held.as_str());
    let id = list[0]["id"].as_str().unwrap();
    assert!(html(format!("/ui/rx/{id}"))
        .await
        .contains(&format!("href=\"/ui/visits/{held}\"")));
}

/// Location of a redirect.
fn location(r: &reqwest::Response) -> String {
    r.headers()["location"].to_str().unwrap().to_owned()
}

/// The pharmacy: verifies the QR code, looks the prescription up by its code or its id (an altered code finds
/// nothing), reads the formulary and records the dispense (by default as the signed-in pharmacist) — and sees
/// nothing of the patient's record. Each look-up and the dispense are in the patient's access log; an expired
/// prescription is not dispensed.
#[tokio::test]
async fn the_pharmacy_looks_up_and_dispenses_but_browses_no_patient() {
    let (node, state) = start_full(
        caravan_server::NodeConfig {
            secure_cookies: false,
            ..Default::default()
        },
        None,
        None,
    )
    .await;
    let doc = Client::login(&node, "dr.aliyev").await;
    let pharmacy = Client::login(&node, "pharmacist").await;
    let pid = aigerim(&doc).await;
    let (s, written) = doc
        .post("/api/v1/rx/prescriptions", rx(&pid, "198440"))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{written}");
    let id = written["id"].as_str().unwrap().to_owned();
    let token = written["token"].as_str().unwrap().to_owned();
    let code = sign::qr_text(&token);

    // Verify the printed code (this node's keys; nothing kept), then look it up by the code, the bare token, the id.
    let (s, v) = pharmacy
        .post("/api/v1/rx/verify", json!({ "code": code }))
        .await;
    assert_eq!((s, &v["valid"]), (StatusCode::OK, &json!(true)), "{v}");
    for c in [code.clone(), token.clone(), id.clone()] {
        let (s, found) = pharmacy
            .post("/api/v1/rx/lookup", json!({ "code": c }))
            .await;
        assert_eq!(s, StatusCode::OK, "{found}");
        assert_eq!(found["prescription"]["id"], id.as_str());
        assert_eq!(found["prescription"]["patient_name"], "Aigerim Nurlanova");
        assert_eq!(found["dispenses"], json!([]));
        assert!(found["valid_until"].is_string(), "{found}");
    }
    let (s, _) = pharmacy
        .get(&format!("/api/v1/rx/prescriptions/{id}"))
        .await;
    assert_eq!(s, StatusCode::OK);
    // An altered code (another quantity, the signature kept) and an unknown id find nothing; garbage says why.
    let parts: Vec<&str> = token.split('.').collect();
    let mut payload: Value = serde_json::from_slice(
        &caravan_federation::keys::b64url_decode(parts[1], "payload").unwrap(),
    )
    .unwrap();
    payload["q"] = json!(210);
    let forged = format!(
        "RX1:{}.{}.{}",
        parts[0],
        caravan_federation::keys::b64url(payload.to_string().as_bytes()),
        parts[2]
    );
    for c in [forged.as_str(), "0190b3a2-0000-7000-8000-000000000000"] {
        let (s, e) = pharmacy
            .post("/api/v1/rx/lookup", json!({ "code": c }))
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{c}: {e}");
    }
    for c in ["", "  ", "hello", "RX1:a.b"] {
        let (s, e) = pharmacy
            .post("/api/v1/rx/lookup", json!({ "code": c }))
            .await;
        assert_eq!(
            (s, e["error"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("error-rx-lookup")),
            "{c:?}: {e}"
        );
    }

    // Not the pharmacy's: the patient, her lists, consultations, visits, monitoring, the access log.
    for path in [
        "/api/v1/patients".to_owned(),
        format!("/api/v1/patients/{pid}"),
        format!("/api/v1/patients/{pid}/prescriptions"),
        format!("/api/v1/patients/{pid}/allergies"),
        format!("/api/v1/patients/{pid}/access-log"),
        "/api/v1/consultations".to_owned(),
        "/api/v1/visits".to_owned(),
        "/api/v1/monitoring/patients".to_owned(),
        format!("/api/v1/monitoring/patients/{pid}"),
        "/api/v1/monitoring/alerts".to_owned(),
        "/ui/patients".to_owned(),
        format!("/ui/patients/{pid}/rx"),
        "/ui/visits".to_owned(),
        "/ui/monitoring".to_owned(),
    ] {
        let (s, _) = pharmacy.get(&path).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{path}");
    }
    // The formulary is.
    let (s, f) = pharmacy.get("/api/v1/rx/formulary?q=paracetamol").await;
    assert_eq!(s, StatusCode::OK);
    assert!(f.as_array().unwrap().iter().any(|i| i["code"] == "198440"));

    // Pages: the inbox is the pharmacy; its form finds the prescription by the scanned text and opens it, with the
    // dispense form (the pharmacist as performer) and no link to the patient's visit or record.
    let get = |path: String| {
        let http = pharmacy.http.clone();
        let url = format!("{}{path}", node.base);
        async move { http.get(url).send().await.unwrap() }
    };
    let r = get("/ui/inbox".into()).await;
    assert!(r.status().is_redirection());
    assert_eq!(location(&r), "/ui/rx/pharmacy");
    let page = get("/ui/rx/pharmacy?q=paracetamol".into()).await;
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().await.unwrap();
    assert!(page.contains("action=\"/ui/rx/pharmacy\""), "{page}");
    assert!(page.contains("<code>198440</code>"), "formulary search");
    assert!(page.contains("href=\"/ui/rx/pharmacy\""), "nav link");
    let post = |c: String| {
        let http = pharmacy.http.clone();
        let url = format!("{}/ui/rx/pharmacy", node.base);
        let csrf = pharmacy.csrf.clone();
        async move {
            http.post(url)
                .form(&[("csrf", csrf.as_str()), ("code", c.as_str())])
                .send()
                .await
                .unwrap()
        }
    };
    let r = post(code.clone()).await;
    assert!(r.status().is_redirection(), "{}", r.status());
    assert_eq!(location(&r), format!("/ui/rx/{id}"));
    let r = post(forged.clone()).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(r.text().await.unwrap().contains("id=\"rx-lookup-error\""));
    let page = get(format!("/ui/rx/{id}")).await.text().await.unwrap();
    assert!(page.contains("id=\"rx-dispense\""), "{page}");
    assert!(page.contains("value=\"Saule Bekova, Taldykorgan District Hospital\""));
    assert!(!page.contains("/ui/patients/") && !page.contains("/ui/visits/"));

    // Dispensed with the default performer; then completed, and not twice.
    let (s, d) = pharmacy
        .post(
            &format!("/api/v1/rx/prescriptions/{id}/dispense"),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{d}");
    assert_eq!(
        d["performer"],
        "Saule Bekova, Taldykorgan District Hospital"
    );
    let (_, found) = pharmacy
        .post("/api/v1/rx/lookup", json!({ "code": code }))
        .await;
    assert_eq!(found["prescription"]["status"], "completed");
    assert_eq!(found["dispenses"][0]["id"], d["id"]);
    let page = get(format!("/ui/rx/{id}")).await.text().await.unwrap();
    assert!(!page.contains("id=\"rx-dispense\""), "no second dispense");

    // The patient's access log (read by her home referrer) names the pharmacist's look-ups and the dispense.
    let (_, log) = doc.get(&format!("/api/v1/patients/{pid}/access-log")).await;
    let by_pharmacy: Vec<&Value> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["event"]["actor_role"] == "pharmacist")
        .collect();
    let count = |etype: &str, action: &str, detail: &str| {
        by_pharmacy
            .iter()
            .filter(|r| {
                r["event"]["entity_type"] == etype
                    && r["event"]["action"] == action
                    && r["event"]["detail"].as_str().unwrap().starts_with(detail)
            })
            .count()
    };
    assert_eq!(
        count("prescription", "read", "lookup by code"),
        4,
        "{by_pharmacy:?}"
    );
    assert_eq!(count("prescription", "read", "lookup by id"), 1);
    assert_eq!(count("dispense", "create", "prescription "), 1);
    assert!(by_pharmacy
        .iter()
        .all(|r| r["event"]["purpose"] == "treatment" && r["event"]["patient_id"] == pid.as_str()));

    // A prescription past its validity (written 60 days ago for 7 days) is shown as expired and not dispensed.
    let mut old: caravan_store::Prescription = serde_json::from_value(written.clone()).unwrap();
    old.id = uuid::Uuid::now_v7();
    old.status = caravan_store::RxStatus::Active;
    old.created_at = chrono::Utc::now() - chrono::Duration::days(60);
    state
        .store()
        .apply(
            vec![caravan_store::Change::Rx(
                caravan_store::RxChange::InsertPrescription(Box::new(old.clone())),
            )],
            vec![],
        )
        .await
        .unwrap();
    let (s, e) = pharmacy
        .post(
            &format!("/api/v1/rx/prescriptions/{}/dispense", old.id),
            json!({}),
        )
        .await;
    assert_eq!(
        (s, e["error"].as_str()),
        (StatusCode::CONFLICT, Some("error-rx-expired")),
        "{e}"
    );
    let page = get(format!("/ui/rx/{}", old.id))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("id=\"rx-valid-until\" class=\"rx-high\""),
        "{page}"
    );
    assert!(!page.contains("id=\"rx-dispense\""));
}
