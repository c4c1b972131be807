//! The SQL of each write, as functions on the writer's connection, shared by the single-purpose `Store` methods
//! and the unit of work (`Store::apply`).

use crate::{consultation_doc, db_err, participant_ids, write_participants_sql, write_specialties};
use caravan_domain::audit::format_audit_time;
use caravan_domain::*;
use caravan_store::{Attachment, Message, Result, StoreError};
use sqlx::SqliteConnection;

pub(crate) async fn insert_institution(c: &mut SqliteConnection, i: &Institution) -> Result<()> {
    sqlx::query("INSERT INTO institutions (id, name, level, country, parent_id, timezone) VALUES (?,?,?,?,?,?)")
                    .bind(i.id.to_string())
                    .bind(&i.name)
                    .bind(i.level.as_str())
                    .bind(i.country.as_str())
                    .bind(i.parent.map(|p| p.to_string()))
                    .bind(&i.timezone)
                    .execute(&mut *c)
                    .await
                    .map_err(db_err)?;
    Ok(())
}

pub(crate) async fn insert_user(
    c: &mut SqliteConnection,
    u: &User,
    hash: Option<String>,
) -> Result<()> {
    let profile = u
        .profile
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    sqlx::query(
                    "INSERT INTO users (id, username, display_name, institution_id, role, patient_id, profile, locale, active, password_hash)
                     VALUES (?,?,?,?,?,?,?,?,?,?)",
                )
                .bind(u.id.to_string())
                .bind(&u.username)
                .bind(&u.display_name)
                .bind(u.institution_id.to_string())
                .bind(u.role.as_str())
                .bind(u.patient_id.map(|p| p.to_string()))
                .bind(profile)
                .bind(&u.locale)
                .bind(u.active)
                .bind(hash)
                .execute(&mut *c)
                .await
                .map_err(|e| match db_err(e) {
                    StoreError::Duplicate(_) => StoreError::Duplicate("username"),
                    other => other,
                })?;
    write_specialties(c, u).await
}

pub(crate) async fn update_user(c: &mut SqliteConnection, u: &User) -> Result<()> {
    let profile = u
        .profile
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let done = sqlx::query(
                    "UPDATE users SET display_name = ?, institution_id = ?, role = ?, patient_id = ?, profile = ?, locale = ?, active = ? WHERE id = ?",
                )
                .bind(&u.display_name)
                .bind(u.institution_id.to_string())
                .bind(u.role.as_str())
                .bind(u.patient_id.map(|p| p.to_string()))
                .bind(profile)
                .bind(&u.locale)
                .bind(u.active)
                .bind(u.id.to_string())
                .execute(&mut *c)
                .await
                .map_err(db_err)?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound("user"));
    }
    write_specialties(c, u).await
}

pub(crate) async fn insert_patient(c: &mut SqliteConnection, p: &Patient) -> Result<()> {
    sqlx::query(
                    "INSERT INTO patients (id, institution_id, given_name, family_name, birth_date, sex, national_id, languages, search_name)
                     VALUES (?,?,?,?,?,?,?,?,?)",
                )
                .bind(p.id.to_string())
                .bind(p.institution_id.to_string())
                .bind(&p.given_name)
                .bind(&p.family_name)
                .bind(p.birth_date.to_string())
                .bind(p.sex.as_str())
                .bind(&p.national_id)
                .bind(serde_json::to_string(&p.languages).unwrap_or_else(|_| "[]".into()))
                .bind(p.search_key())
                .execute(&mut *c)
                .await
                .map_err(db_err)?;
    Ok(())
}

/// The row and its participants in one round trip to the connection's thread (`?1` id, `?2` participants).
pub(crate) async fn insert_consultation(c: &mut SqliteConnection, k: &Consultation) -> Result<()> {
    sqlx::query(concat!(
        "INSERT INTO consultations (id, institution_id, referrer_id, patient_id, specialty, urgency, state,
           assigned_to, due_at, escalated_at, created_at, version, doc)
         VALUES (?1,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14);",
        write_participants_sql!()
    ))
    .bind(k.id.to_string())
    .bind(participant_ids(k)?)
    .bind(k.institution_id.to_string())
    .bind(k.referrer_id.to_string())
    .bind(k.patient_id.to_string())
    .bind(&k.specialty)
    .bind(k.urgency.as_str())
    .bind(k.state.as_str())
    .bind(k.assigned_to.map(|u| u.to_string()))
    .bind(k.due_at.map(format_audit_time))
    .bind(k.escalated_at.map(format_audit_time))
    .bind(format_audit_time(k.created_at))
    .bind(k.version)
    .bind(consultation_doc(k)?)
    .execute(&mut *c)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// The row, if it is still at `expected_version`, and its participants, in one round trip (`?1` id, `?2`
/// participants). When the version moved on, the participants' statements still run, but the conflict is
/// returned and the writer undoes the request (to its savepoint, or the whole transaction when it was the group's
/// first writing request), so nothing of it stays.
pub(crate) async fn update_consultation(
    c: &mut SqliteConnection,
    k: &Consultation,
    expected_version: i64,
) -> Result<()> {
    let updated = sqlx::query(concat!(
        "UPDATE consultations SET specialty = ?3, urgency = ?4, state = ?5, assigned_to = ?6, due_at = ?7,
           escalated_at = ?8, version = ?9, doc = ?10
         WHERE id = ?1 AND version = ?11 RETURNING 1;",
        write_participants_sql!()
    ))
    .bind(k.id.to_string())
    .bind(participant_ids(k)?)
    .bind(&k.specialty)
    .bind(k.urgency.as_str())
    .bind(k.state.as_str())
    .bind(k.assigned_to.map(|u| u.to_string()))
    .bind(k.due_at.map(format_audit_time))
    .bind(k.escalated_at.map(format_audit_time))
    .bind(k.version)
    .bind(consultation_doc(k)?)
    .bind(expected_version)
    .fetch_all(&mut *c)
    .await
    .map_err(db_err)?;
    if updated.is_empty() {
        return Err(StoreError::Conflict);
    }
    Ok(())
}

pub(crate) async fn insert_message(c: &mut SqliteConnection, m: &Message) -> Result<()> {
    sqlx::query("INSERT INTO messages (id, consultation_id, parent_id, author_id, author_name, body, created_at) VALUES (?,?,?,?,?,?,?)")
                    .bind(m.id.to_string())
                    .bind(m.consultation_id.to_string())
                    .bind(m.parent_id.map(|p| p.to_string()))
                    .bind(m.author_id.to_string())
                    .bind(&m.author_name)
                    .bind(&m.body)
                    .bind(format_audit_time(m.created_at))
                    .execute(&mut *c)
                    .await
                    .map_err(db_err)?;
    Ok(())
}

pub(crate) async fn insert_attachment(c: &mut SqliteConnection, a: &Attachment) -> Result<()> {
    sqlx::query(
                    "INSERT INTO attachments (id, consultation_id, filename, content_type, size, sha256, blob_key, uploaded_by, created_at)
                     VALUES (?,?,?,?,?,?,?,?,?)",
                )
                .bind(a.id.to_string())
                .bind(a.consultation_id.to_string())
                .bind(&a.filename)
                .bind(&a.content_type)
                .bind(a.size)
                .bind(&a.sha256)
                .bind(&a.blob_key)
                .bind(a.uploaded_by.to_string())
                .bind(format_audit_time(a.created_at))
                .execute(&mut *c)
                .await
                .map_err(db_err)?;
    Ok(())
}
