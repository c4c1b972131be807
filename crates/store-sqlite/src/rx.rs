//! e-Prescription records on SQLite (see `caravan_store::rx`). Documents are JSON text; a patient's allergies and
//! prescriptions are read only after the patient passed the actor's scope (`get_patient`, the scoping SQL).

use crate::{db_err, SqliteStore};
use caravan_domain::audit::format_audit_time;
use caravan_domain::*;
use caravan_store::*;
use sqlx::{Row, SqliteConnection};
use uuid::Uuid;

fn doc<T: serde::de::DeserializeOwned>(r: &sqlx::sqlite::SqliteRow) -> Result<T> {
    let s: String = r
        .try_get("doc")
        .map_err(|e| StoreError::Corrupt(format!("column doc: {e}")))?;
    serde_json::from_str(&s).map_err(|e| StoreError::Corrupt(format!("rx document: {e}")))
}

fn to_text<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Apply one change inside the writer's transaction.
pub(crate) async fn apply(c: &mut SqliteConnection, ch: RxChange) -> Result<()> {
    match ch {
        RxChange::ReplaceTable { table, rows } => {
            sqlx::query("DELETE FROM rx_tables WHERE name = ?")
                .bind(table.as_str())
                .execute(&mut *c)
                .await
                .map_err(db_err)?;
            for (key, d) in rows {
                sqlx::query("INSERT INTO rx_tables (name, key, doc) VALUES (?, ?, ?)")
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
            sqlx::query(
                "INSERT INTO rx_allergies (id, patient_id, recorded_at, doc) VALUES (?, ?, ?, ?)",
            )
            .bind(a.id.to_string())
            .bind(a.patient_id.to_string())
            .bind(format_audit_time(a.recorded_at))
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
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(p.id.to_string())
            .bind(p.patient_id.map(|x| x.to_string()))
            .bind(&p.origin_node)
            .bind(p.status.as_str())
            .bind(format_audit_time(p.created_at))
            .bind(to_text(&p)?)
            .execute(&mut *c)
            .await
            .map_err(|e| match db_err(e) {
                StoreError::Duplicate(_) => StoreError::Duplicate("prescription"),
                other => other,
            })?;
        }
        RxChange::SetStatus { id, status } => {
            let row = sqlx::query("SELECT doc FROM rx_prescriptions WHERE id = ?")
                .bind(id.to_string())
                .fetch_optional(&mut *c)
                .await
                .map_err(db_err)?
                .ok_or(StoreError::NotFound("prescription"))?;
            let mut p: Prescription = doc(&row)?;
            p.status = status;
            sqlx::query("UPDATE rx_prescriptions SET status = ?, doc = ? WHERE id = ?")
                .bind(status.as_str())
                .bind(to_text(&p)?)
                .bind(id.to_string())
                .execute(&mut *c)
                .await
                .map_err(db_err)?;
        }
        RxChange::InsertDispense(d) => {
            let exists = sqlx::query("SELECT 1 FROM rx_prescriptions WHERE id = ?")
                .bind(d.prescription_id.to_string())
                .fetch_optional(&mut *c)
                .await
                .map_err(db_err)?
                .is_some();
            if !exists {
                return Err(StoreError::NotFound("prescription"));
            }
            sqlx::query(
                "INSERT INTO rx_dispenses (id, prescription_id, dispensed_at, doc) VALUES (?, ?, ?, ?)",
            )
            .bind(d.id.to_string())
            .bind(d.prescription_id.to_string())
            .bind(format_audit_time(d.dispensed_at))
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
impl RxStore for SqliteStore {
    async fn rx_table(&self, table: RxTable) -> Result<Vec<serde_json::Value>> {
        let rows = sqlx::query("SELECT doc FROM rx_tables WHERE name = ? ORDER BY key")
            .bind(table.as_str())
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)?;
        rows.iter().map(doc).collect()
    }

    async fn rx_formulary_item(&self, code: &str) -> Result<FormularyItem> {
        let row = sqlx::query("SELECT doc FROM rx_tables WHERE name = 'formulary' AND key = ?")
            .bind(code)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?
            .ok_or(StoreError::NotFound("medication"))?;
        doc(&row)
    }

    async fn rx_allergies(&self, actor: &Actor, patient: PatientId) -> Result<Vec<Allergy>> {
        self.get_patient(actor, patient).await?;
        let rows = sqlx::query(
            "SELECT doc FROM rx_allergies WHERE patient_id = ? ORDER BY recorded_at DESC, id",
        )
        .bind(patient.to_string())
        .fetch_all(&self.reader)
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
            "SELECT doc FROM rx_prescriptions WHERE patient_id = ? ORDER BY created_at DESC, id",
        )
        .bind(patient.to_string())
        .fetch_all(&self.reader)
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
             ORDER BY created_at DESC, id LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter().map(doc).collect()
    }

    async fn rx_prescription_unscoped(&self, id: Uuid) -> Result<Prescription> {
        let row = sqlx::query("SELECT doc FROM rx_prescriptions WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?
            .ok_or(StoreError::NotFound("prescription"))?;
        doc(&row)
    }

    async fn rx_dispenses(&self, prescription: Uuid) -> Result<Vec<Dispense>> {
        let rows = sqlx::query(
            "SELECT doc FROM rx_dispenses WHERE prescription_id = ? ORDER BY dispensed_at, id",
        )
        .bind(prescription.to_string())
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter().map(doc).collect()
    }

    async fn rx_dispense(&self, id: Uuid) -> Result<Dispense> {
        let row = sqlx::query("SELECT doc FROM rx_dispenses WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?
            .ok_or(StoreError::NotFound("dispense"))?;
        doc(&row)
    }
}
