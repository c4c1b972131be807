//! Row → domain mapping. A row that does not map is reported as `Corrupt`, never panics.

use caravan_domain::audit::{decode_subjects, AuditEvent, AuditRecord};
use caravan_domain::*;
use caravan_store::{ApiTokenInfo, Attachment, Message, PersonRef, Result, StoreError};
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::Row;
use std::str::FromStr;
use uuid::Uuid;

pub fn get<T>(r: &PgRow, col: &str) -> Result<T>
where
    T: for<'a> sqlx::Decode<'a, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    r.try_get(col)
        .map_err(|e| StoreError::Corrupt(format!("column {col}: {e}")))
}

fn time(r: &PgRow, col: &str) -> Result<DateTime<Utc>> {
    get(r, col)
}

/// A domain value kept as its text form (enums, country codes).
fn parsed<T: FromStr>(r: &PgRow, col: &'static str) -> Result<T> {
    let s: String = get(r, col)?;
    s.parse()
        .map_err(|_| StoreError::Corrupt(format!("column {col}: bad value {s:?}")))
}

fn opt_parsed<T: FromStr>(r: &PgRow, col: &'static str) -> Result<Option<T>> {
    let s: Option<String> = get(r, col)?;
    s.map(|s| {
        s.parse()
            .map_err(|_| StoreError::Corrupt(format!("column {col}: bad value {s:?}")))
    })
    .transpose()
}

/// An id newtype over a UUID column; `wrap` is the newtype's constructor.
fn id<T>(r: &PgRow, col: &str, wrap: fn(Uuid) -> T) -> Result<T> {
    get::<Uuid>(r, col).map(wrap)
}

fn opt_id<T>(r: &PgRow, col: &str, wrap: fn(Uuid) -> T) -> Result<Option<T>> {
    Ok(get::<Option<Uuid>>(r, col)?.map(wrap))
}

fn json<T: serde::de::DeserializeOwned + Send + 'static>(r: &PgRow, col: &str) -> Result<T> {
    get::<Json<T>>(r, col).map(|j| j.0)
}

pub fn institution_from_row(r: &PgRow) -> Result<Institution> {
    Ok(Institution {
        id: id(r, "id", InstitutionId)?,
        name: get(r, "name")?,
        level: parsed(r, "level")?,
        country: parsed(r, "country")?,
        parent: opt_id(r, "parent_id", InstitutionId)?,
        timezone: get(r, "timezone")?,
    })
}

pub fn user_from_row(r: &PgRow) -> Result<User> {
    let profile: Option<Json<PractitionerProfile>> = get(r, "profile")?;
    Ok(User {
        id: id(r, "id", UserId)?,
        username: get(r, "username")?,
        display_name: get(r, "display_name")?,
        institution_id: id(r, "institution_id", InstitutionId)?,
        role: parsed(r, "role")?,
        patient_id: opt_id(r, "patient_id", PatientId)?,
        profile: profile.map(|p| p.0),
        locale: get(r, "locale")?,
        active: get(r, "active")?,
    })
}

pub fn patient_from_row(r: &PgRow) -> Result<Patient> {
    Ok(Patient {
        id: id(r, "id", PatientId)?,
        institution_id: id(r, "institution_id", InstitutionId)?,
        given_name: get(r, "given_name")?,
        family_name: get(r, "family_name")?,
        birth_date: get::<NaiveDate>(r, "birth_date")?,
        sex: parsed(r, "sex")?,
        national_id: get(r, "national_id")?,
        languages: json(r, "languages")?,
    })
}

pub fn consent_from_row(r: &PgRow) -> Result<Consent> {
    Ok(Consent {
        id: id(r, "id", ConsentId)?,
        patient_id: id(r, "patient_id", PatientId)?,
        scope: parsed(r, "scope")?,
        granted: get(r, "granted")?,
        recorded_by: id(r, "recorded_by", UserId)?,
        recorded_at: time(r, "recorded_at")?,
        note: get(r, "note")?,
    })
}

pub fn consultation_from_row(r: &PgRow) -> Result<Consultation> {
    json(r, "doc")
}

pub fn message_from_row(r: &PgRow) -> Result<Message> {
    Ok(Message {
        id: id(r, "id", MessageId)?,
        consultation_id: id(r, "consultation_id", ConsultationId)?,
        parent_id: opt_id(r, "parent_id", MessageId)?,
        author_id: id(r, "author_id", UserId)?,
        author_name: get(r, "author_name")?,
        body: get(r, "body")?,
        created_at: time(r, "created_at")?,
    })
}

pub fn attachment_from_row(r: &PgRow) -> Result<Attachment> {
    Ok(Attachment {
        id: id(r, "id", AttachmentId)?,
        consultation_id: id(r, "consultation_id", ConsultationId)?,
        filename: get(r, "filename")?,
        content_type: get(r, "content_type")?,
        size: get(r, "size")?,
        sha256: get(r, "sha256")?,
        blob_key: get(r, "blob_key")?,
        uploaded_by: id(r, "uploaded_by", UserId)?,
        created_at: time(r, "created_at")?,
    })
}

pub fn api_token_from_row(r: &PgRow) -> Result<ApiTokenInfo> {
    Ok(ApiTokenInfo {
        id: get(r, "id")?,
        name: get(r, "name")?,
        created_at: time(r, "created_at")?,
        last_used_at: get(r, "last_used_at")?,
    })
}

pub fn audit_from_row(r: &PgRow) -> Result<AuditRecord> {
    Ok(AuditRecord {
        seq: get(r, "seq")?,
        event: AuditEvent {
            at: time(r, "at")?,
            actor_user: opt_id(r, "actor_user", UserId)?,
            actor_name: get(r, "actor_name")?,
            actor_institution: opt_id(r, "actor_institution", InstitutionId)?,
            actor_role: opt_parsed(r, "actor_role")?,
            action: parsed(r, "action")?,
            entity_type: get(r, "entity_type")?,
            entity_id: get(r, "entity_id")?,
            patient_id: opt_id(r, "patient_id", PatientId)?,
            purpose: get(r, "purpose")?,
            detail: get(r, "detail")?,
            subjects: decode_subjects(get::<Option<String>>(r, "subjects")?.as_deref())
                .map_err(StoreError::Corrupt)?,
        },
        prev_hash: get(r, "prev_hash")?,
        hash: get(r, "hash")?,
    })
}

pub fn candidate_from_row(r: &PgRow) -> Result<routing::Candidate> {
    let u = user_from_row(r)?;
    let open: i64 = get(r, "open_cases")?;
    let p = u.profile.unwrap_or_default();
    Ok(routing::Candidate {
        user_id: u.id,
        institution_id: u.institution_id,
        display_name: u.display_name,
        specialties: p.specialties,
        languages: p.languages,
        timezone: p.timezone,
        hours: p.hours,
        capacity: p.capacity,
        open_cases: u32::try_from(open).unwrap_or(u32::MAX),
    })
}

pub fn team_from_row(r: &PgRow) -> Result<Team> {
    let members: Vec<Uuid> = get(r, "member_ids")?;
    Ok(Team {
        id: TeamId(get(r, "id")?),
        institution_id: InstitutionId(get(r, "institution_id")?),
        name: get(r, "name")?,
        specialty: get(r, "specialty")?,
        lead_id: UserId(get(r, "lead_id")?),
        member_ids: members.into_iter().map(UserId).collect(),
    })
}

pub fn person_from_row(r: &PgRow) -> Result<PersonRef> {
    Ok(PersonRef {
        user_id: UserId(get(r, "id")?),
        display_name: get(r, "display_name")?,
        institution_name: get(r, "institution_name")?,
    })
}
