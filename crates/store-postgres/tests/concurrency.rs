//! Several writers at once: the audit chain stays one linear chain, and optimistic concurrency lets exactly one
//! of several racing updates win. Opt-in: set `CARAVAN_TEST_PG`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use caravan_domain::audit::audit_time;
use caravan_domain::*;
use caravan_store::{Store, StoreError};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use std::sync::Arc;

fn read_event(patient: PatientId, entity: String, at: DateTime<Utc>) -> AuditEvent {
    AuditEvent {
        at,
        actor_user: Some(UserId::new()),
        actor_name: "Dr Concurrent".into(),
        actor_institution: Some(InstitutionId::new()),
        actor_role: Some(Role::Consultant),
        action: AuditAction::Read,
        entity_type: "patient".into(),
        entity_id: entity,
        patient_id: Some(patient),
        purpose: "consultation".into(),
        detail: "test".into(),
        subjects: Vec::new(),
    }
}

const TASKS: usize = 8;
const BATCHES_PER_TASK: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_concurrent_writers_leave_one_verifiable_chain() {
    let Some(url) = common::server_url("eight_concurrent_writers_leave_one_verifiable_chain")
    else {
        return;
    };
    common::with_fresh_database(&url, |db| async move {
        // Two stores with their own pools stand for two node processes sharing the database: the head lock is
        // taken in the database, so it serialises them exactly as it serialises tasks of one process.
        let a = Arc::new(common::store(&db.options, 4).await);
        let b = Arc::new(common::store(&db.options, 4).await);
        let started = std::time::Instant::now();
        let mut tasks = Vec::new();
        for t in 0..TASKS {
            let store = if t % 2 == 0 { a.clone() } else { b.clone() };
            tasks.push(tokio::spawn(async move {
                let patient = PatientId::new();
                let mut written: Vec<String> = Vec::new();
                for i in 0..BATCHES_PER_TASK {
                    // Batches of 1..=3 events, so that multi-event transactions interleave with single ones.
                    let n = 1 + (t + i) % 3;
                    let ids: Vec<String> = (0..n).map(|k| format!("t{t}-b{i}-e{k}")).collect();
                    let events = ids
                        .iter()
                        .map(|id| read_event(patient, id.clone(), Utc::now()))
                        .collect();
                    store.append_audit(events).await.unwrap();
                    written.extend(ids);
                }
                (patient, written)
            }));
        }
        let mut expected = 0usize;
        let mut per_patient = Vec::new();
        for t in tasks {
            let (patient, written) = t.await.unwrap();
            expected += written.len();
            per_patient.push((patient, written));
        }
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "{TASKS} writers, two pools: {} audited transactions, {expected} events in {secs:.2} s \
             ({:.0} transactions/s)",
            TASKS * BATCHES_PER_TASK,
            (TASKS * BATCHES_PER_TASK) as f64 / secs
        );
        let verified = caravan_store::verify_audit_chain(a.as_ref())
            .await
            .unwrap()
            .expect("the chain written by concurrent writers must verify");
        assert_eq!(verified as usize, expected);
        let all = a.audit_page(0, 1_000_000).await.unwrap();
        assert_eq!(
            all.iter().map(|r| r.seq).collect::<Vec<_>>(),
            (1..=expected as i64).collect::<Vec<_>>(),
            "sequence numbers are gapless"
        );
        for (patient, written) in per_patient {
            // The access log is newest first; oldest first it must be exactly what the writer wrote, in order.
            let log = b.audit_for_patient(patient, 1_000).await.unwrap();
            let in_order: Vec<String> = log.into_iter().rev().map(|r| r.event.entity_id).collect();
            assert_eq!(in_order, written);
        }
        a.close().await;
        b.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_updates_of_one_case_let_exactly_one_win() {
    let Some(url) = common::server_url("racing_updates_of_one_case_let_exactly_one_win") else {
        return;
    };
    common::with_fresh_database(&url, |db| async move {
        let store = Arc::new(common::store(&db.options, 8).await);
        let w = caravan_store::conformance::World::seed(store.as_ref()).await;
        let now = Utc::now();
        let c = Consultation::draft(
            w.hospital_a.id,
            w.referrer_a.id,
            w.patient_a.id,
            "q".into(),
            String::new(),
            "cardiology".into(),
            Urgency::Routine,
            vec![],
            now,
        );
        store.insert_consultation(&c, vec![]).await.unwrap();
        let before = store.audit_page(0, 100_000).await.unwrap().len();
        let actor = Actor::from(&w.referrer_a);
        let mut racers = Vec::new();
        for r in 0..TASKS {
            let store = store.clone();
            let mut mine = c.clone();
            let actor = actor.clone();
            let referrer = w.referrer_a.clone();
            racers.push(tokio::spawn(async move {
                let event = if r % 2 == 0 {
                    ConsultationEvent::Submit { consent: true }
                } else {
                    ConsultationEvent::Cancel {
                        reason: format!("racer {r}"),
                    }
                };
                mine.apply(&actor, &event, now, &SlaPolicy::default())
                    .unwrap();
                let audit = vec![AuditEvent {
                    at: Utc::now(),
                    actor_user: Some(referrer.id),
                    actor_name: referrer.display_name.clone(),
                    actor_institution: Some(referrer.institution_id),
                    actor_role: Some(referrer.role),
                    action: AuditAction::Update,
                    entity_type: "consultation".into(),
                    entity_id: mine.id.to_string(),
                    patient_id: Some(mine.patient_id),
                    purpose: "consultation".into(),
                    detail: format!("racer {r}"),
                    subjects: Vec::new(),
                }];
                (mine.state, store.update_consultation(&mine, 0, audit).await)
            }));
        }
        let mut winners = Vec::new();
        for r in racers {
            match r.await.unwrap() {
                (state, Ok(())) => winners.push(state),
                (_, Err(StoreError::Conflict)) => {}
                (_, Err(e)) => panic!("a racing update failed with {e}, not Conflict"),
            }
        }
        assert_eq!(winners.len(), 1, "exactly one racing update wins");
        let stored = store.get_consultation(&actor, c.id).await.unwrap();
        assert_eq!(stored.state, winners[0]);
        assert_eq!(stored.version, 1);
        let after = store.audit_page(0, 100_000).await.unwrap();
        assert_eq!(
            after.len(),
            before + 1,
            "only the winner's audit event is kept"
        );
        assert_eq!(
            caravan_domain::audit::verify_chain(&after).unwrap() as usize,
            after.len()
        );
        store.close().await;
    })
    .await;
}

/// Instants whose stored form must hash exactly as written: PostgreSQL keeps microseconds, the chain hashes
/// microseconds, and nanoseconds are truncated before hashing. Pre-2000 and pre-1970 instants check the sign
/// handling around PostgreSQL's and Unix's epochs.
#[tokio::test]
async fn audit_instants_round_trip_exactly() {
    let Some(url) = common::server_url("audit_instants_round_trip_exactly") else {
        return;
    };
    let micros = |y, mo, d, h, mi, s, us: u32| {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
            + chrono::Duration::microseconds(i64::from(us))
    };
    let nanos = |y, mo, d, h, mi, s, ns: u32| {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
            + chrono::Duration::nanoseconds(i64::from(ns))
    };
    // (input instant, what must be stored and hashed)
    let table: Vec<(DateTime<Utc>, DateTime<Utc>)> = vec![
        (
            micros(2026, 3, 2, 9, 0, 0, 0),
            micros(2026, 3, 2, 9, 0, 0, 0),
        ),
        (
            micros(2026, 3, 2, 9, 0, 0, 123_456),
            micros(2026, 3, 2, 9, 0, 0, 123_456),
        ),
        (
            nanos(2026, 3, 2, 9, 0, 0, 123_456_789),
            micros(2026, 3, 2, 9, 0, 0, 123_456),
        ),
        (
            micros(2000, 1, 1, 0, 0, 0, 0),
            micros(2000, 1, 1, 0, 0, 0, 0),
        ),
        (
            micros(1999, 12, 31, 23, 59, 59, 999_999),
            micros(1999, 12, 31, 23, 59, 59, 999_999),
        ),
        (
            micros(1969, 12, 31, 23, 59, 59, 1),
            micros(1969, 12, 31, 23, 59, 59, 1),
        ),
        (
            micros(2099, 12, 31, 23, 59, 59, 999_999),
            micros(2099, 12, 31, 23, 59, 59, 999_999),
        ),
    ];
    common::with_fresh_database(&url, move |db| async move {
        let store = common::store(&db.options, 2).await;
        let p = PatientId::new();
        let events = table
            .iter()
            .enumerate()
            .map(|(i, (at, _))| read_event(p, format!("e{i}"), *at))
            .collect();
        store.append_audit(events).await.unwrap();
        let stored = store.audit_page(0, 100).await.unwrap();
        assert_eq!(stored.len(), table.len());
        for (r, (input, expected)) in stored.iter().zip(&table) {
            assert_eq!(
                r.event.at, *expected,
                "instant {input} stored as {}",
                r.event.at
            );
            assert_eq!(audit_time(*input), *expected);
        }
        assert_eq!(
            caravan_store::verify_audit_chain(&store)
                .await
                .unwrap()
                .unwrap() as usize,
            table.len()
        );
        store.close().await;
    })
    .await;
}

/// Values a node may hold that a naive mapping would mangle: non-Latin names, an empty optional, dates at the
/// edges of the calendar, and a name search that must match case-insensitively across scripts.
#[tokio::test]
async fn patients_round_trip_and_search_across_scripts() {
    let Some(url) = common::server_url("patients_round_trip_and_search_across_scripts") else {
        return;
    };
    common::with_fresh_database(&url, |db| async move {
        let store = common::store(&db.options, 2).await;
        let w = caravan_store::conformance::World::seed(&store).await;
        let actor = Actor::from(&w.referrer_a);
        // (given, family, birth date, national id, a search that must find the patient)
        let table = [
            (
                "Айгерим",
                "Нурланова",
                (1970, 5, 17),
                Some("870517400123"),
                "нурлан",
            ),
            ("Fatima", "Al-Zahra فاطمة", (1901, 1, 1), None, "FATIMA"),
            ("明", "李", (2024, 2, 29), Some(""), "李"),
            (
                "Zoë",
                "O'Brien",
                (1999, 12, 31),
                Some("x'; DROP TABLE patients; --"),
                "o'brien",
            ),
        ];
        for (given, family, (y, m, d), nid, query) in table {
            let p = Patient {
                id: PatientId::new(),
                institution_id: w.hospital_a.id,
                given_name: given.into(),
                family_name: family.into(),
                birth_date: NaiveDate::from_ymd_opt(y, m, d).unwrap(),
                sex: Sex::Other,
                national_id: nid.map(str::to_owned),
                languages: vec!["kk".into(), "ar".into()],
            };
            store.insert_patient(&p, vec![]).await.unwrap();
            assert_eq!(store.get_patient(&actor, p.id).await.unwrap(), p);
            let found = store
                .list_patients(
                    &actor,
                    &caravan_store::PatientFilter {
                        name: Some(query.into()),
                        birth_date: Some(p.birth_date),
                        limit: None,
                    },
                )
                .await
                .unwrap();
            assert_eq!(
                found.iter().map(|f| f.id).collect::<Vec<_>>(),
                vec![p.id],
                "search {query:?}"
            );
            assert!(matches!(
                store.insert_patient(&p, vec![]).await,
                Err(StoreError::Duplicate(_))
            ));
        }
        store.close().await;
    })
    .await;
}
