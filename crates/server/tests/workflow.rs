//! The remote-consultation workflow end to end over the JSON API, against a real node.

mod common;
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

#[tokio::test]
async fn referral_to_closed_loop() {
    let node = start().await;
    let referrer = Client::login(&node, "dr.aliyev").await;

    // Register a patient and record consent.
    let (s, patient) = referrer
        .post("/api/v1/patients", json!({ "given_name": "Saule", "family_name": "Bekova", "birth_date": "1961-04-03", "sex": "female", "languages": ["kk", "ru"] }))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{patient}");
    let pid = patient["id"].as_str().unwrap().to_owned();

    let new_case = json!({ "patient_id": pid, "question": "Wide-complex tachycardia: VT or SVT with aberrancy?", "specialty": "cardiology", "urgency": "emergency", "languages": ["ru", "en"], "submit": true });
    // Without consent, submission is refused with a 422 that says why, and nothing is half-written.
    let (s, err) = referrer
        .post("/api/v1/consultations", new_case.clone())
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert_eq!(err["error"], "error-consent-missing");

    let (s, _) = referrer
        .post(
            &format!("/api/v1/patients/{pid}/consents"),
            json!({ "scope": "consultation", "granted": true }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);

    // Create and submit: routing assigns a cardiologist at once.
    let (s, case) = referrer.post("/api/v1/consultations", new_case).await;
    assert_eq!(s, StatusCode::CREATED, "{case}");
    assert_eq!(case["state"], "assigned");
    let cid = case["id"].as_str().unwrap().to_owned();
    let assignee = case["assigned_to"].as_str().unwrap().to_owned();
    let consultants = [
        (
            "cardio.nurlanov",
            Client::login(&node, "cardio.nurlanov").await,
        ),
        ("cardio.li", Client::login(&node, "cardio.li").await),
    ];
    let (first_name, first) = consultants
        .iter()
        .find(|(_, c)| c.id() == assignee)
        .expect("assigned to a demo cardiologist");
    let (_, other) = consultants.iter().find(|(n, _)| n != first_name).unwrap();

    // The first consultant declines: the case re-routes to the other cardiologist, never back to the decliner.
    let ev = |v: Value| (format!("/api/v1/consultations/{cid}/events"), v);
    let (p, b) = ev(json!({ "type": "decline", "reason": "" }));
    let (s, e) = first.post(&p, b).await;
    assert_eq!(
        (s, e["error"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("error-empty-field"))
    );
    let (p, b) = ev(json!({ "type": "decline", "reason": "in theatre" }));
    let (s, c) = first.post(&p, b).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(c["state"], "assigned");
    assert_eq!(c["assigned_to"].as_str(), Some(other.id().as_str()));
    // The decliner no longer sees the case.
    assert_eq!(
        first.get(&format!("/api/v1/consultations/{cid}")).await.0,
        StatusCode::NOT_FOUND
    );

    // Only the assignee may accept; the referrer may not report.
    let (p, b) = ev(json!({ "type": "accept" }));
    assert_eq!(referrer.post(&p, b.clone()).await.0, StatusCode::FORBIDDEN);
    let (s, c) = other.post(&p, b).await;
    assert_eq!(
        (s, c["state"].as_str()),
        (StatusCode::OK, Some("in_progress"))
    );

    // MDT: invite a radiologist; threaded discussion; attachment.
    let radiologist = Client::login(&node, "radio.zhang").await;
    let (p, b) = ev(json!({ "type": "invite", "member": radiologist.id() }));
    let (s, c) = other.post(&p, b).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(c["panel"].as_array().unwrap().len(), 2);
    let (s, m) = referrer
        .post(
            &format!("/api/v1/consultations/{cid}/messages"),
            json!({ "body": "12-lead ECG attached." }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{m}");
    let (s, _) = radiologist
        .post(
            &format!("/api/v1/consultations/{cid}/messages"),
            json!({ "body": "No structural lesion on echo.", "parent_id": m["id"] }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let pdf = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n".to_vec();
    let (s, att) = referrer
        .upload(&cid, "ecg.pdf", "application/pdf", pdf.clone())
        .await;
    assert_eq!(s, StatusCode::CREATED, "{att}");
    assert_eq!(
        radiologist.download(att["id"].as_str().unwrap()).await,
        (StatusCode::OK, pdf)
    );

    // A panel member may not issue the report; the lead may.
    let report = json!({ "type": "report", "findings": "Regular WCT 190/min, AV dissociation.", "impression": "Ventricular tachycardia.", "recommendations": "Synchronised cardioversion; amiodarone; refer for EP study." });
    let (p, _) = ev(json!({}));
    assert_eq!(
        radiologist.post(&p, report.clone()).await.0,
        StatusCode::FORBIDDEN
    );
    let (s, c) = other.post(&p, report).await;
    assert_eq!((s, c["state"].as_str()), (StatusCode::OK, Some("reported")));

    // Close the loop.
    assert_eq!(
        referrer
            .post(
                &p,
                json!({ "type": "record_outcome", "status": "improved" })
            )
            .await
            .0,
        StatusCode::CONFLICT,
        "outcome before acknowledging"
    );
    assert_eq!(
        referrer.post(&p, json!({ "type": "acknowledge" })).await.0,
        StatusCode::OK
    );
    let (s, c) = referrer.post(&p, json!({ "type": "record_outcome", "status": "improved", "note": "sinus rhythm after cardioversion" })).await;
    assert_eq!((s, c["state"].as_str()), (StatusCode::OK, Some("closed")));
    // Illegal transition from the final state.
    let (s, e) = referrer
        .post(&p, json!({ "type": "cancel", "reason": "x" }))
        .await;
    assert_eq!(
        (s, e["error"].as_str()),
        (StatusCode::CONFLICT, Some("error-illegal-transition"))
    );

    // The patient's access log shows the foreign consultant's reads; the chain verifies.
    let (s, log) = referrer
        .get(&format!("/api/v1/patients/{pid}/access-log"))
        .await;
    assert_eq!(s, StatusCode::OK);
    let names: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["event"]["actor_name"].as_str())
        .collect();
    assert!(names.contains(&"Dr Zhang Min"), "{names:?}");
    let admin = Client::login(&node, "admin").await;
    let (s, v) = admin.get("/api/v1/audit/verify").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["intact"], true, "{v}");
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx() {
    let node = start().await;
    let c = Client::login(&node, "dr.aliyev").await;
    let cases: Vec<(Method, &str, Option<Value>, StatusCode, &str)> = vec![
        (
            Method::GET,
            "/api/v1/consultations/not-a-uuid",
            None,
            StatusCode::BAD_REQUEST,
            "error-bad-request",
        ),
        (
            Method::GET,
            "/api/v1/consultations/0190b3a2-0000-7000-8000-000000000000",
            None,
            StatusCode::NOT_FOUND,
            "error-not-found",
        ),
        (
            Method::POST,
            "/api/v1/patients",
            Some(json!({ "given_name": "A" })),
            StatusCode::UNPROCESSABLE_ENTITY,
            "error-bad-json",
        ),
        (
            Method::POST,
            "/api/v1/patients",
            Some(
                json!({ "given_name": " ", "family_name": "B", "birth_date": "1990-01-01", "sex": "male" }),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "error-empty-field",
        ),
        (
            Method::POST,
            "/api/v1/patients",
            Some(
                json!({ "given_name": "A", "family_name": "B", "birth_date": "2990-01-01", "sex": "male" }),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "error-bad-date",
        ),
        (
            Method::GET,
            "/api/v1/consultations?state=flying",
            None,
            StatusCode::BAD_REQUEST,
            "error-bad-request",
        ),
        // A query value of the wrong type, or given twice: the API's error, not axum's plain text.
        (
            Method::GET,
            "/api/v1/consultations?overdue=maybe",
            None,
            StatusCode::BAD_REQUEST,
            "error-bad-request",
        ),
        (
            Method::GET,
            "/api/v1/consultations?state=draft&state=closed",
            None,
            StatusCode::BAD_REQUEST,
            "error-bad-request",
        ),
        (
            Method::GET,
            "/api/v1/nowhere",
            None,
            StatusCode::NOT_FOUND,
            "error-not-found",
        ),
    ];
    for (m, path, body, status, code) in cases {
        let (s, v) = c.send(m.clone(), path, body).await;
        assert_eq!(s, status, "{m} {path}: {v}");
        assert_eq!(v["error"], code, "{m} {path}: {v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // Malformed JSON syntax.
    let r = c
        .http
        .post(format!("{}/api/v1/patients", node.base))
        .header("x-csrf-token", &c.csrf)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // Missing CSRF header on a cookie-session write.
    let r = c
        .http
        .post(format!("{}/api/v1/patients", node.base))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // No credentials at all; a bogus bearer token.
    let anon = reqwest::Client::new();
    assert_eq!(
        anon.get(format!("{}/api/v1/me", node.base))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        anon.get(format!("{}/api/v1/me", node.base))
            .bearer_auth("nope")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    // Uploads: wrong type, content not matching the type, too large.
    let (_, list) = c.get("/api/v1/consultations?state=in_progress").await;
    let cid = list[0]["consultation"]["id"].as_str().unwrap().to_owned();
    let upload = |bytes: Vec<u8>, name: &'static str, mime: &'static str| {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(bytes)
                .file_name(name)
                .mime_str(mime)
                .unwrap(),
        );
        c.http
            .post(format!(
                "{}/api/v1/consultations/{cid}/attachments",
                node.base
            ))
            .header("x-csrf-token", &c.csrf)
            .multipart(form)
            .send()
    };
    assert_eq!(
        upload(b"<script>".to_vec(), "x.html", "text/html")
            .await
            .unwrap()
            .status(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    assert_eq!(
        upload(b"not a pdf".to_vec(), "x.pdf", "application/pdf")
            .await
            .unwrap()
            .status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    // Attachments have their own limit (`large_attachments_stream_in_within_their_own_limit`); every other body
    // keeps the node's 20 MB limit.
    let mut big = br#"{"given_name": ""#.to_vec();
    big.resize(21 * 1024 * 1024, b'x');
    let s = c
        .http
        .post(format!("{}/api/v1/patients", node.base))
        .header("x-csrf-token", &c.csrf)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .map(|r| r.status());
    assert!(
        matches!(s, Ok(StatusCode::PAYLOAD_TOO_LARGE)) || s.is_err(),
        "{s:?}"
    );
    // Nothing that was stored is lost: the case and its attachments are intact.
    let (s, v) = c.get(&format!("/api/v1/consultations/{cid}")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(v["attachments"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn api_tokens_work_without_cookies_and_can_be_revoked() {
    let node = start().await;
    let c = Client::login(&node, "coordinator").await;
    let (s, t) = c
        .post("/api/v1/tokens", json!({ "name": "his-bridge" }))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let token = t["token"].as_str().unwrap();
    let anon = reqwest::Client::new();
    let r = anon
        .get(format!("{}/api/v1/consultations?overdue=true", node.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let overdue: Value = r.json().await.unwrap();
    // The demo's unanswered urgent nephrology case, and its emergency still in progress after a day.
    assert_eq!(overdue.as_array().unwrap().len(), 2, "{overdue}");
    let (s, _) = c
        .send(
            Method::DELETE,
            &format!("/api/v1/tokens/{}", t["info"]["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let r = anon
        .get(format!("{}/api/v1/me", node.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn escalation_sweep_flags_overdue_cases_once() {
    let node = start().await;
    let c = Client::login(&node, "coordinator").await;
    // The sweep runs at start-up; the overdue demo case gets escalated and audited exactly once.
    let mut escalated = None;
    for _ in 0..50 {
        let (_, v) = c.get("/api/v1/consultations?overdue=true").await;
        if let Some(at) = v[0]["consultation"]["escalated_at"].as_str() {
            escalated = Some((
                v[0]["consultation"]["id"].as_str().unwrap().to_owned(),
                at.to_owned(),
            ));
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (id, _) = escalated.expect("escalated by the sweep");
    let (_, trail) = c.get(&format!("/api/v1/consultations/{id}/audit")).await;
    let n = trail
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"]["detail"] == "escalate")
        .count();
    assert_eq!(n, 1);
    // Later sweeps do not escalate again.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (_, trail) = c.get(&format!("/api/v1/consultations/{id}/audit")).await;
    assert_eq!(
        trail
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["event"]["detail"] == "escalate")
            .count(),
        1
    );
}

#[tokio::test]
async fn repeated_wrong_passwords_lock_the_user_name_for_a_while() {
    let node = start().await;
    let http = reqwest::Client::new();
    let attempt = |password: &'static str| {
        let http = http.clone();
        let url = format!("{}/api/v1/session", node.base);
        async move {
            let r = http
                .post(url)
                .json(&json!({ "username": "dr.wang", "password": password }))
                .send()
                .await
                .unwrap();
            let s = r.status();
            (s, r.json::<Value>().await.unwrap())
        }
    };
    for _ in 0..caravan_server::throttle::MAX_FAILURES {
        let (s, v) = attempt("guess").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    }
    // Now even the right password is refused, with a reason, until the lockout ends.
    let (s, v) = attempt(caravan_server::demo::DEMO_PASSWORD).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(v["error"], "error-too-many-sign-ins");
    // Other users are not affected.
    Client::login(&node, "dr.aliyev").await;
}

#[tokio::test]
async fn a_coordinator_gives_a_case_to_a_standing_team() {
    let node = start().await;
    let referrer = Client::login(&node, "dr.aliyev").await;
    let coordinator = Client::login(&node, "coordinator").await;
    let admin = Client::login(&node, "admin").await;
    let (s, patient) = referrer
        .post("/api/v1/patients", json!({ "given_name": "Dana", "family_name": "Omarova", "birth_date": "1958-12-01", "sex": "female" }))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{patient}");
    let pid = patient["id"].as_str().unwrap();
    referrer
        .post(
            &format!("/api/v1/patients/{pid}/consents"),
            json!({ "scope": "consultation", "granted": true }),
        )
        .await;
    let (s, case) = referrer
        .post("/api/v1/consultations", json!({ "patient_id": pid, "question": "Severe aortic stenosis: TAVI or surgery?", "specialty": "cardiology", "urgency": "routine", "languages": ["ru"], "submit": true }))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{case}");
    let cid = case["id"].as_str().unwrap();

    // Routing proposes single consultants and the demo's heart team.
    let (s, proposals) = coordinator
        .get(&format!("/api/v1/consultations/{cid}/candidates"))
        .await;
    assert_eq!(s, StatusCode::OK, "{proposals}");
    assert!(!proposals["consultants"].as_array().unwrap().is_empty());
    let team = proposals["teams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "Heart Team (NTC)")
        .expect("the heart team is proposed")
        .clone();
    let (_, teams) = coordinator.get("/api/v1/teams").await;
    assert_eq!(teams.as_array().unwrap().len(), 2, "{teams}");
    // Only an administrator creates teams; a bad lead is refused with a reason.
    let bad = json!({ "name": "X", "specialty": "cardiology", "lead_id": referrer.id() });
    assert_eq!(
        coordinator.post("/api/v1/teams", bad.clone()).await.0,
        StatusCode::FORBIDDEN
    );
    let (s, e) = admin.post("/api/v1/teams", bad).await;
    assert_eq!(
        (s, e["error"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("error-not-a-consultant")
        )
    );

    // The coordinator gives the case to the team: its lead is assigned.
    let ev = format!("/api/v1/consultations/{cid}/events");
    let (s, c) = coordinator
        .post(
            &ev,
            json!({ "type": "assign_team", "team": team["team_id"] }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(c["assigned_to"], team["lead_id"]);
    assert_eq!(c["team"]["name"], "Heart Team (NTC)");
    // When the lead accepts, the members join the panel and can see the case.
    let lead = Client::login(&node, "cardio.nurlanov").await;
    assert_eq!(lead.id(), team["lead_id"].as_str().unwrap());
    let (s, c) = lead.post(&ev, json!({ "type": "accept" })).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    let panel: Vec<&str> = c["panel"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(panel, ["lead", "member", "member"]);
    let radiologist = Client::login(&node, "radio.zhang").await;
    assert_eq!(
        radiologist
            .get(&format!("/api/v1/consultations/{cid}"))
            .await
            .0,
        StatusCode::OK
    );
    // A team of another specialty is refused for this case.
    let other = teams
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["specialty"] != "cardiology")
        .unwrap();
    let (s, e) = coordinator
        .post(&ev, json!({ "type": "assign_team", "team": other["id"] }))
        .await;
    assert!(s.is_client_error(), "{s} {e}");
}

/// The UI's multipart forms share one reader: the CSRF token comes first and is checked before the file is read;
/// a form without it, or with a wrong one, stores nothing.
/// Every file under `dir`, recursively.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(e.path());
            } else {
                files.push(e.path());
            }
        }
    }
    files
}

#[tokio::test]
async fn large_attachments_stream_in_within_their_own_limit() {
    // Attachments up to 1 MiB on this node; the body limit of other requests stays at its default.
    let limit = 1024 * 1024;
    let node = start_with(caravan_server::NodeConfig {
        secure_cookies: false,
        max_attachment_bytes: limit,
        ..caravan_server::NodeConfig::default()
    })
    .await;
    let c = Client::login(&node, "dr.aliyev").await;
    let (s, patient) = c
        .post("/api/v1/patients", json!({ "given_name": "Aru", "family_name": "Nurova", "birth_date": "1980-05-05", "sex": "female" }))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{patient}");
    let (s, case) = c
        .post("/api/v1/consultations", json!({ "patient_id": patient["id"], "question": "Biopsy?", "specialty": "pathology", "urgency": "routine", "languages": ["ru"] }))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{case}");
    let cid = case["id"].as_str().unwrap().to_owned();
    let attachments = || async {
        let (s, v) = c.get(&format!("/api/v1/consultations/{cid}")).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["attachments"].as_array().unwrap().clone()
    };
    let blobs = node.dir.path().join("blobs");
    let ui_form = |bytes: Vec<u8>, name: &str, mime: &str| {
        let form = reqwest::multipart::Form::new()
            .text("csrf", c.csrf.clone())
            .part(
                "file",
                reqwest::multipart::Part::bytes(bytes)
                    .file_name(name.to_owned())
                    .mime_str(mime)
                    .unwrap(),
            );
        c.http
            .post(format!("{}/ui/consultations/{cid}/attachments", node.base))
            .multipart(form)
            .send()
    };

    // Exactly the limit: stored, digested and sized as it streamed in; the download gives it back.
    let mut pdf = b"%PDF-1.7\n".to_vec();
    let mut seed = 5u64;
    while pdf.len() < limit as usize {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        pdf.push((seed >> 56) as u8);
    }
    let (s, a) = c
        .upload(&cid, "scan.pdf", "application/pdf", pdf.clone())
        .await;
    assert_eq!(s, StatusCode::CREATED, "{a}");
    assert_eq!(a["size"], limit);
    let sha = a["sha256"].as_str().unwrap().to_owned();
    let blob = blobs.join("attachments").join(&sha[..2]).join(&sha);
    assert_eq!(
        std::fs::read(&blob).unwrap(),
        pdf,
        "stored at its content address"
    );
    let r = c
        .http
        .get(format!(
            "{}/api/v1/attachments/{}",
            node.base,
            a["id"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-length"], limit.to_string().as_str());
    assert!(r.bytes().await.unwrap() == pdf);

    // One byte over, through the API and through the form: 413, and nothing of it is stored.
    let mut over = pdf.clone();
    over.push(b'x');
    let (s, e) = c
        .upload(&cid, "over.pdf", "application/pdf", over.clone())
        .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{e}");
    assert_eq!(e["error"], "error-too-large");
    let r = ui_form(over, "over.pdf", "application/pdf").await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(attachments().await.len(), 1);

    // Text is checked as UTF-8 all through: multi-byte characters split between pieces pass, a bad byte far
    // past the first bytes is refused (422) and leaves nothing behind.
    let text = "Заключение: 病理 ✓\n".repeat(20_000);
    assert!(text.len() < limit as usize);
    let r = ui_form(text.clone().into_bytes(), "report.txt", "text/plain")
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let mut bad = text.into_bytes();
    let at = bad.len() - 1000;
    bad[at] = 0xFF;
    let (s, e) = c.upload(&cid, "bad.txt", "text/plain", bad).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["error"], "error-file-content");
    let (s, e) = c
        .upload(&cid, "empty.pdf", "application/pdf", Vec::new())
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["error"], "error-empty-file");

    // The same bytes again: a second attachment, one blob.
    let (s, again) = c
        .upload(&cid, "scan-copy.pdf", "application/pdf", pdf)
        .await;
    assert_eq!(s, StatusCode::CREATED, "{again}");
    assert_eq!(again["sha256"], sha.as_str());
    assert_eq!(attachments().await.len(), 3);
    let files = files_under(&blobs);
    assert_eq!(
        files.len(),
        2,
        "the PDF once and the text, nothing staged: {files:?}"
    );

    // Other request bodies keep the node's body limit, and a form is not read past its bounds.
    let form = reqwest::multipart::Form::new()
        .text("csrf", c.csrf.clone())
        .text("note", "x".repeat(2 * 1024 * 1024))
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"%PDF-1.4".to_vec()).file_name("a.pdf"),
        );
    let r = c
        .http
        .post(format!("{}/ui/consultations/{cid}/attachments", node.base))
        .multipart(form)
        .send()
        .await
        .map(|r| r.status());
    assert!(
        matches!(r, Ok(StatusCode::PAYLOAD_TOO_LARGE)) || r.is_err(),
        "{r:?}"
    );
    assert_eq!(attachments().await.len(), 3);
}

#[tokio::test]
async fn ui_upload_forms_check_the_csrf_token_first() {
    let node = start().await;
    let referrer = Client::login(&node, "dr.aliyev").await;
    let (s, patient) = referrer
        .post("/api/v1/patients", json!({ "given_name": "Dana", "family_name": "Ospan", "birth_date": "1975-02-01", "sex": "female" }))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{patient}");
    let pid = patient["id"].as_str().unwrap().to_owned();
    let (s, case) = referrer
        .post("/api/v1/consultations", json!({ "patient_id": pid, "question": "Murmur?", "specialty": "cardiology", "urgency": "routine", "languages": ["ru"] }))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{case}");
    let cid = case["id"].as_str().unwrap().to_owned();
    let send = |csrf: Option<&str>| {
        let mut form = reqwest::multipart::Form::new();
        if let Some(t) = csrf {
            form = form.text("csrf", t.to_owned());
        }
        form = form.part(
            "file",
            reqwest::multipart::Part::bytes(b"%PDF-1.4 letter".to_vec())
                .file_name("letter.pdf")
                .mime_str("application/pdf")
                .unwrap(),
        );
        referrer
            .http
            .post(format!("{}/ui/consultations/{cid}/attachments", node.base))
            .multipart(form)
            .send()
    };
    let attachments = || async {
        let (s, v) = referrer.get(&format!("/api/v1/consultations/{cid}")).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["attachments"].as_array().unwrap().len()
    };
    assert_eq!(send(None).await.unwrap().status(), StatusCode::FORBIDDEN);
    assert_eq!(
        send(Some("not-the-token")).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(attachments().await, 0);
    let r = send(Some(&referrer.csrf)).await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(attachments().await, 1);
}

#[tokio::test]
async fn the_blob_sweep_removes_only_content_no_row_names() {
    use caravan_server::housekeeping::{sweep_blobs, Swept};
    let (node, st) = start_full(
        caravan_server::NodeConfig {
            secure_cookies: false,
            ..caravan_server::NodeConfig::default()
        },
        None,
        None,
    )
    .await;
    let c = Client::login(&node, "dr.aliyev").await;
    let (s, patient) = c
        .post("/api/v1/patients", json!({ "given_name": "Mira", "family_name": "Sadyk", "birth_date": "1990-03-03", "sex": "female" }))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{patient}");
    let (s, case) = c
        .post("/api/v1/consultations", json!({ "patient_id": patient["id"], "question": "Lesion?", "specialty": "pathology", "urgency": "routine", "languages": ["ru"] }))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{case}");
    let cid = case["id"].as_str().unwrap().to_owned();
    let pdf = b"%PDF-1.7\nswept or not".to_vec();
    let (s, a) = c
        .upload(&cid, "note.pdf", "application/pdf", pdf.clone())
        .await;
    assert_eq!(s, StatusCode::CREATED, "{a}");
    let sha = a["sha256"].as_str().unwrap();
    let blobs = node.dir.path().join("blobs");
    let named = blobs.join("attachments").join(&sha[..2]).join(sha);

    // What a failed row write or a crash leaves behind, two days old: content no row names (uploaded, and
    // received with a case packet), a finished upload still in staging, the part of an upload cut off.
    let unnamed = blobs.join("attachments/ff").join("f".repeat(64));
    let received = blobs.join("federation/0b7e/".to_owned() + &"e".repeat(64));
    let staged = blobs.join("attachments/incoming/3f1c");
    let part = blobs.join("attachments/incoming/77aa#3");
    let fresh = blobs.join("attachments/ee").join("e".repeat(64));
    let two_days_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 86_400);
    for f in [&unnamed, &received, &staged, &part, &fresh] {
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, b"left over").unwrap();
    }
    for f in [&unnamed, &received, &staged, &part, &named] {
        std::fs::File::options()
            .write(true)
            .open(f)
            .unwrap()
            .set_modified(two_days_ago)
            .unwrap();
    }

    // An upload between finding content and committing its row holds the gate: the sweep waits for it.
    let gate = st.blobs().attachment_gate().read().await;
    let sweep = tokio::spawn({
        let st = st.clone();
        async move { sweep_blobs(&st, chrono::Utc::now()).await.unwrap() }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!sweep.is_finished(), "the sweep ran past an upload's gate");
    assert!(unnamed.exists());
    drop(gate);
    let swept = sweep.await.unwrap();
    assert_eq!(
        swept,
        Swept {
            unnamed: 2,
            staged: 1,
            parts: 1
        }
    );
    for f in [&unnamed, &received, &staged, &part] {
        assert!(!f.exists(), "{f:?} was not swept");
    }
    assert!(
        fresh.exists(),
        "content younger than the grace period stays"
    );
    assert!(named.exists(), "content a row names stays, however old");
    assert_eq!(
        c.download(a["id"].as_str().unwrap()).await,
        (StatusCode::OK, pdf)
    );
    // Nothing more to do the second time.
    assert_eq!(
        sweep_blobs(&st, chrono::Utc::now()).await.unwrap(),
        Swept::default()
    );
}

/// A case read carries the latest part of a long thread and the count of all of it; the reader pages back
/// through the rest, and a bad page request says what is wrong.
#[tokio::test]
async fn a_long_thread_is_read_in_pages() {
    let node = start().await;
    let referrer = Client::login(&node, "dr.aliyev").await;
    let (s, patient) = referrer
        .post("/api/v1/patients", json!({ "given_name": "Aru", "family_name": "Sarsen", "birth_date": "1950-02-01", "sex": "female" }))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{patient}");
    let pid = patient["id"].as_str().unwrap().to_owned();
    let (s, _) = referrer
        .post(
            &format!("/api/v1/patients/{pid}/consents"),
            json!({ "scope": "consultation", "granted": true }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, case) = referrer
        .post("/api/v1/consultations", json!({ "patient_id": pid, "question": "Long discussion", "specialty": "cardiology", "urgency": "routine", "submit": true }))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{case}");
    let cid = case["id"].as_str().unwrap().to_owned();
    let total = caravan_store::THREAD_WINDOW + 5;
    for i in 0..total {
        let (s, m) = referrer
            .post(
                &format!("/api/v1/consultations/{cid}/messages"),
                json!({ "body": format!("note {i}") }),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{m}");
    }
    let bodies = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|m| m["body"].as_str().unwrap().to_owned())
            .collect()
    };
    let notes =
        |r: std::ops::Range<usize>| -> Vec<String> { r.map(|i| format!("note {i}")).collect() };

    let (s, view) = referrer.get(&format!("/api/v1/consultations/{cid}")).await;
    assert_eq!(s, StatusCode::OK, "{view}");
    assert_eq!(view["messages_total"], total);
    assert_eq!(bodies(&view["messages"]), notes(5..total));

    // Back from the oldest message the read returned: the five before it, in thread order.
    let oldest = view["messages"][0]["id"].as_str().unwrap();
    let page = format!("/api/v1/consultations/{cid}/messages");
    let (s, older) = referrer
        .get(&format!("{page}?before={oldest}&limit=3"))
        .await;
    assert_eq!(s, StatusCode::OK, "{older}");
    assert_eq!(bodies(&older), notes(2..5));
    let (s, rest) = referrer
        .get(&format!(
            "{page}?before={}&limit=500",
            older[0]["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(bodies(&rest), notes(0..2));
    // Without `before`: the latest messages, exactly as the read gave them (instants spelled as stored in both).
    let (s, latest) = referrer.get(&page).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(latest, view["messages"]);
    assert!(
        latest[0]["created_at"].as_str().unwrap().len() == "2026-01-01T00:00:00.000000Z".len(),
        "{latest}"
    );

    for (query, status) in [
        ("?limit=0", StatusCode::BAD_REQUEST),
        ("?limit=501", StatusCode::BAD_REQUEST),
        ("?limit=many", StatusCode::BAD_REQUEST),
        ("?before=not-an-id", StatusCode::BAD_REQUEST),
        (
            "?before=01a247af-d8e1-76a7-aa4a-c10cfcf4766a",
            StatusCode::NOT_FOUND,
        ),
    ] {
        let (s, e) = referrer.get(&format!("{page}{query}")).await;
        assert_eq!(s, status, "{query}: {e}");
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
    }
    // Another hospital's clinician sees neither the case nor its thread.
    let other = Client::login(&node, "dr.wang").await;
    assert_eq!(other.get(&page).await.0, StatusCode::NOT_FOUND);

    // The case page shows the latest part of the thread, with a link to the part before it, which links back.
    let shown = |html: &Value| -> Vec<usize> {
        let html = html.as_str().unwrap();
        (0..total)
            .filter(|i| html.contains(&format!(">note {i}<")))
            .collect()
    };
    let ui = format!("/ui/consultations/{cid}");
    let (s, html) = referrer.get(&ui).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(shown(&html), (5..total).collect::<Vec<_>>());
    let oldest_shown = view["messages"][0]["id"].as_str().unwrap();
    assert!(html
        .as_str()
        .unwrap()
        .contains(&format!("?before={oldest_shown}")));
    let (s, html) = referrer.get(&format!("{ui}?before={oldest_shown}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(shown(&html), (0..5).collect::<Vec<_>>());
    let html = html.as_str().unwrap();
    assert!(!html.contains("?before=") && html.contains(&format!("href=\"{ui}#thread\"")));
    assert_eq!(
        referrer.get(&format!("{ui}?before=x")).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        referrer
            .get(&format!("{ui}?before=01a247af-d8e1-76a7-aa4a-c10cfcf4766a"))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

/// A list is one audit event naming every case it returned; each patient's access log, and each case's trail,
/// shows it with that patient's or case's part only; the chain verifies.
#[tokio::test]
async fn a_list_is_one_audit_event_each_patient_sees_narrowed() {
    let node = start().await;
    let referrer = Client::login(&node, "dr.aliyev").await;
    let (s, list) = referrer.get("/api/v1/consultations").await;
    assert_eq!(s, StatusCode::OK, "{list}");
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
    let mut patients: Vec<&str> = listed.iter().map(|(_, p)| p.as_str()).collect();
    patients.sort();
    patients.dedup();
    assert!(
        patients.len() >= 2,
        "the demo lists cases of several patients: {listed:?}"
    );

    // The patient of the first case: their log holds the list once, naming their cases only.
    let (case, pid) = listed[0].clone();
    let (s, log) = referrer
        .get(&format!("/api/v1/patients/{pid}/access-log"))
        .await;
    assert_eq!(s, StatusCode::OK, "{log}");
    let searches: Vec<&Value> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["event"]["action"] == "search" && r["event"]["entity_type"] == "consultation")
        .collect();
    assert_eq!(searches.len(), 1, "{log}");
    let search = searches[0];
    let seq = search["seq"].as_i64().unwrap();
    let theirs: Vec<Value> = listed
        .iter()
        .filter(|(_, p)| *p == pid)
        .map(|(c, p)| json!({ "entity_id": c, "patient_id": p }))
        .collect();
    assert_eq!(
        search["event"]["subjects"],
        Value::Array(theirs),
        "{search}"
    );
    assert_eq!(search["event"]["patient_id"], Value::Null);

    // The case's trail: the same event, naming this case alone.
    let (s, trail) = referrer
        .get(&format!("/api/v1/consultations/{case}/audit"))
        .await;
    assert_eq!(s, StatusCode::OK, "{trail}");
    let in_trail = trail
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["seq"] == seq)
        .unwrap_or_else(|| panic!("the list is in the case's trail: {trail}"));
    assert_eq!(
        in_trail["event"]["subjects"],
        json!([{ "entity_id": case, "patient_id": pid }])
    );

    // (The FHIR view of the same event is tested in caravan-fhir's tests.)
    let admin = Client::login(&node, "admin").await;
    let (s, verified) = admin.get("/api/v1/audit/verify").await;
    assert_eq!(s, StatusCode::OK, "{verified}");
    assert_eq!(verified["intact"], true, "{verified}");
}
