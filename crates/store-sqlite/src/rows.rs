//! Row → domain mapping. A row that does not map is reported as `Corrupt`, never panics.

use crate::parse;
use caravan_domain::audit::{decode_subjects, AuditEvent, AuditRecord};
use caravan_domain::*;
use caravan_store::{Attachment, Message, PersonRef, Result, StoreError};
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

fn get<T>(r: &SqliteRow, col: &str) -> Result<T>
where
    T: for<'a> sqlx::Decode<'a, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    r.try_get(col)
        .map_err(|e| StoreError::Corrupt(format!("column {col}: {e}")))
}

pub fn time(r: &SqliteRow, col: &str) -> Result<DateTime<Utc>> {
    let s: String = get(r, col)?;
    DateTime::parse_from_rfc3339(&s)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|_| StoreError::Corrupt(format!("column {col}: bad timestamp")))
}

pub fn opt_time(r: &SqliteRow, col: &str) -> Result<Option<DateTime<Utc>>> {
    let s: Option<String> = get(r, col)?;
    s.map(|s| {
        DateTime::parse_from_rfc3339(&s)
            .map(|d| d.with_timezone(&Utc))
            .map_err(|_| StoreError::Corrupt(format!("column {col}: bad timestamp")))
    })
    .transpose()
}

fn id<T: std::str::FromStr>(r: &SqliteRow, col: &'static str) -> Result<T> {
    let s: String = get(r, col)?;
    parse(col, &s)
}

fn opt_id<T: std::str::FromStr>(r: &SqliteRow, col: &'static str) -> Result<Option<T>> {
    let s: Option<String> = get(r, col)?;
    s.map(|s| parse(col, &s)).transpose()
}

fn json<T: serde::de::DeserializeOwned>(r: &SqliteRow, col: &str) -> Result<T> {
    let s: String = get(r, col)?;
    serde_json::from_str(&s).map_err(|e| StoreError::Corrupt(format!("column {col}: {e}")))
}

pub fn institution_from_row(r: &SqliteRow) -> Result<Institution> {
    Ok(Institution {
        id: id(r, "id")?,
        name: get(r, "name")?,
        level: id(r, "level")?,
        country: id(r, "country")?,
        parent: opt_id(r, "parent_id")?,
        timezone: get(r, "timezone")?,
    })
}

pub fn user_from_row(r: &SqliteRow) -> Result<User> {
    let profile: Option<String> = get(r, "profile")?;
    Ok(User {
        id: id(r, "id")?,
        username: get(r, "username")?,
        display_name: get(r, "display_name")?,
        institution_id: id(r, "institution_id")?,
        role: id(r, "role")?,
        patient_id: opt_id(r, "patient_id")?,
        profile: profile
            .map(|p| serde_json::from_str(&p))
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("profile: {e}")))?,
        locale: get(r, "locale")?,
        active: get(r, "active")?,
    })
}

pub fn patient_from_row(r: &SqliteRow) -> Result<Patient> {
    let birth: String = get(r, "birth_date")?;
    Ok(Patient {
        id: id(r, "id")?,
        institution_id: id(r, "institution_id")?,
        given_name: get(r, "given_name")?,
        family_name: get(r, "family_name")?,
        birth_date: parse::<NaiveDate>("birth_date", &birth)?,
        sex: id(r, "sex")?,
        national_id: get(r, "national_id")?,
        languages: json(r, "languages")?,
    })
}

pub fn consent_from_row(r: &SqliteRow) -> Result<Consent> {
    Ok(Consent {
        id: id(r, "id")?,
        patient_id: id(r, "patient_id")?,
        scope: id(r, "scope")?,
        granted: get(r, "granted")?,
        recorded_by: id(r, "recorded_by")?,
        recorded_at: time(r, "recorded_at")?,
        note: get(r, "note")?,
    })
}

pub fn consultation_from_row(r: &SqliteRow) -> Result<Consultation> {
    json(r, "doc")
}

pub fn message_from_row(r: &SqliteRow) -> Result<Message> {
    Ok(Message {
        id: id(r, "id")?,
        consultation_id: id(r, "consultation_id")?,
        parent_id: opt_id(r, "parent_id")?,
        author_id: id(r, "author_id")?,
        author_name: get(r, "author_name")?,
        body: get(r, "body")?,
        created_at: time(r, "created_at")?,
    })
}

pub fn attachment_from_row(r: &SqliteRow) -> Result<Attachment> {
    Ok(Attachment {
        id: id(r, "id")?,
        consultation_id: id(r, "consultation_id")?,
        filename: get(r, "filename")?,
        content_type: get(r, "content_type")?,
        size: get(r, "size")?,
        sha256: get(r, "sha256")?,
        blob_key: get(r, "blob_key")?,
        uploaded_by: id(r, "uploaded_by")?,
        created_at: time(r, "created_at")?,
    })
}

pub fn audit_from_row(r: &SqliteRow) -> Result<AuditRecord> {
    Ok(AuditRecord {
        seq: get(r, "seq")?,
        event: AuditEvent {
            at: time(r, "at")?,
            actor_user: opt_id(r, "actor_user")?,
            actor_name: get(r, "actor_name")?,
            actor_institution: opt_id(r, "actor_institution")?,
            actor_role: opt_id(r, "actor_role")?,
            action: id(r, "action")?,
            entity_type: get(r, "entity_type")?,
            entity_id: get(r, "entity_id")?,
            patient_id: opt_id(r, "patient_id")?,
            purpose: get(r, "purpose")?,
            detail: get(r, "detail")?,
            subjects: decode_subjects(get::<Option<String>>(r, "subjects")?.as_deref())
                .map_err(StoreError::Corrupt)?,
        },
        prev_hash: get(r, "prev_hash")?,
        hash: get(r, "hash")?,
    })
}

pub fn candidate_from_row(r: &SqliteRow) -> Result<routing::Candidate> {
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

pub fn team_from_row(r: &SqliteRow) -> Result<Team> {
    Ok(Team {
        id: id(r, "id")?,
        institution_id: id(r, "institution_id")?,
        name: get(r, "name")?,
        specialty: get(r, "specialty")?,
        lead_id: id(r, "lead_id")?,
        member_ids: json(r, "member_ids")?,
    })
}

pub fn person_from_row(r: &SqliteRow) -> Result<PersonRef> {
    Ok(PersonRef {
        user_id: id(r, "id")?,
        display_name: get(r, "display_name")?,
        institution_name: get(r, "institution_name")?,
    })
}
