//! Live care on SQLite (see `caravan_store::visits`): schedules, slots, visits, invitations, participants.

use crate::rows::{opt_time, time};
use crate::{bind_actor, db_err, parse, SqliteStore};
use caravan_domain::*;
use caravan_store::*;
use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};
use uuid::Uuid;

/// Fixed-width UTC text, so that comparisons in SQL are time comparisons.
fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Which visits an actor may see: ?1 user, ?2 institution, ?3 patient, ?4 role (as `CONSULTATION_SCOPE`).
const VISIT_SCOPE: &str = "
  CASE ?4
    WHEN 'patient' THEN v.patient_id = ?3
    WHEN 'referrer' THEN v.institution_id = ?2 OR v.practitioner_id = ?1 OR v.created_by = ?1
        OR EXISTS (SELECT 1 FROM visit_invitations vi WHERE vi.visit_id = v.id AND vi.user_id = ?1)
    WHEN 'consultant' THEN v.institution_id = ?2 OR v.practitioner_id = ?1 OR v.created_by = ?1
        OR EXISTS (SELECT 1 FROM visit_invitations vi WHERE vi.visit_id = v.id AND vi.user_id = ?1)
    WHEN 'coordinator' THEN v.institution_id = ?2 OR v.practitioner_id = ?1 OR v.created_by = ?1
        OR EXISTS (SELECT 1 FROM visit_invitations vi WHERE vi.visit_id = v.id AND vi.user_id = ?1)
    ELSE 0
  END";

const VISIT_SELECT: &str = "SELECT v.*, p.given_name || ' ' || p.family_name AS patient_name,
    u.display_name AS practitioner_name
    FROM visits v JOIN patients p ON p.id = v.patient_id JOIN users u ON u.id = v.practitioner_id";

fn get<T>(r: &SqliteRow, col: &str) -> Result<T>
where
    T: for<'a> sqlx::Decode<'a, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    r.try_get(col)
        .map_err(|e| StoreError::Corrupt(format!("column {col}: {e}")))
}

fn id<T: std::str::FromStr>(r: &SqliteRow, col: &'static str) -> Result<T> {
    parse(col, &get::<String>(r, col)?)
}

fn opt_id<T: std::str::FromStr>(r: &SqliteRow, col: &'static str) -> Result<Option<T>> {
    get::<Option<String>>(r, col)?
        .map(|s| parse(col, &s))
        .transpose()
}

fn schedule_from_row(r: &SqliteRow) -> Result<Schedule> {
    Ok(Schedule {
        id: id(r, "id")?,
        institution_id: id(r, "institution_id")?,
        practitioner_id: id(r, "practitioner_id")?,
        service: get(r, "service")?,
        active: get(r, "active")?,
        created_at: time(r, "created_at")?,
    })
}

fn slot_from_row(r: &SqliteRow) -> Result<Slot> {
    let status: String = get(r, "status")?;
    Ok(Slot {
        id: id(r, "id")?,
        schedule_id: id(r, "schedule_id")?,
        start: time(r, "start_at")?,
        end: time(r, "end_at")?,
        status: SlotStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("slot status {status:?}")))?,
    })
}

fn visit_from_row(r: &SqliteRow) -> Result<Visit> {
    let status: String = get(r, "status")?;
    Ok(Visit {
        id: id(r, "id")?,
        slot_id: opt_id(r, "slot_id")?,
        institution_id: id(r, "institution_id")?,
        practitioner_id: id(r, "practitioner_id")?,
        patient_id: id(r, "patient_id")?,
        consultation_id: opt_id(r, "consultation_id")?,
        start: time(r, "start_at")?,
        end: time(r, "end_at")?,
        reason: get(r, "reason")?,
        status: VisitStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("visit status {status:?}")))?,
        arrived_at: opt_time(r, "arrived_at")?,
        started_at: opt_time(r, "started_at")?,
        ended_at: opt_time(r, "ended_at")?,
        created_by: id(r, "created_by")?,
        created_at: time(r, "created_at")?,
    })
}

fn view_from_row(r: &SqliteRow) -> Result<VisitView> {
    Ok(VisitView {
        visit: visit_from_row(r)?,
        patient_name: get(r, "patient_name")?,
        practitioner_name: get(r, "practitioner_name")?,
    })
}

fn invitation_from_row(r: &SqliteRow) -> Result<Invitation> {
    let role: String = get(r, "role")?;
    Ok(Invitation {
        id: id(r, "id")?,
        visit_id: id(r, "visit_id")?,
        role: GuestRole::parse(&role)
            .ok_or_else(|| StoreError::Corrupt(format!("invitation role {role:?}")))?,
        display_name: get(r, "display_name")?,
        user_id: opt_id(r, "user_id")?,
        token_hash: get(r, "token_hash")?,
        expires_at: time(r, "expires_at")?,
        created_by: id(r, "created_by")?,
        created_at: time(r, "created_at")?,
    })
}

fn participant_from_row(r: &SqliteRow) -> Result<Participant> {
    Ok(Participant {
        visit_id: id(r, "visit_id")?,
        key: get(r, "participant")?,
        role: get(r, "role")?,
        display_name: get(r, "display_name")?,
        joined_at: time(r, "joined_at")?,
        left_at: opt_time(r, "left_at")?,
    })
}

/// A unique-index violation inside a visit write means a rule was broken by a racing write: `Conflict`.
fn rule_err(e: sqlx::Error) -> StoreError {
    match db_err(e) {
        StoreError::Duplicate(_) => StoreError::Conflict,
        other => other,
    }
}

async fn insert_invitation(c: &mut SqliteConnection, i: &Invitation) -> Result<()> {
    sqlx::query(
        "INSERT INTO visit_invitations (id, visit_id, role, display_name, user_id, token_hash, expires_at,
         created_by, created_at) VALUES (?,?,?,?,?,?,?,?,?)",
    )
    .bind(i.id.to_string())
    .bind(i.visit_id.to_string())
    .bind(i.role.as_str())
    .bind(&i.display_name)
    .bind(i.user_id.map(|u| u.to_string()))
    .bind(&i.token_hash)
    .bind(ts(i.expires_at))
    .bind(i.created_by.to_string())
    .bind(ts(i.created_at))
    .execute(&mut *c)
    .await
    .map_err(db_err)?;
    Ok(())
}

async fn load_visit(c: &mut SqliteConnection, id: Uuid) -> Result<Visit> {
    let row = sqlx::query("SELECT * FROM visits WHERE id = ?")
        .bind(id.to_string())
        .fetch_optional(&mut *c)
        .await
        .map_err(db_err)?
        .ok_or(StoreError::NotFound("visit"))?;
    visit_from_row(&row)
}

/// Move a visit from one of `from` to `to`, setting `column` (if any) to `at`; `Conflict` if it was elsewhere.
async fn step(
    c: &mut SqliteConnection,
    id: Uuid,
    from: &[VisitStatus],
    to: VisitStatus,
    column: &'static str,
    at: DateTime<Utc>,
) -> Result<Visit> {
    let v = load_visit(c, id).await?;
    if !from.contains(&v.status) {
        return Err(StoreError::Conflict);
    }
    sqlx::query(&format!(
        "UPDATE visits SET status = ?1, {column} = ?3 WHERE id = ?2"
    ))
    .bind(to.as_str())
    .bind(id.to_string())
    .bind(ts(at))
    .execute(&mut *c)
    .await
    .map_err(rule_err)?;
    load_visit(c, id).await
}

#[async_trait::async_trait]
impl VisitStore for SqliteStore {
    async fn visit_insert_schedule(&self, s: &Schedule, audit: Vec<AuditEvent>) -> Result<()> {
        let s = s.clone();
        self.write(audit, move |c| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO visit_schedules (id, institution_id, practitioner_id, service, active, created_at)
                     VALUES (?,?,?,?,?,?)",
                )
                .bind(s.id.to_string())
                .bind(s.institution_id.to_string())
                .bind(s.practitioner_id.to_string())
                .bind(&s.service)
                .bind(s.active)
                .bind(ts(s.created_at))
                .execute(c)
                .await
                .map_err(db_err)?;
                Ok(())
            })
        })
        .await
    }

    async fn visit_get_schedule(&self, id: Uuid) -> Result<Schedule> {
        let row = row_by_id(
            &self.reader,
            "SELECT * FROM visit_schedules WHERE id = ?",
            id,
            "schedule",
        )
        .await?;
        schedule_from_row(&row)
    }

    async fn visit_schedules(
        &self,
        institution: Option<InstitutionId>,
        practitioner: Option<UserId>,
    ) -> Result<Vec<Schedule>> {
        let rows = sqlx::query(
            "SELECT * FROM visit_schedules WHERE (?1 IS NULL OR institution_id = ?1)
             AND (?2 IS NULL OR practitioner_id = ?2) ORDER BY created_at, id",
        )
        .bind(institution.map(|i| i.to_string()))
        .bind(practitioner.map(|u| u.to_string()))
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter().map(schedule_from_row).collect()
    }

    async fn visit_insert_slots(&self, slots: &[Slot], audit: Vec<AuditEvent>) -> Result<()> {
        let slots = slots.to_vec();
        self.write(audit, move |c| {
            Box::pin(async move {
                for s in &slots {
                    if s.start >= s.end {
                        return Err(StoreError::Conflict);
                    }
                    let overlap = sqlx::query(
                        "SELECT 1 FROM visit_slots WHERE schedule_id = ? AND start_at < ? AND end_at > ? LIMIT 1",
                    )
                    .bind(s.schedule_id.to_string())
                    .bind(ts(s.end))
                    .bind(ts(s.start))
                    .fetch_optional(&mut *c)
                    .await
                    .map_err(db_err)?;
                    if overlap.is_some() {
                        return Err(StoreError::Conflict);
                    }
                    sqlx::query(
                        "INSERT INTO visit_slots (id, schedule_id, start_at, end_at, status) VALUES (?,?,?,?,?)",
                    )
                    .bind(s.id.to_string())
                    .bind(s.schedule_id.to_string())
                    .bind(ts(s.start))
                    .bind(ts(s.end))
                    .bind(s.status.as_str())
                    .execute(&mut *c)
                    .await
                    .map_err(db_err)?;
                }
                Ok(())
            })
        })
        .await
    }

    async fn visit_get_slot(&self, id: Uuid) -> Result<Slot> {
        let row = row_by_id(
            &self.reader,
            "SELECT * FROM visit_slots WHERE id = ?",
            id,
            "slot",
        )
        .await?;
        slot_from_row(&row)
    }

    async fn visit_slots(
        &self,
        schedule: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Slot>> {
        let rows = sqlx::query(
            "SELECT * FROM visit_slots WHERE schedule_id = ? AND end_at > ? AND start_at < ? ORDER BY start_at",
        )
        .bind(schedule.to_string())
        .bind(ts(from))
        .bind(ts(to))
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter().map(slot_from_row).collect()
    }

    async fn visit_book(
        &self,
        v: &Visit,
        invitations: &[Invitation],
        audit: Vec<AuditEvent>,
    ) -> Result<()> {
        let v = v.clone();
        let invitations = invitations.to_vec();
        self.write(audit, move |c| {
            Box::pin(async move {
                if let Some(slot) = v.slot_id {
                    let taken = sqlx::query(
                        "UPDATE visit_slots SET status = 'busy' WHERE id = ? AND status = 'free'",
                    )
                    .bind(slot.to_string())
                    .execute(&mut *c)
                    .await
                    .map_err(db_err)?
                    .rows_affected();
                    if taken == 0 {
                        let exists = sqlx::query("SELECT 1 FROM visit_slots WHERE id = ?")
                            .bind(slot.to_string())
                            .fetch_optional(&mut *c)
                            .await
                            .map_err(db_err)?;
                        return Err(if exists.is_some() {
                            StoreError::Conflict
                        } else {
                            StoreError::NotFound("slot")
                        });
                    }
                }
                let overlap = sqlx::query(
                    "SELECT 1 FROM visits WHERE practitioner_id = ? AND status IN ('booked','arrived','in-progress')
                     AND start_at < ? AND end_at > ? LIMIT 1",
                )
                .bind(v.practitioner_id.to_string())
                .bind(ts(v.end))
                .bind(ts(v.start))
                .fetch_optional(&mut *c)
                .await
                .map_err(db_err)?;
                if overlap.is_some() {
                    return Err(StoreError::Conflict);
                }
                sqlx::query(
                    "INSERT INTO visits (id, slot_id, institution_id, practitioner_id, patient_id, consultation_id,
                     start_at, end_at, reason, status, arrived_at, started_at, ended_at, created_by, created_at)
                     VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                )
                .bind(v.id.to_string())
                .bind(v.slot_id.map(|s| s.to_string()))
                .bind(v.institution_id.to_string())
                .bind(v.practitioner_id.to_string())
                .bind(v.patient_id.to_string())
                .bind(v.consultation_id.map(|k| k.to_string()))
                .bind(ts(v.start))
                .bind(ts(v.end))
                .bind(&v.reason)
                .bind(v.status.as_str())
                .bind(v.arrived_at.map(ts))
                .bind(v.started_at.map(ts))
                .bind(v.ended_at.map(ts))
                .bind(v.created_by.to_string())
                .bind(ts(v.created_at))
                .execute(&mut *c)
                .await
                .map_err(rule_err)?;
                for i in &invitations {
                    insert_invitation(c, i).await?;
                }
                Ok(())
            })
        })
        .await
    }

    async fn visit_get(&self, actor: &Actor, id: Uuid) -> Result<VisitView> {
        let row = bind_actor(
            sqlx::query(&format!(
                "{VISIT_SELECT} WHERE v.id = ?5 AND ({VISIT_SCOPE})"
            )),
            actor,
        )
        .bind(id.to_string())
        .fetch_optional(&self.reader)
        .await
        .map_err(db_err)?
        .ok_or(StoreError::NotFound("visit"))?;
        view_from_row(&row)
    }

    async fn visit_list(&self, actor: &Actor, f: &VisitFilter) -> Result<Vec<VisitView>> {
        let statuses: Vec<&str> = f.statuses.iter().map(|s| s.as_str()).collect();
        let rows = bind_actor(
            sqlx::query(&format!(
                "{VISIT_SELECT} WHERE ({VISIT_SCOPE})
                 AND (?5 IS NULL OR v.practitioner_id = ?5) AND (?6 IS NULL OR v.patient_id = ?6)
                 AND (?7 IS NULL OR v.consultation_id = ?7)
                 AND (?8 = '[]' OR v.status IN (SELECT value FROM json_each(?8)))
                 AND (?9 IS NULL OR v.end_at > ?9) AND (?10 IS NULL OR v.start_at < ?10)
                 ORDER BY v.start_at, v.id LIMIT ?11"
            )),
            actor,
        )
        .bind(f.practitioner_id.map(|u| u.to_string()))
        .bind(f.patient_id.map(|p| p.to_string()))
        .bind(f.consultation_id.map(|k| k.to_string()))
        .bind(serde_json::to_string(&statuses).unwrap_or_else(|_| "[]".into()))
        .bind(f.from.map(ts))
        .bind(f.to.map(ts))
        .bind(i64::from(f.limit.unwrap_or(500)))
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter().map(view_from_row).collect()
    }

    async fn visit_by_id(&self, id: Uuid) -> Result<VisitView> {
        let row = sqlx::query(&format!("{VISIT_SELECT} WHERE v.id = ?"))
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?
            .ok_or(StoreError::NotFound("visit"))?;
        view_from_row(&row)
    }

    async fn visit_insert_invitation(&self, i: &Invitation, audit: Vec<AuditEvent>) -> Result<()> {
        let i = i.clone();
        self.write(audit, move |c| {
            Box::pin(async move {
                load_visit(c, i.visit_id).await?;
                insert_invitation(c, &i).await
            })
        })
        .await
    }

    async fn visit_invitation_by_token(&self, token_hash: &str) -> Result<Invitation> {
        let row = sqlx::query("SELECT * FROM visit_invitations WHERE token_hash = ?")
            .bind(token_hash)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?
            .ok_or(StoreError::NotFound("invitation"))?;
        invitation_from_row(&row)
    }

    async fn visit_invitations(&self, visit: Uuid) -> Result<Vec<Invitation>> {
        let rows = sqlx::query(
            "SELECT * FROM visit_invitations WHERE visit_id = ? ORDER BY created_at, id",
        )
        .bind(visit.to_string())
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter().map(invitation_from_row).collect()
    }

    async fn visit_check_in(
        &self,
        id: Uuid,
        at: DateTime<Utc>,
        audit: Vec<AuditEvent>,
    ) -> Result<Visit> {
        self.write(audit, move |c| {
            Box::pin(async move {
                let v = load_visit(c, id).await?;
                if v.status == VisitStatus::Arrived {
                    return Ok(v);
                }
                step(
                    c,
                    id,
                    &[VisitStatus::Booked],
                    VisitStatus::Arrived,
                    "arrived_at",
                    at,
                )
                .await
            })
        })
        .await
    }

    async fn visit_queue(&self, practitioner: UserId) -> Result<Vec<VisitView>> {
        let rows = sqlx::query(&format!(
            "{VISIT_SELECT} WHERE v.practitioner_id = ? AND v.status = 'arrived' ORDER BY v.arrived_at, v.id"
        ))
        .bind(practitioner.to_string())
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter().map(view_from_row).collect()
    }

    async fn visit_admit(
        &self,
        id: Uuid,
        at: DateTime<Utc>,
        audit: Vec<AuditEvent>,
    ) -> Result<Visit> {
        self.write(audit, move |c| {
            Box::pin(async move {
                let v = load_visit(c, id).await?;
                let busy = sqlx::query(
                    "SELECT 1 FROM visits WHERE practitioner_id = ? AND status = 'in-progress' LIMIT 1",
                )
                .bind(v.practitioner_id.to_string())
                .fetch_optional(&mut *c)
                .await
                .map_err(db_err)?;
                if busy.is_some() {
                    return Err(StoreError::Conflict);
                }
                step(
                    c,
                    id,
                    &[VisitStatus::Arrived],
                    VisitStatus::InProgress,
                    "started_at",
                    at,
                )
                .await
            })
        })
        .await
    }

    async fn visit_finish(
        &self,
        id: Uuid,
        at: DateTime<Utc>,
        audit: Vec<AuditEvent>,
    ) -> Result<Visit> {
        self.write(audit, move |c| {
            Box::pin(async move {
                let v = step(
                    c,
                    id,
                    &[VisitStatus::InProgress],
                    VisitStatus::Finished,
                    "ended_at",
                    at,
                )
                .await?;
                sqlx::query(
                    "UPDATE visit_participants SET left_at = ? WHERE visit_id = ? AND left_at IS NULL",
                )
                .bind(ts(at))
                .bind(id.to_string())
                .execute(&mut *c)
                .await
                .map_err(db_err)?;
                Ok(v)
            })
        })
        .await
    }

    async fn visit_cancel(
        &self,
        id: Uuid,
        at: DateTime<Utc>,
        audit: Vec<AuditEvent>,
    ) -> Result<Visit> {
        self.write(audit, move |c| {
            Box::pin(async move {
                let v = step(
                    c,
                    id,
                    &[VisitStatus::Booked, VisitStatus::Arrived],
                    VisitStatus::Cancelled,
                    "ended_at",
                    at,
                )
                .await?;
                if let Some(slot) = v.slot_id {
                    sqlx::query("UPDATE visit_slots SET status = 'free' WHERE id = ?")
                        .bind(slot.to_string())
                        .execute(&mut *c)
                        .await
                        .map_err(db_err)?;
                }
                Ok(v)
            })
        })
        .await
    }

    async fn visit_joined(&self, p: &Participant, audit: Vec<AuditEvent>) -> Result<()> {
        let p = p.clone();
        self.write(audit, move |c| {
            Box::pin(async move {
                load_visit(c, p.visit_id).await?;
                sqlx::query(
                    "INSERT INTO visit_participants (visit_id, participant, role, display_name, joined_at, left_at)
                     VALUES (?,?,?,?,?,NULL)
                     ON CONFLICT (visit_id, participant) DO UPDATE SET left_at = NULL",
                )
                .bind(p.visit_id.to_string())
                .bind(&p.key)
                .bind(&p.role)
                .bind(&p.display_name)
                .bind(ts(p.joined_at))
                .execute(&mut *c)
                .await
                .map_err(db_err)?;
                Ok(())
            })
        })
        .await
    }

    async fn visit_left(
        &self,
        visit: Uuid,
        key: &str,
        at: DateTime<Utc>,
        audit: Vec<AuditEvent>,
    ) -> Result<()> {
        let key = key.to_owned();
        self.write(audit, move |c| {
            Box::pin(async move {
                let n = sqlx::query(
                    "UPDATE visit_participants SET left_at = ? WHERE visit_id = ? AND participant = ?",
                )
                .bind(ts(at))
                .bind(visit.to_string())
                .bind(&key)
                .execute(&mut *c)
                .await
                .map_err(db_err)?
                .rows_affected();
                if n == 0 {
                    return Err(StoreError::NotFound("participant"));
                }
                Ok(())
            })
        })
        .await
    }

    async fn visit_participants(&self, visit: Uuid) -> Result<Vec<Participant>> {
        let rows = sqlx::query(
            "SELECT * FROM visit_participants WHERE visit_id = ? ORDER BY joined_at, participant",
        )
        .bind(visit.to_string())
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter().map(participant_from_row).collect()
    }
}

/// The one row of `sql` (one `?` for the id) on the read pool, or `NotFound(what)`.
async fn row_by_id(
    pool: &sqlx::SqlitePool,
    sql: &str,
    id: Uuid,
    what: &'static str,
) -> Result<sqlx::sqlite::SqliteRow> {
    sqlx::query(sql)
        .bind(id.to_string())
        .fetch_optional(pool)
        .await
        .map_err(db_err)?
        .ok_or(StoreError::NotFound(what))
}
