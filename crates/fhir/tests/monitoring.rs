//! Remote-monitoring vital signs on `/fhir`: Observation search (patient, code, date, _count) and read, Device
//! read and search — over readings fed through the monitoring crate's ingest by the demo seed — scoped like every
//! other FHIR read and audited.
#![allow(clippy::unwrap_used)]

mod common;
use caravan_server::{demo, AppState, Blobs, NodeConfig};
use common::*;
use reqwest::StatusCode;
use serde_json::Value;

/// The demo node with the FHIR routes and remote monitoring (DATA/monitoring.sqlite) seeded as `caravan demo`
/// seeds it.
async fn start_monitored() -> (Node, chrono::DateTime<chrono::Utc>) {
    let config = NodeConfig {
        secure_cookies: false,
        ..NodeConfig::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let store = caravan_server::open_store(dir.path().join("caravan.sqlite").to_str().unwrap())
        .await
        .unwrap();
    demo::seed(store.as_ref(), &config.sla).await.unwrap();
    let blobs = Blobs::open(dir.path().join("blobs").to_str().unwrap()).unwrap();
    let state = AppState::new(store, blobs, config);
    let m = caravan_server::monitor::attach(&state, dir.path())
        .await
        .unwrap();
    let now = chrono::Utc::now();
    caravan_server::monitor::demo::seed(&m, state.store(), now)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(caravan_server::serve_with(
        listener,
        state,
        caravan_fhir::routes(),
        std::future::pending(),
    ));
    (Node { base, dir }, now)
}

async fn patient(c: &Client, family: &str) -> String {
    let r = c.get(&format!("/fhir/Patient?name={family}")).await;
    let list = entries(&r, "Patient");
    list[0]["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn vital_signs_are_searchable_readable_scoped_and_audited() {
    let (node, now) = start_monitored().await;
    let aliyev = Client::login(&node, "dr.aliyev").await;
    let wang = Client::login(&node, "dr.wang").await;
    let pid = patient(&aliyev, "Nurlanova").await;

    // All of the patient's observations: 13 messages of two devices, 2 + 5 readings each.
    let all = entries(
        &aliyev
            .get(&format!("/fhir/Observation?patient=Patient/{pid}"))
            .await,
        "Observation",
    );
    assert_eq!(all.len(), 13 * 7);
    for o in &all {
        assert_eq!(o["subject"]["reference"], format!("Patient/{pid}"));
        assert_eq!(o["category"][0]["coding"][0]["code"], "vital-signs");
        assert!(o["id"].as_str().unwrap().parse::<i64>().is_ok());
    }

    // code: LOINC heart rate, newest first, UCUM units and the vital-signs profile.
    let hr = entries(
        &aliyev
            .get(&format!(
                "/fhir/Observation?patient={pid}&code=http://loinc.org|8867-4&_count=3"
            ))
            .await,
        "Observation",
    );
    assert_eq!(hr.len(), 3);
    assert_eq!(hr[0]["code"]["coding"][0]["code"], "8867-4");
    assert_eq!(
        hr[0]["valueQuantity"]["system"],
        "http://unitsofmeasure.org"
    );
    assert_eq!(hr[0]["valueQuantity"]["code"], "/min");
    assert_eq!(hr[0]["valueQuantity"]["value"].as_f64(), Some(125.0));
    assert_eq!(
        hr[0]["meta"]["profile"][0],
        "http://hl7.org/fhir/StructureDefinition/heartrate"
    );
    assert!(hr[0]["effectiveDateTime"].as_str() > hr[1]["effectiveDateTime"].as_str());
    // Blood pressure panel with its two components; two codes at once.
    let two = entries(
        &aliyev
            .get(&format!(
                "/fhir/Observation?patient={pid}&code=85354-9,59408-5"
            ))
            .await,
        "Observation",
    );
    assert_eq!(two.len(), 26);
    let bp = two
        .iter()
        .find(|o| o["code"]["coding"][0]["code"] == "85354-9")
        .unwrap();
    assert_eq!(bp["component"][0]["code"]["coding"][0]["code"], "8480-6");
    assert_eq!(bp["component"][1]["valueQuantity"]["code"], "mm[Hg]");
    // A code no vital sign carries matches nothing.
    let none = entries(
        &aliyev
            .get(&format!("/fhir/Observation?patient={pid}&code=1234-5"))
            .await,
        "Observation",
    );
    assert!(none.is_empty());

    // date: the last 12 minutes hold three readings per parameter.
    let since = (now - chrono::Duration::minutes(12))
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    let recent = entries(
        &aliyev
            .get(&format!(
                "/fhir/Observation?patient={pid}&code=8867-4&date=ge{}",
                since.replace(':', "%3A")
            ))
            .await,
        "Observation",
    );
    assert_eq!(recent.len(), 3);
    let today = now.format("%Y-%m-%d").to_string();
    let tomorrow = (now + chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    let before = entries(
        &aliyev
            .get(&format!(
                "/fhir/Observation?patient={pid}&date=lt{today}&date=ge2000-01-01"
            ))
            .await,
        "Observation",
    );
    let by_day = entries(
        &aliyev
            .get(&format!(
                "/fhir/Observation?patient={pid}&date=lt{tomorrow}"
            ))
            .await,
        "Observation",
    );
    assert_eq!(
        before.len()
            + entries(
                &aliyev
                    .get(&format!("/fhir/Observation?patient={pid}&date={today}"))
                    .await,
                "Observation"
            )
            .len(),
        all.len()
    );
    assert_eq!(by_day.len(), all.len());

    // Read by id.
    let id = hr[0]["id"].as_str().unwrap();
    let r = aliyev.get(&format!("/fhir/Observation/{id}")).await;
    assert_eq!(r.status, StatusCode::OK, "{:#}", r.body);
    assert_r4(&r.body);
    assert_eq!(r.body, hr[0]);
    assert_outcome(
        &aliyev.get("/fhir/Observation/99999999").await,
        404,
        "unknown id",
    );
    assert_outcome(&aliyev.get("/fhir/Observation/abc").await, 404, "not an id");

    // Device: read, and search by patient; the Observation's device reference resolves.
    let dref = hr[0]["device"]["reference"].as_str().unwrap();
    assert_eq!(dref, "Device/demo-oximeter-02");
    let d = aliyev.get(&format!("/fhir/{dref}")).await;
    assert_eq!(d.status, StatusCode::OK, "{:#}", d.body);
    assert_r4(&d.body);
    assert_eq!(d.body["patient"]["reference"], format!("Patient/{pid}"));
    assert_eq!(d.body["status"], "active");
    let devices = entries(
        &aliyev
            .get(&format!("/fhir/Device?patient=Patient/{pid}"))
            .await,
        "Device",
    );
    let ids: Vec<&str> = devices.iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["demo-monitor-02", "demo-oximeter-02"]);

    // Bad input.
    assert_outcome(&aliyev.get("/fhir/Observation").await, 400, "no patient");
    assert_outcome(&aliyev.get("/fhir/Device").await, 400, "no patient");
    assert_outcome(
        &aliyev
            .get(&format!("/fhir/Observation?patient={pid}&date=yesterday"))
            .await,
        400,
        "bad date",
    );
    assert_outcome(
        &aliyev
            .get(&format!("/fhir/Observation?patient={pid}&value=7"))
            .await,
        400,
        "unknown parameter",
    );
    assert_outcome(
        &aliyev
            .get("/fhir/Observation?patient=Patient/not-an-id")
            .await,
        400,
        "bad reference",
    );

    // Scope: another hospital's clinician learns nothing.
    assert_outcome(
        &wang.get(&format!("/fhir/Observation?patient={pid}")).await,
        404,
        "other hospital search",
    );
    assert_outcome(
        &wang.get(&format!("/fhir/Observation/{id}")).await,
        404,
        "other hospital read",
    );
    assert_outcome(
        &wang.get(&format!("/fhir/{dref}")).await,
        404,
        "other hospital device",
    );
    assert_outcome(
        &wang.get(&format!("/fhir/Device?patient={pid}")).await,
        404,
        "other hospital devices",
    );

    // Audited: each FHIR access is in the patient's access log.
    let (s, log) = aliyev
        .api(
            reqwest::Method::GET,
            &format!("/api/v1/patients/{pid}/access-log"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let detail = |v: &Value, d: &str| {
        v.as_array()
            .unwrap()
            .iter()
            .filter(|r| r["event"]["detail"] == d)
            .count()
    };
    assert!(detail(&log, "fhir:Observation") >= 9, "{log:#}");

    // The capability statement lists the new interactions.
    let cs = aliyev.get("/fhir/metadata").await;
    let res = cs.body["rest"][0]["resource"].as_array().unwrap();
    let obs = res.iter().find(|r| r["type"] == "Observation").unwrap();
    let codes: Vec<&str> = obs["interaction"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["read", "search-type", "create"]);
    assert!(res.iter().any(|r| r["type"] == "Device"));
}
