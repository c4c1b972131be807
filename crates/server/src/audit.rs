//! Building audit events from the acting principal.

use crate::auth::Principal;
use caravan_domain::{AuditAction, AuditEvent, AuditSubject, PatientId, User};
use chrono::Utc;

pub fn event(
    p: &Principal,
    action: AuditAction,
    entity_type: &str,
    entity_id: impl ToString,
    patient: Option<PatientId>,
    detail: &str,
) -> AuditEvent {
    user_event(&p.user, action, entity_type, entity_id, patient, detail)
}

/// An event by a user: a signed-in one, or the stand-in of a person of another node acting through an envelope.
pub fn user_event(
    user: &User,
    action: AuditAction,
    entity_type: &str,
    entity_id: impl ToString,
    patient: Option<PatientId>,
    detail: &str,
) -> AuditEvent {
    AuditEvent {
        at: Utc::now(),
        actor_user: Some(user.id),
        actor_name: user.display_name.clone(),
        actor_institution: Some(user.institution_id),
        actor_role: Some(user.role),
        action,
        entity_type: entity_type.to_owned(),
        entity_id: entity_id.to_string(),
        patient_id: patient,
        purpose: purpose_of(user).to_owned(),
        detail: detail.to_owned(),
        subjects: Vec::new(),
    }
}

/// The audit of a search or list that returned `subjects` (each a record of `entity_type` and its patient): one
/// event for the whole result, each subject found in its patient's access log and in its record's trail. Nothing
/// when the result is empty (no patient data was read).
pub fn search_events<I: ToString>(
    p: &Principal,
    entity_type: &str,
    subjects: impl IntoIterator<Item = (I, Option<PatientId>)>,
    detail: &str,
) -> Vec<AuditEvent> {
    let subjects: Vec<AuditSubject> = subjects
        .into_iter()
        .map(|(id, patient_id)| AuditSubject {
            entity_id: id.to_string(),
            patient_id,
        })
        .collect();
    if subjects.is_empty() {
        return Vec::new();
    }
    let mut e = event(p, AuditAction::Search, entity_type, "", None, detail);
    e.subjects = subjects;
    vec![e]
}

/// Purpose of use, from the role (HL7 PurposeOfUse in spirit: treatment, operations, self).
fn purpose_of(u: &User) -> &'static str {
    use caravan_domain::Role::*;
    match u.role {
        Referrer | Consultant | Coordinator | Pharmacist => "treatment",
        PublicHealthOfficer => "public_health",
        Admin => "operations",
        Patient => "self",
    }
}

/// An event written by the node itself (escalation sweep, demo seeding).
pub fn system_event(
    action: AuditAction,
    entity_type: &str,
    entity_id: impl ToString,
    patient: Option<PatientId>,
    detail: &str,
) -> AuditEvent {
    AuditEvent {
        at: Utc::now(),
        actor_user: None,
        actor_name: "system".into(),
        actor_institution: None,
        actor_role: None,
        action,
        entity_type: entity_type.to_owned(),
        entity_id: entity_id.to_string(),
        patient_id: patient,
        purpose: "operations".into(),
        detail: detail.to_owned(),
        subjects: Vec::new(),
    }
}
