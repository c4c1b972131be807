//! Surveillance on a real node (demo-seeded, SQLite): a report raises an alert that officers acknowledge and
//! discuss; CSV import is all or nothing with the bad lines named; bad reports are refused with a message that
//! says what is wrong and store nothing; the dashboard pages render their SVG.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::{Datelike, Duration, Utc};
use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// (ISO year, ISO week) of the Monday `k` weeks before this week's.
fn week_ago(k: i64) -> (i32, u32) {
    let today = Utc::now().date_naive();
    let monday = today - Duration::days(i64::from(today.weekday().num_days_from_monday()));
    let w = (monday - Duration::weeks(k)).iso_week();
    (w.year(), w.week())
}

/// Eleven quiet weeks then a spike in the twelfth (last week).
fn spike(disease: &str, region: &str, peak: i64) -> Value {
    let mut aggs = Vec::new();
    for k in (1..=12).rev() {
        let (y, w) = week_ago(k);
        let count = if k == 1 { peak } else { 2 + (k % 2) };
        aggs.push(json!({ "disease": disease, "region": region, "iso_year": y, "iso_week": w, "count": count }));
    }
    json!({ "aggregates": aggs })
}

#[tokio::test]
async fn a_report_raises_an_alert_that_officers_acknowledge_and_discuss() {
    let node = start().await;
    let officer = Client::login(&node, "officer").await;
    let (s, regions) = officer.get("/api/v1/surveillance/regions").await;
    assert_eq!(s, StatusCode::OK);
    assert!(regions
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["code"] == "KZ-ZHA"));

    let (s, out) = officer
        .post("/api/v1/surveillance/reports", spike("A00", "KZ-ZHA", 25))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{out}");
    assert_eq!(out["aggregates"], 12);
    let alerts = out["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{out}");
    let a = &alerts[0];
    assert_eq!(a["region"], "KZ-ZHA");
    assert_eq!(a["disease"], "A00");
    // Twelve weeks are too short for Farrington (5 years): EARS C2 decided.
    assert_eq!(a["method"], "ears-c2");
    assert_eq!(a["observed"].as_f64(), Some(25.0));
    assert!(a["upperbound"].as_f64().unwrap() < 10.0);
    let (y, w) = week_ago(1);
    assert_eq!(
        (a["iso_year"].as_i64(), a["iso_week"].as_i64()),
        (Some(y as i64), Some(w as i64))
    );
    let id = a["id"].as_str().unwrap().to_owned();

    // The same figures again raise nothing new.
    let (s, again) = officer
        .post("/api/v1/surveillance/reports", spike("A00", "KZ-ZHA", 25))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(again["alerts"].as_array().unwrap().len(), 0);

    // The series shows the bound and the alarm on the last week only.
    let (s, series) = officer
        .get("/api/v1/surveillance/series?disease=A00&region=KZ-ZHA")
        .await;
    assert_eq!(s, StatusCode::OK, "{series}");
    let weeks = series["weeks"].as_array().unwrap();
    assert_eq!(weeks.len(), 12);
    let alarms: Vec<bool> = weeks
        .iter()
        .map(|w| w["alarm"].as_bool().unwrap())
        .collect();
    assert_eq!(alarms.iter().filter(|a| **a).count(), 1);
    assert!(alarms[11]);
    assert!(weeks[0]["upperbound"].is_null(), "too short for any method");

    let (s, list) = officer.get("/api/v1/surveillance/alerts").await;
    assert_eq!(s, StatusCode::OK);
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["id"] == id.as_str()));

    // Acknowledge once; the second time is a conflict. Discuss.
    let (s, acked) = officer
        .post(&format!("/api/v1/surveillance/alerts/{id}/ack"), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{acked}");
    assert_eq!(acked["status"], "acknowledged");
    assert_eq!(acked["acknowledged_by"], "Marat Dzhaksybekov");
    let (s, e) = officer
        .post(&format!("/api/v1/surveillance/alerts/{id}/ack"), json!({}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(e["error"], "error-surv-acknowledged");
    let (s, _) = officer
        .post(
            &format!("/api/v1/surveillance/alerts/{id}/notes"),
            json!({ "body": "Water samples taken in Taraz." }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, e) = officer
        .post(
            &format!("/api/v1/surveillance/alerts/{id}/notes"),
            json!({ "body": "  " }),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(e["error"], "error-surv-invalid");
    let (_, one) = officer
        .get(&format!("/api/v1/surveillance/alerts/{id}"))
        .await;
    assert_eq!(one["notes"].as_array().unwrap().len(), 1);
    assert_eq!(one["notes"][0]["body"], "Water samples taken in Taraz.");

    // The alert page and the dashboard render for the officer (SVG map and chart, no script).
    let (s, page) = officer.get(&format!("/ui/surveillance/alerts/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(page
        .as_str()
        .unwrap()
        .contains("Water samples taken in Taraz."));
    let (s, page) = officer.get("/ui/surveillance?disease=A00").await;
    assert_eq!(s, StatusCode::OK);
    let html = page.as_str().unwrap();
    assert!(
        html.contains(r#"data-region="KZ-ZHA" data-level="alarm""#),
        "{html}"
    );
    assert!(!html.contains("<script"));
    let (s, page) = officer
        .get("/ui/surveillance/series?disease=A00&region=KZ-ZHA")
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        page.as_str().unwrap().matches(r#"class="alarm""#).count(),
        1
    );

    // Other roles see nothing of it.
    let coordinator = Client::login(&node, "coordinator").await;
    let (s, e) = coordinator.get("/api/v1/surveillance/alerts").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(e["error"], "error-forbidden");
}

#[tokio::test]
async fn the_demo_outbreak_has_alerts_a_series_and_a_forecast() {
    let node = start().await;
    let officer = Client::login(&node, "officer").await;
    let (_, alerts) = officer.get("/api/v1/surveillance/alerts").await;
    let alerts = alerts.as_array().unwrap();
    assert!(
        alerts
            .iter()
            .any(|a| a["disease"] == "B05" && a["region"] == "KZ-ALM"),
        "{alerts:?}"
    );
    assert!(alerts.iter().any(|a| a["status"] == "acknowledged"));
    let (s, page) = officer
        .get("/ui/surveillance/series?disease=B05&region=KZ-ALM")
        .await;
    assert_eq!(s, StatusCode::OK);
    let html = page.as_str().unwrap();
    assert!(
        html.contains(r#"id="surv-forecast""#),
        "no fan chart: {html}"
    );
    assert!(
        html.contains("farrington-flexible"),
        "six years of history: Farrington decides"
    );
    // CSV export of the series and the line list.
    let r = officer
        .http
        .get(format!(
            "{}/ui/surveillance/export/series.csv?disease=B05&region=KZ-ALM",
            node.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let text = r.text().await.unwrap();
    assert!(text.starts_with("iso_year,iso_week,week_start,observed,upperbound,alarm,method\n"));
    assert!(text.lines().count() > 300);
    let r = officer
        .http
        .get(format!("{}/ui/surveillance/export/cases.csv", node.base))
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    assert!(text.starts_with(
        "pseudonym,disease,region,onset_date,report_date,age_band,sex,outcome,lab_confirmed\n"
    ));
    assert!(text.lines().count() > 100);
}

#[tokio::test]
async fn csv_import_is_all_or_nothing_and_names_the_bad_lines() {
    let node = start().await;
    let officer = Client::login(&node, "officer").await;
    let (y, w) = week_ago(2);
    let bad = format!(
        "disease,region,iso_year,iso_week,count\nA20,KZ-TUR,{y},{w},4\nA20,KZ-MARS,{y},{w},1\nA20,KZ-TUR,{y},{w2},-3\n",
        w2 = week_ago(3).1
    );
    let r = officer
        .http
        .post(format!("{}/api/v1/surveillance/import", node.base))
        .header("x-csrf-token", &officer.csrf)
        .header("content-type", "text/csv")
        .body(bad.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"], "error-surv-import");
    let msg = e["message"].as_str().unwrap();
    assert!(msg.contains("line 3: region \"KZ-MARS\""), "{msg}");
    assert!(msg.contains("line 4: count -3"), "{msg}");
    assert!(!msg.contains("line 2"), "{msg}");
    let (_, series) = officer
        .get("/api/v1/surveillance/series?disease=A20&region=KZ-TUR")
        .await;
    assert_eq!(
        series["weeks"].as_array().unwrap().len(),
        0,
        "the good row was not kept"
    );

    // The same refusal through the page: 422, the lines named, nothing stored.
    let form = reqwest::multipart::Form::new()
        .text("csrf", officer.csrf.clone())
        .part(
            "file",
            reqwest::multipart::Part::bytes(bad.into_bytes())
                .file_name("week.csv")
                .mime_str("text/csv")
                .unwrap(),
        );
    let r = officer
        .http
        .post(format!("{}/ui/surveillance/report/import", node.base))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("line 3: region &#34;KZ-MARS&#34;")
            || html.contains("line 3: region &quot;KZ-MARS&quot;"),
        "{html}"
    );

    // A good case file goes in whole.
    let today = Utc::now().date_naive();
    let mut good = String::from(
        "pseudonym,disease,region,onset_date,report_date,age_band,sex,outcome,lab_confirmed\n",
    );
    for i in 0..5 {
        let onset = today - Duration::days(10 + i);
        good.push_str(&format!(
            "lab-{i},A20,KZ-TUR,{onset},{today},25-44,male,hospitalised,yes\n"
        ));
    }
    let r = officer
        .http
        .post(format!("{}/api/v1/surveillance/import", node.base))
        .header("x-csrf-token", &officer.csrf)
        .body(good)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let out: Value = r.json().await.unwrap();
    assert_eq!(out["cases"], 5);
    let (s, cases) = officer
        .get("/api/v1/surveillance/cases?disease=A20&region=KZ-TUR")
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(cases.as_array().unwrap().len(), 5);
    assert_eq!(cases[0]["pseudonym"].as_str().unwrap().len(), 5);
}

#[tokio::test]
async fn bad_reports_are_refused_with_the_reason_and_store_nothing() {
    let node = start().await;
    let officer = Client::login(&node, "officer").await;
    let today = Utc::now().date_naive();
    let tomorrow = today + Duration::days(3);
    let case = |disease: &str, onset: String, report: String| json!({ "disease": disease, "region": "KZ-ALA", "onset_date": onset, "report_date": report });
    for (body, needle) in [
        (
            json!({ "cases": [case("X99", today.to_string(), today.to_string())] }),
            "case 1: disease \"X99\"",
        ),
        (
            json!({ "cases": [case("A00", today.to_string(), tomorrow.to_string())] }),
            "in the future",
        ),
        (
            json!({ "cases": [case("A00", today.to_string(), (today - Duration::days(2)).to_string())] }),
            "after report_date",
        ),
        (
            json!({ "cases": [case("A00", "5 May".into(), today.to_string())] }),
            "is not a date",
        ),
        (
            json!({ "cases": [{ "disease": "A00", "region": "KZ-ALA", "onset_date": today.to_string(), "report_date": today.to_string(), "pseudonym": "Ivan Petrov" }] }),
            "never a name",
        ),
        (
            json!({ "aggregates": [{ "disease": "A00", "region": "KZ-ALA", "iso_year": 2026, "iso_week": 60, "count": 1 }] }),
            "iso_week 60",
        ),
        (json!({}), "empty"),
    ] {
        let (s, e) = officer.post("/api/v1/surveillance/reports", body).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
        assert_eq!(e["error"], "error-surv-invalid");
        assert!(
            e["message"].as_str().unwrap().contains(needle),
            "{needle}: {e}"
        );
    }
    let r = officer
        .http
        .post(format!("{}/api/v1/surveillance/reports", node.base))
        .header("x-csrf-token", &officer.csrf)
        .header("content-type", "application/json")
        .body("{\"cases\": [")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let (_, cases) = officer
        .get("/api/v1/surveillance/cases?region=KZ-ALA")
        .await;
    assert_eq!(cases.as_array().unwrap().len(), 0);
    let (s, _) = officer
        .get("/api/v1/surveillance/series?disease=A00&region=CN-XJ-KS")
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "not a region of this node");
    let (s, _) = officer.get("/api/v1/surveillance/alerts/not-an-id").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = officer
        .get("/api/v1/surveillance/alerts/0190b3a2-0000-7000-8000-000000000000")
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_administrator_sets_the_regions_and_their_neighbours() {
    let node = start().await;
    let admin = Client::login(&node, "admin").await;
    let officer = Client::login(&node, "officer").await;
    let (s, page) = admin.get("/ui/admin/surveillance").await;
    assert_eq!(s, StatusCode::OK);
    assert!(page.as_str().unwrap().contains("kashgar-cn"));

    // Refused: a duplicate code, a bad country, a bad neighbour node id; nothing changes.
    let region = |code: &str, country: &str, node: &str| {
        json!({ "code": code, "name": "Region", "country": country, "population": 1000,
                "neighbours": [{ "node_id": node, "region": "X-1", "name": "X" }] })
    };
    for (body, needle) in [
        (
            json!([region("KZ-A", "KZ", "n1"), region("KZ-A", "KZ", "n1")]),
            "appears twice",
        ),
        (json!([region("KZ-A", "kz", "n1")]), "two capital letters"),
        (
            json!([region("KZ-A", "KZ", "Not a node!")]),
            "valid node id",
        ),
    ] {
        let (s, e) = admin
            .send(
                reqwest::Method::PUT,
                "/api/v1/surveillance/regions",
                Some(body),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
        assert!(
            e["message"].as_str().unwrap().contains(needle),
            "{needle}: {e}"
        );
    }
    let (_, regions) = officer.get("/api/v1/surveillance/regions").await;
    assert_eq!(regions.as_array().unwrap().len(), 4);
    let r = admin
        .http
        .post(format!("{}/ui/admin/surveillance", node.base))
        .form(&[("csrf", admin.csrf.as_str()), ("regions", "[{\"code\": ")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("not valid JSON"));

    // Accepted: the officer reports for the new list.
    let (s, v) = admin
        .send(
            reqwest::Method::PUT,
            "/api/v1/surveillance/regions",
            Some(json!([region("KZ-NEW", "KZ", "kashgar-cn")])),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, regions) = officer.get("/api/v1/surveillance/regions").await;
    assert_eq!(regions[0]["code"], "KZ-NEW");
    assert_eq!(regions[0]["neighbours"][0]["node_id"], "kashgar-cn");
    let (s, e) = officer
        .send(
            reqwest::Method::PUT,
            "/api/v1/surveillance/regions",
            Some(json!([])),
        )
        .await;
    assert_eq!(
        (s, e["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("error-forbidden"))
    );
}
