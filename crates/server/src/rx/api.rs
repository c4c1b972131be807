//! `/api/v1/rx/…` and `/api/v1/patients/{id}/allergies|prescriptions`: the e-prescription JSON API, listed in
//! `api::ROUTES`. The role is checked before anything is parsed, so a refused role always gets `403`.

use super::{NewAllergy, NewDispense, NewPrescription};
use crate::api::{body, csrf, parse_id, ApiQuery};
use crate::auth::Principal;
use crate::error::AppResult;
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use caravan_domain::Role;
use caravan_store::{Allergy, Prescription};
use serde::Deserialize;
use serde_json::{json, Value};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/rx/formulary", get(formulary))
        .route("/rx/tables/{table}", get(get_table).post(import_table))
        .route("/rx/keys", get(keys))
        .route("/rx/verify", post(verify))
        .route("/rx/lookup", post(lookup))
        .route("/rx/check", post(check))
        .route("/rx/prescriptions", post(prescribe))
        .route("/rx/prescriptions/{id}", get(get_prescription))
        .route("/rx/prescriptions/{id}/fhir", get(get_fhir))
        .route("/rx/prescriptions/{id}/dispense", post(dispense))
        .route("/rx/received", get(received))
        .route(
            "/patients/{id}/allergies",
            get(list_allergies).post(record_allergy),
        )
        .route("/patients/{id}/prescriptions", get(list_prescriptions))
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct Search {
    /// Words of the medication's code or name (all items when empty).
    #[serde(default)]
    q: String,
}

async fn formulary(
    State(st): State<AppState>,
    _p: Principal,
    ApiQuery(s): ApiQuery<Search>,
) -> AppResult<Json<Vec<caravan_store::FormularyItem>>> {
    let q = s.q.trim().to_lowercase();
    let mut items = super::formulary(&st).await?;
    if !q.is_empty() {
        items.retain(|i| {
            i.display.to_lowercase().contains(&q) || i.ingredient.contains(&q) || i.code == q
        });
    }
    Ok(Json(items))
}

async fn get_table(
    State(st): State<AppState>,
    _p: Principal,
    Path(table): Path<String>,
) -> AppResult<Json<Vec<Value>>> {
    Ok(Json(super::table(&st, &table).await?))
}

/// Body: the table as CSV (with its header row) or a JSON array.
async fn import_table(
    State(st): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    Path(table): Path<String>,
    raw: axum::body::Bytes,
) -> AppResult<Json<Value>> {
    p.require(&[Role::Admin])?;
    p.check_csrf(csrf(&headers))?;
    let text = std::str::from_utf8(&raw).map_err(|_| {
        crate::error::AppError::unprocessable("error-rx-table", "the table is not UTF-8 text")
    })?;
    let n = super::import_table(&st, &p, &table, text).await?;
    Ok(Json(json!({ "table": table, "rows": n })))
}

/// The node's published prescription keys (JWKS); also at `/.well-known/caravan-rx-keys.json`.
async fn keys(State(st): State<AppState>) -> AppResult<Json<Value>> {
    Ok(Json(super::published_keys(&st)?))
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct VerifyBody {
    /// Any text: the answer says whether it is a valid prescription code and why not.
    code: String,
}

/// Verify a prescription QR text against this node's published keys (what `caravan rx verify` does offline).
async fn verify(
    State(st): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    raw: axum::body::Bytes,
) -> AppResult<Json<Value>> {
    p.check_csrf(csrf(&headers))?;
    let b: VerifyBody = body(&raw)?;
    let keys = super::sign::parse_keys(&super::published_keys(&st)?.to_string())
        .map_err(crate::error::AppError::internal)?;
    Ok(Json(
        match super::sign::verify(&b.code, &keys, chrono::Utc::now()) {
            Ok(payload) => json!({ "valid": true, "payload": payload }),
            Err(e) => json!({ "valid": false, "reason": e.to_string() }),
        },
    ))
}

async fn check(
    State(st): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    raw: axum::body::Bytes,
) -> AppResult<Json<super::CheckResult>> {
    p.require(super::PRESCRIBERS)?;
    p.check_csrf(csrf(&headers))?;
    let r: NewPrescription = body(&raw)?;
    Ok(Json(super::check_only(&st, &p, &r).await?))
}

async fn prescribe(
    State(st): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    raw: axum::body::Bytes,
) -> AppResult<(StatusCode, Json<Prescription>)> {
    p.require(super::PRESCRIBERS)?;
    p.check_csrf(csrf(&headers))?;
    let r: NewPrescription = body(&raw)?;
    Ok((
        StatusCode::CREATED,
        Json(super::prescribe(&st, &p, r).await?),
    ))
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct LookupBody {
    #[schemars(length(min = 1), regex(pattern = crate::api::NON_BLANK))]
    code: String,
}

/// A prescription by its id or its QR code's text (what a pharmacy is shown), with its dispenses; audited.
async fn lookup(
    State(st): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    raw: axum::body::Bytes,
) -> AppResult<Json<Value>> {
    p.require(super::PRESCRIPTION_READERS)?;
    p.check_csrf(csrf(&headers))?;
    let b: LookupBody = body(&raw)?;
    let (rx, dispenses) = super::lookup(&st, &p, &b.code).await?;
    Ok(Json(
        json!({ "prescription": rx, "dispenses": dispenses, "valid_until": super::valid_until(&rx) }),
    ))
}

async fn get_prescription(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> AppResult<Json<Value>> {
    p.require(super::PRESCRIPTION_READERS)?;
    let (rx, dispenses) = super::prescription(&st, &p, parse_id("prescription", &id)?).await?;
    Ok(Json(json!({ "prescription": rx, "dispenses": dispenses })))
}

async fn get_fhir(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> AppResult<Json<Value>> {
    p.require(super::PRESCRIPTION_READERS)?;
    let (rx, dispenses) = super::prescription(&st, &p, parse_id("prescription", &id)?).await?;
    Ok(Json(super::fhir::bundle(&rx, &dispenses)))
}

async fn dispense(
    State(st): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    Path(id): Path<String>,
    raw: axum::body::Bytes,
) -> AppResult<(StatusCode, Json<caravan_store::Dispense>)> {
    p.require(super::DISPENSERS)?;
    p.check_csrf(csrf(&headers))?;
    let id = parse_id("prescription", &id)?;
    let d: NewDispense = body(&raw)?;
    Ok((
        StatusCode::CREATED,
        Json(super::dispense(&st, &p, id, d).await?),
    ))
}

async fn received(State(st): State<AppState>, p: Principal) -> AppResult<Json<Vec<Prescription>>> {
    Ok(Json(super::received(&st, &p).await?))
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct Format {
    /// `fhir`: as a FHIR Bundle of AllergyIntolerance resources.
    #[serde(default)]
    format: String,
}

async fn list_allergies(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    ApiQuery(f): ApiQuery<Format>,
) -> AppResult<Json<Value>> {
    p.require(super::READERS)?;
    let list: Vec<Allergy> = super::allergies(&st, &p, parse_id("patient", &id)?).await?;
    Ok(Json(if f.format == "fhir" {
        json!({ "resourceType": "Bundle", "type": "collection",
                "entry": list.iter().map(|a| json!({ "resource": super::fhir::allergy_intolerance(a) })).collect::<Vec<_>>() })
    } else {
        serde_json::to_value(list).map_err(crate::error::AppError::internal)?
    }))
}

async fn record_allergy(
    State(st): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    Path(id): Path<String>,
    raw: axum::body::Bytes,
) -> AppResult<(StatusCode, Json<Allergy>)> {
    p.require(super::CLINICIANS)?;
    p.check_csrf(csrf(&headers))?;
    let pid = parse_id("patient", &id)?;
    let a: NewAllergy = body(&raw)?;
    Ok((
        StatusCode::CREATED,
        Json(super::record_allergy(&st, &p, pid, a).await?),
    ))
}

async fn list_prescriptions(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> AppResult<Json<Vec<Prescription>>> {
    p.require(super::READERS)?;
    Ok(Json(
        super::prescriptions(&st, &p, parse_id("patient", &id)?).await?,
    ))
}
