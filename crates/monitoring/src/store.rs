//! The monitoring database: its own SQLite file (sqlx), WAL mode.
//!
//! Tables: `patients` (SpO2 scale per patient), `devices` (registry, binding, broker password hash),
//! `device_seq` (last sequence number per device), `messages` (one row per accepted message: the de-duplication
//! key), `observations` (FHIR Observation per reading), `latest_readings` (each patient's newest value per kind,
//! so the alert state survives a restart without rescanning), `quarantine`, `gaps`, `alerts`, `alert_events`.

use crate::alerts::LastAlert;
use crate::model::{Device, DeviceId, DeviceKind, PatientRef, Reading, ReadingKind};
use crate::news2::{Acvpu, Risk, Spo2Scale};
use chrono::{DateTime, TimeZone, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// Storage errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A database error.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// A row that this code did not write (corrupt or foreign database).
    #[error("unexpected row in {table}: {detail}")]
    Corrupt {
        /// Table.
        table: &'static str,
        /// What is wrong.
        detail: String,
    },
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS patients (
    patient_ref TEXT PRIMARY KEY,
    spo2_scale INTEGER NOT NULL DEFAULT 1 CHECK (spo2_scale IN (1, 2))
);
CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    patient_ref TEXT REFERENCES patients(patient_ref),
    password_hash TEXT,
    registered_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS device_seq (
    device_id TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL,
    last_seen_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    device_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    received_at_ms INTEGER NOT NULL,
    PRIMARY KEY (device_id, message_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS observations (
    id INTEGER PRIMARY KEY,
    device_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    patient_ref TEXT NOT NULL,
    kind TEXT NOT NULL,
    value REAL,
    value2 REAL,
    value_code TEXT,
    effective_ms INTEGER NOT NULL,
    received_at_ms INTEGER NOT NULL,
    resource TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS observations_patient ON observations (patient_ref, effective_ms);
CREATE TABLE IF NOT EXISTS latest_readings (
    patient_ref TEXT NOT NULL,
    kind TEXT NOT NULL,
    value REAL,
    value2 REAL,
    value_code TEXT,
    effective_ms INTEGER NOT NULL,
    PRIMARY KEY (patient_ref, kind)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY,
    received_at_ms INTEGER NOT NULL,
    topic TEXT NOT NULL,
    device_id TEXT,
    message_id TEXT,
    reason_code TEXT NOT NULL,
    reason TEXT NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS gaps (
    id INTEGER PRIMARY KEY,
    device_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('gap', 'late')),
    from_seq INTEGER NOT NULL,
    to_seq INTEGER NOT NULL,
    missing INTEGER NOT NULL,
    detected_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY,
    patient_ref TEXT NOT NULL,
    level TEXT NOT NULL,
    score INTEGER NOT NULL,
    complete INTEGER NOT NULL,
    news2 TEXT NOT NULL,
    tier INTEGER NOT NULL DEFAULT 1,
    tier_since_ms INTEGER NOT NULL,
    reading_at_ms INTEGER NOT NULL,
    received_at_ms INTEGER NOT NULL,
    raised_at_ms INTEGER NOT NULL,
    acknowledged_at_ms INTEGER,
    acknowledged_by TEXT
);
CREATE INDEX IF NOT EXISTS alerts_open ON alerts (acknowledged_at_ms, tier);
CREATE TABLE IF NOT EXISTS alert_events (
    id INTEGER PRIMARY KEY,
    alert_id INTEGER NOT NULL REFERENCES alerts(id),
    event TEXT NOT NULL,
    tier INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    actor TEXT
);
"#;

/// Milliseconds since the epoch.
pub fn ms(t: &DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// From milliseconds since the epoch.
pub fn from_ms(v: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(v).single().unwrap_or_default()
}

/// Durability of a commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Durability {
    /// fsync on every commit (`synchronous=FULL`): an acknowledged message survives a power cut.
    Full,
    /// WAL `synchronous=NORMAL`: survives a process kill, may lose the last commits on a power cut.
    Normal,
}

/// The database handle.
#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
}

/// An open (unacknowledged) alert.
#[derive(Clone, Debug, PartialEq)]
pub struct OpenAlert {
    /// Row id.
    pub id: i64,
    /// Level.
    pub level: Risk,
    /// Current tier (1-based).
    pub tier: u8,
    /// When it reached that tier.
    pub tier_since: DateTime<Utc>,
}

impl Store {
    /// Open (creating if needed) the database file.
    pub async fn open(path: &Path, durability: Durability) -> Result<Store, StoreError> {
        let opts = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match durability {
                Durability::Full => SqliteSynchronous::Full,
                Durability::Normal => SqliteSynchronous::Normal,
            })
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        // One connection: a single writer, no SQLITE_BUSY between our own connections.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await?;
        sqlx::raw_sql(SCHEMA).execute(&pool).await?;
        Ok(Store { pool })
    }

    /// The pool (for the ingest's batch transactions and for tests).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Close the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Add or update a patient's SpO2 scale.
    pub async fn upsert_patient(
        &self,
        patient: &PatientRef,
        scale: Spo2Scale,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO patients (patient_ref, spo2_scale) VALUES (?, ?)
             ON CONFLICT (patient_ref) DO UPDATE SET spo2_scale = excluded.spo2_scale",
        )
        .bind(patient.as_str())
        .bind(i64::from(scale.number()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Register (or re-register) a device, with the broker's hash of its password.
    pub async fn register_device(
        &self,
        device: &Device,
        password_hash: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO devices (device_id, kind, patient_ref, password_hash, registered_at_ms) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (device_id) DO UPDATE SET kind = excluded.kind, patient_ref = excluded.patient_ref,
               password_hash = COALESCE(excluded.password_hash, devices.password_hash)",
        )
        .bind(device.id.as_str())
        .bind(device.kind.as_str())
        .bind(device.patient.as_ref().map(PatientRef::as_str))
        .bind(password_hash)
        .bind(ms(&Utc::now()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Bind a device to a patient (or unbind with `None`).
    pub async fn bind_device(
        &self,
        device: &DeviceId,
        patient: Option<&PatientRef>,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query("UPDATE devices SET patient_ref = ? WHERE device_id = ?")
            .bind(patient.map(PatientRef::as_str))
            .bind(device.as_str())
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Every device.
    pub async fn devices(&self) -> Result<Vec<Device>, StoreError> {
        let rows =
            sqlx::query("SELECT device_id, kind, patient_ref FROM devices ORDER BY device_id")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get(0)?;
                let kind: String = r.try_get(1)?;
                let patient: Option<String> = r.try_get(2)?;
                let corrupt = |detail: String| StoreError::Corrupt {
                    table: "devices",
                    detail,
                };
                Ok(Device {
                    id: DeviceId::new(id).map_err(|e| corrupt(e.to_string()))?,
                    kind: DeviceKind::parse(&kind)
                        .ok_or_else(|| corrupt(format!("kind {kind}")))?,
                    patient: patient
                        .map(PatientRef::new)
                        .transpose()
                        .map_err(|e| corrupt(e.to_string()))?,
                })
            })
            .collect()
    }

    /// Broker password hashes of all devices that have one: (user name, hash).
    pub async fn password_hashes(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT device_id, password_hash FROM devices WHERE password_hash IS NOT NULL ORDER BY device_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// SpO2 scale per patient.
    pub async fn scales(&self) -> Result<HashMap<PatientRef, Spo2Scale>, StoreError> {
        let rows = sqlx::query("SELECT patient_ref, spo2_scale FROM patients")
            .fetch_all(&self.pool)
            .await?;
        let mut out = HashMap::new();
        for r in rows {
            let p: String = r.try_get(0)?;
            let s: i64 = r.try_get(1)?;
            let corrupt = |detail: String| StoreError::Corrupt {
                table: "patients",
                detail,
            };
            out.insert(
                PatientRef::new(p).map_err(|e| corrupt(e.to_string()))?,
                Spo2Scale::from_number(s).ok_or_else(|| corrupt(format!("scale {s}")))?,
            );
        }
        Ok(out)
    }

    /// Last sequence number per device.
    pub async fn last_seqs(&self) -> Result<HashMap<String, u64>, StoreError> {
        let rows = sqlx::query("SELECT device_id, last_seq FROM device_seq")
            .fetch_all(&self.pool)
            .await?;
        let mut out = HashMap::new();
        for r in rows {
            let d: String = r.try_get(0)?;
            let s: i64 = r.try_get(1)?;
            out.insert(d, u64::try_from(s).unwrap_or(0));
        }
        Ok(out)
    }

    /// Each patient's newest reading per kind (to rebuild the alert sets after a restart).
    pub async fn latest_readings(
        &self,
    ) -> Result<Vec<(PatientRef, Reading, DateTime<Utc>)>, StoreError> {
        let rows = sqlx::query("SELECT patient_ref, kind, value, value2, value_code, effective_ms FROM latest_readings")
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let p: String = r.try_get(0)?;
            let kind: String = r.try_get(1)?;
            let v: Option<f64> = r.try_get(2)?;
            let v2: Option<f64> = r.try_get(3)?;
            let code: Option<String> = r.try_get(4)?;
            let t: i64 = r.try_get(5)?;
            let corrupt = |detail: String| StoreError::Corrupt {
                table: "latest_readings",
                detail,
            };
            let kind = ReadingKind::parse(&kind).ok_or_else(|| corrupt(format!("kind {kind}")))?;
            let reading = reading_from_columns(kind, v, v2, code.as_deref())
                .ok_or_else(|| corrupt(format!("values of {}", kind.as_str())))?;
            out.push((
                PatientRef::new(p).map_err(|e| corrupt(e.to_string()))?,
                reading,
                from_ms(t),
            ));
        }
        Ok(out)
    }

    /// Each patient's last alert (to restore suppression after a restart).
    pub async fn last_alerts(&self) -> Result<Vec<(PatientRef, LastAlert)>, StoreError> {
        let rows = sqlx::query(
            "SELECT patient_ref, level, score, raised_at_ms FROM alerts
             WHERE id IN (SELECT MAX(id) FROM alerts GROUP BY patient_ref)",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for r in rows {
            let p: String = r.try_get(0)?;
            let level: String = r.try_get(1)?;
            let score: i64 = r.try_get(2)?;
            let at: i64 = r.try_get(3)?;
            let corrupt = |detail: String| StoreError::Corrupt {
                table: "alerts",
                detail,
            };
            out.push((
                PatientRef::new(p).map_err(|e| corrupt(e.to_string()))?,
                LastAlert {
                    level: Risk::parse(&level).ok_or_else(|| corrupt(format!("level {level}")))?,
                    score: u8::try_from(score).map_err(|e| corrupt(e.to_string()))?,
                    at: from_ms(at),
                },
            ));
        }
        Ok(out)
    }

    /// Unacknowledged alerts below the last tier.
    pub async fn open_alerts(&self) -> Result<Vec<OpenAlert>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, level, tier, tier_since_ms FROM alerts WHERE acknowledged_at_ms IS NULL AND tier < ?",
        )
        .bind(crate::alerts::TIERS.len() as i64)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for r in rows {
            let level: String = r.try_get(1)?;
            let tier: i64 = r.try_get(2)?;
            out.push(OpenAlert {
                id: r.try_get(0)?,
                level: Risk::parse(&level).ok_or_else(|| StoreError::Corrupt {
                    table: "alerts",
                    detail: format!("level {level}"),
                })?,
                tier: u8::try_from(tier).unwrap_or(u8::MAX),
                tier_since: from_ms(r.try_get(3)?),
            });
        }
        Ok(out)
    }

    /// Move an unacknowledged alert to a tier; false if it was acknowledged meanwhile.
    pub async fn escalate(&self, id: i64, tier: u8, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query(
            "UPDATE alerts SET tier = ?, tier_since_ms = ? WHERE id = ? AND acknowledged_at_ms IS NULL AND tier < ?",
        )
        .bind(i64::from(tier))
        .bind(ms(&at))
        .bind(id)
        .bind(i64::from(tier))
        .execute(&mut *tx)
        .await?;
        let done = r.rows_affected() == 1;
        if done {
            sqlx::query("INSERT INTO alert_events (alert_id, event, tier, at_ms) VALUES (?, 'escalated', ?, ?)")
                .bind(id)
                .bind(i64::from(tier))
                .bind(ms(&at))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(done)
    }

    /// Undo an [`Store::escalate`] made at `at` to `tier` that could not be recorded where it must be (the node's
    /// audit chain): back to `from_tier` since `from_since`, and its `escalated` event removed, so the next check
    /// escalates it again. False (nothing changed) if the alert was acknowledged or moved meanwhile.
    pub async fn undo_escalation(
        &self,
        id: i64,
        tier: u8,
        at: DateTime<Utc>,
        from_tier: u8,
        from_since: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query(
            "UPDATE alerts SET tier = ?, tier_since_ms = ?
             WHERE id = ? AND acknowledged_at_ms IS NULL AND tier = ? AND tier_since_ms = ?",
        )
        .bind(i64::from(from_tier))
        .bind(ms(&from_since))
        .bind(id)
        .bind(i64::from(tier))
        .bind(ms(&at))
        .execute(&mut *tx)
        .await?;
        let done = r.rows_affected() == 1;
        if done {
            sqlx::query(
                "DELETE FROM alert_events WHERE alert_id = ? AND event = 'escalated' AND tier = ? AND at_ms = ?",
            )
            .bind(id)
            .bind(i64::from(tier))
            .bind(ms(&at))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(done)
    }

    /// Acknowledge an alert; false if unknown or already acknowledged.
    pub async fn acknowledge(
        &self,
        id: i64,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query(
            "UPDATE alerts SET acknowledged_at_ms = ?, acknowledged_by = ? WHERE id = ? AND acknowledged_at_ms IS NULL",
        )
        .bind(ms(&at))
        .bind(by)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let done = r.rows_affected() == 1;
        if done {
            sqlx::query(
                "INSERT INTO alert_events (alert_id, event, tier, at_ms, actor)
                 SELECT id, 'acknowledged', tier, ?, ? FROM alerts WHERE id = ?",
            )
            .bind(ms(&at))
            .bind(by)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(done)
    }

    /// Take back an acknowledgement that the node could not record in its audit chain: only the one made `by` at
    /// `at` (a later or another acknowledgement is left alone). Escalation resumes from the alert's tier.
    pub async fn undo_acknowledgement(
        &self,
        id: i64,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query(
            "UPDATE alerts SET acknowledged_at_ms = NULL, acknowledged_by = NULL
             WHERE id = ? AND acknowledged_at_ms = ? AND acknowledged_by = ?",
        )
        .bind(id)
        .bind(ms(&at))
        .bind(by)
        .execute(&mut *tx)
        .await?;
        let done = r.rows_affected() == 1;
        if done {
            sqlx::query(
                "DELETE FROM alert_events WHERE alert_id = ? AND event = 'acknowledged' AND at_ms = ? AND actor = ?",
            )
            .bind(id)
            .bind(ms(&at))
            .bind(by)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(done)
    }

    /// Row counts of the main tables, for reports and tests.
    pub async fn counts(&self) -> Result<Counts, StoreError> {
        let one = |sql: &'static str| {
            let pool = self.pool.clone();
            async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(&pool).await }
        };
        Ok(Counts {
            messages: one("SELECT COUNT(*) FROM messages").await?,
            observations: one("SELECT COUNT(*) FROM observations").await?,
            distinct_observations: one(
                "SELECT COUNT(*) FROM (SELECT DISTINCT device_id, message_id, kind FROM observations)",
            )
            .await?,
            quarantined: one("SELECT COUNT(*) FROM quarantine").await?,
            gaps: one("SELECT COUNT(*) FROM gaps WHERE kind = 'gap'").await?,
            missing: one("SELECT COALESCE(SUM(missing), 0) FROM gaps WHERE kind = 'gap'").await?,
            late: one("SELECT COUNT(*) FROM gaps WHERE kind = 'late'").await?,
            alerts: one("SELECT COUNT(*) FROM alerts").await?,
        })
    }

    /// Quarantine reason codes with counts.
    pub async fn quarantine_reasons(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT reason_code, COUNT(*) FROM quarantine GROUP BY reason_code ORDER BY 1",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Latency of every alert in milliseconds: (from the reading's device timestamp, from receipt at the node).
    pub async fn alert_latencies(&self) -> Result<Vec<(i64, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT raised_at_ms - reading_at_ms, raised_at_ms - received_at_ms FROM alerts",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }
}

/// A registered device with its registry facts.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceRecord {
    /// The device.
    pub device: Device,
    /// When it was first registered.
    pub registered_at: DateTime<Utc>,
    /// Whether the broker has a password hash for it.
    pub has_password: bool,
    /// Its last sequence number and when a message of it was last stored.
    pub last_seen: Option<(u64, DateTime<Utc>)>,
}

/// A stored observation.
#[derive(Clone, Debug, PartialEq)]
pub struct ObservationRecord {
    /// Row id (the FHIR id of the Observation on the node).
    pub id: i64,
    /// Device.
    pub device_id: String,
    /// Patient.
    pub patient: String,
    /// The reading.
    pub reading: Reading,
    /// Reading time (device clock).
    pub effective: DateTime<Utc>,
    /// Receipt time at the node.
    pub received: DateTime<Utc>,
    /// The FHIR Observation JSON as built at ingest (without `id`).
    pub resource: String,
}

/// Which observations to read, newest first.
#[derive(Clone, Debug, Default)]
pub struct ObservationFilter {
    /// Only these patients (empty: none).
    pub patients: Vec<String>,
    /// Only these kinds (empty: all).
    pub kinds: Vec<ReadingKind>,
    /// Only from this device.
    pub device: Option<String>,
    /// Reading time at or after.
    pub from: Option<DateTime<Utc>>,
    /// Reading time before.
    pub to: Option<DateTime<Utc>>,
    /// At most this many.
    pub limit: u32,
}

/// A stored alert.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertRecord {
    /// Row id.
    pub id: i64,
    /// Patient.
    pub patient: String,
    /// Level.
    pub level: Risk,
    /// NEWS2 total.
    pub score: u8,
    /// Whether the set was complete.
    pub complete: bool,
    /// Current tier (1-based, see [`crate::alerts::TIERS`]).
    pub tier: u8,
    /// When it reached that tier.
    pub tier_since: DateTime<Utc>,
    /// Reading time of the triggering reading.
    pub reading_at: DateTime<Utc>,
    /// When it was raised.
    pub raised_at: DateTime<Utc>,
    /// Acknowledgement: when and by whom.
    pub acknowledged: Option<(DateTime<Utc>, String)>,
}

const OBS_COLUMNS: &str =
    "id, device_id, patient_ref, kind, value, value2, value_code, effective_ms, received_at_ms, resource";
const ALERT_COLUMNS: &str =
    "id, patient_ref, level, score, complete, tier, tier_since_ms, reading_at_ms, \
     raised_at_ms, acknowledged_at_ms, acknowledged_by";

fn corrupt(table: &'static str) -> impl Fn(String) -> StoreError {
    move |detail| StoreError::Corrupt { table, detail }
}

fn observation_row(r: &sqlx::sqlite::SqliteRow) -> Result<ObservationRecord, StoreError> {
    let kind: String = r.try_get(3)?;
    let bad = corrupt("observations");
    let kind = ReadingKind::parse(&kind).ok_or_else(|| bad(format!("kind {kind}")))?;
    let v: Option<f64> = r.try_get(4)?;
    let v2: Option<f64> = r.try_get(5)?;
    let code: Option<String> = r.try_get(6)?;
    Ok(ObservationRecord {
        id: r.try_get(0)?,
        device_id: r.try_get(1)?,
        patient: r.try_get(2)?,
        reading: reading_from_columns(kind, v, v2, code.as_deref())
            .ok_or_else(|| bad(format!("values of {}", kind.as_str())))?,
        effective: from_ms(r.try_get(7)?),
        received: from_ms(r.try_get(8)?),
        resource: r.try_get(9)?,
    })
}

fn alert_row(r: &sqlx::sqlite::SqliteRow) -> Result<AlertRecord, StoreError> {
    let level: String = r.try_get(2)?;
    let bad = corrupt("alerts");
    let score: i64 = r.try_get(3)?;
    let tier: i64 = r.try_get(5)?;
    let ack_at: Option<i64> = r.try_get(9)?;
    let ack_by: Option<String> = r.try_get(10)?;
    Ok(AlertRecord {
        id: r.try_get(0)?,
        patient: r.try_get(1)?,
        level: Risk::parse(&level).ok_or_else(|| bad(format!("level {level}")))?,
        score: u8::try_from(score).map_err(|e| bad(e.to_string()))?,
        complete: r.try_get(4)?,
        tier: u8::try_from(tier).map_err(|e| bad(e.to_string()))?,
        tier_since: from_ms(r.try_get(6)?),
        reading_at: from_ms(r.try_get(7)?),
        raised_at: from_ms(r.try_get(8)?),
        acknowledged: ack_at.map(|t| (from_ms(t), ack_by.unwrap_or_default())),
    })
}

fn device_row(r: &sqlx::sqlite::SqliteRow) -> Result<DeviceRecord, StoreError> {
    let bad = corrupt("devices");
    let id: String = r.try_get(0)?;
    let kind: String = r.try_get(1)?;
    let patient: Option<String> = r.try_get(2)?;
    let has_password: bool = r.try_get(3)?;
    let seq: Option<i64> = r.try_get(5)?;
    let seen: Option<i64> = r.try_get(6)?;
    Ok(DeviceRecord {
        device: Device {
            id: DeviceId::new(id).map_err(|e| bad(e.to_string()))?,
            kind: DeviceKind::parse(&kind).ok_or_else(|| bad(format!("kind {kind}")))?,
            patient: patient
                .map(PatientRef::new)
                .transpose()
                .map_err(|e| bad(e.to_string()))?,
        },
        registered_at: from_ms(r.try_get(4)?),
        has_password,
        last_seen: seq
            .zip(seen)
            .map(|(s, t)| (u64::try_from(s).unwrap_or(0), from_ms(t))),
    })
}

const DEVICE_SELECT: &str = "SELECT d.device_id, d.kind, d.patient_ref, d.password_hash IS NOT NULL, \
     d.registered_at_ms, s.last_seq, s.last_seen_ms FROM devices d LEFT JOIN device_seq s USING (device_id)";

/// Reads and registry writes for the node's pages, API and FHIR facade.
impl Store {
    /// Register a new device bound to a patient (the patient row is created with SpO2 scale 1 if it is new).
    /// False if the device id is already registered; nothing is changed then.
    pub async fn add_device(
        &self,
        device: &Device,
        password_hash: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        if let Some(p) = &device.patient {
            sqlx::query("INSERT INTO patients (patient_ref) VALUES (?) ON CONFLICT DO NOTHING")
                .bind(p.as_str())
                .execute(&mut *tx)
                .await?;
        }
        let r = sqlx::query(
            "INSERT INTO devices (device_id, kind, patient_ref, password_hash, registered_at_ms) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (device_id) DO NOTHING",
        )
        .bind(device.id.as_str())
        .bind(device.kind.as_str())
        .bind(device.patient.as_ref().map(PatientRef::as_str))
        .bind(password_hash)
        .bind(ms(&at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }

    /// Remove a device that never delivered anything (used to undo a registration whose audit event failed).
    pub async fn remove_unused_device(&self, device: &DeviceId) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "DELETE FROM devices WHERE device_id = ? AND NOT EXISTS (SELECT 1 FROM messages WHERE device_id = ?)",
        )
        .bind(device.as_str())
        .bind(device.as_str())
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Replace a device's broker password hash (`None` revokes it); false if the device is unknown.
    pub async fn set_password_hash(
        &self,
        device: &DeviceId,
        hash: Option<&str>,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query("UPDATE devices SET password_hash = ? WHERE device_id = ?")
            .bind(hash)
            .bind(device.as_str())
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// One device.
    pub async fn device(&self, device: &str) -> Result<Option<DeviceRecord>, StoreError> {
        let row = sqlx::query(&format!("{DEVICE_SELECT} WHERE d.device_id = ?"))
            .bind(device)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(device_row).transpose()
    }

    /// The devices bound to a patient.
    pub async fn devices_of(&self, patient: &str) -> Result<Vec<DeviceRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "{DEVICE_SELECT} WHERE d.patient_ref = ? ORDER BY d.device_id"
        ))
        .bind(patient)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(device_row).collect()
    }

    /// Patients with a bound device or stored readings.
    pub async fn monitored_patients(&self) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT patient_ref FROM devices WHERE patient_ref IS NOT NULL
             UNION SELECT patient_ref FROM latest_readings ORDER BY 1",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// A patient's newest reading of each kind.
    pub async fn latest_of(
        &self,
        patient: &str,
    ) -> Result<Vec<(Reading, DateTime<Utc>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT kind, value, value2, value_code, effective_ms FROM latest_readings WHERE patient_ref = ?",
        )
        .bind(patient)
        .fetch_all(&self.pool)
        .await?;
        let bad = corrupt("latest_readings");
        rows.iter()
            .map(|r| {
                let kind: String = r.try_get(0)?;
                let kind = ReadingKind::parse(&kind).ok_or_else(|| bad(format!("kind {kind}")))?;
                let v: Option<f64> = r.try_get(1)?;
                let v2: Option<f64> = r.try_get(2)?;
                let code: Option<String> = r.try_get(3)?;
                let reading = reading_from_columns(kind, v, v2, code.as_deref())
                    .ok_or_else(|| bad(format!("values of {}", kind.as_str())))?;
                Ok((reading, from_ms(r.try_get(4)?)))
            })
            .collect()
    }

    /// A patient's SpO2 scale (scale 1 when the patient has no row).
    pub async fn scale_of(&self, patient: &str) -> Result<Spo2Scale, StoreError> {
        let n: Option<i64> =
            sqlx::query_scalar("SELECT spo2_scale FROM patients WHERE patient_ref = ?")
                .bind(patient)
                .fetch_optional(&self.pool)
                .await?;
        match n {
            None => Ok(Spo2Scale::default()),
            Some(n) => {
                Spo2Scale::from_number(n).ok_or_else(|| corrupt("patients")(format!("scale {n}")))
            }
        }
    }

    /// Observations, newest first.
    pub async fn observations(
        &self,
        f: &ObservationFilter,
    ) -> Result<Vec<ObservationRecord>, StoreError> {
        if f.patients.is_empty() {
            return Ok(Vec::new());
        }
        let mut qb: sqlx::QueryBuilder<sqlx::Sqlite> = sqlx::QueryBuilder::new(format!(
            "SELECT {OBS_COLUMNS} FROM observations WHERE patient_ref IN ("
        ));
        let mut sep = qb.separated(", ");
        for p in &f.patients {
            sep.push_bind(p.as_str());
        }
        qb.push(")");
        if !f.kinds.is_empty() {
            qb.push(" AND kind IN (");
            let mut sep = qb.separated(", ");
            for k in &f.kinds {
                sep.push_bind(k.as_str());
            }
            qb.push(")");
        }
        if let Some(d) = &f.device {
            qb.push(" AND device_id = ").push_bind(d.as_str());
        }
        if let Some(t) = &f.from {
            qb.push(" AND effective_ms >= ").push_bind(ms(t));
        }
        if let Some(t) = &f.to {
            qb.push(" AND effective_ms < ").push_bind(ms(t));
        }
        qb.push(" ORDER BY effective_ms DESC, id DESC LIMIT ")
            .push_bind(i64::from(f.limit));
        let rows = qb.build().fetch_all(&self.pool).await?;
        rows.iter().map(observation_row).collect()
    }

    /// One observation.
    pub async fn observation(&self, id: i64) -> Result<Option<ObservationRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {OBS_COLUMNS} FROM observations WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(observation_row).transpose()
    }

    /// Alerts of these patients, newest first; `open_only`: not acknowledged.
    pub async fn alerts_of(
        &self,
        patients: &[String],
        open_only: bool,
        limit: u32,
    ) -> Result<Vec<AlertRecord>, StoreError> {
        if patients.is_empty() {
            return Ok(Vec::new());
        }
        let mut qb: sqlx::QueryBuilder<sqlx::Sqlite> = sqlx::QueryBuilder::new(format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE patient_ref IN ("
        ));
        let mut sep = qb.separated(", ");
        for p in patients {
            sep.push_bind(p.as_str());
        }
        qb.push(")");
        if open_only {
            qb.push(" AND acknowledged_at_ms IS NULL");
        }
        qb.push(" ORDER BY raised_at_ms DESC, id DESC LIMIT ")
            .push_bind(i64::from(limit));
        let rows = qb.build().fetch_all(&self.pool).await?;
        rows.iter().map(alert_row).collect()
    }

    /// One alert.
    pub async fn alert(&self, id: i64) -> Result<Option<AlertRecord>, StoreError> {
        let row = sqlx::query(&format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(alert_row).transpose()
    }
}

/// Row counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Accepted messages.
    pub messages: i64,
    /// Observation rows.
    pub observations: i64,
    /// Distinct (device, message, kind) among observation rows; less than `observations` means duplicates.
    pub distinct_observations: i64,
    /// Quarantined payloads.
    pub quarantined: i64,
    /// Gap events.
    pub gaps: i64,
    /// Messages missing according to the gap events.
    pub missing: i64,
    /// Late (out-of-order) arrivals.
    pub late: i64,
    /// Alerts raised.
    pub alerts: i64,
}

/// Rebuild a reading from its columns.
pub fn reading_from_columns(
    kind: ReadingKind,
    value: Option<f64>,
    value2: Option<f64>,
    code: Option<&str>,
) -> Option<Reading> {
    Some(match kind {
        ReadingKind::HeartRate => Reading::HeartRate(value?),
        ReadingKind::RespiratoryRate => Reading::RespiratoryRate(value?),
        ReadingKind::Spo2 => Reading::Spo2(value?),
        ReadingKind::Temperature => Reading::Temperature(value?),
        ReadingKind::OxygenFlow => Reading::OxygenFlow(value?),
        ReadingKind::BloodPressure => Reading::BloodPressure {
            systolic: value?,
            diastolic: value2?,
        },
        ReadingKind::Consciousness => Reading::Consciousness(Acvpu::from_letter(code?)?),
    })
}
