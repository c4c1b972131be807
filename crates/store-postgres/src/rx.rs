//! e-Prescription records on PostgreSQL (see `caravan_store::rx`), the SQLite backend's statements in PostgreSQL's
//! dialect. Documents are JSONB; a patient's allergies and
//! prescriptions are read only after the patient passed the actor's scope (`get_patient`, the scoping SQL).

use crate::{db_err, PgStore};
use caravan_domain::*;
use caravan_store::*;
use sqlx::types::Json;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

fn doc<T: serde::de::DeserializeOwned>(r: &sqlx::postgres::PgRow) -> Result<T> {
    let v: Json<serde_json::Value> = r
        .try_get("doc")
        .map_err(|e| StoreError::Corrupt(format!("column doc: {e}")))?;
    serde_json::from_value(v.0).map_err(|e| StoreError::Corrupt(format!("rx document: {e}")))
}

fn to_text<T: serde::Serialize>(v: &T) -> Result<Json<serde_json::Value>> {
    serde_json::to_value(v)
        .map(Json)
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Apply one change inside the writer's transaction.
pub(crate) async fn apply(c: &mut PgConnection, ch: RxChange) -> Result<()> {
    match ch {
        RxChange::ReplaceTable { table, rows } => {
            sqlx::query("DELETE FROM rx_tables WHERE name = $1")
                .bind(table.as_str())
                .execute(&mut *c)
                .await
                .map_err(db_err)?;
            for (key, d) in rows {
                sqlx::query("INSERT INTO rx_tables (name, key, doc) VALUES ($1, $2, $3)")
                    .bind(table.as_str())
                    .bind(key)
                    .bind(to_text(&d)?)
                    .execute(&mut *c)
                    .await
                    .map_err(|e| match db_err(e) {
                        StoreError::Duplicate(_) => StoreError::Duplicate("table row"),
                        other => other,
                    })?;
            }
        }
        RxChange::InsertAllergy(a) => {
            sqlx::query("INSERT INTO rx_allergies (id, patient_id, recorded_at, doc) VALUES ($1, $2, $3, $4)")
                .bind(a.id)
                .bind(a.patient_id.0)
                .bind(a.recorded_at)
                .bind(to_text(&a)?)
                .execute(&mut *c)
                .await
                .map_err(|e| match db_err(e) {
                    StoreError::Duplicate(_) => StoreError::Duplicate("allergy"),
                    other => other,
                })?;
        }
        RxChange::InsertPrescription(p) => {
            sqlx::query(
                "INSERT INTO rx_prescriptions (id, patient_id, origin_node, status, created_at, doc)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(p.id)
            .bind(p.patient_id.map(|x| x.0))
            .bind(&p.origin_node)
            .bind(p.status.as_str())
            .bind(p.created_at)
            .bind(to_text(&p)?)
            .execute(&mut *c)
            .await
            .map_err(|e| match db_err(e) {
                StoreError::Duplicate(_) => StoreError::Duplicate("prescription"),
                other => other,
            })?;
        }
        RxChange::SetStatus { id, status } => {
            let row = sqlx::query("SELECT doc FROM rx_prescriptions WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *c)
                .await
                .map_err(db_err)?
                .ok_or(StoreError::NotFound("prescription"))?;
            let mut p: Prescription = doc(&row)?;
            p.status = status;
            sqlx::query("UPDATE rx_prescriptions SET status = $1, doc = $2 WHERE id = $3")
                .bind(status.as_str())
                .bind(to_text(&p)?)
                .bind(id)
                .execute(&mut *c)
                .await
                .map_err(db_err)?;
        }
        RxChange::InsertDispense(d) => {
            let exists = sqlx::query("SELECT 1 FROM rx_prescriptions WHERE id = $1")
                .bind(d.prescription_id)
                .fetch_optional(&mut *c)
                .await
                .map_err(db_err)?
                .is_some();
            if !exists {
                return Err(StoreError::NotFound("prescription"));
            }
            sqlx::query(
                "INSERT INTO rx_dispenses (id, prescription_id, dispensed_at, doc) VALUES ($1, $2, $3, $4)",
            )
            .bind(d.id)
            .bind(d.prescription_id)
            .bind(d.dispensed_at)
            .bind(to_text(&d)?)
            .execute(&mut *c)
            .await
            .map_err(|e| match db_err(e) {
                StoreError::Duplicate(_) => StoreError::Duplicate("dispense"),
                other => other,
            })?;
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl RxStore for PgStore {
    async fn rx_table(&self, table: RxTable) -> Result<Vec<serde_json::Value>> {
        let rows = sqlx::query("SELECT doc FROM rx_tables WHERE name = $1 ORDER BY key")
            .bind(table.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(doc).collect()
    }

    async fn rx_formulary_item(&self, code: &str) -> Result<FormularyItem> {
        let row = sqlx::query("SELECT doc FROM rx_tables WHERE name = 'formulary' AND key = $1")
            .bind(code)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?
            .ok_or(StoreError::NotFound("medication"))?;
        doc(&row)
    }

    async fn rx_allergies(&self, actor: &Actor, patient: PatientId) -> Result<Vec<Allergy>> {
        self.get_patient(actor, patient).await?;
        let rows = sqlx::query(
            "SELECT doc FROM rx_allergies WHERE patient_id = $1 ORDER BY recorded_at DESC, id",
        )
        .bind(patient.0)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(doc).collect()
    }

    async fn rx_prescriptions(
        &self,
        actor: &Actor,
        patient: PatientId,
    ) -> Result<Vec<Prescription>> {
        self.get_patient(actor, patient).await?;
        let rows = sqlx::query(
            "SELECT doc FROM rx_prescriptions WHERE patient_id = $1 ORDER BY created_at DESC, id",
        )
        .bind(patient.0)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(doc).collect()
    }

    async fn rx_prescription(&self, actor: &Actor, id: Uuid) -> Result<Prescription> {
        let p = self.rx_prescription_unscoped(id).await?;
        let visible = rx_dispenser(actor.role)
            || match p.patient_id {
                Some(pid) => match self.get_patient(actor, pid).await {
                    Ok(_) => true,
                    Err(StoreError::NotFound(_)) => false,
                    Err(e) => return Err(e),
                },
                None => false,
            };
        if visible {
            Ok(p)
        } else {
            Err(StoreError::NotFound("prescription"))
        }
    }

    async fn rx_received(&self, actor: &Actor, limit: u32) -> Result<Vec<Prescription>> {
        if !rx_dispenser(actor.role) {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT doc FROM rx_prescriptions WHERE patient_id IS NULL AND origin_node IS NOT NULL
             ORDER BY created_at DESC, id LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(doc).collect()
    }

    async fn rx_prescription_unscoped(&self, id: Uuid) -> Result<Prescription> {
        let row = sqlx::query("SELECT doc FROM rx_prescriptions WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?
            .ok_or(StoreError::NotFound("prescription"))?;
        doc(&row)
    }

    async fn rx_dispenses(&self, prescription: Uuid) -> Result<Vec<Dispense>> {
        let rows = sqlx::query(
            "SELECT doc FROM rx_dispenses WHERE prescription_id = $1 ORDER BY dispensed_at, id",
        )
        .bind(prescription)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(doc).collect()
    }

    async fn rx_dispense(&self, id: Uuid) -> Result<Dispense> {
        let row = sqlx::query("SELECT doc FROM rx_dispenses WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?
            .ok_or(StoreError::NotFound("dispense"))?;
        doc(&row)
    }
}
