//! `/api/v1/surveillance/…`: reports (JSON, CSV), series, the line list, alerts, regions. Bearer tokens or a
//! session (with `X-CSRF-Token` for writes); listed in `api::ROUTES`. The role is checked before the body or the
//! path is read, so a refused role always gets 403.

use super::{AggregateInput, CaseInput, OFFICERS};
use crate::api::{body, csrf, parse_id, ApiQuery};
use crate::auth::Principal;
use crate::error::{AppError, AppResult};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use caravan_domain::{AuditAction, Role};
use caravan_store::{SurvFilter, SurvRegion};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/surveillance/diseases", get(diseases))
        .route("/surveillance/regions", get(regions).put(put_regions))
        .route("/surveillance/reports", post(report))
        .route("/surveillance/import", post(import))
        .route("/surveillance/cases", get(cases))
        .route("/surveillance/series", get(series))
        .route("/surveillance/alerts", get(alerts))
        .route("/surveillance/alerts/{id}", get(alert))
        .route("/surveillance/alerts/{id}/ack", post(ack))
        .route("/surveillance/alerts/{id}/notes", post(note))
}

async fn diseases(State(st): State<AppState>, p: Principal) -> AppResult<Json<Value>> {
    p.require(&[Role::PublicHealthOfficer, Role::Admin])?;
    let tr = crate::i18n::Tr {
        i18n: st.i18n(),
        lang: "en",
    };
    Ok(Json(Value::Array(
        super::DISEASES
            .iter()
            .map(|d| json!({ "code": d, "name": tr.t(&super::disease_msg(d)) }))
            .collect(),
    )))
}

async fn regions(State(st): State<AppState>, p: Principal) -> AppResult<Json<Vec<SurvRegion>>> {
    p.require(&[Role::PublicHealthOfficer, Role::Admin])?;
    Ok(Json(st.store().surv_regions().await?))
}

async fn put_regions(
    State(st): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    raw: axum::body::Bytes,
) -> AppResult<Json<Vec<SurvRegion>>> {
    p.require(&[Role::Admin])?;
    p.check_csrf(csrf(&headers))?;
    let regions: Vec<SurvRegion> = body(&raw)?;
    super::set_regions(&st, &p, regions).await?;
    Ok(Json(st.store().surv_regions().await?))
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct ReportBody {
    #[serde(default)]
    cases: Vec<CaseInput>,
    #[serde(default)]
    aggregates: Vec<AggregateInput>,
}

async fn report(
    State(st): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    raw: axum::body::Bytes,
) -> AppResult<Response> {
    p.require(OFFICERS)?;
    p.check_csrf(csrf(&headers))?;
    let b: ReportBody = body(&raw)?;
    let batch = super::validate(&st, &p, &b.cases, &b.aggregates, "api").await?;
    let out = super::submit(&st, &p, batch, "api").await?;
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

async fn import(
    State(st): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    raw: axum::body::Bytes,
) -> AppResult<Response> {
    p.require(OFFICERS)?;
    p.check_csrf(csrf(&headers))?;
    let text = std::str::from_utf8(&raw)
        .map_err(|_| AppError::unprocessable("error-surv-import", "the body is not UTF-8 text"))?;
    let out = super::import::import(&st, &p, text).await?;
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct ListQuery {
    /// A disease code (ICD-10) of the node's list.
    disease: Option<String>,
    /// A region code of the node.
    region: Option<String>,
    /// Most cases returned (default 1,000, at most 50,000).
    #[schemars(range(max = u32::MAX))]
    limit: Option<u32>,
}

async fn cases(
    State(st): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> AppResult<Json<Value>> {
    p.require(OFFICERS)?;
    let list = super::cases(
        &st,
        &p,
        &SurvFilter {
            disease: q.disease,
            region: q.region,
            limit: Some(q.limit.unwrap_or(1000).min(50_000)),
        },
        AuditAction::Read,
    )
    .await?;
    Ok(Json(json!(list)))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[schemars(extend("required" = ["disease", "region"]))]
pub(crate) struct SeriesQuery {
    /// A disease code (ICD-10) of the node's list.
    disease: Option<String>,
    /// A region code of the node.
    region: Option<String>,
}

async fn series(
    State(st): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<SeriesQuery>,
) -> AppResult<Json<Value>> {
    p.require(OFFICERS)?;
    let (Some(d), Some(r)) = (q.disease, q.region) else {
        return Err(AppError::bad_request("disease and region are required"));
    };
    if !super::DISEASES.contains(&d.as_str()) {
        return Err(AppError::unprocessable(
            "error-surv-invalid",
            format!(
                "disease {:?} is not a notifiable disease of this node",
                d.chars().take(40).collect::<String>()
            ),
        ));
    }
    let country = super::officer_country(&st, &p).await?;
    if !st
        .store()
        .surv_regions()
        .await?
        .iter()
        .any(|x| x.code == r && x.country == country)
    {
        return Err(AppError::not_found("region"));
    }
    let weeks = super::series(&st, &d, &r).await?;
    Ok(Json(json!({
        "disease": d,
        "region": r,
        "method": super::method_of(&st).name(),
        "fallback": super::fallback_method().name(),
        "weeks": weeks,
    })))
}

async fn alerts(State(st): State<AppState>, p: Principal) -> AppResult<Json<Value>> {
    p.require(OFFICERS)?;
    Ok(Json(json!(super::alerts_for(&st, &p).await?)))
}

async fn alert(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> AppResult<Json<Value>> {
    p.require(OFFICERS)?;
    let id: Uuid = parse_id("alert", &id)?;
    let (a, notes) = super::alert_for(&st, &p, id).await?;
    Ok(Json(json!({ "alert": a, "notes": notes })))
}

async fn ack(
    State(st): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> AppResult<Json<Value>> {
    p.require(OFFICERS)?;
    p.check_csrf(csrf(&headers))?;
    let id: Uuid = parse_id("alert", &id)?;
    Ok(Json(json!(super::acknowledge(&st, &p, id).await?)))
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct NoteBody {
    body: String,
}

async fn note(
    State(st): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    Path(id): Path<String>,
    raw: axum::body::Bytes,
) -> AppResult<Response> {
    p.require(OFFICERS)?;
    p.check_csrf(csrf(&headers))?;
    let id: Uuid = parse_id("alert", &id)?;
    let b: NoteBody = body(&raw)?;
    let n = super::add_note(&st, &p, id, &b.body).await?;
    Ok((StatusCode::CREATED, Json(n)).into_response())
}
