//! Live care in the JSON API: `/api/v1/visits...` for signed-in users, `/api/v1/guest/...` for the holder of an
//! invitation (header `X-Visit-Token`, or the cookie the invitation link set plus `X-Visit-CSRF` on writes).
//! The route table is `crate::api::ROUTES`.

use super::{NewInvitation, NewSchedule, NewSlots, NewVisit, Visitor, CLINICIANS, VISIT_READERS};
use crate::api::{body, csrf, parse_id, ApiQuery};
use crate::auth::Principal;
use crate::error::{AppError, AppResult};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use caravan_domain::Role;
use caravan_store::{VisitFilter, VisitStatus};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/visits", get(list).post(book))
        .route("/visits/waiting-room", get(waiting_room))
        .route("/visits/waiting-room/admit-next", post(admit_next))
        .route("/visits/schedules", get(schedules).post(create_schedule))
        .route("/visits/schedules/{id}/slots", get(slots).post(add_slots))
        .route("/visits/{id}", get(read))
        .route("/visits/{id}/invitations", post(invite))
        .route("/visits/{id}/check-in", post(check_in))
        .route("/visits/{id}/admit", post(admit))
        .route("/visits/{id}/finish", post(finish))
        .route("/visits/{id}/cancel", post(cancel))
        .route("/visits/{id}/ice", get(ice))
        .route("/guest/visit", get(guest_visit))
        .route("/guest/check-in", post(guest_check_in))
        .route("/guest/ice", get(guest_ice))
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
pub(crate) struct ListQuery {
    /// Statuses, comma-separated: booked, arrived, in-progress, finished, cancelled.
    #[schemars(regex(
        pattern = r"^((booked|arrived|in-progress|finished|cancelled)( *, *(booked|arrived|in-progress|finished|cancelled))*)?$"
    ))]
    status: Option<String>,
    #[schemars(extend("format" = "uuid"))]
    practitioner_id: Option<String>,
    #[schemars(extend("format" = "uuid"))]
    patient_id: Option<String>,
    #[schemars(extend("format" = "uuid"))]
    consultation_id: Option<String>,
    /// Visits starting at or after this instant (RFC 3339).
    #[schemars(extend("format" = "date-time"))]
    from: Option<String>,
    /// Visits starting before this instant (RFC 3339).
    #[schemars(extend("format" = "date-time"))]
    to: Option<String>,
}

async fn list(
    State(st): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> AppResult<Json<Value>> {
    p.require(VISIT_READERS)?;
    let mut f = VisitFilter::default();
    if let Some(s) = q.status.as_deref().filter(|s| !s.is_empty()) {
        for part in s.split(',') {
            f.statuses.push(VisitStatus::parse(part.trim()).ok_or_else(|| {
                AppError::bad_request(format!(
                    "status {part:?} is not one of booked, arrived, in-progress, finished, cancelled"
                ))
            })?);
        }
    }
    f.practitioner_id = q
        .practitioner_id
        .as_deref()
        .map(|s| parse_id("user", s))
        .transpose()?;
    f.patient_id = q
        .patient_id
        .as_deref()
        .map(|s| parse_id("patient", s))
        .transpose()?;
    f.consultation_id = q
        .consultation_id
        .as_deref()
        .map(|s| parse_id("consultation", s))
        .transpose()?;
    f.from = q
        .from
        .as_deref()
        .map(|s| super::parse_time("from", s))
        .transpose()?;
    f.to =
        q.to.as_deref()
            .map(|s| super::parse_time("to", s))
            .transpose()?;
    Ok(Json(json!(super::list(&st, &p, &f).await?)))
}

async fn book(
    State(st): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    raw: axum::body::Bytes,
) -> AppResult<Response> {
    p.require(CLINICIANS)?;
    p.check_csrf(csrf(&headers))?;
    let n: NewVisit = body(&raw)?;
    let v = super::book(&st, &p, n).await?;
    Ok((StatusCode::CREATED, Json(json!(v))).into_response())
}

fn visit_id(p: &Principal, roles: &[Role], id: &str) -> AppResult<Uuid> {
    p.require(roles)?;
    parse_id("visit", id)
}

async fn read(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> AppResult<Json<Value>> {
    let id = visit_id(&p, VISIT_READERS, &id)?;
    let v = super::get(&st, &p, id).await?;
    let invitations = st.store().visit_invitations(id).await?;
    let participants = st.store().visit_participants(id).await?;
    Ok(Json(json!({
        "visit": v.visit,
        "patient_name": v.patient_name,
        "practitioner_name": v.practitioner_name,
        "appointment_status": v.visit.status.appointment_status(),
        "encounter_status": v.visit.status.encounter_status(),
        "invitations": invitations,
        "participants": participants,
        "connected": st.visit_hub().present(id),
    })))
}

async fn invite(
    State(st): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    Path(id): Path<String>,
    raw: axum::body::Bytes,
) -> AppResult<Response> {
    let id = visit_id(&p, CLINICIANS, &id)?;
    p.check_csrf(csrf(&headers))?;
    let n: NewInvitation = body(&raw)?;
    let created = super::invite(&st, &p, id, n).await?;
    Ok((StatusCode::CREATED, Json(json!(created))).into_response())
}

async fn check_in(
    State(st): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> AppResult<Json<Value>> {
    let id = visit_id(&p, VISIT_READERS, &id)?;
    p.check_csrf(csrf(&headers))?;
    Ok(Json(json!(
        super::check_in(&st, &Visitor::User(p), id).await?
    )))
}

async fn admit(
    State(st): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> AppResult<Json<Value>> {
    let id = visit_id(&p, CLINICIANS, &id)?;
    p.check_csrf(csrf(&headers))?;
    Ok(Json(json!(super::admit(&st, &p, Some(id)).await?)))
}

async fn admit_next(
    State(st): State<AppState>,
    p: Principal,
    headers: HeaderMap,
) -> AppResult<Json<Value>> {
    p.require(CLINICIANS)?;
    p.check_csrf(csrf(&headers))?;
    Ok(Json(json!(super::admit(&st, &p, None).await?)))
}

async fn finish(
    State(st): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> AppResult<Json<Value>> {
    let id = visit_id(&p, CLINICIANS, &id)?;
    p.check_csrf(csrf(&headers))?;
    Ok(Json(json!(super::finish(&st, &p, id).await?)))
}

async fn cancel(
    State(st): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> AppResult<Json<Value>> {
    let id = visit_id(&p, CLINICIANS, &id)?;
    p.check_csrf(csrf(&headers))?;
    Ok(Json(json!(super::cancel(&st, &p, id).await?)))
}

async fn ice(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> AppResult<Json<Value>> {
    let id = visit_id(&p, VISIT_READERS, &id)?;
    Ok(Json(super::ice_for(&st, &Visitor::User(p), id).await?))
}

async fn waiting_room(State(st): State<AppState>, p: Principal) -> AppResult<Json<Value>> {
    let q = super::queue(&st, &p).await?;
    Ok(Json(json!(q
        .iter()
        .enumerate()
        .map(|(i, v)| json!({
            "place": i + 1,
            "visit_id": v.visit.id,
            "patient_name": v.patient_name,
            "arrived_at": v.visit.arrived_at,
            "start": v.visit.start,
        }))
        .collect::<Vec<_>>())))
}

async fn schedules(State(st): State<AppState>, p: Principal) -> AppResult<Json<Value>> {
    p.require(CLINICIANS)?;
    Ok(Json(json!(st.store().visit_schedules(None, None).await?)))
}

async fn create_schedule(
    State(st): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    raw: axum::body::Bytes,
) -> AppResult<Response> {
    p.require(CLINICIANS)?;
    p.check_csrf(csrf(&headers))?;
    let n: NewSchedule = body(&raw)?;
    let s = super::create_schedule(&st, &p, n).await?;
    Ok((StatusCode::CREATED, Json(json!(s))).into_response())
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct SlotQuery {
    /// Slots from this instant (RFC 3339; default 12 hours ago).
    #[schemars(extend("format" = "date-time"))]
    from: Option<String>,
    /// Slots until this instant (RFC 3339; default 14 days after `from`).
    #[schemars(extend("format" = "date-time"))]
    to: Option<String>,
}

async fn slots(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<SlotQuery>,
) -> AppResult<Json<Value>> {
    p.require(CLINICIANS)?;
    let id: Uuid = parse_id("schedule", &id)?;
    let now = chrono::Utc::now();
    let from = q
        .from
        .as_deref()
        .map(|s| super::parse_time("from", s))
        .transpose()?
        .unwrap_or(now - chrono::Duration::hours(12));
    let to =
        q.to.as_deref()
            .map(|s| super::parse_time("to", s))
            .transpose()?
            .unwrap_or(from + chrono::Duration::days(14));
    st.store().visit_get_schedule(id).await?;
    Ok(Json(json!(st.store().visit_slots(id, from, to).await?)))
}

async fn add_slots(
    State(st): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    Path(id): Path<String>,
    raw: axum::body::Bytes,
) -> AppResult<Response> {
    p.require(CLINICIANS)?;
    let id: Uuid = parse_id("schedule", &id)?;
    p.check_csrf(csrf(&headers))?;
    let n: NewSlots = body(&raw)?;
    let slots = super::add_slots(&st, &p, id, n).await?;
    Ok((StatusCode::CREATED, Json(json!(slots))).into_response())
}

// ---------- guests ----------

/// A guest write must show it is not a cross-site form: the token in a header, or the cookie plus the CSRF
/// token derived from it.
fn guest_write_ok(headers: &HeaderMap) -> AppResult<()> {
    if headers.contains_key("x-visit-token") {
        return Ok(());
    }
    let token = super::guest_token(headers).unwrap_or_default();
    let presented = headers
        .get("x-visit-csrf")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !token.is_empty() && presented == super::guest_csrf(&token) {
        Ok(())
    } else {
        Err(AppError::new(
            StatusCode::FORBIDDEN,
            "error-csrf",
            "missing or wrong CSRF token; reload the page and try again",
        ))
    }
}

async fn guest_visit(State(st): State<AppState>, headers: HeaderMap) -> AppResult<Json<Value>> {
    let inv = super::guest_from(&st, &headers).await?;
    Ok(Json(json!(super::guest_state(&st, &inv).await?)))
}

async fn guest_check_in(State(st): State<AppState>, headers: HeaderMap) -> AppResult<Json<Value>> {
    let inv = super::guest_from(&st, &headers).await?;
    guest_write_ok(&headers)?;
    if inv.role == caravan_store::GuestRole::Patient {
        super::check_in(&st, &Visitor::Guest(inv.clone()), inv.visit_id).await?;
    }
    Ok(Json(json!(super::guest_state(&st, &inv).await?)))
}

async fn guest_ice(State(st): State<AppState>, headers: HeaderMap) -> AppResult<Json<Value>> {
    let inv = super::guest_from(&st, &headers).await?;
    let visit = inv.visit_id;
    Ok(Json(
        super::ice_for(&st, &Visitor::Guest(inv), visit).await?,
    ))
}
