//! Domain → FHIR R4 mapping. Every function here is pure; the handlers decide who may see what.
//!
//! Mapping choices (documented in the README as well):
//! - `ServiceRequest.status`: draft → `draft`; submitted, assigned, in_progress → `active`; reported, acknowledged,
//!   closed → `completed`; cancelled → `revoked`.
//! - `ServiceRequest.priority` ↔ urgency: routine ↔ `routine`, urgent ↔ `urgent`, emergency ↔ `stat`
//!   (`asap` is accepted on input as urgent).
//! - `Task.status` ↔ consultation state: draft → `draft`, submitted → `requested`, assigned → `received` (a
//!   consultant was offered the case and evaluates it), in_progress → `in-progress`, reported / acknowledged /
//!   closed → `completed`, cancelled → `cancelled`. The exact domain state is kept in `Task.businessStatus`, so
//!   nothing is lost; `Task.output` carries the report (a `DiagnosticReport` reference) and, once closed, the
//!   outcome.

use caravan_domain::*;
use caravan_store::{Attachment, Message};
use chrono::{DateTime, SecondsFormat, Utc};
use fhirbolt::model::r4::resources as fr;
use fhirbolt::model::r4::types as ft;

/// Code systems this node defines. They are URLs under the node's own namespace, not HL7's.
pub const SPECIALTY_SYSTEM: &str = "https://caravan.health/fhir/CodeSystem/specialty";
pub const STATE_SYSTEM: &str = "https://caravan.health/fhir/CodeSystem/consultation-state";
pub const LEVEL_SYSTEM: &str = "https://caravan.health/fhir/CodeSystem/institution-level";
pub const ROLE_SYSTEM: &str = "https://caravan.health/fhir/CodeSystem/role";
pub const CONSENT_SCOPE_SYSTEM: &str = "https://caravan.health/fhir/CodeSystem/consent-scope";
pub const AUDIT_ACTION_SYSTEM: &str = "https://caravan.health/fhir/CodeSystem/audit-action";
pub const USERNAME_SYSTEM: &str = "https://caravan.health/fhir/sid/username";
pub const NATIONAL_ID_SYSTEM: &str = "https://caravan.health/fhir/sid/national-id";
pub const BCP47: &str = "urn:ietf:bcp:47";
pub const SNOMED: &str = "http://snomed.info/sct";

pub fn s(v: impl Into<String>) -> ft::String {
    let v: String = v.into();
    v.into()
}

pub fn instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn coding(system: &str, code: &str, display: Option<&str>) -> ft::Coding {
    ft::Coding {
        system: Some(system.into()),
        code: Some(code.into()),
        display: display.map(s),
        ..Default::default()
    }
}

pub fn concept(system: &str, code: &str, display: Option<&str>) -> ft::CodeableConcept {
    ft::CodeableConcept {
        coding: vec![coding(system, code, display)],
        text: display.map(s),
        ..Default::default()
    }
}

pub fn text_concept(text: &str) -> ft::CodeableConcept {
    ft::CodeableConcept {
        text: Some(s(text)),
        ..Default::default()
    }
}

pub fn reference(rtype: &str, id: impl std::fmt::Display, display: Option<&str>) -> ft::Reference {
    ft::Reference {
        reference: Some(s(format!("{rtype}/{id}"))),
        display: display.map(s),
        ..Default::default()
    }
}

fn meta(version: Option<i64>, updated: Option<DateTime<Utc>>) -> Option<Box<ft::Meta>> {
    Some(Box::new(ft::Meta {
        version_id: version.map(|v| v.to_string().into()),
        last_updated: updated.map(|t| instant(t).into()),
        ..Default::default()
    }))
}

pub fn patient(p: &Patient) -> fr::Patient {
    fr::Patient {
        id: Some(p.id.to_string().into()),
        identifier: p
            .national_id
            .iter()
            .map(|n| ft::Identifier {
                system: Some(NATIONAL_ID_SYSTEM.into()),
                value: Some(s(n.as_str())),
                ..Default::default()
            })
            .collect(),
        active: Some(true.into()),
        name: vec![ft::HumanName {
            r#use: Some("official".into()),
            family: Some(s(p.family_name.as_str())),
            given: vec![s(p.given_name.as_str())],
            text: Some(s(format!("{} {}", p.given_name, p.family_name))),
            ..Default::default()
        }],
        gender: Some(p.sex.as_str().into()),
        birth_date: Some(p.birth_date.format("%Y-%m-%d").to_string().into()),
        communication: p
            .languages
            .iter()
            .enumerate()
            .map(|(i, l)| fr::PatientCommunication {
                language: Box::new(concept(BCP47, l, None)),
                preferred: (i == 0).then(|| true.into()),
                ..Default::default()
            })
            .collect(),
        managing_organization: Some(Box::new(reference("Organization", p.institution_id, None))),
        ..Default::default()
    }
}

pub fn organization(i: &Institution) -> fr::Organization {
    let level = match i.level {
        InstitutionLevel::NationalCenter => "National telemedicine center",
        InstitutionLevel::RegionalPlatform => "Regional platform",
        InstitutionLevel::Hospital => "Hospital",
    };
    fr::Organization {
        id: Some(i.id.to_string().into()),
        active: Some(true.into()),
        r#type: vec![
            concept(
                "http://terminology.hl7.org/CodeSystem/organization-type",
                "prov",
                Some("Healthcare Provider"),
            ),
            concept(LEVEL_SYSTEM, i.level.as_str(), Some(level)),
        ],
        name: Some(s(i.name.as_str())),
        address: vec![ft::Address {
            country: Some(s(i.country.as_str())),
            ..Default::default()
        }],
        part_of: i
            .parent
            .map(|p| Box::new(reference("Organization", p, None))),
        ..Default::default()
    }
}

pub fn practitioner(u: &User) -> fr::Practitioner {
    fr::Practitioner {
        id: Some(u.id.to_string().into()),
        identifier: vec![ft::Identifier {
            system: Some(USERNAME_SYSTEM.into()),
            value: Some(s(u.username.as_str())),
            ..Default::default()
        }],
        active: Some(u.active.into()),
        name: vec![ft::HumanName {
            text: Some(s(u.display_name.as_str())),
            ..Default::default()
        }],
        communication: u
            .profile
            .iter()
            .flat_map(|p| p.languages.iter())
            .map(|l| concept(BCP47, l, None))
            .collect(),
        ..Default::default()
    }
}

fn weekday(d: chrono::Weekday) -> &'static str {
    use chrono::Weekday::*;
    match d {
        Mon => "mon",
        Tue => "tue",
        Wed => "wed",
        Thu => "thu",
        Fri => "fri",
        Sat => "sat",
        Sun => "sun",
    }
}

/// One role per user in Caravan, so the PractitionerRole shares the user's id.
pub fn practitioner_role(u: &User) -> fr::PractitionerRole {
    let profile = u.profile.clone().unwrap_or_default();
    let all_day = profile.hours.start == profile.hours.end
        || (profile.hours.start == chrono::NaiveTime::MIN
            && profile.hours.end >= chrono::NaiveTime::from_hms_opt(23, 59, 0).unwrap_or_default());
    let available = (u.profile.is_some() && !profile.hours.days.is_empty()).then(|| {
        fr::PractitionerRoleAvailableTime {
            days_of_week: profile
                .hours
                .days
                .iter()
                .map(|d| weekday(*d).into())
                .collect(),
            all_day: all_day.then(|| true.into()),
            available_start_time: (!all_day)
                .then(|| profile.hours.start.format("%H:%M:%S").to_string().into()),
            available_end_time: (!all_day)
                .then(|| profile.hours.end.format("%H:%M:%S").to_string().into()),
            ..Default::default()
        }
    });
    fr::PractitionerRole {
        id: Some(u.id.to_string().into()),
        active: Some(u.active.into()),
        practitioner: Some(Box::new(reference(
            "Practitioner",
            u.id,
            Some(&u.display_name),
        ))),
        organization: Some(Box::new(reference("Organization", u.institution_id, None))),
        code: vec![concept(ROLE_SYSTEM, u.role.as_str(), None)],
        specialty: profile
            .specialties
            .iter()
            .map(|sp| concept(SPECIALTY_SYSTEM, sp, None))
            .collect(),
        available_time: available.into_iter().collect(),
        ..Default::default()
    }
}

pub fn sr_status(state: ConsultationState) -> &'static str {
    use ConsultationState::*;
    match state {
        Draft => "draft",
        Submitted | Assigned | InProgress => "active",
        Reported | Acknowledged | Closed => "completed",
        Cancelled => "revoked",
    }
}

/// The consultation states a `ServiceRequest.status` search value stands for.
pub fn states_for_sr_status(status: &str) -> Option<Vec<ConsultationState>> {
    let states = ConsultationState::ALL
        .into_iter()
        .filter(|st| sr_status(*st) == status)
        .collect::<Vec<_>>();
    (!states.is_empty()).then_some(states)
}

pub fn task_status(state: ConsultationState) -> &'static str {
    use ConsultationState::*;
    match state {
        Draft => "draft",
        Submitted => "requested",
        Assigned => "received",
        InProgress => "in-progress",
        Reported | Acknowledged | Closed => "completed",
        Cancelled => "cancelled",
    }
}

pub fn states_for_task_status(status: &str) -> Option<Vec<ConsultationState>> {
    let states = ConsultationState::ALL
        .into_iter()
        .filter(|st| task_status(*st) == status)
        .collect::<Vec<_>>();
    (!states.is_empty()).then_some(states)
}

pub fn priority(u: Urgency) -> &'static str {
    match u {
        Urgency::Routine => "routine",
        Urgency::Urgent => "urgent",
        Urgency::Emergency => "stat",
    }
}

pub fn urgency_from_priority(p: &str) -> Option<Urgency> {
    match p {
        "routine" => Some(Urgency::Routine),
        "urgent" | "asap" => Some(Urgency::Urgent),
        "stat" => Some(Urgency::Emergency),
        _ => None,
    }
}

fn performers(c: &Consultation) -> Vec<ft::Reference> {
    let mut ids: Vec<UserId> = c.assigned_to.into_iter().collect();
    for m in &c.panel {
        if !ids.contains(&m.user_id) {
            ids.push(m.user_id);
        }
    }
    ids.into_iter()
        .map(|id| reference("Practitioner", id, None))
        .collect()
}

pub fn service_request(c: &Consultation) -> fr::ServiceRequest {
    fr::ServiceRequest {
        id: Some(c.id.to_string().into()),
        meta: meta(Some(c.version), None),
        status: sr_status(c.state).into(),
        intent: "order".into(),
        category: vec![concept(SNOMED, "11429006", Some("Consultation"))],
        priority: Some(priority(c.urgency).into()),
        code: Some(Box::new(concept(
            SPECIALTY_SYSTEM,
            &c.specialty,
            Some(&format!("Remote consultation: {}", c.specialty)),
        ))),
        subject: Box::new(reference("Patient", c.patient_id, None)),
        occurrence: c.due_at.map(|due| {
            fr::ServiceRequestOccurrence::Period(Box::new(ft::Period {
                start: c.submitted_at.map(|t| instant(t).into()),
                end: Some(instant(due).into()),
                ..Default::default()
            }))
        }),
        authored_on: Some(instant(c.created_at).into()),
        requester: Some(Box::new(reference("Practitioner", c.referrer_id, None))),
        performer_type: Some(Box::new(concept(SPECIALTY_SYSTEM, &c.specialty, None))),
        performer: performers(c),
        reason_code: vec![text_concept(&c.question)],
        note: (!c.clinical_summary.is_empty())
            .then(|| ft::Annotation {
                text: c.clinical_summary.as_str().into(),
                ..Default::default()
            })
            .into_iter()
            .collect(),
        ..Default::default()
    }
}

pub fn task(c: &Consultation) -> fr::Task {
    let mut output = Vec::new();
    if c.report.is_some() {
        output.push(fr::TaskOutput {
            r#type: Box::new(text_concept("report")),
            value: fr::TaskOutputValue::Reference(Box::new(reference(
                "DiagnosticReport",
                c.id,
                None,
            ))),
            ..Default::default()
        });
    }
    if let Some(o) = &c.outcome {
        output.push(fr::TaskOutput {
            r#type: Box::new(text_concept("outcome")),
            value: fr::TaskOutputValue::CodeableConcept(Box::new(ft::CodeableConcept {
                coding: vec![coding(
                    "https://caravan.health/fhir/CodeSystem/outcome",
                    &o.status,
                    None,
                )],
                text: (!o.note.is_empty()).then(|| s(o.note.as_str())),
                ..Default::default()
            })),
            ..Default::default()
        });
    }
    fr::Task {
        id: Some(c.id.to_string().into()),
        meta: meta(Some(c.version), None),
        based_on: vec![reference("ServiceRequest", c.id, None)],
        status: task_status(c.state).into(),
        business_status: Some(Box::new(concept(STATE_SYSTEM, c.state.as_str(), None))),
        intent: "order".into(),
        priority: Some(priority(c.urgency).into()),
        focus: Some(Box::new(reference("ServiceRequest", c.id, None))),
        r#for: Some(Box::new(reference("Patient", c.patient_id, None))),
        execution_period: c.submitted_at.map(|start| {
            Box::new(ft::Period {
                start: Some(instant(start).into()),
                end: c.closed_at.map(|t| instant(t).into()),
                ..Default::default()
            })
        }),
        authored_on: Some(instant(c.created_at).into()),
        requester: Some(Box::new(reference("Practitioner", c.referrer_id, None))),
        owner: c
            .assigned_to
            .map(|u| Box::new(reference("Practitioner", u, None))),
        restriction: c.due_at.map(|due| fr::TaskRestriction {
            period: Some(Box::new(ft::Period {
                end: Some(instant(due).into()),
                ..Default::default()
            })),
            ..Default::default()
        }),
        output,
        ..Default::default()
    }
}

pub fn communication(m: &Message, c: &Consultation) -> fr::Communication {
    fr::Communication {
        id: Some(m.id.to_string().into()),
        based_on: vec![reference("ServiceRequest", m.consultation_id, None)],
        in_response_to: m
            .parent_id
            .map(|p| reference("Communication", p, None))
            .into_iter()
            .collect(),
        status: "completed".into(),
        subject: Some(Box::new(reference("Patient", c.patient_id, None))),
        sent: Some(instant(m.created_at).into()),
        sender: Some(Box::new(reference(
            "Practitioner",
            m.author_id,
            Some(&m.author_name),
        ))),
        payload: vec![fr::CommunicationPayload {
            content: fr::CommunicationPayloadContent::String(s(m.body.as_str())),
            ..Default::default()
        }],
        ..Default::default()
    }
}

pub const REPORT_SECTIONS: [&str; 3] = ["findings", "impression", "recommendations"];

fn text_attachment(title: &str, text: &str) -> ft::Attachment {
    use base64::Engine;
    ft::Attachment {
        content_type: Some("text/plain; charset=utf-8".into()),
        data: Some(
            base64::engine::general_purpose::STANDARD
                .encode(text.as_bytes())
                .into(),
        ),
        title: Some(s(title)),
        ..Default::default()
    }
}

/// The report of a consultation shares the consultation's id. `conclusion` is the impression; the three sections
/// are also given in full as `presentedForm` text attachments titled `findings`, `impression`, `recommendations`.
pub fn diagnostic_report(c: &Consultation, r: &Report) -> fr::DiagnosticReport {
    // A Caravan report is issued once and never amended, so it is final from the moment it exists.
    let status = "final";
    fr::DiagnosticReport {
        id: Some(c.id.to_string().into()),
        based_on: vec![reference("ServiceRequest", c.id, None)],
        status: status.into(),
        category: vec![concept(SNOMED, "11429006", Some("Consultation"))],
        code: Box::new(concept(
            SPECIALTY_SYSTEM,
            &c.specialty,
            Some(&format!("Consultation report: {}", c.specialty)),
        )),
        subject: Some(Box::new(reference("Patient", c.patient_id, None))),
        issued: Some(instant(r.issued_at).into()),
        performer: vec![reference("Practitioner", r.author_id, None)],
        conclusion: Some(s(r.impression.as_str())),
        presented_form: vec![
            text_attachment("findings", &r.findings),
            text_attachment("impression", &r.impression),
            text_attachment("recommendations", &r.recommendations),
        ],
        ..Default::default()
    }
}

pub fn consent(c: &Consent) -> fr::Consent {
    fr::Consent {
        id: Some(c.id.to_string().into()),
        status: "active".into(),
        scope: Box::new(concept(
            "http://terminology.hl7.org/CodeSystem/consentscope",
            "patient-privacy",
            Some("Privacy Consent"),
        )),
        category: vec![concept(CONSENT_SCOPE_SYSTEM, c.scope.as_str(), None)],
        patient: Some(Box::new(reference("Patient", c.patient_id, None))),
        date_time: Some(instant(c.recorded_at).into()),
        performer: vec![reference("Practitioner", c.recorded_by, None)],
        policy_rule: Some(Box::new(concept(
            "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "OPTIN",
            None,
        ))),
        provision: Some(fr::ConsentProvision {
            r#type: Some(if c.granted { "permit" } else { "deny" }.into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn document_reference(a: &Attachment, c: &Consultation) -> fr::DocumentReference {
    use base64::Engine;
    let hash = hex_to_base64(&a.sha256);
    fr::DocumentReference {
        id: Some(a.id.to_string().into()),
        status: "current".into(),
        subject: Some(Box::new(reference("Patient", c.patient_id, None))),
        date: Some(instant(a.created_at).into()),
        author: vec![reference("Practitioner", a.uploaded_by, None)],
        description: Some(s(a.filename.as_str())),
        content: vec![fr::DocumentReferenceContent {
            attachment: Box::new(ft::Attachment {
                content_type: Some(a.content_type.as_str().into()),
                url: Some(format!("Binary/{}", a.id).into()),
                size: u32::try_from(a.size).ok().map(Into::into),
                hash: hash.map(|h| base64::engine::general_purpose::STANDARD.encode(h).into()),
                title: Some(s(a.filename.as_str())),
                creation: Some(instant(a.created_at).into()),
                ..Default::default()
            }),
            ..Default::default()
        }],
        context: Some(fr::DocumentReferenceContext {
            related: vec![reference("ServiceRequest", a.consultation_id, None)],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// FHIR's `Attachment.hash` is the SHA-1 in base64; Caravan keeps SHA-256. The bytes are given anyway because a
/// stronger digest verifies the content just as well; the README notes the deviation.
fn hex_to_base64(hex: &str) -> Option<Vec<u8>> {
    if hex.len() % 2 != 0 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

pub fn binary(a: &Attachment, bytes: &[u8]) -> fr::Binary {
    use base64::Engine;
    fr::Binary {
        id: Some(a.id.to_string().into()),
        content_type: a.content_type.as_str().into(),
        data: Some(
            base64::engine::general_purpose::STANDARD
                .encode(bytes)
                .into(),
        ),
        ..Default::default()
    }
}

/// The FHIR resource type an audited entity type corresponds to, where there is one.
fn entity_resource(entity_type: &str) -> Option<&'static str> {
    Some(match entity_type {
        "patient" => "Patient",
        "consultation" => "ServiceRequest",
        "message" => "Communication",
        "attachment" => "DocumentReference",
        "consent" => "Consent",
        "institution" => "Organization",
        "user" => "Practitioner",
        _ => return None,
    })
}

pub fn audit_event(r: &AuditRecord) -> fr::AuditEvent {
    let e = &r.event;
    let action = match e.action {
        AuditAction::Create => "C",
        AuditAction::Read | AuditAction::Export => "R",
        AuditAction::Update => "U",
        AuditAction::Delete => "D",
        AuditAction::Search
        | AuditAction::Login
        | AuditAction::LoginFailed
        | AuditAction::Logout
        | AuditAction::TokenCreated => "E",
    };
    let (rtype, rcode) = match e.action {
        AuditAction::Login | AuditAction::LoginFailed | AuditAction::Logout => (
            "http://dicom.nema.org/resources/ontology/DCM",
            "110114", // User Authentication
        ),
        _ => (
            "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "rest",
        ),
    };
    let what = |id: &str| match entity_resource(&e.entity_type) {
        Some(rt) => reference(rt, id, None),
        None => ft::Reference {
            identifier: Some(Box::new(ft::Identifier {
                value: Some(s(id)),
                ..Default::default()
            })),
            display: Some(s(e.entity_type.as_str())),
            ..Default::default()
        },
    };
    // A search names what it searched (no single record), then one entity per record it returned (BALP's query
    // events name each record and patient they touched).
    let mut entity = vec![fr::AuditEventEntity {
        what: e.subjects.is_empty().then(|| Box::new(what(&e.entity_id))),
        name: Some(s(e.entity_type.as_str())),
        description: (!e.detail.is_empty()).then(|| s(e.detail.as_str())),
        ..Default::default()
    }];
    entity.extend(e.subjects.iter().map(|sub| fr::AuditEventEntity {
        what: Some(Box::new(what(&sub.entity_id))),
        name: Some(s(e.entity_type.as_str())),
        ..Default::default()
    }));
    for p in e.patients() {
        if e.entity_type != "patient" {
            entity.push(fr::AuditEventEntity {
                what: Some(Box::new(reference("Patient", p, None))),
                r#type: Some(Box::new(coding(
                    "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                    "1",
                    Some("Person"),
                ))),
                role: Some(Box::new(coding(
                    "http://terminology.hl7.org/CodeSystem/object-role",
                    "1",
                    Some("Patient"),
                ))),
                ..Default::default()
            });
        }
    }
    fr::AuditEvent {
        id: Some(r.seq.to_string().into()),
        r#type: Box::new(coding(rtype, rcode, None)),
        subtype: vec![coding(AUDIT_ACTION_SYSTEM, e.action.as_str(), None)],
        action: Some(action.into()),
        recorded: instant(e.at).into(),
        outcome: Some(
            if e.action == AuditAction::LoginFailed {
                "4"
            } else {
                "0"
            }
            .into(),
        ),
        agent: vec![fr::AuditEventAgent {
            who: Some(Box::new(match e.actor_user {
                Some(u) => reference("Practitioner", u, Some(&e.actor_name)),
                None => ft::Reference {
                    display: Some(s(e.actor_name.as_str())),
                    ..Default::default()
                },
            })),
            role: e
                .actor_role
                .map(|r| text_concept(r.as_str()))
                .into_iter()
                .collect(),
            name: Some(s(e.actor_name.as_str())),
            requestor: true.into(),
            location: e
                .actor_institution
                .map(|i| Box::new(reference("Organization", i, None))),
            purpose_of_use: vec![text_concept(&e.purpose)],
            ..Default::default()
        }],
        source: fr::AuditEventSource {
            site: Some(s("caravan")),
            observer: Box::new(ft::Reference {
                display: Some(s("Caravan node")),
                ..Default::default()
            }),
            ..Default::default()
        },
        entity,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented state table, row by row: (state, ServiceRequest.status, Task.status).
    const TABLE: &[(ConsultationState, &str, &str)] = &[
        (ConsultationState::Draft, "draft", "draft"),
        (ConsultationState::Submitted, "active", "requested"),
        (ConsultationState::Assigned, "active", "received"),
        (ConsultationState::InProgress, "active", "in-progress"),
        (ConsultationState::Reported, "completed", "completed"),
        (ConsultationState::Acknowledged, "completed", "completed"),
        (ConsultationState::Closed, "completed", "completed"),
        (ConsultationState::Cancelled, "revoked", "cancelled"),
    ];

    #[test]
    fn state_table_and_its_inverse() {
        assert_eq!(TABLE.len(), ConsultationState::ALL.len());
        for (state, sr, task) in TABLE {
            assert_eq!(sr_status(*state), *sr, "{state}");
            assert_eq!(task_status(*state), *task, "{state}");
            assert!(states_for_sr_status(sr).unwrap().contains(state));
            assert!(states_for_task_status(task).unwrap().contains(state));
        }
        assert!(states_for_sr_status("on-hold").is_none());
        assert!(states_for_task_status("sleeping").is_none());
    }

    #[test]
    fn urgency_round_trips_through_priority() {
        for u in Urgency::ALL {
            assert_eq!(urgency_from_priority(priority(u)), Some(u));
        }
        assert_eq!(urgency_from_priority("asap"), Some(Urgency::Urgent));
        assert_eq!(urgency_from_priority("soon"), None);
    }

    #[test]
    fn sha256_hex_becomes_bytes() {
        assert_eq!(hex_to_base64("00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(hex_to_base64("0"), None);
        assert_eq!(hex_to_base64("zz"), None);
    }
}
