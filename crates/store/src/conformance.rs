//! The story every storage backend must tell (after Atuin's `tests-database`): one suite, run by each backend's
//! tests against a fresh, empty store. Each check panics with a message when the backend misbehaves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::*;
use caravan_domain::audit::AuditRecord;
use chrono::{Duration, NaiveDate, TimeZone, Utc};

/// Run every conformance check against an empty store.
pub async fn run_all(store: &dyn Store) {
    let w = World::seed(store).await;
    scoping_of_patients(store, &w).await;
    consultation_lifecycle_and_scoping(store, &w).await;
    participants_follow_the_case(store, &w).await;
    optimistic_concurrency(store, &w).await;
    sessions_and_tokens(store, &w).await;
    duplicates_are_refused(store, &w).await;
    teams_for_routing(store, &w).await;
    concurrent_writes_fail_alone(store, &w).await;
    federation_records(store, &w).await;
    surveillance_records(store, &w).await;
    visits_booking_queue_and_scope(store, &w).await;
    case_studies(store, &w).await;
    rx_records(store, &w).await;
    audit_chain_holds(store).await;
    search_events_reach_each_subject(store).await;
}

pub struct World {
    pub hospital_a: Institution,
    pub hospital_b: Institution,
    pub center: Institution,
    pub referrer_a: User,
    pub referrer_b: User,
    pub consultant: User,
    pub coordinator: User,
    pub patient_a: Patient,
    pub patient_b: Patient,
}

fn event(
    actor: Option<&User>,
    action: AuditAction,
    etype: &str,
    id: String,
    patient: Option<PatientId>,
) -> AuditEvent {
    AuditEvent {
        at: Utc::now(),
        actor_user: actor.map(|u| u.id),
        actor_name: actor.map(|u| u.display_name.clone()).unwrap_or_default(),
        actor_institution: actor.map(|u| u.institution_id),
        actor_role: actor.map(|u| u.role),
        action,
        entity_type: etype.into(),
        entity_id: id,
        patient_id: patient,
        purpose: "test".into(),
        detail: String::new(),
        subjects: Vec::new(),
    }
}

fn institution(name: &str, level: InstitutionLevel, country: &str) -> Institution {
    Institution {
        id: InstitutionId::new(),
        name: name.into(),
        level,
        country: country.parse().unwrap(),
        parent: None,
        timezone: "UTC".into(),
    }
}

fn user(name: &str, inst: &Institution, role: Role) -> User {
    User {
        id: UserId::new(),
        username: name.into(),
        display_name: format!("Dr {name}"),
        institution_id: inst.id,
        role,
        patient_id: None,
        profile: (role == Role::Consultant).then(|| PractitionerProfile {
            specialties: vec!["cardiology".into()],
            languages: vec!["en".into(), "ru".into()],
            timezone: "Asia/Almaty".into(),
            hours: WorkingHours::default(),
            capacity: 5,
        }),
        locale: "en".into(),
        active: true,
    }
}

fn patient(inst: &Institution, family: &str) -> Patient {
    Patient {
        id: PatientId::new(),
        institution_id: inst.id,
        given_name: "Aigerim".into(),
        family_name: family.into(),
        birth_date: NaiveDate::from_ymd_opt(1970, 5, 17).unwrap(),
        sex: Sex::Female,
        national_id: Some("870517400123".into()),
        languages: vec!["kk".into(), "ru".into()],
    }
}

impl World {
    pub async fn seed(store: &dyn Store) -> World {
        let hospital_a = institution("Hospital A", InstitutionLevel::Hospital, "KZ");
        let hospital_b = institution("Hospital B", InstitutionLevel::Hospital, "KZ");
        let center = institution("National Center", InstitutionLevel::NationalCenter, "KZ");
        for i in [&hospital_a, &hospital_b, &center] {
            store.insert_institution(i, vec![]).await.unwrap();
        }
        let referrer_a = user("ref_a", &hospital_a, Role::Referrer);
        let referrer_b = user("ref_b", &hospital_b, Role::Referrer);
        let consultant = user("cons", &center, Role::Consultant);
        let coordinator = user("coord", &center, Role::Coordinator);
        for u in [&referrer_a, &referrer_b, &consultant, &coordinator] {
            store
                .insert_user(u, Some("$argon2id$fake"), vec![])
                .await
                .unwrap();
        }
        let patient_a = patient(&hospital_a, "Nurlanova");
        let patient_b = patient(&hospital_b, "Petrova");
        for p in [&patient_a, &patient_b] {
            store
                .insert_patient(
                    p,
                    vec![event(
                        None,
                        AuditAction::Create,
                        "patient",
                        p.id.to_string(),
                        Some(p.id),
                    )],
                )
                .await
                .unwrap();
        }
        World {
            hospital_a,
            hospital_b,
            center,
            referrer_a,
            referrer_b,
            consultant,
            coordinator,
            patient_a,
            patient_b,
        }
    }
}

async fn scoping_of_patients(store: &dyn Store, w: &World) {
    let a = Actor::from(&w.referrer_a);
    let b = Actor::from(&w.referrer_b);
    let c = Actor::from(&w.consultant);
    assert!(store.get_patient(&a, w.patient_a.id).await.is_ok());
    assert!(
        matches!(
            store.get_patient(&a, w.patient_b.id).await,
            Err(StoreError::NotFound(_))
        ),
        "a referrer must not see another hospital's patient"
    );
    let listed = store
        .list_patients(&b, &PatientFilter::default())
        .await
        .unwrap();
    assert_eq!(
        listed.iter().map(|p| p.id).collect::<Vec<_>>(),
        vec![w.patient_b.id]
    );
    assert!(
        store.get_patient(&c, w.patient_a.id).await.is_err(),
        "a consultant sees no patient before a case shares it"
    );
    let found = store
        .list_patients(
            &a,
            &PatientFilter {
                name: Some("nurlan".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        found.len(),
        1,
        "name search is case-insensitive on a substring"
    );
    // Case folding works in every script, not only ASCII (SQLite's lower() does not fold Cyrillic).
    let mut cyrillic = patient(&w.hospital_a, "АЛИЕВА");
    cyrillic.given_name = "Жанар".into();
    store
        .insert_patient(
            &cyrillic,
            vec![event(
                None,
                AuditAction::Create,
                "patient",
                cyrillic.id.to_string(),
                Some(cyrillic.id),
            )],
        )
        .await
        .unwrap();
    for needle in ["алиева", "жанар ал", "ЖАНАР"] {
        let found = store
            .list_patients(
                &a,
                &PatientFilter {
                    name: Some(needle.into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(
            found.iter().map(|p| p.id).collect::<Vec<_>>(),
            vec![cyrillic.id],
            "case-insensitive search for {needle:?}"
        );
    }
    let patient_actor = Actor {
        user_id: UserId::new(),
        institution_id: w.hospital_a.id,
        role: Role::Patient,
        patient_id: Some(w.patient_a.id),
    };
    assert!(store
        .get_patient(&patient_actor, w.patient_a.id)
        .await
        .is_ok());
    let admin = Actor {
        user_id: UserId::new(),
        institution_id: w.hospital_a.id,
        role: Role::Admin,
        patient_id: None,
    };
    assert!(
        store.get_patient(&admin, w.patient_a.id).await.is_err(),
        "administrators see no patient data"
    );
}

async fn consultation_lifecycle_and_scoping(store: &dyn Store, w: &World) {
    let a = Actor::from(&w.referrer_a);
    let b = Actor::from(&w.referrer_b);
    let cons = Actor::from(&w.consultant);
    let coord = Actor::from(&w.coordinator);
    let sla = SlaPolicy::default();
    let now = Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap();

    let consent = Consent {
        id: ConsentId::new(),
        patient_id: w.patient_a.id,
        scope: ConsentScope::Consultation,
        granted: true,
        recorded_by: w.referrer_a.id,
        recorded_at: now,
        note: String::new(),
    };
    store.insert_consent(&consent, vec![]).await.unwrap();
    assert!(consent_in_force(
        &store.consents(&a, w.patient_a.id).await.unwrap(),
        ConsentScope::Consultation
    ));
    assert!(store.consents(&b, w.patient_a.id).await.is_err());
    assert_eq!(
        store.get_consent(&a, consent.id).await.unwrap().id,
        consent.id
    );
    assert!(matches!(
        store.get_consent(&b, consent.id).await,
        Err(StoreError::NotFound(_))
    ));

    let mut c = Consultation::draft(
        w.hospital_a.id,
        w.referrer_a.id,
        w.patient_a.id,
        "ST elevation?".into(),
        "chest pain".into(),
        "cardiology".into(),
        Urgency::Urgent,
        vec!["ru".into()],
        now,
    );
    store.insert_consultation(&c, vec![]).await.unwrap();
    assert!(
        store.get_consultation(&cons, c.id).await.is_err(),
        "drafts are private to the referrer"
    );
    assert!(store.get_consultation(&coord, c.id).await.is_err());

    let v = c.version;
    c.apply(&a, &ConsultationEvent::Submit { consent: true }, now, &sla)
        .unwrap();
    store.update_consultation(&c, v, vec![]).await.unwrap();
    assert!(
        store.get_consultation(&coord, c.id).await.is_ok(),
        "coordinators see cases waiting for routing"
    );
    assert!(store.get_consultation(&cons, c.id).await.is_err());

    let candidates = store.routing_candidates("cardiology").await.unwrap();
    assert_eq!(candidates.len(), 1);
    assert_eq!(candidates[0].user_id, w.consultant.id);
    assert_eq!(candidates[0].open_cases, 0);

    let v = c.version;
    c.apply(
        &a,
        &ConsultationEvent::Assign {
            consultant: w.consultant.id,
            automatic: true,
            team: None,
        },
        now,
        &sla,
    )
    .unwrap();
    store.update_consultation(&c, v, vec![]).await.unwrap();
    assert_eq!(
        store.routing_candidates("cardiology").await.unwrap()[0].open_cases,
        1
    );
    // The consultation now shares the patient with the consultant, and only with them.
    let got = store.get_consultation(&cons, c.id).await.unwrap();
    assert_eq!(got, c);
    assert!(store.get_patient(&cons, w.patient_a.id).await.is_ok());
    assert!(store.get_patient(&cons, w.patient_b.id).await.is_err());
    assert!(
        store.get_consultation(&b, c.id).await.is_err(),
        "another hospital never sees the case"
    );

    let mine = store
        .list_consultations(
            &cons,
            &ConsultationFilter {
                assigned_to: Some(w.consultant.id),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].patient_name, "Aigerim Nurlanova");
    assert!(store
        .list_consultations(&b, &ConsultationFilter::default())
        .await
        .unwrap()
        .is_empty());

    // Overdue: 24 h for urgent cases.
    let later = now + Duration::hours(25);
    let overdue = store
        .list_consultations(
            &coord,
            &ConsultationFilter {
                overdue_at: Some(later),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(overdue.len(), 1);
    assert_eq!(store.overdue_unescalated(later, 10).await.unwrap().len(), 1);
    assert!(store.overdue_unescalated(now, 10).await.unwrap().is_empty());

    let msg = Message {
        id: MessageId::new(),
        consultation_id: c.id,
        parent_id: None,
        author_id: w.referrer_a.id,
        author_name: w.referrer_a.display_name.clone(),
        body: "ECG attached".into(),
        created_at: now,
    };
    store.insert_message(&msg, vec![]).await.unwrap();
    let reply = Message {
        id: MessageId::new(),
        parent_id: Some(msg.id),
        author_id: w.consultant.id,
        body: "Seen".into(),
        created_at: now + Duration::seconds(1),
        ..msg.clone()
    };
    store.insert_message(&reply, vec![]).await.unwrap();
    let thread = store.list_messages(&a, c.id).await.unwrap();
    assert_eq!(thread.len(), 2);
    assert_eq!(thread[1].parent_id, Some(msg.id));
    assert_eq!(
        store.get_message(&cons, reply.id).await.unwrap().body,
        "Seen"
    );
    // Another hospital's referrer, not a participant, sees neither the thread nor a message by id.
    assert!(store.list_messages(&b, c.id).await.unwrap().is_empty());
    assert!(matches!(
        store.get_message(&b, msg.id).await,
        Err(StoreError::NotFound(_))
    ));

    let att = Attachment {
        id: AttachmentId::new(),
        consultation_id: c.id,
        filename: "ecg.pdf".into(),
        content_type: "application/pdf".into(),
        size: 10,
        sha256: "ab".repeat(32),
        blob_key: "blobs/ab".into(),
        uploaded_by: w.referrer_a.id,
        created_at: now,
    };
    store.insert_attachment(&att, vec![]).await.unwrap();
    assert_eq!(store.list_attachments(&a, c.id).await.unwrap().len(), 1);
    assert_eq!(
        store.get_attachment(&cons, att.id).await.unwrap().filename,
        "ecg.pdf"
    );
    assert!(store.list_attachments(&b, c.id).await.unwrap().is_empty());
    assert!(matches!(
        store.get_attachment(&b, att.id).await,
        Err(StoreError::NotFound(_))
    ));
    // The blob sweep's question is unscoped and answers each named key once.
    let same_bytes = Attachment {
        id: AttachmentId::new(),
        ..att.clone()
    };
    store.insert_attachment(&same_bytes, vec![]).await.unwrap();
    let asked = ["blobs/ab".to_owned(), "blobs/none".to_owned()];
    assert_eq!(
        store.attachment_blob_keys_in_use(&asked).await.unwrap(),
        vec!["blobs/ab".to_owned()]
    );
    assert!(store
        .attachment_blob_keys_in_use(&[])
        .await
        .unwrap()
        .is_empty());

    // A backend's one-trip case bundle says exactly what the single reads say, in the same order.
    for actor in [&a, &cons, &coord] {
        let bundle = store.case_bundle(actor, c.id).await.unwrap();
        let single = store.get_consultation(actor, c.id).await.unwrap();
        assert_eq!(
            serde_json::to_value(&bundle.consultation).unwrap(),
            serde_json::to_value(&single).unwrap()
        );
        assert_eq!(
            bundle.patient,
            store.get_patient(actor, single.patient_id).await.unwrap()
        );
        assert_eq!(
            serde_json::to_value(&bundle.messages).unwrap(),
            serde_json::to_value(store.list_messages(actor, c.id).await.unwrap()).unwrap()
        );
        assert_eq!(
            serde_json::to_value(&bundle.attachments).unwrap(),
            serde_json::to_value(store.list_attachments(actor, c.id).await.unwrap()).unwrap()
        );
        let mut ids = vec![single.referrer_id];
        ids.extend(single.assigned_to);
        ids.extend(single.panel.iter().map(|m| m.user_id));
        ids.sort();
        ids.dedup();
        assert_eq!(bundle.people, store.people(&ids).await.unwrap());
        assert_eq!(bundle.messages.len(), 2);
        assert_eq!(bundle.people.len(), 2);
        // The thread as text says the same as the parsed thread, in the same field names and order.
        let raw = store.case_bundle_raw(actor, c.id).await.unwrap();
        let thread: Vec<Message> = serde_json::from_str(raw.messages.get()).unwrap();
        assert_eq!(
            serde_json::to_value(&thread).unwrap(),
            serde_json::to_value(&bundle.messages).unwrap()
        );
        let keys = |v: serde_json::Value| -> Vec<Vec<String>> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|m| m.as_object().unwrap().keys().cloned().collect())
                .collect()
        };
        assert_eq!(
            keys(serde_json::from_str(raw.messages.get()).unwrap()),
            keys(serde_json::to_value(&bundle.messages).unwrap())
        );
        assert_eq!(raw.consultation.id, bundle.consultation.id);
        assert_eq!(raw.patient, bundle.patient);
        assert_eq!(raw.people, bundle.people);
        assert_eq!((bundle.messages_total, raw.messages_total), (2, 2));
    }
    // A thread longer than the window: the raw bundle holds its latest messages, in thread order, and the count
    // of all; the parsed bundle (the case page's) holds all of them.
    for i in 0..crate::THREAD_WINDOW {
        let m = Message {
            id: MessageId::new(),
            parent_id: None,
            body: format!("note {i}"),
            created_at: now + Duration::seconds(2 + i as i64),
            ..msg.clone()
        };
        store.insert_message(&m, vec![]).await.unwrap();
    }
    let total = crate::THREAD_WINDOW + 2;
    let whole = store.list_messages(&a, c.id).await.unwrap();
    assert_eq!(whole.len(), total);
    let full = store.case_bundle(&a, c.id).await.unwrap();
    assert_eq!((full.messages.len(), full.messages_total), (total, total));
    let raw = store.case_bundle_raw(&a, c.id).await.unwrap();
    assert_eq!(raw.messages_total, total);
    let latest: Vec<Message> = serde_json::from_str(raw.messages.get()).unwrap();
    assert_eq!(
        serde_json::to_value(&latest).unwrap(),
        serde_json::to_value(&whole[2..]).unwrap()
    );
    assert!(matches!(
        store.case_bundle(&b, c.id).await,
        Err(StoreError::NotFound(_))
    ));
}

/// A case's participants follow it (they are rewritten only where they change): the assignee sees the case, and
/// after declining no longer does; assigned again, they see it again.
async fn participants_follow_the_case(store: &dyn Store, w: &World) {
    let referrer = Actor::from(&w.referrer_b);
    let cons = Actor::from(&w.consultant);
    let sla = SlaPolicy::default();
    let now = Utc.with_ymd_and_hms(2026, 3, 3, 9, 0, 0).unwrap();
    let mut c = Consultation::draft(
        w.hospital_b.id,
        w.referrer_b.id,
        w.patient_b.id,
        "participants".into(),
        "history".into(),
        "cardiology".into(),
        Urgency::Routine,
        vec![],
        now,
    );
    store.insert_consultation(&c, vec![]).await.unwrap();
    let assign = ConsultationEvent::Assign {
        consultant: w.consultant.id,
        automatic: true,
        team: None,
    };
    let steps = [
        (
            &referrer,
            ConsultationEvent::Submit { consent: true },
            false,
        ),
        (&referrer, assign.clone(), true),
        (
            &cons,
            ConsultationEvent::Decline {
                reason: "on leave".into(),
            },
            false,
        ),
    ];
    for (actor, ev, consultant_sees) in steps {
        let v = c.version;
        c.apply(actor, &ev, now, &sla).unwrap();
        store.update_consultation(&c, v, vec![]).await.unwrap();
        assert_eq!(
            store.get_consultation(&cons, c.id).await.is_ok(),
            consultant_sees,
            "after {}",
            ev.name()
        );
        assert!(store.get_consultation(&referrer, c.id).await.is_ok());
    }
}

async fn teams_for_routing(store: &dyn Store, w: &World) {
    let team = Team {
        id: TeamId::new(),
        institution_id: w.center.id,
        name: "Heart team".into(),
        specialty: "cardiology".into(),
        lead_id: w.consultant.id,
        // A referrer may sit on a team, but routing only counts active consultants.
        member_ids: vec![w.referrer_b.id],
    };
    store
        .insert_team(
            &team,
            vec![event(
                None,
                AuditAction::Create,
                "team",
                team.id.to_string(),
                None,
            )],
        )
        .await
        .unwrap();
    assert_eq!(store.get_team(team.id).await.unwrap(), team);
    assert_eq!(
        store.list_teams(Some(w.center.id)).await.unwrap(),
        vec![team.clone()]
    );
    assert!(store
        .list_teams(Some(w.hospital_a.id))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.list_teams(None).await.unwrap().len(), 1);
    let (teams, people) = store.routing_teams("cardiology").await.unwrap();
    assert_eq!(teams, vec![team.clone()]);
    assert_eq!(
        people.iter().map(|c| c.user_id).collect::<Vec<_>>(),
        vec![w.consultant.id]
    );
    let named = store
        .people(&[w.referrer_a.id, UserId::new(), w.consultant.id])
        .await
        .unwrap();
    let mut want = vec![
        (
            w.referrer_a.id,
            w.referrer_a.display_name.clone(),
            w.hospital_a.name.clone(),
        ),
        (
            w.consultant.id,
            w.consultant.display_name.clone(),
            w.center.name.clone(),
        ),
    ];
    want.sort();
    assert_eq!(
        named
            .iter()
            .map(|p| (
                p.user_id,
                p.display_name.clone(),
                p.institution_name.clone()
            ))
            .collect::<Vec<_>>(),
        want,
        "unknown ids are left out"
    );
    assert!(store.people(&[]).await.unwrap().is_empty());
    let (teams, people) = store.routing_teams("neurology").await.unwrap();
    assert!(teams.is_empty() && people.is_empty());
    assert!(matches!(
        store.get_team(TeamId::new()).await,
        Err(StoreError::NotFound(_))
    ));
}

async fn optimistic_concurrency(store: &dyn Store, w: &World) {
    let a = Actor::from(&w.referrer_a);
    let now = Utc::now();
    let mut c = Consultation::draft(
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
    let stale = c.clone();
    c.apply(
        &a,
        &ConsultationEvent::Submit { consent: true },
        now,
        &SlaPolicy::default(),
    )
    .unwrap();
    store.update_consultation(&c, 0, vec![]).await.unwrap();
    let mut again = stale;
    again
        .apply(
            &a,
            &ConsultationEvent::Cancel {
                reason: "dup".into(),
            },
            now,
            &SlaPolicy::default(),
        )
        .unwrap();
    let before = store.audit_page(0, 100_000).await.unwrap().len();
    let audit = vec![event(
        Some(&w.referrer_a),
        AuditAction::Update,
        "consultation",
        c.id.to_string(),
        Some(w.patient_a.id),
    )];
    assert!(matches!(
        store.update_consultation(&again, 0, audit).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        store.audit_page(0, 100_000).await.unwrap().len(),
        before,
        "a refused write leaves no audit event behind"
    );
    assert_eq!(
        store.get_consultation(&a, c.id).await.unwrap().state,
        ConsultationState::Submitted
    );
}

async fn sessions_and_tokens(store: &dyn Store, w: &World) {
    let exp = Utc::now() + Duration::hours(8);
    store
        .create_session("h1", w.referrer_a.id, "csrf1", exp)
        .await
        .unwrap();
    let s = store.get_session("h1").await.unwrap();
    assert_eq!(s.user.id, w.referrer_a.id);
    assert_eq!(s.csrf_token, "csrf1");
    store.delete_session("h1").await.unwrap();
    assert!(store.get_session("h1").await.is_err());

    let t = store
        .create_api_token("th", w.coordinator.id, "lab", vec![])
        .await
        .unwrap();
    assert_eq!(
        store.user_for_api_token("th").await.unwrap().id,
        w.coordinator.id
    );
    assert_eq!(
        store.list_api_tokens(w.coordinator.id).await.unwrap().len(),
        1
    );
    store
        .revoke_api_token(w.coordinator.id, &t.id, vec![])
        .await
        .unwrap();
    assert!(store.user_for_api_token("th").await.is_err());

    let (u, hash) = store.get_user_credentials("ref_a").await.unwrap();
    assert_eq!(u.id, w.referrer_a.id);
    assert_eq!(hash.as_deref(), Some("$argon2id$fake"));
    let mut off = u.clone();
    off.active = false;
    store.update_user(&off, vec![]).await.unwrap();
    assert!(!store.get_user(u.id).await.unwrap().active);
    assert!(store
        .routing_candidates("cardiology")
        .await
        .unwrap()
        .iter()
        .all(|c| c.user_id != u.id));
    store.update_user(&u, vec![]).await.unwrap();
    assert_eq!(store.list_users(Some(w.center.id)).await.unwrap().len(), 2);
    assert_eq!(store.list_institutions().await.unwrap().len(), 3);
}

async fn duplicates_are_refused(store: &dyn Store, w: &World) {
    let mut dup = w.referrer_b.clone();
    dup.id = UserId::new();
    assert!(
        matches!(
            store.insert_user(&dup, None, vec![]).await,
            Err(StoreError::Duplicate(_))
        ),
        "usernames are unique"
    );
    assert!(matches!(
        store.get_user(UserId::new()).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.get_institution(InstitutionId::new()).await,
        Err(StoreError::NotFound(_))
    ));
    let _ = &w.hospital_b;
}

/// Many writes at once, a quarter of them doomed (a duplicate id): each failure is refused alone with its own
/// error, every success is stored with exactly its audit event, and the chain stays linear. (SQLite groups
/// concurrent writes into shared transactions; this is the contract that grouping must keep.)
async fn concurrent_writes_fail_alone(store: &dyn Store, w: &World) {
    let attempts: Vec<Patient> = (0..40)
        .map(|i| {
            let mut p = patient(&w.hospital_a, &format!("Concurrent{i}"));
            if i % 4 == 3 {
                p.id = w.patient_a.id; // already stored
            }
            p
        })
        .collect();
    let results = futures::future::join_all(attempts.iter().map(|p| {
        store.insert_patient(
            p,
            vec![AuditEvent {
                purpose: "concurrency".into(),
                ..event(
                    None,
                    AuditAction::Create,
                    "patient",
                    p.family_name.clone(),
                    Some(p.id),
                )
            }],
        )
    }))
    .await;
    let mut stored = 0;
    for (p, r) in attempts.iter().zip(&results) {
        if p.id == w.patient_a.id {
            assert!(
                matches!(r, Err(StoreError::Duplicate(_))),
                "{}: {r:?}",
                p.family_name
            );
        } else {
            assert!(r.is_ok(), "{}: {r:?}", p.family_name);
            stored += 1;
        }
    }
    assert_eq!(stored, 30);
    let a = Actor::from(&w.referrer_a);
    let found = store
        .list_patients(
            &a,
            &PatientFilter {
                name: Some("concurrent".into()),
                limit: Some(100),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(found.len(), 30);
    let all = store.audit_page(0, 1_000_000).await.unwrap();
    let audited = all
        .iter()
        .filter(|r| r.event.purpose == "concurrency")
        .count();
    assert_eq!(audited, 30, "failed writes leave no audit event");
    assert_eq!(
        verify_audit_chain(store).await.unwrap().unwrap() as usize,
        all.len()
    );
}

async fn audit_chain_holds(store: &dyn Store) {
    let p = PatientId::new();
    let events: Vec<AuditEvent> = (0..3)
        .map(|i| event(None, AuditAction::Read, "patient", format!("x{i}"), Some(p)))
        .collect();
    store.append_audit(events).await.unwrap();
    let log = store.audit_for_patient(p, 10).await.unwrap();
    assert_eq!(log.len(), 3);
    assert!(log[0].seq > log[2].seq, "newest first");
    let all: Vec<AuditRecord> = store.audit_page(0, 1_000_000).await.unwrap();
    assert!(all.len() > 3);
    assert_eq!(
        caravan_domain::audit::verify_chain(&all).unwrap() as usize,
        all.len()
    );
    assert_eq!(
        verify_audit_chain(store).await.unwrap().unwrap() as usize,
        all.len()
    );
    let by_entity = store
        .audit_for_entity("patient", "x1", None, 10)
        .await
        .unwrap();
    assert_eq!(by_entity.len(), 1);
}

/// A search is one event with subjects: each listed patient's access log, and each listed record's trail (given its
/// patient), shows it narrowed to that patient or record; the chain holds the whole list.
async fn search_events_reach_each_subject(store: &dyn Store) {
    use caravan_domain::AuditSubject;
    let (p1, p2, p3) = (PatientId::new(), PatientId::new(), PatientId::new());
    let subject = |id: &str, p: PatientId| AuditSubject {
        entity_id: id.into(),
        patient_id: Some(p),
    };
    let mut search = event(
        None,
        AuditAction::Search,
        "consultation",
        String::new(),
        None,
    );
    search.subjects = vec![subject("k1", p1), subject("k2", p2), subject("k3", p1)];
    // A record of p1 read on its own, before and after the search, and 30 later searches listing p3 alone.
    let before = event(
        None,
        AuditAction::Read,
        "consultation",
        "k1".into(),
        Some(p1),
    );
    let after = event(
        None,
        AuditAction::Read,
        "consultation",
        "k1".into(),
        Some(p1),
    );
    store.append_audit(vec![before]).await.unwrap();
    store.append_audit(vec![search.clone()]).await.unwrap();
    store.append_audit(vec![after]).await.unwrap();
    let mut later = event(None, AuditAction::Search, "visit", String::new(), None);
    later.subjects = vec![subject("v1", p3)];
    store.append_audit(vec![later; 30]).await.unwrap();

    let log = store.audit_for_patient(p1, 10).await.unwrap();
    assert_eq!(log.len(), 3, "p1: read, search, read: {log:?}");
    assert!(
        log[0].seq > log[1].seq && log[1].seq > log[2].seq,
        "newest first"
    );
    let ids: Vec<&str> = log[1]
        .event
        .subjects
        .iter()
        .map(|s| s.entity_id.as_str())
        .collect();
    assert_eq!(ids, ["k1", "k3"], "narrowed to p1's records");
    let log = store.audit_for_patient(p2, 10).await.unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].event.subjects, vec![subject("k2", p2)]);
    assert_eq!(log[0].event.action, AuditAction::Search);
    assert_eq!(
        store.audit_for_patient(p3, 10).await.unwrap().len(),
        10,
        "limit"
    );
    assert_eq!(store.audit_for_patient(p3, 100).await.unwrap().len(), 30);

    let trail = store
        .audit_for_entity("consultation", "k2", Some(p2), 10)
        .await
        .unwrap();
    assert_eq!(trail.len(), 1);
    assert_eq!(trail[0].event.subjects, vec![subject("k2", p2)]);
    let trail = store
        .audit_for_entity("consultation", "k1", Some(p1), 10)
        .await
        .unwrap();
    assert_eq!(trail.len(), 3, "k1: read, search, read");
    assert_eq!(trail[1].event.subjects, vec![subject("k1", p1)]);
    assert_eq!(
        store
            .audit_for_entity("consultation", "k1", Some(p1), 2)
            .await
            .unwrap()
            .len(),
        2
    );
    // Without the patient only the record's own events are found; another type or patient finds nothing.
    assert_eq!(
        store
            .audit_for_entity("consultation", "k2", None, 10)
            .await
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        store
            .audit_for_entity("visit", "k2", Some(p2), 10)
            .await
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        store
            .audit_for_entity("consultation", "k2", Some(p1), 10)
            .await
            .unwrap()
            .len(),
        0
    );

    // The chain holds the event whole, and verifies.
    let all = store.audit_page(0, 1_000_000).await.unwrap();
    let seq = store.audit_for_patient(p2, 1).await.unwrap()[0].seq;
    let stored = all.iter().find(|r| r.seq == seq).unwrap();
    assert_eq!(stored.event.subjects, search.subjects);
    // The patients' index holds p1 and p2 for it, not p3 (what `audit verify` checks).
    assert_eq!(
        store
            .audit_subjects_missing(&[(p1, seq), (p2, seq), (p3, seq)])
            .await
            .unwrap(),
        vec![(p3, seq)]
    );
    assert!(store.audit_subjects_missing(&[]).await.unwrap().is_empty());
    assert_eq!(
        verify_audit_chain(store).await.unwrap().unwrap() as usize,
        all.len()
    );
}

fn outgoing(dest: &str, n: u8) -> Outgoing {
    Outgoing {
        envelope_id: uuid::Uuid::now_v7(),
        destination: dest.into(),
        message_type: "net.ping".into(),
        consultation_id: None,
        envelope: vec![b'{', n, b'}'],
        enqueued_at: Utc::now(),
    }
}

/// The outbox in enqueue order per destination, failures, dead letters and retry; the inbox de-duplicates and a
/// unit of work is all or nothing.
async fn federation_records(store: &dyn Store, w: &World) {
    let (a1, a2, b1) = (
        outgoing("node-a", 1),
        outgoing("node-a", 2),
        outgoing("node-b", 3),
    );
    store
        .apply(
            vec![
                Change::Enqueue(a1.clone()),
                Change::Enqueue(a2.clone()),
                Change::Enqueue(b1.clone()),
            ],
            vec![event(
                Some(&w.coordinator),
                AuditAction::Create,
                "outbox",
                "3".into(),
                None,
            )],
        )
        .await
        .unwrap();
    assert_eq!(
        store.fed_destinations_with_pending().await.unwrap(),
        vec!["node-a".to_string(), "node-b".to_string()]
    );
    let head = store.fed_next_pending("node-a").await.unwrap().unwrap();
    assert_eq!(
        (head.envelope_id, head.envelope.clone()),
        (a1.envelope_id, a1.envelope.clone())
    );
    let later = Utc::now() + Duration::seconds(30);
    store
        .fed_record_failure(a1.envelope_id, 1, later, "connection refused")
        .await
        .unwrap();
    let head = store.fed_next_pending("node-a").await.unwrap().unwrap();
    assert_eq!(
        head.attempts, 1,
        "the head stays the head after a failure (in order)"
    );
    assert!((head.next_attempt_at - later).num_milliseconds().abs() < 1000);
    store
        .fed_dead_letter(
            a1.envelope_id,
            "refused: type_not_allowed",
            Utc::now(),
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .fed_next_pending("node-a")
            .await
            .unwrap()
            .unwrap()
            .envelope_id,
        a2.envelope_id
    );
    store
        .fed_mark_delivered(a2.envelope_id, Utc::now())
        .await
        .unwrap();
    assert!(store.fed_next_pending("node-a").await.unwrap().is_none());
    let dead = store.fed_outbox("dead", 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0].last_error.as_deref(),
        Some("refused: type_not_allowed")
    );
    assert_eq!(
        store
            .fed_retry(a1.envelope_id, Utc::now(), vec![])
            .await
            .unwrap(),
        "node-a"
    );
    assert!(matches!(
        store.fed_retry(a1.envelope_id, Utc::now(), vec![]).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        store
            .fed_next_pending("node-a")
            .await
            .unwrap()
            .unwrap()
            .envelope_id,
        a1.envelope_id
    );

    // Inbox: stored once with its effect; a second copy fails the whole unit (its effect is not applied twice).
    let id = uuid::Uuid::now_v7();
    let record = InboxRecord {
        envelope_id: id,
        sender: "node-a".into(),
        message_type: "net.ping".into(),
        consultation_id: None,
        received_at: Utc::now(),
        envelope: b"{}".to_vec(),
        sha256: "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a".into(),
        outcome: "applied".into(),
    };
    let unit = || {
        vec![
            Change::Receive(record.clone()),
            Change::Ping {
                envelope_id: id,
                sender: "node-a".into(),
            },
        ]
    };
    store.apply(unit(), vec![]).await.unwrap();
    assert!(store.fed_inbox_contains(id).await.unwrap());
    assert!(matches!(
        store.apply(unit(), vec![]).await,
        Err(StoreError::Duplicate("envelope"))
    ));
    let c = store.fed_counts().await.unwrap();
    assert_eq!((c.pings, c.distinct_pings, c.inbox), (1, 1, 1));
    assert_eq!((c.pending, c.delivered, c.dead), (2, 1, 0));
    let inbox = store.fed_inbox(10).await.unwrap();
    assert_eq!(inbox[0].envelope.as_deref(), Some(&b"{}"[..]));

    // Stand-ins: a node's institution and a remote user.
    let inst = Institution {
        id: InstitutionId::new(),
        name: "Remote center (node-a)".into(),
        level: InstitutionLevel::NationalCenter,
        country: "KZ".parse().unwrap(),
        parent: None,
        timezone: "UTC".into(),
    };
    let user = User {
        id: UserId::new(),
        username: "u1@node-a".into(),
        display_name: "Dr Remote".into(),
        institution_id: inst.id,
        role: Role::Consultant,
        patient_id: None,
        profile: None,
        locale: "en".into(),
        active: true,
    };
    store
        .apply(
            vec![
                Change::InsertInstitution(inst.clone()),
                Change::LinkNode {
                    node_id: "node-a".into(),
                    institution_id: inst.id,
                },
                Change::UpsertUser(user.clone()),
                Change::LinkRemoteUser(RemoteUser {
                    user_id: user.id,
                    node_id: "node-a".into(),
                    remote_id: "u1".into(),
                }),
            ],
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        store.fed_node_institution("node-a").await.unwrap(),
        Some(inst.id)
    );
    assert_eq!(
        store.fed_remote_users("node-a").await.unwrap()[0].user_id,
        user.id
    );
    assert_eq!(
        store
            .fed_remote_user(user.id)
            .await
            .unwrap()
            .unwrap()
            .remote_id,
        "u1"
    );
    let mut renamed = user.clone();
    renamed.display_name = "Dr Remote Renamed".into();
    renamed.active = false;
    store
        .apply(vec![Change::UpsertUser(renamed)], vec![])
        .await
        .unwrap();
    let u = store.get_user(user.id).await.unwrap();
    assert_eq!(
        (u.display_name.as_str(), u.active),
        ("Dr Remote Renamed", false)
    );
}

/// Now, at the microsecond precision both backends keep.
fn now_us() -> chrono::DateTime<Utc> {
    use chrono::SubsecRound;
    Utc::now().trunc_subsecs(6)
}

fn surv_case(
    w: &World,
    disease: &str,
    region: &str,
    onset: NaiveDate,
    pseudonym: &str,
) -> SurvCase {
    SurvCase {
        id: uuid::Uuid::now_v7(),
        pseudonym: pseudonym.into(),
        disease: disease.into(),
        region: region.into(),
        onset_date: onset,
        report_date: onset + Duration::days(2),
        age_band: "25-44".into(),
        sex: "female".into(),
        outcome: "recovered".into(),
        lab_confirmed: true,
        reported_by: w.coordinator.id,
        source: "test".into(),
        created_at: now_us(),
    }
}

fn surv_alert(origin: &str, disease: &str, region: &str, week: u32) -> SurvAlert {
    let id = uuid::Uuid::now_v7();
    SurvAlert {
        id,
        origin_node: origin.into(),
        origin_id: id.to_string(),
        disease: disease.into(),
        region: region.into(),
        region_name: "Region".into(),
        country: "KZ".into(),
        local_region: None,
        iso_year: 2026,
        iso_week: week,
        observed: 12.0,
        upperbound: Some(4.5),
        method: "ears-c2".into(),
        created_at: now_us(),
        status: "open".into(),
        acknowledged_by: None,
        acknowledged_at: None,
    }
}

/// Regions with neighbours, the line list and aggregates summed into weekly series by ISO week of onset, alerts
/// unique per origin × disease × region × week, acknowledgement once, notes in order; all through `apply`, and a
/// failing unit leaves nothing behind.
async fn surveillance_records(store: &dyn Store, w: &World) {
    let regions = vec![
        SurvRegion {
            code: "KZ-ALM".into(),
            name: "Almaty Region".into(),
            country: "KZ".into(),
            population: 2_100_000,
            neighbours: vec![SurvNeighbour {
                node_id: "kashgar-cn".into(),
                region: "CN-XJ-KS".into(),
                name: "Kashgar".into(),
            }],
        },
        SurvRegion {
            code: "KZ-TUR".into(),
            name: "Turkistan Region".into(),
            country: "KZ".into(),
            population: 2_000_000,
            neighbours: vec![],
        },
    ];
    store
        .apply(vec![Change::SurvSetRegions(regions.clone())], vec![])
        .await
        .unwrap();
    assert_eq!(store.surv_regions().await.unwrap(), regions);
    // Replacing the regions replaces their neighbours too.
    let mut fewer = regions.clone();
    fewer[0].neighbours.clear();
    store
        .apply(vec![Change::SurvSetRegions(fewer.clone())], vec![])
        .await
        .unwrap();
    assert_eq!(store.surv_regions().await.unwrap(), fewer);

    // 2026-01-05 is a Monday of ISO week 2026-W02; 2025-12-29 belongs to ISO week 2026-W01.
    let d = |y, m, day| NaiveDate::from_ymd_opt(y, m, day).unwrap();
    let cases = [
        surv_case(w, "A01.0", "KZ-ALM", d(2025, 12, 29), "p1"),
        surv_case(w, "A01.0", "KZ-ALM", d(2026, 1, 5), "p2"),
        surv_case(w, "A01.0", "KZ-ALM", d(2026, 1, 11), "p3"),
        surv_case(w, "A09", "KZ-TUR", d(2026, 1, 6), "p4"),
    ];
    let mut changes: Vec<Change> = cases.iter().cloned().map(Change::InsertSurvCase).collect();
    changes.push(Change::PutSurvAggregate(SurvAggregate {
        disease: "A01.0".into(),
        region: "KZ-ALM".into(),
        iso_year: 2026,
        iso_week: 2,
        count: 5,
        reported_by: w.coordinator.id,
        source: "test".into(),
        updated_at: now_us(),
    }));
    store
        .apply(
            changes,
            vec![event(
                Some(&w.coordinator),
                AuditAction::Create,
                "surveillance_report",
                "batch".into(),
                None,
            )],
        )
        .await
        .unwrap();
    // The last aggregate report of a key replaces the earlier one.
    store
        .apply(
            vec![Change::PutSurvAggregate(SurvAggregate {
                disease: "A01.0".into(),
                region: "KZ-ALM".into(),
                iso_year: 2026,
                iso_week: 2,
                count: 7,
                reported_by: w.coordinator.id,
                source: "test".into(),
                updated_at: now_us(),
            })],
            vec![],
        )
        .await
        .unwrap();
    let all = store.surv_cases(&SurvFilter::default()).await.unwrap();
    assert_eq!(all.len(), 4);
    assert!(
        all.iter().any(|c| c == &cases[0]),
        "a case reads back as written"
    );
    assert_eq!(all[0].onset_date, d(2026, 1, 11), "newest onset first");
    let alm = store
        .surv_cases(&SurvFilter {
            region: Some("KZ-ALM".into()),
            limit: Some(2),
            ..SurvFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(alm.len(), 2);
    assert!(alm.iter().all(|c| c.region == "KZ-ALM"));
    let weeks = store
        .surv_weeks(&SurvFilter {
            disease: Some("A01.0".into()),
            ..SurvFilter::default()
        })
        .await
        .unwrap();
    let got: Vec<(i32, u32, i64, i64)> = weeks
        .iter()
        .map(|w| (w.iso_year, w.iso_week, w.cases, w.aggregate))
        .collect();
    assert_eq!(got, vec![(2026, 1, 1, 0), (2026, 2, 2, 7)]);
    assert_eq!(weeks[1].total(), 9);
    let aggs = store.surv_aggregates(&SurvFilter::default()).await.unwrap();
    assert_eq!(aggs.len(), 1);
    assert_eq!(aggs[0].count, 7);

    // A failing unit of work (a duplicate case id) leaves no case and no aggregate behind.
    let dup = cases[1].clone();
    let before = store.surv_weeks(&SurvFilter::default()).await.unwrap();
    let r = store
        .apply(
            vec![
                Change::InsertSurvCase(surv_case(w, "A09", "KZ-TUR", d(2026, 1, 7), "p5")),
                Change::PutSurvAggregate(SurvAggregate {
                    disease: "A09".into(),
                    region: "KZ-TUR".into(),
                    iso_year: 2026,
                    iso_week: 3,
                    count: 3,
                    reported_by: w.coordinator.id,
                    source: "test".into(),
                    updated_at: now_us(),
                }),
                Change::InsertSurvCase(dup),
            ],
            vec![],
        )
        .await;
    assert!(matches!(r, Err(StoreError::Duplicate(_))), "{r:?}");
    assert_eq!(
        store.surv_weeks(&SurvFilter::default()).await.unwrap(),
        before
    );

    // Alerts: one per origin × disease × region × week; a foreign one for the same key is distinct.
    let local = surv_alert("", "A01.0", "KZ-ALM", 2);
    store
        .apply(vec![Change::InsertSurvAlert(local.clone())], vec![])
        .await
        .unwrap();
    let again = store
        .apply(
            vec![Change::InsertSurvAlert(surv_alert(
                "", "A01.0", "KZ-ALM", 2,
            ))],
            vec![],
        )
        .await;
    assert!(matches!(again, Err(StoreError::Duplicate(_))), "{again:?}");
    let mut foreign = surv_alert("kashgar-cn", "A01.0", "KZ-ALM", 2);
    foreign.origin_id = "remote-1".into();
    foreign.local_region = Some("KZ-ALM".into());
    store
        .apply(vec![Change::InsertSurvAlert(foreign.clone())], vec![])
        .await
        .unwrap();
    assert_eq!(store.surv_alert(local.id).await.unwrap(), local);
    assert_eq!(
        store
            .surv_alert_for("", "A01.0", "KZ-ALM", 2026, 2)
            .await
            .unwrap(),
        Some(local.clone())
    );
    assert_eq!(
        store
            .surv_alert_for("", "A01.0", "KZ-ALM", 2026, 3)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .surv_alert_by_origin("kashgar-cn", "remote-1")
            .await
            .unwrap(),
        Some(foreign.clone())
    );
    assert_eq!(store.surv_alerts(10).await.unwrap().len(), 2);
    assert!(matches!(
        store.surv_alert(uuid::Uuid::now_v7()).await,
        Err(StoreError::NotFound(_))
    ));

    // Acknowledged once; a second acknowledgement is a conflict.
    let at = now_us();
    store
        .apply(
            vec![Change::AckSurvAlert {
                id: local.id,
                by: "Officer".into(),
                at,
            }],
            vec![],
        )
        .await
        .unwrap();
    let acked = store.surv_alert(local.id).await.unwrap();
    assert_eq!(acked.status, "acknowledged");
    assert_eq!(acked.acknowledged_by.as_deref(), Some("Officer"));
    let twice = store
        .apply(
            vec![Change::AckSurvAlert {
                id: local.id,
                by: "Officer".into(),
                at,
            }],
            vec![],
        )
        .await;
    assert!(matches!(twice, Err(StoreError::Conflict)), "{twice:?}");

    let notes: Vec<SurvNote> = ["first", "second"]
        .iter()
        .enumerate()
        .map(|(i, b)| SurvNote {
            id: uuid::Uuid::now_v7(),
            alert_id: local.id,
            kind: if i == 0 { "note" } else { "ack" }.into(),
            author_name: "Officer".into(),
            author_node: if i == 0 { "" } else { "kashgar-cn" }.into(),
            body: (*b).into(),
            created_at: now_us() + Duration::milliseconds(i as i64),
        })
        .collect();
    store
        .apply(
            notes.iter().cloned().map(Change::InsertSurvNote).collect(),
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(store.surv_notes(local.id).await.unwrap(), notes);
    assert!(store.surv_notes(foreign.id).await.unwrap().is_empty());

    // Neighbours' weekly counts, the last one of a key wins.
    for count in [3, 4] {
        store
            .apply(
                vec![Change::PutSurvForeignCount(SurvForeignCount {
                    node_id: "kashgar-cn".into(),
                    region: "CN-XJ-KS".into(),
                    disease: "A01.0".into(),
                    iso_year: 2026,
                    iso_week: 2,
                    count,
                })],
                vec![],
            )
            .await
            .unwrap();
    }
    let fc = store.surv_foreign_counts().await.unwrap();
    assert_eq!(fc.len(), 1);
    assert_eq!(fc[0].count, 4);
}

/// Live care (`visits`): slots never overlap, a slot is booked once, a clinician has no two overlapping visits
/// and one in progress at a time, the waiting room is first come first served, guests are found by token hash
/// only, and visits are scoped like patients.
async fn visits_booking_queue_and_scope(store: &dyn Store, w: &World) {
    use uuid::Uuid;
    let t0 = Utc.with_ymd_and_hms(2030, 3, 1, 9, 0, 0).unwrap();
    let cons = &w.consultant;
    let schedule = Schedule {
        id: Uuid::now_v7(),
        institution_id: w.center.id,
        practitioner_id: cons.id,
        service: "cardiology video clinic".into(),
        active: true,
        created_at: now6(),
    };
    store
        .visit_insert_schedule(&schedule, vec![])
        .await
        .unwrap();
    assert_eq!(
        store.visit_get_schedule(schedule.id).await.unwrap(),
        schedule
    );
    assert_eq!(
        store
            .visit_schedules(None, Some(cons.id))
            .await
            .unwrap()
            .len(),
        1
    );
    let slot = |i: i64| Slot {
        id: Uuid::now_v7(),
        schedule_id: schedule.id,
        start: t0 + Duration::minutes(20 * i),
        end: t0 + Duration::minutes(20 * i + 20),
        status: SlotStatus::Free,
    };
    let slots: Vec<Slot> = (0..3).map(slot).collect();
    store.visit_insert_slots(&slots, vec![]).await.unwrap();
    // Overlapping slots are refused, all or nothing.
    let mut overlapping = slot(5);
    overlapping.start = slots[2].start + Duration::minutes(10);
    let fresh = slot(6);
    assert!(matches!(
        store
            .visit_insert_slots(&[fresh.clone(), overlapping], vec![])
            .await,
        Err(StoreError::Conflict)
    ));
    let listed = store
        .visit_slots(schedule.id, t0, t0 + Duration::hours(8))
        .await
        .unwrap();
    assert_eq!(listed, slots, "the refused batch left nothing behind");

    let visit = |slot: &Slot, patient: &Patient, inst: &Institution| Visit {
        id: Uuid::now_v7(),
        slot_id: Some(slot.id),
        institution_id: inst.id,
        practitioner_id: cons.id,
        patient_id: patient.id,
        consultation_id: None,
        start: slot.start,
        end: slot.end,
        reason: "follow-up".into(),
        status: VisitStatus::Booked,
        arrived_at: None,
        started_at: None,
        ended_at: None,
        created_by: cons.id,
        created_at: now6(),
    };
    let a = visit(&slots[0], &w.patient_a, &w.center);
    let invitation = Invitation {
        id: Uuid::now_v7(),
        visit_id: a.id,
        role: GuestRole::Patient,
        display_name: "Patient A".into(),
        user_id: None,
        token_hash: Some("ab".repeat(32)),
        expires_at: t0 + Duration::hours(2),
        created_by: cons.id,
        created_at: now6(),
    };
    store
        .visit_book(
            &a,
            std::slice::from_ref(&invitation),
            vec![event(
                Some(cons),
                AuditAction::Create,
                "visit",
                a.id.to_string(),
                Some(w.patient_a.id),
            )],
        )
        .await
        .unwrap();
    // The same slot again: refused, and nothing of the second booking is stored.
    let again = visit(&slots[0], &w.patient_b, &w.center);
    assert!(matches!(
        store.visit_book(&again, &[], vec![]).await,
        Err(StoreError::Conflict)
    ));
    assert!(matches!(
        store.visit_by_id(again.id).await,
        Err(StoreError::NotFound(_))
    ));
    // No slot, but overlapping the clinician's booked visit: refused too.
    let mut free_time = visit(&slots[0], &w.patient_b, &w.center);
    free_time.slot_id = None;
    free_time.start = slots[0].start + Duration::minutes(5);
    assert!(matches!(
        store.visit_book(&free_time, &[], vec![]).await,
        Err(StoreError::Conflict)
    ));
    let b = visit(&slots[1], &w.patient_b, &w.center);
    store.visit_book(&b, &[], vec![]).await.unwrap();
    let taken = store
        .visit_slots(schedule.id, t0, t0 + Duration::hours(8))
        .await
        .unwrap();
    assert_eq!(
        taken.iter().map(|s| s.status).collect::<Vec<_>>(),
        [SlotStatus::Busy, SlotStatus::Busy, SlotStatus::Free]
    );

    // Guests are found by the token's hash only.
    let found = store
        .visit_invitation_by_token(&"ab".repeat(32))
        .await
        .unwrap();
    assert_eq!(found, invitation);
    assert!(matches!(
        store.visit_invitation_by_token(&"cd".repeat(32)).await,
        Err(StoreError::NotFound(_))
    ));

    // Scope: the clinician, the clinicians of the visit's institution and its patient see it; a referrer of
    // another hospital does not, until invited.
    let view = store.visit_get(&Actor::from(cons), a.id).await.unwrap();
    assert_eq!(view.visit, a);
    assert!(view.patient_name.contains("Nurlanova"));
    assert!(store
        .visit_get(&Actor::from(&w.coordinator), a.id)
        .await
        .is_ok());
    let mut patient_actor = Actor::from(&w.referrer_a);
    patient_actor.role = Role::Patient;
    patient_actor.patient_id = Some(w.patient_a.id);
    assert!(store.visit_get(&patient_actor, a.id).await.is_ok());
    assert!(matches!(
        store.visit_get(&patient_actor, b.id).await,
        Err(StoreError::NotFound(_))
    ));
    let outsider = Actor::from(&w.referrer_b);
    assert!(matches!(
        store.visit_get(&outsider, a.id).await,
        Err(StoreError::NotFound(_))
    ));
    store
        .visit_insert_invitation(
            &Invitation {
                id: Uuid::now_v7(),
                visit_id: a.id,
                role: GuestRole::Clinician,
                display_name: w.referrer_b.display_name.clone(),
                user_id: Some(w.referrer_b.id),
                token_hash: None,
                expires_at: t0 + Duration::hours(2),
                created_by: cons.id,
                created_at: now6(),
            },
            vec![],
        )
        .await
        .unwrap();
    assert!(store.visit_get(&outsider, a.id).await.is_ok());
    assert_eq!(store.visit_invitations(a.id).await.unwrap().len(), 2);
    let listed = store
        .visit_list(
            &Actor::from(cons),
            &VisitFilter {
                practitioner_id: Some(cons.id),
                statuses: vec![VisitStatus::Booked],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        listed.iter().map(|v| v.visit.id).collect::<Vec<_>>(),
        [a.id, b.id]
    );
    assert!(store
        .visit_list(&outsider, &VisitFilter::default())
        .await
        .unwrap()
        .iter()
        .all(|v| v.visit.id == a.id));

    // Waiting room: b arrives first, then a; first come, first served; one in progress at a time.
    let t = |m: i64| t0 + Duration::minutes(m);
    assert!(matches!(
        store.visit_admit(b.id, t(0), vec![]).await,
        Err(StoreError::Conflict)
    ));
    store.visit_check_in(b.id, t(1), vec![]).await.unwrap();
    store.visit_check_in(a.id, t(2), vec![]).await.unwrap();
    // Checking in again keeps one's place.
    let again = store.visit_check_in(b.id, t(3), vec![]).await.unwrap();
    assert_eq!(again.arrived_at, Some(t(1)));
    let queue: Vec<Uuid> = store
        .visit_queue(cons.id)
        .await
        .unwrap()
        .iter()
        .map(|v| v.visit.id)
        .collect();
    assert_eq!(queue, [b.id, a.id]);
    let admitted = store.visit_admit(b.id, t(4), vec![]).await.unwrap();
    assert_eq!(
        (admitted.status, admitted.started_at),
        (VisitStatus::InProgress, Some(t(4)))
    );
    assert!(
        matches!(
            store.visit_admit(a.id, t(5), vec![]).await,
            Err(StoreError::Conflict)
        ),
        "a second patient may not enter an occupied room"
    );
    assert_eq!(store.visit_queue(cons.id).await.unwrap().len(), 1);

    // Participants: joined once, left, rejoined; the end closes everyone's presence.
    let joined = |key: &str, role: &str, at| Participant {
        visit_id: b.id,
        key: key.into(),
        role: role.into(),
        display_name: key.into(),
        joined_at: at,
        left_at: None,
    };
    store
        .visit_joined(
            &joined(&format!("user:{}", cons.id), "clinician", t(4)),
            vec![],
        )
        .await
        .unwrap();
    store
        .visit_joined(&joined("guest:x", "patient", t(5)), vec![])
        .await
        .unwrap();
    store
        .visit_left(b.id, "guest:x", t(6), vec![])
        .await
        .unwrap();
    store
        .visit_joined(&joined("guest:x", "patient", t(7)), vec![])
        .await
        .unwrap();
    let finished = store.visit_finish(b.id, t(9), vec![]).await.unwrap();
    assert_eq!(
        (finished.status, finished.ended_at),
        (VisitStatus::Finished, Some(t(9)))
    );
    let people = store.visit_participants(b.id).await.unwrap();
    assert_eq!(people.len(), 2);
    let guest = people.iter().find(|p| p.key == "guest:x").unwrap();
    assert_eq!((guest.joined_at, guest.left_at), (t(5), Some(t(9))));
    assert!(matches!(
        store.visit_finish(b.id, t(10), vec![]).await,
        Err(StoreError::Conflict)
    ));
    // Now the next patient can be admitted; cancelling a waiting visit gives its slot back.
    store.visit_admit(a.id, t(10), vec![]).await.unwrap();
    let c = visit(&slots[2], &w.patient_b, &w.center);
    store.visit_book(&c, &[], vec![]).await.unwrap();
    let cancelled = store.visit_cancel(c.id, t(11), vec![]).await.unwrap();
    assert_eq!(cancelled.status, VisitStatus::Cancelled);
    let c2 = visit(&slots[2], &w.patient_b, &w.center);
    store.visit_book(&c2, &[], vec![]).await.unwrap();
    assert!(matches!(
        store.visit_cancel(a.id, t(12), vec![]).await,
        Err(StoreError::Conflict)
    ));
}

/// Now, to the microsecond (what every backend keeps).
fn now6() -> chrono::DateTime<Utc> {
    use chrono::SubsecRound;
    Utc::now().trunc_subsecs(6)
}

/// DICOM studies linked to a case: seen exactly by those who see the case, updated in place (a transfer's
/// progress), listed while pending, and linked all-or-nothing with the rest of a unit of work.
async fn case_studies(store: &dyn Store, w: &World) {
    let a = Actor::from(&w.referrer_a);
    let b = Actor::from(&w.referrer_b);
    let patient = Actor {
        user_id: UserId::new(),
        institution_id: w.hospital_a.id,
        role: Role::Patient,
        patient_id: Some(w.patient_a.id),
    };
    let other_patient = Actor {
        patient_id: Some(w.patient_b.id),
        ..patient.clone()
    };
    // Whole seconds: backends keep microseconds.
    let now = Utc.with_ymd_and_hms(2026, 3, 3, 9, 0, 0).unwrap();
    let mut c = Consultation::draft(
        w.hospital_a.id,
        w.referrer_a.id,
        w.patient_a.id,
        "CT head: bleed?".into(),
        "fall".into(),
        "neurology".into(),
        Urgency::Urgent,
        vec![],
        now,
    );
    store.insert_consultation(&c, vec![]).await.unwrap();
    let study = CaseStudy {
        consultation_id: c.id,
        study_uid: "1.2.826.0.1.3680043.8.498.1".into(),
        accession: "ACC-1".into(),
        description: "CT head".into(),
        modalities: "CT".into(),
        study_date: "20260301".into(),
        instances: 3,
        state: StudyState::Ready,
        share: true,
        origin_node: None,
        transfer: None,
        detail: String::new(),
        added_by: w.referrer_a.id,
        created_at: now,
        updated_at: now,
    };
    let seq_before = store.audit_page(0, 100_000).await.unwrap().len();
    store
        .apply(
            vec![Change::LinkStudy(study.clone())],
            vec![event(
                Some(&w.referrer_a),
                AuditAction::Update,
                "consultation",
                c.id.to_string(),
                Some(w.patient_a.id),
            )],
        )
        .await
        .unwrap();
    assert_eq!(
        store.audit_page(0, 100_000).await.unwrap().len(),
        seq_before + 1,
        "the link and its audit event commit together"
    );
    assert_eq!(
        store.list_case_studies(&a, c.id).await.unwrap(),
        vec![study.clone()]
    );
    assert!(
        store.list_case_studies(&b, c.id).await.unwrap().is_empty(),
        "another hospital sees nothing"
    );
    assert!(
        store
            .list_case_studies(&patient, c.id)
            .await
            .unwrap()
            .is_empty(),
        "a draft's studies are the referrer's only"
    );
    let v = c.version;
    c.apply(
        &a,
        &ConsultationEvent::Submit { consent: true },
        now,
        &SlaPolicy::default(),
    )
    .unwrap();
    store.update_consultation(&c, v, vec![]).await.unwrap();
    assert_eq!(
        store.list_case_studies(&patient, c.id).await.unwrap().len(),
        1,
        "the patient sees their case's studies"
    );
    assert!(store
        .list_case_studies(&other_patient, c.id)
        .await
        .unwrap()
        .is_empty());

    // A second study arrives from another node: pending, then updated in place as the transfer completes.
    let mut incoming = CaseStudy {
        study_uid: "2.25.1234567890".into(),
        state: StudyState::Pending,
        origin_node: Some("node-c".into()),
        transfer: Some(r#"{"id":"t1"}"#.into()),
        detail: "0/4 chunks".into(),
        created_at: now + Duration::seconds(1),
        updated_at: now + Duration::seconds(1),
        ..study.clone()
    };
    store
        .apply(vec![Change::LinkStudy(incoming.clone())], vec![])
        .await
        .unwrap();
    let pending = store.fed_pending_studies(100).await.unwrap();
    assert!(
        pending.contains(&incoming),
        "a pending transfer is listed for the fetcher"
    );
    incoming.state = StudyState::Ready;
    incoming.detail = "4/4 chunks".into();
    incoming.transfer = None;
    incoming.instances = 7;
    incoming.updated_at = now + Duration::seconds(2);
    store
        .apply(vec![Change::LinkStudy(incoming.clone())], vec![])
        .await
        .unwrap();
    assert!(!store
        .fed_pending_studies(100)
        .await
        .unwrap()
        .iter()
        .any(|s| s.study_uid == incoming.study_uid));
    let listed = store.list_case_studies(&a, c.id).await.unwrap();
    assert_eq!(listed.len(), 2, "the update did not add a row");
    let got = listed
        .iter()
        .find(|s| s.study_uid == incoming.study_uid)
        .unwrap();
    assert_eq!(
        (got.state, got.instances, got.created_at.timestamp()),
        (StudyState::Ready, 7, incoming.created_at.timestamp())
    );
    // The purge of a mirrored case takes the studies that came with it (not the local one), unless another
    // case links them too.
    assert_eq!(
        store.fed_studies_to_purge(c.id).await.unwrap(),
        vec![got.clone()]
    );
    let other = Consultation::draft(
        w.hospital_a.id,
        w.referrer_a.id,
        w.patient_a.id,
        "Same CT, second opinion".into(),
        "fall".into(),
        "neurology".into(),
        Urgency::Routine,
        vec![],
        now,
    );
    store.insert_consultation(&other, vec![]).await.unwrap();
    store
        .apply(
            vec![Change::LinkStudy(CaseStudy {
                consultation_id: other.id,
                origin_node: None,
                ..incoming.clone()
            })],
            vec![],
        )
        .await
        .unwrap();
    assert!(
        store.fed_studies_to_purge(c.id).await.unwrap().is_empty(),
        "a study another case links stays"
    );
    assert!(store
        .fed_studies_to_purge(other.id)
        .await
        .unwrap()
        .is_empty());

    // A link to a case that does not exist fails, and takes the rest of its unit of work with it.
    let orphan = CaseStudy {
        consultation_id: ConsultationId::new(),
        study_uid: "2.25.99".into(),
        ..study.clone()
    };
    let extra = CaseStudy {
        study_uid: "2.25.98".into(),
        ..study.clone()
    };
    assert!(store
        .apply(
            vec![Change::LinkStudy(extra), Change::LinkStudy(orphan)],
            vec![]
        )
        .await
        .is_err());
    assert_eq!(
        store.list_case_studies(&a, c.id).await.unwrap().len(),
        2,
        "nothing of a failed unit is kept"
    );
}

fn rx_item(code: &str, ingredient: &str, classes: &[&str]) -> FormularyItem {
    FormularyItem {
        code: code.into(),
        system: RXNORM.into(),
        display: format!("{ingredient} 500 MG Oral Tablet"),
        ingredient: ingredient.into(),
        strength: "500 mg".into(),
        form: "tablet".into(),
        route: "oral".into(),
        classes: classes.iter().map(|c| c.to_string()).collect(),
    }
}

/// e-Prescription: imported tables replace wholesale, allergies and prescriptions follow the patient's scope, a
/// pharmacist reads a prescription by its id but never the patient, a received prescription is visible to
/// pharmacists only, dispenses need their prescription, and a status change sticks.
async fn rx_records(store: &dyn Store, w: &World) {
    let a = Actor::from(&w.referrer_a);
    let b = Actor::from(&w.referrer_b);
    let amox = rx_item("308191", "amoxicillin", &["penicillin", "beta-lactam"]);
    let ceph = rx_item("309114", "cefalexin", &["cephalosporin", "beta-lactam"]);
    let rows = |items: &[&FormularyItem]| RxChange::ReplaceTable {
        table: RxTable::Formulary,
        rows: items
            .iter()
            .map(|i| (i.code.clone(), serde_json::to_value(i).unwrap()))
            .collect(),
    };
    store
        .apply(vec![Change::Rx(rows(&[&amox, &ceph]))], vec![])
        .await
        .unwrap();
    assert_eq!(store.rx_table(RxTable::Formulary).await.unwrap().len(), 2);
    // A second import replaces the first; a failing import (duplicate key) leaves the table as it was.
    store
        .apply(vec![Change::Rx(rows(&[&amox]))], vec![])
        .await
        .unwrap();
    assert_eq!(store.rx_table(RxTable::Formulary).await.unwrap().len(), 1);
    assert!(matches!(
        store.rx_formulary_item("309114").await,
        Err(StoreError::NotFound(_))
    ));
    let failed = store
        .apply(vec![Change::Rx(rows(&[&ceph, &ceph]))], vec![])
        .await;
    assert!(failed.is_err(), "a duplicate key must fail the import");
    assert_eq!(store.rx_formulary_item("308191").await.unwrap(), amox);
    assert!(store
        .rx_table(RxTable::Interactions)
        .await
        .unwrap()
        .is_empty());

    let allergy = Allergy {
        id: uuid::Uuid::now_v7(),
        patient_id: w.patient_a.id,
        substance: "penicillin".into(),
        criticality: "high".into(),
        reaction: "urticaria".into(),
        status: "active".into(),
        recorded_by: w.referrer_a.id,
        recorded_at: Utc::now(),
    };
    store
        .apply(
            vec![Change::Rx(RxChange::InsertAllergy(allergy.clone()))],
            vec![event(
                Some(&w.referrer_a),
                AuditAction::Create,
                "allergy",
                allergy.id.to_string(),
                Some(w.patient_a.id),
            )],
        )
        .await
        .unwrap();
    assert_eq!(
        store.rx_allergies(&a, w.patient_a.id).await.unwrap(),
        vec![allergy.clone()]
    );
    assert!(matches!(
        store.rx_allergies(&b, w.patient_a.id).await,
        Err(StoreError::NotFound(_))
    ));

    let mut rx = Prescription {
        id: uuid::Uuid::now_v7(),
        patient_id: Some(w.patient_a.id),
        patient_name: "Aigerim Nurlanova".into(),
        patient_birth_date: Some(w.patient_a.birth_date),
        consultation_id: None,
        // The visit it was written after (FHIR MedicationRequest.encounter) round-trips.
        visit_id: Some(uuid::Uuid::now_v7()),
        prescriber_id: Some(w.referrer_a.id),
        prescriber_name: w.referrer_a.display_name.clone(),
        institution_name: w.hospital_a.name.clone(),
        medication: amox.clone(),
        dosage: Dosage {
            dose: "500".into(),
            dose_unit: "mg".into(),
            route: "oral".into(),
            times_per_day: 3,
            duration_days: 7,
            quantity: 21,
            instructions: "after meals".into(),
        },
        warnings: vec![RxWarning {
            kind: "allergy".into(),
            severity: Severity::High,
            subject: "penicillin".into(),
            reason: "allergic to penicillins".into(),
            source: "test".into(),
        }],
        override_reason: Some("tolerated before under observation".into()),
        status: RxStatus::Active,
        origin_node: None,
        destination_node: None,
        token: "header.payload.signature".into(),
        created_at: Utc::now(),
    };
    store
        .apply(
            vec![Change::Rx(RxChange::InsertPrescription(Box::new(
                rx.clone(),
            )))],
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(store.rx_prescription(&a, rx.id).await.unwrap(), rx);
    assert_eq!(
        store.rx_prescriptions(&a, w.patient_a.id).await.unwrap(),
        vec![rx.clone()]
    );
    assert!(matches!(
        store.rx_prescription(&b, rx.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store
            .apply(
                vec![Change::Rx(RxChange::InsertPrescription(Box::new(
                    rx.clone()
                )))],
                vec![]
            )
            .await,
        Err(StoreError::Duplicate(_))
    ));

    // A pharmacist (of another institution) is shown a prescription by its id, but never its patient, the
    // patient's allergies or the patient's list of prescriptions.
    let pharmacist = Actor {
        user_id: UserId::new(),
        institution_id: w.hospital_b.id,
        role: Role::Pharmacist,
        patient_id: None,
    };
    assert_eq!(store.rx_prescription(&pharmacist, rx.id).await.unwrap(), rx);
    assert!(matches!(
        store.get_patient(&pharmacist, w.patient_a.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.rx_prescriptions(&pharmacist, w.patient_a.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.rx_allergies(&pharmacist, w.patient_a.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store
            .rx_prescription(&pharmacist, uuid::Uuid::now_v7())
            .await,
        Err(StoreError::NotFound(_))
    ));

    // A received prescription (no local patient): the pharmacy sees it; clinicians and patients do not.
    let mut received = rx.clone();
    received.id = uuid::Uuid::now_v7();
    received.patient_id = None;
    received.origin_node = Some("node-cn".into());
    store
        .apply(
            vec![Change::Rx(RxChange::InsertPrescription(Box::new(
                received.clone(),
            )))],
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        store.rx_received(&pharmacist, 10).await.unwrap(),
        vec![received.clone()]
    );
    assert_eq!(
        store
            .rx_prescription(&pharmacist, received.id)
            .await
            .unwrap(),
        received
    );
    assert!(store.rx_received(&a, 10).await.unwrap().is_empty());
    assert!(matches!(
        store.rx_prescription(&a, received.id).await,
        Err(StoreError::NotFound(_))
    ));
    let patient_actor = Actor {
        user_id: UserId::new(),
        institution_id: w.hospital_a.id,
        role: Role::Patient,
        patient_id: Some(w.patient_a.id),
    };
    assert!(store
        .rx_received(&patient_actor, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(matches!(
        store.rx_prescription(&patient_actor, received.id).await,
        Err(StoreError::NotFound(_))
    ));

    // Dispense: needs its prescription; the status change and the dispense commit together.
    let dispense = Dispense {
        id: uuid::Uuid::now_v7(),
        prescription_id: rx.id,
        quantity: 21,
        performer: "Pharmacy 7".into(),
        note: String::new(),
        node: None,
        dispensed_at: Utc::now(),
    };
    let mut orphan = dispense.clone();
    orphan.id = uuid::Uuid::now_v7();
    orphan.prescription_id = uuid::Uuid::now_v7();
    assert!(matches!(
        store
            .apply(
                vec![
                    Change::Rx(RxChange::SetStatus {
                        id: rx.id,
                        status: RxStatus::Completed
                    }),
                    Change::Rx(RxChange::InsertDispense(orphan))
                ],
                vec![]
            )
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        store.rx_prescription(&a, rx.id).await.unwrap().status,
        RxStatus::Active,
        "a failed unit of work must leave the status unchanged"
    );
    store
        .apply(
            vec![
                Change::Rx(RxChange::SetStatus {
                    id: rx.id,
                    status: RxStatus::Completed,
                }),
                Change::Rx(RxChange::InsertDispense(dispense.clone())),
            ],
            vec![],
        )
        .await
        .unwrap();
    rx.status = RxStatus::Completed;
    assert_eq!(store.rx_prescription(&a, rx.id).await.unwrap(), rx);
    assert_eq!(
        store.rx_dispenses(rx.id).await.unwrap(),
        vec![dispense.clone()]
    );
    assert_eq!(store.rx_dispense(dispense.id).await.unwrap(), dispense);
    assert!(matches!(
        store.rx_dispense(uuid::Uuid::now_v7()).await,
        Err(StoreError::NotFound(_))
    ));
}
