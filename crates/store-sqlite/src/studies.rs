//! DICOM studies linked to consultations, on SQLite (see `caravan_store::studies`).

use crate::{db_err, parse};
use caravan_domain::audit::format_audit_time;
use caravan_store::{CaseStudy, Result, StoreError};
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

/// Insert the link, or update it (state, transfer, detail, descriptive fields) when it exists.
pub(crate) async fn link(c: &mut SqliteConnection, s: &CaseStudy) -> Result<()> {
    sqlx::query(
        "INSERT INTO case_studies (consultation_id, study_uid, accession, description, modalities, study_date,
           instances, state, share, origin_node, transfer, detail, added_by, created_at, updated_at)
         VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
         ON CONFLICT (consultation_id, study_uid) DO UPDATE SET accession = excluded.accession,
           description = excluded.description, modalities = excluded.modalities, study_date = excluded.study_date,
           instances = excluded.instances, state = excluded.state, share = excluded.share,
           origin_node = excluded.origin_node, transfer = excluded.transfer, detail = excluded.detail,
           updated_at = excluded.updated_at",
    )
    .bind(s.consultation_id.to_string())
    .bind(&s.study_uid)
    .bind(&s.accession)
    .bind(&s.description)
    .bind(&s.modalities)
    .bind(&s.study_date)
    .bind(s.instances)
    .bind(s.state.as_str())
    .bind(s.share)
    .bind(&s.origin_node)
    .bind(&s.transfer)
    .bind(&s.detail)
    .bind(s.added_by.to_string())
    .bind(format_audit_time(s.created_at))
    .bind(format_audit_time(s.updated_at))
    .execute(&mut *c)
    .await
    .map_err(db_err)?;
    Ok(())
}

fn time(r: &SqliteRow, col: &str) -> Result<DateTime<Utc>> {
    let s: String = r
        .try_get(col)
        .map_err(|e| StoreError::Corrupt(format!("column {col}: {e}")))?;
    DateTime::parse_from_rfc3339(&s)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|_| StoreError::Corrupt(format!("column {col}: bad timestamp")))
}

pub(crate) fn from_row(r: &SqliteRow) -> Result<CaseStudy> {
    let g = |e: sqlx::Error| StoreError::Corrupt(format!("case_studies: {e}"));
    let consultation: String = r.try_get("consultation_id").map_err(g)?;
    let added_by: String = r.try_get("added_by").map_err(g)?;
    let state: String = r.try_get("state").map_err(g)?;
    Ok(CaseStudy {
        consultation_id: parse("consultation_id", &consultation)?,
        study_uid: r.try_get("study_uid").map_err(g)?,
        accession: r.try_get("accession").map_err(g)?,
        description: r.try_get("description").map_err(g)?,
        modalities: r.try_get("modalities").map_err(g)?,
        study_date: r.try_get("study_date").map_err(g)?,
        instances: r.try_get("instances").map_err(g)?,
        state: state
            .parse()
            .map_err(|()| StoreError::Corrupt(format!("case_studies.state: {state:?}")))?,
        share: r.try_get("share").map_err(g)?,
        origin_node: r.try_get("origin_node").map_err(g)?,
        transfer: r.try_get("transfer").map_err(g)?,
        detail: r.try_get("detail").map_err(g)?,
        added_by: parse("added_by", &added_by)?,
        created_at: time(r, "created_at")?,
        updated_at: time(r, "updated_at")?,
    })
}
