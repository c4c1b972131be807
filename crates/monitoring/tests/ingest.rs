//! The ingest's batch processing against a real SQLite file, without a broker: de-duplication, gaps, quarantine
//! reasons, FHIR rows, alerts, escalation and acknowledgement, restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{Duration, Utc};
use monitoring::alerts::AlertPolicy;
use monitoring::ingest::{Incoming, Ingestor};
use monitoring::model::{topic_for, Device, DeviceId, DeviceKind, Message, PatientRef, Reading};
use monitoring::news2::{Acvpu, Spo2Scale};
use monitoring::store::{Durability, Store};
use sqlx::Row;

fn dev(s: &str) -> DeviceId {
    DeviceId::new(s).unwrap()
}

fn full_set(rr: f64, spo2: f64, pulse: f64) -> Vec<Reading> {
    vec![
        Reading::RespiratoryRate(rr),
        Reading::Spo2(spo2),
        Reading::OxygenFlow(0.0),
        Reading::BloodPressure {
            systolic: 125.0,
            diastolic: 80.0,
        },
        Reading::HeartRate(pulse),
        Reading::Consciousness(Acvpu::Alert),
        Reading::Temperature(37.0),
    ]
}

fn incoming(topic_device: &str, m: &Message) -> Incoming {
    Incoming {
        topic: topic_for(&dev(topic_device)),
        payload: m.to_json(),
        received_at: Utc::now(),
    }
}

fn msg(device: &str, seq: u64, readings: Vec<Reading>) -> Message {
    Message {
        device_id: dev(device),
        message_id: format!("m{seq}"),
        seq,
        timestamp: Utc::now(),
        readings,
    }
}

async fn setup(dir: &std::path::Path) -> Store {
    let store = Store::open(&dir.join("m.db"), Durability::Normal)
        .await
        .unwrap();
    for (d, p, scale) in [
        ("ox-1", Some("pat-1"), Spo2Scale::Scale1),
        ("robot-2", Some("pat-2"), Spo2Scale::Scale2),
    ] {
        let patient = p.map(|p| PatientRef::new(p).unwrap());
        if let Some(p) = &patient {
            store.upsert_patient(p, scale).await.unwrap();
        }
        store
            .register_device(
                &Device {
                    id: dev(d),
                    kind: DeviceKind::WardRobot,
                    patient,
                },
                None,
            )
            .await
            .unwrap();
    }
    store
        .register_device(
            &Device {
                id: dev("cuff-unbound"),
                kind: DeviceKind::BpCuff,
                patient: None,
            },
            None,
        )
        .await
        .unwrap();
    store
}

#[tokio::test]
async fn dedup_gaps_and_quarantine_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let store = setup(dir.path()).await;
    let mut ing = Ingestor::open(store.clone(), AlertPolicy::default())
        .await
        .unwrap();

    let normal = full_set(16.0, 97.0, 70.0);
    let m1 = msg("ox-1", 1, normal.clone());
    let m2 = msg("ox-1", 2, normal.clone());
    let m5 = msg("ox-1", 5, normal.clone());
    let batch1 = vec![
        incoming("ox-1", &m1),
        incoming("ox-1", &m1), // duplicate inside the batch
        incoming("ox-1", &m2),
        incoming("ox-1", &m5), // gap: 3 and 4 missing
    ];
    let r = ing.process(&batch1).await.unwrap();
    assert_eq!((r.stored_messages, r.duplicates, r.gaps), (3, 1, 1));
    assert_eq!(r.stored_observations, 21);

    let mut bad_spo2 = msg("ox-1", 6, vec![Reading::Spo2(97.0)]).to_json();
    let s = String::from_utf8(bad_spo2.clone())
        .unwrap()
        .replace("\"value\":97", "\"value\":140");
    bad_spo2 = s.into_bytes();
    let now = Utc::now();
    let raw = |topic: String, payload: Vec<u8>| Incoming {
        topic,
        payload,
        received_at: now,
    };
    let future = Message {
        timestamp: Utc::now() + Duration::hours(1),
        ..msg("ox-1", 7, normal.clone())
    };
    let batch2 = vec![
        incoming("ox-1", &m2), // redelivered: duplicate against the database
        incoming("ox-1", &msg("ox-1", 3, normal.clone())), // late arrival
        raw(topic_for(&dev("ox-1")), b"{not json".to_vec()), // malformed
        raw(topic_for(&dev("ox-1")), bad_spo2), // implausible
        incoming("robot-2", &msg("ox-1", 8, normal.clone())), // payload says ox-1, topic says robot-2
        incoming("ghost", &msg("ghost", 1, normal.clone())),  // unknown
        incoming("cuff-unbound", &msg("cuff-unbound", 1, normal.clone())), // unbound
        raw("caravan/v1/devices/ox-1/other".into(), m1.to_json()), // bad topic
        incoming("ox-1", &future),                            // clock far ahead
    ];
    let r = ing.process(&batch2).await.unwrap();
    assert_eq!(
        (r.stored_messages, r.duplicates, r.quarantined, r.late),
        (1, 1, 7, 1)
    );

    let reasons = store.quarantine_reasons().await.unwrap();
    let codes: Vec<&str> = reasons.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(
        codes,
        [
            "bad_topic",
            "future_timestamp",
            "implausible",
            "malformed",
            "topic_mismatch",
            "unbound_device",
            "unknown_device"
        ]
    );
    let row =
        sqlx::query("SELECT reason, payload FROM quarantine WHERE reason_code = 'implausible'")
            .fetch_one(store.pool())
            .await
            .unwrap();
    let reason: String = row.get(0);
    let payload: Vec<u8> = row.get(1);
    assert!(reason.contains("spo2 140 %"), "{reason}");
    assert!(
        String::from_utf8(payload).unwrap().contains("140"),
        "payload kept"
    );

    let c = store.counts().await.unwrap();
    assert_eq!(
        (c.messages, c.observations, c.distinct_observations),
        (4, 28, 28)
    );
    assert_eq!((c.gaps, c.missing, c.late), (1, 2, 1));

    // Stored rows are FHIR Observations.
    let res: String = sqlx::query_scalar(
        "SELECT resource FROM observations WHERE kind = 'blood_pressure' LIMIT 1",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&res).unwrap();
    assert_eq!(v["resourceType"], "Observation");
    assert_eq!(v["code"]["coding"][0]["code"], "85354-9");
    assert_eq!(v["subject"]["reference"], "Patient/pat-1");

    // A restarted ingestor keeps the sequence state: seq 6 follows 5 without a new gap.
    drop(ing);
    let mut ing = Ingestor::open(store.clone(), AlertPolicy::default())
        .await
        .unwrap();
    let r = ing
        .process(&[incoming("ox-1", &msg("ox-1", 6, normal.clone()))])
        .await
        .unwrap();
    assert_eq!((r.stored_messages, r.gaps, r.late), (1, 0, 0));
    // And de-duplication is durable.
    let r = ing.process(&[incoming("ox-1", &m1)]).await.unwrap();
    assert_eq!((r.stored_messages, r.duplicates), (0, 1));
}

/// An escalation that the node could not record in its audit chain is undone exactly: the tier and its start come
/// back, its event is gone, and the next check escalates it again. An acknowledged alert is not undone.
#[tokio::test]
async fn an_escalation_is_undone_exactly_and_not_after_acknowledgement() {
    let dir = tempfile::tempdir().unwrap();
    let store = setup(dir.path()).await;
    let mut ing = Ingestor::open(store.clone(), AlertPolicy::default())
        .await
        .unwrap();
    ing.process(&[incoming(
        "ox-1",
        &msg("ox-1", 1, full_set(26.0, 91.0, 115.0)),
    )])
    .await
    .unwrap();
    let id: i64 = sqlx::query_scalar("SELECT MAX(id) FROM alerts")
        .fetch_one(store.pool())
        .await
        .unwrap();
    let before = store.alert(id).await.unwrap().unwrap();
    assert_eq!(before.tier, 1);
    let at = Utc::now() + Duration::minutes(6);
    assert!(store.escalate(id, 2, at).await.unwrap());
    // Not the escalation made (another time or tier): nothing changes.
    assert!(!store
        .undo_escalation(id, 2, at + Duration::seconds(1), 1, before.tier_since)
        .await
        .unwrap());
    assert!(!store
        .undo_escalation(id, 3, at, 1, before.tier_since)
        .await
        .unwrap());
    assert_eq!(store.alert(id).await.unwrap().unwrap().tier, 2);
    assert!(store
        .undo_escalation(id, 2, at, 1, before.tier_since)
        .await
        .unwrap());
    let after = store.alert(id).await.unwrap().unwrap();
    assert_eq!((after.tier, after.tier_since), (1, before.tier_since));
    let events: Vec<String> = sqlx::query_scalar("SELECT event FROM alert_events ORDER BY id")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert_eq!(events, ["raised"]);
    // The next check escalates it again; once acknowledged, an undo changes nothing.
    assert_eq!(ing.escalate_due(at).await.unwrap(), 1);
    let moved = store.alert(id).await.unwrap().unwrap();
    assert_eq!(moved.tier, 2);
    assert!(store.acknowledge(id, "nurse", at).await.unwrap());
    assert!(!store
        .undo_escalation(id, 2, moved.tier_since, 1, before.tier_since)
        .await
        .unwrap());
    assert_eq!(store.alert(id).await.unwrap().unwrap().tier, 2);
    // An acknowledgement the node could not audit is taken back: only the one made by that person at that time.
    assert!(!store
        .undo_acknowledgement(id, "nurse", at + Duration::seconds(1))
        .await
        .unwrap());
    assert!(!store.undo_acknowledgement(id, "doctor", at).await.unwrap());
    assert!(store
        .alert(id)
        .await
        .unwrap()
        .unwrap()
        .acknowledged
        .is_some());
    assert!(store.undo_acknowledgement(id, "nurse", at).await.unwrap());
    assert!(store
        .alert(id)
        .await
        .unwrap()
        .unwrap()
        .acknowledged
        .is_none());
    let events: Vec<String> = sqlx::query_scalar("SELECT event FROM alert_events ORDER BY id")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert!(!events.iter().any(|e| e == "acknowledged"), "{events:?}");
    // And it can be acknowledged again.
    assert!(store.acknowledge(id, "nurse", at).await.unwrap());
}

#[tokio::test]
async fn alerts_suppress_escalate_and_acknowledge() {
    let dir = tempfile::tempdir().unwrap();
    let store = setup(dir.path()).await;
    let mut ing = Ingestor::open(store.clone(), AlertPolicy::default())
        .await
        .unwrap();

    // pat-1: RR 26 (3) + SpO2 91 (3) + pulse 115 (2) = 8 → high.
    let r = ing
        .process(&[incoming(
            "ox-1",
            &msg("ox-1", 1, full_set(26.0, 91.0, 115.0)),
        )])
        .await
        .unwrap();
    assert_eq!(r.alerts, 1);
    // Same score again: suppressed.
    let r = ing
        .process(&[incoming(
            "ox-1",
            &msg("ox-1", 2, full_set(26.0, 91.0, 115.0)),
        )])
        .await
        .unwrap();
    assert_eq!(r.alerts, 0);
    // pat-2 is on scale 2: SpO2 89 % on air scores 0 there (it would be 3 on scale 1) → no alert.
    let r = ing
        .process(&[incoming(
            "robot-2",
            &msg("robot-2", 1, full_set(16.0, 89.0, 70.0)),
        )])
        .await
        .unwrap();
    assert_eq!(r.alerts, 0);

    let row = sqlx::query(
        "SELECT id, level, score, complete, tier, raised_at_ms - received_at_ms FROM alerts",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    let id: i64 = row.get(0);
    assert_eq!(row.get::<String, _>(1), "high");
    assert_eq!(row.get::<i64, _>(2), 8);
    assert!(row.get::<bool, _>(3));
    assert_eq!(row.get::<i64, _>(4), 1);
    assert!(row.get::<i64, _>(5) >= 0);

    // Not acknowledged within 5 minutes: tier 2, then tier 3, then no further.
    let now = Utc::now();
    assert_eq!(
        ing.escalate_due(now + Duration::minutes(4)).await.unwrap(),
        0
    );
    assert_eq!(
        ing.escalate_due(now + Duration::minutes(6)).await.unwrap(),
        1
    );
    assert_eq!(
        ing.escalate_due(now + Duration::minutes(8)).await.unwrap(),
        0
    );
    assert_eq!(
        ing.escalate_due(now + Duration::minutes(12)).await.unwrap(),
        1
    );
    assert_eq!(ing.escalate_due(now + Duration::hours(2)).await.unwrap(), 0);
    let tier: i64 = sqlx::query_scalar("SELECT tier FROM alerts WHERE id = ?")
        .bind(id)
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(tier, 3);

    // A second alert, acknowledged in time, does not escalate.
    let r = ing
        .process(&[incoming(
            "ox-1",
            &msg("ox-1", 3, full_set(30.0, 88.0, 135.0)),
        )])
        .await
        .unwrap();
    assert_eq!(r.alerts, 1, "score rose from 8 to 9");
    let id2: i64 = sqlx::query_scalar("SELECT MAX(id) FROM alerts")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(store
        .acknowledge(id2, "nurse-on-duty", Utc::now())
        .await
        .unwrap());
    assert!(!store
        .acknowledge(id2, "nurse-on-duty", Utc::now())
        .await
        .unwrap());
    assert_eq!(
        ing.escalate_due(Utc::now() + Duration::hours(1))
            .await
            .unwrap(),
        0
    );
    let events: Vec<String> = sqlx::query_scalar("SELECT event FROM alert_events ORDER BY id")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert_eq!(
        events,
        ["raised", "escalated", "escalated", "raised", "acknowledged"]
    );

    // After a restart the suppression state comes back from the database: the same score does not re-alert.
    drop(ing);
    let mut ing = Ingestor::open(store.clone(), AlertPolicy::default())
        .await
        .unwrap();
    let r = ing
        .process(&[incoming(
            "ox-1",
            &msg("ox-1", 4, full_set(30.0, 88.0, 135.0)),
        )])
        .await
        .unwrap();
    assert_eq!(r.alerts, 0);
}

#[tokio::test]
async fn readings_from_two_devices_of_one_patient_are_scored_together() {
    let dir = tempfile::tempdir().unwrap();
    let store = setup(dir.path()).await;
    let pat = PatientRef::new("pat-1").unwrap();
    store
        .register_device(
            &Device {
                id: dev("therm-1"),
                kind: DeviceKind::Thermometer,
                patient: Some(pat),
            },
            None,
        )
        .await
        .unwrap();
    let mut ing = Ingestor::open(store.clone(), AlertPolicy::default())
        .await
        .unwrap();
    // Oximeter: SpO2 93 (2) + pulse 95 (1) = 3: low, no alert.
    let r = ing
        .process(&[incoming(
            "ox-1",
            &msg(
                "ox-1",
                1,
                vec![Reading::Spo2(93.0), Reading::HeartRate(95.0)],
            ),
        )])
        .await
        .unwrap();
    assert_eq!(r.alerts, 0);
    // Thermometer: 39.5 (2) → the patient's set totals 5: medium, alert (partial set).
    let r = ing
        .process(&[incoming(
            "therm-1",
            &msg("therm-1", 1, vec![Reading::Temperature(39.5)]),
        )])
        .await
        .unwrap();
    assert_eq!(r.alerts, 1);
    let (level, complete): (String, bool) = sqlx::query_as("SELECT level, complete FROM alerts")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!((level.as_str(), complete), ("medium", false));
}
