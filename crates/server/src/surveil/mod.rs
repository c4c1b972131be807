//! Infectious-disease surveillance in the node: notifiable-disease reports by public-health officers (a
//! pseudonymised line list of cases and aggregate counts per disease × region × ISO week), entered in a form,
//! imported from CSV ([`import`]), posted as JSON or as FHIR (`Observation` / `MeasureReport` at `/fhir`, in `caravan-fhir`);
//! aberration detection (the `surveillance` crate) on every new report over the series it touched; alerts for
//! the officers of the region and, when the region borders another country, a cross-border alert to that
//! country's node (`surv.alert`, acknowledged back with `surv.ack`; weekly counts of border regions travel as
//! `surv.aggregate`). Only aggregates and alerts cross borders, never a case. Dashboards ([`pages`], charts in
//! [`charts`]) and CSV export of every table.
//!
//! Who: public-health officers report, read and acknowledge; administrators set the regions. A line list is
//! pseudonymised patient data: every read and write is an audit event.

pub mod api;
pub mod charts;
pub mod demo;
pub mod fed;
pub mod import;
pub mod pages;

use crate::audit::{event, system_event};
use crate::auth::Principal;
use crate::error::{AppError, AppResult};
use crate::AppState;
use ::surveillance::{EarsParams, FlexibleParams, Method};
use caravan_domain::{AuditAction, Role};
use caravan_store::*;
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;

/// Roles that report and watch.
pub const OFFICERS: &[Role] = &[Role::PublicHealthOfficer];

/// Notifiable diseases (ICD-10). The Fluent message of each is `surv-disease-<code with . as ->` in lower case.
pub const DISEASES: &[&str] = &[
    "A00", "A01.0", "A09", "A15", "A20", "A39", "A98.0", "B05", "B15", "J10", "U07.1",
];
pub const AGE_BANDS: &[&str] = &["0-4", "5-14", "15-24", "25-44", "45-64", "65+", "unknown"];
pub const SEXES: &[&str] = &["female", "male", "other", "unknown"];
pub const OUTCOMES: &[&str] = &["recovered", "hospitalised", "died", "unknown"];

/// Largest batch accepted in one report (form, CSV, JSON or FHIR).
pub const MAX_BATCH: usize = 50_000;

/// The Fluent id of a disease's name.
pub fn disease_msg(code: &str) -> String {
    format!("surv-disease-{}", code.to_lowercase().replace('.', "-"))
}

/// The default method: Farrington flexible with the Noufaily (2013) settings; series too short for it (fewer
/// than `b` years of history) fall back to [`fallback_method`].
pub fn default_method() -> Method {
    Method::FarringtonFlexible(FlexibleParams::noufaily())
}

/// EARS C2 with R's defaults: 7 baseline weeks after a 2-week gap.
pub fn fallback_method() -> Method {
    Method::EarsC2(EarsParams::default())
}

fn invalid(message: impl Into<String>) -> AppError {
    AppError::unprocessable("error-surv-invalid", message)
}

// ------------------------------------------------------------------------------------------------------------
// Inputs

/// A case as entered (form, CSV row, JSON): text fields, validated by [`validate_case`].
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema)]
pub struct CaseInput {
    #[serde(default)]
    pub pseudonym: String,
    pub disease: String,
    pub region: String,
    pub onset_date: String,
    pub report_date: String,
    #[serde(default)]
    pub age_band: String,
    #[serde(default)]
    pub sex: String,
    #[serde(default)]
    pub outcome: String,
    /// `true`/`false`, or text such as `yes`/`no`.
    #[serde(default, deserialize_with = "bool_or_text")]
    #[schemars(with = "Option<serde_json::Value>")]
    pub lab_confirmed: String,
}

/// An aggregate count as entered.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema)]
pub struct AggregateInput {
    pub disease: String,
    pub region: String,
    pub iso_year: i64,
    pub iso_week: i64,
    pub count: i64,
}

fn bool_or_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(match v {
        serde_json::Value::Bool(b) => b.to_string(),
        serde_json::Value::String(s) => s,
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    })
}

fn one_of(what: &str, v: &str, allowed: &[&str]) -> Result<String, String> {
    let t = v.trim();
    if allowed.contains(&t) {
        Ok(t.to_owned())
    } else {
        Err(format!(
            "{what} {:?} is not one of {}",
            t.chars().take(40).collect::<String>(),
            allowed.join(", ")
        ))
    }
}

fn date(what: &str, v: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(v.trim(), "%Y-%m-%d")
        .map_err(|_| format!("{what} {:?} is not a date (YYYY-MM-DD)", v.trim()))
}

fn region_known(regions: &[SurvRegion], code: &str) -> Result<String, String> {
    let t = code.trim();
    if regions.iter().any(|r| r.code == t) {
        Ok(t.to_owned())
    } else {
        Err(format!(
            "region {:?} is not a region of this node ({})",
            t.chars().take(40).collect::<String>(),
            regions
                .iter()
                .map(|r| r.code.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

/// Check one case; the error names the field and what is wrong (never echoes more than 40 characters).
pub fn validate_case(
    c: &CaseInput,
    regions: &[SurvRegion],
    reporter: &Principal,
    source: &str,
    now: DateTime<Utc>,
) -> Result<SurvCase, String> {
    let disease = one_of("disease", &c.disease, DISEASES)?;
    let region = region_known(regions, &c.region)?;
    let onset = date("onset_date", &c.onset_date)?;
    let report = date("report_date", &c.report_date)?;
    let today = now.date_naive();
    if report > today + chrono::Duration::days(1) {
        return Err(format!("report_date {report} is in the future"));
    }
    if onset > report {
        return Err(format!("onset_date {onset} is after report_date {report}"));
    }
    if onset.year() < 1990 {
        return Err(format!("onset_date {onset} is before 1990"));
    }
    let age_band = one_of("age_band", or_unknown(&c.age_band), AGE_BANDS)?;
    let sex = one_of("sex", or_unknown(&c.sex), SEXES)?;
    let outcome = one_of("outcome", or_unknown(&c.outcome), OUTCOMES)?;
    let lab_confirmed = match c.lab_confirmed.trim().to_ascii_lowercase().as_str() {
        "yes" | "true" | "1" | "y" => true,
        "no" | "false" | "0" | "n" | "" => false,
        other => {
            return Err(format!(
                "lab_confirmed {:?} is not yes or no",
                other.chars().take(40).collect::<String>()
            ))
        }
    };
    let pseudonym = c.pseudonym.trim();
    if pseudonym.chars().count() > 64
        || !pseudonym
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
    {
        return Err(
            "pseudonym must be at most 64 letters, digits, '-' or '_' (a reporter's code, never a name)".into(),
        );
    }
    let id = Uuid::now_v7();
    Ok(SurvCase {
        id,
        pseudonym: if pseudonym.is_empty() {
            format!("anon-{}", &id.simple().to_string()[20..])
        } else {
            pseudonym.to_owned()
        },
        disease,
        region,
        onset_date: onset,
        report_date: report,
        age_band,
        sex,
        outcome,
        lab_confirmed,
        reported_by: reporter.user.id,
        source: source.to_owned(),
        created_at: now,
    })
}

fn or_unknown(s: &str) -> &str {
    if s.trim().is_empty() {
        "unknown"
    } else {
        s
    }
}

/// Check one aggregate count.
pub fn validate_aggregate(
    a: &AggregateInput,
    regions: &[SurvRegion],
    reporter: &Principal,
    source: &str,
    now: DateTime<Utc>,
) -> Result<SurvAggregate, String> {
    let disease = one_of("disease", &a.disease, DISEASES)?;
    let region = region_known(regions, &a.region)?;
    let year = i32::try_from(a.iso_year)
        .ok()
        .filter(|y| (1990..=2100).contains(y))
        .ok_or_else(|| format!("iso_year {} is not between 1990 and 2100", a.iso_year))?;
    let week = u32::try_from(a.iso_week)
        .ok()
        .filter(|w| NaiveDate::from_isoywd_opt(year, *w, chrono::Weekday::Mon).is_some())
        .ok_or_else(|| format!("iso_week {} is not a week of ISO year {year}", a.iso_week))?;
    let monday = NaiveDate::from_isoywd_opt(year, week, chrono::Weekday::Mon).unwrap_or_default();
    if monday > now.date_naive() {
        return Err(format!("week {year}-W{week:02} has not started yet"));
    }
    if !(0..=1_000_000).contains(&a.count) {
        return Err(format!("count {} is not between 0 and 1000000", a.count));
    }
    Ok(SurvAggregate {
        disease,
        region,
        iso_year: year,
        iso_week: week,
        count: a.count,
        reported_by: reporter.user.id,
        source: source.to_owned(),
        updated_at: now,
    })
}

// ------------------------------------------------------------------------------------------------------------
// Reporting

/// A validated report: cases and aggregate counts committed together.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    pub cases: Vec<SurvCase>,
    pub aggregates: Vec<SurvAggregate>,
}

/// What a report did.
#[derive(Clone, Debug, Serialize)]
pub struct ReportOutcome {
    pub batch: Uuid,
    pub cases: usize,
    pub aggregates: usize,
    /// Alerts raised by detection on the series the report touched.
    pub alerts: Vec<SurvAlert>,
    /// Detection could not run after the report was stored (the cause is in the node log; it runs again on the
    /// next report of the same series). The report itself is stored: sending it again would duplicate it.
    pub detection_failed: bool,
}

/// Validate raw inputs against the node's regions: all or nothing, every bad item named (`item N: ...`).
pub async fn validate(
    st: &AppState,
    p: &Principal,
    cases: &[CaseInput],
    aggregates: &[AggregateInput],
    source: &str,
) -> AppResult<Batch> {
    p.require(OFFICERS)?;
    if cases.len() + aggregates.len() > MAX_BATCH {
        return Err(invalid(format!("a report holds at most {MAX_BATCH} items")));
    }
    let regions = st.store().surv_regions().await?;
    let now = Utc::now();
    let mut errors = Vec::new();
    let mut batch = Batch::default();
    for (i, c) in cases.iter().enumerate() {
        match validate_case(c, &regions, p, source, now) {
            Ok(k) => batch.cases.push(k),
            Err(e) => errors.push(format!("case {}: {e}", i + 1)),
        }
    }
    for (i, a) in aggregates.iter().enumerate() {
        match validate_aggregate(a, &regions, p, source, now) {
            Ok(k) => batch.aggregates.push(k),
            Err(e) => errors.push(format!("aggregate {}: {e}", i + 1)),
        }
    }
    if !errors.is_empty() {
        return Err(invalid(summarise(&errors)));
    }
    if batch.cases.is_empty() && batch.aggregates.is_empty() {
        return Err(invalid("the report is empty"));
    }
    Ok(batch)
}

/// At most 20 problems in one message, and how many more.
pub fn summarise(errors: &[String]) -> String {
    let mut s = errors
        .iter()
        .take(20)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if errors.len() > 20 {
        s.push_str(&format!("; and {} more", errors.len() - 20));
    }
    s
}

/// Commit a validated report (one transaction, audited), then run detection on every series it touched.
pub async fn submit(
    st: &AppState,
    p: &Principal,
    batch: Batch,
    via: &str,
) -> AppResult<ReportOutcome> {
    p.require(OFFICERS)?;
    let id = Uuid::now_v7();
    let mut touched: BTreeMap<(String, String), BTreeSet<(i32, u32)>> = BTreeMap::new();
    for c in &batch.cases {
        let w = c.onset_date.iso_week();
        touched
            .entry((c.disease.clone(), c.region.clone()))
            .or_default()
            .insert((w.year(), w.week()));
    }
    for a in &batch.aggregates {
        touched
            .entry((a.disease.clone(), a.region.clone()))
            .or_default()
            .insert((a.iso_year, a.iso_week));
    }
    let (nc, na) = (batch.cases.len(), batch.aggregates.len());
    let mut changes: Vec<Change> = batch
        .cases
        .into_iter()
        .map(Change::InsertSurvCase)
        .collect();
    changes.extend(batch.aggregates.into_iter().map(Change::PutSurvAggregate));
    let audit = vec![event(
        p,
        AuditAction::Create,
        "surveillance_report",
        id,
        None,
        &format!("{nc} case(s), {na} aggregate(s) via {via}"),
    )];
    st.store().apply(changes, audit).await?;
    tracing::info!(batch = %id, cases = nc, aggregates = na, via, "surveillance report stored");
    let (alerts, detection_failed) = match detect_and_alert(st, &touched).await {
        Ok(a) => (a, false),
        Err(e) => {
            tracing::error!(batch = %id, error = %e.message, "detection after a surveillance report failed");
            (Vec::new(), true)
        }
    };
    Ok(ReportOutcome {
        batch: id,
        cases: nc,
        aggregates: na,
        alerts,
        detection_failed,
    })
}

// ------------------------------------------------------------------------------------------------------------
// Series and detection

/// One week of a series with the detection result, for tables, charts and CSV.
#[derive(Clone, Debug, Serialize)]
pub struct SeriesWeek {
    pub iso_year: i32,
    pub iso_week: u32,
    /// Monday of the week.
    pub week_start: NaiveDate,
    pub count: i64,
    pub upperbound: Option<f64>,
    pub alarm: bool,
    /// The method that computed this week (empty where the series is too short for any).
    pub method: String,
}

fn monday(year: i32, week: u32) -> Option<NaiveDate> {
    NaiveDate::from_isoywd_opt(year, week, chrono::Weekday::Mon)
}

/// The zero-filled weekly counts of one disease × region from its first reported week to `until` (or its last).
pub async fn weekly_counts(
    st: &AppState,
    disease: &str,
    region: &str,
    until: Option<(i32, u32)>,
) -> AppResult<Vec<(NaiveDate, i64)>> {
    let weeks = st
        .store()
        .surv_weeks(&SurvFilter {
            disease: Some(disease.to_owned()),
            region: Some(region.to_owned()),
            limit: None,
        })
        .await?;
    let mut by: BTreeMap<NaiveDate, i64> = BTreeMap::new();
    for w in &weeks {
        if let Some(m) = monday(w.iso_year, w.iso_week) {
            *by.entry(m).or_default() += w.total();
        }
    }
    let (Some((&first, _)), Some((&last, _))) = (by.first_key_value(), by.last_key_value()) else {
        return Ok(Vec::new());
    };
    let end = until
        .and_then(|(y, w)| monday(y, w))
        .map_or(last, |u| u.max(last));
    let mut out = Vec::new();
    let mut d = first;
    while d <= end {
        out.push((d, by.get(&d).copied().unwrap_or(0)));
        d += chrono::Duration::days(7);
    }
    Ok(out)
}

/// The node's method (configuration) or the default.
pub fn method_of(st: &AppState) -> Method {
    st.config()
        .surveillance_method
        .clone()
        .unwrap_or_else(default_method)
}

/// Run detection on weeks `ts` (1-based) of the series: the node's method, falling back to EARS C2 where the
/// series is too short for it; weeks too short for both get no bound.
pub fn detect_weeks(
    counts: &[(NaiveDate, i64)],
    method: &Method,
    ts: impl Iterator<Item = usize>,
) -> Result<Vec<SeriesWeek>, String> {
    let mut out: Vec<SeriesWeek> = Vec::new();
    if counts.is_empty() {
        return Ok(out);
    }
    let series = ::surveillance::Series::new(counts.iter().map(|(_, c)| *c as f64).collect())
        .and_then(|s| s.with_start_date(counts[0].0))
        .map_err(|e| e.to_string())?;
    let fallback = fallback_method();
    for t in ts {
        let Some(&(d, count)) = counts.get(t.wrapping_sub(1)) else {
            continue;
        };
        let iso = d.iso_week();
        let mut row = SeriesWeek {
            iso_year: iso.year(),
            iso_week: iso.week(),
            week_start: d,
            count,
            upperbound: None,
            alarm: false,
            method: String::new(),
        };
        for m in [method, &fallback] {
            match ::surveillance::detect(&series, m, t..=t) {
                Ok(rows) => {
                    if let Some(r) = rows.first() {
                        row.upperbound = r.upperbound;
                        row.alarm = r.alarm;
                        row.method = m.name().to_owned();
                    }
                    break;
                }
                Err(::surveillance::Error::TooShort { .. }) => continue,
                Err(e) => return Err(e.to_string()),
            }
        }
        out.push(row);
    }
    Ok(out)
}

/// The whole series of one disease × region with detection on every week.
pub async fn series(st: &AppState, disease: &str, region: &str) -> AppResult<Vec<SeriesWeek>> {
    let counts = weekly_counts(st, disease, region, None).await?;
    let method = method_of(st);
    let n = counts.len();
    tokio::task::spawn_blocking(move || detect_weeks(&counts, &method, 1..=n))
        .await
        .map_err(AppError::internal)?
        .map_err(AppError::internal)
}

/// Detection over the touched weeks of each touched series; each new alarm becomes an alert (with its
/// cross-border envelopes) in its own unit of work. Weekly counts of touched border regions go to the
/// neighbours as `surv.aggregate` in one more unit.
pub async fn detect_and_alert(
    st: &AppState,
    touched: &BTreeMap<(String, String), BTreeSet<(i32, u32)>>,
) -> AppResult<Vec<SurvAlert>> {
    let regions = st.store().surv_regions().await?;
    let method = method_of(st);
    let mut raised = Vec::new();
    for ((disease, region), weeks) in touched {
        let Some(reg) = regions.iter().find(|r| &r.code == region) else {
            continue;
        };
        let until = weeks.iter().max().copied();
        let counts = weekly_counts(st, disease, region, until).await?;
        let idx: Vec<usize> = counts
            .iter()
            .enumerate()
            .filter(|(_, (d, _))| {
                let w = d.iso_week();
                weeks.contains(&(w.year(), w.week()))
            })
            .map(|(i, _)| i + 1)
            .collect();
        let m = method.clone();
        let c2 = counts.clone();
        let rows = tokio::task::spawn_blocking(move || detect_weeks(&c2, &m, idx.into_iter()))
            .await
            .map_err(AppError::internal)?
            .map_err(AppError::internal)?;
        for row in rows.iter().filter(|r| r.alarm) {
            if let Some(a) = raise(st, reg, disease, row, &counts).await? {
                raised.push(a);
            }
        }
        if !reg.neighbours.is_empty() {
            fed::share_counts(st, reg, disease, &rows).await?;
        }
    }
    Ok(raised)
}

/// Raise the alert of one alarm unless this node raised it already.
async fn raise(
    st: &AppState,
    reg: &SurvRegion,
    disease: &str,
    row: &SeriesWeek,
    counts: &[(NaiveDate, i64)],
) -> AppResult<Option<SurvAlert>> {
    if st
        .store()
        .surv_alert_for("", disease, &reg.code, row.iso_year, row.iso_week)
        .await?
        .is_some()
    {
        return Ok(None);
    }
    let id = Uuid::now_v7();
    let alert = SurvAlert {
        id,
        origin_node: String::new(),
        origin_id: id.to_string(),
        disease: disease.to_owned(),
        region: reg.code.clone(),
        region_name: reg.name.clone(),
        country: reg.country.clone(),
        local_region: None,
        iso_year: row.iso_year,
        iso_week: row.iso_week,
        observed: row.count as f64,
        upperbound: row.upperbound,
        method: row.method.clone(),
        created_at: Utc::now(),
        status: "open".into(),
        acknowledged_by: None,
        acknowledged_at: None,
    };
    let mut changes = vec![Change::InsertSurvAlert(alert.clone())];
    let mut detail = format!(
        "alarm {} {}-W{:02} ({})",
        disease, row.iso_year, row.iso_week, row.method
    );
    let outgoing = fed::alert_envelopes(st, &alert, reg, counts)?;
    if !outgoing.is_empty() {
        detail.push_str(&format!(
            "; cross-border alert to {}",
            outgoing
                .iter()
                .map(|o| o.destination.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    changes.extend(outgoing.into_iter().map(Change::Enqueue));
    let audit = vec![system_event(
        AuditAction::Create,
        "surveillance_alert",
        id,
        None,
        &detail,
    )];
    match crate::federation::commit(st, changes, audit).await {
        Ok(()) => {
            tracing::info!(alert = %id, region = %reg.code, disease, "surveillance alert raised");
            Ok(Some(alert))
        }
        // Raised meanwhile by a concurrent report.
        Err(e) if e.code == "error-duplicate" => Ok(None),
        Err(e) => Err(e),
    }
}

// ------------------------------------------------------------------------------------------------------------
// Alerts

/// The country of an officer (their institution's).
pub async fn officer_country(st: &AppState, p: &Principal) -> AppResult<String> {
    Ok(st
        .store()
        .get_institution(p.user.institution_id)
        .await?
        .country
        .as_str()
        .to_owned())
}

/// Whether an alert is for this officer: a local alert of a region of their country, or a foreign alert about a
/// region bordering one of their country's regions.
pub fn alert_for_officer(a: &SurvAlert, country: &str, regions: &[SurvRegion]) -> bool {
    if a.origin_node.is_empty() {
        a.country == country
    } else {
        a.local_region
            .as_deref()
            .and_then(|l| regions.iter().find(|r| r.code == l))
            .is_some_and(|r| r.country == country)
    }
}

/// The alerts an officer sees, newest first.
pub async fn alerts_for(st: &AppState, p: &Principal) -> AppResult<Vec<SurvAlert>> {
    p.require(OFFICERS)?;
    let country = officer_country(st, p).await?;
    let regions = st.store().surv_regions().await?;
    Ok(st
        .store()
        .surv_alerts(1000)
        .await?
        .into_iter()
        .filter(|a| alert_for_officer(a, &country, &regions))
        .collect())
}

/// One alert the officer may see, with its notes.
pub async fn alert_for(
    st: &AppState,
    p: &Principal,
    id: Uuid,
) -> AppResult<(SurvAlert, Vec<SurvNote>)> {
    p.require(OFFICERS)?;
    let a = st.store().surv_alert(id).await?;
    let country = officer_country(st, p).await?;
    let regions = st.store().surv_regions().await?;
    if !alert_for_officer(&a, &country, &regions) {
        return Err(AppError::not_found("alert"));
    }
    let notes = st.store().surv_notes(id).await?;
    Ok((a, notes))
}

/// Acknowledge an alert (once); a foreign alert's acknowledgement goes back to its node as `surv.ack`.
pub async fn acknowledge(st: &AppState, p: &Principal, id: Uuid) -> AppResult<SurvAlert> {
    let (a, _) = alert_for(st, p, id).await?;
    if a.status != "open" {
        return Err(AppError::new(
            axum::http::StatusCode::CONFLICT,
            "error-surv-acknowledged",
            "the alert was already acknowledged",
        ));
    }
    let at = Utc::now();
    let mut changes = vec![Change::AckSurvAlert {
        id,
        by: p.user.display_name.clone(),
        at,
    }];
    let mut detail = "acknowledged".to_owned();
    if !a.origin_node.is_empty() {
        if let Some(o) = fed::ack_envelope(st, &a, p, at)? {
            detail.push_str(&format!("; surv.ack to {}", o.destination));
            changes.push(Change::Enqueue(o));
        }
    }
    let audit = vec![event(
        p,
        AuditAction::Update,
        "surveillance_alert",
        id,
        None,
        &detail,
    )];
    match crate::federation::commit(st, changes, audit).await {
        Err(e) if e.code == "error-conflict" => Err(AppError::new(
            axum::http::StatusCode::CONFLICT,
            "error-surv-acknowledged",
            "the alert was already acknowledged",
        )),
        r => r,
    }?;
    Ok(st.store().surv_alert(id).await?)
}

/// Add a note to an alert's discussion.
pub async fn add_note(st: &AppState, p: &Principal, id: Uuid, body: &str) -> AppResult<SurvNote> {
    alert_for(st, p, id).await?;
    let body = body.trim();
    if body.is_empty() || body.chars().count() > 4000 {
        return Err(invalid("a note has 1 to 4000 characters"));
    }
    let n = SurvNote {
        id: Uuid::now_v7(),
        alert_id: id,
        kind: "note".into(),
        author_name: p.user.display_name.clone(),
        author_node: String::new(),
        body: body.to_owned(),
        created_at: Utc::now(),
    };
    let audit = vec![event(
        p,
        AuditAction::Create,
        "surveillance_note",
        n.id,
        None,
        "note on alert",
    )];
    st.store()
        .apply(vec![Change::InsertSurvNote(n.clone())], audit)
        .await?;
    Ok(n)
}

// ------------------------------------------------------------------------------------------------------------
// Line list reads (audited)

/// The line list (pseudonymised patient data): audited as a read, or as an export for CSV.
pub async fn cases(
    st: &AppState,
    p: &Principal,
    f: &SurvFilter,
    action: AuditAction,
) -> AppResult<Vec<SurvCase>> {
    p.require(OFFICERS)?;
    let list = st.store().surv_cases(f).await?;
    st.store()
        .append_audit(vec![event(
            p,
            action,
            "surveillance_case",
            "line-list",
            None,
            &format!(
                "{} case(s); disease={} region={}",
                list.len(),
                f.disease.as_deref().unwrap_or("*"),
                f.region.as_deref().unwrap_or("*")
            ),
        )])
        .await?;
    Ok(list)
}

/// Replace the node's regions (administrators).
pub async fn set_regions(st: &AppState, p: &Principal, regions: Vec<SurvRegion>) -> AppResult<()> {
    p.require(&[Role::Admin])?;
    let mut seen = BTreeSet::new();
    for r in &regions {
        let ok_code = !r.code.is_empty()
            && r.code.len() <= 32
            && r.code
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !ok_code {
            return Err(invalid(format!(
                "region code {:?} must be 1 to 32 letters, digits or '-'",
                r.code.chars().take(40).collect::<String>()
            )));
        }
        if !seen.insert(r.code.clone()) {
            return Err(invalid(format!("region code {} appears twice", r.code)));
        }
        if r.name.trim().is_empty() || r.name.chars().count() > 100 {
            return Err(invalid(format!(
                "region {}: the name has 1 to 100 characters",
                r.code
            )));
        }
        if r.country.len() != 2 || !r.country.chars().all(|c| c.is_ascii_uppercase()) {
            return Err(invalid(format!(
                "region {}: country must be two capital letters",
                r.code
            )));
        }
        if r.population <= 0 {
            return Err(invalid(format!(
                "region {}: population must be positive",
                r.code
            )));
        }
        for n in &r.neighbours {
            if caravan_federation::NodeId::new(n.node_id.as_str()).is_err()
                || n.region.trim().is_empty()
            {
                return Err(invalid(format!(
                    "region {}: a neighbour needs a valid node id and a region code",
                    r.code
                )));
            }
        }
    }
    let audit = vec![event(
        p,
        AuditAction::Update,
        "surveillance_regions",
        "regions",
        None,
        &format!("{} region(s)", regions.len()),
    )];
    st.store()
        .apply(vec![Change::SurvSetRegions(regions)], audit)
        .await?;
    Ok(())
}
