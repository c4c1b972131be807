//! Building audit events from the acting principal.

use crate::auth::Principal;
use caravan_domain::{AuditAction, AuditEvent, PatientId};
use chrono::Utc;

pub fn event(
    p: &Principal,
    action: AuditAction,
    entity_type: &str,
    entity_id: impl ToString,
    patient: Option<PatientId>,
    detail: &str,
) -> AuditEvent {
    AuditEvent {
        at: Utc::now(),
        actor_user: Some(p.user.id),
        actor_name: p.user.display_name.clone(),
        actor_institution: Some(p.user.institution_id),
        actor_role: Some(p.user.role),
        action,
        entity_type: entity_type.to_owned(),
        entity_id: entity_id.to_string(),
        patient_id: patient,
        purpose: purpose_of(p).to_owned(),
        detail: detail.to_owned(),
    }
}

/// Purpose of use, from the role (HL7 PurposeOfUse in spirit: treatment, operations, self).
fn purpose_of(p: &Principal) -> &'static str {
    use caravan_domain::Role::*;
    match p.user.role {
        Referrer | Consultant | Coordinator => "treatment",
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
    }
}
