//! Federation records on PostgreSQL: the unit of work and the outbox / inbox queries (see
//! `caravan_store::federation`). The same statements as the SQLite backend's, in PostgreSQL's dialect.

use crate::rows::get;
use crate::{db_err, ops};
use caravan_domain::*;
use caravan_store::*;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

type Q<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

async fn exec(c: &mut PgConnection, q: Q<'_>) -> Result<u64> {
    q.execute(&mut *c)
        .await
        .map(|r| r.rows_affected())
        .map_err(db_err)
}

/// Apply the changes in order inside the caller's transaction.
pub(crate) async fn apply(c: &mut PgConnection, changes: Vec<Change>) -> Result<()> {
    for ch in changes {
        match ch {
            Change::InsertInstitution(i) => ops::insert_institution(c, &i).await?,
            Change::UpsertUser(u) => {
                let exists = sqlx::query("SELECT 1 FROM users WHERE id = $1")
                    .bind(u.id.0)
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
                    sqlx::query("INSERT INTO fed_nodes (node_id, institution_id) VALUES ($1, $2)")
                        .bind(node_id)
                        .bind(institution_id.0),
                )
                .await?;
            }
            Change::LinkRemoteUser(r) => {
                exec(
                    c,
                    sqlx::query(
                        "INSERT INTO fed_remote_users (user_id, node_id, remote_id) VALUES ($1, $2, $3)",
                    )
                    .bind(r.user_id.0)
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
                         VALUES ($1, $2, $3, $4)",
                    )
                    .bind(f.consultation_id.0)
                    .bind(f.origin_node)
                    .bind(f.origin_case)
                    .bind(f.retention_until),
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
                        "INSERT INTO fed_shared (consultation_id, node_id, shared_at) VALUES ($1, $2, $3)
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(consultation_id.0)
                    .bind(node_id)
                    .bind(at),
                )
                .await?;
            }
            Change::Enqueue(o) => {
                exec(
                    c,
                    sqlx::query(
                        "INSERT INTO fed_outbox (envelope_id, destination, message_type, consultation_id, envelope,
                           state, attempts, enqueued_at, next_attempt_at)
                         VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6)",
                    )
                    .bind(o.envelope_id)
                    .bind(o.destination)
                    .bind(o.message_type)
                    .bind(o.consultation_id.map(|k| k.0))
                    .bind(o.envelope)
                    .bind(o.enqueued_at),
                )
                .await?;
            }
            Change::Receive(r) => {
                let q = sqlx::query(
                    "INSERT INTO fed_inbox (envelope_id, sender, message_type, consultation_id, received_at, envelope,
                       sha256, outcome)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(r.envelope_id)
                .bind(r.sender)
                .bind(r.message_type)
                .bind(r.consultation_id.map(|k| k.0))
                .bind(r.received_at)
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
                    sqlx::query("INSERT INTO fed_pings (envelope_id, sender) VALUES ($1, $2)")
                        .bind(envelope_id)
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

async fn purge(c: &mut PgConnection, id: ConsultationId) -> Result<()> {
    let patient: Option<Uuid> =
        sqlx::query_scalar("SELECT patient_id FROM consultations WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&mut *c)
            .await
            .map_err(db_err)?;
    let Some(patient) = patient else {
        return Err(StoreError::NotFound("consultation"));
    };
    for sql in [
        "DELETE FROM messages WHERE consultation_id = $1",
        "DELETE FROM attachments WHERE consultation_id = $1",
        "DELETE FROM case_studies WHERE consultation_id = $1",
        "DELETE FROM participants WHERE consultation_id = $1",
        "DELETE FROM fed_shared WHERE consultation_id = $1",
        "DELETE FROM fed_foreign_cases WHERE consultation_id = $1",
        "UPDATE fed_inbox SET envelope = NULL WHERE consultation_id = $1",
        "UPDATE fed_outbox SET envelope = '\\x'::bytea WHERE consultation_id = $1 AND state <> 'pending'",
        "DELETE FROM consultations WHERE id = $1",
    ] {
        exec(c, sqlx::query(sql).bind(id.0)).await?;
    }
    // The mirror patient exists for this packet only (a pseudonym per case), unless another case still uses it.
    for sql in [
        "DELETE FROM consents WHERE patient_id = $1 AND NOT EXISTS (SELECT 1 FROM consultations WHERE patient_id = $1)",
        "DELETE FROM patients WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM consultations WHERE patient_id = $1)",
    ] {
        exec(c, sqlx::query(sql).bind(patient)).await?;
    }
    Ok(())
}

pub(crate) fn foreign_case(r: &PgRow) -> Result<ForeignCase> {
    Ok(ForeignCase {
        consultation_id: ConsultationId(get(r, "consultation_id")?),
        origin_node: get(r, "origin_node")?,
        origin_case: get(r, "origin_case")?,
        retention_until: get(r, "retention_until")?,
    })
}

pub(crate) fn remote_user(r: &PgRow) -> Result<RemoteUser> {
    Ok(RemoteUser {
        user_id: UserId(get(r, "user_id")?),
        node_id: get(r, "node_id")?,
        remote_id: get(r, "remote_id")?,
    })
}

pub(crate) fn outbox_row(r: &PgRow) -> Result<OutboxRow> {
    Ok(OutboxRow {
        envelope_id: get(r, "envelope_id")?,
        destination: get(r, "destination")?,
        message_type: get(r, "message_type")?,
        consultation_id: get::<Option<Uuid>>(r, "consultation_id")?.map(ConsultationId),
        state: get(r, "state")?,
        attempts: get::<i32>(r, "attempts")?.max(0) as u32,
        enqueued_at: get(r, "enqueued_at")?,
        next_attempt_at: get(r, "next_attempt_at")?,
        last_error: get(r, "last_error")?,
        done_at: get(r, "done_at")?,
    })
}

pub(crate) fn pending(r: &PgRow) -> Result<PendingEnvelope> {
    Ok(PendingEnvelope {
        envelope_id: get(r, "envelope_id")?,
        destination: get(r, "destination")?,
        envelope: get(r, "envelope")?,
        attempts: get::<i32>(r, "attempts")?.max(0) as u32,
        enqueued_at: get(r, "enqueued_at")?,
        next_attempt_at: get(r, "next_attempt_at")?,
    })
}

pub(crate) async fn counts(pool: &PgPool) -> Result<FederationCounts> {
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
    let n = |c: &str| get::<i64>(&r, c).map(|v| v.max(0) as u64);
    Ok(FederationCounts {
        pending: n("pending")?,
        delivered: n("delivered")?,
        dead: n("dead")?,
        inbox: n("inbox")?,
        pings: n("pings")?,
        distinct_pings: n("distinct_pings")?,
    })
}

/// Rows of a query with one bound key.
pub(crate) async fn rows_by<K>(pool: &PgPool, sql: &str, key: K) -> Result<Vec<PgRow>>
where
    K: for<'q> sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + 'static,
{
    sqlx::query(sql)
        .bind(key)
        .fetch_all(pool)
        .await
        .map_err(db_err)
}

/// `Some(first row)` of a query with one bound key.
pub(crate) async fn first<K>(pool: &PgPool, sql: &str, key: K) -> Result<Option<PgRow>>
where
    K: for<'q> sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + 'static,
{
    Ok(rows_by(pool, sql, key).await?.into_iter().next())
}

/// Outbox bookkeeping.
pub(crate) async fn outbox_update(pool: &PgPool, q: Q<'_>) -> Result<u64> {
    q.execute(pool)
        .await
        .map(|r| r.rows_affected())
        .map_err(db_err)
}
