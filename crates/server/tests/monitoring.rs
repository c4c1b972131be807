//! Remote monitoring in the node: the device registry bound to the node's patients (scoping, credentials, broker
//! files, bad input), observations and alerts over the JSON API and the pages, escalation and acknowledgement,
//! the audit trail — on a real node on 127.0.0.1:0 — and, with `CARAVAN_TEST_MQTT=1`, readings published by a
//! device through a private Mosquitto configured from the node's own password file and ACL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use caravan_server::monitor::{self, MonitorArgs};
use caravan_server::NodeConfig;
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn config() -> NodeConfig {
    NodeConfig {
        secure_cookies: false,
        ..NodeConfig::default()
    }
}

async fn patient_id(c: &Client, family: &str) -> String {
    let (s, list) = c.get(&format!("/api/v1/patients?name={family}")).await;
    assert_eq!(s, StatusCode::OK, "{list}");
    list.as_array()
        .unwrap()
        .iter()
        .find(|p| p["family_name"] == family)
        .unwrap_or_else(|| panic!("{family} in {list}"))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn access_log(c: &Client, patient: &str) -> Vec<Value> {
    let (s, log) = c
        .get(&format!("/api/v1/patients/{patient}/access-log"))
        .await;
    assert_eq!(s, StatusCode::OK, "{log}");
    log.as_array().unwrap().clone()
}

fn count_events(log: &[Value], entity_type: &str, action: &str) -> usize {
    log.iter()
        .filter(|r| r["event"]["entity_type"] == entity_type && r["event"]["action"] == action)
        .count()
}

#[tokio::test]
async fn registry_credentials_scoping_and_bad_input() {
    let (node, _state) = start_full(config(), None, None).await;
    let aliyev = Client::login(&node, "dr.aliyev").await;
    let wang = Client::login(&node, "dr.wang").await;
    let nurlanov = Client::login(&node, "cardio.nurlanov").await;
    let patient = Client::login(&node, "patient").await;
    let abenova = patient_id(&aliyev, "Abenova").await;
    let nurlanova = patient_id(&aliyev, "Nurlanova").await;
    let register = format!("/api/v1/monitoring/patients/{abenova}/devices");

    let (s, cred) = aliyev
        .post(
            &register,
            json!({ "device_id": "ox-test-1", "kind": "pulse_oximeter", "spo2_scale": 2 }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{cred}");
    let password = cred["password"].as_str().unwrap().to_owned();
    assert_eq!(password.len(), 24);
    assert_eq!(cred["username"], "ox-test-1");
    assert_eq!(cred["topic"], "caravan/v1/devices/ox-test-1/readings");
    let line = cred["password_file_line"].as_str().unwrap();
    assert!(line.starts_with("ox-test-1:$7$"), "{line}");
    assert!(!line.contains(&password));
    assert_eq!(cred["device"]["patient_id"], abenova.as_str());
    // The node wrote the broker's files: the device's hash and the ACL that confines it to its topic.
    let broker = node.dir.path().join("monitoring-broker");
    let passwd = std::fs::read_to_string(broker.join("passwd")).unwrap();
    assert!(passwd.contains(line), "{passwd}");
    let acl = std::fs::read_to_string(broker.join("acl")).unwrap();
    assert!(acl.contains("pattern write caravan/v1/devices/%u/readings"));

    // Bad input: a clear 4xx each, nothing registered.
    for (body, status, code) in [
        (
            json!({ "device_id": "ox-test-1", "kind": "thermometer" }),
            409,
            "error-monitoring-device-exists",
        ),
        (
            json!({ "device_id": "ox/1", "kind": "thermometer" }),
            422,
            "error-monitoring-device-id",
        ),
        (
            json!({ "device_id": "", "kind": "thermometer" }),
            422,
            "error-monitoring-device-id",
        ),
        (
            json!({ "device_id": "ox-test-2", "kind": "toaster" }),
            422,
            "error-monitoring-device-kind",
        ),
        (
            json!({ "device_id": "ox-test-2", "kind": "thermometer", "spo2_scale": 3 }),
            422,
            "error-monitoring-scale",
        ),
        (
            json!({ "device_id": 7, "kind": "thermometer" }),
            422,
            "error-bad-json",
        ),
    ] {
        let (s, b) = aliyev.post(&register, body.clone()).await;
        assert_eq!(s.as_u16(), status, "{body} → {b}");
        assert_eq!(b["error"], code, "{body} → {b}");
    }
    let (s, b) = aliyev
        .post(
            "/api/v1/monitoring/patients/0190b3a2-0000-7000-8000-000000000000/devices",
            json!({ "device_id": "ox-test-3", "kind": "thermometer" }),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "unknown patient: {b}");
    let (s, _) = aliyev
        .post(
            "/api/v1/monitoring/patients/not-a-patient/devices",
            json!({ "device_id": "ox-test-3", "kind": "thermometer" }),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, dev) = aliyev.get("/api/v1/monitoring/devices/ox-test-3").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{dev}");

    // Scoping: another hospital sees nothing of it; a consultant who shares a case may read but not register.
    let (s, _) = wang
        .get(&format!("/api/v1/monitoring/patients/{abenova}"))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = wang.get("/api/v1/monitoring/devices/ox-test-1").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = wang
        .post(
            "/api/v1/monitoring/devices/ox-test-1/credentials",
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = wang
        .send(Method::DELETE, "/api/v1/monitoring/devices/ox-test-1", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, b) = wang
        .post(
            &register,
            json!({ "device_id": "ox-wang", "kind": "thermometer" }),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    let (s, b) = nurlanov
        .post(
            &format!("/api/v1/monitoring/patients/{nurlanova}/devices"),
            json!({ "device_id": "ox-nurlanov", "kind": "thermometer" }),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert_eq!(b["error"], "error-not-home-institution");
    let (s, b) = patient
        .post(
            &register,
            json!({ "device_id": "ox-self", "kind": "thermometer" }),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert_eq!(b["error"], "error-forbidden");
    let (_, ward) = wang.get("/api/v1/monitoring/patients").await;
    assert!(ward["patients"].as_array().unwrap().is_empty(), "{ward}");
    let (_, ward) = aliyev.get("/api/v1/monitoring/patients").await;
    let rows = ward["patients"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{ward}");
    assert_eq!(rows[0]["devices"], 1);
    assert!(rows[0]["news2"].is_null(), "no readings yet");
    assert_eq!(ward["ingest"], "off");

    // Rotation: a new password, a new hash in the password file, the old hash gone.
    let (s, rotated) = aliyev
        .post(
            "/api/v1/monitoring/devices/ox-test-1/credentials",
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{rotated}");
    assert_ne!(rotated["password"], password.as_str());
    let passwd = std::fs::read_to_string(broker.join("passwd")).unwrap();
    assert!(passwd.contains(rotated["password_file_line"].as_str().unwrap()));
    assert!(!passwd.contains(line));

    // Unbinding revokes the broker password and hides the device from the patient's readers.
    let (s, d) = aliyev
        .send(Method::DELETE, "/api/v1/monitoring/devices/ox-test-1", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert!(d["patient_id"].is_null());
    assert_eq!(d["has_password"], false);
    let passwd = std::fs::read_to_string(broker.join("passwd")).unwrap();
    assert!(!passwd.contains("ox-test-1:"), "{passwd}");
    let (s, _) = aliyev.get("/api/v1/monitoring/devices/ox-test-1").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Its id stays taken: the history of its readings keeps naming it.
    let (s, _) = aliyev
        .post(
            &register,
            json!({ "device_id": "ox-test-1", "kind": "pulse_oximeter" }),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);

    // Audit: registration, rotation and unbinding are in the patient's access log.
    let log = access_log(&aliyev, &abenova).await;
    assert_eq!(
        count_events(&log, "monitoring_device", "create"),
        1,
        "{log:?}"
    );
    assert_eq!(count_events(&log, "monitoring_device", "update"), 1);
    assert_eq!(count_events(&log, "monitoring_device", "delete"), 1);
    assert!(count_events(&log, "monitoring", "search") >= 1, "the ward");
}

#[tokio::test]
async fn seeded_readings_ward_alerts_escalation_pages_and_audit() {
    let (node, state) = start_full(config(), None, None).await;
    let m = state.monitoring().unwrap().clone();
    let now = chrono::Utc::now();
    let seeded = monitor::demo::seed(&m, state.store(), now).await.unwrap();
    assert_eq!(seeded.devices, 4);
    assert_eq!(seeded.messages, 4 * 13);
    assert!(seeded.alerts >= 2, "{seeded:?}");
    // Seeding twice does nothing.
    assert_eq!(
        monitor::demo::seed(&m, state.store(), now).await.unwrap(),
        monitor::demo::Seeded::default()
    );

    let aliyev = Client::login(&node, "dr.aliyev").await;
    let wang = Client::login(&node, "dr.wang").await;
    let coordinator = Client::login(&node, "coordinator").await;
    let nurlanova = patient_id(&aliyev, "Nurlanova").await;
    let serikbayev = patient_id(&aliyev, "Serikbayev").await;

    let (s, ward) = aliyev.get("/api/v1/monitoring/patients").await;
    assert_eq!(s, StatusCode::OK, "{ward}");
    let rows = ward["patients"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Aigerim Nurlanova", "Bolat Serikbayev"], "{ward}");
    let sick = &rows[0];
    assert_eq!(sick["news2"]["risk"], "high", "{sick}");
    assert_eq!(sick["news2"]["complete"], true);
    // RR 26 (3) + SpO2 90 (3) + air (0) + SBP 95 (2) + pulse 125 (2) + alert (0) + 38.8 °C (1).
    assert_eq!(sick["news2"]["total"], 11);
    assert!(sick["open_alerts"].as_u64().unwrap() >= 1);
    assert_eq!(rows[1]["news2"]["risk"], "low");
    assert_eq!(rows[1]["news2"]["complete"], true);
    let (_, ward) = wang.get("/api/v1/monitoring/patients").await;
    let names: Vec<&str> = ward["patients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Alim Tursun"]);

    // Observations: filtered, newest first, each with its FHIR resource (LOINC + UCUM).
    let obs_path = format!("/api/v1/monitoring/patients/{nurlanova}/observations");
    let (s, obs) = aliyev
        .get(&format!("{obs_path}?kind=heart_rate&limit=5"))
        .await;
    assert_eq!(s, StatusCode::OK, "{obs}");
    let obs = obs.as_array().unwrap();
    assert_eq!(obs.len(), 5);
    assert!(obs.iter().all(|o| o["kind"] == "heart_rate"));
    assert_eq!(obs[0]["value"], "125");
    assert!(obs[0]["effective"].as_str() > obs[1]["effective"].as_str());
    let fhir = &obs[0]["fhir"];
    assert_eq!(fhir["resourceType"], "Observation");
    assert_eq!(fhir["code"]["coding"][0]["code"], "8867-4");
    assert_eq!(fhir["valueQuantity"]["code"], "/min");
    assert_eq!(fhir["subject"]["reference"], format!("Patient/{nurlanova}"));
    assert_eq!(fhir["id"], obs[0]["id"].to_string());
    let from = (now - chrono::Duration::minutes(12)).to_rfc3339();
    let (_, recent) = aliyev
        .get(&format!("{obs_path}?kind=spo2&from={}", url_escape(&from)))
        .await;
    assert_eq!(recent.as_array().unwrap().len(), 3, "{recent}"); // readings at -10, -5 and 0 minutes
    for (q, what) in [
        ("kind=pulse", "unknown kind"),
        ("from=yesterday", "bad time"),
        ("limit=0", "zero limit"),
        ("limit=abc", "non-number"),
    ] {
        let (s, b) = aliyev.get(&format!("{obs_path}?{q}")).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{what}: {b}");
        assert_eq!(b["error"], "error-monitoring-query", "{what}: {b}");
    }
    let (s, _) = wang.get(&obs_path).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Alerts: the deteriorating patient's, at tier 1, for the responsible clinician.
    let (s, alerts) = aliyev.get("/api/v1/monitoring/alerts?open=true").await;
    assert_eq!(s, StatusCode::OK, "{alerts}");
    let alerts = alerts.as_array().unwrap().clone();
    assert!(!alerts.is_empty());
    assert!(alerts.iter().all(|a| a["patient_id"] == nurlanova.as_str()));
    assert!(alerts
        .iter()
        .all(|a| a["tier"] == 1 && a["needs_me"] == true));
    assert!(alerts.iter().any(|a| a["level"] == "high"));
    let (_, theirs) = wang.get("/api/v1/monitoring/alerts").await;
    assert!(theirs.as_array().unwrap().is_empty(), "{theirs}");
    // The coordinator shares Nurlanova's case: sees the alerts, but tier 1 is not addressed to coordinators.
    let (_, coord) = coordinator.get("/api/v1/monitoring/alerts?open=true").await;
    let coord = coord.as_array().unwrap().clone();
    assert_eq!(coord.len(), alerts.len(), "{coord:?}");
    assert!(coord.iter().all(|a| a["needs_me"] == false));

    // Nobody acknowledges: after the high-risk timeout (5 min) the alerts move to the medical team. Each move is
    // an event of the patient's audit chain by the system, in her access log.
    let escalations = |log: &[Value]| -> Vec<Value> {
        log.iter()
            .filter(|r| {
                r["event"]["entity_type"] == "monitoring_alert"
                    && r["event"]["action"] == "update"
                    && r["event"]["actor_user"].is_null()
            })
            .cloned()
            .collect()
    };
    assert!(escalations(&access_log(&aliyev, &nurlanova).await).is_empty());
    let moved = monitor::escalate_now(&state, chrono::Utc::now() + chrono::Duration::minutes(6))
        .await
        .unwrap();
    assert!(moved >= 1);
    let log = access_log(&aliyev, &nurlanova).await;
    let escalated = escalations(&log);
    assert_eq!(escalated.len(), moved, "{log:?}");
    for e in &escalated {
        assert_eq!(e["event"]["actor_name"], "system", "{e}");
        assert_eq!(e["event"]["patient_id"], nurlanova.as_str());
        assert_eq!(e["event"]["detail"], "escalated to tier 2 (medical_team)");
    }
    // The same check again moves nothing and records nothing.
    assert_eq!(
        monitor::escalate_now(&state, chrono::Utc::now() + chrono::Duration::minutes(6))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        escalations(&access_log(&aliyev, &nurlanova).await).len(),
        moved
    );
    // Her own access log page shows them like every other event.
    let herself = Client::login(&node, "patient").await;
    let (s, page) = herself.get("/ui/me/access-log").await;
    assert_eq!(s, StatusCode::OK);
    let page = page.as_str().unwrap().to_owned();
    assert!(
        page.contains("<td dir=\"auto\">system</td>") && page.contains("monitoring_alert"),
        "{page}"
    );
    let (_, coord) = coordinator.get("/api/v1/monitoring/alerts?open=true").await;
    let high = coord
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["level"] == "high")
        .unwrap()
        .clone();
    assert_eq!(high["tier"], 2, "{high}");
    assert_eq!(high["tier_name"], "medical_team");
    assert_eq!(high["needs_me"], true);
    let (s, page) = coordinator.get("/ui/monitoring/alerts").await;
    assert_eq!(s, StatusCode::OK);
    let page = page.as_str().unwrap().to_owned();
    assert!(
        page.contains("class=\"needs-me\""),
        "escalated alert marked for the coordinator"
    );
    assert!(
        page.contains("<td class=\"escalated\">"),
        "the tier cell is marked as escalated"
    );

    // Acknowledgement stops it; twice is a conflict; another hospital cannot.
    let id = high["id"].as_i64().unwrap();
    let (s, b) = wang
        .post(&format!("/api/v1/monitoring/alerts/{id}/ack"), json!({}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    let (s, acked) = coordinator
        .post(&format!("/api/v1/monitoring/alerts/{id}/ack"), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{acked}");
    assert!(acked["acknowledged_by"]
        .as_str()
        .unwrap()
        .contains(&coordinator.id()));
    let (s, b) = aliyev
        .post(&format!("/api/v1/monitoring/alerts/{id}/ack"), json!({}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(b["error"], "error-monitoring-acknowledged");
    let (s, _) = aliyev
        .post("/api/v1/monitoring/alerts/999999/ack", json!({}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let later = monitor::escalate_now(&state, chrono::Utc::now() + chrono::Duration::hours(2))
        .await
        .unwrap();
    let (_, all) = aliyev.get("/api/v1/monitoring/alerts").await;
    let after = all
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == id)
        .unwrap()
        .clone();
    assert_eq!(
        after["tier"], 2,
        "an acknowledged alert does not escalate ({later} others did)"
    );

    // Pages: the ward with risk colours, the patient's chart and tables; refused by scope for another hospital.
    let (s, page) = aliyev.get("/ui/monitoring").await;
    assert_eq!(s, StatusCode::OK);
    let page = page.as_str().unwrap().to_owned();
    assert!(
        page.contains(&format!("data-patient=\"{nurlanova}\" data-risk=\"high\"")),
        "{page}"
    );
    assert!(page.contains(&format!("data-patient=\"{serikbayev}\" data-risk=\"low\"")));
    assert!(
        page.contains("--mqtt"),
        "the ingest is off and the page says how to turn it on"
    );
    let (s, page) = aliyev
        .get(&format!("/ui/monitoring/patients/{nurlanova}"))
        .await;
    assert_eq!(s, StatusCode::OK);
    let page = page.as_str().unwrap().to_owned();
    assert!(
        page.contains("<svg") && page.matches("<polyline").count() >= 6,
        "trend chart"
    );
    assert!(page.contains("demo-oximeter-02"));
    let form = format!("action=\"/ui/monitoring/patients/{nurlanova}/devices\"");
    assert!(page.contains(&form), "the home clinician may register");
    assert!(page.contains("Динамика"), "in the user's language (ru)");
    let (s, page) = coordinator
        .get(&format!("/ui/monitoring/patients/{nurlanova}"))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        !page.as_str().unwrap().contains(&form),
        "a coordinator of another institution may not"
    );
    let (s, _) = wang
        .get(&format!("/ui/monitoring/patients/{nurlanova}"))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // The patient (Aigerim's own account) sees her readings and alerts, read-only.
    let (s, page) = herself
        .get(&format!("/ui/monitoring/patients/{nurlanova}"))
        .await;
    assert_eq!(s, StatusCode::OK);
    let page = page.as_str().unwrap().to_owned();
    assert!(page.contains("<svg") && page.contains("data-alert="));
    assert!(
        !page.contains("/ack\""),
        "no acknowledge button for the patient"
    );
    assert!(!page.contains(&form));
    let (s, _) = herself.get(&obs_path).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = herself.get("/api/v1/monitoring/alerts").await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // Every read was audited against the patient.
    let log = access_log(&aliyev, &nurlanova).await;
    assert_eq!(
        count_events(&log, "monitoring_observations", "read"),
        3,
        "{log:?}"
    );
    assert!(count_events(&log, "monitoring", "read") >= 2);
    assert!(count_events(&log, "monitoring", "search") >= 2);
    assert!(count_events(&log, "monitoring_alerts", "read") >= 3);
    // The acknowledgement is an event by the coordinator who made it; the escalations are the system's.
    let acks: Vec<&Value> = log
        .iter()
        .filter(|r| {
            r["event"]["entity_type"] == "monitoring_alert"
                && r["event"]["action"] == "update"
                && r["event"]["detail"] == "acknowledged"
        })
        .collect();
    assert_eq!(acks.len(), 1, "{log:?}");
    assert_eq!(acks[0]["event"]["actor_user"], coordinator.id().as_str());
    assert_eq!(acks[0]["event"]["entity_id"], id.to_string());
    assert_eq!(
        count_events(&log, "monitoring_alert", "update"),
        1 + escalations(&log).len()
    );
    assert_eq!(escalations(&log).len(), moved + later);
    assert_eq!(count_events(&log, "monitoring_device", "create"), 2);
}

/// Percent-encode a query value (RFC 3339 times carry `+` and `:`).
fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------------------------
// over MQTT

fn mqtt_enabled() -> bool {
    if std::env::var("CARAVAN_TEST_MQTT").as_deref() == Ok("1") {
        true
    } else {
        eprintln!("CARAVAN_TEST_MQTT not set; skipping the MQTT test");
        false
    }
}

/// Whether the broker accepts a connection with these credentials (a fresh client id each time, so an existing
/// session is not taken over).
async fn connects(port: u16, user: &str, password: &str) -> bool {
    use rumqttc::{AsyncClient, ConnectReturnCode, Event, MqttOptions, Packet};
    let id = format!("probe-{}", uuid::Uuid::new_v4().simple());
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_credentials(user, password);
    let (c, mut ev) = AsyncClient::new(o, 10);
    let first = tokio::time::timeout(Duration::from_secs(5), ev.poll()).await;
    let ok = matches!(first, Ok(Ok(Event::Incoming(Packet::ConnAck(ref a)))) if a.code == ConnectReturnCode::Success);
    if ok {
        c.disconnect().await.ok();
        let _ = tokio::time::timeout(Duration::from_secs(1), ev.poll()).await;
    }
    ok
}

/// Poll until the broker accepts (`true`) or refuses (`false`) these credentials; the broker applies the node's
/// SIGHUP asynchronously, and without it the state would never change.
async fn until_broker(
    port: u16,
    user: &str,
    password: &str,
    accepted: bool,
    log: impl Fn() -> String,
) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while connects(port, user, password).await != accepted {
        assert!(
            Instant::now() < deadline,
            "{user} still {} by the broker: {}",
            if accepted { "refused" } else { "accepted" },
            log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The broker runs before any device exists. A device registered afterwards connects and publishes without a
/// restart of the broker (the node rewrote its password file and ACL and sent it SIGHUP, `--mqtt-broker-pid-file`);
/// a rotated password replaces the old one and an unbound device is refused from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_published_by_a_registered_device_reach_the_node() {
    use monitoring::broker::{free_port, MosquittoConfig, MosquittoProcess};
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

    if !mqtt_enabled() {
        return;
    }
    let port = free_port().unwrap();
    let run = tempfile::tempdir().unwrap();
    let pid_file = run.path().join("mosquitto.pid");
    let args = MonitorArgs {
        mqtt: Some(format!("mqtt://127.0.0.1:{port}")),
        mqtt_user: "caravan-ingest".into(),
        mqtt_password: Some("ingest-secret-0123".into()),
        mqtt_client_id: format!("node-test-{port}"),
        mqtt_broker_pid_file: Some(pid_file.clone()),
    };
    let (node, _state) = start_full(config(), None, Some(args)).await;
    let aliyev = Client::login(&node, "dr.aliyev").await;
    let admin = Client::login(&node, "admin").await;
    let abenova = patient_id(&aliyev, "Abenova").await;
    // The node wrote the files at start but no broker ran yet: the failed reload is reported, nothing else failed.
    let (s, b) = admin.get("/api/v1/monitoring/broker").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["reload"]["pid_file"], pid_file.display().to_string());
    assert!(
        b["reload"]["last"]["error"]
            .as_str()
            .unwrap()
            .contains("pid file"),
        "{b}"
    );

    // Mosquitto with the node's own files (only the node's user in them yet), writing its pid file. Started as
    // root it would re-read the files on SIGHUP as user `mosquitto`, who cannot enter the test's private folders.
    let broker_dir = node.dir.path().join("monitoring-broker");
    let mut cfg = MosquittoConfig::new(port);
    cfg.password_file = Some(broker_dir.join("passwd"));
    cfg.acl_file = Some(broker_dir.join("acl"));
    cfg.log_file = Some(run.path().join("mosquitto.log"));
    cfg.pid_file = Some(pid_file.clone());
    cfg.user = Some("root".into());
    let broker = MosquittoProcess::start(run.path(), &cfg).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pid_file.exists() {
        assert!(
            Instant::now() < deadline,
            "no pid file: {}",
            broker.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid: i64 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, ward) = aliyev.get("/api/v1/monitoring/patients").await;
        if ward["ingest"] == "subscribed" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "ingest never subscribed: {}",
            broker.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Registered while the broker runs: the node signals it, and the new password is accepted without a restart.
    let (s, cred) = aliyev
        .post(
            &format!("/api/v1/monitoring/patients/{abenova}/devices"),
            json!({ "device_id": "ox-mqtt-1", "kind": "pulse_oximeter" }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{cred}");
    let (_, b) = admin.get("/api/v1/monitoring/broker").await;
    assert_eq!(b["reload"]["last"]["pid"], pid, "{b}");
    assert!(b["reload"]["last"]["error"].is_null(), "{b}");
    until_broker(
        port,
        "ox-mqtt-1",
        cred["password"].as_str().unwrap(),
        true,
        || broker.log_tail(),
    )
    .await;

    // A wrong password is refused by the broker.
    let mut bad = MqttOptions::new("intruder", "127.0.0.1", port);
    bad.set_credentials("ox-mqtt-1", "wrong-password");
    let (_c, mut ev) = AsyncClient::new(bad, 10);
    let first = tokio::time::timeout(Duration::from_secs(10), ev.poll())
        .await
        .unwrap();
    assert!(
        !matches!(first, Ok(Event::Incoming(Packet::ConnAck(ref a))) if a.code == rumqttc::ConnectReturnCode::Success),
        "{first:?}"
    );

    let mut o = MqttOptions::new("ox-mqtt-1", "127.0.0.1", port);
    o.set_credentials("ox-mqtt-1", cred["password"].as_str().unwrap());
    let (client, mut ev) = AsyncClient::new(o, 100);
    let acked = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let a = acked.clone();
    let events = tokio::spawn(async move {
        while let Ok(e) = ev.poll().await {
            if let Event::Incoming(Packet::PubAck(_)) = e {
                a.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
    });
    let topic = "caravan/v1/devices/ox-mqtt-1/readings";
    let t0 = chrono::Utc::now() - chrono::Duration::seconds(30);
    let mut sent = 0;
    for seq in 1..=3u64 {
        let payload = json!({
            "device_id": "ox-mqtt-1", "message_id": format!("m-{seq}"), "seq": seq,
            "timestamp": (t0 + chrono::Duration::seconds(seq as i64 * 5)).to_rfc3339(),
            "readings": [{"kind": "spo2", "value": 95 - seq}, {"kind": "heart_rate", "value": 80 + seq}]
        });
        client
            .publish(topic, QoS::AtLeastOnce, false, payload.to_string())
            .await
            .unwrap();
        sent += 1;
    }
    // A retry of message 3 (stored once) and a malformed payload (quarantined, not stored).
    let retry = json!({
        "device_id": "ox-mqtt-1", "message_id": "m-3", "seq": 3,
        "timestamp": (t0 + chrono::Duration::seconds(15)).to_rfc3339(),
        "readings": [{"kind": "spo2", "value": 92}, {"kind": "heart_rate", "value": 83}]
    });
    client
        .publish(topic, QoS::AtLeastOnce, false, retry.to_string())
        .await
        .unwrap();
    client
        .publish(
            topic,
            QoS::AtLeastOnce,
            false,
            r#"{"device_id":"ox-mqtt-1","readings":"#,
        )
        .await
        .unwrap();
    sent += 2;
    let deadline = Instant::now() + Duration::from_secs(20);
    while acked.load(std::sync::atomic::Ordering::SeqCst) < sent {
        assert!(Instant::now() < deadline, "broker did not acknowledge");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let obs_path = format!("/api/v1/monitoring/patients/{abenova}/observations");
    let deadline = Instant::now() + Duration::from_secs(20);
    let obs = loop {
        let (_, obs) = aliyev.get(&obs_path).await;
        if obs.as_array().map_or(0, Vec::len) >= 6 {
            break obs;
        }
        assert!(Instant::now() < deadline, "readings never stored: {obs}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Give a duplicate the chance to show up, then check: 3 messages × 2 readings, once each.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, obs2) = aliyev.get(&obs_path).await;
    assert_eq!(obs2.as_array().unwrap().len(), 6, "{obs2}");
    let spo2: Vec<&str> = obs
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["kind"] == "spo2")
        .map(|o| o["value"].as_str().unwrap())
        .collect();
    assert_eq!(spo2, ["92", "93", "94"]);
    let (_, d) = aliyev.get("/api/v1/monitoring/devices/ox-mqtt-1").await;
    assert_eq!(d["last_seq"], 3, "{d}");
    let (_, ward) = aliyev.get("/api/v1/monitoring/patients").await;
    let row = &ward["patients"][0];
    assert_eq!(
        row["news2"]["complete"], false,
        "a pulse oximeter gives a partial set: {row}"
    );
    // SpO2 92 on scale 1 scores 2, pulse 83 scores 0: a lower bound of 2.
    assert_eq!(row["news2"]["total"], 2);
    client.disconnect().await.ok();
    events.abort();

    // A rotated password replaces the old one in the running broker.
    let (s, rotated) = aliyev
        .post(
            "/api/v1/monitoring/devices/ox-mqtt-1/credentials",
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{rotated}");
    let new_password = rotated["password"].as_str().unwrap().to_owned();
    until_broker(port, "ox-mqtt-1", &new_password, true, || broker.log_tail()).await;
    assert!(!connects(port, "ox-mqtt-1", cred["password"].as_str().unwrap()).await);
    // Unbound: refused from then on, still without a restart (the broker process is the same).
    let (s, d) = aliyev
        .send(Method::DELETE, "/api/v1/monitoring/devices/ox-mqtt-1", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    until_broker(port, "ox-mqtt-1", &new_password, false, || {
        broker.log_tail()
    })
    .await;
    let (_, b) = admin.get("/api/v1/monitoring/broker").await;
    assert_eq!(b["reload"]["last"]["pid"], pid, "{b}");
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        pid.to_string(),
        "the same broker process throughout"
    );
    drop(broker);
}
