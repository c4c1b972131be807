//! The single writer with group commit.
//!
//! SQLite admits one writer at a time, so every write of the node goes through one connection owned by one task.
//! Requests arriving while a transaction is being written are gathered into the next transaction: each runs inside
//! its own `SAVEPOINT` (a failing request is rolled back alone and gets its own error), their audit events are
//! chained in arrival order, and one `COMMIT` makes the whole group durable. Nobody is answered before the commit
//! that holds their change, so a reply still means "stored". The audit chain head is read once per group, under
//! the write lock, because other processes (`caravan token create`) may append to the chain too.
//!
//! Hand-written because sqlx offers transactions but no group commit, and the gain is the point: a commit writes
//! every touched page to the WAL (audit table, its indexes, the row's table and indexes), and a group shares them.

use crate::db_err;
use caravan_domain::audit::{format_audit_time, AuditEvent, AuditRecord};
use caravan_store::{Result, StoreError};
use sqlx::{Connection, Row, SqliteConnection};
use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use tokio::sync::{mpsc, oneshot};

/// Most requests in one transaction: bounds the latency a request can add to the others of its group.
const MAX_GROUP: usize = 64;

/// Audit rows per multi-row INSERT: 14 columns x 500 rows stays far below SQLite's 32,766 bound parameters.
const AUDIT_ROWS_PER_INSERT: usize = 500;

type Output = Box<dyn Any + Send>;
type BoxFuture<'c, T> = Pin<Box<dyn Future<Output = T> + Send + 'c>>;
type Run =
    Box<dyn for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<Output>> + Send>;

struct Job {
    /// `None` for a job that only appends audit events (a read being recorded): those of a group share one
    /// multi-row insert and one savepoint instead of three round trips each.
    run: Option<Run>,
    audit: Vec<AuditEvent>,
    reply: oneshot::Sender<Result<Output>>,
}

/// Handle to the writer task; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Job>,
}

impl Writer {
    /// Take ownership of the write connection and start the task that owns it.
    pub async fn start(conn: SqliteConnection) -> Result<Self> {
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(run(conn, rx));
        Ok(Self { tx })
    }

    /// Run `f` and append `audit` in one transaction (shared with concurrent requests), answered after commit.
    pub async fn write<F, T>(&self, audit: Vec<AuditEvent>, f: F) -> Result<T>
    where
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let run: Run =
            Box::new(move |c| Box::pin(async move { f(c).await.map(|v| Box::new(v) as Output) }));
        self.submit(Some(run), audit)
            .await?
            .downcast::<T>()
            .map(|b| *b)
            .map_err(|_| StoreError::Database("writer returned an unexpected type".into()))
    }

    /// Append `audit` alone (reads of patient data), answered after the commit that holds it.
    pub async fn append_audit(&self, audit: Vec<AuditEvent>) -> Result<()> {
        self.submit(None, audit).await.map(|_| ())
    }

    async fn submit(&self, run: Option<Run>, audit: Vec<AuditEvent>) -> Result<Output> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Job { run, audit, reply })
            .await
            .map_err(|_| StoreError::Database("the database writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Database("the database writer has stopped".into()))?
    }
}

type Head = Option<(i64, String)>;

async fn load_head(conn: &mut SqliteConnection) -> Result<Head> {
    let row = sqlx::query("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)?;
    Ok(row.map(|r| (r.get("seq"), r.get("hash"))))
}

async fn exec(conn: &mut SqliteConnection, sql: &str) -> Result<()> {
    sqlx::query(sql)
        .execute(&mut *conn)
        .await
        .map(|_| ())
        .map_err(db_err)
}

async fn run(mut conn: SqliteConnection, mut rx: mpsc::Receiver<Job>) {
    while let Some(first) = rx.recv().await {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let mut answers: Vec<(oneshot::Sender<Result<Output>>, Result<Output>)> =
            Vec::with_capacity(group.len());
        // Another process (`caravan token create`, `caravan audit ...`) may have appended to the chain since the
        // last group: read the head again once the write lock is ours (BEGIN IMMEDIATE), once per group.
        let begun = async {
            exec(&mut conn, "BEGIN IMMEDIATE").await?;
            match load_head(&mut conn).await {
                Ok(h) => Ok(h),
                Err(e) => {
                    let _ = exec(&mut conn, "ROLLBACK").await;
                    Err(e)
                }
            }
        };
        let mut head = match begun.await {
            Ok(h) => h,
            Err(e) => {
                for job in group {
                    let _ = job.reply.send(Err(e.clone()));
                }
                continue;
            }
        };
        let mut audit_only = Vec::new();
        for job in group {
            let Some(run) = job.run else {
                audit_only.push(job);
                continue;
            };
            let result = in_savepoint(&mut conn, &mut head, async |conn, head| {
                let out = run(conn).await?;
                append_audit(conn, head, job.audit).await.map(|()| out)
            })
            .await;
            answers.push((job.reply, result));
        }
        if !audit_only.is_empty() {
            let mut events = Vec::new();
            let mut replies = Vec::with_capacity(audit_only.len());
            for job in audit_only {
                events.extend(job.audit);
                replies.push(job.reply);
            }
            // One INSERT statement is atomic by itself (SQLite undoes a failed statement alone), so a batch that
            // fits in one needs no savepoint: two round trips fewer per group.
            let result = if events.len() <= AUDIT_ROWS_PER_INSERT {
                append_audit(&mut conn, &mut head, events).await
            } else {
                in_savepoint(&mut conn, &mut head, async |conn, head| {
                    append_audit(conn, head, events).await
                })
                .await
            };
            for reply in replies {
                let r = match &result {
                    Ok(()) => Ok(Box::new(()) as Output),
                    Err(e) => Err(e.clone()),
                };
                answers.push((reply, r));
            }
        }
        match exec(&mut conn, "COMMIT").await {
            Ok(()) => {
                for (reply, result) in answers {
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "group commit failed; every request of the group is refused");
                let _ = exec(&mut conn, "ROLLBACK").await;
                for (reply, _) in answers {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
    let _ = conn.close().await;
}

/// Run `f` inside its own savepoint: on failure only its changes are undone and the chain head is put back.
async fn in_savepoint<T>(
    conn: &mut SqliteConnection,
    head: &mut Head,
    f: impl AsyncFnOnce(&mut SqliteConnection, &mut Head) -> Result<T>,
) -> Result<T> {
    let before = head.clone();
    exec(conn, "SAVEPOINT request").await?;
    match f(conn, head).await {
        Ok(out) => exec(conn, "RELEASE request").await.map(|()| out),
        Err(e) => {
            *head = before;
            // Undo this request only; the others of the group stay.
            let undo = async {
                exec(conn, "ROLLBACK TO request").await?;
                exec(conn, "RELEASE request").await
            };
            if let Err(u) = undo.await {
                tracing::error!(error = %u, "could not roll back a failed write");
            }
            Err(e)
        }
    }
}

/// Chain `events` after `head` and insert them with one multi-row statement per chunk (a list of 50 cases audits
/// 50 reads; each statement is a round trip to sqlx's SQLite worker thread). 14 columns x 500 rows stays far below
/// SQLite's limit of 32,766 bound parameters. `head` advances only if the insert succeeds.
async fn append_audit(
    conn: &mut SqliteConnection,
    head: &mut Head,
    events: Vec<AuditEvent>,
) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let mut prev = head.clone();
    let mut records = Vec::with_capacity(events.len());
    for e in events {
        let rec = AuditRecord::chain(e, prev.as_ref().map(|(s, h)| (*s, h.as_str())));
        prev = Some((rec.seq, rec.hash.clone()));
        records.push(rec);
    }
    for chunk in records.chunks(AUDIT_ROWS_PER_INSERT) {
        let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "INSERT INTO audit_events (seq, at, actor_user, actor_name, actor_institution, actor_role, action,
               entity_type, entity_id, patient_id, purpose, detail, prev_hash, hash) ",
        );
        q.push_values(chunk, |mut b, rec| {
            let ev = &rec.event;
            b.push_bind(rec.seq)
                .push_bind(format_audit_time(ev.at))
                .push_bind(ev.actor_user.map(|u| u.to_string()))
                .push_bind(ev.actor_name.clone())
                .push_bind(ev.actor_institution.map(|i| i.to_string()))
                .push_bind(ev.actor_role.map(|r| r.as_str()))
                .push_bind(ev.action.as_str())
                .push_bind(ev.entity_type.clone())
                .push_bind(ev.entity_id.clone())
                .push_bind(ev.patient_id.map(|p| p.to_string()))
                .push_bind(ev.purpose.clone())
                .push_bind(ev.detail.clone())
                .push_bind(rec.prev_hash.clone())
                .push_bind(rec.hash.clone());
        });
        q.build().execute(&mut *conn).await.map_err(db_err)?;
    }
    *head = prev;
    Ok(())
}
