//! SQLite-backed outbox and inbox, as a node would implement them (sqlx). WAL with `synchronous=NORMAL`:
//! a commit survives the process being killed (the crash the tests simulate), not a power cut.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::path::Path;
use std::str::FromStr;

use async_trait::async_trait;
use bytes::Bytes;
use caravan_federation::delivery::{OutboxItem, OutboxStore, OutboxStoreError};
use caravan_federation::envelope::SignedEnvelope;
use caravan_federation::receiver::{InboxStore, InboxStoreError, StoreOutcome};
use caravan_federation::NodeId;
use chrono::{DateTime, TimeZone, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{Row, SqlitePool};
use uuid::Uuid;

pub async fn open(path: &Path) -> SqlitePool {
    let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
        .unwrap()
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(std::time::Duration::from_secs(10))
        .synchronous(sqlx::sqlite::SqliteSynchronous::Normal);
    SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(opts)
        .await
        .unwrap()
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn at(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap()
}

pub struct SqliteOutbox {
    pub pool: SqlitePool,
}

impl SqliteOutbox {
    pub async fn open(path: &Path) -> SqliteOutbox {
        let pool = open(path).await;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS outbox (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                envelope_id TEXT NOT NULL UNIQUE,
                destination TEXT NOT NULL,
                envelope BLOB NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                enqueued_at INTEGER NOT NULL,
                next_attempt_at INTEGER NOT NULL,
                state TEXT NOT NULL DEFAULT 'pending',
                last_error TEXT,
                done_at INTEGER)",
        )
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query("CREATE INDEX IF NOT EXISTS outbox_line ON outbox (destination, state, seq)")
            .execute(&pool)
            .await
            .unwrap();
        SqliteOutbox { pool }
    }

    pub async fn enqueue(&self, env: &SignedEnvelope) {
        let now = ms(Utc::now());
        sqlx::query(
            "INSERT INTO outbox (envelope_id, destination, envelope, enqueued_at, next_attempt_at)
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(env.envelope.id.to_string())
        .bind(env.envelope.to.as_str())
        .bind(env.bytes().to_vec())
        .bind(now)
        .bind(now)
        .execute(&self.pool)
        .await
        .unwrap();
    }

    pub async fn count(&self, state: &str) -> i64 {
        sqlx::query("SELECT COUNT(*) FROM outbox WHERE state = ?")
            .bind(state)
            .fetch_one(&self.pool)
            .await
            .unwrap()
            .get(0)
    }

    pub async fn dead_letters(&self) -> Vec<(String, String)> {
        sqlx::query("SELECT envelope_id, last_error FROM outbox WHERE state = 'dead' ORDER BY seq")
            .fetch_all(&self.pool)
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    }

    pub async fn max_attempts(&self) -> i64 {
        sqlx::query("SELECT COALESCE(MAX(attempts), 0) FROM outbox")
            .fetch_one(&self.pool)
            .await
            .unwrap()
            .get(0)
    }
}

#[async_trait]
impl OutboxStore for SqliteOutbox {
    async fn destinations_with_pending(&self) -> Result<Vec<NodeId>, OutboxStoreError> {
        let rows = sqlx::query("SELECT DISTINCT destination FROM outbox WHERE state = 'pending'")
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|r| Ok(NodeId::new(r.get::<String, _>(0))?))
            .collect()
    }

    async fn next_pending(
        &self,
        destination: &NodeId,
    ) -> Result<Option<OutboxItem>, OutboxStoreError> {
        let row = sqlx::query(
            "SELECT envelope_id, destination, envelope, attempts, enqueued_at, next_attempt_at
             FROM outbox WHERE destination = ? AND state = 'pending' ORDER BY seq LIMIT 1",
        )
        .bind(destination.as_str())
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(OutboxItem {
            envelope_id: Uuid::parse_str(&r.get::<String, _>(0))?,
            destination: NodeId::new(r.get::<String, _>(1))?,
            envelope: Bytes::from(r.get::<Vec<u8>, _>(2)),
            attempts: u32::try_from(r.get::<i64, _>(3))?,
            enqueued_at: at(r.get(4)),
            next_attempt_at: at(r.get(5)),
        }))
    }

    async fn mark_delivered(&self, id: Uuid, when: DateTime<Utc>) -> Result<(), OutboxStoreError> {
        sqlx::query("UPDATE outbox SET state = 'delivered', done_at = ? WHERE envelope_id = ?")
            .bind(ms(when))
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn record_failure(
        &self,
        id: Uuid,
        attempts: u32,
        next: DateTime<Utc>,
        error: &str,
    ) -> Result<(), OutboxStoreError> {
        sqlx::query("UPDATE outbox SET attempts = ?, next_attempt_at = ?, last_error = ? WHERE envelope_id = ?")
            .bind(i64::from(attempts))
            .bind(ms(next))
            .bind(error)
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn dead_letter(
        &self,
        id: Uuid,
        reason: &str,
        when: DateTime<Utc>,
    ) -> Result<(), OutboxStoreError> {
        sqlx::query(
            "UPDATE outbox SET state = 'dead', last_error = ?, done_at = ? WHERE envelope_id = ?",
        )
        .bind(reason)
        .bind(ms(when))
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// The receiving node's inbox: INSERT OR IGNORE keyed by envelope id, arrival order kept in `seq`.
pub struct SqliteInbox {
    pub pool: SqlitePool,
}

impl SqliteInbox {
    pub async fn open(path: &Path) -> SqliteInbox {
        let pool = open(path).await;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS inbox (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                envelope_id TEXT NOT NULL UNIQUE,
                sender TEXT NOT NULL,
                kind TEXT NOT NULL,
                envelope BLOB NOT NULL)",
        )
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, n INTEGER NOT NULL)",
        )
        .execute(&pool)
        .await
        .unwrap();
        SqliteInbox { pool }
    }

    /// Envelope ids in arrival order.
    pub async fn ids(&self) -> Vec<String> {
        sqlx::query("SELECT envelope_id FROM inbox ORDER BY seq")
            .fetch_all(&self.pool)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.get(0))
            .collect()
    }

    pub async fn counter(&self, name: &str) -> i64 {
        sqlx::query("SELECT n FROM counters WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .unwrap()
            .map(|r| r.get(0))
            .unwrap_or(0)
    }
}

#[async_trait]
impl InboxStore for SqliteInbox {
    async fn store(&self, env: &SignedEnvelope) -> Result<StoreOutcome, InboxStoreError> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT OR IGNORE INTO inbox (envelope_id, sender, kind, envelope) VALUES (?, ?, ?, ?)",
        )
        .bind(env.envelope.id.to_string())
        .bind(env.envelope.from.as_str())
        .bind(env.envelope.kind.name())
        .bind(env.bytes().to_vec())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let outcome = if inserted == 1 {
            StoreOutcome::Stored
        } else {
            StoreOutcome::Duplicate
        };
        let name = if inserted == 1 {
            "processed"
        } else {
            "duplicates"
        };
        sqlx::query("INSERT INTO counters (name, n) VALUES (?, 1) ON CONFLICT(name) DO UPDATE SET n = n + 1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(outcome)
    }
}
