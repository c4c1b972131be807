//! The single writer with group commit.
//!
//! SQLite admits one writer at a time, so every write of the node goes through one connection owned by one task.
//! Requests arriving while a transaction is being written are gathered into the next transaction: each runs inside
//! its own `SAVEPOINT` (a failing request is rolled back alone and gets its own error; until the transaction holds
//! another request's writes none is needed, and a failure there rolls back the transaction and begins it again);
//! the audit events of the
//! requests that succeeded are chained in arrival order and inserted together just before the one `COMMIT` that
//! makes the whole group durable (if that insert or the commit fails, the whole group is rolled back and every
//! request refused). Nobody is answered before the commit
//! that holds their change, so a reply still means "stored". The audit chain head is read once per group, under
//! the write lock, because other processes (`caravan token create`) may append to the chain too.
//!
//! Hand-written because sqlx offers transactions but no group commit, and the gain is the point: a commit writes
//! every touched page to the WAL (audit table, its indexes, the row's table and indexes), and a group shares them.

use crate::db_err;
use caravan_domain::audit::{encode_subjects, format_audit_time, AuditEvent, AuditRecord};
use caravan_store::{Result, StoreError};
use sqlx::{Connection, Row, SqliteConnection};
use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch, Mutex};

/// Most requests in one transaction: bounds the latency a request can add to the others of its group.
const MAX_GROUP: usize = 64;

/// Audit rows per multi-row INSERT: 15 columns x 500 rows stays far below SQLite's 32,766 bound parameters (and
/// so do the `audit_subjects` rows of a chunk, 2 columns each, inserted 500 to a statement in the same batch).
const AUDIT_ROWS_PER_INSERT: usize = 500;

type Output = Box<dyn Any + Send>;
type BoxFuture<'c, T> = Pin<Box<dyn Future<Output = T> + Send + 'c>>;
type Run =
    Box<dyn for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<Output>> + Send>;

struct Job {
    /// `None` for a job that only appends audit events (a read being recorded): it needs no savepoint.
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
    /// Take ownership of the write connection and start the task that owns it, and the task that checkpoints
    /// the WAL on `checkpointer` (see [`crate::checkpoint`]); the write connection's own checkpoints are turned
    /// off here.
    pub async fn start(mut conn: SqliteConnection, checkpointer: SqliteConnection) -> Result<Self> {
        exec(&mut conn, "PRAGMA wal_autocheckpoint = 0").await?;
        let (tx, rx) = mpsc::channel(1024);
        let (commits, committed) = watch::channel(0u64);
        let pause = Arc::new(Mutex::new(()));
        tokio::spawn(crate::checkpoint::run(
            checkpointer,
            committed,
            pause.clone(),
        ));
        tokio::spawn(run(conn, rx, commits, pause));
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
        if audit.is_empty() {
            return Ok(());
        }
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

async fn exec(conn: &mut SqliteConnection, sql: &str) -> Result<()> {
    sqlx::query(sql)
        .execute(&mut *conn)
        .await
        .map(|_| ())
        .map_err(db_err)
}

/// Take the write lock and read the audit chain's head, in one round trip to sqlx's worker thread. Another
/// process (`caravan token create`, `caravan audit ...`) may have appended to the chain since the last group, so
/// the head is read again once the lock is ours, once per group.
async fn begin(conn: &mut SqliteConnection) -> Result<Head> {
    let row = sqlx::query(
        "BEGIN IMMEDIATE; SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await;
    match row {
        Ok(row) => Ok(row.map(|r| (r.get("seq"), r.get("hash")))),
        Err(e) => {
            // The BEGIN may have succeeded and the read failed.
            let _ = exec(conn, "ROLLBACK").await;
            Err(db_err(e))
        }
    }
}

/// The statements that control a group's transaction are sent together with the next one where they can be
/// (each `execute` is a round trip to sqlx's worker thread and back): a request's `RELEASE` goes with the next
/// request's `SAVEPOINT`, or with the group's audit insert and `COMMIT`.
async fn run(
    mut conn: SqliteConnection,
    mut rx: mpsc::Receiver<Job>,
    commits: watch::Sender<u64>,
    pause: Arc<Mutex<()>>,
) {
    while let Some(first) = rx.recv().await {
        // Held from BEGIN to COMMIT: the checkpointer takes it to start the WAL over between two groups.
        let _turn = pause.lock().await;
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let mut head = match begin(&mut conn).await {
            Ok(h) => h,
            Err(e) => {
                for job in group {
                    let _ = job.reply.send(Err(e.clone()));
                }
                continue;
            }
        };
        let mut answers: Vec<(oneshot::Sender<Result<Output>>, Result<Output>)> =
            Vec::with_capacity(group.len());
        // The audit events of the requests that succeeded, in arrival order; one insert at the end of the group.
        let mut events = Vec::new();
        // Whether the savepoint of the last request is still to be released.
        let mut open = false;
        // Whether the transaction holds writes of earlier requests of the group. Until it does, a request needs
        // no savepoint (one round trip to the connection's thread fewer): if it fails, the whole transaction,
        // which holds only its own writes, is rolled back and begun again.
        let mut holds_writes = false;
        let mut broken = None;
        for job in group {
            let Some(run) = job.run else {
                events.extend(job.audit);
                answers.push((job.reply, Ok(Box::new(()) as Output)));
                continue;
            };
            if broken.is_some() {
                answers.push((job.reply, Ok(Box::new(()) as Output)));
                continue;
            }
            if holds_writes {
                let sql = if open {
                    "RELEASE request; SAVEPOINT request"
                } else {
                    "SAVEPOINT request"
                };
                if let Err(e) = exec(&mut conn, sql).await {
                    broken = Some(e);
                    answers.push((job.reply, Ok(Box::new(()) as Output)));
                    continue;
                }
                open = true;
            }
            match run(&mut conn).await {
                Ok(out) => {
                    events.extend(job.audit);
                    answers.push((job.reply, Ok(out)));
                    holds_writes = true;
                }
                Err(e) if open => {
                    // Undo this request only; the others of the group stay.
                    open = false;
                    if let Err(u) = exec(&mut conn, "ROLLBACK TO request; RELEASE request").await {
                        broken = Some(u);
                    }
                    answers.push((job.reply, Err(e)));
                }
                Err(e) => {
                    // No savepoint: nothing but this request's writes to undo. The audit events gathered so far
                    // are only in memory and stay; the head is read again under the new lock.
                    let restarted = match exec(&mut conn, "ROLLBACK").await {
                        Ok(()) => begin(&mut conn).await,
                        Err(u) => Err(u),
                    };
                    match restarted {
                        Ok(h) => head = h,
                        Err(u) => broken = Some(u),
                    }
                    answers.push((job.reply, Err(e)));
                }
            }
        }
        let finished = match broken {
            Some(e) => Err(e),
            None => commit(&mut conn, &mut head, events, open).await,
        };
        match finished {
            Ok(()) => {
                commits.send_modify(|n| *n += 1);
                for (reply, result) in answers {
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                // A control statement, the audit insert or the COMMIT failed: nothing of the group is kept, and
                // nobody is told otherwise.
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

/// Chain `events` after `head`, insert them and commit: one round trip when they fit in one multi-row INSERT
/// (a list of 50 cases is one event with 50 subjects), which also releases the last request's savepoint when `open`.
async fn commit(
    conn: &mut SqliteConnection,
    head: &mut Head,
    events: Vec<AuditEvent>,
    open: bool,
) -> Result<()> {
    let mut prev = head.clone();
    let mut records = Vec::with_capacity(events.len());
    for e in events {
        let rec = AuditRecord::chain(e, prev.as_ref().map(|(s, h)| (*s, h.as_str())));
        prev = Some((rec.seq, rec.hash.clone()));
        records.push(rec);
    }
    let mut chunks = records.chunks(AUDIT_ROWS_PER_INSERT).peekable();
    let mut first = true;
    loop {
        let chunk = chunks.next();
        let last = chunks.peek().is_none();
        let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new("");
        if first && open {
            q.push("RELEASE request; ");
        }
        first = false;
        if let Some(chunk) = chunk {
            q.push(
                "INSERT INTO audit_events (seq, at, actor_user, actor_name, actor_institution, actor_role,
                   action, entity_type, entity_id, patient_id, purpose, detail, subjects, prev_hash, hash) ",
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
                    .push_bind(encode_subjects(&ev.subjects))
                    .push_bind(rec.prev_hash.clone())
                    .push_bind(rec.hash.clone());
            });
            q.push("; ");
            // The patients a search listed, so that their access logs find it.
            let listed: Vec<(String, i64)> = chunk
                .iter()
                .flat_map(|r| {
                    r.event
                        .subject_patients()
                        .into_iter()
                        .map(move |p| (p.to_string(), r.seq))
                })
                .collect();
            for part in listed.chunks(AUDIT_ROWS_PER_INSERT) {
                q.push("INSERT INTO audit_subjects (patient_id, seq) ");
                q.push_values(part, |mut b, (p, seq)| {
                    b.push_bind(p.clone()).push_bind(*seq);
                });
                q.push("; ");
            }
        }
        if last {
            q.push("COMMIT");
        }
        q.build().execute(&mut *conn).await.map_err(db_err)?;
        if last {
            break;
        }
    }
    *head = prev;
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::{db_err, SqliteStore};
    use caravan_domain::audit::{AuditAction, AuditEvent};
    use caravan_store::{Store, StoreError};
    use std::collections::BTreeSet;
    use std::sync::Arc;

    fn event(n: i64) -> AuditEvent {
        AuditEvent {
            at: chrono::Utc::now(),
            actor_user: None,
            actor_name: "writer test".into(),
            actor_institution: None,
            actor_role: None,
            action: AuditAction::Create,
            entity_type: "row".into(),
            entity_id: n.to_string(),
            patient_id: None,
            purpose: "test".into(),
            detail: String::new(),
            subjects: Vec::new(),
        }
    }

    /// Insert row `n`, then fail when `fail`: the row must not stay, nor the request's audit event.
    async fn insert(store: &SqliteStore, n: i64, fail: bool) -> caravan_store::Result<()> {
        store
            .write(vec![event(n)], move |c| {
                Box::pin(async move {
                    sqlx::query("INSERT INTO t (n) VALUES (?)")
                        .bind(n)
                        .execute(&mut *c)
                        .await
                        .map_err(db_err)?;
                    if fail {
                        return Err(StoreError::Conflict);
                    }
                    Ok(())
                })
            })
            .await
    }

    /// Failing requests, first in their group (no savepoint) or after others (their own savepoint), leave
    /// nothing; the others of their group are kept with their audit events, and the chain holds.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_failing_request_is_undone_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("c.db")).await.unwrap());
        store
            .write(vec![], |c| {
                Box::pin(async move {
                    sqlx::query("CREATE TABLE t (n INTEGER PRIMARY KEY)")
                        .execute(&mut *c)
                        .await
                        .map(|_| ())
                        .map_err(db_err)
                })
            })
            .await
            .unwrap();
        // Alone in its group: no savepoint is taken, the transaction is rolled back.
        assert!(matches!(
            insert(&store, -1, true).await,
            Err(StoreError::Conflict)
        ));
        insert(&store, -2, false).await.unwrap();

        let tasks: Vec<_> = (0..300)
            .map(|n| {
                let store = store.clone();
                tokio::spawn(async move { (n, insert(&store, n, n % 3 == 0).await) })
            })
            .collect();
        let mut kept = BTreeSet::from([-2]);
        for t in tasks {
            let (n, r) = t.await.unwrap();
            assert_eq!(r.is_err(), n % 3 == 0, "request {n}: {r:?}");
            if r.is_ok() {
                kept.insert(n);
            }
        }
        let rows: BTreeSet<i64> = sqlx::query_scalar("SELECT n FROM t")
            .fetch_all(&store.reader)
            .await
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(rows, kept);
        let audit = store.audit_page(0, u32::MAX).await.unwrap();
        let audited: BTreeSet<i64> = audit
            .iter()
            .map(|r| r.event.entity_id.parse().unwrap())
            .collect();
        assert_eq!(audited, kept);
        assert_eq!(audit.len(), kept.len());
        assert_eq!(
            caravan_domain::audit::verify_chain(&audit).unwrap() as usize,
            audit.len()
        );
    }
}
