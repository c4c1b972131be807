//! Every route × every role: who may do what. The API table (`caravan_server::api::ROUTES`) is the source of
//! truth for the API; the UI pages are listed here. A forbidden role gets exactly 403; an allowed role never gets
//! 401/403 and no route ever answers 5xx.

mod common;
use caravan_domain::Role;
use caravan_server::api::ROUTES;
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const USERS: &[(Role, &str)] = &[
    (Role::Referrer, "dr.aliyev"),
    (Role::Consultant, "cardio.nurlanov"),
    (Role::Coordinator, "coordinator"),
    (Role::PublicHealthOfficer, "officer"),
    (Role::Admin, "admin"),
    (Role::Patient, "patient"),
    (Role::Pharmacist, "pharmacist"),
];

/// UI pages: (path template, roles allowed).
const UI_PAGES: &[(&str, &[Role])] = &[
    (
        "/ui/inbox",
        &[
            Role::Referrer,
            Role::Consultant,
            Role::Coordinator,
            Role::PublicHealthOfficer,
            Role::Admin,
            Role::Patient,
            Role::Pharmacist,
        ],
    ),
    ("/ui/worklist", &[Role::Consultant]),
    (
        "/ui/visits",
        &[
            Role::Referrer,
            Role::Consultant,
            Role::Coordinator,
            Role::Patient,
        ],
    ),
    (
        "/ui/consultations/{case}/studies",
        &[Role::Referrer, Role::Consultant, Role::Coordinator],
    ),
    (
        "/ui/attachments/{ecg}/ecg",
        &[Role::Referrer, Role::Consultant, Role::Coordinator],
    ),
    ("/ui/routing", &[Role::Coordinator]),
    ("/ui/consultations/new", &[Role::Referrer]),
    (
        "/ui/consultations/{case}",
        &[
            Role::Referrer,
            Role::Consultant,
            Role::Coordinator,
            Role::Patient,
        ],
    ),
    (
        "/ui/patients",
        &[Role::Referrer, Role::Consultant, Role::Coordinator],
    ),
    // The coordinator works at the national center, not at the patient's home hospital: refused by scope.
    (
        "/ui/patients/{patient}/access-log",
        &[Role::Referrer, Role::Patient],
    ),
    ("/ui/me/access-log", &[Role::Patient]),
    ("/ui/admin/institutions", &[Role::Admin]),
    ("/ui/admin/users", &[Role::Admin]),
    ("/ui/admin/teams", &[Role::Admin]),
    ("/ui/admin/federation", &[Role::Admin]),
    (
        "/ui/certs/verify",
        &[
            Role::Referrer,
            Role::Consultant,
            Role::Coordinator,
            Role::PublicHealthOfficer,
            Role::Admin,
            Role::Patient,
            Role::Pharmacist,
        ],
    ),
    ("/ui/certs/issue", &[Role::Referrer, Role::Consultant]),
    ("/ui/certs/admin", &[Role::Admin]),
    ("/ui/surveillance", &[Role::PublicHealthOfficer]),
    ("/ui/admin/surveillance", &[Role::Admin]),
    (
        "/ui/surveillance/series?disease=B05&region=KZ-ALM",
        &[Role::PublicHealthOfficer],
    ),
    ("/ui/surveillance/report", &[Role::PublicHealthOfficer]),
    ("/ui/surveillance/cases", &[Role::PublicHealthOfficer]),
    ("/ui/surveillance/alerts", &[Role::PublicHealthOfficer]),
    (
        "/ui/surveillance/export/alerts.csv",
        &[Role::PublicHealthOfficer],
    ),
    (
        "/ui/surveillance/export/cases.csv",
        &[Role::PublicHealthOfficer],
    ),
    (
        "/ui/patients/{patient}/rx",
        &[
            Role::Referrer,
            Role::Consultant,
            Role::Coordinator,
            Role::Patient,
        ],
    ),
    // The pharmacy's pages: the received list now lives on the pharmacy page.
    ("/ui/rx/received", &[Role::Pharmacist]),
    ("/ui/rx/pharmacy", &[Role::Pharmacist]),
    (
        "/ui/rx/verify",
        &[
            Role::Referrer,
            Role::Consultant,
            Role::Coordinator,
            Role::PublicHealthOfficer,
            Role::Admin,
            Role::Patient,
            Role::Pharmacist,
        ],
    ),
    ("/ui/rx/admin", &[Role::Admin]),
    (
        "/ui/monitoring",
        &[Role::Referrer, Role::Consultant, Role::Coordinator],
    ),
    (
        "/ui/monitoring/alerts",
        &[Role::Referrer, Role::Consultant, Role::Coordinator],
    ),
    (
        "/ui/monitoring/patients/{patient}",
        &[
            Role::Referrer,
            Role::Consultant,
            Role::Coordinator,
            Role::Patient,
        ],
    ),
    (
        "/ui/tokens",
        &[
            Role::Referrer,
            Role::Consultant,
            Role::Coordinator,
            Role::PublicHealthOfficer,
            Role::Admin,
            Role::Patient,
            Role::Pharmacist,
        ],
    ),
];

fn body_for(method: &str, path: &str) -> Option<Value> {
    if method != "post" {
        return None;
    }
    Some(match path {
        "/api/v1/session" => json!({ "username": "nobody", "password": "x" }),
        "/api/v1/institutions" => {
            json!({ "name": "Matrix Clinic", "level": "hospital", "country": "KZ", "timezone": "Asia/Almaty" })
        }
        "/api/v1/users" => {
            json!({ "username": "matrix", "display_name": "M", "password": "short", "institution_id": "0190b3a2-0000-7000-8000-000000000000", "role": "referrer" })
        }
        "/api/v1/tokens" => json!({ "name": "matrix" }),
        "/api/v1/patients" => {
            json!({ "given_name": "Matrix", "family_name": "Test", "birth_date": "1990-01-01", "sex": "other" })
        }
        p if p.ends_with("/consents") => json!({ "scope": "cross_border", "granted": true }),
        "/api/v1/consultations" => {
            json!({ "patient_id": "0190b3a2-0000-7000-8000-000000000000", "question": "q", "specialty": "cardiology", "urgency": "routine" })
        }
        p if p.ends_with("/events") => json!({ "type": "acknowledge" }),
        p if p.ends_with("/messages") => json!({ "body": "matrix" }),
        _ => json!({}),
    })
}

#[tokio::test]
async fn every_route_by_every_role() {
    let node = start().await;
    let referrer = Client::login(&node, "dr.aliyev").await;
    // Ids from the demo: Aigerim (Taldykorgan) and her NSTEMI consultation led by cardio.nurlanov.
    let (_, cases) = referrer
        .get("/api/v1/consultations?state=in_progress")
        .await;
    let case = &cases[0]["consultation"];
    let case_id = case["id"].as_str().unwrap().to_owned();
    let patient_id = case["patient_id"].as_str().unwrap().to_owned();
    let (_, attachment) = referrer
        .upload(&case_id, "n.txt", "text/plain", b"note".to_vec())
        .await;
    let attachment_id = attachment["id"].as_str().unwrap().to_owned();
    let aecg = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../ecg/tests/data/aecg/mitdb100_10s.xml"
    ))
    .unwrap();
    let (_, ecg) = referrer
        .upload(&case_id, "ecg.xml", "text/plain", aecg)
        .await;
    let ecg_id = ecg["id"].as_str().unwrap().to_owned();

    let mut clients = vec![];
    for (role, name) in USERS {
        clients.push((*role, Client::login(&node, name).await));
    }
    let mut checked = 0;
    let mut failures = vec![];
    for (method, path, _, roles) in ROUTES {
        let concrete = path
            .replace("/patients/{id}", &format!("/patients/{patient_id}"))
            .replace("/consultations/{id}", &format!("/consultations/{case_id}"))
            .replace(
                "/attachments/{id}",
                &format!("/attachments/{attachment_id}"),
            )
            .replace(
                "/tokens/{id}",
                "/tokens/0190b3a2-0000-7000-8000-000000000000",
            );
        for (role, client) in &clients {
            if *path == "/api/v1/session" && *method == "delete" {
                continue; // signing out would end the session the rest of the matrix uses; covered elsewhere
            }
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let (status, body) = if path.ends_with("/attachments") {
                let form = reqwest::multipart::Form::new().part(
                    "file",
                    reqwest::multipart::Part::bytes(b"note".to_vec())
                        .file_name("n.txt")
                        .mime_str("text/plain")
                        .unwrap(),
                );
                let r = client
                    .http
                    .post(format!("{}{concrete}", node.base))
                    .header("x-csrf-token", &client.csrf)
                    .multipart(form)
                    .send()
                    .await
                    .unwrap();
                let s = r.status();
                (s, r.json::<Value>().await.unwrap_or(Value::Null))
            } else {
                client.send(m, &concrete, body_for(method, path)).await
            };
            checked += 1;
            let allowed = match roles {
                None => true,
                Some(list) => list.is_empty() || list.contains(role),
            };
            // A role refusal is exactly 403 `error-forbidden`; an allowed role may still meet an institution-scope
            // refusal (404, or 403 `error-not-home-institution`), never the role refusal or a missing sign-in.
            let role_refused =
                status == StatusCode::FORBIDDEN && body["error"] == "error-forbidden";
            let ok = if status.is_server_error() {
                false
            } else if roles.is_none() {
                !role_refused
            } else if allowed {
                !role_refused && status != StatusCode::UNAUTHORIZED
            } else {
                role_refused
            };
            if !ok {
                failures.push(format!("{method} {path} as {role}: {status} {body}"));
            }
        }
    }
    for (path, roles) in UI_PAGES {
        let concrete = path
            .replace("{case}", &case_id)
            .replace("{ecg}", &ecg_id)
            .replace("{patient}", &patient_id);
        for (role, client) in &clients {
            let (status, _) = client.get(&concrete).await;
            checked += 1;
            let expected_ok = roles.contains(role);
            let ok = if expected_ok {
                status == StatusCode::OK || status.is_redirection()
            } else {
                status == StatusCode::FORBIDDEN || status == StatusCode::NOT_FOUND
            };
            if !ok {
                failures.push(format!("GET {path} as {role}: {status}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} checks failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked > 200);
}

#[tokio::test]
async fn a_hospital_sees_another_hospitals_patients_only_through_a_shared_consultation() {
    let node = start().await;
    let aliyev = Client::login(&node, "dr.aliyev").await;
    let wang = Client::login(&node, "dr.wang").await;
    let nurlanov = Client::login(&node, "cardio.nurlanov").await;
    let (_, mine) = aliyev.get("/api/v1/patients").await;
    let (_, theirs) = wang.get("/api/v1/patients").await;
    let names = |v: &Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|p| p["family_name"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(&mine),
        ["Abenova", "Nurlanova", "Serikbayev", "Tokayev"]
    );
    assert_eq!(names(&theirs), ["Hua", "Tursun"]);
    for p in mine.as_array().unwrap() {
        let (s, _) = wang
            .get(&format!("/api/v1/patients/{}", p["id"].as_str().unwrap()))
            .await;
        assert_eq!(
            s,
            StatusCode::NOT_FOUND,
            "Kashgar must not see Taldykorgan's patients"
        );
    }
    // The national-center cardiologist sees exactly the patients whose consultations he takes part in.
    let (_, shared) = nurlanov.get("/api/v1/patients").await;
    assert_eq!(names(&shared), ["Nurlanova"]);
    let abenova = mine
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["family_name"] == "Abenova")
        .unwrap();
    assert_eq!(
        nurlanov
            .get(&format!(
                "/api/v1/patients/{}",
                abenova["id"].as_str().unwrap()
            ))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    // Consultations follow the same rule.
    let (_, wang_cases) = wang.get("/api/v1/consultations").await;
    assert!(wang_cases
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["patient_name"] == "Alim Tursun" || c["patient_name"] == "Mei Hua"));
}
