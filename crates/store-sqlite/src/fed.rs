//! Federation records on SQLite: the unit of work and the outbox / inbox queries (see `caravan_store::federation`).

use crate::rows::{opt_time, time};
use crate::{db_err, ops, parse};
use caravan_domain::audit::format_audit_time;
use caravan_domain::*;
use caravan_store::*;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection, SqlitePool};
use uuid::Uuid;

async fn exec<'q>(
    c: &mut SqliteConnection,
    q: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
) -> Result<u64> {
    q.execute(&mut *c)
        .await
        .map(|r| r.rows_affected())
        .map_err(db_err)
}

/// Apply the changes in order on the writer's connection (inside the writer's transaction).
pub(crate) async fn apply(c: &mut SqliteConnection, changes: Vec<Change>) -> Result<()> {
    for ch in changes {
        match ch {
            Change::InsertInstitution(i) => ops::insert_institution(c, &i).await?,
            Change::UpsertUser(u) => {
                let exists = sqlx::query("SELECT 1 FROM users WHERE id = ?")
                    .bind(u.id.to_string())
                    .fetch_optional(&mut *c)
                    .await
                    .map_err(db_err)?
                    .is_some();
                if exists {
                    ops::update_user(c, &u).await?
                } else {
                    ops::insert_user(c, &u, None).await?
                }
            }
            Change::InsertPatient(p) => ops::insert_patient(c, &p).await?,
            Change::InsertConsultation(k) => ops::insert_consultation(c, &k).await?,
            Change::UpdateConsultation {
                consultation,
                expected_version,
            } => ops::update_consultation(c, &consultation, expected_version).await?,
            Change::InsertMessage(m) => ops::insert_message(c, &m).await?,
            Change::InsertAttachment(a) => ops::insert_attachment(c, &a).await?,
            Change::LinkNode {
                node_id,
                institution_id,
            } => {
                exec(
                    c,
                    sqlx::query("INSERT INTO fed_nodes (node_id, institution_id) VALUES (?, ?)")
                        .bind(node_id)
                        .bind(institution_id.to_string()),
                )
                .await?;
            }
            Change::LinkRemoteUser(r) => {
                exec(
                    c,
                    sqlx::query(
                        "INSERT INTO fed_remote_users (user_id, node_id, remote_id) VALUES (?, ?, ?)",
                    )
                    .bind(r.user_id.to_string())
                    .bind(r.node_id)
                    .bind(r.remote_id),
                )
                .await?;
            }
            Change::LinkForeignCase(f) => {
                exec(
                    c,
                    sqlx::query(
                        "INSERT INTO fed_foreign_cases (consultation_id, origin_node, origin_case, retention_until)
                         VALUES (?, ?, ?, ?)",
                    )
                    .bind(f.consultation_id.to_string())
                    .bind(f.origin_node)
                    .bind(f.origin_case)
                    .bind(format_audit_time(f.retention_until)),
                )
                .await?;
            }
            Change::MarkShared {
                consultation_id,
                node_id,
                at,
            } => {
                exec(
                    c,
                    sqlx::query(
                        "INSERT OR IGNORE INTO fed_shared (consultation_id, node_id, shared_at) VALUES (?, ?, ?)",
                    )
                    .bind(consultation_id.to_string())
                    .bind(node_id)
                    .bind(format_audit_time(at)),
                )
                .await?;
            }
            Change::Enqueue(o) => {
                exec(
                    c,
                    sqlx::query(
                        "INSERT INTO fed_outbox (envelope_id, destination, message_type, consultation_id, envelope,
                           state, attempts, enqueued_at, next_attempt_at)
                         VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?)",
                    )
                    .bind(o.envelope_id.to_string())
                    .bind(o.destination)
                    .bind(o.message_type)
                    .bind(o.consultation_id.map(|k| k.to_string()))
                    .bind(o.envelope)
                    .bind(format_audit_time(o.enqueued_at))
                    .bind(format_audit_time(o.enqueued_at)),
                )
                .await?;
            }
            Change::Receive(r) => {
                let q = sqlx::query(
                    "INSERT INTO fed_inbox (envelope_id, sender, message_type, consultation_id, received_at, envelope,
                       sha256, outcome)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(r.envelope_id.to_string())
                .bind(r.sender)
                .bind(r.message_type)
                .bind(r.consultation_id.map(|k| k.to_string()))
                .bind(format_audit_time(r.received_at))
                .bind(r.envelope)
                .bind(r.sha256)
                .bind(r.outcome);
                exec(c, q).await.map_err(|e| match e {
                    StoreError::Duplicate(_) => StoreError::Duplicate("envelope"),
                    other => other,
                })?;
            }
            Change::Ping {
                envelope_id,
                sender,
            } => {
                exec(
                    c,
                    sqlx::query("INSERT INTO fed_pings (envelope_id, sender) VALUES (?, ?)")
                        .bind(envelope_id.to_string())
                        .bind(sender),
                )
                .await?;
            }
            Change::PurgeForeignCase(id) => purge(c, id).await?,
            Change::LinkStudy(s) => crate::studies::link(c, &s).await?,
            Change::Rx(r) => crate::rx::apply(c, r).await?,
            other => crate::surv::apply(c, other).await?,
        }
    }
    Ok(())
}

async fn purge(c: &mut SqliteConnection, id: ConsultationId) -> Result<()> {
    let key = id.to_string();
    let patient: Option<String> =
        sqlx::query_scalar("SELECT patient_id FROM consultations WHERE id = ?")
            .bind(&key)
            .fetch_optional(&mut *c)
            .await
            .map_err(db_err)?;
    let Some(patient) = patient else {
        return Err(StoreError::NotFound("consultation"));
    };
    for sql in [
        "DELETE FROM messages WHERE consultation_id = ?",
        "DELETE FROM attachments WHERE consultation_id = ?",
        "DELETE FROM case_studies WHERE consultation_id = ?",
        "DELETE FROM participants WHERE consultation_id = ?",
        "DELETE FROM fed_shared WHERE consultation_id = ?",
        "DELETE FROM fed_foreign_cases WHERE consultation_id = ?",
        "UPDATE fed_inbox SET envelope = NULL WHERE consultation_id = ?",
        "UPDATE fed_outbox SET envelope = x'' WHERE consultation_id = ? AND state <> 'pending'",
        "DELETE FROM consultations WHERE id = ?",
    ] {
        exec(c, sqlx::query(sql).bind(&key)).await?;
    }
    // The mirror patient exists for this packet only (a pseudonym per case), unless another case still uses it.
    exec(
        c,
        sqlx::query(
            "DELETE FROM consents WHERE patient_id = ?1 AND NOT EXISTS (SELECT 1 FROM consultations WHERE patient_id = ?1)",
        )
        .bind(&patient),
    )
    .await?;
    exec(
        c,
        sqlx::query(
            "DELETE FROM patients WHERE id = ?1 AND NOT EXISTS (SELECT 1 FROM consultations WHERE patient_id = ?1)",
        )
        .bind(&patient),
    )
    .await?;
    Ok(())
}

fn uuid(r: &SqliteRow, col: &str) -> Result<Uuid> {
    parse("envelope id", &r.get::<String, _>(col))
}

fn foreign_case(r: &SqliteRow) -> Result<ForeignCase> {
    Ok(ForeignCase {
        consultation_id: parse("consultation id", &r.get::<String, _>("consultation_id"))?,
        origin_node: r.get("origin_node"),
        origin_case: r.get("origin_case"),
        retention_until: time(r, "retention_until")?,
    })
}

fn remote_user(r: &SqliteRow) -> Result<RemoteUser> {
    Ok(RemoteUser {
        user_id: parse("user id", &r.get::<String, _>("user_id"))?,
        node_id: r.get("node_id"),
        remote_id: r.get("remote_id"),
    })
}

fn outbox_row(r: &SqliteRow) -> Result<OutboxRow> {
    Ok(OutboxRow {
        envelope_id: uuid(r, "envelope_id")?,
        destination: r.get("destination"),
        message_type: r.get("message_type"),
        consultation_id: r
            .get::<Option<String>, _>("consultation_id")
            .map(|s| parse("consultation id", &s))
            .transpose()?,
        state: r.get("state"),
        attempts: r.get::<i64, _>("attempts").max(0) as u32,
        enqueued_at: time(r, "enqueued_at")?,
        next_attempt_at: time(r, "next_attempt_at")?,
        last_error: r.get("last_error"),
        done_at: opt_time(r, "done_at")?,
    })
}

pub(crate) async fn node_institution(
    pool: &SqlitePool,
    node: &str,
) -> Result<Option<InstitutionId>> {
    let v: Option<String> =
        sqlx::query_scalar("SELECT institution_id FROM fed_nodes WHERE node_id = ?")
            .bind(node)
            .fetch_optional(pool)
            .await
            .map_err(db_err)?;
    v.map(|s| parse("institution id", &s)).transpose()
}

pub(crate) async fn remote_user_by_id(
    pool: &SqlitePool,
    user: UserId,
) -> Result<Option<RemoteUser>> {
    sqlx::query("SELECT * FROM fed_remote_users WHERE user_id = ?")
        .bind(user.to_string())
        .fetch_optional(pool)
        .await
        .map_err(db_err)?
        .as_ref()
        .map(remote_user)
        .transpose()
}

pub(crate) async fn remote_users(pool: &SqlitePool, node: &str) -> Result<Vec<RemoteUser>> {
    let rows = sqlx::query("SELECT * FROM fed_remote_users WHERE node_id = ? ORDER BY remote_id")
        .bind(node)
        .fetch_all(pool)
        .await
        .map_err(db_err)?;
    rows.iter().map(remote_user).collect()
}

pub(crate) async fn foreign_case_by(
    pool: &SqlitePool,
    sql: &str,
    a: &str,
    b: Option<&str>,
) -> Result<Option<ForeignCase>> {
    let mut q = sqlx::query(sql).bind(a);
    if let Some(b) = b {
        q = q.bind(b);
    }
    q.fetch_optional(pool)
        .await
        .map_err(db_err)?
        .as_ref()
        .map(foreign_case)
        .transpose()
}

pub(crate) async fn expired(
    pool: &SqlitePool,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<ForeignCase>> {
    let rows = sqlx::query(
        "SELECT * FROM fed_foreign_cases WHERE retention_until < ? ORDER BY retention_until LIMIT ?",
    )
    .bind(format_audit_time(now))
    .bind(limit as i64)
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    rows.iter().map(foreign_case).collect()
}

pub(crate) async fn strings(pool: &SqlitePool, sql: &str, key: String) -> Result<Vec<String>> {
    sqlx::query_scalar(sql)
        .bind(key)
        .fetch_all(pool)
        .await
        .map_err(db_err)
}

pub(crate) async fn next_pending(
    pool: &SqlitePool,
    destination: &str,
) -> Result<Option<PendingEnvelope>> {
    let row = sqlx::query(
        "SELECT envelope_id, destination, envelope, attempts, enqueued_at, next_attempt_at FROM fed_outbox
         WHERE state = 'pending' AND destination = ? ORDER BY seq LIMIT 1",
    )
    .bind(destination)
    .fetch_optional(pool)
    .await
    .map_err(db_err)?;
    row.map(|r| {
        Ok(PendingEnvelope {
            envelope_id: uuid(&r, "envelope_id")?,
            destination: r.get("destination"),
            envelope: r.get("envelope"),
            attempts: r.get::<i64, _>("attempts").max(0) as u32,
            enqueued_at: time(&r, "enqueued_at")?,
            next_attempt_at: time(&r, "next_attempt_at")?,
        })
    })
    .transpose()
}

pub(crate) async fn outbox(pool: &SqlitePool, state: &str, limit: u32) -> Result<Vec<OutboxRow>> {
    let rows = sqlx::query(
        "SELECT envelope_id, destination, message_type, consultation_id, state, attempts, enqueued_at,
           next_attempt_at, last_error, done_at
         FROM fed_outbox WHERE state = ? ORDER BY seq DESC LIMIT ?",
    )
    .bind(state)
    .bind(limit as i64)
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    rows.iter().map(outbox_row).collect()
}

pub(crate) async fn inbox(pool: &SqlitePool, limit: u32) -> Result<Vec<InboxEntry>> {
    let rows = sqlx::query(
        "SELECT envelope_id, sender, message_type, consultation_id, received_at, outcome, envelope
         FROM fed_inbox ORDER BY received_at DESC, envelope_id LIMIT ?",
    )
    .bind(limit as i64)
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    rows.iter()
        .map(|r| {
            Ok(InboxEntry {
                envelope_id: uuid(r, "envelope_id")?,
                sender: r.get("sender"),
                message_type: r.get("message_type"),
                consultation_id: r
                    .get::<Option<String>, _>("consultation_id")
                    .map(|s| parse("consultation id", &s))
                    .transpose()?,
                received_at: time(r, "received_at")?,
                outcome: r.get("outcome"),
                envelope: r.get("envelope"),
            })
        })
        .collect()
}

pub(crate) async fn counts(pool: &SqlitePool) -> Result<FederationCounts> {
    let r = sqlx::query(
        "SELECT
           (SELECT COUNT(*) FROM fed_outbox WHERE state = 'pending') AS pending,
           (SELECT COUNT(*) FROM fed_outbox WHERE state = 'delivered') AS delivered,
           (SELECT COUNT(*) FROM fed_outbox WHERE state = 'dead') AS dead,
           (SELECT COUNT(*) FROM fed_inbox) AS inbox,
           (SELECT COUNT(*) FROM fed_pings) AS pings,
           (SELECT COUNT(DISTINCT envelope_id) FROM fed_pings) AS distinct_pings",
    )
    .fetch_one(pool)
    .await
    .map_err(db_err)?;
    let n = |c: &str| r.get::<i64, _>(c).max(0) as u64;
    Ok(FederationCounts {
        pending: n("pending"),
        delivered: n("delivered"),
        dead: n("dead"),
        inbox: n("inbox"),
        pings: n("pings"),
        distinct_pings: n("distinct_pings"),
    })
}
