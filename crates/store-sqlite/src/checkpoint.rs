//! Checkpoints off the writer's path.
//!
//! SQLite's own checkpoints run in the connection whose commit takes the WAL past 1,000 pages: here that is the
//! one writer, so every request of the next group waited while pages were copied back and both files synced —
//! dozens of times a second under load (measured 2026-12-05: p99 of the mixed API load 27-35 ms in most runs,
//! 268-485 ms in some). This task does the copying on a connection of its own instead, while the writer goes
//! on (the writer's automatic checkpoints are off):
//!
//! - after commits, at most every [`INTERVAL`], a `PASSIVE` checkpoint copies back every frame no reader still
//!   needs, without waiting for anyone;
//! - a passive checkpoint never lets the WAL start over while reads keep arriving (each one pins the frames of its
//!   snapshot, so the copy never quite catches up with the writer), so once the WAL holds [`RESTART_FRAMES`] the
//!   task pauses the writer between two groups (it is in this process: no lock polling), and a `RESTART`
//!   checkpoint copies the few frames written since the last passive one, waits the milliseconds the reads in
//!   flight take, and starts the WAL over. The pause is the only time a write waits for a checkpoint.
//!
//! Another process writing the same file (`caravan token create`) checkpoints on its own commits as usual.

use crate::db_err;
use caravan_store::Result;
use sqlx::{Connection, Row, SqliteConnection};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Mutex};

/// Least time between two checkpoints: each one syncs both files, so more often costs more than it saves.
const INTERVAL: Duration = Duration::from_millis(100);

/// WAL frames (pages of 4 KiB) after which the WAL is started over: ~32 MiB, a third of a second of the heaviest
/// load measured (the mixed API bench wrote ~30,000 frames a second). Tests start it over sooner, to see it
/// happen under a small load.
const RESTART_FRAMES: i64 = if cfg!(test) { 256 } else { 8192 };

/// What a checkpoint reported: whether it was kept from finishing, the WAL's frames, the frames copied back.
#[derive(Debug, Clone, Copy)]
struct Outcome {
    busy: bool,
    log: i64,
    copied: i64,
}

async fn checkpoint(conn: &mut SqliteConnection, mode: &str) -> Result<Outcome> {
    let row = sqlx::query(&format!("PRAGMA wal_checkpoint({mode})"))
        .fetch_one(&mut *conn)
        .await
        .map_err(db_err)?;
    Ok(Outcome {
        busy: row.try_get::<i64, _>(0).map_err(db_err)? != 0,
        log: row.try_get(1).map_err(db_err)?,
        copied: row.try_get(2).map_err(db_err)?,
    })
}

/// Run checkpoints on `conn` after each change of `commits` (the writer's count of commits) until the writer
/// stops; `pause` is the writer's: held, no group begins.
pub(crate) async fn run(
    mut conn: SqliteConnection,
    mut commits: watch::Receiver<u64>,
    pause: Arc<Mutex<()>>,
) {
    let mut restart_failures = 0u32;
    while commits.changed().await.is_ok() {
        let started = Instant::now();
        match checkpoint(&mut conn, "PASSIVE").await {
            Ok(passive) if passive.log >= RESTART_FRAMES => {
                let (restart, paused) = {
                    let _writer = pause.lock().await;
                    let held = Instant::now();
                    (checkpoint(&mut conn, "RESTART").await, held.elapsed())
                };
                match restart {
                    Ok(r) if !r.busy => {
                        restart_failures = 0;
                        tracing::debug!(
                            frames = r.log,
                            copied = r.copied,
                            paused_ms = paused.as_secs_f64() * 1e3,
                            "WAL started over"
                        );
                    }
                    Ok(r) => {
                        // A read held the WAL past the checkpoint's patience; the writer goes on and the next
                        // round tries again.
                        restart_failures += 1;
                        if restart_failures % 50 == 1 {
                            tracing::warn!(
                                frames = r.log,
                                attempts = restart_failures,
                                "the WAL could not start over: a read transaction is still open"
                            );
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "WAL restart checkpoint failed"),
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
        }
        tokio::time::sleep(INTERVAL.saturating_sub(started.elapsed())).await;
    }
    // The writer has stopped: one last copy so the file is whole without its WAL, then the connection closes.
    let _ = checkpoint(&mut conn, "PASSIVE").await;
    let _ = conn.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SqliteStore;
    use caravan_domain::audit::{AuditAction, AuditEvent};
    use caravan_domain::{PatientId, Role};
    use caravan_store::Store;
    use sqlx::ConnectOptions;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn event(n: usize) -> AuditEvent {
        AuditEvent {
            at: chrono::Utc::now(),
            actor_user: None,
            actor_name: format!("load {n}"),
            actor_institution: None,
            actor_role: Some(Role::Consultant),
            action: AuditAction::Read,
            entity_type: "consultation".into(),
            entity_id: uuid::Uuid::new_v4().to_string(),
            patient_id: Some(PatientId::new()),
            purpose: "consultation".into(),
            detail: "checkpoint test".into(),
            subjects: Vec::new(),
        }
    }

    async fn pragma(conn: &mut SqliteConnection, sql: &str) -> i64 {
        sqlx::query(sql)
            .fetch_one(&mut *conn)
            .await
            .and_then(|r| r.try_get::<i64, _>(0))
            .unwrap()
    }

    /// Writes keep coming while reads keep the WAL's frames pinned: the WAL still starts over, so it stays
    /// near [`RESTART_FRAMES`] however much is written, and nothing written is lost.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn the_wal_starts_over_under_reads_and_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("caravan.db");
        let store = Arc::new(SqliteStore::open(&path).await.unwrap());
        let mut probe = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .connect()
            .await
            .unwrap();
        let pages_before = pragma(&mut probe, "PRAGMA page_count").await;

        let stop = Arc::new(AtomicBool::new(false));
        let mut readers = Vec::new();
        for _ in 0..4 {
            let (store, stop) = (store.clone(), stop.clone());
            readers.push(tokio::spawn(async move {
                let mut reads = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    store.audit_page(0, 20).await.unwrap();
                    reads += 1;
                }
                reads
            }));
        }
        let mut written = 0;
        let mut most_frames = 0;
        // Grow the database by well over RESTART_FRAMES pages several times over: every new page passes through
        // the WAL at least once.
        while pragma(&mut probe, "PRAGMA page_count").await - pages_before < 8 * RESTART_FRAMES {
            let batch: Vec<AuditEvent> = (written..written + 100).map(event).collect();
            written += batch.len();
            store.append_audit(batch).await.unwrap();
            most_frames = most_frames.max(checkpoint(&mut probe, "PASSIVE").await.unwrap().log);
        }
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            assert!(r.await.unwrap() > 0, "the readers ran");
        }
        // A WAL that never started over would hold every frame written (> 8 x RESTART_FRAMES); one that does
        // holds what came since the last restart: a round's worth past the threshold.
        assert!(
            most_frames < 3 * RESTART_FRAMES,
            "the WAL reached {most_frames} frames"
        );
        let stored = store.audit_page(0, u32::MAX).await.unwrap();
        assert_eq!(stored.len(), written);
        assert!(stored.windows(2).all(|w| w[1].prev_hash == w[0].hash));
    }
}
