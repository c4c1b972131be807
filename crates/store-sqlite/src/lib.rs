//! Caravan storage on embedded SQLite.
//!
//! One writer connection owned by one task that groups concurrent writes into shared transactions (`writer`:
//! SQLite allows one writer at a time; serialising writes in-process avoids `SQLITE_BUSY` on lock upgrades) and
//! a pool of read-only connections, all in WAL mode, and a task that checkpoints the WAL on a connection of its
//! own (`checkpoint`), so the writer never copies pages back itself. WAL with
//! `synchronous=NORMAL` keeps the database consistent across a killed process: a transaction is either wholly in
//! the WAL or not at all.

mod checkpoint;
mod fed;
mod ops;
mod rows;
mod rx;
mod studies;
mod surv;
mod visits;
mod writer;

use async_trait::async_trait;
use caravan_domain::audit::{format_audit_time, AuditRecord};
use caravan_domain::routing::Candidate;
use caravan_domain::*;
use caravan_store::*;
use chrono::{DateTime, Utc};
use rows::*;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, Row, SqliteConnection, SqlitePool};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

pub struct SqliteStore {
    writer: writer::Writer,
    reader: SqlitePool,
}

/// A JSON value built by SQLite, read as the domain type it was shaped after.
fn json_doc<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn db_err(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(d) = &e {
        if d.is_unique_violation() {
            return StoreError::Duplicate("record");
        }
    }
    if matches!(e, sqlx::Error::RowNotFound) {
        return StoreError::NotFound("record");
    }
    StoreError::Database(e.to_string())
}

/// Which consultations an actor may see. Parameters: ?1 user id, ?2 institution id, ?3 patient id (or '').
/// The same rule, in words, is in `docs/architecture.md` ("Who sees what").
const CONSULTATION_SCOPE: &str = "
  CASE ?4
    WHEN 'referrer' THEN (c.institution_id = ?2 AND (c.state <> 'draft' OR c.referrer_id = ?1))
        OR EXISTS (SELECT 1 FROM participants pa WHERE pa.consultation_id = c.id AND pa.user_id = ?1)
    WHEN 'consultant' THEN (c.institution_id = ?2 AND c.state <> 'draft')
        OR EXISTS (SELECT 1 FROM participants pa WHERE pa.consultation_id = c.id AND pa.user_id = ?1)
    WHEN 'coordinator' THEN c.state <> 'draft' AND (
           c.institution_id = ?2 OR c.state = 'submitted' OR c.escalated_at IS NOT NULL
        OR EXISTS (SELECT 1 FROM participants pa WHERE pa.consultation_id = c.id AND pa.institution_id = ?2))
    WHEN 'patient' THEN c.patient_id = ?3 AND c.state <> 'draft'
    ELSE 0
  END";

fn patient_scope() -> String {
    format!(
        "CASE ?4
           WHEN 'patient' THEN p.id = ?3
           WHEN 'referrer' THEN p.institution_id = ?2 OR EXISTS (SELECT 1 FROM consultations c WHERE c.patient_id = p.id AND ({CONSULTATION_SCOPE}))
           WHEN 'consultant' THEN p.institution_id = ?2 OR EXISTS (SELECT 1 FROM consultations c WHERE c.patient_id = p.id AND ({CONSULTATION_SCOPE}))
           WHEN 'coordinator' THEN p.institution_id = ?2 OR EXISTS (SELECT 1 FROM consultations c WHERE c.patient_id = p.id AND ({CONSULTATION_SCOPE}))
           ELSE 0
         END"
    )
}

type Q<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>;

fn bind_actor<'q>(q: Q<'q>, a: &Actor) -> Q<'q> {
    q.bind(a.user_id.to_string())
        .bind(a.institution_id.to_string())
        .bind(a.patient_id.map(|p| p.to_string()).unwrap_or_default())
        .bind(a.role.as_str())
}

/// Rows of `sql` (which uses ?1–?4 for the actor and ?5 for `key`) on the read pool.
async fn scoped_rows(
    pool: &SqlitePool,
    sql: &str,
    actor: &Actor,
    key: String,
) -> Result<Vec<sqlx::sqlite::SqliteRow>> {
    bind_actor(sqlx::query(sql), actor)
        .bind(key)
        .fetch_all(pool)
        .await
        .map_err(db_err)
}

/// The one row of `sql` (as for [`scoped_rows`]), or `NotFound(what)` when it is absent or out of scope.
async fn scoped_row(
    pool: &SqlitePool,
    sql: &str,
    actor: &Actor,
    key: String,
    what: &'static str,
) -> Result<sqlx::sqlite::SqliteRow> {
    bind_actor(sqlx::query(sql), actor)
        .bind(key)
        .fetch_optional(pool)
        .await
        .map_err(db_err)?
        .ok_or(StoreError::NotFound(what))
}

impl SqliteStore {
    /// Open (creating if needed) the database file and run migrations.
    pub async fn open(path: &Path) -> Result<Self> {
        let base = SqliteConnectOptions::new()
            .filename(path)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        // No memory-mapped reads: a read transaction that finds the database changed by a write unmaps the
        // whole map (`sqlite3PagerSharedLock`) and faults its pages back in; under a mixed load perf showed that
        // costing more than the read() copies it saves.
        // The writer's savepoints (one per request of a group) journal the pages they change in a statement
        // journal, a temporary file by default: in memory it costs no write() per page.
        // Checkpoints are not the writer's: a task of their own copies the WAL back and starts it over
        // (`checkpoint`). The WAL file is cut back to 64 MiB when it starts over.
        let mut conn = base
            .clone()
            .pragma("temp_store", "memory")
            .pragma("journal_size_limit", "67108864")
            .create_if_missing(true)
            .connect()
            .await
            .map_err(db_err)?;
        sqlx::migrate!("./migrations")
            .run(&mut conn)
            .await
            .map_err(|e| StoreError::Database(format!("migration failed: {e}")))?;
        backfill_search_names(&mut conn).await?;
        // The checkpointer waits for reads in flight when it starts the WAL over, with the writer paused: a
        // read still open after 50 ms makes it give up until the next round rather than hold every write.
        let checkpointer = base
            .clone()
            .busy_timeout(Duration::from_millis(50))
            .connect()
            .await
            .map_err(db_err)?;
        let writer = writer::Writer::start(conn, checkpointer).await?;
        let reader = SqlitePoolOptions::new()
            // Each connection is a thread of sqlx's; more than the cores can run only adds context switches.
            .max_connections(
                std::thread::available_parallelism()
                    .map(|n| (n.get() * 2).clamp(2, 8) as u32)
                    .unwrap_or(4),
            )
            // sqlx pings a pooled connection before handing it out: for an embedded file that is a round trip to
            // the connection's worker thread that can find nothing wrong, doubling the cost of a small query.
            .test_before_acquire(false)
            .connect_with(base.read_only(true))
            .await
            .map_err(db_err)?;
        Ok(Self { writer, reader })
    }

    /// Run `f` and then append `audit` in one transaction (grouped with concurrent writes by the writer task);
    /// returns after the commit.
    async fn write<F, T>(&self, audit: Vec<AuditEvent>, f: F) -> Result<T>
    where
        F: for<'c> FnOnce(
                &'c mut SqliteConnection,
            ) -> std::pin::Pin<
                Box<dyn std::future::Future<Output = Result<T>> + Send + 'c>,
            > + Send
            + 'static,
        T: Send + 'static,
    {
        self.writer.write(audit, f).await
    }
}

impl SqliteStore {
    /// One statement instead of five reads: each statement is a round trip to sqlx's worker thread for the
    /// connection, which was most of the CPU a case page cost. SQLite builds the patient, thread, attachments and
    /// participants as JSON (in the field names of the domain types) beside the consultation's document; the
    /// thread is returned as that text.
    /// `window`: only the latest messages of the thread, at most that many (still in thread order).
    async fn case_bundle_text(
        &self,
        actor: &Actor,
        id: ConsultationId,
        window: Option<usize>,
    ) -> Result<(CaseBundle<()>, String)> {
        // A number of this code's, not input: it is written into the statement (SQLite reads -1 as no limit).
        let limit = window.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
        let sql = format!(
            "SELECT c.doc,
               (SELECT json_object('id', p.id, 'institution_id', p.institution_id, 'given_name', p.given_name,
                       'family_name', p.family_name, 'birth_date', p.birth_date, 'sex', p.sex,
                       'national_id', p.national_id, 'languages', json(p.languages))
                  FROM patients p WHERE p.id = c.patient_id) AS patient,
               (SELECT json_group_array(json_object('id', m.id, 'consultation_id', m.consultation_id,
                       'parent_id', m.parent_id, 'author_id', m.author_id, 'author_name', m.author_name,
                       'body', m.body, 'created_at', m.created_at) ORDER BY m.created_at, m.id)
                  FROM (SELECT * FROM messages l WHERE l.consultation_id = c.id
                        ORDER BY l.created_at DESC, l.id DESC LIMIT {limit}) m) AS messages,
               (SELECT count(*) FROM messages m WHERE m.consultation_id = c.id) AS messages_total,
               (SELECT json_group_array(json_object('id', a.id, 'consultation_id', a.consultation_id,
                       'filename', a.filename, 'content_type', a.content_type, 'size', a.size,
                       'sha256', a.sha256, 'blob_key', a.blob_key, 'uploaded_by', a.uploaded_by,
                       'created_at', a.created_at) ORDER BY a.created_at, a.id)
                  FROM attachments a WHERE a.consultation_id = c.id) AS attachments,
               (SELECT json_group_array(json_object('user_id', u.id, 'display_name', u.display_name,
                       'institution_name', i.name) ORDER BY u.id)
                  FROM participants pa JOIN users u ON u.id = pa.user_id
                  JOIN institutions i ON i.id = u.institution_id
                  WHERE pa.consultation_id = c.id) AS people
             FROM consultations c WHERE c.id = ?5 AND ({CONSULTATION_SCOPE})"
        );
        let row = scoped_row(&self.reader, &sql, actor, id.to_string(), "consultation").await?;
        let patient: Option<String> = row.try_get("patient").map_err(db_err)?;
        let bundle = CaseBundle {
            consultation: consultation_from_row(&row)?,
            // A consultation's patient row is a foreign key, so its absence is corruption, not a 404.
            patient: json_doc("patient", patient.as_deref().unwrap_or("null"))?,
            messages: (),
            messages_total: usize::try_from(
                row.try_get::<i64, _>("messages_total").map_err(db_err)?,
            )
            .map_err(|e| StoreError::Corrupt(format!("messages_total: {e}")))?,
            attachments: json_doc("attachments", row.try_get("attachments").map_err(db_err)?)?,
            people: json_doc("people", row.try_get("people").map_err(db_err)?)?,
        };
        Ok((bundle, row.try_get("messages").map_err(db_err)?))
    }
}

/// The load column of a routing candidate (cases offered to or being answered by them).
const OPEN_CASES: &str = "(SELECT COUNT(*) FROM consultations c
    WHERE c.assigned_to = u.id AND c.state IN ('assigned','in_progress')) AS open_cases";

/// Fill `patients.search_name` for rows written before migration 0002 (the fold is Unicode-aware, so it is
/// computed here rather than in SQL).
async fn backfill_search_names(conn: &mut SqliteConnection) -> Result<()> {
    let rows =
        sqlx::query("SELECT id, given_name, family_name FROM patients WHERE search_name IS NULL")
            .fetch_all(&mut *conn)
            .await
            .map_err(db_err)?;
    if rows.is_empty() {
        return Ok(());
    }
    let mut tx = conn.begin().await.map_err(db_err)?;
    for r in &rows {
        let key = caravan_domain::name_search_key(&format!(
            "{} {}",
            r.get::<String, _>("given_name"),
            r.get::<String, _>("family_name")
        ));
        sqlx::query("UPDATE patients SET search_name = ? WHERE id = ?")
            .bind(key)
            .bind(r.get::<String, _>("id"))
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
    }
    tx.commit().await.map_err(db_err)?;
    tracing::info!(rows = rows.len(), "filled patient search names");
    Ok(())
}

/// The participants of a case as the JSON array of user ids that [`write_participants_sql!`] takes as `?2`.
fn participant_ids(c: &Consultation) -> Result<String> {
    let mut users = vec![c.referrer_id];
    users.extend(c.assigned_to);
    users.extend(c.panel.iter().map(|m| m.user_id));
    users.sort();
    users.dedup();
    serde_json::to_string(&users.iter().map(|u| u.to_string()).collect::<Vec<_>>())
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Rewrite a case's participants (`?1` the consultation id, `?2` [`participant_ids`]): two statements whatever the
/// panel's size, and only what changed is written — most events (accept, report, acknowledge, outcome) keep the
/// participants, and then no page of the table or its indexes is touched. Users unknown to this node are skipped;
/// a participant whose institution changed is updated. A macro so that the statements are sent in the same
/// round trip as the consultation's own write (`concat!` needs a literal).
macro_rules! write_participants_sql {
    () => {
        "DELETE FROM participants WHERE consultation_id = ?1
           AND user_id NOT IN (SELECT value FROM json_each(?2));
         INSERT INTO participants (consultation_id, user_id, institution_id)
         SELECT ?1, id, institution_id FROM users WHERE id IN (SELECT value FROM json_each(?2))
         ON CONFLICT (consultation_id, user_id) DO UPDATE SET institution_id = excluded.institution_id
         WHERE participants.institution_id IS NOT excluded.institution_id"
    };
}
pub(crate) use write_participants_sql;

fn consultation_doc(c: &Consultation) -> Result<String> {
    serde_json::to_string(c).map_err(|e| StoreError::Corrupt(e.to_string()))
}

const USER_COLUMNS: &str =
    "u.id, u.username, u.display_name, u.institution_id, u.role, u.patient_id, u.profile, u.locale, u.active";

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn insert_institution(&self, i: &Institution, audit: Vec<AuditEvent>) -> Result<()> {
        let i = i.clone();
        self.write(audit, move |c| {
            Box::pin(async move { ops::insert_institution(c, &i).await })
        })
        .await
    }

    async fn list_institutions(&self) -> Result<Vec<Institution>> {
        let rows = sqlx::query("SELECT * FROM institutions ORDER BY level, country, name")
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)?;
        rows.iter().map(institution_from_row).collect()
    }

    async fn get_institution(&self, id: InstitutionId) -> Result<Institution> {
        let row = sqlx::query("SELECT * FROM institutions WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?
            .ok_or(StoreError::NotFound("institution"))?;
        institution_from_row(&row)
    }

    async fn insert_user(
        &self,
        u: &User,
        password_hash: Option<&str>,
        audit: Vec<AuditEvent>,
    ) -> Result<()> {
        let u = u.clone();
        let hash = password_hash.map(str::to_owned);
        self.write(audit, move |c| {
            Box::pin(async move { ops::insert_user(c, &u, hash).await })
        })
        .await
    }

    async fn update_user(&self, u: &User, audit: Vec<AuditEvent>) -> Result<()> {
        let u = u.clone();
        self.write(audit, move |c| {
            Box::pin(async move { ops::update_user(c, &u).await })
        })
        .await
    }

    async fn get_user(&self, id: UserId) -> Result<User> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users u WHERE u.id = ?"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.reader)
        .await
        .map_err(db_err)?
        .ok_or(StoreError::NotFound("user"))?;
        user_from_row(&row)
    }

    async fn get_user_credentials(&self, username: &str) -> Result<(User, Option<String>)> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS}, u.password_hash FROM users u WHERE u.username = ?"
        ))
        .bind(username)
        .fetch_optional(&self.reader)
        .await
        .map_err(db_err)?
        .ok_or(StoreError::NotFound("user"))?;
        Ok((user_from_row(&row)?, row.get("password_hash")))
    }

    async fn list_users(&self, institution: Option<InstitutionId>) -> Result<Vec<User>> {
        let rows = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users u WHERE (?1 IS NULL OR u.institution_id = ?1) ORDER BY u.role, u.username"
        ))
        .bind(institution.map(|i| i.to_string()))
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter().map(user_from_row).collect()
    }

    async fn people(&self, ids: &[UserId]) -> Result<Vec<PersonRef>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT u.id, u.display_name, i.name AS institution_name FROM users u
             JOIN institutions i ON i.id = u.institution_id
             WHERE u.id IN (SELECT value FROM json_each(?)) ORDER BY u.id",
        )
        .bind(
            serde_json::to_string(&ids.iter().map(|u| u.to_string()).collect::<Vec<_>>())
                .unwrap_or_else(|_| "[]".into()),
        )
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter().map(person_from_row).collect()
    }

    async fn routing_candidates(&self, specialty: &str) -> Result<Vec<Candidate>> {
        let rows = sqlx::query(&format!(
            "SELECT {USER_COLUMNS}, {OPEN_CASES}
             FROM user_specialties s JOIN users u ON u.id = s.user_id
             WHERE s.specialty = ? AND u.active = 1 AND u.role = 'consultant'
             ORDER BY u.id"
        ))
        .bind(specialty)
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter().map(candidate_from_row).collect()
    }

    async fn insert_team(&self, t: &Team, audit: Vec<AuditEvent>) -> Result<()> {
        let t = t.clone();
        self.write(audit, move |c| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO teams (id, institution_id, name, specialty, lead_id, member_ids)
                     VALUES (?,?,?,?,?,?)",
                )
                .bind(t.id.to_string())
                .bind(t.institution_id.to_string())
                .bind(&t.name)
                .bind(&t.specialty)
                .bind(t.lead_id.to_string())
                .bind(serde_json::to_string(&t.member_ids).unwrap_or_else(|_| "[]".into()))
                .execute(c)
                .await
                .map_err(db_err)?;
                Ok(())
            })
        })
        .await
    }

    async fn get_team(&self, id: TeamId) -> Result<Team> {
        let row = sqlx::query("SELECT * FROM teams WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?
            .ok_or(StoreError::NotFound("team"))?;
        team_from_row(&row)
    }

    async fn list_teams(&self, institution: Option<InstitutionId>) -> Result<Vec<Team>> {
        let rows = sqlx::query(
            "SELECT * FROM teams WHERE (?1 IS NULL OR institution_id = ?1) ORDER BY name, id",
        )
        .bind(institution.map(|i| i.to_string()))
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter().map(team_from_row).collect()
    }

    async fn routing_teams(&self, specialty: &str) -> Result<(Vec<Team>, Vec<Candidate>)> {
        let teams = sqlx::query("SELECT * FROM teams WHERE specialty = ? ORDER BY id")
            .bind(specialty)
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)?
            .iter()
            .map(team_from_row)
            .collect::<Result<Vec<_>>>()?;
        let ids: Vec<String> = teams
            .iter()
            .flat_map(Team::everyone)
            .map(|u| u.to_string())
            .collect();
        if ids.is_empty() {
            return Ok((teams, Vec::new()));
        }
        let people = sqlx::query(&format!(
            "SELECT {USER_COLUMNS}, {OPEN_CASES} FROM users u
             WHERE u.id IN (SELECT value FROM json_each(?)) AND u.active = 1 AND u.role = 'consultant'
             ORDER BY u.id"
        ))
        .bind(serde_json::to_string(&ids).unwrap_or_else(|_| "[]".into()))
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?
        .iter()
        .map(candidate_from_row)
        .collect::<Result<Vec<_>>>()?;
        Ok((teams, people))
    }

    async fn create_session(
        &self,
        token_hash: &str,
        user: UserId,
        csrf: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        let (token_hash, csrf) = (token_hash.to_owned(), csrf.to_owned());
        self.write(vec![], move |c| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO sessions (token_hash, user_id, csrf_token, expires_at) VALUES (?,?,?,?)",
                )
                .bind(token_hash)
                .bind(user.to_string())
                .bind(csrf)
                .bind(format_audit_time(expires_at))
                .execute(c)
                .await
                .map_err(db_err)?;
                Ok(())
            })
        })
        .await
    }

    async fn get_session(&self, token_hash: &str) -> Result<SessionRecord> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS}, s.csrf_token, s.expires_at FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = ?"
        ))
        .bind(token_hash)
        .fetch_optional(&self.reader)
        .await
        .map_err(db_err)?
        .ok_or(StoreError::NotFound("session"))?;
        Ok(SessionRecord {
            user: user_from_row(&row)?,
            csrf_token: row.get("csrf_token"),
            expires_at: time(&row, "expires_at")?,
        })
    }

    async fn delete_session(&self, token_hash: &str) -> Result<()> {
        let token_hash = token_hash.to_owned();
        self.write(vec![], move |c| {
            Box::pin(async move {
                sqlx::query("DELETE FROM sessions WHERE token_hash = ? OR expires_at < ?")
                    .bind(token_hash)
                    .bind(format_audit_time(Utc::now()))
                    .execute(c)
                    .await
                    .map_err(db_err)?;
                Ok(())
            })
        })
        .await
    }

    async fn create_api_token(
        &self,
        token_hash: &str,
        user: UserId,
        name: &str,
        audit: Vec<AuditEvent>,
    ) -> Result<ApiTokenInfo> {
        let info = ApiTokenInfo {
            id: uuid::Uuid::now_v7().to_string(),
            name: name.to_owned(),
            created_at: audit::audit_time(Utc::now()),
            last_used_at: None,
        };
        let (hash, out) = (token_hash.to_owned(), info.clone());
        self.write(audit, move |c| {
            Box::pin(async move {
                sqlx::query("INSERT INTO api_tokens (id, token_hash, user_id, name, created_at) VALUES (?,?,?,?,?)")
                    .bind(&info.id)
                    .bind(hash)
                    .bind(user.to_string())
                    .bind(&info.name)
                    .bind(format_audit_time(info.created_at))
                    .execute(c)
                    .await
                    .map_err(db_err)?;
                Ok(())
            })
        })
        .await?;
        Ok(out)
    }

    async fn user_for_api_token(&self, token_hash: &str) -> Result<User> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = ? AND t.revoked = 0"
        ))
        .bind(token_hash)
        .fetch_optional(&self.reader)
        .await
        .map_err(db_err)?
        .ok_or(StoreError::NotFound("API token"))?;
        user_from_row(&row)
    }

    async fn list_api_tokens(&self, user: UserId) -> Result<Vec<ApiTokenInfo>> {
        let rows = sqlx::query(
            "SELECT * FROM api_tokens WHERE user_id = ? AND revoked = 0 ORDER BY created_at",
        )
        .bind(user.to_string())
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                Ok(ApiTokenInfo {
                    id: r.get("id"),
                    name: r.get("name"),
                    created_at: time(r, "created_at")?,
                    last_used_at: opt_time(r, "last_used_at")?,
                })
            })
            .collect()
    }

    async fn revoke_api_token(&self, user: UserId, id: &str, audit: Vec<AuditEvent>) -> Result<()> {
        let id = id.to_owned();
        self.write(audit, move |c| {
            Box::pin(async move {
                let done =
                    sqlx::query("UPDATE api_tokens SET revoked = 1 WHERE id = ? AND user_id = ?")
                        .bind(id)
                        .bind(user.to_string())
                        .execute(c)
                        .await
                        .map_err(db_err)?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound("API token"));
                }
                Ok(())
            })
        })
        .await
    }

    async fn insert_patient(&self, p: &Patient, audit: Vec<AuditEvent>) -> Result<()> {
        let p = p.clone();
        self.write(audit, move |c| {
            Box::pin(async move { ops::insert_patient(c, &p).await })
        })
        .await
    }

    async fn get_patient(&self, actor: &Actor, id: PatientId) -> Result<Patient> {
        let sql = format!(
            "SELECT p.* FROM patients p WHERE p.id = ?5 AND ({})",
            patient_scope()
        );
        let row = scoped_row(&self.reader, &sql, actor, id.to_string(), "patient").await?;
        patient_from_row(&row)
    }

    async fn list_patients(&self, actor: &Actor, filter: &PatientFilter) -> Result<Vec<Patient>> {
        let sql = format!(
            "SELECT p.* FROM patients p
             WHERE ({})
               AND (?5 IS NULL OR instr(p.search_name, ?5) > 0)
               AND (?6 IS NULL OR p.birth_date = ?6)
             ORDER BY p.family_name, p.given_name LIMIT ?7",
            patient_scope()
        );
        let rows = bind_actor(sqlx::query(&sql), actor)
            .bind(
                filter
                    .name
                    .as_deref()
                    .map(caravan_domain::name_search_key)
                    .filter(|s| !s.is_empty()),
            )
            .bind(filter.birth_date.map(|d| d.to_string()))
            .bind(i64::from(filter.limit.unwrap_or(200)))
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)?;
        rows.iter().map(patient_from_row).collect()
    }

    async fn insert_consent(&self, c: &Consent, audit: Vec<AuditEvent>) -> Result<()> {
        let k = c.clone();
        self.write(audit, move |c| {
            Box::pin(async move {
                sqlx::query("INSERT INTO consents (id, patient_id, scope, granted, recorded_by, recorded_at, note) VALUES (?,?,?,?,?,?,?)")
                    .bind(k.id.to_string())
                    .bind(k.patient_id.to_string())
                    .bind(k.scope.as_str())
                    .bind(k.granted)
                    .bind(k.recorded_by.to_string())
                    .bind(format_audit_time(k.recorded_at))
                    .bind(&k.note)
                    .execute(c)
                    .await
                    .map_err(db_err)?;
                Ok(())
            })
        })
        .await
    }

    async fn consents(&self, actor: &Actor, patient: PatientId) -> Result<Vec<Consent>> {
        // Scope through the patient: no patient, no consents.
        self.get_patient(actor, patient).await?;
        let rows =
            sqlx::query("SELECT * FROM consents WHERE patient_id = ? ORDER BY recorded_at, id")
                .bind(patient.to_string())
                .fetch_all(&self.reader)
                .await
                .map_err(db_err)?;
        rows.iter().map(consent_from_row).collect()
    }

    async fn get_consent(&self, actor: &Actor, id: ConsentId) -> Result<Consent> {
        let sql = format!(
            "SELECT k.* FROM consents k JOIN patients p ON p.id = k.patient_id
             WHERE k.id = ?5 AND ({})",
            patient_scope()
        );
        let row = scoped_row(&self.reader, &sql, actor, id.to_string(), "consent").await?;
        consent_from_row(&row)
    }

    async fn insert_consultation(&self, k: &Consultation, audit: Vec<AuditEvent>) -> Result<()> {
        let k = k.clone();
        self.write(audit, move |c| {
            Box::pin(async move { ops::insert_consultation(c, &k).await })
        })
        .await
    }

    async fn update_consultation(
        &self,
        k: &Consultation,
        expected_version: i64,
        audit: Vec<AuditEvent>,
    ) -> Result<()> {
        let k = k.clone();
        self.write(audit, move |c| {
            Box::pin(async move { ops::update_consultation(c, &k, expected_version).await })
        })
        .await
    }

    async fn get_consultation(&self, actor: &Actor, id: ConsultationId) -> Result<Consultation> {
        let sql =
            format!("SELECT c.doc FROM consultations c WHERE c.id = ?5 AND ({CONSULTATION_SCOPE})");
        let row = scoped_row(&self.reader, &sql, actor, id.to_string(), "consultation").await?;
        consultation_from_row(&row)
    }

    /// In one statement (see `case_bundle_text`).
    async fn case_bundle(&self, actor: &Actor, id: ConsultationId) -> Result<CaseBundle> {
        let (bundle, thread) = self.case_bundle_text(actor, id, None).await?;
        let messages = json_doc("messages", &thread)?;
        Ok(bundle.map_messages(|()| messages))
    }

    /// The latest part of the thread as SQLite built it, validated as JSON but not parsed into messages.
    async fn case_bundle_raw(
        &self,
        actor: &Actor,
        id: ConsultationId,
    ) -> Result<CaseBundle<RawThread>> {
        let (bundle, thread) = self
            .case_bundle_text(actor, id, Some(THREAD_WINDOW))
            .await?;
        let raw = serde_json::value::RawValue::from_string(thread)
            .map_err(|e| StoreError::Corrupt(format!("messages: {e}")))?;
        Ok(bundle.map_messages(|()| raw))
    }

    async fn list_consultations(
        &self,
        actor: &Actor,
        f: &ConsultationFilter,
    ) -> Result<Vec<ConsultationSummary>> {
        let states: Vec<&str> = f.states.iter().map(|s| s.as_str()).collect();
        // One row: the page as a JSON array built by SQLite. sqlx hands rows from its worker thread one at a
        // time over a channel, and a list of 50 cost the request task as many wake-ups as rows. The documents
        // are JSON this store wrote: they are spliced in as text, not parsed again by `json()`.
        let sql = format!(
            "SELECT '[' || coalesce(group_concat('[' || doc || ',' || json_quote(patient_name) || ','
                      || json_quote(referrer_name) || ',' || json_quote(assignee_name) || ']', ','
                      ORDER BY undated, due_at, created_at DESC), '') || ']' AS page
             FROM (SELECT c.doc, p.given_name || ' ' || p.family_name AS patient_name,
                          r.display_name AS referrer_name, a.display_name AS assignee_name,
                          CASE WHEN c.due_at IS NULL THEN 1 ELSE 0 END AS undated, c.due_at, c.created_at
                   FROM consultations c
                   JOIN patients p ON p.id = c.patient_id
                   JOIN users r ON r.id = c.referrer_id
                   LEFT JOIN users a ON a.id = c.assigned_to
                   WHERE ({CONSULTATION_SCOPE})
                     AND (?5 = '' OR instr(?5, ',' || c.state || ',') > 0)
                     AND (?6 IS NULL OR c.assigned_to = ?6)
                     AND (?7 IS NULL OR c.referrer_id = ?7)
                     AND (?8 IS NULL OR c.patient_id = ?8)
                     AND (?9 IS NULL OR (c.state IN ('submitted','assigned','in_progress') AND c.due_at <= ?9))
                   ORDER BY undated, c.due_at, c.created_at DESC
                   LIMIT ?10)"
        );
        let state_list = if states.is_empty() {
            String::new()
        } else {
            format!(",{},", states.join(","))
        };
        let row = bind_actor(sqlx::query(&sql), actor)
            .bind(state_list)
            .bind(f.assigned_to.map(|u| u.to_string()))
            .bind(f.referrer_id.map(|u| u.to_string()))
            .bind(f.patient_id.map(|u| u.to_string()))
            .bind(f.overdue_at.map(format_audit_time))
            .bind(i64::from(f.limit.unwrap_or(500)))
            .fetch_one(&self.reader)
            .await
            .map_err(db_err)?;
        let page: String = row.try_get("page").map_err(db_err)?;
        let rows: Vec<(Consultation, String, String, Option<String>)> =
            json_doc("consultation list", &page)?;
        Ok(rows
            .into_iter()
            .map(
                |(consultation, patient_name, referrer_name, assignee_name)| ConsultationSummary {
                    consultation,
                    patient_name,
                    referrer_name,
                    assignee_name,
                },
            )
            .collect())
    }

    async fn overdue_unescalated(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Consultation>> {
        let rows = sqlx::query(
            "SELECT c.doc FROM consultations c
             WHERE c.state IN ('submitted','assigned','in_progress') AND c.due_at <= ? AND c.escalated_at IS NULL
             ORDER BY c.due_at LIMIT ?",
        )
        .bind(format_audit_time(now))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter().map(consultation_from_row).collect()
    }

    async fn insert_message(&self, m: &Message, audit: Vec<AuditEvent>) -> Result<()> {
        let m = m.clone();
        self.write(audit, move |c| {
            Box::pin(async move { ops::insert_message(c, &m).await })
        })
        .await
    }

    async fn list_messages(&self, actor: &Actor, c: ConsultationId) -> Result<Vec<Message>> {
        let sql = format!(
            "SELECT m.* FROM messages m JOIN consultations c ON c.id = m.consultation_id
             WHERE m.consultation_id = ?5 AND ({CONSULTATION_SCOPE}) ORDER BY m.created_at, m.id"
        );
        let rows = scoped_rows(&self.reader, &sql, actor, c.to_string()).await?;
        rows.iter().map(message_from_row).collect()
    }

    async fn get_message(&self, actor: &Actor, id: MessageId) -> Result<Message> {
        let sql = format!(
            "SELECT m.* FROM messages m JOIN consultations c ON c.id = m.consultation_id
             WHERE m.id = ?5 AND ({CONSULTATION_SCOPE})"
        );
        message_from_row(&scoped_row(&self.reader, &sql, actor, id.to_string(), "message").await?)
    }

    async fn insert_attachment(&self, a: &Attachment, audit: Vec<AuditEvent>) -> Result<()> {
        let a = a.clone();
        self.write(audit, move |c| {
            Box::pin(async move { ops::insert_attachment(c, &a).await })
        })
        .await
    }

    async fn list_attachments(&self, actor: &Actor, c: ConsultationId) -> Result<Vec<Attachment>> {
        let sql = format!(
            "SELECT a.* FROM attachments a JOIN consultations c ON c.id = a.consultation_id
             WHERE a.consultation_id = ?5 AND ({CONSULTATION_SCOPE}) ORDER BY a.created_at, a.id"
        );
        let rows = scoped_rows(&self.reader, &sql, actor, c.to_string()).await?;
        rows.iter().map(attachment_from_row).collect()
    }

    async fn get_attachment(&self, actor: &Actor, id: AttachmentId) -> Result<Attachment> {
        let sql = format!(
            "SELECT a.* FROM attachments a JOIN consultations c ON c.id = a.consultation_id
             WHERE a.id = ?5 AND ({CONSULTATION_SCOPE})"
        );
        attachment_from_row(
            &scoped_row(&self.reader, &sql, actor, id.to_string(), "attachment").await?,
        )
    }

    async fn attachment_blob_keys_in_use(&self, keys: &[String]) -> Result<Vec<String>> {
        let keys = serde_json::to_string(keys).map_err(|e| StoreError::Database(e.to_string()))?;
        sqlx::query_scalar(
            "SELECT DISTINCT blob_key FROM attachments WHERE blob_key IN (SELECT value FROM json_each(?))",
        )
        .bind(keys)
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)
    }

    async fn list_case_studies(&self, actor: &Actor, c: ConsultationId) -> Result<Vec<CaseStudy>> {
        let sql = format!(
            "SELECT s.* FROM case_studies s JOIN consultations c ON c.id = s.consultation_id
             WHERE s.consultation_id = ?5 AND ({CONSULTATION_SCOPE}) ORDER BY s.created_at, s.study_uid"
        );
        let rows = scoped_rows(&self.reader, &sql, actor, c.to_string()).await?;
        rows.iter().map(studies::from_row).collect()
    }

    async fn fed_pending_studies(&self, limit: u32) -> Result<Vec<CaseStudy>> {
        let rows = sqlx::query(
            "SELECT * FROM case_studies WHERE state = 'pending' ORDER BY updated_at LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter().map(studies::from_row).collect()
    }

    async fn append_audit(&self, events: Vec<AuditEvent>) -> Result<()> {
        self.writer.append_audit(events).await
    }

    async fn audit_for_patient(&self, patient: PatientId, limit: u32) -> Result<Vec<AuditRecord>> {
        // The patient's own events, and the searches that listed them (through `audit_subjects`); each branch
        // walks its index backwards and stops at `limit`.
        let rows = sqlx::query(
            "SELECT * FROM audit_events WHERE seq IN (
               SELECT seq FROM (SELECT seq FROM audit_events WHERE patient_id = ?1 ORDER BY seq DESC LIMIT ?2)
               UNION
               SELECT seq FROM (SELECT seq FROM audit_subjects WHERE patient_id = ?1 ORDER BY seq DESC LIMIT ?2))
             ORDER BY seq DESC LIMIT ?2",
        )
        .bind(patient.to_string())
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| Ok(audit_from_row(r)?.narrowed(|s| s.patient_id == Some(patient))))
            .collect()
    }

    async fn audit_for_entity(
        &self,
        entity_type: &str,
        entity_id: &str,
        patient: Option<PatientId>,
        limit: u32,
    ) -> Result<Vec<AuditRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM audit_events WHERE seq IN (
               SELECT seq FROM (SELECT seq FROM audit_events WHERE entity_type = ?1 AND entity_id = ?2
                                ORDER BY seq DESC LIMIT ?4)
               UNION
               SELECT seq FROM (SELECT s.seq FROM audit_subjects s JOIN audit_events e ON e.seq = s.seq
                                WHERE s.patient_id = ?3 AND e.entity_type = ?1
                                  AND EXISTS (SELECT 1 FROM json_each(e.subjects) j
                                              WHERE json_extract(j.value, '$[0]') = ?2
                                                AND json_extract(j.value, '$[1]') = ?3)
                                ORDER BY s.seq DESC LIMIT ?4))
             ORDER BY seq DESC LIMIT ?4",
        )
        .bind(entity_type)
        .bind(entity_id)
        .bind(patient.map(|p| p.to_string()))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| Ok(audit_from_row(r)?.narrowed(|s| s.entity_id == entity_id)))
            .collect()
    }

    async fn audit_page(&self, after: i64, limit: u32) -> Result<Vec<AuditRecord>> {
        let rows = sqlx::query("SELECT * FROM audit_events WHERE seq > ? ORDER BY seq LIMIT ?")
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)?;
        rows.iter().map(audit_from_row).collect()
    }

    async fn audit_subjects_missing(
        &self,
        pairs: &[(PatientId, i64)],
    ) -> Result<Vec<(PatientId, i64)>> {
        if pairs.is_empty() {
            return Ok(Vec::new());
        }
        let wanted: Vec<(String, i64)> = pairs.iter().map(|(p, s)| (p.to_string(), *s)).collect();
        let json =
            serde_json::to_string(&wanted).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let rows = sqlx::query(
            "SELECT json_extract(j.value, '$[0]') AS patient_id, json_extract(j.value, '$[1]') AS seq
             FROM json_each(?1) j
             WHERE NOT EXISTS (SELECT 1 FROM audit_subjects a
                               WHERE a.patient_id = json_extract(j.value, '$[0]')
                                 AND a.seq = json_extract(j.value, '$[1]'))",
        )
        .bind(json)
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                let p: String = r.try_get("patient_id").map_err(db_err)?;
                let seq: i64 = r.try_get("seq").map_err(db_err)?;
                Ok((parse("audit_subjects.patient_id", &p)?, seq))
            })
            .collect()
    }
    async fn apply(&self, changes: Vec<Change>, audit: Vec<AuditEvent>) -> Result<()> {
        self.write(audit, move |c| Box::pin(fed::apply(c, changes)))
            .await
    }

    async fn fed_consultation(&self, id: ConsultationId) -> Result<Consultation> {
        let row = sqlx::query("SELECT doc FROM consultations WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?
            .ok_or(StoreError::NotFound("consultation"))?;
        consultation_from_row(&row)
    }

    async fn fed_node_institution(&self, node: &str) -> Result<Option<InstitutionId>> {
        fed::node_institution(&self.reader, node).await
    }

    async fn fed_remote_user(&self, user: UserId) -> Result<Option<RemoteUser>> {
        fed::remote_user_by_id(&self.reader, user).await
    }

    async fn fed_remote_users(&self, node: &str) -> Result<Vec<RemoteUser>> {
        fed::remote_users(&self.reader, node).await
    }

    async fn fed_foreign_case(&self, id: ConsultationId) -> Result<Option<ForeignCase>> {
        fed::foreign_case_by(
            &self.reader,
            "SELECT * FROM fed_foreign_cases WHERE consultation_id = ?",
            &id.to_string(),
            None,
        )
        .await
    }

    async fn fed_foreign_case_by_origin(
        &self,
        node: &str,
        origin_case: &str,
    ) -> Result<Option<ForeignCase>> {
        fed::foreign_case_by(
            &self.reader,
            "SELECT * FROM fed_foreign_cases WHERE origin_node = ? AND origin_case = ?",
            node,
            Some(origin_case),
        )
        .await
    }

    async fn fed_expired_foreign_cases(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ForeignCase>> {
        fed::expired(&self.reader, now, limit).await
    }

    async fn fed_case_blob_keys(&self, id: ConsultationId) -> Result<Vec<String>> {
        fed::strings(
            &self.reader,
            "SELECT blob_key FROM attachments WHERE consultation_id = ? ORDER BY created_at",
            id.to_string(),
        )
        .await
    }

    async fn fed_studies_to_purge(&self, id: ConsultationId) -> Result<Vec<CaseStudy>> {
        let rows = sqlx::query(
            "SELECT s.* FROM case_studies s WHERE s.consultation_id = ?1 AND s.origin_node IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM case_studies o
                               WHERE o.study_uid = s.study_uid AND o.consultation_id <> ?1)
             ORDER BY s.created_at, s.study_uid",
        )
        .bind(id.to_string())
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter().map(studies::from_row).collect()
    }

    async fn fed_shared_nodes(&self, id: ConsultationId) -> Result<Vec<String>> {
        fed::strings(
            &self.reader,
            "SELECT node_id FROM fed_shared WHERE consultation_id = ? ORDER BY node_id",
            id.to_string(),
        )
        .await
    }

    async fn fed_inbox_contains(&self, envelope_id: uuid::Uuid) -> Result<bool> {
        Ok(!fed::strings(
            &self.reader,
            "SELECT envelope_id FROM fed_inbox WHERE envelope_id = ?",
            envelope_id.to_string(),
        )
        .await?
        .is_empty())
    }

    async fn fed_destinations_with_pending(&self) -> Result<Vec<String>> {
        sqlx::query_scalar(
            "SELECT DISTINCT destination FROM fed_outbox WHERE state = 'pending' ORDER BY destination",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)
    }

    async fn fed_next_pending(&self, destination: &str) -> Result<Option<PendingEnvelope>> {
        fed::next_pending(&self.reader, destination).await
    }

    async fn fed_mark_delivered(&self, envelope_id: uuid::Uuid, at: DateTime<Utc>) -> Result<()> {
        self.write(Vec::new(), move |c| {
            Box::pin(async move {
                sqlx::query(
                    "UPDATE fed_outbox SET state = 'delivered', done_at = ?, last_error = NULL
                     WHERE envelope_id = ? AND state = 'pending'",
                )
                .bind(format_audit_time(at))
                .bind(envelope_id.to_string())
                .execute(&mut *c)
                .await
                .map_err(db_err)?;
                Ok(())
            })
        })
        .await
    }

    async fn fed_record_failure(
        &self,
        envelope_id: uuid::Uuid,
        attempts: u32,
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> Result<()> {
        let error = error.chars().take(500).collect::<String>();
        self.write(Vec::new(), move |c| {
            Box::pin(async move {
                sqlx::query(
                    "UPDATE fed_outbox SET attempts = ?, next_attempt_at = ?, last_error = ?
                     WHERE envelope_id = ? AND state = 'pending'",
                )
                .bind(attempts as i64)
                .bind(format_audit_time(next_attempt_at))
                .bind(error)
                .bind(envelope_id.to_string())
                .execute(&mut *c)
                .await
                .map_err(db_err)?;
                Ok(())
            })
        })
        .await
    }

    async fn fed_dead_letter(
        &self,
        envelope_id: uuid::Uuid,
        reason: &str,
        at: DateTime<Utc>,
        audit: Vec<AuditEvent>,
    ) -> Result<()> {
        let reason = reason.chars().take(500).collect::<String>();
        self.write(audit, move |c| {
            Box::pin(async move {
                sqlx::query(
                    "UPDATE fed_outbox SET state = 'dead', done_at = ?, last_error = ?
                     WHERE envelope_id = ? AND state = 'pending'",
                )
                .bind(format_audit_time(at))
                .bind(reason)
                .bind(envelope_id.to_string())
                .execute(&mut *c)
                .await
                .map_err(db_err)?;
                Ok(())
            })
        })
        .await
    }

    async fn fed_outbox(&self, state: &str, limit: u32) -> Result<Vec<OutboxRow>> {
        fed::outbox(&self.reader, state, limit).await
    }

    async fn fed_retry(
        &self,
        envelope_id: uuid::Uuid,
        now: DateTime<Utc>,
        audit: Vec<AuditEvent>,
    ) -> Result<String> {
        self.write(audit, move |c| {
            Box::pin(async move {
                sqlx::query_scalar(
                    "UPDATE fed_outbox SET state = 'pending', attempts = 0, next_attempt_at = ?, done_at = NULL,
                       enqueued_at = ?
                     WHERE envelope_id = ? AND state = 'dead' RETURNING destination",
                )
                .bind(format_audit_time(now))
                .bind(format_audit_time(now))
                .bind(envelope_id.to_string())
                .fetch_optional(&mut *c)
                .await
                .map_err(db_err)?
                .ok_or(StoreError::NotFound("dead letter"))
            })
        })
        .await
    }

    async fn fed_counts(&self) -> Result<FederationCounts> {
        fed::counts(&self.reader).await
    }

    async fn fed_inbox(&self, limit: u32) -> Result<Vec<InboxEntry>> {
        fed::inbox(&self.reader, limit).await
    }

    async fn surv_regions(&self) -> Result<Vec<SurvRegion>> {
        surv::regions(&self.reader).await
    }

    async fn surv_cases(&self, f: &SurvFilter) -> Result<Vec<SurvCase>> {
        surv::cases(&self.reader, f).await
    }

    async fn surv_aggregates(&self, f: &SurvFilter) -> Result<Vec<SurvAggregate>> {
        surv::aggregates(&self.reader, f).await
    }

    async fn surv_weeks(&self, f: &SurvFilter) -> Result<Vec<SurvWeek>> {
        surv::weeks(&self.reader, f).await
    }

    async fn surv_alerts(&self, limit: u32) -> Result<Vec<SurvAlert>> {
        surv::alerts(&self.reader, limit).await
    }

    async fn surv_alert(&self, id: uuid::Uuid) -> Result<SurvAlert> {
        surv::alert_where(
            &self.reader,
            "SELECT * FROM surv_alerts WHERE id = ?",
            &[id.to_string()],
        )
        .await?
        .ok_or(StoreError::NotFound("alert"))
    }

    async fn surv_alert_for(
        &self,
        origin_node: &str,
        disease: &str,
        region: &str,
        iso_year: i32,
        iso_week: u32,
    ) -> Result<Option<SurvAlert>> {
        surv::alert_where(
            &self.reader,
            "SELECT * FROM surv_alerts WHERE origin_node = ? AND disease = ? AND region = ?
               AND iso_year = CAST(? AS INTEGER) AND iso_week = CAST(? AS INTEGER)",
            &[
                origin_node.to_owned(),
                disease.to_owned(),
                region.to_owned(),
                iso_year.to_string(),
                iso_week.to_string(),
            ],
        )
        .await
    }

    async fn surv_alert_by_origin(&self, node: &str, origin_id: &str) -> Result<Option<SurvAlert>> {
        surv::alert_where(
            &self.reader,
            "SELECT * FROM surv_alerts WHERE origin_node = ? AND origin_id = ?",
            &[node.to_owned(), origin_id.to_owned()],
        )
        .await
    }

    async fn surv_notes(&self, alert: uuid::Uuid) -> Result<Vec<SurvNote>> {
        surv::notes(&self.reader, alert).await
    }

    async fn surv_foreign_counts(&self) -> Result<Vec<SurvForeignCount>> {
        surv::foreign_counts(&self.reader).await
    }
}

async fn write_specialties(c: &mut SqliteConnection, u: &User) -> Result<()> {
    sqlx::query("DELETE FROM user_specialties WHERE user_id = ?")
        .bind(u.id.to_string())
        .execute(&mut *c)
        .await
        .map_err(db_err)?;
    if let Some(p) = &u.profile {
        for s in &p.specialties {
            sqlx::query(
                "INSERT OR IGNORE INTO user_specialties (user_id, specialty) VALUES (?, ?)",
            )
            .bind(u.id.to_string())
            .bind(s)
            .execute(&mut *c)
            .await
            .map_err(db_err)?;
        }
    }
    Ok(())
}

/// Parse helper shared by the row mappers.
pub(crate) fn parse<T: FromStr>(what: &'static str, s: &str) -> Result<T> {
    s.parse()
        .map_err(|_| StoreError::Corrupt(format!("bad {what} {s:?}")))
}
