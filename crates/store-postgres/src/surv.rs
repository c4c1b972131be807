//! Surveillance records on PostgreSQL (see `caravan_store::surveillance`): the same statements as the SQLite
//! backend's, in PostgreSQL's dialect.

use crate::db_err;
use crate::rows::get;
use caravan_domain::UserId;
use caravan_store::*;
use chrono::Datelike;
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

/// Apply one surveillance change inside the caller's transaction.
pub(crate) async fn apply(c: &mut PgConnection, ch: Change) -> Result<()> {
    match ch {
        Change::SurvSetRegions(regions) => {
            exec(c, sqlx::query("DELETE FROM surv_neighbours")).await?;
            exec(c, sqlx::query("DELETE FROM surv_regions")).await?;
            for r in regions {
                exec(
                    c,
                    sqlx::query(
                        "INSERT INTO surv_regions (code, name, country, population) VALUES ($1, $2, $3, $4)",
                    )
                    .bind(r.code.clone())
                    .bind(r.name)
                    .bind(r.country)
                    .bind(r.population),
                )
                .await?;
                for n in r.neighbours {
                    exec(
                        c,
                        sqlx::query(
                            "INSERT INTO surv_neighbours (region, node_id, remote_region, remote_name)
                             VALUES ($1, $2, $3, $4)",
                        )
                        .bind(r.code.clone())
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
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
                )
                .bind(k.id)
                .bind(k.pseudonym)
                .bind(k.disease)
                .bind(k.region)
                .bind(k.onset_date)
                .bind(k.report_date)
                .bind(w.year())
                .bind(w.week() as i32)
                .bind(k.age_band)
                .bind(k.sex)
                .bind(k.outcome)
                .bind(k.lab_confirmed)
                .bind(k.reported_by.0)
                .bind(k.source)
                .bind(k.created_at),
            )
            .await?;
        }
        Change::PutSurvAggregate(a) => {
            exec(
                c,
                sqlx::query(
                    "INSERT INTO surv_aggregates (disease, region, iso_year, iso_week, count, reported_by, source,
                       updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                     ON CONFLICT (disease, region, iso_year, iso_week) DO UPDATE SET count = excluded.count,
                       reported_by = excluded.reported_by, source = excluded.source, updated_at = excluded.updated_at",
                )
                .bind(a.disease)
                .bind(a.region)
                .bind(a.iso_year)
                .bind(a.iso_week as i32)
                .bind(a.count)
                .bind(a.reported_by.0)
                .bind(a.source)
                .bind(a.updated_at),
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
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
                )
                .bind(a.id)
                .bind(a.origin_node)
                .bind(a.origin_id)
                .bind(a.disease)
                .bind(a.region)
                .bind(a.region_name)
                .bind(a.country)
                .bind(a.local_region)
                .bind(a.iso_year)
                .bind(a.iso_week as i32)
                .bind(a.observed)
                .bind(a.upperbound)
                .bind(a.method)
                .bind(a.created_at)
                .bind(a.status)
                .bind(a.acknowledged_by)
                .bind(a.acknowledged_at),
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
                    "UPDATE surv_alerts SET status = 'acknowledged', acknowledged_by = $1, acknowledged_at = $2
                     WHERE id = $3 AND status = 'open'",
                )
                .bind(by)
                .bind(at)
                .bind(id),
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
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(n.id)
                .bind(n.alert_id)
                .bind(n.kind)
                .bind(n.author_name)
                .bind(n.author_node)
                .bind(n.body)
                .bind(n.created_at),
            )
            .await?;
        }
        Change::PutSurvForeignCount(f) => {
            exec(
                c,
                sqlx::query(
                    "INSERT INTO surv_foreign_counts (node_id, region, disease, iso_year, iso_week, count)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (node_id, region, disease, iso_year, iso_week) DO UPDATE SET count = excluded.count",
                )
                .bind(f.node_id)
                .bind(f.region)
                .bind(f.disease)
                .bind(f.iso_year)
                .bind(f.iso_week as i32)
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

fn week(r: &PgRow) -> Result<u32> {
    Ok(get::<i32>(r, "iso_week")?.clamp(0, 99) as u32)
}

fn case(r: &PgRow) -> Result<SurvCase> {
    Ok(SurvCase {
        id: get(r, "id")?,
        pseudonym: get(r, "pseudonym")?,
        disease: get(r, "disease")?,
        region: get(r, "region")?,
        onset_date: get(r, "onset_date")?,
        report_date: get(r, "report_date")?,
        age_band: get(r, "age_band")?,
        sex: get(r, "sex")?,
        outcome: get(r, "outcome")?,
        lab_confirmed: get(r, "lab_confirmed")?,
        reported_by: UserId(get(r, "reported_by")?),
        source: get(r, "source")?,
        created_at: get(r, "created_at")?,
    })
}

fn alert(r: &PgRow) -> Result<SurvAlert> {
    Ok(SurvAlert {
        id: get(r, "id")?,
        origin_node: get(r, "origin_node")?,
        origin_id: get(r, "origin_id")?,
        disease: get(r, "disease")?,
        region: get(r, "region")?,
        region_name: get(r, "region_name")?,
        country: get(r, "country")?,
        local_region: get(r, "local_region")?,
        iso_year: get(r, "iso_year")?,
        iso_week: week(r)?,
        observed: get(r, "observed")?,
        upperbound: get(r, "upperbound")?,
        method: get(r, "method")?,
        created_at: get(r, "created_at")?,
        status: get(r, "status")?,
        acknowledged_by: get(r, "acknowledged_by")?,
        acknowledged_at: get(r, "acknowledged_at")?,
    })
}

const FILTER: &str = "($1::text IS NULL OR disease = $1) AND ($2::text IS NULL OR region = $2)";

fn limit(f: &SurvFilter) -> Option<i64> {
    f.limit.map(i64::from)
}

pub(crate) async fn regions(pool: &PgPool) -> Result<Vec<SurvRegion>> {
    let rows = sqlx::query("SELECT * FROM surv_regions ORDER BY code")
        .fetch_all(pool)
        .await
        .map_err(db_err)?;
    let ns = sqlx::query("SELECT * FROM surv_neighbours ORDER BY region, node_id, remote_region")
        .fetch_all(pool)
        .await
        .map_err(db_err)?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let code: String = get(r, "code")?;
        let mut neighbours = Vec::new();
        for n in &ns {
            if get::<String>(n, "region")? == code {
                neighbours.push(SurvNeighbour {
                    node_id: get(n, "node_id")?,
                    region: get(n, "remote_region")?,
                    name: get(n, "remote_name")?,
                });
            }
        }
        out.push(SurvRegion {
            code,
            name: get(r, "name")?,
            country: get(r, "country")?,
            population: get(r, "population")?,
            neighbours,
        });
    }
    Ok(out)
}

pub(crate) async fn cases(pool: &PgPool, f: &SurvFilter) -> Result<Vec<SurvCase>> {
    let rows = sqlx::query(&format!(
        "SELECT * FROM surv_cases WHERE {FILTER} ORDER BY onset_date DESC, created_at DESC, id LIMIT $3"
    ))
    .bind(f.disease.as_deref())
    .bind(f.region.as_deref())
    .bind(limit(f))
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    rows.iter().map(case).collect()
}

pub(crate) async fn aggregates(pool: &PgPool, f: &SurvFilter) -> Result<Vec<SurvAggregate>> {
    let rows = sqlx::query(&format!(
        "SELECT * FROM surv_aggregates WHERE {FILTER} ORDER BY disease, region, iso_year, iso_week LIMIT $3"
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
                disease: get(r, "disease")?,
                region: get(r, "region")?,
                iso_year: get(r, "iso_year")?,
                iso_week: week(r)?,
                count: get(r, "count")?,
                reported_by: UserId(get(r, "reported_by")?),
                source: get(r, "source")?,
                updated_at: get(r, "updated_at")?,
            })
        })
        .collect()
}

pub(crate) async fn weeks(pool: &PgPool, f: &SurvFilter) -> Result<Vec<SurvWeek>> {
    let rows = sqlx::query(&format!(
        "SELECT disease, region, iso_year, iso_week, SUM(cases)::BIGINT AS cases,
                SUM(aggregate)::BIGINT AS aggregate FROM (
           SELECT disease, region, iso_year, iso_week, COUNT(*) AS cases, 0::BIGINT AS aggregate FROM surv_cases
             WHERE {FILTER} GROUP BY disease, region, iso_year, iso_week
           UNION ALL
           SELECT disease, region, iso_year, iso_week, 0::BIGINT, count FROM surv_aggregates WHERE {FILTER}) w
         GROUP BY disease, region, iso_year, iso_week ORDER BY disease, region, iso_year, iso_week"
    ))
    .bind(f.disease.as_deref())
    .bind(f.region.as_deref())
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    rows.iter()
        .map(|r| {
            Ok(SurvWeek {
                disease: get(r, "disease")?,
                region: get(r, "region")?,
                iso_year: get(r, "iso_year")?,
                iso_week: week(r)?,
                cases: get(r, "cases")?,
                aggregate: get(r, "aggregate")?,
            })
        })
        .collect()
}

pub(crate) async fn alerts(pool: &PgPool, limit: u32) -> Result<Vec<SurvAlert>> {
    let rows = sqlx::query("SELECT * FROM surv_alerts ORDER BY created_at DESC, id DESC LIMIT $1")
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await
        .map_err(db_err)?;
    rows.iter().map(alert).collect()
}

pub(crate) async fn alert_by_id(pool: &PgPool, id: Uuid) -> Result<Option<SurvAlert>> {
    sqlx::query("SELECT * FROM surv_alerts WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
        .map_err(db_err)?
        .as_ref()
        .map(alert)
        .transpose()
}

pub(crate) async fn alert_for(
    pool: &PgPool,
    origin_node: &str,
    disease: &str,
    region: &str,
    iso_year: i32,
    iso_week: u32,
) -> Result<Option<SurvAlert>> {
    sqlx::query(
        "SELECT * FROM surv_alerts WHERE origin_node = $1 AND disease = $2 AND region = $3 AND iso_year = $4
           AND iso_week = $5",
    )
    .bind(origin_node)
    .bind(disease)
    .bind(region)
    .bind(iso_year)
    .bind(iso_week as i32)
    .fetch_optional(pool)
    .await
    .map_err(db_err)?
    .as_ref()
    .map(alert)
    .transpose()
}

pub(crate) async fn alert_by_origin(
    pool: &PgPool,
    node: &str,
    origin_id: &str,
) -> Result<Option<SurvAlert>> {
    sqlx::query("SELECT * FROM surv_alerts WHERE origin_node = $1 AND origin_id = $2")
        .bind(node)
        .bind(origin_id)
        .fetch_optional(pool)
        .await
        .map_err(db_err)?
        .as_ref()
        .map(alert)
        .transpose()
}

pub(crate) async fn notes(pool: &PgPool, alert: Uuid) -> Result<Vec<SurvNote>> {
    let rows = sqlx::query("SELECT * FROM surv_notes WHERE alert_id = $1 ORDER BY created_at, id")
        .bind(alert)
        .fetch_all(pool)
        .await
        .map_err(db_err)?;
    rows.iter()
        .map(|r| {
            Ok(SurvNote {
                id: get(r, "id")?,
                alert_id: get(r, "alert_id")?,
                kind: get(r, "kind")?,
                author_name: get(r, "author_name")?,
                author_node: get(r, "author_node")?,
                body: get(r, "body")?,
                created_at: get(r, "created_at")?,
            })
        })
        .collect()
}

pub(crate) async fn foreign_counts(pool: &PgPool) -> Result<Vec<SurvForeignCount>> {
    let rows = sqlx::query(
        "SELECT * FROM surv_foreign_counts ORDER BY node_id, region, disease, iso_year, iso_week",
    )
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    rows.iter()
        .map(|r| {
            Ok(SurvForeignCount {
                node_id: get(r, "node_id")?,
                region: get(r, "region")?,
                disease: get(r, "disease")?,
                iso_year: get(r, "iso_year")?,
                iso_week: week(r)?,
                count: get(r, "count")?,
            })
        })
        .collect()
}
