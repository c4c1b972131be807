//! FHIR R4 facade, driven over HTTP against a real demo node.

// Test helpers outside `#[test]` functions unwrap too: a failed step is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

async fn patient_id(c: &Client, name: &str) -> String {
    let (s, v) = c
        .api(Method::GET, &format!("/api/v1/patients?name={name}"), None)
        .await;
    assert_eq!(s, 200, "{v}");
    v[0]["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn capability_statement_lists_every_resource() {
    let node = start().await;
    let http = reqwest::Client::new();
    let r = http
        .get(format!("{}/fhir/metadata", node.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/fhir+json"));
    let v: Value = r.json().await.unwrap();
    assert_r4(&v);
    assert_eq!(v["resourceType"], "CapabilityStatement");
    assert_eq!(v["fhirVersion"], "4.0.1");
    let listed: Vec<&str> = v["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["type"].as_str().unwrap())
        .collect();
    assert_eq!(listed, caravan_fhir::RESOURCE_TYPES);
    for r in v["rest"][0]["resource"].as_array().unwrap() {
        let codes: Vec<&str> = r["interaction"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["code"].as_str().unwrap())
            .collect();
        if r["type"] == "MeasureReport" {
            // Notifiable-disease counts: created here, read through the surveillance API.
            assert_eq!(codes, ["create"], "{r}");
        } else if r["type"] == "Observation" {
            // Vital signs from remote monitoring are read and searched; notifiable-disease cases are created.
            assert_eq!(codes, ["read", "search-type", "create"], "{r}");
        } else {
            assert!(codes.contains(&"read"), "{r}");
        }
    }
}

/// Domain state → (ServiceRequest.status, Task.status): the documented mapping, checked on every demo case.
const STATE_MAP: &[(&str, &str, &str)] = &[
    ("draft", "draft", "draft"),
    ("submitted", "active", "requested"),
    ("assigned", "active", "received"),
    ("in_progress", "active", "in-progress"),
    ("reported", "completed", "completed"),
    ("acknowledged", "completed", "completed"),
    ("closed", "completed", "completed"),
    ("cancelled", "revoked", "cancelled"),
];

#[tokio::test]
async fn reads_and_searches_agree_with_the_json_api() {
    let node = start().await;
    let coord = Client::login(&node, "coordinator").await;
    let aliyev = Client::login(&node, "dr.aliyev").await;

    // Patient: search by name and birth date, read by id.
    let aigerim = patient_id(&aliyev, "Aigerim").await;
    let found = entries(&aliyev.get("/fhir/Patient?name=Aigerim").await, "Patient");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["id"], aigerim.as_str());
    assert_eq!(
        entries(
            &aliyev.get("/fhir/Patient?birthdate=1968-05-17").await,
            "Patient"
        )
        .len(),
        1
    );
    assert_eq!(
        entries(
            &aliyev.get("/fhir/Patient?birthdate=1968-05-18").await,
            "Patient"
        )
        .len(),
        0
    );
    let p = aliyev.get(&format!("/fhir/Patient/{aigerim}")).await;
    assert_eq!(p.status, 200);
    assert_r4(&p.body);
    assert_eq!(p.body["birthDate"], "1968-05-17");
    assert_eq!(p.body["gender"], "female");
    assert_eq!(p.body["name"][0]["family"], "Nurlanova");
    assert_eq!(
        p.body["communication"][0]["language"]["coding"][0]["code"],
        "kk"
    );

    // Organization: every institution, by level, and read.
    let (_, insts) = aliyev.api(Method::GET, "/api/v1/institutions", None).await;
    let orgs = entries(&aliyev.get("/fhir/Organization").await, "Organization");
    assert_eq!(orgs.len(), insts.as_array().unwrap().len());
    let hospitals = entries(
        &aliyev.get("/fhir/Organization?type=hospital").await,
        "Organization",
    );
    let expected = insts
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["level"] == "hospital")
        .count();
    assert_eq!(hospitals.len(), expected);
    assert!(expected > 0);
    let org = aliyev
        .get(&format!(
            "/fhir/Organization/{}",
            insts[0]["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(org.body["address"][0]["country"], insts[0]["country"]);

    // Practitioner and PractitionerRole.
    let nurlanov = entries(
        &aliyev.get("/fhir/Practitioner?name=nurlanov").await,
        "Practitioner",
    );
    assert_eq!(nurlanov.len(), 1);
    let langs: Vec<&str> = nurlanov[0]["communication"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["coding"][0]["code"].as_str().unwrap())
        .collect();
    assert_eq!(langs, ["kk", "ru", "en"]);
    let cardio = entries(
        &aliyev
            .get("/fhir/PractitionerRole?specialty=cardiology")
            .await,
        "PractitionerRole",
    );
    assert_eq!(cardio.len(), 2, "nurlanov and li");
    let role = aliyev
        .get(&format!(
            "/fhir/PractitionerRole/{}",
            nurlanov[0]["id"].as_str().unwrap()
        ))
        .await;
    assert_r4(&role.body);
    assert_eq!(role.body["specialty"][0]["coding"][0]["code"], "cardiology");
    // Administrators are not practitioners.
    let (_, users) = coord.api(Method::GET, "/api/v1/users", None).await;
    let admin = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["role"] == "admin")
        .unwrap();
    assert_outcome(
        &aliyev
            .get(&format!(
                "/fhir/Practitioner/{}",
                admin["id"].as_str().unwrap()
            ))
            .await,
        404,
        "admin as practitioner",
    );

    // ServiceRequest and Task, for every case each user sees, against the JSON API and the state table.
    let mut states_seen = std::collections::BTreeSet::new();
    for user in ["coordinator", "dr.aliyev", "dr.karimova", "dr.wang"] {
        let u = Client::login(&node, user).await;
        let (_, cases) = u.api(Method::GET, "/api/v1/consultations", None).await;
        let cases = cases.as_array().unwrap();
        let srs = entries(&u.get("/fhir/ServiceRequest").await, "ServiceRequest");
        let tasks = entries(&u.get("/fhir/Task").await, "Task");
        assert_eq!(srs.len(), cases.len(), "{user}");
        assert_eq!(tasks.len(), cases.len(), "{user}");
        for (state, sr_status, task_status) in STATE_MAP {
            for c in cases
                .iter()
                .filter(|c| c["consultation"]["state"] == *state)
            {
                states_seen.insert(*state);
                let id = c["consultation"]["id"].as_str().unwrap();
                let sr = srs.iter().find(|s| s["id"] == id).unwrap();
                assert_eq!(sr["status"], *sr_status, "{state}");
                let t = tasks.iter().find(|s| s["id"] == id).unwrap();
                assert_eq!(t["status"], *task_status, "{state}");
                assert_eq!(t["businessStatus"]["coding"][0]["code"], *state);
            }
        }
    }
    assert!(
        states_seen.len() >= 7,
        "the demo covers the states: {states_seen:?}"
    );
    let (_, cases) = coord.api(Method::GET, "/api/v1/consultations", None).await;
    let cases = cases.as_array().unwrap();
    for status in ["active", "completed"] {
        let list = entries(
            &coord
                .get(&format!("/fhir/ServiceRequest?status={status}"))
                .await,
            "ServiceRequest",
        );
        assert!(list.iter().all(|s| s["status"] == status));
    }

    // Aigerim's cases: ServiceRequest by patient, read one, its thread as Communication.
    let mine = entries(
        &aliyev
            .get(&format!("/fhir/ServiceRequest?patient=Patient/{aigerim}"))
            .await,
        "ServiceRequest",
    );
    assert!(!mine.is_empty());
    let emergency = mine
        .iter()
        .find(|s| s["priority"] == "stat")
        .expect("the NSTEMI case is stat");
    let cid = emergency["id"].as_str().unwrap();
    let sr = aliyev.get(&format!("/fhir/ServiceRequest/{cid}")).await;
    assert_r4(&sr.body);
    assert_eq!(
        sr.body["subject"]["reference"],
        format!("Patient/{aigerim}")
    );
    assert_eq!(sr.body["code"]["coding"][0]["code"], "cardiology");
    let (_, view) = aliyev
        .api(Method::GET, &format!("/api/v1/consultations/{cid}"), None)
        .await;
    let thread = entries(
        &aliyev
            .get(&format!(
                "/fhir/Communication?based-on=ServiceRequest/{cid}"
            ))
            .await,
        "Communication",
    );
    assert_eq!(thread.len(), view["messages"].as_array().unwrap().len());
    assert!(!thread.is_empty());
    let first = aliyev
        .get(&format!(
            "/fhir/Communication/{}",
            thread[0]["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(first.status, 200);
    assert_eq!(
        first.body["payload"][0]["contentString"],
        view["messages"][0]["body"]
    );

    // DiagnosticReport: only cases with a report, and its text.
    let reported: Vec<&Value> = cases
        .iter()
        .filter(|c| !c["consultation"]["report"].is_null())
        .collect();
    let reports = entries(
        &coord.get("/fhir/DiagnosticReport").await,
        "DiagnosticReport",
    );
    assert_eq!(reports.len(), reported.len());
    let one = reported[0];
    let dr = coord
        .get(&format!(
            "/fhir/DiagnosticReport/{}",
            one["consultation"]["id"].as_str().unwrap()
        ))
        .await;
    assert_r4(&dr.body);
    assert_eq!(
        dr.body["conclusion"],
        one["consultation"]["report"]["impression"]
    );

    // Consent: search by patient, read by id.
    let (_, consents) = aliyev
        .api(
            Method::GET,
            &format!("/api/v1/patients/{aigerim}/consents"),
            None,
        )
        .await;
    let fc = entries(
        &aliyev
            .get(&format!("/fhir/Consent?patient={aigerim}"))
            .await,
        "Consent",
    );
    assert_eq!(fc.len(), consents.as_array().unwrap().len());
    assert!(!fc.is_empty());
    let c1 = aliyev
        .get(&format!("/fhir/Consent/{}", fc[0]["id"].as_str().unwrap()))
        .await;
    assert_eq!(c1.status, 200);
    assert_r4(&c1.body);

    // AuditEvent: the patient's access log now holds the reads above, made through FHIR.
    let log = entries(
        &aliyev
            .get(&format!("/fhir/AuditEvent?patient=Patient/{aigerim}"))
            .await,
        "AuditEvent",
    );
    let mine_read = log
        .iter()
        .filter(|e| {
            e["agent"][0]["who"]["reference"] == format!("Practitioner/{}", aliyev.id())
                && e["action"] == "R"
        })
        .count();
    assert!(mine_read >= 3, "FHIR reads are audited: {mine_read}");
    let admin_c = Client::login(&node, "admin").await;
    let ev = admin_c
        .get(&format!(
            "/fhir/AuditEvent/{}",
            log[0]["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(ev.status, 200);
    assert_r4(&ev.body);
}

#[tokio::test]
async fn a_referral_made_through_fhir_runs_the_whole_workflow() {
    let node = start().await;
    let aliyev = Client::login(&node, "dr.aliyev").await;

    let pr = aliyev
        .post_fhir("/fhir/Patient", &json!({
            "resourceType": "Patient",
            "name": [{"family": "Bekova", "given": ["Saule"]}],
            "gender": "female",
            "birthDate": "1961-04-03",
            "identifier": [{"system": caravan_fhir::map::NATIONAL_ID_SYSTEM, "value": "610403400123"}],
            "communication": [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "kk"}]}}]
        }))
        .await;
    assert_eq!(pr.status, 201, "{:#}", pr.body);
    assert_r4(&pr.body);
    let pid = pr.body["id"].as_str().unwrap().to_owned();
    assert!(pr
        .location
        .as_deref()
        .unwrap()
        .ends_with(&format!("/fhir/Patient/{pid}")));
    let (s, jp) = aliyev
        .api(Method::GET, &format!("/api/v1/patients/{pid}"), None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(jp["national_id"], "610403400123");
    assert_eq!(jp["languages"], json!(["kk"]));

    // Without consent, an active ServiceRequest is refused by the state machine.
    let sr_body = json!({
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "priority": "urgent",
        "code": {"coding": [{"system": caravan_fhir::map::SPECIALTY_SYSTEM, "code": "pulmonology"}]},
        "subject": {"reference": format!("Patient/{pid}")},
        "reasonCode": [{"text": "Persistent cough and haemoptysis for three weeks"}],
        "note": [{"text": "Smoker, 40 pack-years."}]
    });
    let refused = aliyev.post_fhir("/fhir/ServiceRequest", &sr_body).await;
    assert_outcome(&refused, 422, "submit without consent");

    let consent = aliyev
        .post_fhir("/fhir/Consent", &json!({
            "resourceType": "Consent",
            "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": caravan_fhir::map::CONSENT_SCOPE_SYSTEM, "code": "consultation"}]}],
            "patient": {"reference": format!("Patient/{pid}")},
            "provision": {"type": "permit"}
        }))
        .await;
    assert_eq!(consent.status, 201, "{:#}", consent.body);
    assert_eq!(consent.body["provision"]["type"], "permit");

    let sr = aliyev.post_fhir("/fhir/ServiceRequest", &sr_body).await;
    assert_eq!(sr.status, 201, "{:#}", sr.body);
    assert_r4(&sr.body);
    assert_eq!(sr.body["status"], "active");
    assert_eq!(sr.body["priority"], "urgent");
    let cid = sr.body["id"].as_str().unwrap().to_owned();

    // The FHIR-created request is a consultation in the JSON API, routed like any other.
    let (s, view) = aliyev
        .api(Method::GET, &format!("/api/v1/consultations/{cid}"), None)
        .await;
    assert_eq!(s, 200);
    let c = &view["consultation"];
    assert_eq!(c["specialty"], "pulmonology");
    assert_eq!(c["urgency"], "urgent");
    assert_eq!(
        c["question"],
        "Persistent cough and haemoptysis for three weeks"
    );
    assert_eq!(c["clinical_summary"], "Smoker, 40 pack-years.");
    assert_eq!(c["state"], "assigned", "auto-routed");
    let consultant = c["assigned_to"].as_str().unwrap().to_owned();
    let task = aliyev.get(&format!("/fhir/Task/{cid}")).await;
    assert_eq!(task.body["status"], "received");
    assert_eq!(
        task.body["owner"]["reference"],
        format!("Practitioner/{consultant}")
    );

    // Thread: a message and a reply to it.
    let m1 = aliyev
        .post_fhir(
            "/fhir/Communication",
            &json!({
                "resourceType": "Communication", "status": "completed",
                "basedOn": [{"reference": format!("ServiceRequest/{cid}")}],
                "payload": [{"contentString": "Chest X-ray attached."}]
            }),
        )
        .await;
    assert_eq!(m1.status, 201, "{:#}", m1.body);
    let m1id = m1.body["id"].as_str().unwrap().to_owned();
    let m2 = aliyev
        .post_fhir(
            "/fhir/Communication",
            &json!({
                "resourceType": "Communication", "status": "completed",
                "basedOn": [{"reference": format!("ServiceRequest/{cid}")}],
                "inResponseTo": [{"reference": format!("Communication/{m1id}")}],
                "payload": [{"contentString": "And the CT report."}]
            }),
        )
        .await;
    assert_eq!(m2.status, 201);
    assert_eq!(
        m2.body["inResponseTo"][0]["reference"],
        format!("Communication/{m1id}")
    );
    let (_, view) = aliyev
        .api(Method::GET, &format!("/api/v1/consultations/{cid}"), None)
        .await;
    assert_eq!(view["messages"][1]["parent_id"], m1id.as_str());

    // Attachment with inline data; the bytes come back through Binary, both as FHIR JSON and raw.
    let text = "CT thorax: 2 cm spiculated nodule, right upper lobe.";
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(text);
    let doc = aliyev
        .post_fhir("/fhir/DocumentReference", &json!({
            "resourceType": "DocumentReference", "status": "current",
            "content": [{"attachment": {"contentType": "text/plain", "data": b64, "title": "ct-report.txt"}}],
            "context": {"related": [{"reference": format!("ServiceRequest/{cid}")}]}
        }))
        .await;
    assert_eq!(doc.status, 201, "{:#}", doc.body);
    assert_r4(&doc.body);
    let did = doc.body["id"].as_str().unwrap().to_owned();
    assert_eq!(doc.body["content"][0]["attachment"]["size"], text.len());
    let docs = entries(
        &aliyev
            .get(&format!(
                "/fhir/DocumentReference?related=ServiceRequest/{cid}"
            ))
            .await,
        "DocumentReference",
    );
    assert_eq!(docs.len(), 1);
    let bin = aliyev.get(&format!("/fhir/Binary/{did}")).await;
    assert_eq!(bin.status, 200);
    assert_r4(&bin.body);
    assert_eq!(bin.body["data"], b64.as_str());
    let raw = aliyev
        .request(
            Method::GET,
            &format!("/fhir/Binary/{did}"),
            None,
            None,
            Some("text/plain"),
        )
        .await;
    assert_eq!(raw.bytes, text.as_bytes());

    // The consultant accepts (JSON API) and reports through FHIR.
    let admin = Client::login(&node, "admin").await;
    let (_, users) = admin.api(Method::GET, "/api/v1/users", None).await;
    let username = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == consultant.as_str())
        .unwrap()["username"]
        .as_str()
        .unwrap()
        .to_owned();
    let expert = Client::login(&node, &username).await;
    let report = json!({
        "resourceType": "DiagnosticReport", "status": "final",
        "code": {"text": "Consultation report"},
        "basedOn": [{"reference": format!("ServiceRequest/{cid}")}],
        "conclusion": "Suspected primary lung cancer.",
        "presentedForm": [
            {"contentType": "text/plain", "title": "findings", "data": base64::engine::general_purpose::STANDARD.encode("Spiculated RUL nodule.")},
            {"contentType": "text/plain", "title": "recommendations", "data": base64::engine::general_purpose::STANDARD.encode("PET-CT and biopsy.")}
        ]
    });
    // Before accepting, the state machine refuses the report.
    assert_outcome(
        &expert.post_fhir("/fhir/DiagnosticReport", &report).await,
        409,
        "report before accept",
    );
    let (s, _) = expert
        .api(
            Method::POST,
            &format!("/api/v1/consultations/{cid}/events"),
            Some(json!({"type": "accept"})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        aliyev.get(&format!("/fhir/Task/{cid}")).await.body["status"],
        "in-progress"
    );
    let dr = expert.post_fhir("/fhir/DiagnosticReport", &report).await;
    assert_eq!(dr.status, 201, "{:#}", dr.body);
    assert_r4(&dr.body);
    let (_, view) = aliyev
        .api(Method::GET, &format!("/api/v1/consultations/{cid}"), None)
        .await;
    assert_eq!(view["consultation"]["state"], "reported");
    assert_eq!(
        view["consultation"]["report"]["findings"],
        "Spiculated RUL nodule."
    );
    assert_eq!(
        view["consultation"]["report"]["recommendations"],
        "PET-CT and biopsy."
    );
    let task = aliyev.get(&format!("/fhir/Task/{cid}")).await;
    assert_eq!(task.body["status"], "completed");
    assert_eq!(
        task.body["output"][0]["valueReference"]["reference"],
        format!("DiagnosticReport/{cid}")
    );

    // Every step was audited: the consultation's trail through FHIR.
    let trail = entries(
        &aliyev
            .get(&format!("/fhir/AuditEvent?entity=ServiceRequest/{cid}"))
            .await,
        "AuditEvent",
    );
    assert!(trail.iter().any(|e| e["action"] == "C"));
    assert!(
        trail.iter().filter(|e| e["action"] == "U").count() >= 3,
        "submit, assign, accept, report"
    );
}

#[tokio::test]
async fn another_institution_cannot_see_patients_through_fhir() {
    let node = start().await;
    let aliyev = Client::login(&node, "dr.aliyev").await;
    let wang = Client::login(&node, "dr.wang").await;
    let aigerim = patient_id(&aliyev, "Aigerim").await;
    let cases = entries(
        &aliyev
            .get(&format!("/fhir/ServiceRequest?patient={aigerim}"))
            .await,
        "ServiceRequest",
    );
    let consent = entries(
        &aliyev
            .get(&format!("/fhir/Consent?patient={aigerim}"))
            .await,
        "Consent",
    );

    assert_outcome(
        &wang.get(&format!("/fhir/Patient/{aigerim}")).await,
        404,
        "Kashgar reads Taldykorgan patient",
    );
    assert_eq!(
        entries(&wang.get("/fhir/Patient?name=Aigerim").await, "Patient").len(),
        0
    );
    for c in &cases {
        let id = c["id"].as_str().unwrap();
        for t in ["ServiceRequest", "Task"] {
            assert_outcome(&wang.get(&format!("/fhir/{t}/{id}")).await, 404, t);
        }
    }
    assert_eq!(
        entries(
            &wang
                .get(&format!("/fhir/ServiceRequest?patient={aigerim}"))
                .await,
            "ServiceRequest"
        )
        .len(),
        0
    );
    assert_outcome(
        &wang
            .get(&format!(
                "/fhir/Consent/{}",
                consent[0]["id"].as_str().unwrap()
            ))
            .await,
        404,
        "consent",
    );
    let log = wang
        .get(&format!("/fhir/AuditEvent?patient={aigerim}"))
        .await;
    assert!(log.status == 404 || log.status == 403, "{}", log.status);

    // Roles: a public-health officer reads no patient; a patient browses no directory.
    let officer = Client::login(&node, "officer").await;
    assert_outcome(
        &officer.get(&format!("/fhir/Patient/{aigerim}")).await,
        403,
        "officer",
    );
    let patient = Client::login(&node, "patient").await;
    assert_outcome(
        &patient.get("/fhir/Practitioner").await,
        403,
        "patient directory",
    );
    // The patient reads their own record.
    let own = entries(&patient.get("/fhir/Patient").await, "Patient");
    assert_eq!(own.len(), 1);
    assert_eq!(own[0]["id"], aigerim.as_str());
    // And a referrer cannot create for another institution's patient.
    let refused = wang
        .post_fhir(
            "/fhir/ServiceRequest",
            &json!({
                "resourceType": "ServiceRequest", "status": "draft", "intent": "order",
                "code": {"coding": [{"code": "cardiology"}]},
                "subject": {"reference": format!("Patient/{aigerim}")},
                "reasonCode": [{"text": "?"}]
            }),
        )
        .await;
    assert_outcome(&refused, 404, "cross-institution referral");
}

/// (what, method, path, content type, body, expected status, expected issue code)
type BadCase<'a> = (
    &'a str,
    Method,
    String,
    Option<&'a str>,
    Option<Vec<u8>>,
    u16,
    &'a str,
);

#[tokio::test]
async fn bad_input_gets_an_operation_outcome() {
    let node = start().await;
    let aliyev = Client::login(&node, "dr.aliyev").await;
    let aigerim = patient_id(&aliyev, "Aigerim").await;
    let sr = |extra: Value| {
        let mut v = json!({
            "resourceType": "ServiceRequest", "status": "draft", "intent": "order",
            "code": {"coding": [{"code": "cardiology"}]},
            "subject": {"reference": format!("Patient/{aigerim}")},
            "reasonCode": [{"text": "Palpitations"}]
        });
        for (k, x) in extra.as_object().unwrap() {
            if x.is_null() {
                v.as_object_mut().unwrap().remove(k);
            } else {
                v[k] = x.clone();
            }
        }
        serde_json::to_vec(&v).unwrap()
    };
    let fhir = Some("application/fhir+json");
    // (what, method, path, content type, body, expected status, expected issue code)
    let cases: Vec<BadCase> = vec![
        ("broken JSON", Method::POST, "/fhir/Patient".into(), fhir, Some(b"{\"resourceType\": ".to_vec()), 400, "invalid"),
        ("wrong content type", Method::POST, "/fhir/Patient".into(), Some("text/plain"), Some(b"{}".to_vec()), 415, "not-supported"),
        ("no content type", Method::POST, "/fhir/Patient".into(), None, Some(b"{}".to_vec()), 415, "not-supported"),
        ("wrong resource type", Method::POST, "/fhir/Patient".into(), fhir, Some(br#"{"resourceType":"Consent"}"#.to_vec()), 400, "invalid"),
        ("no resource type", Method::POST, "/fhir/Patient".into(), fhir, Some(br#"{"name":[]}"#.to_vec()), 400, "invalid"),
        ("empty name list", Method::POST, "/fhir/Patient".into(), fhir, Some(br#"{"resourceType":"Patient","name":[]}"#.to_vec()), 422, "required"),
        ("unknown element", Method::POST, "/fhir/Patient".into(), fhir, Some(br#"{"resourceType":"Patient","colour":"blue"}"#.to_vec()), 400, "invalid"),
        ("wrong element type", Method::POST, "/fhir/Patient".into(), fhir, Some(br#"{"resourceType":"Patient","birthDate":19680517}"#.to_vec()), 400, "invalid"),
        ("missing name", Method::POST, "/fhir/Patient".into(), fhir, Some(br#"{"resourceType":"Patient","birthDate":"1990-01-01"}"#.to_vec()), 422, "required"),
        ("partial birth date", Method::POST, "/fhir/Patient".into(), fhir, Some(br#"{"resourceType":"Patient","name":[{"family":"B","given":["A"]}],"birthDate":"1990"}"#.to_vec()), 422, "value"),
        ("future birth date", Method::POST, "/fhir/Patient".into(), fhir, Some(br#"{"resourceType":"Patient","name":[{"family":"B","given":["A"]}],"birthDate":"2990-01-01"}"#.to_vec()), 422, "business-rule"),
        ("unknown specialty", Method::POST, "/fhir/ServiceRequest".into(), fhir, Some(sr(json!({"code": {"coding": [{"code": "astrology"}]}}))), 422, "business-rule"),
        ("unknown priority", Method::POST, "/fhir/ServiceRequest".into(), fhir, Some(sr(json!({"priority": "whenever"}))), 422, "code-invalid"),
        ("completed on create", Method::POST, "/fhir/ServiceRequest".into(), fhir, Some(sr(json!({"status": "completed"}))), 422, "code-invalid"),
        ("no question", Method::POST, "/fhir/ServiceRequest".into(), fhir, Some(sr(json!({"reasonCode": null}))), 422, "required"),
        ("subject not a patient", Method::POST, "/fhir/ServiceRequest".into(), fhir, Some(sr(json!({"subject": {"reference": "Group/1"}}))), 400, "invalid"),
        ("unknown patient", Method::POST, "/fhir/ServiceRequest".into(), fhir, Some(sr(json!({"subject": {"reference": "Patient/0190e0a0-0000-7000-8000-000000000000"}}))), 404, "not-found"),
        ("message to unknown case", Method::POST, "/fhir/Communication".into(), fhir, Some(br#"{"resourceType":"Communication","status":"completed","basedOn":[{"reference":"ServiceRequest/0190e0a0-0000-7000-8000-000000000000"}],"payload":[{"contentString":"hi"}]}"#.to_vec()), 404, "not-found"),
        ("attachment not base64", Method::POST, "/fhir/DocumentReference".into(), fhir, Some(br#"{"resourceType":"DocumentReference","status":"current","content":[{"attachment":{"contentType":"text/plain","data":"***"}}],"context":{"related":[{"reference":"ServiceRequest/0190e0a0-0000-7000-8000-000000000000"}]}}"#.to_vec()), 400, "invalid"),
        ("create not offered", Method::POST, "/fhir/AuditEvent".into(), fhir, Some(b"{}".to_vec()), 405, "not-supported"),
        ("unknown resource type", Method::GET, "/fhir/Specimen".into(), None, None, 404, "not-supported"),
        ("unknown id", Method::GET, "/fhir/Patient/0190e0a0-0000-7000-8000-000000000000".into(), None, None, 404, "not-found"),
        ("malformed id", Method::GET, "/fhir/ServiceRequest/not-an-id".into(), None, None, 404, "not-found"),
        ("report of a case without one", Method::GET, "/fhir/DiagnosticReport/0190e0a0-0000-7000-8000-000000000000".into(), None, None, 404, "not-found"),
        ("unknown search parameter", Method::GET, "/fhir/Patient?colour=blue".into(), None, None, 400, "invalid"),
        ("bad birthdate", Method::GET, "/fhir/Patient?birthdate=yesterday".into(), None, None, 400, "invalid"),
        ("bad _count", Method::GET, "/fhir/Patient?_count=many".into(), None, None, 400, "invalid"),
        ("bad status", Method::GET, "/fhir/Task?status=sleeping".into(), None, None, 400, "invalid"),
        ("consent search without patient", Method::GET, "/fhir/Consent".into(), None, None, 400, "invalid"),
        ("update not offered", Method::PUT, format!("/fhir/Patient/{aigerim}"), fhir, Some(b"{}".to_vec()), 405, "not-supported"),
    ];
    for (what, method, path, ct, body, status, code) in cases {
        let r = aliyev.request(method, &path, ct, body, None).await;
        assert_outcome(&r, status, what);
        assert_eq!(r.body["issue"][0]["code"], code, "{what}: {:#}", r.body);
    }

    // Unauthenticated, and a session write without its CSRF token.
    let anon = reqwest::Client::new();
    let r = anon
        .get(format!("{}/fhir/Patient", node.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["resourceType"], "OperationOutcome");
    assert_eq!(v["issue"][0]["code"], "login");
    let r = aliyev
        .http
        .post(format!("{}/fhir/Patient", node.base))
        .header("content-type", "application/fhir+json")
        .body(r#"{"resourceType":"Patient"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "missing CSRF");

    // A bearer token needs no CSRF token (integrations), and gets the same scoping.
    let (s, tok) = aliyev
        .api(
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"name": "fhir test"})),
        )
        .await;
    assert_eq!(s, 201, "{tok}");
    let token = tok["token"].as_str().unwrap();
    let r = anon
        .post(format!("{}/fhir/Patient", node.base))
        .bearer_auth(token)
        .header("content-type", "application/fhir+json")
        .body(r#"{"resourceType":"Patient","name":[{"family":"Omarov","given":["Daulet"]}],"birthDate":"2001-09-09","gender":"male"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

/// A notifiable-disease case as an Observation and weekly counts as a MeasureReport, posted by the
/// public-health officer, land in the surveillance series; a refused one stores nothing.
#[tokio::test]
async fn surveillance_reports_are_posted_as_observation_and_measure_report() {
    use chrono::Datelike;
    let node = start().await;
    let officer = Client::login(&node, "officer").await;
    let today = chrono::Utc::now().date_naive();
    let sys = caravan_fhir::surveil::COMPONENT_SYSTEM;
    let comp = |code: &str, value: Value| {
        let mut c = json!({ "code": { "coding": [{ "system": sys, "code": code }] } });
        let (k, v) = match value {
            Value::Bool(b) => ("valueBoolean", Value::Bool(b)),
            other if code == "report-date" => ("valueDateTime", other),
            other => ("valueString", other),
        };
        c[k] = v;
        c
    };
    let obs = json!({
        "resourceType": "Observation",
        "status": "final",
        "identifier": [{ "value": "lab-4711" }],
        "code": { "coding": [{ "system": "http://hl7.org/fhir/sid/icd-10", "code": "A39" }] },
        "effectiveDateTime": (today - chrono::Duration::days(3)).to_string(),
        "component": [
            comp("region", json!("KZ-ZHA")),
            comp("report-date", json!(today.to_string())),
            comp("age-band", json!("5-14")),
            comp("sex", json!("male")),
            comp("outcome", json!("hospitalised")),
            comp("lab-confirmed", json!(true)),
        ],
    });
    let r = officer.post_fhir("/fhir/Observation", &obs).await;
    assert_eq!(r.status, 201, "{:#}", r.body);
    assert_r4(&r.body);
    assert!(r.body["id"].is_string());
    let (_, cases) = officer
        .api(Method::GET, "/api/v1/surveillance/cases?disease=A39", None)
        .await;
    let cases = cases.as_array().unwrap();
    assert_eq!(cases.len(), 1);
    assert_eq!(cases[0]["pseudonym"], "lab-4711");
    assert_eq!(cases[0]["age_band"], "5-14");
    assert_eq!(cases[0]["lab_confirmed"], true);
    assert_eq!(cases[0]["id"], r.body["id"]);

    // A case that names its patient is refused, as is an unknown region: OperationOutcome, nothing stored.
    let mut named = obs.clone();
    named["subject"] = json!({ "reference": "Patient/1" });
    assert_outcome(
        &officer.post_fhir("/fhir/Observation", &named).await,
        400,
        "subject",
    );
    let mut wrong = obs.clone();
    wrong["component"][0]["valueString"] = json!("KZ-NOWHERE");
    let r = officer.post_fhir("/fhir/Observation", &wrong).await;
    assert_outcome(&r, 422, "region");
    assert!(r.body.to_string().contains("KZ-NOWHERE"), "{:#}", r.body);

    // Weekly counts of last week for two regions.
    let monday =
        today - chrono::Duration::days(i64::from(today.weekday().num_days_from_monday()) + 7);
    let report = json!({
        "resourceType": "MeasureReport",
        "status": "complete",
        "type": "summary",
        "measure": "https://caravan.example/fhir/Measure/notifiable-diseases-weekly",
        "period": { "start": monday.to_string(), "end": (monday + chrono::Duration::days(6)).to_string() },
        "group": [{
            "code": { "coding": [{ "system": "http://hl7.org/fhir/sid/icd-10", "code": "A39" }] },
            "stratifier": [{
                "code": [{ "text": "region" }],
                "stratum": [
                    { "value": { "text": "KZ-ALA" }, "population": [{ "count": 4 }] },
                    { "value": { "text": "KZ-TUR" }, "population": [{ "count": 2 }] }
                ]
            }]
        }]
    });
    let r = officer.post_fhir("/fhir/MeasureReport", &report).await;
    assert_eq!(r.status, 201, "{:#}", r.body);
    let (_, aggs) = officer
        .api(
            Method::GET,
            "/api/v1/surveillance/series?disease=A39&region=KZ-ALA",
            None,
        )
        .await;
    let weeks = aggs["weeks"].as_array().unwrap();
    assert_eq!(weeks.len(), 1);
    assert_eq!(weeks[0]["count"], 4);
    assert_eq!(weeks[0]["week_start"], monday.to_string());
    let mut tuesday = report.clone();
    tuesday["period"]["start"] = json!((monday + chrono::Duration::days(1)).to_string());
    assert_outcome(
        &officer.post_fhir("/fhir/MeasureReport", &tuesday).await,
        400,
        "period",
    );

    // Other roles may not report.
    let doctor = Client::login(&node, "dr.aliyev").await;
    assert_outcome(
        &doctor.post_fhir("/fhir/Observation", &obs).await,
        403,
        "role",
    );
}

/// A list of cases is one AuditEvent naming every case it returned (and each case's patient). A clinician reading
/// it through a patient they may see gets it narrowed to that patient's cases; the administrator sees it whole.
#[tokio::test]
async fn a_list_read_is_one_audit_event_narrowed_to_the_reader_s_patient() {
    let node = start().await;
    let aliyev = Client::login(&node, "dr.aliyev").await;
    let (s, list) = aliyev.api(Method::GET, "/api/v1/consultations", None).await;
    assert_eq!(s, 200, "{list}");
    let listed: Vec<(String, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let c = &r["consultation"];
            (
                c["id"].as_str().unwrap().to_owned(),
                c["patient_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let (case, pid) = listed[0].clone();
    assert!(
        listed.iter().any(|(_, p)| *p != pid),
        "the demo lists cases of several patients"
    );

    // Through the patient's access log: the list is there once.
    let log = entries(
        &aliyev
            .get(&format!("/fhir/AuditEvent?patient=Patient/{pid}"))
            .await,
        "AuditEvent",
    );
    let searches: Vec<&Value> = log
        .iter()
        .filter(|e| e["subtype"][0]["code"] == "search")
        .collect();
    assert_eq!(searches.len(), 1, "{log:?}");
    let seq = searches[0]["id"].as_str().unwrap().to_owned();
    let narrowed = |v: &Value| {
        let t = v.to_string();
        assert!(t.contains(&format!("ServiceRequest/{case}")), "{t}");
        assert!(t.contains(&format!("Patient/{pid}")), "{t}");
        for (c, p) in &listed {
            if *p != pid {
                assert!(!t.contains(c.as_str()) && !t.contains(p.as_str()), "{t}");
            }
        }
    };
    narrowed(searches[0]);

    let one = aliyev.get(&format!("/fhir/AuditEvent/{seq}")).await;
    assert_eq!(one.status, 200, "{}", one.body);
    assert_r4(&one.body);
    narrowed(&one.body);

    let admin = Client::login(&node, "admin").await;
    let whole = admin.get(&format!("/fhir/AuditEvent/{seq}")).await;
    assert_eq!(whole.status, 200);
    assert_r4(&whole.body);
    let t = whole.body.to_string();
    for (c, p) in &listed {
        assert!(t.contains(&format!("ServiceRequest/{c}")), "{t}");
        assert!(t.contains(&format!("Patient/{p}")), "{t}");
    }
    // A patient of another institution's clinician: not this event.
    let wang = Client::login(&node, "dr.wang").await;
    assert_eq!(
        wang.get(&format!("/fhir/AuditEvent/{seq}")).await.status,
        404
    );
}
