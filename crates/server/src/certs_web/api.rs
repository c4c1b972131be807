//! `/api/v1/certs/…`: verify, issue, list and import trust anchors and rules. Bearer tokens or a session (with
//! `X-CSRF-Token` for writes), errors in the node's shape (`error.rs`). Listed in `api::ROUTES`.

use super::{audit_trust_change, IssueRequest, VerifyRequest};
use crate::api::{body, csrf, ApiQuery};
use crate::auth::Principal;
use crate::error::{AppError, AppResult};
use crate::i18n::{I18n, Tr};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use caravan_domain::Role;
use serde::Deserialize;
use serde_json::{json, Value};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/certs/verify", post(verify))
        .route("/certs/issue", post(issue))
        .route("/certs/trust", get(list_trust).post(import_trust))
        .route("/certs/trust/export", get(export_trust))
        .route("/certs/trust/{country}", delete(remove_country))
        .route("/certs/rules", post(import_rules))
}

/// The language of localised reasons: the request's `lang`, else the page language (user, cookie, browser).
pub(crate) fn tr_for<'a>(
    st: &'a AppState,
    p: &Principal,
    headers: &HeaderMap,
    lang: Option<&str>,
) -> Tr<'a> {
    let lang = lang
        .and_then(I18n::supported)
        .unwrap_or_else(|| crate::ui::lang_for(st, Some(p), headers));
    Tr {
        i18n: st.i18n(),
        lang,
    }
}

async fn verify(
    State(st): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    raw: axum::body::Bytes,
) -> AppResult<Json<super::VerifyResult>> {
    p.check_csrf(csrf(&headers))?;
    let req: VerifyRequest = body(&raw)?;
    let tr = tr_for(&st, &p, &headers, req.lang.as_deref());
    Ok(Json(super::verify(&st, &req, tr).await?))
}

async fn issue(
    State(st): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    raw: axum::body::Bytes,
) -> AppResult<(axum::http::StatusCode, Json<super::Issued>)> {
    p.require(super::ISSUERS)?;
    p.check_csrf(csrf(&headers))?;
    let req: IssueRequest = body(&raw)?;
    let issued = super::issue(&st, &p, req).await?;
    Ok((axum::http::StatusCode::CREATED, Json(issued)))
}

async fn list_trust(State(st): State<AppState>, _p: Principal) -> AppResult<Json<Value>> {
    let l = st.certs().loaded().await?;
    Ok(Json(super::trust_summary(&l)))
}

async fn export_trust(State(st): State<AppState>, _p: Principal) -> AppResult<Json<Value>> {
    Ok(Json(st.certs().export().await?))
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct ImportQuery {
    /// The country a lone certificate (PEM or DER) signs for.
    #[serde(default)]
    country: Option<String>,
}

async fn import_trust(
    State(st): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<ImportQuery>,
    raw: axum::body::Bytes,
) -> AppResult<Json<Value>> {
    p.require(&[Role::Admin])?;
    p.check_csrf(csrf(&headers))?;
    let report = st.certs().import_trust(raw.to_vec(), q.country).await?;
    let detail = serde_json::to_string(&report).unwrap_or_default();
    audit_trust_change(
        &st,
        &p,
        caravan_domain::AuditAction::Update,
        "trust",
        &detail,
    )
    .await?;
    Ok(Json(json!({ "imported": report })))
}

async fn import_rules(
    State(st): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    raw: axum::body::Bytes,
) -> AppResult<Json<Value>> {
    p.require(&[Role::Admin])?;
    p.check_csrf(csrf(&headers))?;
    let bytes = raw.to_vec();
    let report = st
        .certs()
        .change(move |d| d.import_rules_bytes(&bytes))
        .await?;
    let detail = serde_json::to_string(&report).unwrap_or_default();
    audit_trust_change(
        &st,
        &p,
        caravan_domain::AuditAction::Update,
        "rules",
        &detail,
    )
    .await?;
    Ok(Json(json!({ "imported": report })))
}

async fn remove_country(
    State(st): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    Path(country): Path<String>,
) -> AppResult<Json<Value>> {
    p.require(&[Role::Admin])?;
    p.check_csrf(csrf(&headers))?;
    let c = super::material::country_code(&country)
        .map_err(|e| AppError::bad_request(e.to_string()))?;
    let c2 = c.clone();
    let removed = st.certs().change(move |d| d.remove_country(&c2)).await?;
    if removed == 0 {
        return Err(AppError::not_found("trust list of this country"));
    }
    audit_trust_change(
        &st,
        &p,
        caravan_domain::AuditAction::Delete,
        "trust",
        &format!("{c}: {removed} DSC"),
    )
    .await?;
    Ok(Json(json!({ "country": c, "removed": removed })))
}
