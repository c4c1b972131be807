//! Group commit of index rows.
//!
//! Every store waits for the commit of its own row before it reports success, but stores that
//! arrive while a commit is running are written together in the next one: one multi-row
//! `INSERT … RETURNING` (one SQLite transaction, one round trip to the connection's worker
//! thread) instead of one transaction per instance. A lone association pays what it paid before
//! (one statement); concurrent associations share transactions.
//!
//! There is no long-lived background task: the first store to find the queue idle spawns a
//! writer task that drains the queue and ends when it is empty. The writer is a spawned task
//! rather than the caller itself so that a caller dropped mid-commit (an HTTP client going away)
//! does not abandon the rows of the others. sqlx has no batching of its own, hence this module.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use sqlx::sqlite::{SqliteConnectOptions, SqliteRow};
use sqlx::{ConnectOptions, Connection, Row, SqliteConnection, SqlitePool};
use tokio::sync::oneshot;

use crate::archive::{IndexAttributes, InstanceRecord};
use crate::error::{Error, Result};

/// Most rows written by one statement (14 bound values each, far below SQLite's limit of
/// 32,766 parameters).
const MAX_BATCH: usize = 64;

/// One instance's index row.
pub(crate) struct IndexRow {
    pub attrs: IndexAttributes,
    pub record: InstanceRecord,
    /// Who stored the instance (the archive's principal).
    pub source: String,
}

struct Pending {
    row: IndexRow,
    reply: oneshot::Sender<Result<bool>>,
}

#[derive(Default)]
struct Queue {
    items: Vec<Pending>,
    /// A writer task is running and will pick up whatever is queued.
    writing: bool,
}

pub(crate) struct IndexWriter {
    pool: SqlitePool,
    /// For a database file, the writer's own connection, opened on first use: a pooled one is
    /// pinged by sqlx each time it goes back to the pool (a round trip to its worker thread per
    /// commit). An in-memory database lives in the pool's only connection and has none.
    own: Option<(
        SqliteConnectOptions,
        tokio::sync::Mutex<Option<SqliteConnection>>,
    )>,
    /// Series whose patient, study and series rows are known to exist: their instances need
    /// only the instance row.
    known_series: Mutex<HashSet<String>>,
    queue: Mutex<Queue>,
}

fn stopped() -> Error {
    Error::Io(std::io::Error::other(
        "the index writer stopped before committing this instance",
    ))
}

impl IndexWriter {
    pub(crate) fn new(pool: SqlitePool, own: Option<SqliteConnectOptions>) -> Arc<Self> {
        Arc::new(IndexWriter {
            pool,
            own: own.map(|o| (o, tokio::sync::Mutex::new(None))),
            known_series: Mutex::default(),
            queue: Mutex::default(),
        })
    }

    /// Inserts the rows of one instance and returns once they are committed: true if the
    /// instance row is new, false if its SOP Instance UID was already indexed.
    pub(crate) async fn insert(self: &Arc<Self>, row: IndexRow) -> Result<bool> {
        let (reply, answer) = oneshot::channel();
        let start_writer = {
            let mut queue = self.queue.lock().map_err(|_| stopped())?;
            queue.items.push(Pending { row, reply });
            !std::mem::replace(&mut queue.writing, true)
        };
        if start_writer {
            let writer = self.clone();
            tokio::spawn(async move { writer.drain().await });
        }
        answer.await.map_err(|_| stopped())?
    }

    /// Writes queued rows batch by batch until the queue is empty.
    async fn drain(self: Arc<Self>) {
        let mut guard = WritingGuard {
            writer: &self,
            armed: true,
        };
        loop {
            let batch: Vec<Pending> = {
                let Ok(mut queue) = self.queue.lock() else {
                    return;
                };
                if queue.items.is_empty() {
                    // Cleared under the same lock that pushers check, so no row is left behind.
                    queue.writing = false;
                    guard.armed = false;
                    return;
                }
                let n = queue.items.len().min(MAX_BATCH);
                queue.items.drain(..n).collect()
            };
            let rows: Vec<&IndexRow> = batch.iter().map(|p| &p.row).collect();
            let results = self.write(&rows).await;
            for (pending, result) in batch.into_iter().zip(results) {
                let _ = pending.reply.send(result);
            }
        }
    }

    /// Writes a batch; if it fails as a whole, each row alone, so that one bad row fails only
    /// its own store.
    async fn write(&self, rows: &[&IndexRow]) -> Vec<Result<bool>> {
        match self.write_batch(rows).await {
            Ok(inserted) => inserted.into_iter().map(Ok).collect(),
            Err(e) if rows.len() == 1 => vec![Err(e)],
            Err(_) => {
                let mut out = Vec::with_capacity(rows.len());
                for row in rows {
                    out.push(
                        self.write_batch(std::slice::from_ref(row))
                            .await
                            .map(|v| v.first().copied().unwrap_or(false)),
                    );
                }
                out
            }
        }
    }

    async fn write_batch(&self, rows: &[&IndexRow]) -> Result<Vec<bool>> {
        let new_series: Vec<&IndexRow> = {
            let known = self.known_series.lock().map_err(|_| stopped())?;
            let mut seen = HashSet::new();
            rows.iter()
                .copied()
                .filter(|r| {
                    !known.contains(&r.attrs.series_uid) && seen.insert(&r.attrs.series_uid)
                })
                .collect()
        };
        let sql = insert_instances_sql(rows.len());
        let result = match &self.own {
            Some((options, slot)) => {
                let mut slot = slot.lock().await;
                let conn = match &mut *slot {
                    Some(c) => c,
                    None => slot.insert(options.connect().await?),
                };
                let result = write_rows(conn, &sql, rows, &new_series).await;
                if result.is_err() {
                    // Reopened on the next batch, in case the connection itself is broken.
                    *slot = None;
                }
                result
            }
            None => {
                let mut conn = self.pool.acquire().await?;
                write_rows(&mut conn, &sql, rows, &new_series).await
            }
        };
        let returned = match result {
            Ok(r) => r,
            Err(e) => {
                // Rows of a series the cache wrongly thinks complete would fail forever.
                if let Ok(mut known) = self.known_series.lock() {
                    for row in rows {
                        known.remove(&row.attrs.series_uid);
                    }
                }
                return Err(e.into());
            }
        };
        if !new_series.is_empty() {
            if let Ok(mut known) = self.known_series.lock() {
                known.extend(new_series.iter().map(|r| r.attrs.series_uid.clone()));
            }
        }
        let mut inserted = HashSet::with_capacity(returned.len());
        for r in &returned {
            inserted.insert(r.try_get::<String, _>(0)?);
        }
        // A SOP Instance UID twice in one batch: the first row in VALUES order is the one
        // SQLite inserted, the later ones hit the conflict.
        let mut claimed = HashSet::new();
        Ok(rows
            .iter()
            .map(|r| {
                let sop = &r.attrs.sop_uid;
                inserted.contains(sop) && claimed.insert(sop.clone())
            })
            .collect())
    }
}

/// Inserts the instance rows (and, in the same transaction, the parent rows of new series);
/// returns the SOP Instance UIDs that were inserted.
async fn write_rows(
    conn: &mut SqliteConnection,
    sql: &str,
    rows: &[&IndexRow],
    new_series: &[&IndexRow],
) -> std::result::Result<Vec<SqliteRow>, sqlx::Error> {
    if new_series.is_empty() {
        // A single statement is its own transaction.
        return bind_instances(sqlx::query(sql), rows)
            .fetch_all(&mut *conn)
            .await;
    }
    let mut tx = Connection::begin(&mut *conn).await?;
    for row in new_series {
        insert_parents(&row.attrs, &mut tx).await?;
    }
    let returned = bind_instances(sqlx::query(sql), rows)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(returned)
}

/// On a writer that ends abnormally (panic, runtime shutting down): lets the next store start a
/// new writer and fails the rows still queued rather than leaving their stores waiting.
struct WritingGuard<'a> {
    writer: &'a IndexWriter,
    armed: bool,
}

impl Drop for WritingGuard<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Ok(mut queue) = self.writer.queue.lock() {
            queue.writing = false;
            queue.items.clear();
        }
    }
}

const INSTANCE_COLUMNS: &str = "sop_uid, series_uid, study_uid, sop_class_uid, instance_number,
    rows, columns, number_of_frames, transfer_syntax, object_key, size, data_offset, stored_at, source";
const INSTANCE_PLACEHOLDERS: &str = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

fn insert_instances_sql(n: usize) -> String {
    let mut sql = format!("INSERT INTO instances ({INSTANCE_COLUMNS}) VALUES ");
    for i in 0..n {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(INSTANCE_PLACEHOLDERS);
    }
    sql.push_str(" ON CONFLICT (sop_uid) DO NOTHING RETURNING sop_uid");
    sql
}

fn bind_instances<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    rows: &[&'q IndexRow],
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
    let now = chrono::Utc::now().to_rfc3339();
    for row in rows {
        let (a, r) = (&row.attrs, &row.record);
        query = query
            .bind(&a.sop_uid)
            .bind(&a.series_uid)
            .bind(&a.study_uid)
            .bind(&a.sop_class_uid)
            .bind(a.instance_number)
            .bind(a.rows)
            .bind(a.columns)
            .bind(a.number_of_frames)
            .bind(&a.transfer_syntax)
            .bind(&r.object_key)
            .bind(r.size as i64)
            .bind(r.data_offset as i64)
            .bind(now.clone())
            .bind(&row.source);
    }
    query
}

/// Inserts the patient, study and series rows of an instance if they are missing.
async fn insert_parents(
    a: &IndexAttributes,
    conn: &mut sqlx::SqliteConnection,
) -> std::result::Result<(), sqlx::Error> {
    // Patients are keyed by Patient ID; instances without one share the empty key, as in most
    // PACS.
    sqlx::query(
        "INSERT INTO patients (patient_key, patient_id, patient_name, birth_date, sex)
         VALUES (?1, ?1, ?2, ?3, ?4) ON CONFLICT (patient_key) DO NOTHING",
    )
    .bind(&a.patient_id)
    .bind(&a.patient_name)
    .bind(&a.birth_date)
    .bind(&a.sex)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO studies (study_uid, patient_key, study_date, study_time, accession_number,
             study_id, study_description, referring_physician)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (study_uid) DO NOTHING",
    )
    .bind(&a.study_uid)
    .bind(&a.patient_id)
    .bind(&a.study_date)
    .bind(&a.study_time)
    .bind(&a.accession_number)
    .bind(&a.study_id)
    .bind(&a.study_description)
    .bind(&a.referring_physician)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO series (series_uid, study_uid, modality, series_number,
             series_description, body_part, series_date)
         VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (series_uid) DO NOTHING",
    )
    .bind(&a.series_uid)
    .bind(&a.study_uid)
    .bind(&a.modality)
    .bind(a.series_number)
    .bind(&a.series_description)
    .bind(&a.body_part)
    .bind(&a.series_date)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// What [`IndexWriter::delete_study`] did in the index.
pub(crate) enum IndexDeletion {
    /// The study's rows are gone; the object keys (and sizes) its instances had.
    Deleted(Vec<(String, u64)>),
    /// Some instances came from another source than the one required; nothing was changed.
    Kept(u64),
    /// The index has no such study.
    NotFound,
}

impl IndexWriter {
    /// Removes a study's rows (instances, then series, study and patient rows left without children) in one
    /// transaction, on the writer's connection. With `only_from`, nothing is removed when any instance of the
    /// study was stored by another source. Callers hold the archive's delete lock, so no store of an instance
    /// runs meanwhile; the series cache is emptied since its series may be gone.
    pub(crate) async fn delete_study(
        &self,
        study_uid: &str,
        only_from: Option<&str>,
    ) -> Result<IndexDeletion> {
        let result = match &self.own {
            Some((options, slot)) => {
                let mut slot = slot.lock().await;
                let conn = match &mut *slot {
                    Some(c) => c,
                    None => slot.insert(options.connect().await?),
                };
                let result = delete_rows(conn, study_uid, only_from).await;
                if result.is_err() {
                    *slot = None;
                }
                result
            }
            None => {
                let mut conn = self.pool.acquire().await?;
                delete_rows(&mut conn, study_uid, only_from).await
            }
        };
        if let Ok(mut known) = self.known_series.lock() {
            known.clear();
        }
        Ok(result?)
    }
}

async fn delete_rows(
    conn: &mut SqliteConnection,
    study_uid: &str,
    only_from: Option<&str>,
) -> std::result::Result<IndexDeletion, sqlx::Error> {
    let mut tx = Connection::begin(&mut *conn).await?;
    if let Some(source) = only_from {
        let others: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM instances WHERE study_uid = ? AND source <> ?",
        )
        .bind(study_uid)
        .bind(source)
        .fetch_one(&mut *tx)
        .await?;
        if others > 0 {
            return Ok(IndexDeletion::Kept(others.max(0) as u64));
        }
    }
    let patient: Option<String> =
        sqlx::query_scalar("SELECT patient_key FROM studies WHERE study_uid = ?")
            .bind(study_uid)
            .fetch_optional(&mut *tx)
            .await?;
    let objects: Vec<(String, i64)> =
        sqlx::query_as("DELETE FROM instances WHERE study_uid = ? RETURNING object_key, size")
            .bind(study_uid)
            .fetch_all(&mut *tx)
            .await?;
    if patient.is_none() && objects.is_empty() {
        return Ok(IndexDeletion::NotFound);
    }
    // Parent rows go only when nothing refers to them any more (an instance of another study filed under a
    // series of this one keeps that series and this study).
    sqlx::query(
        "DELETE FROM series WHERE study_uid = ?1
           AND NOT EXISTS (SELECT 1 FROM instances i WHERE i.series_uid = series.series_uid)",
    )
    .bind(study_uid)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "DELETE FROM studies WHERE study_uid = ?1
           AND NOT EXISTS (SELECT 1 FROM series s WHERE s.study_uid = ?1)
           AND NOT EXISTS (SELECT 1 FROM instances i WHERE i.study_uid = ?1)",
    )
    .bind(study_uid)
    .execute(&mut *tx)
    .await?;
    if let Some(patient) = patient {
        sqlx::query(
            "DELETE FROM patients WHERE patient_key = ?1
               AND NOT EXISTS (SELECT 1 FROM studies s WHERE s.patient_key = ?1)",
        )
        .bind(patient)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(IndexDeletion::Deleted(
        objects
            .into_iter()
            .map(|(k, n)| (k, n.max(0) as u64))
            .collect(),
    ))
}
