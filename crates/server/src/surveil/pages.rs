//! Pages for public-health officers: the dashboard (risk map, series, open alerts, neighbours' counts), one
//! series (time-series plot with bounds and alarms, forecast fan chart, weekly table), the report form and CSV
//! import, the line list, alerts with acknowledgement and discussion, and CSV export of every table. Every page
//! works without JavaScript; the charts are SVG rendered here.

use super::charts::{self, MapRegion, SeriesLabels};
use super::{disease_msg, SeriesWeek, DISEASES};
use crate::auth::{Principal, UiPrincipal};
use crate::error::{AppError, AppResult};
use crate::i18n::Tr;
use crate::ui::{ctx, done, render, Ctx};
use crate::AppState;
use askama::Template;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use caravan_domain::AuditAction;
use caravan_store::*;
use chrono::{Datelike, Utc};
use serde::Deserialize;
use std::collections::BTreeMap;
use uuid::Uuid;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui/surveillance", get(dashboard))
        .route("/ui/surveillance/series", get(series_page))
        .route("/ui/surveillance/report", get(report_page))
        .route("/ui/surveillance/report/case", post(report_case))
        .route("/ui/surveillance/report/aggregate", post(report_aggregate))
        .route("/ui/surveillance/report/import", post(report_import))
        .route("/ui/surveillance/cases", get(cases_page))
        .route("/ui/surveillance/alerts", get(alerts_page))
        .route("/ui/surveillance/alerts/{id}", get(alert_page))
        .route("/ui/surveillance/alerts/{id}/ack", post(alert_ack))
        .route("/ui/surveillance/alerts/{id}/notes", post(alert_note))
        .route("/ui/surveillance/export/{name}", get(export))
        .route("/ui/admin/surveillance", get(admin_page).post(admin_save))
}

fn disease_name(tr: &Tr<'_>, code: &str) -> String {
    format!("{code} {}", tr.t(&disease_msg(code)))
}

fn fmt_bound(u: Option<f64>) -> String {
    u.map(|v| format!("{v:.2}")).unwrap_or_default()
}

// ---------- dashboard ----------

pub struct SeriesRow {
    pub disease: String,
    pub region: String,
    pub region_name: String,
    pub week: String,
    pub count: i64,
    pub upperbound: String,
    pub alarm: bool,
    pub href: String,
}

pub struct AlertRow {
    pub href: String,
    pub disease: String,
    pub region: String,
    pub week: String,
    pub observed: String,
    pub upperbound: String,
    pub status: String,
    pub open: bool,
    pub origin: String,
}

pub struct ForeignRow {
    pub node: String,
    pub region: String,
    pub disease: String,
    pub week: String,
    pub count: i64,
}

#[derive(Template)]
#[template(path = "surv_dashboard.html")]
struct Dashboard<'a> {
    ctx: Ctx<'a>,
    diseases: Vec<(String, String)>,
    disease: String,
    map_svg: String,
    series: Vec<SeriesRow>,
    alerts: Vec<AlertRow>,
    foreign: Vec<ForeignRow>,
    method: String,
}

#[derive(Deserialize, Default)]
struct DiseaseQuery {
    #[serde(default)]
    disease: Option<String>,
}

fn alert_row(tr: &Tr<'_>, a: &SurvAlert) -> AlertRow {
    AlertRow {
        href: format!("/ui/surveillance/alerts/{}", a.id),
        disease: disease_name(tr, &a.disease),
        region: format!("{} ({})", a.region_name, a.region),
        week: format!("{}-W{:02}", a.iso_year, a.iso_week),
        observed: format!("{}", a.observed),
        upperbound: fmt_bound(a.upperbound),
        status: tr.t(&format!("surv-status-{}", a.status)),
        open: a.status == "open",
        origin: if a.origin_node.is_empty() {
            tr.t("surv-origin-local")
        } else {
            a.origin_node.clone()
        },
    }
}

/// Risk of each region for one disease: an alert of the last four weeks (acknowledged or not) is `alarm`; otherwise the
/// probability of at least one imported infection over the next 7 days (`forecast::metapop::importation_risk`)
/// from the last two weeks' counts of every region, under a default mobility assumption (0.02 % of a region's
/// people travel to each other region of the node per day, 0.1 % across a border to a neighbouring region) until
/// a mobility matrix is configured.
pub async fn risk_map(
    st: &AppState,
    tr: &Tr<'_>,
    disease: &str,
    officer_country: &str,
) -> AppResult<String> {
    let regions = st.store().surv_regions().await?;
    let weeks = st
        .store()
        .surv_weeks(&SurvFilter {
            disease: Some(disease.to_owned()),
            ..SurvFilter::default()
        })
        .await?;
    let foreign = st.store().surv_foreign_counts().await?;
    let alerts = st.store().surv_alerts(1000).await?;
    let now = Utc::now().date_naive();
    let recent = |y: i32, w: u32, n: i64| {
        chrono::NaiveDate::from_isoywd_opt(y, w, chrono::Weekday::Mon)
            .is_some_and(|d| (now - d).num_days() < 7 * n + 7)
    };
    // Region index: local regions, then foreign neighbours.
    let mut names: Vec<(String, String, bool, f64)> = Vec::new(); // code, name, foreign, population
    for r in &regions {
        names.push((r.code.clone(), r.name.clone(), false, r.population as f64));
    }
    let mut links = Vec::new();
    for r in &regions {
        for n in &r.neighbours {
            let key = format!("{}:{}", n.node_id, n.region);
            if !names.iter().any(|x| x.0 == key) {
                names.push((
                    key.clone(),
                    format!("{} ({})", n.name, n.node_id),
                    true,
                    r.population as f64,
                ));
            }
            links.push((r.code.clone(), key));
        }
    }
    let idx = |code: &str| names.iter().position(|x| x.0 == code);
    let mut infectious = vec![0.0; names.len()];
    for w in weeks.iter().filter(|w| recent(w.iso_year, w.iso_week, 1)) {
        if let Some(i) = idx(&w.region) {
            infectious[i] += w.total() as f64;
        }
    }
    for f in foreign
        .iter()
        .filter(|f| f.disease == disease && recent(f.iso_year, f.iso_week, 1))
    {
        if let Some(i) = idx(&format!("{}:{}", f.node_id, f.region)) {
            infectious[i] += f.count as f64;
        }
    }
    let mut triplets = Vec::new();
    for (i, a) in names.iter().enumerate() {
        for (j, b) in names.iter().enumerate() {
            if i != j && !a.2 && !b.2 {
                triplets.push((i, j, 2e-4 * b.3));
            }
        }
    }
    for (a, b) in &links {
        if let (Some(i), Some(j)) = (idx(a), idx(b)) {
            triplets.push((i, j, 1e-3 * names[j].3));
            triplets.push((j, i, 1e-3 * names[i].3));
        }
    }
    let population: Vec<f64> = names.iter().map(|x| x.3.max(1.0)).collect();
    let risk = forecast::metapop::Csr::from_triplets(names.len(), &triplets)
        .and_then(|m| forecast::metapop::importation_risk(&m, &infectious, &population, 7.0))
        .map_err(AppError::internal)?;
    let mut out = Vec::new();
    for (i, (code, name, is_foreign, _)) in names.iter().enumerate() {
        let alarm = alerts.iter().any(|a| {
            a.disease == disease
                && recent(a.iso_year, a.iso_week, 4)
                && if *is_foreign {
                    format!("{}:{}", a.origin_node, a.region) == *code
                } else {
                    a.origin_node.is_empty() && &a.region == code
                }
        });
        let p = risk.prob_at_least_one.get(i).copied().unwrap_or(0.0);
        let level = if alarm {
            "alarm"
        } else if p >= 0.5 {
            "high"
        } else if p >= 0.1 {
            "elevated"
        } else if infectious[i] > 0.0 || p > 0.0 {
            "low"
        } else {
            "none"
        };
        let local_country = regions
            .iter()
            .find(|r| &r.code == code)
            .map(|r| r.country.as_str());
        out.push(MapRegion {
            code: code.clone(),
            name: name.clone(),
            level,
            note: tr.t2(
                "surv-map-note",
                "cases",
                infectious[i],
                "risk",
                format!("{:.0}", p * 100.0),
            ),
            foreign: *is_foreign,
            href: (!*is_foreign && local_country == Some(officer_country))
                .then(|| format!("/ui/surveillance/series?disease={disease}&region={code}")),
        });
    }
    let legend: Vec<(&'static str, String)> = ["alarm", "high", "elevated", "low", "none"]
        .into_iter()
        .map(|l| (l, tr.t(&format!("surv-level-{l}"))))
        .collect();
    Ok(charts::region_map(
        &tr.t1("surv-map-title", "disease", disease_name(tr, disease)),
        &out,
        &links,
        &legend,
    ))
}

async fn dashboard(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Query(q): Query<DiseaseQuery>,
) -> Response {
    let r = async {
        p.require(super::OFFICERS)?;
        let c = ctx(&st, Some(&p), &headers, "surv-title", "/ui/surveillance");
        let country = super::officer_country(&st, &p).await?;
        let regions = st.store().surv_regions().await?;
        let weeks = st.store().surv_weeks(&SurvFilter::default()).await?;
        let alerts = super::alerts_for(&st, &p).await?;
        // The disease shown on the map: the asked one, else that of the latest week's alert, else the first reported.
        let disease = q
            .disease
            .filter(|d| DISEASES.contains(&d.as_str()))
            .or_else(|| {
                alerts
                    .iter()
                    .max_by_key(|a| (a.iso_year, a.iso_week, a.status == "open"))
                    .map(|a| a.disease.clone())
            })
            .or_else(|| weeks.first().map(|w| w.disease.clone()))
            .unwrap_or_else(|| DISEASES[0].to_owned());
        let map_svg = risk_map(&st, &c.tr, &disease, &country).await?;
        let mut keys: Vec<(String, String)> = weeks
            .iter()
            .map(|w| (w.disease.clone(), w.region.clone()))
            .collect();
        keys.dedup();
        let method = super::method_of(&st);
        let mut series = Vec::new();
        for (d, reg) in keys {
            let Some(region) = regions
                .iter()
                .find(|r| r.code == reg && r.country == country)
            else {
                continue;
            };
            let counts = super::weekly_counts(&st, &d, &reg, None).await?;
            let n = counts.len();
            let m = method.clone();
            let last = tokio::task::spawn_blocking(move || super::detect_weeks(&counts, &m, n..=n))
                .await
                .map_err(AppError::internal)?
                .map_err(AppError::internal)?;
            if let Some(w) = last.first() {
                series.push(SeriesRow {
                    disease: disease_name(&c.tr, &d),
                    region: reg.clone(),
                    region_name: region.name.clone(),
                    week: format!("{}-W{:02}", w.iso_year, w.iso_week),
                    count: w.count,
                    upperbound: fmt_bound(w.upperbound),
                    alarm: w.alarm,
                    href: format!("/ui/surveillance/series?disease={d}&region={reg}"),
                });
            }
        }
        let foreign = latest_foreign(&st.store().surv_foreign_counts().await?);
        let page = Dashboard {
            diseases: DISEASES
                .iter()
                .map(|d| (d.to_string(), disease_name(&c.tr, d)))
                .collect(),
            disease,
            map_svg,
            series,
            alerts: alerts
                .iter()
                .take(10)
                .map(|a| alert_row(&c.tr, a))
                .collect(),
            foreign: foreign
                .into_iter()
                .map(|f| ForeignRow {
                    node: f.node_id,
                    region: f.region,
                    disease: disease_name(&c.tr, &f.disease),
                    week: format!("{}-W{:02}", f.iso_year, f.iso_week),
                    count: f.count,
                })
                .collect(),
            method: format!("{} / {}", method.name(), super::fallback_method().name()),
            ctx: c,
        };
        Ok(render(&page))
    }
    .await;
    done(&st, &p, &headers, r)
}

/// The latest week of each neighbour's region × disease.
fn latest_foreign(all: &[SurvForeignCount]) -> Vec<SurvForeignCount> {
    let mut m: BTreeMap<(String, String, String), SurvForeignCount> = BTreeMap::new();
    for f in all {
        m.insert(
            (f.node_id.clone(), f.region.clone(), f.disease.clone()),
            f.clone(),
        );
    }
    m.into_values().collect()
}

// ---------- one series ----------

#[derive(Template)]
#[template(path = "surv_series.html")]
struct SeriesPage<'a> {
    ctx: Ctx<'a>,
    disease: String,
    region: String,
    heading: String,
    chart_svg: String,
    forecast_svg: Option<String>,
    forecast_note: String,
    weeks: Vec<SeriesWeek>,
}

#[derive(Deserialize)]
struct SeriesQuery {
    disease: String,
    region: String,
}

/// Check the disease and region of a query against the node's list and the officer's country.
async fn checked_series(
    st: &AppState,
    p: &Principal,
    disease: &str,
    region: &str,
) -> AppResult<SurvRegion> {
    p.require(super::OFFICERS)?;
    if !DISEASES.contains(&disease) {
        return Err(AppError::unprocessable(
            "error-surv-invalid",
            format!(
                "disease {:?} is not a notifiable disease of this node",
                disease.chars().take(40).collect::<String>()
            ),
        ));
    }
    let country = super::officer_country(st, p).await?;
    st.store()
        .surv_regions()
        .await?
        .into_iter()
        .find(|r| r.code == region && r.country == country)
        .ok_or_else(|| AppError::not_found("region"))
}

/// Daily counts by onset date of the line list over the last 120 days of data, for the forecast.
async fn daily_incidence(
    st: &AppState,
    p: &Principal,
    disease: &str,
    region: &str,
) -> AppResult<Vec<f64>> {
    let cases = super::cases(
        st,
        p,
        &SurvFilter {
            disease: Some(disease.to_owned()),
            region: Some(region.to_owned()),
            limit: Some(200_000),
        },
        AuditAction::Read,
    )
    .await?;
    let Some(last) = cases.iter().map(|c| c.onset_date).max() else {
        return Ok(Vec::new());
    };
    let first = cases
        .iter()
        .map(|c| c.onset_date)
        .filter(|d| (last - *d).num_days() < 120)
        .min()
        .unwrap_or(last);
    let n = (last - first).num_days() as usize + 1;
    let mut daily = vec![0.0; n];
    for c in &cases {
        let i = (c.onset_date - first).num_days();
        if i >= 0 {
            if let Some(v) = daily.get_mut(i as usize) {
                *v += 1.0;
            }
        }
    }
    Ok(daily)
}

/// An SEIR fit (negative binomial likelihood; latent period 5.2 days, infectious period 7 days fixed, β, ρ, I(0)
/// and the dispersion estimated) and a 28-day ensemble forecast, as a fan chart.
///
/// `labels` translate the chart's English axis and legend texts (`forecast::svg` writes them in English): each
/// `(english, translated)` pair replaces the text element that holds exactly `english`.
pub fn forecast_svg(
    daily: &[f64],
    population: f64,
    title: &str,
    labels: &[(&str, String)],
) -> Result<String, String> {
    use forecast::fit::{fit, FitSpec, Likelihood, Observation};
    use forecast::model::{Model, ModelKind};
    let model =
        Model::new(ModelKind::Seir { sigma: 1.0 / 5.2 }, population).map_err(|e| e.to_string())?;
    let mut spec = FitSpec::new(model, Observation::Incidence, Likelihood::NegBin);
    spec.fixed_gamma = Some(1.0 / 7.0);
    let f = fit(&spec, daily).map_err(|e| e.to_string())?;
    let fc = forecast::ensemble::forecast(
        &f,
        daily,
        &forecast::ensemble::ForecastConfig {
            horizon: 28,
            members: 500,
            seed: 1,
        },
    )
    .map_err(|e| e.to_string())?;
    let mut svg = forecast::svg::fan_chart(&fc, title);
    for (en, tr) in labels {
        svg = svg.replace(
            &format!(">{en}<"),
            &format!(">{}<", forecast::svg::escape(tr)),
        );
    }
    Ok(svg)
}

async fn series_page(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Query(q): Query<SeriesQuery>,
) -> Response {
    let r = async {
        let region = checked_series(&st, &p, &q.disease, &q.region).await?;
        let c = ctx(
            &st,
            Some(&p),
            &headers,
            "surv-series-title",
            "/ui/surveillance",
        );
        let weeks = super::series(&st, &q.disease, &q.region).await?;
        let heading = format!(
            "{} · {} ({})",
            disease_name(&c.tr, &q.disease),
            region.name,
            region.code
        );
        let chart_svg = charts::series_chart(
            &weeks,
            &SeriesLabels {
                title: &heading,
                observed: &c.tr.t("surv-observed"),
                upperbound: &c.tr.t("surv-upperbound"),
                alarm: &c.tr.t("surv-alarm"),
                week: &c.tr.t("surv-iso-week"),
            },
            104,
        );
        let daily = daily_incidence(&st, &p, &q.disease, &q.region).await?;
        let (forecast_svg, forecast_note) = if daily.len() < 14 || daily.iter().sum::<f64>() < 20.0
        {
            (None, c.tr.t("surv-forecast-too-little"))
        } else {
            let title = c.tr.t1("surv-forecast-title", "region", &region.name);
            let pop = region.population as f64;
            let labels: Vec<(&str, String)> = [
                ("day", "surv-fc-day"),
                ("reported cases per day", "surv-fc-cases"),
                ("forecast", "surv-fc-forecast"),
                ("95% interval", "surv-fc-95"),
                ("50% interval", "surv-fc-50"),
                ("median", "surv-fc-median"),
            ]
            .into_iter()
            .map(|(en, id)| (en, c.tr.t(id)))
            .collect();
            match tokio::task::spawn_blocking(move || forecast_svg(&daily, pop, &title, &labels))
                .await
                .map_err(AppError::internal)?
            {
                Ok(svg) => (Some(svg), c.tr.t("surv-forecast-note")),
                Err(e) => (None, c.tr.t1("surv-forecast-failed", "reason", e)),
            }
        };
        let mut weeks = weeks;
        weeks.reverse();
        Ok(render(&SeriesPage {
            disease: q.disease.clone(),
            region: q.region.clone(),
            heading,
            chart_svg,
            forecast_svg,
            forecast_note,
            weeks,
            ctx: c,
        }))
    }
    .await;
    done(&st, &p, &headers, r)
}

// ---------- reporting ----------

#[derive(Template)]
#[template(path = "surv_report.html")]
struct ReportPage<'a> {
    ctx: Ctx<'a>,
    diseases: Vec<(String, String)>,
    regions: Vec<(String, String)>,
    age_bands: Vec<(&'static str, String)>,
    sexes: Vec<(&'static str, String)>,
    outcomes: Vec<(&'static str, String)>,
    today: String,
    year: i32,
    week: u32,
    case_columns: String,
    aggregate_columns: String,
    error: Option<String>,
}

async fn report_view(
    st: &AppState,
    p: &Principal,
    headers: &HeaderMap,
    error: Option<String>,
    flash: Option<String>,
) -> AppResult<Response> {
    p.require(super::OFFICERS)?;
    let mut c = ctx(
        st,
        Some(p),
        headers,
        "surv-report-title",
        "/ui/surveillance/report",
    );
    c.flash = flash;
    let country = super::officer_country(st, p).await?;
    let regions = st
        .store()
        .surv_regions()
        .await?
        .into_iter()
        .filter(|r| r.country == country)
        .map(|r| (r.code.clone(), format!("{} ({})", r.name, r.code)))
        .collect();
    let opts = |list: &'static [&'static str], prefix: &str| -> Vec<(&'static str, String)> {
        list.iter()
            .map(|v| (*v, c.tr.t(&format!("{prefix}-{}", v.replace('+', "plus")))))
            .collect()
    };
    let today = Utc::now().date_naive();
    let iso = today.iso_week();
    let page = ReportPage {
        diseases: DISEASES
            .iter()
            .map(|d| (d.to_string(), disease_name(&c.tr, d)))
            .collect(),
        regions,
        age_bands: opts(super::AGE_BANDS, "surv-age"),
        sexes: opts(super::SEXES, "surv-sex"),
        outcomes: opts(super::OUTCOMES, "surv-outcome"),
        today: today.to_string(),
        year: iso.year(),
        week: iso.week(),
        case_columns: super::import::CASE_COLUMNS.join(","),
        aggregate_columns: super::import::AGGREGATE_COLUMNS.join(","),
        error,
        ctx: c,
    };
    let mut r = render(&page);
    if page_has_error(&page) {
        *r.status_mut() = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
    }
    Ok(r)
}

fn page_has_error(p: &ReportPage<'_>) -> bool {
    p.error.is_some()
}

async fn report_page(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
) -> Response {
    let r = report_view(&st, &p, &headers, None, None).await;
    done(&st, &p, &headers, r)
}

/// After a report: the report page again with what happened, or with the refusal and nothing stored.
async fn after_report(
    st: &AppState,
    p: &Principal,
    headers: &HeaderMap,
    r: AppResult<super::ReportOutcome>,
) -> AppResult<Response> {
    let tr = Tr {
        i18n: st.i18n(),
        lang: crate::ui::lang_for(st, Some(p), headers),
    };
    match r {
        Ok(o) => {
            let mut flash = tr.tn(
                "surv-report-done",
                &[
                    ("cases", o.cases.to_string()),
                    ("aggregates", o.aggregates.to_string()),
                    ("alerts", o.alerts.len().to_string()),
                ],
            );
            if o.detection_failed {
                flash.push(' ');
                flash.push_str(&tr.t("surv-detection-failed"));
            }
            report_view(st, p, headers, None, Some(flash)).await
        }
        Err(e)
            if e.status.is_client_error()
                && e.code != "error-forbidden"
                && e.code != "error-csrf" =>
        {
            let msg = format!("{} {}", tr.t(e.code), e.message);
            report_view(st, p, headers, Some(msg), None).await
        }
        Err(e) => Err(e),
    }
}

#[derive(Deserialize)]
struct CaseForm {
    #[serde(default)]
    csrf: String,
    #[serde(flatten)]
    case: super::CaseInput,
}

async fn report_case(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Form(f): Form<CaseForm>,
) -> Response {
    let r = async {
        p.check_csrf(Some(&f.csrf))?;
        let res = async {
            let b = super::validate(&st, &p, std::slice::from_ref(&f.case), &[], "form").await?;
            super::submit(&st, &p, b, "form").await
        }
        .await;
        after_report(&st, &p, &headers, res).await
    }
    .await;
    done(&st, &p, &headers, r)
}

#[derive(Deserialize)]
struct AggregateForm {
    #[serde(default)]
    csrf: String,
    disease: String,
    region: String,
    iso_year: String,
    iso_week: String,
    count: String,
}

async fn report_aggregate(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Form(f): Form<AggregateForm>,
) -> Response {
    let r = async {
        p.check_csrf(Some(&f.csrf))?;
        let res = async {
            let num = |what: &str, v: &str| {
                v.trim().parse::<i64>().map_err(|_| {
                    AppError::unprocessable(
                        "error-surv-invalid",
                        format!(
                            "{what} {:?} is not a whole number",
                            v.chars().take(40).collect::<String>()
                        ),
                    )
                })
            };
            let a = super::AggregateInput {
                disease: f.disease.clone(),
                region: f.region.clone(),
                iso_year: num("iso_year", &f.iso_year)?,
                iso_week: num("iso_week", &f.iso_week)?,
                count: num("count", &f.count)?,
            };
            let b = super::validate(&st, &p, &[], &[a], "form").await?;
            super::submit(&st, &p, b, "form").await
        }
        .await;
        after_report(&st, &p, &headers, res).await
    }
    .await;
    done(&st, &p, &headers, r)
}

async fn report_import(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    mp: Multipart,
) -> Response {
    let r = async {
        let text = match crate::ui::read_upload_form(&p, mp).await?.file {
            Some(f) => Some(String::from_utf8(f.bytes.to_vec()).map_err(|_| {
                AppError::unprocessable("error-surv-import", "the file is not UTF-8 text")
            })?),
            None => None,
        };
        let res = match text {
            Some(t) => super::import::import(&st, &p, &t).await,
            None => Err(AppError::unprocessable(
                "error-surv-import",
                "no file was sent",
            )),
        };
        after_report(&st, &p, &headers, res).await
    }
    .await;
    done(&st, &p, &headers, r)
}

// ---------- line list ----------

#[derive(Template)]
#[template(path = "surv_table.html")]
struct TablePage<'a> {
    ctx: Ctx<'a>,
    intro: String,
    export: String,
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

#[derive(Deserialize, Default)]
struct ListQuery {
    #[serde(default)]
    disease: Option<String>,
    #[serde(default)]
    region: Option<String>,
}

impl ListQuery {
    fn filter(&self, limit: Option<u32>) -> SurvFilter {
        SurvFilter {
            disease: self.disease.clone().filter(|s| !s.is_empty()),
            region: self.region.clone().filter(|s| !s.is_empty()),
            limit,
        }
    }
}

fn case_cells(tr: &Tr<'_>, c: &SurvCase) -> Vec<String> {
    vec![
        c.pseudonym.clone(),
        disease_name(tr, &c.disease),
        c.region.clone(),
        c.onset_date.to_string(),
        c.report_date.to_string(),
        c.age_band.clone(),
        tr.t(&format!("surv-sex-{}", c.sex)),
        tr.t(&format!("surv-outcome-{}", c.outcome)),
        tr.t(if c.lab_confirmed {
            "surv-yes"
        } else {
            "surv-no"
        }),
    ]
}

async fn cases_page(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    let r = async {
        let list = super::cases(&st, &p, &q.filter(Some(500)), AuditAction::Read).await?;
        let c = ctx(
            &st,
            Some(&p),
            &headers,
            "surv-cases-title",
            "/ui/surveillance/cases",
        );
        let rows = list.iter().map(|k| case_cells(&c.tr, k)).collect();
        Ok(render(&TablePage {
            intro: c.tr.t("surv-cases-intro"),
            export: "/ui/surveillance/export/cases.csv".into(),
            headers: [
                "surv-col-pseudonym",
                "surv-col-disease",
                "surv-col-region",
                "surv-col-onset",
                "surv-col-report",
                "surv-col-age",
                "surv-col-sex",
                "surv-col-outcome",
                "surv-col-lab",
            ]
            .iter()
            .map(|h| c.tr.t(h))
            .collect(),
            rows,
            ctx: c,
        }))
    }
    .await;
    done(&st, &p, &headers, r)
}

// ---------- alerts ----------

#[derive(Template)]
#[template(path = "surv_alerts.html")]
struct AlertsPage<'a> {
    ctx: Ctx<'a>,
    alerts: Vec<AlertRow>,
}

async fn alerts_page(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
) -> Response {
    let r = async {
        let list = super::alerts_for(&st, &p).await?;
        let c = ctx(
            &st,
            Some(&p),
            &headers,
            "surv-alerts-title",
            "/ui/surveillance/alerts",
        );
        Ok(render(&AlertsPage {
            alerts: list.iter().map(|a| alert_row(&c.tr, a)).collect(),
            ctx: c,
        }))
    }
    .await;
    done(&st, &p, &headers, r)
}

pub struct NoteView {
    pub author: String,
    pub at: String,
    pub body: String,
    pub ack: bool,
}

#[derive(Template)]
#[template(path = "surv_alert.html")]
struct AlertPage<'a> {
    ctx: Ctx<'a>,
    id: String,
    row: AlertRow,
    method: String,
    local_region: String,
    acknowledged: String,
    neighbours: Vec<String>,
    notes: Vec<NoteView>,
    series_href: Option<String>,
}

async fn alert_view(
    st: &AppState,
    p: &Principal,
    headers: &HeaderMap,
    id: Uuid,
    flash: Option<String>,
) -> AppResult<Response> {
    let (a, notes) = super::alert_for(st, p, id).await?;
    let mut c = ctx(
        st,
        Some(p),
        headers,
        "surv-alert-title",
        "/ui/surveillance/alerts",
    );
    c.flash = flash;
    let regions = st.store().surv_regions().await?;
    let neighbours = if a.origin_node.is_empty() {
        regions
            .iter()
            .find(|r| r.code == a.region)
            .map(|r| {
                r.neighbours
                    .iter()
                    .map(|n| format!("{} ({}, {})", n.name, n.region, n.node_id))
                    .collect()
            })
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let page = AlertPage {
        id: a.id.to_string(),
        row: alert_row(&c.tr, &a),
        method: a.method.clone(),
        local_region: a.local_region.clone().unwrap_or_default(),
        acknowledged: match (&a.acknowledged_by, a.acknowledged_at) {
            (Some(b), Some(t)) => c.tr.t2(
                "surv-acknowledged-by",
                "name",
                b,
                "at",
                t.format("%Y-%m-%d %H:%M UTC"),
            ),
            _ => String::new(),
        },
        neighbours,
        notes: notes
            .iter()
            .map(|n| NoteView {
                author: if n.author_node.is_empty() {
                    n.author_name.clone()
                } else {
                    format!("{} ({})", n.author_name, n.author_node)
                },
                at: n.created_at.format("%Y-%m-%d %H:%M UTC").to_string(),
                body: n.body.clone(),
                ack: n.kind == "ack",
            })
            .collect(),
        series_href: a.origin_node.is_empty().then(|| {
            format!(
                "/ui/surveillance/series?disease={}&region={}",
                a.disease, a.region
            )
        }),
        ctx: c,
    };
    Ok(render(&page))
}

async fn alert_page(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let r = async {
        let id: Uuid = crate::api::parse_id("alert", &id)?;
        alert_view(&st, &p, &headers, id, None).await
    }
    .await;
    done(&st, &p, &headers, r)
}

#[derive(Deserialize)]
struct NoteForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    body: String,
}

async fn alert_ack(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<NoteForm>,
) -> Response {
    let r = async {
        p.check_csrf(Some(&f.csrf))?;
        let id: Uuid = crate::api::parse_id("alert", &id)?;
        super::acknowledge(&st, &p, id).await?;
        Ok(Redirect::to(&format!("/ui/surveillance/alerts/{id}")).into_response())
    }
    .await;
    done(&st, &p, &headers, r)
}

async fn alert_note(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<NoteForm>,
) -> Response {
    let r = async {
        p.check_csrf(Some(&f.csrf))?;
        let id: Uuid = crate::api::parse_id("alert", &id)?;
        super::add_note(&st, &p, id, &f.body).await?;
        Ok(Redirect::to(&format!("/ui/surveillance/alerts/{id}")).into_response())
    }
    .await;
    done(&st, &p, &headers, r)
}

// ---------- CSV export ----------

fn csv_response(name: &str, rows: Vec<Vec<String>>) -> AppResult<Response> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.write_record(&r).map_err(AppError::internal)?;
    }
    let bytes = w.into_inner().map_err(AppError::internal)?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// The CSV of one table: `cases.csv` (the line list; audited as an export), `aggregates.csv`, `weeks.csv`
/// (every series with detection), `series.csv?disease=&region=`, `alerts.csv`, `neighbours.csv`.
pub async fn export_csv(
    st: &AppState,
    p: &Principal,
    name: &str,
    q: &BTreeMap<String, String>,
) -> AppResult<Response> {
    p.require(super::OFFICERS)?;
    let lq = ListQuery {
        disease: q.get("disease").cloned(),
        region: q.get("region").cloned(),
    };
    let mut rows: Vec<Vec<String>> = Vec::new();
    let head = |cols: &[&str]| cols.iter().map(|c| c.to_string()).collect::<Vec<_>>();
    match name {
        "cases.csv" => {
            rows.push(head(super::import::CASE_COLUMNS));
            for c in super::cases(st, p, &lq.filter(None), AuditAction::Export).await? {
                rows.push(vec![
                    c.pseudonym,
                    c.disease,
                    c.region,
                    c.onset_date.to_string(),
                    c.report_date.to_string(),
                    c.age_band,
                    c.sex,
                    c.outcome,
                    if c.lab_confirmed { "yes" } else { "no" }.into(),
                ]);
            }
        }
        "aggregates.csv" => {
            rows.push(head(super::import::AGGREGATE_COLUMNS));
            for a in st.store().surv_aggregates(&lq.filter(None)).await? {
                rows.push(vec![
                    a.disease,
                    a.region,
                    a.iso_year.to_string(),
                    a.iso_week.to_string(),
                    a.count.to_string(),
                ]);
            }
        }
        "weeks.csv" => {
            rows.push(head(&[
                "disease",
                "region",
                "iso_year",
                "iso_week",
                "cases",
                "aggregate",
                "total",
            ]));
            for w in st.store().surv_weeks(&lq.filter(None)).await? {
                rows.push(vec![
                    w.disease.clone(),
                    w.region.clone(),
                    w.iso_year.to_string(),
                    w.iso_week.to_string(),
                    w.cases.to_string(),
                    w.aggregate.to_string(),
                    w.total().to_string(),
                ]);
            }
        }
        "series.csv" => {
            let (Some(d), Some(r)) = (&lq.disease, &lq.region) else {
                return Err(AppError::bad_request("series.csv needs disease and region"));
            };
            checked_series(st, p, d, r).await?;
            rows.push(head(&[
                "iso_year",
                "iso_week",
                "week_start",
                "observed",
                "upperbound",
                "alarm",
                "method",
            ]));
            for w in super::series(st, d, r).await? {
                rows.push(vec![
                    w.iso_year.to_string(),
                    w.iso_week.to_string(),
                    w.week_start.to_string(),
                    w.count.to_string(),
                    w.upperbound.map(|u| u.to_string()).unwrap_or_default(),
                    u8::from(w.alarm).to_string(),
                    w.method,
                ]);
            }
        }
        "alerts.csv" => {
            rows.push(head(&[
                "id",
                "origin_node",
                "disease",
                "region",
                "region_name",
                "country",
                "local_region",
                "iso_year",
                "iso_week",
                "observed",
                "upperbound",
                "method",
                "created_at",
                "status",
                "acknowledged_by",
                "acknowledged_at",
            ]));
            for a in super::alerts_for(st, p).await? {
                rows.push(vec![
                    a.id.to_string(),
                    a.origin_node,
                    a.disease,
                    a.region,
                    a.region_name,
                    a.country,
                    a.local_region.unwrap_or_default(),
                    a.iso_year.to_string(),
                    a.iso_week.to_string(),
                    a.observed.to_string(),
                    a.upperbound.map(|u| u.to_string()).unwrap_or_default(),
                    a.method,
                    a.created_at.to_rfc3339(),
                    a.status,
                    a.acknowledged_by.unwrap_or_default(),
                    a.acknowledged_at
                        .map(|t| t.to_rfc3339())
                        .unwrap_or_default(),
                ]);
            }
        }
        "neighbours.csv" => {
            rows.push(head(&[
                "node_id", "region", "disease", "iso_year", "iso_week", "count",
            ]));
            for f in st.store().surv_foreign_counts().await? {
                rows.push(vec![
                    f.node_id,
                    f.region,
                    f.disease,
                    f.iso_year.to_string(),
                    f.iso_week.to_string(),
                    f.count.to_string(),
                ]);
            }
        }
        _ => return Err(AppError::not_found("export")),
    }
    csv_response(name, rows)
}

async fn export(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let r = export_csv(&st, &p, &name, &q).await;
    done(&st, &p, &headers, r)
}

// ---------- administration: regions and neighbours ----------

#[derive(Template)]
#[template(path = "surv_admin.html")]
struct AdminPage<'a> {
    ctx: Ctx<'a>,
    regions: Vec<SurvRegion>,
    json: String,
    error: Option<String>,
}

async fn admin_view(
    st: &AppState,
    p: &Principal,
    headers: &HeaderMap,
    json: Option<String>,
    error: Option<String>,
) -> AppResult<Response> {
    p.require(&[caravan_domain::Role::Admin])?;
    let regions = st.store().surv_regions().await?;
    let json = match json {
        Some(j) => j,
        None => serde_json::to_string_pretty(&regions).map_err(AppError::internal)?,
    };
    let failed = error.is_some();
    let mut r = render(&AdminPage {
        ctx: ctx(
            st,
            Some(p),
            headers,
            "surv-admin-title",
            "/ui/admin/surveillance",
        ),
        regions,
        json,
        error,
    });
    if failed {
        *r.status_mut() = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
    }
    Ok(r)
}

async fn admin_page(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
) -> Response {
    let r = admin_view(&st, &p, &headers, None, None).await;
    done(&st, &p, &headers, r)
}

#[derive(Deserialize)]
struct AdminForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    regions: String,
}

async fn admin_save(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Form(f): Form<AdminForm>,
) -> Response {
    let r = async {
        p.require(&[caravan_domain::Role::Admin])?;
        p.check_csrf(Some(&f.csrf))?;
        let res = match serde_json::from_str::<Vec<SurvRegion>>(&f.regions) {
            Ok(regions) => super::set_regions(&st, &p, regions).await,
            Err(e) => Err(AppError::unprocessable(
                "error-surv-invalid",
                format!("the regions are not valid JSON: {e}"),
            )),
        };
        match res {
            Ok(()) => Ok(Redirect::to("/ui/admin/surveillance").into_response()),
            Err(e) if e.status.is_client_error() => {
                let tr = Tr {
                    i18n: st.i18n(),
                    lang: crate::ui::lang_for(&st, Some(&p), &headers),
                };
                let msg = format!("{} {}", tr.t(e.code), e.message);
                admin_view(&st, &p, &headers, Some(f.regions.clone()), Some(msg)).await
            }
            Err(e) => Err(e),
        }
    }
    .await;
    done(&st, &p, &headers, r)
}
