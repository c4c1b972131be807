//! The SQL of each write, as functions on a transaction's connection, shared by the single-purpose `Store`
//! methods and the unit of work (`Store::apply`).

use crate::{db_err, write_participants, write_specialties};
use caravan_domain::*;
use caravan_store::{Attachment, Message, Result, StoreError};
use sqlx::types::Json;
use sqlx::PgConnection;

pub(crate) async fn insert_institution(c: &mut PgConnection, i: &Institution) -> Result<()> {
    sqlx::query(
                    "INSERT INTO institutions (id, name, level, country, parent_id, timezone) VALUES ($1,$2,$3,$4,$5,$6)",
                )
                .bind(i.id.0)
                .bind(&i.name)
                .bind(i.level.as_str())
                .bind(i.country.as_str())
                .bind(i.parent.map(|p| p.0))
                .bind(&i.timezone)
                .execute(&mut *c)
                .await
                .map_err(db_err)?;
    Ok(())
}

pub(crate) async fn insert_user(
    c: &mut PgConnection,
    u: &User,
    hash: Option<String>,
) -> Result<()> {
    sqlx::query(
                    "INSERT INTO users (id, username, display_name, institution_id, role, patient_id, profile, locale, active, password_hash)
                     VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)",
                )
                .bind(u.id.0)
                .bind(&u.username)
                .bind(&u.display_name)
                .bind(u.institution_id.0)
                .bind(u.role.as_str())
                .bind(u.patient_id.map(|p| p.0))
                .bind(u.profile.as_ref().map(Json))
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

pub(crate) async fn update_user(c: &mut PgConnection, u: &User) -> Result<()> {
    let done = sqlx::query(
                    "UPDATE users SET display_name = $1, institution_id = $2, role = $3, patient_id = $4, profile = $5,
                       locale = $6, active = $7
                     WHERE id = $8",
                )
                .bind(&u.display_name)
                .bind(u.institution_id.0)
                .bind(u.role.as_str())
                .bind(u.patient_id.map(|p| p.0))
                .bind(u.profile.as_ref().map(Json))
                .bind(&u.locale)
                .bind(u.active)
                .bind(u.id.0)
                .execute(&mut *c)
                .await
                .map_err(db_err)?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound("user"));
    }
    write_specialties(c, u).await
}

pub(crate) async fn insert_patient(c: &mut PgConnection, p: &Patient) -> Result<()> {
    sqlx::query(
                    "INSERT INTO patients (id, institution_id, given_name, family_name, birth_date, sex, national_id, languages, search_name)
                     VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)",
                )
                .bind(p.id.0)
                .bind(p.institution_id.0)
                .bind(&p.given_name)
                .bind(&p.family_name)
                .bind(p.birth_date)
                .bind(p.sex.as_str())
                .bind(&p.national_id)
                .bind(Json(&p.languages))
                .bind(p.search_key())
                .execute(&mut *c)
                .await
                .map_err(db_err)?;
    Ok(())
}

pub(crate) async fn insert_consultation(c: &mut PgConnection, k: &Consultation) -> Result<()> {
    sqlx::query(
                    "INSERT INTO consultations (id, institution_id, referrer_id, patient_id, specialty, urgency, state,
                       assigned_to, due_at, escalated_at, created_at, version, doc)
                     VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)",
                )
                .bind(k.id.0)
                .bind(k.institution_id.0)
                .bind(k.referrer_id.0)
                .bind(k.patient_id.0)
                .bind(&k.specialty)
                .bind(k.urgency.as_str())
                .bind(k.state.as_str())
                .bind(k.assigned_to.map(|u| u.0))
                .bind(k.due_at)
                .bind(k.escalated_at)
                .bind(k.created_at)
                .bind(k.version)
                .bind(Json(&k))
                .execute(&mut *c)
                .await
                .map_err(db_err)?;
    write_participants(c, k).await
}

pub(crate) async fn update_consultation(
    c: &mut PgConnection,
    k: &Consultation,
    expected_version: i64,
) -> Result<()> {
    // Under READ COMMITTED a concurrent writer of the same row waits for the first to commit, then
    // re-evaluates `version = $10` against the committed row: exactly one of them wins.
    let done = sqlx::query(
                    "UPDATE consultations SET specialty = $1, urgency = $2, state = $3, assigned_to = $4, due_at = $5,
                       escalated_at = $6, version = $7, doc = $8
                     WHERE id = $9 AND version = $10",
                )
                .bind(&k.specialty)
                .bind(k.urgency.as_str())
                .bind(k.state.as_str())
                .bind(k.assigned_to.map(|u| u.0))
                .bind(k.due_at)
                .bind(k.escalated_at)
                .bind(k.version)
                .bind(Json(&k))
                .bind(k.id.0)
                .bind(expected_version)
                .execute(&mut *c)
                .await
                .map_err(db_err)?;
    if done.rows_affected() == 0 {
        return Err(StoreError::Conflict);
    }
    write_participants(c, k).await
}

pub(crate) async fn insert_message(c: &mut PgConnection, m: &Message) -> Result<()> {
    sqlx::query(
                    "INSERT INTO messages (id, consultation_id, parent_id, author_id, author_name, body, created_at)
                     VALUES ($1,$2,$3,$4,$5,$6,$7)",
                )
                .bind(m.id.0)
                .bind(m.consultation_id.0)
                .bind(m.parent_id.map(|p| p.0))
                .bind(m.author_id.0)
                .bind(&m.author_name)
                .bind(&m.body)
                .bind(m.created_at)
                .execute(&mut *c)
                .await
                .map_err(db_err)?;
    Ok(())
}

pub(crate) async fn insert_attachment(c: &mut PgConnection, a: &Attachment) -> Result<()> {
    sqlx::query(
                    "INSERT INTO attachments (id, consultation_id, filename, content_type, size, sha256, blob_key,
                       uploaded_by, created_at)
                     VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)",
                )
                .bind(a.id.0)
                .bind(a.consultation_id.0)
                .bind(&a.filename)
                .bind(&a.content_type)
                .bind(a.size)
                .bind(&a.sha256)
                .bind(&a.blob_key)
                .bind(a.uploaded_by.0)
                .bind(a.created_at)
                .execute(&mut *c)
                .await
                .map_err(db_err)?;
    Ok(())
}
