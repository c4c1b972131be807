//! `/api/v1/monitoring/…`: the remote-monitoring JSON API, listed in `api::ROUTES`. The role is checked before
//! anything is parsed, so a refused role always gets `403`.

use super::{NewDevice, ObservationQuery, CLINICAL};
use crate::api::{body, csrf, ApiQuery};
use crate::auth::Principal;
use crate::consult::PATIENT_READERS;
use crate::error::{AppError, AppResult};
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use caravan_domain::Role;
use serde::Deserialize;
use serde_json::{json, Value};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/monitoring/patients", get(ward))
        .route("/monitoring/patients/{id}", get(patient))
        .route("/monitoring/patients/{id}/observations", get(observations))
        .route("/monitoring/patients/{id}/devices", post(register))
        .route("/monitoring/devices/{device}", get(device).delete(unbind))
        .route("/monitoring/devices/{device}/credentials", post(rotate))
        .route("/monitoring/alerts", get(alerts))
        .route("/monitoring/alerts/{alert}/ack", post(ack))
        .route("/monitoring/broker", get(broker))
}

async fn ward(State(st): State<AppState>, p: Principal) -> AppResult<Json<Value>> {
    p.require(CLINICAL)?;
    let m = super::monitor(&st)?;
    let rows = super::ward(&st, &p).await?;
    Ok(Json(
        json!({ "ingest": m.ingest_state(), "patients": rows }),
    ))
}

async fn patient(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> AppResult<Json<super::PatientMonitoring>> {
    p.require(PATIENT_READERS)?;
    Ok(Json(super::patient(&st, &p, &id).await?))
}

async fn observations(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    q: Result<Query<ObservationQuery>, axum::extract::rejection::QueryRejection>,
) -> AppResult<Json<Vec<super::ObservationView>>> {
    p.require(PATIENT_READERS)?;
    let Query(q) = q.map_err(|e| {
        AppError::new(
            StatusCode::BAD_REQUEST,
            "error-monitoring-query",
            e.body_text(),
        )
    })?;
    Ok(Json(super::observation_views(&st, &p, &id, &q).await?))
}

async fn register(
    State(st): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    Path(id): Path<String>,
    raw: axum::body::Bytes,
) -> AppResult<(StatusCode, Json<super::Credentials>)> {
    p.require(CLINICAL)?;
    p.check_csrf(csrf(&headers))?;
    let n: NewDevice = body(&raw)?;
    Ok((
        StatusCode::CREATED,
        Json(super::register_device(&st, &p, &id, n).await?),
    ))
}

async fn device(
    State(st): State<AppState>,
    p: Principal,
    Path(device): Path<String>,
) -> AppResult<Json<super::DeviceView>> {
    p.require(CLINICAL)?;
    Ok(Json(super::device(&st, &p, &device).await?))
}

async fn unbind(
    State(st): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    Path(device): Path<String>,
) -> AppResult<Json<super::DeviceView>> {
    p.require(CLINICAL)?;
    p.check_csrf(csrf(&headers))?;
    Ok(Json(super::unbind(&st, &p, &device).await?))
}

async fn rotate(
    State(st): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    Path(device): Path<String>,
) -> AppResult<Json<super::Credentials>> {
    p.require(CLINICAL)?;
    p.check_csrf(csrf(&headers))?;
    Ok(Json(super::rotate_credentials(&st, &p, &device).await?))
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct AlertsQuery {
    /// `true`: only alerts not yet acknowledged.
    #[serde(default)]
    #[schemars(extend("enum" = ["true", "false", ""]))]
    open: Option<String>,
}

async fn alerts(
    State(st): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<AlertsQuery>,
) -> AppResult<Json<Vec<super::AlertView>>> {
    p.require(CLINICAL)?;
    let open_only = match q.open.as_deref() {
        None | Some("") | Some("false") => false,
        Some("true") => true,
        Some(o) => {
            return Err(AppError::new(
                StatusCode::BAD_REQUEST,
                "error-monitoring-query",
                format!("open {o:?} is not true or false"),
            ))
        }
    };
    Ok(Json(super::alerts(&st, &p, open_only).await?))
}

async fn ack(
    State(st): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    Path(alert): Path<String>,
) -> AppResult<Json<super::AlertView>> {
    p.require(CLINICAL)?;
    p.check_csrf(csrf(&headers))?;
    let id: i64 = alert.parse().map_err(|_| AppError::not_found("alert"))?;
    Ok(Json(super::acknowledge(&st, &p, id).await?))
}

/// The broker files, for the operator of Mosquitto (also written to `DATA/monitoring-broker/`), and the last
/// attempt to make the broker re-read them (`--mqtt-broker-pid-file`).
async fn broker(State(st): State<AppState>, p: Principal) -> AppResult<Json<Value>> {
    p.require(&[Role::Admin])?;
    let m = super::monitor(&st)?;
    let (passwd, acl) = m.broker_files().await?;
    Ok(Json(json!({
        "broker": m.broker_url(),
        "ingest": m.ingest_state(),
        "folder": m.broker_dir().display().to_string(),
        "password_file": passwd,
        "acl_file": acl,
        "reload": {
            "pid_file": m.broker_pid_file().map(|f| f.display().to_string()),
            "last": m.last_reload(),
        },
    })))
}
