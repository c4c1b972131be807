//! Surveillance records on SQLite (see `caravan_store::surveillance`): the changes of a unit of work and the reads.

use crate::rows::{opt_time, time};
use crate::{db_err, parse};
use caravan_domain::audit::format_audit_time;
use caravan_store::*;
use chrono::{Datelike, NaiveDate};
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

/// Apply one surveillance change inside the writer's transaction.
pub(crate) async fn apply(c: &mut SqliteConnection, ch: Change) -> Result<()> {
    match ch {
        Change::SurvSetRegions(regions) => {
            exec(c, sqlx::query("DELETE FROM surv_neighbours")).await?;
            exec(c, sqlx::query("DELETE FROM surv_regions")).await?;
            for r in regions {
                exec(
                    c,
                    sqlx::query(
                        "INSERT INTO surv_regions (code, name, country, population) VALUES (?, ?, ?, ?)",
                    )
                    .bind(&r.code)
                    .bind(&r.name)
                    .bind(&r.country)
                    .bind(r.population),
                )
                .await?;
                for n in r.neighbours {
                    exec(
                        c,
                        sqlx::query(
                            "INSERT INTO surv_neighbours (region, node_id, remote_region, remote_name)
                             VALUES (?, ?, ?, ?)",
                        )
                        .bind(&r.code)
                        .bind(n.node_id)
                        .bind(n.region)
                        .bind(n.name),
                    )
                    .await?;
                }
            }
        }
        Change::InsertSurvCase(k) => {
            let w = k.onset_date.iso_week();
            exec(
                c,
                sqlx::query(
                    "INSERT INTO surv_cases (id, pseudonym, disease, region, onset_date, report_date, iso_year,
                       iso_week, age_band, sex, outcome, lab_confirmed, reported_by, source, created_at)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(k.id.to_string())
                .bind(k.pseudonym)
                .bind(k.disease)
                .bind(k.region)
                .bind(k.onset_date.to_string())
                .bind(k.report_date.to_string())
                .bind(w.year())
                .bind(w.week() as i64)
                .bind(k.age_band)
                .bind(k.sex)
                .bind(k.outcome)
                .bind(k.lab_confirmed)
                .bind(k.reported_by.to_string())
                .bind(k.source)
                .bind(format_audit_time(k.created_at)),
            )
            .await?;
        }
        Change::PutSurvAggregate(a) => {
            exec(
                c,
                sqlx::query(
                    "INSERT INTO surv_aggregates (disease, region, iso_year, iso_week, count, reported_by, source,
                       updated_at)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                     ON CONFLICT (disease, region, iso_year, iso_week) DO UPDATE SET count = excluded.count,
                       reported_by = excluded.reported_by, source = excluded.source, updated_at = excluded.updated_at",
                )
                .bind(a.disease)
                .bind(a.region)
                .bind(a.iso_year)
                .bind(a.iso_week as i64)
                .bind(a.count)
                .bind(a.reported_by.to_string())
                .bind(a.source)
                .bind(format_audit_time(a.updated_at)),
            )
            .await?;
        }
        Change::InsertSurvAlert(a) => {
            exec(
                c,
                sqlx::query(
                    "INSERT INTO surv_alerts (id, origin_node, origin_id, disease, region, region_name, country,
                       local_region, iso_year, iso_week, observed, upperbound, method, created_at, status,
                       acknowledged_by, acknowledged_at)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(a.id.to_string())
                .bind(a.origin_node)
                .bind(a.origin_id)
                .bind(a.disease)
                .bind(a.region)
                .bind(a.region_name)
                .bind(a.country)
                .bind(a.local_region)
                .bind(a.iso_year)
                .bind(a.iso_week as i64)
                .bind(a.observed)
                .bind(a.upperbound)
                .bind(a.method)
                .bind(format_audit_time(a.created_at))
                .bind(a.status)
                .bind(a.acknowledged_by)
                .bind(a.acknowledged_at.map(format_audit_time)),
            )
            .await
            .map_err(|e| match e {
                StoreError::Duplicate(_) => StoreError::Duplicate("alert"),
                other => other,
            })?;
        }
        Change::AckSurvAlert { id, by, at } => {
            let n = exec(
                c,
                sqlx::query(
                    "UPDATE surv_alerts SET status = 'acknowledged', acknowledged_by = ?, acknowledged_at = ?
                     WHERE id = ? AND status = 'open'",
                )
                .bind(by)
                .bind(format_audit_time(at))
                .bind(id.to_string()),
            )
            .await?;
            if n == 0 {
                return Err(StoreError::Conflict);
            }
        }
        Change::InsertSurvNote(n) => {
            exec(
                c,
                sqlx::query(
                    "INSERT INTO surv_notes (id, alert_id, kind, author_name, author_node, body, created_at)
                     VALUES (?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(n.id.to_string())
                .bind(n.alert_id.to_string())
                .bind(n.kind)
                .bind(n.author_name)
                .bind(n.author_node)
                .bind(n.body)
                .bind(format_audit_time(n.created_at)),
            )
            .await?;
        }
        Change::PutSurvForeignCount(f) => {
            exec(
                c,
                sqlx::query(
                    "INSERT INTO surv_foreign_counts (node_id, region, disease, iso_year, iso_week, count)
                     VALUES (?, ?, ?, ?, ?, ?)
                     ON CONFLICT (node_id, region, disease, iso_year, iso_week) DO UPDATE SET count = excluded.count",
                )
                .bind(f.node_id)
                .bind(f.region)
                .bind(f.disease)
                .bind(f.iso_year)
                .bind(f.iso_week as i64)
                .bind(f.count),
            )
            .await?;
        }
        other => {
            return Err(StoreError::Corrupt(format!(
                "not a surveillance change: {other:?}"
            )))
        }
    }
    Ok(())
}

fn date(r: &SqliteRow, col: &str) -> Result<NaiveDate> {
    parse("date", &r.get::<String, _>(col))
}

fn week(r: &SqliteRow) -> u32 {
    r.get::<i64, _>("iso_week").clamp(0, 99) as u32
}

fn case(r: &SqliteRow) -> Result<SurvCase> {
    Ok(SurvCase {
        id: parse("case id", &r.get::<String, _>("id"))?,
        pseudonym: r.get("pseudonym"),
        disease: r.get("disease"),
        region: r.get("region"),
        onset_date: date(r, "onset_date")?,
        report_date: date(r, "report_date")?,
        age_band: r.get("age_band"),
        sex: r.get("sex"),
        outcome: r.get("outcome"),
        lab_confirmed: r.get("lab_confirmed"),
        reported_by: parse("user id", &r.get::<String, _>("reported_by"))?,
        source: r.get("source"),
        created_at: time(r, "created_at")?,
    })
}

fn alert(r: &SqliteRow) -> Result<SurvAlert> {
    Ok(SurvAlert {
        id: parse("alert id", &r.get::<String, _>("id"))?,
        origin_node: r.get("origin_node"),
        origin_id: r.get("origin_id"),
        disease: r.get("disease"),
        region: r.get("region"),
        region_name: r.get("region_name"),
        country: r.get("country"),
        local_region: r.get("local_region"),
        iso_year: r.get::<i64, _>("iso_year") as i32,
        iso_week: week(r),
        observed: r.get("observed"),
        upperbound: r.get("upperbound"),
        method: r.get("method"),
        created_at: time(r, "created_at")?,
        status: r.get("status"),
        acknowledged_by: r.get("acknowledged_by"),
        acknowledged_at: opt_time(r, "acknowledged_at")?,
    })
}

const FILTER: &str = "(?1 IS NULL OR disease = ?1) AND (?2 IS NULL OR region = ?2)";

fn limit(f: &SurvFilter) -> i64 {
    f.limit.map(i64::from).unwrap_or(-1)
}

pub(crate) async fn regions(pool: &SqlitePool) -> Result<Vec<SurvRegion>> {
    let rows = sqlx::query("SELECT * FROM surv_regions ORDER BY code")
        .fetch_all(pool)
        .await
        .map_err(db_err)?;
    let ns = sqlx::query("SELECT * FROM surv_neighbours ORDER BY region, node_id, remote_region")
        .fetch_all(pool)
        .await
        .map_err(db_err)?;
    Ok(rows
        .iter()
        .map(|r| {
            let code: String = r.get("code");
            SurvRegion {
                neighbours: ns
                    .iter()
                    .filter(|n| n.get::<String, _>("region") == code)
                    .map(|n| SurvNeighbour {
                        node_id: n.get("node_id"),
                        region: n.get("remote_region"),
                        name: n.get("remote_name"),
                    })
                    .collect(),
                code,
                name: r.get("name"),
                country: r.get("country"),
                population: r.get("population"),
            }
        })
        .collect())
}

pub(crate) async fn cases(pool: &SqlitePool, f: &SurvFilter) -> Result<Vec<SurvCase>> {
    let rows = sqlx::query(&format!(
        "SELECT * FROM surv_cases WHERE {FILTER} ORDER BY onset_date DESC, created_at DESC, id LIMIT ?3"
    ))
    .bind(f.disease.as_deref())
    .bind(f.region.as_deref())
    .bind(limit(f))
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    rows.iter().map(case).collect()
}

pub(crate) async fn aggregates(pool: &SqlitePool, f: &SurvFilter) -> Result<Vec<SurvAggregate>> {
    let rows = sqlx::query(&format!(
        "SELECT * FROM surv_aggregates WHERE {FILTER} ORDER BY disease, region, iso_year, iso_week LIMIT ?3"
    ))
    .bind(f.disease.as_deref())
    .bind(f.region.as_deref())
    .bind(limit(f))
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    rows.iter()
        .map(|r| {
            Ok(SurvAggregate {
                disease: r.get("disease"),
                region: r.get("region"),
                iso_year: r.get::<i64, _>("iso_year") as i32,
                iso_week: week(r),
                count: r.get("count"),
                reported_by: parse("user id", &r.get::<String, _>("reported_by"))?,
                source: r.get("source"),
                updated_at: time(r, "updated_at")?,
            })
        })
        .collect()
}

pub(crate) async fn weeks(pool: &SqlitePool, f: &SurvFilter) -> Result<Vec<SurvWeek>> {
    let rows = sqlx::query(&format!(
        "SELECT disease, region, iso_year, iso_week, SUM(cases) AS cases, SUM(aggregate) AS aggregate FROM (
           SELECT disease, region, iso_year, iso_week, COUNT(*) AS cases, 0 AS aggregate FROM surv_cases
             WHERE {FILTER} GROUP BY disease, region, iso_year, iso_week
           UNION ALL
           SELECT disease, region, iso_year, iso_week, 0, count FROM surv_aggregates WHERE {FILTER})
         GROUP BY disease, region, iso_year, iso_week ORDER BY disease, region, iso_year, iso_week"
    ))
    .bind(f.disease.as_deref())
    .bind(f.region.as_deref())
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    Ok(rows
        .iter()
        .map(|r| SurvWeek {
            disease: r.get("disease"),
            region: r.get("region"),
            iso_year: r.get::<i64, _>("iso_year") as i32,
            iso_week: week(r),
            cases: r.get("cases"),
            aggregate: r.get("aggregate"),
        })
        .collect())
}

pub(crate) async fn alerts(pool: &SqlitePool, limit: u32) -> Result<Vec<SurvAlert>> {
    let rows = sqlx::query("SELECT * FROM surv_alerts ORDER BY created_at DESC, id DESC LIMIT ?")
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await
        .map_err(db_err)?;
    rows.iter().map(alert).collect()
}

pub(crate) async fn alert_where(
    pool: &SqlitePool,
    sql: &str,
    binds: &[String],
) -> Result<Option<SurvAlert>> {
    let mut q = sqlx::query(sql);
    for b in binds {
        q = q.bind(b);
    }
    q.fetch_optional(pool)
        .await
        .map_err(db_err)?
        .as_ref()
        .map(alert)
        .transpose()
}

pub(crate) async fn notes(pool: &SqlitePool, alert: Uuid) -> Result<Vec<SurvNote>> {
    let rows = sqlx::query("SELECT * FROM surv_notes WHERE alert_id = ? ORDER BY created_at, id")
        .bind(alert.to_string())
        .fetch_all(pool)
        .await
        .map_err(db_err)?;
    rows.iter()
        .map(|r| {
            Ok(SurvNote {
                id: parse("note id", &r.get::<String, _>("id"))?,
                alert_id: parse("alert id", &r.get::<String, _>("alert_id"))?,
                kind: r.get("kind"),
                author_name: r.get("author_name"),
                author_node: r.get("author_node"),
                body: r.get("body"),
                created_at: time(r, "created_at")?,
            })
        })
        .collect()
}

pub(crate) async fn foreign_counts(pool: &SqlitePool) -> Result<Vec<SurvForeignCount>> {
    let rows = sqlx::query(
        "SELECT * FROM surv_foreign_counts ORDER BY node_id, region, disease, iso_year, iso_week",
    )
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    Ok(rows
        .iter()
        .map(|r| SurvForeignCount {
            node_id: r.get("node_id"),
            region: r.get("region"),
            disease: r.get("disease"),
            iso_year: r.get::<i64, _>("iso_year") as i32,
            iso_week: week(r),
            count: r.get("count"),
        })
        .collect())
}
