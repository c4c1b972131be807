//! `/api/v1/certs/…`: verify, issue, list and import trust anchors and rules. Bearer tokens or a session (with
//! `X-CSRF-Token` for writes), errors in the node's shape (`error.rs`). Listed in `api::ROUTES`.

use super::{IssueRequest, VerifyRequest};
use crate::auth::{Principal, LANG_COOKIE};
use crate::error::{AppError, AppResult};
use crate::i18n::{I18n, Tr};
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use axum_extra::extract::CookieJar;
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

fn csrf(h: &HeaderMap) -> Option<&str> {
    h.get("x-csrf-token").and_then(|v| v.to_str().ok())
}

fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> AppResult<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| AppError::unprocessable("error-bad-json", format!("invalid JSON body: {e}")))
}

/// The language of localised reasons: the request's `lang`, else the user's, the cookie, `Accept-Language`.
pub(crate) fn tr_for<'a>(
    st: &'a AppState,
    p: &Principal,
    headers: &HeaderMap,
    lang: Option<&str>,
) -> Tr<'a> {
    let jar = CookieJar::from_headers(headers);
    let lang = lang.and_then(I18n::supported).unwrap_or_else(|| {
        I18n::negotiate(
            Some(p.user.locale.as_str()),
            jar.get(LANG_COOKIE).map(|c| c.value()),
            headers
                .get(header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok()),
            &st.config().default_locale,
        )
    });
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

#[derive(Deserialize)]
struct ImportQuery {
    #[serde(default)]
    country: Option<String>,
}

fn audit_admin(
    p: &Principal,
    action: caravan_domain::AuditAction,
    what: &str,
    detail: &str,
) -> caravan_domain::AuditEvent {
    crate::audit::event(p, action, "certificate_trust", what, None, detail)
}

async fn import_trust(
    State(st): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    Query(q): Query<ImportQuery>,
    raw: axum::body::Bytes,
) -> AppResult<Json<Value>> {
    p.require(&[Role::Admin])?;
    p.check_csrf(csrf(&headers))?;
    let report = st.certs().import_trust(raw.to_vec(), q.country).await?;
    let detail = serde_json::to_string(&report).unwrap_or_default();
    st.store()
        .append_audit(vec![audit_admin(
            &p,
            caravan_domain::AuditAction::Update,
            "trust",
            &detail,
        )])
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
    st.store()
        .append_audit(vec![audit_admin(
            &p,
            caravan_domain::AuditAction::Update,
            "rules",
            &detail,
        )])
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
    st.store()
        .append_audit(vec![audit_admin(
            &p,
            caravan_domain::AuditAction::Delete,
            "trust",
            &format!("{c}: {removed} DSC"),
        )])
        .await?;
    Ok(Json(json!({ "country": c, "removed": removed })))
}
