//! DICOM studies linked to consultations, on PostgreSQL (see `caravan_store::studies`).

use crate::db_err;
use caravan_domain::{ConsultationId, UserId};
use caravan_store::{CaseStudy, Result, StoreError};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

/// Insert the link, or update it (state, transfer, detail, descriptive fields) when it exists.
pub(crate) async fn link(c: &mut PgConnection, s: &CaseStudy) -> Result<()> {
    sqlx::query(
        "INSERT INTO case_studies (consultation_id, study_uid, accession, description, modalities, study_date,
           instances, state, share, origin_node, transfer, detail, added_by, created_at, updated_at)
         VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15)
         ON CONFLICT (consultation_id, study_uid) DO UPDATE SET accession = excluded.accession,
           description = excluded.description, modalities = excluded.modalities, study_date = excluded.study_date,
           instances = excluded.instances, state = excluded.state, share = excluded.share,
           origin_node = excluded.origin_node, transfer = excluded.transfer, detail = excluded.detail,
           updated_at = excluded.updated_at",
    )
    .bind(s.consultation_id.0)
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
    .bind(s.added_by.0)
    .bind(s.created_at)
    .bind(s.updated_at)
    .execute(&mut *c)
    .await
    .map_err(db_err)?;
    Ok(())
}

pub(crate) fn from_row(r: &PgRow) -> Result<CaseStudy> {
    let g = |e: sqlx::Error| StoreError::Corrupt(format!("case_studies: {e}"));
    let state: String = r.try_get("state").map_err(g)?;
    Ok(CaseStudy {
        consultation_id: ConsultationId(r.try_get::<Uuid, _>("consultation_id").map_err(g)?),
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
        added_by: UserId(r.try_get::<Uuid, _>("added_by").map_err(g)?),
        created_at: r.try_get("created_at").map_err(g)?,
        updated_at: r.try_get("updated_at").map_err(g)?,
    })
}
