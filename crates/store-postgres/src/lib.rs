//! Caravan storage on PostgreSQL: the scale-out backend.
//!
//! The same [`Store`] contract as the embedded SQLite backend, for nodes that outgrow one file: several node
//! processes can share one database. Two things differ from SQLite and are the reason this backend exists:
//!
//! - Writers run concurrently (a connection pool, PostgreSQL's row locks, `READ COMMITTED`), instead of one
//!   in-process writer.
//! - The audit chain is therefore serialised explicitly: every transaction that appends audit events locks the
//!   one-row `audit_head` table (`SELECT ... FOR UPDATE`) as its last step before commit, reads the head's sequence
//!   number and hash, chains its events after it and moves the head. The lock is held until commit, so appends
//!   from any number of connections and processes form one linear chain, and a rolled-back transaction leaves
//!   neither events nor a gap behind. Taking the lock last keeps the time it is held short and cannot deadlock:
//!   a transaction that holds the head waits for nothing else.
//!
//! Queries are runtime queries (`sqlx::query`) with `$n` parameters; the schema is migrated by
//! [`sqlx::migrate!`] when the store connects (sqlx takes an advisory lock, so nodes starting together migrate
//! once).

mod fed;
mod ops;
mod rows;
mod rx;
mod studies;
mod surv;
mod visits;

use async_trait::async_trait;
use caravan_domain::audit::{audit_time, encode_subjects, AuditRecord};
use caravan_domain::routing::Candidate;
use caravan_domain::*;
use caravan_store::*;
use chrono::{DateTime, Utc};
use rows::*;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool, Row};
use std::str::FromStr;
use std::sync::LazyLock;
use std::time::Duration;
use uuid::Uuid;

/// A Caravan store on a PostgreSQL database.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
}

/// How many connections one node keeps open at most. PostgreSQL's default `max_connections` is 100, so several
/// nodes fit with room for administration.
const DEFAULT_MAX_CONNECTIONS: u32 = 16;

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

/// Which consultations an actor may see: the PostgreSQL form of the SQLite backend's rule, word for word.
/// Parameters: $1 user id, $2 institution id, $3 the actor's patient id (NULL unless a patient), $4 role.
/// The same rule, in words, is in `docs/architecture.md` ("Who sees what").
const CONSULTATION_SCOPE: &str = "
  CASE $4
    WHEN 'referrer' THEN (c.institution_id = $2 AND (c.state <> 'draft' OR c.referrer_id = $1))
        OR EXISTS (SELECT 1 FROM participants pa WHERE pa.consultation_id = c.id AND pa.user_id = $1)
    WHEN 'consultant' THEN (c.institution_id = $2 AND c.state <> 'draft')
        OR EXISTS (SELECT 1 FROM participants pa WHERE pa.consultation_id = c.id AND pa.user_id = $1)
    WHEN 'coordinator' THEN c.state <> 'draft' AND (
           c.institution_id = $2 OR c.state = 'submitted' OR c.escalated_at IS NOT NULL
        OR EXISTS (SELECT 1 FROM participants pa WHERE pa.consultation_id = c.id AND pa.institution_id = $2))
    WHEN 'patient' THEN c.patient_id = $3 AND c.state <> 'draft'
    ELSE FALSE
  END";

/// Which patients an actor may see (same parameters as [`CONSULTATION_SCOPE`]): their own institution's, or
/// those a consultation they may see shares with them. Built once from [`CONSULTATION_SCOPE`] so the two rules
/// cannot drift apart.
static PATIENT_SCOPE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "CASE $4
           WHEN 'patient' THEN p.id = $3
           WHEN 'referrer' THEN p.institution_id = $2 OR EXISTS (SELECT 1 FROM consultations c WHERE c.patient_id = p.id AND ({CONSULTATION_SCOPE}))
           WHEN 'consultant' THEN p.institution_id = $2 OR EXISTS (SELECT 1 FROM consultations c WHERE c.patient_id = p.id AND ({CONSULTATION_SCOPE}))
           WHEN 'coordinator' THEN p.institution_id = $2 OR EXISTS (SELECT 1 FROM consultations c WHERE c.patient_id = p.id AND ({CONSULTATION_SCOPE}))
           ELSE FALSE
         END"
    )
});

type Q<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// Bind the actor as $1..$4 of a scoped query.
fn bind_actor<'q>(q: Q<'q>, a: &Actor) -> Q<'q> {
    q.bind(a.user_id.0)
        .bind(a.institution_id.0)
        .bind(a.patient_id.map(|p| p.0))
        .bind(a.role.as_str())
}

impl PgStore {
    /// Connect to the database named by a `postgres://` (or `postgresql://`) URL and run migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        // sqlx parses any scheme as PostgreSQL; refuse others so that a mistyped URL is not taken for a database.
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(StoreError::Database(
                "bad PostgreSQL URL: it must start with postgres:// or postgresql://".into(),
            ));
        }
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Database(format!("bad PostgreSQL URL: {e}")))?;
        Self::connect_with(options, DEFAULT_MAX_CONNECTIONS).await
    }

    /// Connect with explicit options and pool size, and run migrations.
    pub async fn connect_with(options: PgConnectOptions, max_connections: u32) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(db_err)?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Database(format!("migration failed: {e}")))?;
        backfill_search_names(&pool).await?;
        tracing::info!(max_connections, "connected to PostgreSQL store");
        Ok(Self { pool })
    }

    /// The connection pool, for callers that need to run maintenance (backups, health checks).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Close every connection of the pool and wait for them to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Run `f` in one transaction, then append `audit` in the same transaction, then commit.
    async fn write<F, T>(&self, audit: Vec<AuditEvent>, f: F) -> Result<T>
    where
        F: for<'c> FnOnce(
                &'c mut PgConnection,
            ) -> std::pin::Pin<
                Box<dyn std::future::Future<Output = Result<T>> + Send + 'c>,
            > + Send,
        T: Send,
    {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let out = f(&mut tx).await?;
        append_audit_tx(&mut tx, audit).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(out)
    }
}

/// Chain `events` onto the audit chain inside the caller's transaction. Locks the chain head until commit.
async fn append_audit_tx(conn: &mut PgConnection, events: Vec<AuditEvent>) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE")
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)?
        .ok_or_else(|| StoreError::Corrupt("the audit chain head row is missing".into()))?;
    let head_seq: i64 = get(&head, "seq")?;
    let head_hash: String = get(&head, "hash")?;
    let mut prev: Option<(i64, String)> = (head_seq > 0).then_some((head_seq, head_hash));
    let mut records = Vec::with_capacity(events.len());
    for e in events {
        let rec = AuditRecord::chain(e, prev.as_ref().map(|(s, h)| (*s, h.as_str())));
        prev = Some((rec.seq, rec.hash.clone()));
        records.push(rec);
    }
    // One multi-row INSERT per chunk instead of a round trip per event (14 x 500 parameters < 65,535).
    for chunk in records.chunks(500) {
        let mut q = sqlx::QueryBuilder::<sqlx::Postgres>::new(
            "INSERT INTO audit_events (seq, at, actor_user, actor_name, actor_institution, actor_role, action,
               entity_type, entity_id, patient_id, purpose, detail, subjects, prev_hash, hash) ",
        );
        q.push_values(chunk, |mut b, rec| {
            let ev = &rec.event;
            b.push_bind(rec.seq)
                .push_bind(ev.at)
                .push_bind(ev.actor_user.map(|u| u.0))
                .push_bind(ev.actor_name.clone())
                .push_bind(ev.actor_institution.map(|i| i.0))
                .push_bind(ev.actor_role.map(|r| r.as_str()))
                .push_bind(ev.action.as_str())
                .push_bind(ev.entity_type.clone())
                .push_bind(ev.entity_id.clone())
                .push_bind(ev.patient_id.map(|p| p.0))
                .push_bind(ev.purpose.clone())
                .push_bind(ev.detail.clone())
                .push_bind(encode_subjects(&ev.subjects))
                .push_bind(rec.prev_hash.clone())
                .push_bind(rec.hash.clone());
        });
        q.build().execute(&mut *conn).await.map_err(db_err)?;
    }
    // The patients a search listed, so that their access logs find it.
    let listed: Vec<(uuid::Uuid, i64)> = records
        .iter()
        .flat_map(|r| {
            r.event
                .subject_patients()
                .into_iter()
                .map(move |p| (p.0, r.seq))
        })
        .collect();
    for chunk in listed.chunks(10_000) {
        let mut q = sqlx::QueryBuilder::<sqlx::Postgres>::new(
            "INSERT INTO audit_subjects (patient_id, seq) ",
        );
        q.push_values(chunk, |mut b, (p, seq)| {
            b.push_bind(*p).push_bind(*seq);
        });
        q.build().execute(&mut *conn).await.map_err(db_err)?;
    }
    if let Some((seq, hash)) = prev {
        sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
            .bind(seq)
            .bind(hash)
            .execute(&mut *conn)
            .await
            .map_err(db_err)?;
    }
    Ok(())
}

async fn write_participants(conn: &mut PgConnection, c: &Consultation) -> Result<()> {
    let mut users: Vec<Uuid> = vec![c.referrer_id.0];
    users.extend(c.assigned_to.map(|u| u.0));
    users.extend(c.panel.iter().map(|m| m.user_id.0));
    users.sort();
    users.dedup();
    // Only what changed is written (most events keep the participants), as in the SQLite backend.
    sqlx::query("DELETE FROM participants WHERE consultation_id = $1 AND NOT (user_id = ANY($2))")
        .bind(c.id.0)
        .bind(&users)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    // One statement for all participants; users unknown to this node are skipped, as in the SQLite backend.
    sqlx::query(
        "INSERT INTO participants (consultation_id, user_id, institution_id)
         SELECT $1, id, institution_id FROM users WHERE id = ANY($2)
         ON CONFLICT (consultation_id, user_id) DO UPDATE SET institution_id = EXCLUDED.institution_id
         WHERE participants.institution_id IS DISTINCT FROM EXCLUDED.institution_id",
    )
    .bind(c.id.0)
    .bind(users)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok(())
}

async fn write_specialties(c: &mut PgConnection, u: &User) -> Result<()> {
    sqlx::query("DELETE FROM user_specialties WHERE user_id = $1")
        .bind(u.id.0)
        .execute(&mut *c)
        .await
        .map_err(db_err)?;
    if let Some(p) = &u.profile {
        sqlx::query(
            "INSERT INTO user_specialties (user_id, specialty)
             SELECT $1, s FROM UNNEST($2::text[]) AS s
             ON CONFLICT DO NOTHING",
        )
        .bind(u.id.0)
        .bind(&p.specialties)
        .execute(&mut *c)
        .await
        .map_err(db_err)?;
    }
    Ok(())
}

const USER_COLUMNS: &str =
    "u.id, u.username, u.display_name, u.institution_id, u.role, u.patient_id, u.profile, u.locale, u.active";

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
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
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(institution_from_row).collect()
    }

    async fn get_institution(&self, id: InstitutionId) -> Result<Institution> {
        let row = sqlx::query("SELECT * FROM institutions WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&self.pool)
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
            "SELECT {USER_COLUMNS} FROM users u WHERE u.id = $1"
        ))
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        .ok_or(StoreError::NotFound("user"))?;
        user_from_row(&row)
    }

    async fn get_user_credentials(&self, username: &str) -> Result<(User, Option<String>)> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS}, u.password_hash FROM users u WHERE u.username = $1"
        ))
        .bind(username)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        .ok_or(StoreError::NotFound("user"))?;
        Ok((user_from_row(&row)?, get(&row, "password_hash")?))
    }

    async fn list_users(&self, institution: Option<InstitutionId>) -> Result<Vec<User>> {
        let rows = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users u
             WHERE ($1::uuid IS NULL OR u.institution_id = $1)
             ORDER BY u.role, u.username"
        ))
        .bind(institution.map(|i| i.0))
        .fetch_all(&self.pool)
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
             WHERE u.id = ANY($1) ORDER BY u.id",
        )
        .bind(ids.iter().map(|u| u.0).collect::<Vec<_>>())
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(person_from_row).collect()
    }

    async fn routing_candidates(&self, specialty: &str) -> Result<Vec<Candidate>> {
        let rows = sqlx::query(&format!(
            "SELECT {USER_COLUMNS}, {OPEN_CASES}
             FROM user_specialties s JOIN users u ON u.id = s.user_id
             WHERE s.specialty = $1 AND u.active AND u.role = 'consultant'
             ORDER BY u.id"
        ))
        .bind(specialty)
        .fetch_all(&self.pool)
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
                     VALUES ($1,$2,$3,$4,$5,$6)",
                )
                .bind(t.id.0)
                .bind(t.institution_id.0)
                .bind(&t.name)
                .bind(&t.specialty)
                .bind(t.lead_id.0)
                .bind(t.member_ids.iter().map(|m| m.0).collect::<Vec<_>>())
                .execute(c)
                .await
                .map_err(db_err)?;
                Ok(())
            })
        })
        .await
    }

    async fn get_team(&self, id: TeamId) -> Result<Team> {
        let row = sqlx::query("SELECT * FROM teams WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?
            .ok_or(StoreError::NotFound("team"))?;
        team_from_row(&row)
    }

    async fn list_teams(&self, institution: Option<InstitutionId>) -> Result<Vec<Team>> {
        let rows = sqlx::query(
            "SELECT * FROM teams WHERE ($1::uuid IS NULL OR institution_id = $1) ORDER BY name, id",
        )
        .bind(institution.map(|i| i.0))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(team_from_row).collect()
    }

    async fn routing_teams(&self, specialty: &str) -> Result<(Vec<Team>, Vec<Candidate>)> {
        let teams = sqlx::query("SELECT * FROM teams WHERE specialty = $1 ORDER BY id")
            .bind(specialty)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?
            .iter()
            .map(team_from_row)
            .collect::<Result<Vec<_>>>()?;
        let ids: Vec<uuid::Uuid> = teams.iter().flat_map(Team::everyone).map(|u| u.0).collect();
        if ids.is_empty() {
            return Ok((teams, Vec::new()));
        }
        let people = sqlx::query(&format!(
            "SELECT {USER_COLUMNS}, {OPEN_CASES} FROM users u
             WHERE u.id = ANY($1) AND u.active AND u.role = 'consultant'
             ORDER BY u.id"
        ))
        .bind(ids)
        .fetch_all(&self.pool)
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
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, csrf_token, expires_at) VALUES ($1,$2,$3,$4)",
        )
        .bind(token_hash)
        .bind(user.0)
        .bind(csrf)
        .bind(expires_at)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn get_session(&self, token_hash: &str) -> Result<SessionRecord> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS}, s.csrf_token, s.expires_at
             FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.token_hash = $1"
        ))
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        .ok_or(StoreError::NotFound("session"))?;
        Ok(SessionRecord {
            user: user_from_row(&row)?,
            csrf_token: get(&row, "csrf_token")?,
            expires_at: get(&row, "expires_at")?,
        })
    }

    async fn delete_session(&self, token_hash: &str) -> Result<()> {
        // Sweeping expired sessions here keeps the table small without a separate job, as in SQLite.
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1 OR expires_at < $2")
            .bind(token_hash)
            .bind(Utc::now())
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn create_api_token(
        &self,
        token_hash: &str,
        user: UserId,
        name: &str,
        audit: Vec<AuditEvent>,
    ) -> Result<ApiTokenInfo> {
        let info = ApiTokenInfo {
            id: Uuid::now_v7().to_string(),
            name: name.to_owned(),
            created_at: audit_time(Utc::now()),
            last_used_at: None,
        };
        let (hash, out) = (token_hash.to_owned(), info.clone());
        self.write(audit, move |c| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO api_tokens (id, token_hash, user_id, name, created_at) VALUES ($1,$2,$3,$4,$5)",
                )
                .bind(&info.id)
                .bind(hash)
                .bind(user.0)
                .bind(&info.name)
                .bind(info.created_at)
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
            "SELECT {USER_COLUMNS} FROM api_tokens t JOIN users u ON u.id = t.user_id
             WHERE t.token_hash = $1 AND NOT t.revoked"
        ))
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        .ok_or(StoreError::NotFound("API token"))?;
        user_from_row(&row)
    }

    async fn list_api_tokens(&self, user: UserId) -> Result<Vec<ApiTokenInfo>> {
        let rows = sqlx::query(
            "SELECT * FROM api_tokens WHERE user_id = $1 AND NOT revoked ORDER BY created_at, id",
        )
        .bind(user.0)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(api_token_from_row).collect()
    }

    async fn revoke_api_token(&self, user: UserId, id: &str, audit: Vec<AuditEvent>) -> Result<()> {
        let id = id.to_owned();
        self.write(audit, move |c| {
            Box::pin(async move {
                let done = sqlx::query(
                    "UPDATE api_tokens SET revoked = TRUE WHERE id = $1 AND user_id = $2",
                )
                .bind(id)
                .bind(user.0)
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
            "SELECT p.* FROM patients p WHERE p.id = $5 AND ({})",
            *PATIENT_SCOPE
        );
        let row = bind_actor(sqlx::query(&sql), actor)
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?
            .ok_or(StoreError::NotFound("patient"))?;
        patient_from_row(&row)
    }

    async fn list_patients(&self, actor: &Actor, filter: &PatientFilter) -> Result<Vec<Patient>> {
        let sql = format!(
            "SELECT p.* FROM patients p
             WHERE ({})
               AND ($5::text IS NULL OR strpos(p.search_name, $5) > 0)
               AND ($6::date IS NULL OR p.birth_date = $6)
             ORDER BY p.family_name, p.given_name LIMIT $7",
            *PATIENT_SCOPE
        );
        let rows = bind_actor(sqlx::query(&sql), actor)
            .bind(
                filter
                    .name
                    .as_deref()
                    .map(caravan_domain::name_search_key)
                    .filter(|s| !s.is_empty()),
            )
            .bind(filter.birth_date)
            .bind(i64::from(filter.limit.unwrap_or(200)))
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(patient_from_row).collect()
    }

    async fn insert_consent(&self, c: &Consent, audit: Vec<AuditEvent>) -> Result<()> {
        let k = c.clone();
        self.write(audit, move |c| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO consents (id, patient_id, scope, granted, recorded_by, recorded_at, note)
                     VALUES ($1,$2,$3,$4,$5,$6,$7)",
                )
                .bind(k.id.0)
                .bind(k.patient_id.0)
                .bind(k.scope.as_str())
                .bind(k.granted)
                .bind(k.recorded_by.0)
                .bind(k.recorded_at)
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
            sqlx::query("SELECT * FROM consents WHERE patient_id = $1 ORDER BY recorded_at, id")
                .bind(patient.0)
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?;
        rows.iter().map(consent_from_row).collect()
    }

    async fn get_consent(&self, actor: &Actor, id: ConsentId) -> Result<Consent> {
        let sql = format!(
            "SELECT k.* FROM consents k JOIN patients p ON p.id = k.patient_id
             WHERE k.id = $5 AND ({})",
            *PATIENT_SCOPE
        );
        let row = bind_actor(sqlx::query(&sql), actor)
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?
            .ok_or(StoreError::NotFound("consent"))?;
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
            format!("SELECT c.doc FROM consultations c WHERE c.id = $5 AND ({CONSULTATION_SCOPE})");
        let row = bind_actor(sqlx::query(&sql), actor)
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?
            .ok_or(StoreError::NotFound("consultation"))?;
        consultation_from_row(&row)
    }

    async fn list_consultations(
        &self,
        actor: &Actor,
        f: &ConsultationFilter,
    ) -> Result<Vec<ConsultationSummary>> {
        let sql = format!(
            "SELECT c.doc, p.given_name || ' ' || p.family_name AS patient_name, r.display_name AS referrer_name,
                    a.display_name AS assignee_name
             FROM consultations c
             JOIN patients p ON p.id = c.patient_id
             JOIN users r ON r.id = c.referrer_id
             LEFT JOIN users a ON a.id = c.assigned_to
             WHERE ({CONSULTATION_SCOPE})
               AND (cardinality($5::text[]) = 0 OR c.state = ANY($5))
               AND ($6::uuid IS NULL OR c.assigned_to = $6)
               AND ($7::uuid IS NULL OR c.referrer_id = $7)
               AND ($8::uuid IS NULL OR c.patient_id = $8)
               AND ($9::timestamptz IS NULL OR (c.state IN ('submitted','assigned','in_progress') AND c.due_at <= $9))
             ORDER BY c.due_at ASC NULLS LAST, c.created_at DESC
             LIMIT $10"
        );
        let states: Vec<&str> = f.states.iter().map(|s| s.as_str()).collect();
        let rows = bind_actor(sqlx::query(&sql), actor)
            .bind(states)
            .bind(f.assigned_to.map(|u| u.0))
            .bind(f.referrer_id.map(|u| u.0))
            .bind(f.patient_id.map(|u| u.0))
            .bind(f.overdue_at)
            .bind(i64::from(f.limit.unwrap_or(500)))
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                Ok(ConsultationSummary {
                    consultation: consultation_from_row(r)?,
                    patient_name: get(r, "patient_name")?,
                    referrer_name: get(r, "referrer_name")?,
                    assignee_name: get(r, "assignee_name")?,
                })
            })
            .collect()
    }

    async fn overdue_unescalated(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Consultation>> {
        let rows = sqlx::query(
            "SELECT c.doc FROM consultations c
             WHERE c.state IN ('submitted','assigned','in_progress') AND c.due_at <= $1 AND c.escalated_at IS NULL
             ORDER BY c.due_at LIMIT $2",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
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
             WHERE m.consultation_id = $5 AND ({CONSULTATION_SCOPE}) ORDER BY m.created_at, m.id"
        );
        let rows = bind_actor(sqlx::query(&sql), actor)
            .bind(c.0)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(message_from_row).collect()
    }

    async fn get_message(&self, actor: &Actor, id: MessageId) -> Result<Message> {
        let sql = format!(
            "SELECT m.* FROM messages m JOIN consultations c ON c.id = m.consultation_id
             WHERE m.id = $5 AND ({CONSULTATION_SCOPE})"
        );
        let row = bind_actor(sqlx::query(&sql), actor)
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?
            .ok_or(StoreError::NotFound("message"))?;
        message_from_row(&row)
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
             WHERE a.consultation_id = $5 AND ({CONSULTATION_SCOPE}) ORDER BY a.created_at, a.id"
        );
        let rows = bind_actor(sqlx::query(&sql), actor)
            .bind(c.0)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(attachment_from_row).collect()
    }

    async fn get_attachment(&self, actor: &Actor, id: AttachmentId) -> Result<Attachment> {
        let sql = format!(
            "SELECT a.* FROM attachments a JOIN consultations c ON c.id = a.consultation_id
             WHERE a.id = $5 AND ({CONSULTATION_SCOPE})"
        );
        let row = bind_actor(sqlx::query(&sql), actor)
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?
            .ok_or(StoreError::NotFound("attachment"))?;
        attachment_from_row(&row)
    }

    async fn attachment_blob_keys_in_use(&self, keys: &[String]) -> Result<Vec<String>> {
        sqlx::query_scalar("SELECT DISTINCT blob_key FROM attachments WHERE blob_key = ANY($1)")
            .bind(keys)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)
    }

    async fn list_case_studies(&self, actor: &Actor, c: ConsultationId) -> Result<Vec<CaseStudy>> {
        let sql = format!(
            "SELECT s.* FROM case_studies s JOIN consultations c ON c.id = s.consultation_id
             WHERE s.consultation_id = $5 AND ({CONSULTATION_SCOPE}) ORDER BY s.created_at, s.study_uid"
        );
        let rows = bind_actor(sqlx::query(&sql), actor)
            .bind(c.0)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(studies::from_row).collect()
    }

    async fn fed_pending_studies(&self, limit: u32) -> Result<Vec<CaseStudy>> {
        let rows = sqlx::query(
            "SELECT * FROM case_studies WHERE state = 'pending' ORDER BY updated_at LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(studies::from_row).collect()
    }

    async fn append_audit(&self, events: Vec<AuditEvent>) -> Result<()> {
        self.write(events, |_| Box::pin(async { Ok(()) })).await
    }

    async fn audit_for_patient(&self, patient: PatientId, limit: u32) -> Result<Vec<AuditRecord>> {
        // The patient's own events, and the searches that listed them (through `audit_subjects`).
        let rows = sqlx::query(
            "SELECT * FROM audit_events WHERE seq IN (
               (SELECT seq FROM audit_events WHERE patient_id = $1 ORDER BY seq DESC LIMIT $2)
               UNION
               (SELECT seq FROM audit_subjects WHERE patient_id = $1 ORDER BY seq DESC LIMIT $2))
             ORDER BY seq DESC LIMIT $2",
        )
        .bind(patient.0)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
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
               (SELECT seq FROM audit_events WHERE entity_type = $1 AND entity_id = $2
                ORDER BY seq DESC LIMIT $4)
               UNION
               (SELECT s.seq FROM audit_subjects s JOIN audit_events e ON e.seq = s.seq
                WHERE s.patient_id = $3 AND e.entity_type = $1
                  AND EXISTS (SELECT 1 FROM jsonb_array_elements(e.subjects::jsonb) j
                              WHERE j->>0 = $2 AND j->>1 = $3::text)
                ORDER BY s.seq DESC LIMIT $4))
             ORDER BY seq DESC LIMIT $4",
        )
        .bind(entity_type)
        .bind(entity_id)
        .bind(patient.map(|p| p.0))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| Ok(audit_from_row(r)?.narrowed(|s| s.entity_id == entity_id)))
            .collect()
    }

    async fn audit_page(&self, after: i64, limit: u32) -> Result<Vec<AuditRecord>> {
        let rows = sqlx::query("SELECT * FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
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
        let (patients, seqs): (Vec<uuid::Uuid>, Vec<i64>) =
            pairs.iter().map(|(p, s)| (p.0, *s)).unzip();
        let rows = sqlx::query(
            "SELECT w.patient_id, w.seq FROM UNNEST($1::uuid[], $2::bigint[]) AS w(patient_id, seq)
             WHERE NOT EXISTS (SELECT 1 FROM audit_subjects a WHERE a.patient_id = w.patient_id AND a.seq = w.seq)",
        )
        .bind(patients)
        .bind(seqs)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| Ok((PatientId(get(r, "patient_id")?), get(r, "seq")?)))
            .collect()
    }
    async fn apply(&self, changes: Vec<Change>, audit: Vec<AuditEvent>) -> Result<()> {
        self.write(audit, move |c| Box::pin(fed::apply(c, changes)))
            .await
    }

    async fn fed_consultation(&self, id: ConsultationId) -> Result<Consultation> {
        let row = sqlx::query("SELECT doc FROM consultations WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?
            .ok_or(StoreError::NotFound("consultation"))?;
        consultation_from_row(&row)
    }

    async fn fed_node_institution(&self, node: &str) -> Result<Option<InstitutionId>> {
        fed::first(
            &self.pool,
            "SELECT institution_id FROM fed_nodes WHERE node_id = $1",
            node.to_owned(),
        )
        .await?
        .map(|r| get(&r, "institution_id").map(InstitutionId))
        .transpose()
    }

    async fn fed_remote_user(&self, user: UserId) -> Result<Option<RemoteUser>> {
        fed::first(
            &self.pool,
            "SELECT * FROM fed_remote_users WHERE user_id = $1",
            user.0,
        )
        .await?
        .as_ref()
        .map(fed::remote_user)
        .transpose()
    }

    async fn fed_remote_users(&self, node: &str) -> Result<Vec<RemoteUser>> {
        fed::rows_by(
            &self.pool,
            "SELECT * FROM fed_remote_users WHERE node_id = $1 ORDER BY remote_id",
            node.to_owned(),
        )
        .await?
        .iter()
        .map(fed::remote_user)
        .collect()
    }

    async fn fed_foreign_case(&self, id: ConsultationId) -> Result<Option<ForeignCase>> {
        fed::first(
            &self.pool,
            "SELECT * FROM fed_foreign_cases WHERE consultation_id = $1",
            id.0,
        )
        .await?
        .as_ref()
        .map(fed::foreign_case)
        .transpose()
    }

    async fn fed_foreign_case_by_origin(
        &self,
        node: &str,
        origin_case: &str,
    ) -> Result<Option<ForeignCase>> {
        sqlx::query("SELECT * FROM fed_foreign_cases WHERE origin_node = $1 AND origin_case = $2")
            .bind(node)
            .bind(origin_case)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?
            .as_ref()
            .map(fed::foreign_case)
            .transpose()
    }

    async fn fed_expired_foreign_cases(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ForeignCase>> {
        sqlx::query(
            "SELECT * FROM fed_foreign_cases WHERE retention_until < $1 ORDER BY retention_until LIMIT $2",
        )
        .bind(now)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?
        .iter()
        .map(fed::foreign_case)
        .collect()
    }

    async fn fed_case_blob_keys(&self, id: ConsultationId) -> Result<Vec<String>> {
        fed::rows_by(
            &self.pool,
            "SELECT blob_key FROM attachments WHERE consultation_id = $1 ORDER BY created_at",
            id.0,
        )
        .await?
        .iter()
        .map(|r| get(r, "blob_key"))
        .collect()
    }

    async fn fed_studies_to_purge(&self, id: ConsultationId) -> Result<Vec<CaseStudy>> {
        let rows = sqlx::query(
            "SELECT s.* FROM case_studies s WHERE s.consultation_id = $1 AND s.origin_node IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM case_studies o
                               WHERE o.study_uid = s.study_uid AND o.consultation_id <> $1)
             ORDER BY s.created_at, s.study_uid",
        )
        .bind(id.0)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(studies::from_row).collect()
    }

    async fn fed_shared_nodes(&self, id: ConsultationId) -> Result<Vec<String>> {
        fed::rows_by(
            &self.pool,
            "SELECT node_id FROM fed_shared WHERE consultation_id = $1 ORDER BY node_id",
            id.0,
        )
        .await?
        .iter()
        .map(|r| get(r, "node_id"))
        .collect()
    }

    async fn fed_inbox_contains(&self, envelope_id: Uuid) -> Result<bool> {
        Ok(fed::first(
            &self.pool,
            "SELECT envelope_id FROM fed_inbox WHERE envelope_id = $1",
            envelope_id,
        )
        .await?
        .is_some())
    }

    async fn fed_destinations_with_pending(&self) -> Result<Vec<String>> {
        sqlx::query_scalar(
            "SELECT DISTINCT destination FROM fed_outbox WHERE state = 'pending' ORDER BY destination",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)
    }

    async fn fed_next_pending(&self, destination: &str) -> Result<Option<PendingEnvelope>> {
        fed::first(
            &self.pool,
            "SELECT envelope_id, destination, envelope, attempts, enqueued_at, next_attempt_at FROM fed_outbox
             WHERE state = 'pending' AND destination = $1 ORDER BY seq LIMIT 1",
            destination.to_owned(),
        )
        .await?
        .as_ref()
        .map(fed::pending)
        .transpose()
    }

    async fn fed_mark_delivered(&self, envelope_id: Uuid, at: DateTime<Utc>) -> Result<()> {
        fed::outbox_update(
            &self.pool,
            sqlx::query(
                "UPDATE fed_outbox SET state = 'delivered', done_at = $1, last_error = NULL
                 WHERE envelope_id = $2 AND state = 'pending'",
            )
            .bind(at)
            .bind(envelope_id),
        )
        .await
        .map(|_| ())
    }

    async fn fed_record_failure(
        &self,
        envelope_id: Uuid,
        attempts: u32,
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> Result<()> {
        fed::outbox_update(
            &self.pool,
            sqlx::query(
                "UPDATE fed_outbox SET attempts = $1, next_attempt_at = $2, last_error = $3
                 WHERE envelope_id = $4 AND state = 'pending'",
            )
            .bind(attempts.min(i32::MAX as u32) as i32)
            .bind(next_attempt_at)
            .bind(error.chars().take(500).collect::<String>())
            .bind(envelope_id),
        )
        .await
        .map(|_| ())
    }

    async fn fed_dead_letter(
        &self,
        envelope_id: Uuid,
        reason: &str,
        at: DateTime<Utc>,
        audit: Vec<AuditEvent>,
    ) -> Result<()> {
        let reason = reason.chars().take(500).collect::<String>();
        self.write(audit, move |c| {
            Box::pin(async move {
                sqlx::query(
                    "UPDATE fed_outbox SET state = 'dead', done_at = $1, last_error = $2
                     WHERE envelope_id = $3 AND state = 'pending'",
                )
                .bind(at)
                .bind(reason)
                .bind(envelope_id)
                .execute(&mut *c)
                .await
                .map_err(db_err)?;
                Ok(())
            })
        })
        .await
    }

    async fn fed_outbox(&self, state: &str, limit: u32) -> Result<Vec<OutboxRow>> {
        sqlx::query(
            "SELECT envelope_id, destination, message_type, consultation_id, state, attempts, enqueued_at,
               next_attempt_at, last_error, done_at
             FROM fed_outbox WHERE state = $1 ORDER BY seq DESC LIMIT $2",
        )
        .bind(state)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?
        .iter()
        .map(fed::outbox_row)
        .collect()
    }

    async fn fed_retry(
        &self,
        envelope_id: Uuid,
        now: DateTime<Utc>,
        audit: Vec<AuditEvent>,
    ) -> Result<String> {
        self.write(audit, move |c| {
            Box::pin(async move {
                sqlx::query_scalar(
                    "UPDATE fed_outbox SET state = 'pending', attempts = 0, next_attempt_at = $1, done_at = NULL,
                       enqueued_at = $1
                     WHERE envelope_id = $2 AND state = 'dead' RETURNING destination",
                )
                .bind(now)
                .bind(envelope_id)
                .fetch_optional(&mut *c)
                .await
                .map_err(db_err)?
                .ok_or(StoreError::NotFound("dead letter"))
            })
        })
        .await
    }

    async fn fed_counts(&self) -> Result<FederationCounts> {
        fed::counts(&self.pool).await
    }

    async fn fed_inbox(&self, limit: u32) -> Result<Vec<InboxEntry>> {
        sqlx::query(
            "SELECT envelope_id, sender, message_type, consultation_id, received_at, outcome, envelope
             FROM fed_inbox ORDER BY received_at DESC, envelope_id LIMIT $1",
        )
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?
        .iter()
        .map(|r| {
            Ok(InboxEntry {
                envelope_id: get(r, "envelope_id")?,
                sender: get(r, "sender")?,
                message_type: get(r, "message_type")?,
                consultation_id: get::<Option<Uuid>>(r, "consultation_id")?.map(ConsultationId),
                received_at: get(r, "received_at")?,
                outcome: get(r, "outcome")?,
                envelope: get(r, "envelope")?,
            })
        })
        .collect()
    }
    async fn surv_regions(&self) -> Result<Vec<SurvRegion>> {
        surv::regions(&self.pool).await
    }

    async fn surv_cases(&self, f: &SurvFilter) -> Result<Vec<SurvCase>> {
        surv::cases(&self.pool, f).await
    }

    async fn surv_aggregates(&self, f: &SurvFilter) -> Result<Vec<SurvAggregate>> {
        surv::aggregates(&self.pool, f).await
    }

    async fn surv_weeks(&self, f: &SurvFilter) -> Result<Vec<SurvWeek>> {
        surv::weeks(&self.pool, f).await
    }

    async fn surv_alerts(&self, limit: u32) -> Result<Vec<SurvAlert>> {
        surv::alerts(&self.pool, limit).await
    }

    async fn surv_alert(&self, id: Uuid) -> Result<SurvAlert> {
        surv::alert_by_id(&self.pool, id)
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
        surv::alert_for(&self.pool, origin_node, disease, region, iso_year, iso_week).await
    }

    async fn surv_alert_by_origin(&self, node: &str, origin_id: &str) -> Result<Option<SurvAlert>> {
        surv::alert_by_origin(&self.pool, node, origin_id).await
    }

    async fn surv_notes(&self, alert: Uuid) -> Result<Vec<SurvNote>> {
        surv::notes(&self.pool, alert).await
    }

    async fn surv_foreign_counts(&self) -> Result<Vec<SurvForeignCount>> {
        surv::foreign_counts(&self.pool).await
    }
}

/// The load column of a routing candidate (cases offered to or being answered by them).
const OPEN_CASES: &str = "(SELECT COUNT(*) FROM consultations c
    WHERE c.assigned_to = u.id AND c.state IN ('assigned','in_progress')) AS open_cases";

/// Fill `patients.search_name` for rows written before migration 0002 (the fold is Unicode-aware and
/// locale-independent, so it is computed here rather than with the database's `lower()`).
async fn backfill_search_names(pool: &PgPool) -> Result<()> {
    let rows =
        sqlx::query("SELECT id, given_name, family_name FROM patients WHERE search_name IS NULL")
            .fetch_all(pool)
            .await
            .map_err(db_err)?;
    if rows.is_empty() {
        return Ok(());
    }
    let mut tx = pool.begin().await.map_err(db_err)?;
    for r in &rows {
        let key = caravan_domain::name_search_key(&format!(
            "{} {}",
            r.get::<String, _>("given_name"),
            r.get::<String, _>("family_name")
        ));
        sqlx::query("UPDATE patients SET search_name = $1 WHERE id = $2")
            .bind(key)
            .bind(r.get::<uuid::Uuid, _>("id"))
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
    }
    tx.commit().await.map_err(db_err)?;
    tracing::info!(rows = rows.len(), "filled patient search names");
    Ok(())
}
