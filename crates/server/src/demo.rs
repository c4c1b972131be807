//! The demo network of one node: institutions at three levels in three countries, practitioners with specialties,
//! languages and time zones, patients with consent, and consultations in every state.

use crate::auth;
use caravan_domain::*;
use caravan_store::{Message, Store, StoreError};
use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Utc, Weekday};

pub const DEMO_PASSWORD: &str = "caravan-demo-2026";

/// (user name, role) of the demo accounts, printed by `caravan demo`.
pub const DEMO_LOGINS: &[(&str, &str)] = &[
    ("admin", "node administrator"),
    (
        "coordinator",
        "coordinator, National Telemedicine Center (KZ)",
    ),
    (
        "dr.aliyev",
        "referring clinician, Taldykorgan District Hospital (KZ)",
    ),
    (
        "dr.wang",
        "referring clinician, Kashgar Prefecture Hospital (CN)",
    ),
    (
        "dr.karimova",
        "referring clinician, Samarkand District Hospital (UZ)",
    ),
    ("cardio.nurlanov", "consultant, cardiology (KZ)"),
    ("cardio.li", "consultant, cardiology (CN)"),
    ("pulm.petrova", "consultant, pulmonology (KZ)"),
    ("radio.zhang", "consultant, radiology (CN)"),
    ("infect.haddad", "consultant, infectious diseases (KZ)"),
    ("officer", "public-health officer (KZ)"),
    (
        "pharmacist",
        "pharmacist, Taldykorgan District Hospital (KZ): looks up and dispenses prescriptions",
    ),
    ("patient", "patient Aigerim Nurlanova (KZ)"),
];

fn inst(
    name: &str,
    level: InstitutionLevel,
    country: &str,
    parent: Option<InstitutionId>,
    tz: &str,
) -> Result<Institution, StoreError> {
    Ok(Institution {
        id: InstitutionId::new(),
        name: name.into(),
        level,
        country: country
            .parse()
            .map_err(|e: ParseError| StoreError::Corrupt(e.to_string()))?,
        parent,
        timezone: tz.into(),
    })
}

fn hours(start: u32, end: u32, days: &[Weekday]) -> WorkingHours {
    WorkingHours {
        days: days.to_vec(),
        start: NaiveTime::from_hms_opt(start, 0, 0).unwrap_or_default(),
        end: NaiveTime::from_hms_opt(end, 0, 0).unwrap_or_default(),
    }
}

const WEEKDAYS: &[Weekday] = &[
    Weekday::Mon,
    Weekday::Tue,
    Weekday::Wed,
    Weekday::Thu,
    Weekday::Fri,
];
const ALL_WEEK: &[Weekday] = &[
    Weekday::Mon,
    Weekday::Tue,
    Weekday::Wed,
    Weekday::Thu,
    Weekday::Fri,
    Weekday::Sat,
    Weekday::Sun,
];

fn seed_event(
    actor: &User,
    action: AuditAction,
    etype: &str,
    id: impl ToString,
    patient: Option<PatientId>,
    detail: &str,
    at: DateTime<Utc>,
) -> AuditEvent {
    AuditEvent {
        at,
        actor_user: Some(actor.id),
        actor_name: actor.display_name.clone(),
        actor_institution: Some(actor.institution_id),
        actor_role: Some(actor.role),
        action,
        entity_type: etype.into(),
        entity_id: id.to_string(),
        patient_id: patient,
        purpose: "treatment".into(),
        detail: detail.into(),
        subjects: Vec::new(),
    }
}

/// Seed the demo unless the store already holds institutions. Returns whether it seeded.
pub async fn seed(store: &dyn Store, sla: &SlaPolicy) -> Result<bool, StoreError> {
    if !store.list_institutions().await?.is_empty() {
        return Ok(false);
    }
    let ntc = inst(
        "National Telemedicine Center",
        InstitutionLevel::NationalCenter,
        "KZ",
        None,
        "Asia/Almaty",
    )?;
    let almaty = inst(
        "Almaty Regional Telemedicine Platform",
        InstitutionLevel::RegionalPlatform,
        "KZ",
        Some(ntc.id),
        "Asia/Almaty",
    )?;
    let taldykorgan = inst(
        "Taldykorgan District Hospital",
        InstitutionLevel::Hospital,
        "KZ",
        Some(almaty.id),
        "Asia/Almaty",
    )?;
    let xinjiang = inst(
        "Xinjiang Regional Telemedicine Platform",
        InstitutionLevel::RegionalPlatform,
        "CN",
        None,
        "Asia/Urumqi",
    )?;
    let kashgar = inst(
        "Kashgar Prefecture Hospital",
        InstitutionLevel::Hospital,
        "CN",
        Some(xinjiang.id),
        "Asia/Urumqi",
    )?;
    let samarkand = inst(
        "Samarkand District Hospital",
        InstitutionLevel::Hospital,
        "UZ",
        None,
        "Asia/Samarkand",
    )?;
    for i in [&ntc, &almaty, &taldykorgan, &xinjiang, &kashgar, &samarkand] {
        store.insert_institution(i, vec![]).await?;
    }

    // One Argon2id hash for every demo account keeps seeding fast; each account still has its own record.
    let hash = auth::hash_password(DEMO_PASSWORD).map_err(|e| StoreError::Database(e.message))?;
    let mk = |username: &str,
              name: &str,
              inst: &Institution,
              role: Role,
              profile: Option<PractitionerProfile>,
              locale: &str| User {
        id: UserId::new(),
        username: username.into(),
        display_name: name.into(),
        institution_id: inst.id,
        role,
        patient_id: None,
        profile,
        locale: locale.into(),
        active: true,
    };
    let prof = |spec: &[&str], langs: &[&str], tz: &str, h: WorkingHours, cap: u32| {
        Some(PractitionerProfile {
            specialties: spec.iter().map(|s| s.to_string()).collect(),
            languages: langs.iter().map(|s| s.to_string()).collect(),
            timezone: tz.into(),
            hours: h,
            capacity: cap,
        })
    };
    let admin = mk("admin", "Node Administrator", &ntc, Role::Admin, None, "en");
    let coordinator = mk(
        "coordinator",
        "Dana Seitkali",
        &ntc,
        Role::Coordinator,
        None,
        "ru",
    );
    let aliyev = mk(
        "dr.aliyev",
        "Dr Ruslan Aliyev",
        &taldykorgan,
        Role::Referrer,
        prof(
            &["internal_medicine"],
            &["kk", "ru"],
            "Asia/Almaty",
            hours(8, 18, WEEKDAYS),
            0,
        ),
        "ru",
    );
    let wang = mk(
        "dr.wang",
        "Dr Wang Fang",
        &kashgar,
        Role::Referrer,
        prof(
            &["internal_medicine"],
            &["zh", "ug"],
            "Asia/Urumqi",
            hours(9, 18, WEEKDAYS),
            0,
        ),
        "zh-CN",
    );
    let karimova = mk(
        "dr.karimova",
        "Dr Nodira Karimova",
        &samarkand,
        Role::Referrer,
        prof(
            &["paediatrics"],
            &["uz", "ru"],
            "Asia/Samarkand",
            hours(8, 17, WEEKDAYS),
            0,
        ),
        "ru",
    );
    let nurlanov = mk(
        "cardio.nurlanov",
        "Prof Askar Nurlanov",
        &ntc,
        Role::Consultant,
        prof(
            &["cardiology", "internal_medicine"],
            &["kk", "ru", "en"],
            "Asia/Almaty",
            hours(8, 20, WEEKDAYS),
            8,
        ),
        "ru",
    );
    let li = mk(
        "cardio.li",
        "Dr Li Wei",
        &xinjiang,
        Role::Consultant,
        prof(
            &["cardiology"],
            &["zh", "en"],
            "Asia/Shanghai",
            hours(8, 18, WEEKDAYS),
            6,
        ),
        "zh-CN",
    );
    let petrova = mk(
        "pulm.petrova",
        "Dr Elena Petrova",
        &ntc,
        Role::Consultant,
        prof(
            &["pulmonology", "infectious_diseases"],
            &["ru", "en"],
            "Asia/Almaty",
            hours(0, 24, ALL_WEEK),
            10,
        ),
        "ru",
    );
    let zhang = mk(
        "radio.zhang",
        "Dr Zhang Min",
        &xinjiang,
        Role::Consultant,
        prof(
            &["radiology"],
            &["zh", "en", "ru"],
            "Asia/Urumqi",
            hours(8, 22, ALL_WEEK),
            12,
        ),
        "zh-CN",
    );
    let haddad = mk(
        "infect.haddad",
        "Dr Layla Haddad",
        &ntc,
        Role::Consultant,
        prof(
            &["infectious_diseases", "internal_medicine"],
            &["ar", "en", "ru"],
            "Asia/Almaty",
            hours(9, 17, WEEKDAYS),
            6,
        ),
        "ar",
    );
    let yusupov = mk(
        "neuro.yusupov",
        "Dr Timur Yusupov",
        &almaty,
        Role::Consultant,
        prof(
            &["neurology"],
            &["uz", "ru", "en"],
            "Asia/Almaty",
            hours(8, 17, WEEKDAYS),
            5,
        ),
        "ru",
    );
    let ospanova = mk(
        "paed.ospanova",
        "Dr Saule Ospanova",
        &almaty,
        Role::Consultant,
        prof(
            &["paediatrics", "dermatology"],
            &["kk", "ru", "en"],
            "Asia/Almaty",
            hours(8, 17, WEEKDAYS),
            5,
        ),
        "ru",
    );
    let officer = mk(
        "officer",
        "Marat Dzhaksybekov",
        &ntc,
        Role::PublicHealthOfficer,
        None,
        "ru",
    );
    // The pharmacy of the district hospital: looks prescriptions up by their code or id and records the
    // dispensing; sees no patient record.
    let pharmacist = mk(
        "pharmacist",
        "Saule Bekova",
        &taldykorgan,
        Role::Pharmacist,
        None,
        "ru",
    );
    let users = [
        &admin,
        &pharmacist,
        &coordinator,
        &aliyev,
        &wang,
        &karimova,
        &nurlanov,
        &li,
        &petrova,
        &zhang,
        &haddad,
        &yusupov,
        &ospanova,
        &officer,
    ];
    for u in users {
        store.insert_user(u, Some(&hash), vec![]).await?;
    }
    // Standing teams that routing can propose as a whole.
    let teams = [
        Team {
            id: TeamId::new(),
            institution_id: ntc.id,
            name: "Heart Team (NTC)".into(),
            specialty: "cardiology".into(),
            lead_id: nurlanov.id,
            member_ids: vec![zhang.id, petrova.id],
        },
        Team {
            id: TeamId::new(),
            institution_id: ospanova.institution_id,
            name: "Paediatric Neuro-Infection Board".into(),
            specialty: "paediatrics".into(),
            lead_id: ospanova.id,
            member_ids: vec![yusupov.id, haddad.id],
        },
    ];
    for t in &teams {
        store.insert_team(t, vec![]).await?;
    }

    let pat = |inst: &Institution,
               given: &str,
               family: &str,
               birth: (i32, u32, u32),
               sex: Sex,
               langs: &[&str]| Patient {
        id: PatientId::new(),
        institution_id: inst.id,
        given_name: given.into(),
        family_name: family.into(),
        birth_date: NaiveDate::from_ymd_opt(birth.0, birth.1, birth.2).unwrap_or_default(),
        sex,
        national_id: None,
        languages: langs.iter().map(|s| s.to_string()).collect(),
    };
    let aigerim = pat(
        &taldykorgan,
        "Aigerim",
        "Nurlanova",
        (1968, 5, 17),
        Sex::Female,
        &["kk", "ru"],
    );
    let bolat = pat(
        &taldykorgan,
        "Bolat",
        "Serikbayev",
        (1955, 11, 2),
        Sex::Male,
        &["kk", "ru"],
    );
    let gulnara = pat(
        &taldykorgan,
        "Gulnara",
        "Abenova",
        (1990, 2, 8),
        Sex::Female,
        &["kk"],
    );
    let yerlan = pat(
        &taldykorgan,
        "Yerlan",
        "Tokayev",
        (1979, 7, 30),
        Sex::Male,
        &["kk", "ru"],
    );
    let alim = pat(
        &kashgar,
        "Alim",
        "Tursun",
        (1962, 3, 14),
        Sex::Male,
        &["ug", "zh"],
    );
    let meihua = pat(&kashgar, "Mei", "Hua", (1984, 9, 21), Sex::Female, &["zh"]);
    let jasur = pat(
        &samarkand,
        "Jasur",
        "Rakhimov",
        (2019, 1, 5),
        Sex::Male,
        &["uz", "ru"],
    );
    let malika = pat(
        &samarkand,
        "Malika",
        "Tosheva",
        (2001, 6, 12),
        Sex::Female,
        &["uz"],
    );
    let now = Utc::now();
    for (p, by) in [
        (&aigerim, &aliyev),
        (&bolat, &aliyev),
        (&gulnara, &aliyev),
        (&yerlan, &aliyev),
        (&alim, &wang),
        (&meihua, &wang),
        (&jasur, &karimova),
        (&malika, &karimova),
    ] {
        store
            .insert_patient(
                p,
                vec![seed_event(
                    by,
                    AuditAction::Create,
                    "patient",
                    p.id,
                    Some(p.id),
                    "",
                    now - Duration::days(30),
                )],
            )
            .await?;
        let scopes: &[ConsentScope] = if p.id == yerlan.id {
            &[]
        } else if p.institution_id == kashgar.id {
            &[ConsentScope::Consultation]
        } else {
            &[ConsentScope::Consultation, ConsentScope::CrossBorder]
        };
        for scope in scopes {
            let c = Consent {
                id: ConsentId::new(),
                patient_id: p.id,
                scope: *scope,
                granted: true,
                recorded_by: by.id,
                recorded_at: now - Duration::days(29),
                note: "signed form on file".into(),
            };
            store
                .insert_consent(
                    &c,
                    vec![seed_event(
                        by,
                        AuditAction::Create,
                        "consent",
                        c.id,
                        Some(p.id),
                        scope.as_str(),
                        c.recorded_at,
                    )],
                )
                .await?;
        }
    }
    let mut patient_user = mk(
        "patient",
        "Aigerim Nurlanova",
        &taldykorgan,
        Role::Patient,
        None,
        "ru",
    );
    patient_user.patient_id = Some(aigerim.id);
    store
        .insert_user(&patient_user, Some(&hash), vec![])
        .await?;

    // Consultations in every state, each walked through the state machine with realistic timestamps.
    struct Step<'a>(&'a User, ConsultationEvent, i64);
    let story = |referrer: &User,
                 patient: &Patient,
                 q: &str,
                 summary: &str,
                 specialty: &str,
                 urgency: Urgency,
                 langs: &[&str],
                 started_hours_ago: i64| {
        Consultation::draft(
            referrer.institution_id,
            referrer.id,
            patient.id,
            q.into(),
            summary.into(),
            specialty.into(),
            urgency,
            langs.iter().map(|s| s.to_string()).collect(),
            now - Duration::hours(started_hours_ago),
        )
    };
    let report = |f: &str, i: &str, r: &str| ConsultationEvent::Report {
        findings: f.into(),
        impression: i.into(),
        recommendations: r.into(),
    };
    let assign = |u: &User| ConsultationEvent::Assign {
        consultant: u.id,
        automatic: true,
        team: None,
    };
    let submit = ConsultationEvent::Submit { consent: true };

    // (the case as drafted, the steps of its story, the thread)
    type Story<'a> = (Consultation, Vec<Step<'a>>, Vec<(&'a User, &'a str)>);
    let cases: Vec<Story> = vec![
        (story(&aliyev, &yerlan, "Recurrent syncope in a 46-year-old: structural cause?", "Three episodes in 2 months, ECG: sinus rhythm, incomplete RBBB.", "cardiology", Urgency::Routine, &["ru", "kk"], 2), vec![], vec![]),
        (story(&aliyev, &bolat, "Progressive dyspnoea, bilateral infiltrates on chest X-ray", "70 y, ex-smoker, SpO2 91 % on air, CRP 84.", "pulmonology", Urgency::Urgent, &["ru"], 6), vec![Step(&aliyev, submit.clone(), 5)], vec![]),
        (story(&wang, &alim, "Atrial fibrillation with rapid ventricular rate, anticoagulation choice", "64 y, CHA2DS2-VASc 3, eGFR 48.", "cardiology", Urgency::Urgent, &["zh", "en"], 3), vec![Step(&wang, submit.clone(), 3), Step(&wang, assign(&li), 3)], vec![]),
        (story(&aliyev, &aigerim, "Chest pain with ST depression V4–V6: NSTEMI management", "58 y, diabetic, troponin rising (32 → 110 ng/L).", "cardiology", Urgency::Emergency, &["ru", "en"], 30), vec![Step(&aliyev, submit.clone(), 30), Step(&aliyev, assign(&nurlanov), 30), Step(&nurlanov, ConsultationEvent::Accept, 29), Step(&nurlanov, ConsultationEvent::Invite { member: zhang.id }, 29)], vec![(&aliyev, "ECG and troponin series attached in the chart."), (&nurlanov, "Start dual antiplatelet therapy; I asked radiology to review the CT."), (&zhang, "CT angiography: no dissection.")]),
        (story(&karimova, &jasur, "Fever and rash for 5 days in a 7-year-old", "Conjunctivitis, cracked lips, cervical lymphadenopathy.", "paediatrics", Urgency::Urgent, &["ru", "uz"], 50), vec![Step(&karimova, submit.clone(), 50), Step(&karimova, assign(&ospanova), 50), Step(&ospanova, ConsultationEvent::Accept, 48), Step(&ospanova, report("Fever ≥5 days with 4 of 5 principal criteria.", "Kawasaki disease, complete form.", "IVIG 2 g/kg and aspirin; echocardiography within 48 h; refer to the regional center."), 40)], vec![(&karimova, "Parents consent to transfer if needed.")]),
        (story(&wang, &meihua, "Persistent cough 6 weeks, night sweats", "Sputum smear negative ×2, CXR upper-lobe opacity.", "infectious_diseases", Urgency::Routine, &["zh", "en"], 120), vec![Step(&wang, submit.clone(), 120), Step(&wang, assign(&haddad), 120), Step(&haddad, ConsultationEvent::Accept, 110), Step(&haddad, report("Upper-lobe opacity, smear-negative, B symptoms.", "Probable pulmonary tuberculosis.", "GeneXpert MTB/RIF on induced sputum; start treatment if positive; notify public health."), 90), Step(&wang, ConsultationEvent::Acknowledge, 80)], vec![]),
        (story(&aliyev, &gulnara, "Thyroid nodule 2 cm, TI-RADS 4", "Euthyroid, no family history.", "radiology", Urgency::Routine, &["ru"], 400), vec![Step(&aliyev, submit.clone(), 400), Step(&aliyev, assign(&zhang), 400), Step(&zhang, ConsultationEvent::Accept, 390), Step(&zhang, report("Solid hypoechoic nodule 21 mm, smooth margins, no microcalcifications.", "TI-RADS 4, moderately suspicious.", "Fine-needle aspiration."), 380), Step(&aliyev, ConsultationEvent::Acknowledge, 370), Step(&aliyev, ConsultationEvent::RecordOutcome { status: "improved".into(), note: "FNA benign (Bethesda II); follow-up ultrasound in 12 months.".into() }, 100)], vec![]),
        (story(&karimova, &malika, "Headache with visual aura", "Resolved before the call.", "neurology", Urgency::Routine, &["ru"], 200), vec![Step(&karimova, submit.clone(), 200), Step(&karimova, ConsultationEvent::Cancel { reason: "Seen in person by the regional neurologist.".into() }, 190)], vec![]),
        // Submitted three days ago as urgent and never answered: overdue on the coordinator's board.
        (story(&aliyev, &bolat, "Worsening renal function on ACE inhibitor", "Creatinine 140 → 260 µmol/L in 10 days.", "nephrology", Urgency::Urgent, &["ru"], 72), vec![Step(&aliyev, submit.clone(), 72)], vec![]),
    ];

    for (mut c, steps, messages) in cases {
        let start = c.created_at;
        store
            .insert_consultation(
                &c,
                vec![seed_event(
                    users_by_id(&users, &patient_user, c.referrer_id),
                    AuditAction::Create,
                    "consultation",
                    c.id,
                    Some(c.patient_id),
                    "draft",
                    start,
                )],
            )
            .await?;
        for Step(who, ev, hours_ago) in steps {
            let at = now - Duration::hours(hours_ago);
            let v = c.version;
            c.apply(&Actor::from(who), &ev, at, sla)
                .map_err(|e| StoreError::Corrupt(format!("demo story: {e}")))?;
            store
                .update_consultation(
                    &c,
                    v,
                    vec![seed_event(
                        who,
                        AuditAction::Update,
                        "consultation",
                        c.id,
                        Some(c.patient_id),
                        ev.name(),
                        at,
                    )],
                )
                .await?;
        }
        for (i, (who, body)) in messages.into_iter().enumerate() {
            let m = Message {
                id: MessageId::new(),
                consultation_id: c.id,
                parent_id: None,
                author_id: who.id,
                author_name: who.display_name.clone(),
                body: body.into(),
                created_at: start + Duration::minutes(30 * (i64::try_from(i).unwrap_or(0) + 1)),
            };
            store
                .insert_message(
                    &m,
                    vec![seed_event(
                        who,
                        AuditAction::Create,
                        "message",
                        m.id,
                        Some(c.patient_id),
                        "",
                        m.created_at,
                    )],
                )
                .await?;
        }
    }
    crate::surveil::demo::seed(store, "KZ", true).await?;
    // e-Prescription: the shipped starter formulary and check tables.
    crate::rx::seed_starter(store).await?;
    Ok(true)
}

fn users_by_id<'a>(users: &[&'a User], extra: &'a User, id: UserId) -> &'a User {
    users.iter().copied().find(|u| u.id == id).unwrap_or(extra)
}
