//! The JSON API at `/api/v1`. Cookie-session writes need the `X-CSRF-Token` header; bearer tokens do not.

use crate::audit::event;
use crate::auth::{self, Principal};
use crate::consult::{self, EventRequest, NewConsultation, NewPatient};
use crate::error::{AppError, AppResult};
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use axum_extra::extract::CookieJar;
use caravan_domain::*;
use caravan_store::{ConsultationFilter, PatientFilter};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};

/// One row per route: the OpenAPI document and the route × role test are both derived from this table.
/// (method, path, summary, roles allowed; empty = any signed-in user; `None` = no sign-in needed)
pub const ROUTES: &[(&str, &str, &str, Option<&[Role]>)] = &[
    ("post", "/api/v1/session", "Sign in (JSON username/password); sets the session cookie", None),
    ("delete", "/api/v1/session", "Sign out", Some(&[])),
    ("get", "/api/v1/me", "The signed-in user", Some(&[])),
    ("get", "/api/v1/institutions", "Institutions of this node", Some(&[])),
    ("post", "/api/v1/institutions", "Create an institution", Some(&[Role::Admin])),
    ("get", "/api/v1/users", "Users of this node", Some(&[Role::Admin, Role::Coordinator])),
    ("post", "/api/v1/users", "Create a user", Some(&[Role::Admin])),
    ("get", "/api/v1/teams", "Standing multidisciplinary teams", Some(&[Role::Admin, Role::Coordinator])),
    ("post", "/api/v1/teams", "Create a team (lead, members, specialty)", Some(&[Role::Admin])),
    ("get", "/api/v1/tokens", "My API tokens", Some(&[])),
    ("post", "/api/v1/tokens", "Create an API token (shown once)", Some(&[])),
    ("delete", "/api/v1/tokens/{id}", "Revoke an API token", Some(&[])),
    ("get", "/api/v1/patients", "Search patients (name, birth_date)", Some(&[Role::Referrer, Role::Consultant, Role::Coordinator, Role::Patient])),
    ("post", "/api/v1/patients", "Register a patient", Some(&[Role::Referrer, Role::Coordinator])),
    ("get", "/api/v1/patients/{id}", "Read a patient", Some(&[Role::Referrer, Role::Consultant, Role::Coordinator, Role::Patient])),
    ("get", "/api/v1/patients/{id}/consents", "Consent history", Some(&[Role::Referrer, Role::Consultant, Role::Coordinator, Role::Patient])),
    ("post", "/api/v1/patients/{id}/consents", "Record a consent decision", Some(&[Role::Referrer, Role::Coordinator])),
    ("get", "/api/v1/patients/{id}/access-log", "Who accessed the patient's record", Some(&[Role::Referrer, Role::Coordinator, Role::Patient])),
    ("get", "/api/v1/consultations", "List consultations (state, overdue)", Some(&[Role::Referrer, Role::Consultant, Role::Coordinator, Role::Patient])),
    ("post", "/api/v1/consultations", "Create a consultation (optionally submit)", Some(&[Role::Referrer])),
    ("get", "/api/v1/consultations/{id}", "Read a consultation with its attachments and the latest 100 messages of its thread (`messages_total` counts them all)", Some(&[Role::Referrer, Role::Consultant, Role::Coordinator, Role::Patient])),
    ("post", "/api/v1/consultations/{id}/events", "Apply a workflow event (submit, assign, accept, decline, invite, report, acknowledge, record_outcome, cancel)", Some(&[Role::Referrer, Role::Consultant, Role::Coordinator])),
    ("get", "/api/v1/consultations/{id}/candidates", "Routing proposals", Some(&[Role::Coordinator])),
    ("get", "/api/v1/consultations/{id}/messages", "Page back through a case's thread (?before=MESSAGE_ID&limit=N, at most 500; the latest 100 without `before`), in thread order", Some(&[Role::Referrer, Role::Consultant, Role::Coordinator, Role::Patient])),
    ("post", "/api/v1/consultations/{id}/messages", "Post in the thread", Some(&[Role::Referrer, Role::Consultant, Role::Coordinator])),
    ("post", "/api/v1/consultations/{id}/attachments", "Upload an attachment (multipart field `file`)", Some(&[Role::Referrer, Role::Consultant, Role::Coordinator])),
    ("get", "/api/v1/consultations/{id}/audit", "Audit trail of a consultation", Some(&[Role::Referrer, Role::Consultant, Role::Coordinator])),
    ("get", "/api/v1/attachments/{id}", "Download an attachment", Some(&[Role::Referrer, Role::Consultant, Role::Coordinator])),
    ("get", "/api/v1/audit/verify", "Verify the audit hash chain", Some(&[Role::Admin])),
    ("get", "/api/v1/federation", "This node in the network: directory members, outbox and inbox counts", Some(&[Role::Admin])),
    ("get", "/api/v1/federation/outbox", "Outbox rows by state (pending, delivered, dead)", Some(&[Role::Admin])),
    ("post", "/api/v1/federation/outbox/{id}/retry", "Send a dead-lettered envelope again", Some(&[Role::Admin])),
    ("post", "/api/v1/federation/pings", "Enqueue net.ping envelopes to a member (load and liveness tests)", Some(&[Role::Admin])),
    ("post", "/api/v1/certs/verify", "Verify a health certificate (EU DCC, SMART Health Card) offline: status, name, date of birth, reasons", Some(&[])),
    ("post", "/api/v1/certs/issue", "Issue an EU DCC (vaccination, test, recovery) or a SMART Health Card", Some(&[Role::Referrer, Role::Consultant])),
    ("get", "/api/v1/certs/trust", "Trusted DSCs per country, SHC issuers, rules per country, this node's issuing keys", Some(&[])),
    ("post", "/api/v1/certs/trust", "Import a trust list (body: PEM/DER, DSC list, JWKS, exchange document; ?country=)", Some(&[Role::Admin])),
    ("get", "/api/v1/certs/trust/export", "The trust list as an exchange document for federation peers", Some(&[])),
    ("delete", "/api/v1/certs/trust/{country}", "Stop trusting a country's DSCs", Some(&[Role::Admin])),
    ("post", "/api/v1/certs/rules", "Import business rules or value sets (body: JSON)", Some(&[Role::Admin])),
    ("get", "/api/v1/surveillance/diseases", "Notifiable diseases (ICD-10 codes and names)", Some(&[Role::PublicHealthOfficer, Role::Admin])),
    ("get", "/api/v1/surveillance/regions", "Surveillance regions with their cross-border neighbours", Some(&[Role::PublicHealthOfficer, Role::Admin])),
    ("put", "/api/v1/surveillance/regions", "Replace the surveillance regions and neighbours (JSON array)", Some(&[Role::Admin])),
    ("post", "/api/v1/surveillance/reports", "Report cases (pseudonymised line list) and aggregate weekly counts; runs detection", Some(&[Role::PublicHealthOfficer])),
    ("post", "/api/v1/surveillance/import", "Import a CSV of cases or aggregates (all or nothing; errors name the lines)", Some(&[Role::PublicHealthOfficer])),
    ("get", "/api/v1/surveillance/cases", "The line list (disease, region, limit); audited", Some(&[Role::PublicHealthOfficer])),
    ("get", "/api/v1/surveillance/series", "Weekly series of a disease and region with upper bounds and alarms", Some(&[Role::PublicHealthOfficer])),
    ("get", "/api/v1/surveillance/alerts", "Alerts for the officer's country (local and cross-border)", Some(&[Role::PublicHealthOfficer])),
    ("get", "/api/v1/surveillance/alerts/{id}", "An alert with its discussion", Some(&[Role::PublicHealthOfficer])),
    ("post", "/api/v1/surveillance/alerts/{id}/ack", "Acknowledge an alert (a cross-border one is acknowledged back to its node)", Some(&[Role::PublicHealthOfficer])),
    ("post", "/api/v1/surveillance/alerts/{id}/notes", "Add a note to an alert's discussion", Some(&[Role::PublicHealthOfficer])),
    ("get", "/api/v1/visits", "Video visits (status, practitioner_id, patient_id, consultation_id, from, to)", Some(&[Role::Referrer, Role::Consultant, Role::Coordinator, Role::Patient])),
    ("post", "/api/v1/visits", "Book a video visit (slot_id, or practitioner_id + start + end; patient_id; optional consultation_id for an MDT meeting); 409 if the time is taken", Some(&[Role::Referrer, Role::Consultant, Role::Coordinator])),
    ("get", "/api/v1/visits/waiting-room", "My waiting room: patients who checked in, first come first served", Some(&[Role::Referrer, Role::Consultant, Role::Coordinator])),
    ("post", "/api/v1/visits/waiting-room/admit-next", "Admit the first patient waiting (409 while a visit is in progress)", Some(&[Role::Referrer, Role::Consultant, Role::Coordinator])),
    ("get", "/api/v1/visits/schedules", "Schedules (FHIR Schedule) of clinicians", Some(&[Role::Referrer, Role::Consultant, Role::Coordinator])),
    ("post", "/api/v1/visits/schedules", "Create a schedule (service; practitioner_id for a coordinator)", Some(&[Role::Referrer, Role::Consultant, Role::Coordinator])),
    ("get", "/api/v1/visits/schedules/{id}/slots", "Slots of a schedule (from, to)", Some(&[Role::Referrer, Role::Consultant, Role::Coordinator])),
    ("post", "/api/v1/visits/schedules/{id}/slots", "Add consecutive slots (start, minutes, count); 409 on overlap", Some(&[Role::Referrer, Role::Consultant, Role::Coordinator])),
    ("get", "/api/v1/visits/{id}", "A visit with its invitations and participants", Some(&[Role::Referrer, Role::Consultant, Role::Coordinator, Role::Patient])),
    ("post", "/api/v1/visits/{id}/invitations", "Invite a guest (patient, interpreter, family: a link shown once) or a clinician (user_id)", Some(&[Role::Referrer, Role::Consultant, Role::Coordinator])),
    ("post", "/api/v1/visits/{id}/check-in", "Enter the waiting room (the patient's account, or a clinician on their behalf)", Some(&[Role::Referrer, Role::Consultant, Role::Coordinator, Role::Patient])),
    ("post", "/api/v1/visits/{id}/admit", "Admit this patient from the waiting room", Some(&[Role::Referrer, Role::Consultant, Role::Coordinator])),
    ("post", "/api/v1/visits/{id}/finish", "End the visit (the call closes for everyone)", Some(&[Role::Referrer, Role::Consultant, Role::Coordinator])),
    ("post", "/api/v1/visits/{id}/cancel", "Cancel a visit that has not started (frees its slot)", Some(&[Role::Referrer, Role::Consultant, Role::Coordinator])),
    ("get", "/api/v1/visits/{id}/ice", "ICE servers with short-lived TURN credentials, the relay policy and the audio-only thresholds", Some(&[Role::Referrer, Role::Consultant, Role::Coordinator, Role::Patient])),
    ("get", "/api/v1/guest/visit", "For an invitation holder (X-Visit-Token): the visit's state and place in the queue", None),
    ("post", "/api/v1/guest/check-in", "For an invitation holder: enter the waiting room", None),
    ("get", "/api/v1/guest/ice", "For an invitation holder: ICE servers and TURN credentials", None),
    ("get", "/api/v1/rx/formulary", "The node's formulary (FHIR Medication codes); ?q= filters", Some(&[])),
    ("get", "/api/v1/rx/tables/{table}", "An e-prescription reference table (formulary, interactions, allergies)", Some(&[])),
    ("post", "/api/v1/rx/tables/{table}", "Import a reference table (CSV with header row, or JSON array); replaces it", Some(&[Role::Admin])),
    ("get", "/api/v1/rx/keys", "The node's prescription signing keys (JWKS) for offline verification", None),
    ("post", "/api/v1/rx/verify", "Verify a prescription QR code against this node's keys", Some(&[])),
    ("post", "/api/v1/rx/lookup", "A prescription by its id or its QR code's text (code), with its dispenses and validity; audited", Some(&[Role::Referrer, Role::Consultant, Role::Coordinator, Role::Patient, Role::Pharmacist])),
    ("post", "/api/v1/rx/check", "Allergy and interaction warnings for a prescription, without writing it", Some(&[Role::Referrer, Role::Consultant])),
    ("post", "/api/v1/rx/prescriptions", "Write a prescription (MedicationRequest); severe warnings need override_reason; visit_id links it to the visit it follows (FHIR encounter); destination sends it abroad", Some(&[Role::Referrer, Role::Consultant])),
    ("get", "/api/v1/rx/prescriptions/{id}", "A prescription with its dispenses (a pharmacist: any of this node's, by its id)", Some(&[Role::Referrer, Role::Consultant, Role::Coordinator, Role::Patient, Role::Pharmacist])),
    ("get", "/api/v1/rx/prescriptions/{id}/fhir", "A prescription as a FHIR Bundle (MedicationRequest, MedicationDispense)", Some(&[Role::Referrer, Role::Consultant, Role::Coordinator, Role::Patient, Role::Pharmacist])),
    ("post", "/api/v1/rx/prescriptions/{id}/dispense", "Record a dispense (MedicationDispense; performer defaults to the pharmacist); reported back to the prescribing node", Some(&[Role::Pharmacist])),
    ("get", "/api/v1/rx/received", "Prescriptions received from other nodes for dispensing here", Some(&[Role::Pharmacist])),
    ("get", "/api/v1/patients/{id}/allergies", "A patient's allergies (?format=fhir: AllergyIntolerance Bundle)", Some(&[Role::Referrer, Role::Consultant, Role::Coordinator, Role::Patient])),
    ("post", "/api/v1/patients/{id}/allergies", "Record an allergy (substance, criticality, reaction)", Some(&[Role::Referrer, Role::Consultant, Role::Coordinator])),
    ("get", "/api/v1/patients/{id}/prescriptions", "A patient's prescriptions", Some(&[Role::Referrer, Role::Consultant, Role::Coordinator, Role::Patient])),
    ("get", "/api/v1/monitoring/patients", "Ward view: monitored patients I may see with latest vitals and NEWS2", Some(&[Role::Referrer, Role::Consultant, Role::Coordinator])),
    ("get", "/api/v1/monitoring/patients/{id}", "A monitored patient: devices, latest vitals, NEWS2, recent observations, alerts; audited", Some(&[Role::Referrer, Role::Consultant, Role::Coordinator, Role::Patient])),
    ("get", "/api/v1/monitoring/patients/{id}/observations", "Observations (kind, device, from, to, limit), newest first; audited", Some(&[Role::Referrer, Role::Consultant, Role::Coordinator, Role::Patient])),
    ("post", "/api/v1/monitoring/patients/{id}/devices", "Register a device for a patient of my institution (device_id, kind, spo2_scale); MQTT password shown once", Some(&[Role::Referrer, Role::Consultant, Role::Coordinator])),
    ("get", "/api/v1/monitoring/devices/{device}", "A registered device", Some(&[Role::Referrer, Role::Consultant, Role::Coordinator])),
    ("delete", "/api/v1/monitoring/devices/{device}", "Unbind a device from its patient and revoke its broker password", Some(&[Role::Referrer, Role::Consultant, Role::Coordinator])),
    ("post", "/api/v1/monitoring/devices/{device}/credentials", "Rotate a device's MQTT password (shown once)", Some(&[Role::Referrer, Role::Consultant, Role::Coordinator])),
    ("get", "/api/v1/monitoring/alerts", "NEWS2 alerts of patients I may see (open=true: unacknowledged), with their escalation tier", Some(&[Role::Referrer, Role::Consultant, Role::Coordinator])),
    ("post", "/api/v1/monitoring/alerts/{alert}/ack", "Acknowledge an alert (stops its escalation)", Some(&[Role::Referrer, Role::Consultant, Role::Coordinator])),
    ("get", "/api/v1/monitoring/broker", "Mosquitto password file and ACL for the registered devices (as written to DATA/monitoring-broker) and the last SIGHUP reload (--mqtt-broker-pid-file)", Some(&[Role::Admin])),
    ("get", "/api/v1/openapi.json", "This document", None),
];

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/session", post(login).delete(logout))
        .route("/me", get(me))
        .route(
            "/institutions",
            get(list_institutions).post(create_institution),
        )
        .route("/users", get(list_users).post(create_user))
        .route("/teams", get(list_teams).post(create_team))
        .route("/tokens", get(list_tokens).post(create_token))
        .route("/tokens/{id}", delete(revoke_token))
        .route("/patients", get(search_patients).post(create_patient))
        .route("/patients/{id}", get(get_patient))
        .route(
            "/patients/{id}/consents",
            get(list_consents).post(record_consent),
        )
        .route("/patients/{id}/access-log", get(access_log))
        .route(
            "/consultations",
            get(list_consultations).post(create_consultation),
        )
        .route("/consultations/{id}", get(get_consultation))
        .route("/consultations/{id}/events", post(apply_event))
        .route("/consultations/{id}/candidates", get(candidates))
        .route(
            "/consultations/{id}/messages",
            get(get_thread).post(post_message),
        )
        .route("/consultations/{id}/attachments", post(upload))
        .route("/consultations/{id}/audit", get(consultation_audit))
        .route("/attachments/{id}", get(download))
        .route("/audit/verify", get(verify_audit))
        .route("/federation", get(federation_status))
        .route("/federation/outbox", get(federation_outbox))
        .route("/federation/outbox/{id}/retry", post(federation_retry))
        .route("/federation/pings", post(federation_pings))
        .route("/openapi.json", get(openapi))
        .merge(crate::certs_web::api::routes())
        .merge(crate::surveil::api::routes())
        .merge(crate::visits::api::routes())
        .merge(crate::rx::api::routes())
        .merge(crate::monitor::api::routes())
        .fallback(|| async { AppError::not_found("API route") })
}

pub(crate) fn csrf(h: &HeaderMap) -> Option<&str> {
    h.get("x-csrf-token").and_then(|v| v.to_str().ok())
}

/// Parse an id from the path with a 4xx that names the problem.
pub fn parse_id<T: std::str::FromStr>(what: &str, s: &str) -> AppResult<T> {
    s.parse()
        .map_err(|_| AppError::bad_request(format!("{s:?} is not a valid {what} id")))
}

/// A JSON Schema `pattern` for text that must not be blank (handlers trim what they are given: Rust's `trim` also
/// takes U+0085, which ECMA-262's `\s` does not).
pub(crate) const NON_BLANK: &str = r"[^\s\u0085]";

/// A JSON Schema `pattern` for a language tag as [`crate::consult`] takes it (blank entries are skipped).
pub(crate) const LANGUAGE_TAG: &str = r"^[ \t\r\n]*[A-Za-z0-9-]{0,12}[ \t\r\n]*$";

/// `Query` whose rejection (a value of the wrong type, a field given twice) is the API's own error, JSON with a
/// code, like a malformed body's; axum's own answers in plain text.
pub(crate) struct ApiQuery<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| ApiQuery(q))
            .map_err(|e| AppError::bad_request(e.body_text()))
    }
}

/// The JSON Schema of an optional id given as text: a UUID or `null` (for fields that a handler parses itself).
pub(crate) fn uuid_or_null(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "anyOf": [{ "type": "string", "format": "uuid" }, { "type": "null" }] })
}

/// JSON bodies are parsed by hand so that a malformed body gets our error shape and a message that says what is wrong.
pub(crate) fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> AppResult<T> {
    serde_json::from_slice(bytes)
        .or_else(|e| whole_numbers_as_integers(bytes).ok_or(e))
        .map_err(|e| AppError::unprocessable("error-bad-json", format!("invalid JSON body: {e}")))
}

/// JSON does not tell `5` from `5.0` (RFC 8259; JSON Schema's `integer` admits both), but serde refuses a
/// number written with a fraction where an integer is expected, and clients that hold numbers as floats (Python's
/// `json`, for one) write `5.0`. Tried only after the direct parse failed: the body is read again as a value, its
/// whole-number floats become integers, and the type is parsed from that; `None` (the first error stands) when
/// nothing changed or it still does not parse.
fn whole_numbers_as_integers<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    fn mend(v: &mut Value) -> bool {
        match v {
            Value::Number(n) if !n.is_i64() && !n.is_u64() => {
                let Some(f) = n.as_f64().filter(|f| f.fract() == 0.0) else {
                    return false;
                };
                // Outside these bounds the cast would saturate: leave such a number as it is.
                let whole = if (-9.007_199_254_740_992e15..0.0).contains(&f) {
                    serde_json::Number::from(f as i64)
                } else if (0.0..=9.007_199_254_740_992e15).contains(&f) {
                    serde_json::Number::from(f as u64)
                } else {
                    return false;
                };
                *n = whole;
                true
            }
            Value::Array(items) => items.iter_mut().fold(false, |m, i| mend(i) | m),
            Value::Object(fields) => fields.values_mut().fold(false, |m, f| mend(f) | m),
            _ => false,
        }
    }
    let mut v: Value = serde_json::from_slice(bytes).ok()?;
    if !mend(&mut v) {
        return None;
    }
    serde_json::from_value(v).ok()
}

#[derive(Deserialize, schemars::JsonSchema)]
struct LoginBody {
    username: String,
    password: String,
}

async fn login(
    State(st): State<AppState>,
    jar: CookieJar,
    raw: axum::body::Bytes,
) -> AppResult<Response> {
    let b: LoginBody = body(&raw)?;
    let user = check_password(&st, &b.username, &b.password).await?;
    let cookie = auth::start_session(&st, &user).await?;
    let csrf = st
        .store()
        .get_session(&auth::token_hash(cookie.value()))
        .await?
        .csrf_token;
    Ok((
        jar.add(cookie),
        Json(json!({ "user": user, "csrf_token": csrf })),
    )
        .into_response())
}

/// Verify a password; failures are audited and answered identically whether the user exists or not.
/// Repeated failures for one user name lock it out for a while (`throttle`), answered with 429.
pub async fn check_password(st: &AppState, username: &str, password: &str) -> AppResult<User> {
    let now = std::time::Instant::now();
    if let Err(wait) = st.login_throttle().check(username, now) {
        return Err(AppError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "error-too-many-sign-ins",
            format!(
                "too many failed sign-ins for this user name; try again in {} s",
                wait.as_secs().max(1)
            ),
        ));
    }
    let result = verify_credentials(st, username, password).await;
    match &result {
        Ok(_) => st.login_throttle().succeeded(username),
        Err(e) if e.status == StatusCode::UNAUTHORIZED => st.login_throttle().failed(username, now),
        Err(_) => {}
    }
    result
}

async fn verify_credentials(st: &AppState, username: &str, password: &str) -> AppResult<User> {
    let denied = || {
        AppError::new(
            StatusCode::UNAUTHORIZED,
            "error-bad-credentials",
            "wrong user name or password",
        )
    };
    match st.store().get_user_credentials(username.trim()).await {
        Ok((user, Some(hash))) if user.active => {
            let ok = {
                let (password, hash) = (password.to_owned(), hash.clone());
                tokio::task::spawn_blocking(move || auth::verify_password(&password, &hash))
                    .await
                    .unwrap_or(false)
            };
            let p = Principal {
                user: user.clone(),
                via: auth::Via::ApiToken,
            };
            let action = if ok {
                AuditAction::Login
            } else {
                AuditAction::LoginFailed
            };
            st.store()
                .append_audit(vec![event(&p, action, "user", user.id, None, "")])
                .await?;
            if ok {
                tracing::info!(user_id = %user.id, "signed in");
                Ok(user)
            } else {
                Err(denied())
            }
        }
        Ok(_) | Err(caravan_store::StoreError::NotFound(_)) => Err(denied()),
        Err(e) => Err(e.into()),
    }
}

async fn logout(State(st): State<AppState>, p: Principal, jar: CookieJar) -> AppResult<Response> {
    if let auth::Via::Session { token_hash, .. } = &p.via {
        st.store().delete_session(token_hash).await?;
        st.auth_cache().forget(token_hash);
        st.store()
            .append_audit(vec![event(
                &p,
                AuditAction::Logout,
                "user",
                p.user.id,
                None,
                "",
            )])
            .await?;
    }
    Ok((
        jar.add(auth::clear_session_cookie()),
        StatusCode::NO_CONTENT,
    )
        .into_response())
}

async fn me(p: Principal) -> Json<Value> {
    Json(json!({ "user": p.user, "csrf_token": p.csrf() }))
}

async fn list_institutions(
    State(st): State<AppState>,
    _p: Principal,
) -> AppResult<Json<Vec<Institution>>> {
    Ok(Json(st.store().list_institutions().await?))
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct NewInstitution {
    #[schemars(length(min = 1), regex(pattern = NON_BLANK))]
    pub name: String,
    pub level: InstitutionLevel,
    pub country: CountryCode,
    #[serde(default)]
    pub parent: Option<InstitutionId>,
    /// An IANA time zone, e.g. `Asia/Almaty`.
    pub timezone: String,
}

pub async fn do_create_institution(
    st: &AppState,
    p: &Principal,
    n: NewInstitution,
) -> AppResult<Institution> {
    p.require(&[Role::Admin])?;
    if !caravan_domain::routing::is_known_timezone(&n.timezone) {
        return Err(AppError::unprocessable(
            "error-bad-timezone",
            format!("{:?} is not an IANA time zone", n.timezone),
        ));
    }
    if n.name.trim().is_empty() {
        return Err(AppError::unprocessable(
            "error-empty-field",
            "name must not be empty",
        ));
    }
    if let Some(parent) = n.parent {
        st.store().get_institution(parent).await?;
    }
    let i = Institution {
        id: InstitutionId::new(),
        name: n.name.trim().into(),
        level: n.level,
        country: n.country,
        parent: n.parent,
        timezone: n.timezone,
    };
    st.store()
        .insert_institution(
            &i,
            vec![event(p, AuditAction::Create, "institution", i.id, None, "")],
        )
        .await?;
    Ok(i)
}

async fn create_institution(
    State(st): State<AppState>,
    p: Principal,
    h: HeaderMap,
    raw: axum::body::Bytes,
) -> AppResult<(StatusCode, Json<Institution>)> {
    p.check_csrf(csrf(&h))?;
    p.require(&[Role::Admin])?;
    let n: NewInstitution = body(&raw)?;
    Ok((
        StatusCode::CREATED,
        Json(do_create_institution(&st, &p, n).await?),
    ))
}

#[derive(Deserialize, schemars::JsonSchema)]
struct UsersQuery {
    /// Only the users of this institution.
    #[schemars(extend("format" = "uuid"))]
    institution: Option<String>,
}

async fn list_users(
    State(st): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<UsersQuery>,
) -> AppResult<Json<Vec<User>>> {
    p.require(&[Role::Admin, Role::Coordinator])?;
    let inst = q
        .institution
        .as_deref()
        .map(|s| parse_id("institution", s))
        .transpose()?;
    Ok(Json(st.store().list_users(inst).await?))
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct NewUser {
    #[schemars(regex(pattern = r"^[A-Za-z0-9._-]{3,64}$"))]
    pub username: String,
    #[schemars(length(min = 1), regex(pattern = NON_BLANK))]
    pub display_name: String,
    /// At least 10 characters.
    #[schemars(length(min = 10))]
    pub password: String,
    pub institution_id: InstitutionId,
    pub role: Role,
    #[serde(default)]
    pub patient_id: Option<PatientId>,
    #[serde(default)]
    pub profile: Option<PractitionerProfile>,
    #[serde(default = "default_locale")]
    pub locale: String,
}

fn default_locale() -> String {
    "en".into()
}

pub async fn do_create_user(st: &AppState, p: &Principal, n: NewUser) -> AppResult<User> {
    p.require(&[Role::Admin])?;
    let username = n.username.trim();
    if username.len() < 3
        || username.len() > 64
        || !username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err(AppError::unprocessable(
            "error-bad-username",
            "user names have 3 to 64 letters, digits, '.', '_' or '-'",
        ));
    }
    if n.password.chars().count() < 10 {
        return Err(AppError::unprocessable(
            "error-weak-password",
            "passwords have at least 10 characters",
        ));
    }
    st.store().get_institution(n.institution_id).await?;
    if n.role == Role::Patient && n.patient_id.is_none() {
        return Err(AppError::unprocessable(
            "error-patient-link",
            "a patient account must name its patient record",
        ));
    }
    if let Some(profile) = &n.profile {
        if let Some(s) = profile.specialties.iter().find(|s| !is_known_specialty(s)) {
            return Err(AppError::unprocessable(
                "error-unknown-specialty",
                format!("unknown specialty {s:?}"),
            ));
        }
    }
    let user = User {
        id: UserId::new(),
        username: username.to_owned(),
        display_name: n.display_name.trim().to_owned(),
        institution_id: n.institution_id,
        role: n.role,
        patient_id: n.patient_id,
        profile: n.profile,
        locale: crate::i18n::I18n::supported(&n.locale)
            .unwrap_or("en")
            .to_owned(),
        active: true,
    };
    let hash = {
        let pw = n.password.clone();
        tokio::task::spawn_blocking(move || auth::hash_password(&pw))
            .await
            .map_err(AppError::internal)??
    };
    st.store()
        .insert_user(
            &user,
            Some(&hash),
            vec![event(
                p,
                AuditAction::Create,
                "user",
                user.id,
                None,
                user.role.as_str(),
            )],
        )
        .await?;
    Ok(user)
}

async fn create_user(
    State(st): State<AppState>,
    p: Principal,
    h: HeaderMap,
    raw: axum::body::Bytes,
) -> AppResult<(StatusCode, Json<User>)> {
    p.check_csrf(csrf(&h))?;
    p.require(&[Role::Admin])?;
    let n: NewUser = body(&raw)?;
    Ok((StatusCode::CREATED, Json(do_create_user(&st, &p, n).await?)))
}

async fn list_teams(State(st): State<AppState>, p: Principal) -> AppResult<Json<Vec<Team>>> {
    Ok(Json(crate::teams::list(&st, &p).await?))
}

async fn create_team(
    State(st): State<AppState>,
    p: Principal,
    h: HeaderMap,
    raw: axum::body::Bytes,
) -> AppResult<(StatusCode, Json<Team>)> {
    p.check_csrf(csrf(&h))?;
    p.require(&[Role::Admin])?;
    let n: crate::teams::NewTeam = body(&raw)?;
    Ok((
        StatusCode::CREATED,
        Json(crate::teams::create(&st, &p, n).await?),
    ))
}

async fn list_tokens(State(st): State<AppState>, p: Principal) -> AppResult<Json<Value>> {
    Ok(Json(json!(st.store().list_api_tokens(p.user.id).await?)))
}

#[derive(Deserialize, schemars::JsonSchema)]
struct NewToken {
    #[schemars(length(min = 1, max = 100), regex(pattern = NON_BLANK))]
    name: String,
}

pub async fn do_create_token(
    st: &AppState,
    p: &Principal,
    name: &str,
) -> AppResult<(String, caravan_store::ApiTokenInfo)> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(AppError::unprocessable(
            "error-empty-field",
            "a token needs a name of at most 100 characters",
        ));
    }
    let token = auth::random_token();
    let info = st
        .store()
        .create_api_token(
            &auth::token_hash(&token),
            p.user.id,
            name,
            vec![event(
                p,
                AuditAction::TokenCreated,
                "user",
                p.user.id,
                None,
                "",
            )],
        )
        .await?;
    Ok((token, info))
}

async fn create_token(
    State(st): State<AppState>,
    p: Principal,
    h: HeaderMap,
    raw: axum::body::Bytes,
) -> AppResult<(StatusCode, Json<Value>)> {
    p.check_csrf(csrf(&h))?;
    let n: NewToken = body(&raw)?;
    let (token, info) = do_create_token(&st, &p, &n.name).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "token": token, "info": info })),
    ))
}

async fn revoke_token(
    State(st): State<AppState>,
    p: Principal,
    h: HeaderMap,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    p.check_csrf(csrf(&h))?;
    st.store()
        .revoke_api_token(
            p.user.id,
            &id,
            vec![event(&p, AuditAction::Delete, "api_token", &id, None, "")],
        )
        .await?;
    st.auth_cache().clear();
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, schemars::JsonSchema)]
struct PatientQuery {
    /// Part of the given or family name.
    name: Option<String>,
    /// `YYYY-MM-DD`.
    #[schemars(extend("format" = "date"))]
    birth_date: Option<String>,
}

async fn search_patients(
    State(st): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<PatientQuery>,
) -> AppResult<Json<Vec<Patient>>> {
    p.require(&[
        Role::Referrer,
        Role::Consultant,
        Role::Coordinator,
        Role::Patient,
    ])?;
    let birth_date = q
        .birth_date
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse().map_err(|_| {
                AppError::bad_request(format!("birth_date {s:?} is not a date (YYYY-MM-DD)"))
            })
        })
        .transpose()?;
    Ok(Json(
        consult::search_patients(
            &st,
            &p,
            &PatientFilter {
                name: q.name,
                birth_date,
                limit: Some(200),
            },
        )
        .await?,
    ))
}

async fn create_patient(
    State(st): State<AppState>,
    p: Principal,
    h: HeaderMap,
    raw: axum::body::Bytes,
) -> AppResult<(StatusCode, Json<Patient>)> {
    p.check_csrf(csrf(&h))?;
    p.require(&[Role::Referrer, Role::Coordinator])?;
    let n: NewPatient = body(&raw)?;
    Ok((
        StatusCode::CREATED,
        Json(consult::create_patient(&st, &p, n).await?),
    ))
}

async fn get_patient(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> AppResult<Json<Patient>> {
    Ok(Json(
        consult::get_patient(&st, &p, parse_id("patient", &id)?).await?,
    ))
}

async fn list_consents(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> AppResult<Json<Vec<Consent>>> {
    Ok(Json(
        consult::consents(&st, &p, parse_id("patient", &id)?).await?,
    ))
}

#[derive(Deserialize, schemars::JsonSchema)]
struct ConsentBody {
    scope: ConsentScope,
    granted: bool,
    #[serde(default)]
    note: String,
}

async fn record_consent(
    State(st): State<AppState>,
    p: Principal,
    h: HeaderMap,
    Path(id): Path<String>,
    raw: axum::body::Bytes,
) -> AppResult<(StatusCode, Json<Consent>)> {
    p.check_csrf(csrf(&h))?;
    p.require(&[Role::Referrer, Role::Coordinator])?;
    let id = parse_id("patient", &id)?;
    let b: ConsentBody = body(&raw)?;
    Ok((
        StatusCode::CREATED,
        Json(consult::record_consent(&st, &p, id, b.scope, b.granted, &b.note).await?),
    ))
}

/// The patient's access log: the patient themself, and clinicians of the patient's home institution.
pub async fn access_log_for(
    st: &AppState,
    p: &Principal,
    id: PatientId,
) -> AppResult<Vec<audit::AuditRecord>> {
    p.require(&[Role::Referrer, Role::Coordinator, Role::Patient])?;
    let patient = st.store().get_patient(&p.actor(), id).await?;
    if p.role() != Role::Patient && patient.institution_id != p.user.institution_id {
        return Err(consult::not_home(
            "the access log is kept by the patient's home institution",
        ));
    }
    let log = st.store().audit_for_patient(id, 500).await?;
    st.store()
        .append_audit(vec![event(
            p,
            AuditAction::Read,
            "audit_log",
            id,
            Some(id),
            "",
        )])
        .await?;
    Ok(log)
}

async fn access_log(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> AppResult<Json<Vec<audit::AuditRecord>>> {
    Ok(Json(
        access_log_for(&st, &p, parse_id("patient", &id)?).await?,
    ))
}

#[derive(Deserialize, schemars::JsonSchema)]
struct ConsultationQuery {
    /// States, comma-separated (e.g. `submitted,assigned`).
    #[schemars(regex(pattern = state_list_pattern()))]
    state: Option<String>,
    /// Only cases past their SLA deadline.
    overdue: Option<bool>,
    /// Only the caller's own cases (assigned to a consultant, referred by a referrer).
    mine: Option<bool>,
}

/// `ConsultationQuery::state` as a pattern: a comma-separated list of states.
fn state_list_pattern() -> String {
    let one = ConsultationState::ALL.map(|s| s.as_str()).join("|");
    format!("^(({one})(,({one}))*)?$")
}

async fn list_consultations(
    State(st): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<ConsultationQuery>,
) -> AppResult<Json<Vec<caravan_store::ConsultationSummary>>> {
    let states = q
        .state
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.split(',')
                .map(|x| {
                    x.parse()
                        .map_err(|e: ParseError| AppError::bad_request(e.to_string()))
                })
                .collect::<AppResult<Vec<_>>>()
        })
        .transpose()?
        .unwrap_or_default();
    let mut f = ConsultationFilter {
        states,
        ..Default::default()
    };
    if q.overdue == Some(true) {
        f.overdue_at = Some(Utc::now());
    }
    if q.mine == Some(true) {
        match p.role() {
            Role::Consultant => f.assigned_to = Some(p.user.id),
            Role::Referrer => f.referrer_id = Some(p.user.id),
            _ => {}
        }
    }
    Ok(Json(consult::list(&st, &p, &f).await?))
}

async fn create_consultation(
    State(st): State<AppState>,
    p: Principal,
    h: HeaderMap,
    raw: axum::body::Bytes,
) -> AppResult<(StatusCode, Json<Consultation>)> {
    p.check_csrf(csrf(&h))?;
    p.require(&[Role::Referrer])?;
    let n: NewConsultation = body(&raw)?;
    Ok((
        StatusCode::CREATED,
        Json(consult::create_consultation(&st, &p, n).await?),
    ))
}

async fn get_consultation(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> AppResult<Json<consult::CaseView<caravan_store::RawThread>>> {
    p.require(consult::CASE_READERS)?;
    Ok(Json(
        consult::view_raw(&st, &p, parse_id("consultation", &id)?).await?,
    ))
}

#[derive(Deserialize, schemars::JsonSchema)]
struct ThreadQuery {
    /// A message of the thread: the page ends just before it.
    #[schemars(extend("format" = "uuid"))]
    before: Option<String>,
    /// Messages in the page (1 to 500; default 100).
    #[schemars(regex(pattern = r"^0*([1-9][0-9]?|[1-4][0-9][0-9]|500)$"))]
    limit: Option<String>,
}

/// Older parts of a case's thread than its read returned (`?before=MESSAGE&limit=N`, thread order).
async fn get_thread(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ThreadQuery>,
) -> AppResult<Json<Vec<caravan_store::Message>>> {
    let before = q
        .before
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| parse_id("message", s))
        .transpose()?;
    let limit = match q.limit.as_deref().filter(|s| !s.is_empty()) {
        None => caravan_store::THREAD_WINDOW,
        Some(s) => s.parse().map_err(|_| {
            AppError::bad_request(format!(
                "limit must be a number from 1 to {}",
                consult::MAX_THREAD_PAGE
            ))
        })?,
    };
    Ok(Json(
        consult::thread_page(&st, &p, parse_id("consultation", &id)?, before, limit).await?,
    ))
}

async fn apply_event(
    State(st): State<AppState>,
    p: Principal,
    h: HeaderMap,
    Path(id): Path<String>,
    raw: axum::body::Bytes,
) -> AppResult<Json<Consultation>> {
    p.check_csrf(csrf(&h))?;
    p.require(&[Role::Referrer, Role::Consultant, Role::Coordinator])?;
    let id = parse_id("consultation", &id)?;
    let ev: EventRequest = body(&raw)?;
    Ok(Json(consult::apply(&st, &p, id, ev).await?))
}

async fn candidates(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> AppResult<Json<Value>> {
    Ok(Json(json!(
        consult::candidates(&st, &p, parse_id("consultation", &id)?).await?
    )))
}

#[derive(Deserialize, schemars::JsonSchema)]
struct MessageBody {
    body: String,
    #[serde(default)]
    parent_id: Option<MessageId>,
}

async fn post_message(
    State(st): State<AppState>,
    p: Principal,
    h: HeaderMap,
    Path(id): Path<String>,
    raw: axum::body::Bytes,
) -> AppResult<(StatusCode, Json<caravan_store::Message>)> {
    p.check_csrf(csrf(&h))?;
    p.require(&[Role::Referrer, Role::Consultant, Role::Coordinator])?;
    let id = parse_id("consultation", &id)?;
    let b: MessageBody = body(&raw)?;
    Ok((
        StatusCode::CREATED,
        Json(consult::post_message(&st, &p, id, b.parent_id, &b.body).await?),
    ))
}

/// `POST /api/v1/consultations/{id}/attachments`: the multipart field `file`, streamed into the blob store (see
/// [`crate::upload`]; the node's body limit does not apply, the attachment limit does).
async fn upload(
    State(st): State<AppState>,
    p: Principal,
    h: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Body,
) -> AppResult<(StatusCode, Json<caravan_store::Attachment>)> {
    p.check_csrf(csrf(&h))?;
    p.require(&[Role::Referrer, Role::Consultant, Role::Coordinator])?;
    let id = parse_id("consultation", &id)?;
    let limit = st.config().max_attachment_bytes;
    let file = crate::upload::file(&p, crate::upload::Csrf::Checked, &h, body, limit).await?;
    let (filename, content_type) = (file.filename.clone(), file.content_type.clone());
    Ok((
        StatusCode::CREATED,
        Json(consult::add_attachment_stream(&st, &p, id, &filename, &content_type, file).await?),
    ))
}

async fn consultation_audit(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> AppResult<Json<Vec<audit::AuditRecord>>> {
    p.require(&[Role::Referrer, Role::Consultant, Role::Coordinator])?;
    let id: ConsultationId = parse_id("consultation", &id)?;
    let c = st.store().get_consultation(&p.actor(), id).await?;
    Ok(Json(
        st.store()
            .audit_for_entity("consultation", &id.to_string(), Some(c.patient_id), 500)
            .await?,
    ))
}

pub async fn download_response(st: &AppState, p: &Principal, id: &str) -> AppResult<Response> {
    p.require(&[Role::Referrer, Role::Consultant, Role::Coordinator])?;
    // Streamed: a slide of gigabytes is sent piece by piece.
    let (a, size, stream) = consult::attachment_stream(st, p, parse_id("attachment", id)?).await?;
    let disposition = format!(
        "attachment; filename=\"{}\"",
        a.filename.replace(['"', '\\', '\r', '\n'], "_")
    );
    Ok((
        [
            (header::CONTENT_TYPE, a.content_type),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, "private, no-store".to_owned()),
            (header::CONTENT_LENGTH, size.to_string()),
        ],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
}

async fn download(
    State(st): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> AppResult<Response> {
    download_response(&st, &p, &id).await
}

async fn verify_audit(State(st): State<AppState>, p: Principal) -> AppResult<Json<Value>> {
    p.require(&[Role::Admin])?;
    match caravan_store::verify_audit_chain(st.store()).await? {
        Ok(n) => Ok(Json(json!({ "intact": true, "events": n }))),
        Err(e) => Ok(Json(
            json!({ "intact": false, "first_broken": e.seq(), "reason": e.to_string() }),
        )),
    }
}

async fn federation_status(State(st): State<AppState>, p: Principal) -> AppResult<Json<Value>> {
    p.require(&[Role::Admin])?;
    Ok(Json(crate::federation::status(&st).await?))
}

#[derive(Deserialize, schemars::JsonSchema)]
struct OutboxQuery {
    #[serde(default = "pending_state")]
    #[schemars(extend("enum" = ["pending", "delivered", "dead"]))]
    state: String,
}

fn pending_state() -> String {
    "pending".into()
}

async fn federation_outbox(
    State(st): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<OutboxQuery>,
) -> AppResult<Json<Value>> {
    p.require(&[Role::Admin])?;
    if !matches!(q.state.as_str(), "pending" | "delivered" | "dead") {
        return Err(AppError::unprocessable(
            "error-bad-outbox-state",
            "state must be pending, delivered or dead",
        ));
    }
    Ok(Json(json!(st.store().fed_outbox(&q.state, 500).await?)))
}

async fn federation_retry(
    State(st): State<AppState>,
    p: Principal,
    h: HeaderMap,
    Path(id): Path<String>,
) -> AppResult<Json<Value>> {
    p.check_csrf(csrf(&h))?;
    p.require(&[Role::Admin])?;
    let id: uuid::Uuid = parse_id("envelope", &id)?;
    let dest = crate::federation::retry(&st, &p, id).await?;
    Ok(Json(
        json!({ "id": id, "destination": dest, "state": "pending" }),
    ))
}

#[derive(Deserialize, schemars::JsonSchema)]
struct PingRequest {
    to: String,
    count: u32,
}

async fn federation_pings(
    State(st): State<AppState>,
    p: Principal,
    h: HeaderMap,
    raw: axum::body::Bytes,
) -> AppResult<(StatusCode, Json<Value>)> {
    p.check_csrf(csrf(&h))?;
    p.require(&[Role::Admin])?;
    let r: PingRequest = body(&raw)?;
    if r.count == 0 || r.count > 10_000 {
        return Err(AppError::unprocessable(
            "error-bad-count",
            "count must be between 1 and 10000",
        ));
    }
    let n = crate::federation::enqueue_pings(&st, &r.to, r.count).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "enqueued": n }))))
}

/// The `{name}` placeholders of a route's path, in order.
fn path_parameters(path: &str) -> impl Iterator<Item = &str> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
}

/// The JSON schema of a path parameter, by its name (one meaning per name across the API).
fn path_parameter_schema(name: &str) -> Value {
    match name {
        "country" => json!({ "type": "string", "pattern": "^[A-Z]{2}$" }),
        "table" => {
            json!({ "type": "string", "enum": caravan_store::rx::RxTable::ALL.map(|t| t.as_str()) })
        }
        "id" => json!({ "type": "string", "format": "uuid" }),
        _ => json!({ "type": "string" }),
    }
}

/// OpenAPI 3.1, derived from [`ROUTES`].
/// What an operation's request body is, for the OpenAPI document.
enum RequestBody {
    /// JSON described by a Rust type's JSON Schema (schemars, from the same serde attributes that parse it).
    Json(fn(&mut schemars::SchemaGenerator) -> schemars::Schema),
    /// Another media type, described in words.
    Other(&'static str, &'static str),
    /// A multipart form with a `file` field.
    Multipart,
}

fn schema<T: schemars::JsonSchema>(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
    g.subschema_for::<T>()
}

/// The request body of every operation that takes one. A POST/PUT/PATCH route missing here and from
/// [`NO_BODY`] fails `every_write_declares_its_body`.
fn request_body(method: &str, path: &str) -> Option<RequestBody> {
    use crate::{certs_web, monitor, rx, surveil, teams, visits};
    use RequestBody::*;
    Some(match (method, path) {
        ("post", "/api/v1/session") => Json(schema::<LoginBody>),
        ("post", "/api/v1/institutions") => Json(schema::<NewInstitution>),
        ("post", "/api/v1/users") => Json(schema::<NewUser>),
        ("post", "/api/v1/teams") => Json(schema::<teams::NewTeam>),
        ("post", "/api/v1/tokens") => Json(schema::<NewToken>),
        ("post", "/api/v1/patients") => Json(schema::<NewPatient>),
        ("post", "/api/v1/patients/{id}/consents") => Json(schema::<ConsentBody>),
        ("post", "/api/v1/consultations") => Json(schema::<NewConsultation>),
        ("post", "/api/v1/consultations/{id}/events") => Json(schema::<EventRequest>),
        ("post", "/api/v1/consultations/{id}/messages") => Json(schema::<MessageBody>),
        ("post", "/api/v1/consultations/{id}/attachments") => Multipart,
        ("post", "/api/v1/federation/pings") => Json(schema::<PingRequest>),
        ("post", "/api/v1/certs/verify") => Json(schema::<certs_web::VerifyRequest>),
        ("post", "/api/v1/certs/issue") => Json(schema::<certs_web::IssueRequest>),
        ("post", "/api/v1/certs/trust") => Other(
            "application/octet-stream",
            "A certificate (PEM or DER), a DSC list, a JWKS or a trust-list exchange document",
        ),
        ("post", "/api/v1/certs/rules") => Other(
            "application/json",
            "CertLogic business rules or value sets (an array, or one rule or value set)",
        ),
        ("put", "/api/v1/surveillance/regions") => {
            Json(schema::<Vec<caravan_store::surveillance::SurvRegion>>)
        }
        ("post", "/api/v1/surveillance/reports") => Json(schema::<surveil::api::ReportBody>),
        ("post", "/api/v1/surveillance/import") => Other(
            "text/csv",
            "Cases or aggregates with a header row (see docs/surveillance.md)",
        ),
        ("post", "/api/v1/surveillance/alerts/{id}/notes") => {
            Json(schema::<surveil::api::NoteBody>)
        }
        ("post", "/api/v1/visits") => Json(schema::<visits::NewVisit>),
        ("post", "/api/v1/visits/schedules") => Json(schema::<visits::NewSchedule>),
        ("post", "/api/v1/visits/schedules/{id}/slots") => Json(schema::<visits::NewSlots>),
        ("post", "/api/v1/visits/{id}/invitations") => Json(schema::<visits::NewInvitation>),
        ("post", "/api/v1/rx/tables/{table}") => Other(
            "text/csv",
            "The table as CSV with a header row, or as a JSON array of objects (application/json)",
        ),
        ("post", "/api/v1/rx/verify") => Json(schema::<rx::api::VerifyBody>),
        ("post", "/api/v1/rx/lookup") => Json(schema::<rx::api::LookupBody>),
        ("post", "/api/v1/rx/check") | ("post", "/api/v1/rx/prescriptions") => {
            Json(schema::<rx::NewPrescription>)
        }
        ("post", "/api/v1/rx/prescriptions/{id}/dispense") => Json(schema::<rx::NewDispense>),
        ("post", "/api/v1/patients/{id}/allergies") => Json(schema::<rx::NewAllergy>),
        ("post", "/api/v1/monitoring/patients/{id}/devices") => Json(schema::<monitor::NewDevice>),
        _ => return None,
    })
}

/// An operation's query parameters, described by the type its handler parses them into (each property a
/// parameter; see [`query_parameters`]).
fn query_type(
    method: &str,
    path: &str,
) -> Option<fn(&mut schemars::SchemaGenerator) -> schemars::Schema> {
    use crate::{certs_web, monitor, rx, surveil, visits};
    fn inline<T: schemars::JsonSchema>(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(g)
    }
    Some(match (method, path) {
        ("get", "/api/v1/users") => inline::<UsersQuery>,
        ("get", "/api/v1/patients") => inline::<PatientQuery>,
        ("get", "/api/v1/consultations") => inline::<ConsultationQuery>,
        ("get", "/api/v1/consultations/{id}/messages") => inline::<ThreadQuery>,
        ("get", "/api/v1/federation/outbox") => inline::<OutboxQuery>,
        ("get", "/api/v1/surveillance/cases") => inline::<surveil::api::ListQuery>,
        ("get", "/api/v1/surveillance/series") => inline::<surveil::api::SeriesQuery>,
        ("get", "/api/v1/monitoring/alerts") => inline::<monitor::api::AlertsQuery>,
        ("get", "/api/v1/monitoring/patients/{id}/observations") => {
            inline::<monitor::ObservationQuery>
        }
        ("get", "/api/v1/rx/formulary") => inline::<rx::api::Search>,
        ("get", "/api/v1/patients/{id}/allergies") => inline::<rx::api::Format>,
        ("post", "/api/v1/certs/trust") => inline::<certs_web::api::ImportQuery>,
        ("get", "/api/v1/visits") => inline::<visits::api::ListQuery>,
        ("get", "/api/v1/visits/schedules/{id}/slots") => inline::<visits::api::SlotQuery>,
        _ => return None,
    })
}

/// OpenAPI query parameters from an object schema: one per property, required as the object says, `null` taken
/// out of each (a query value is text or absent).
fn query_parameters(object: &schemars::Schema) -> Vec<Value> {
    let required: Vec<&str> = object
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(properties) = object.get("properties").and_then(Value::as_object) else {
        return Vec::new();
    };
    properties
        .iter()
        .map(|(name, schema)| {
            let mut schema = schema.clone();
            let description = schema
                .as_object_mut()
                .and_then(|o| {
                    o.remove("default");
                    o.remove("description")
                })
                .unwrap_or(Value::Null);
            if let Some(types) = schema.get_mut("type").and_then(Value::as_array_mut) {
                types.retain(|t| t != "null");
                if let [only] = types.as_slice() {
                    let only = only.clone();
                    schema["type"] = only;
                }
            }
            let mut p = json!({ "name": name, "in": "query", "required": required.contains(&name.as_str()), "schema": schema });
            if !description.is_null() {
                p["description"] = description;
            }
            p
        })
        .collect()
}

/// Writes that take no body (the path says everything).
#[cfg(test)]
const NO_BODY: &[(&str, &str)] = &[
    ("post", "/api/v1/federation/outbox/{id}/retry"),
    ("post", "/api/v1/surveillance/alerts/{id}/ack"),
    ("post", "/api/v1/visits/waiting-room/admit-next"),
    ("post", "/api/v1/visits/{id}/check-in"),
    ("post", "/api/v1/visits/{id}/admit"),
    ("post", "/api/v1/visits/{id}/finish"),
    ("post", "/api/v1/visits/{id}/cancel"),
    ("post", "/api/v1/guest/check-in"),
    ("post", "/api/v1/monitoring/devices/{device}/credentials"),
    ("post", "/api/v1/monitoring/alerts/{alert}/ack"),
];

pub fn openapi_document() -> Value {
    let mut generator = schemars::generate::SchemaSettings::draft2020_12()
        .with(|s| {
            s.definitions_path = "/components/schemas".into();
            s.meta_schema = None;
        })
        .into_generator();
    let mut paths = serde_json::Map::new();
    for (method, path, summary, roles) in ROUTES {
        let entry = paths.entry((*path).to_owned()).or_insert_with(|| json!({}));
        let mut op = json!({
            "summary": summary,
            "responses": {
                "200": { "description": "OK" },
                "201": { "description": "Created" },
                "204": { "description": "Done; nothing to return" },
                "4XX": { "description": "What was wrong", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }
            }
        });
        if let Some(roles) = roles {
            op["security"] = json!([{ "bearer": [] }, { "session": [] }]);
            op["x-caravan-roles"] = json!(roles.iter().map(|r| r.as_str()).collect::<Vec<_>>());
        } else {
            op["security"] = json!([]);
        }
        let mut params: Vec<Value> = path_parameters(path)
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": path_parameter_schema(name) }))
            .collect();
        if let Some(query) = query_type(method, path) {
            params.extend(query_parameters(&query(&mut generator)));
        }
        if !params.is_empty() {
            op["parameters"] = Value::Array(params);
        }
        match request_body(method, path) {
            Some(RequestBody::Json(schema)) => {
                op["requestBody"] = json!({ "required": true, "content": { "application/json": { "schema": schema(&mut generator) } } });
            }
            Some(RequestBody::Other(media, description)) => {
                op["requestBody"] = json!({ "required": true, "description": description, "content": { media: { "schema": { "type": "string" } } } });
            }
            Some(RequestBody::Multipart) => {
                op["requestBody"] = json!({ "required": true, "content": { "multipart/form-data": { "schema": {
                    "type": "object", "required": ["file"], "additionalProperties": false,
                    "properties": { "file": { "type": "string", "contentMediaType": "application/octet-stream" } } } } } });
            }
            None => {}
        }
        entry[*method] = op;
    }
    let mut schemas = generator.take_definitions(true);
    schemas.insert(
        "Error".into(),
        json!({ "type": "object", "required": ["error", "message"], "properties": { "error": { "type": "string" }, "message": { "type": "string" } } }),
    );
    json!({
        "openapi": "3.1.0",
        "info": { "title": "Caravan node API", "version": "1" },
        "servers": [{ "url": "/" }],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer" },
                "session": { "type": "apiKey", "in": "cookie", "name": auth::SESSION_COOKIE }
            },
            "schemas": schemas
        }
    })
}

async fn openapi() -> Json<Value> {
    Json(openapi_document())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `{name}` of every path is declared as a required path parameter of its operation (schemathesis
    /// refuses an operation whose template names an undeclared parameter).
    /// Every write declares its body (or is listed as taking none), and every `$ref` points at a schema of the
    /// document, so a client generator or a fuzzer (schemathesis) can build valid requests.
    #[derive(Debug, Deserialize)]
    struct Counts {
        n: u32,
        list: Vec<i64>,
        ratio: f64,
    }

    /// `5.0` is the integer 5 (JSON does not tell them apart); a fraction, or a number too large to be meant
    /// exactly, keeps serde's own error.
    #[test]
    fn whole_number_floats_are_integers() {
        let c: Counts = body(br#"{"n": 5.0, "list": [-3.0, 2], "ratio": 1}"#).unwrap();
        assert_eq!((c.n, c.list, c.ratio), (5, vec![-3, 2], 1.0));
        for bad in [
            r#"{"n": 5.5, "list": [], "ratio": 1}"#,
            r#"{"n": 1e300, "list": [], "ratio": 1}"#,
            r#"{"n": -1.0, "list": [], "ratio": 1}"#,
        ] {
            let e = body::<Counts>(bad.as_bytes()).unwrap_err();
            assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
            assert!(
                e.message.contains("invalid JSON body"),
                "{bad}: {}",
                e.message
            );
        }
        let e = body::<Counts>(br#"{"n": 5.5, "list": [], "ratio": 1}"#).unwrap_err();
        assert!(
            e.message.contains("5.5"),
            "the first error stands: {}",
            e.message
        );
    }

    /// The list filters are documented as query parameters, from the types their handlers parse: required ones
    /// marked, `null` taken out, and the patterns agree with what the handlers take.
    #[test]
    fn query_parameters_come_from_the_handlers_types() {
        let doc = openapi_document();
        let params = |method: &str, path: &str| -> Vec<Value> {
            doc["paths"][path][method]["parameters"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|p| p["in"] == "query")
                .collect()
        };
        let find = |list: &[Value], name: &str| -> Value {
            list.iter()
                .find(|p| p["name"] == name)
                .cloned()
                .unwrap_or_else(|| panic!("no query parameter {name}: {list:?}"))
        };
        let cases = params("get", "/api/v1/consultations");
        assert_eq!(cases.len(), 3, "{cases:?}");
        assert_eq!(find(&cases, "overdue")["schema"]["type"], "boolean");
        assert_eq!(find(&cases, "overdue")["required"], false);
        let series = params("get", "/api/v1/surveillance/series");
        assert_eq!(find(&series, "disease")["required"], true);
        assert_eq!(find(&series, "region")["schema"]["type"], "string");
        let thread = params("get", "/api/v1/consultations/{id}/messages");
        assert_eq!(find(&thread, "before")["schema"]["format"], "uuid");
        let limit = regex::Regex::new(
            find(&thread, "limit")["schema"]["pattern"]
                .as_str()
                .expect("limit pattern"),
        )
        .unwrap();
        for n in [
            "0", "1", "007", "99", "100", "499", "500", "501", "1000", "-1", "", "a",
        ] {
            let taken = n
                .parse::<usize>()
                .is_ok_and(|n| (1..=consult::MAX_THREAD_PAGE).contains(&n));
            assert_eq!(limit.is_match(n), taken, "limit {n:?}");
        }
        let states = regex::Regex::new(&state_list_pattern()).unwrap();
        assert!(states.is_match("") && states.is_match("submitted,in_progress"));
        assert!(!states.is_match("submitted,") && !states.is_match("open"));
        let readings = params("get", "/api/v1/monitoring/patients/{id}/observations");
        assert_eq!(
            find(&readings, "limit")["schema"]["maximum"],
            crate::monitor::MAX_OBSERVATIONS
        );
        // A body-taking write with a query (a lone certificate's country) keeps its body.
        assert_eq!(params("post", "/api/v1/certs/trust").len(), 1);
        assert!(doc["paths"]["/api/v1/certs/trust"]["post"]["requestBody"].is_object());
    }

    /// The request schemas state the bounds the handlers check, so that a client generator or a fuzzer builds
    /// requests that are taken (schemathesis' `positive_data_acceptance`).
    #[test]
    fn request_schemas_state_the_handlers_bounds() {
        let doc = openapi_document();
        let s = &doc["components"]["schemas"];
        let given = &s["NewPatient"]["properties"]["given_name"];
        assert_eq!(
            (&given["minLength"], &given["maxLength"]),
            (&json!(1), &json!(200))
        );
        assert_eq!(given["pattern"], NON_BLANK);
        assert_eq!(
            s["NewPatient"]["properties"]["languages"]["items"]["pattern"],
            LANGUAGE_TAG
        );
        assert_eq!(s["NewToken"]["properties"]["name"]["maxLength"], 100);
        assert_eq!(s["CountryCode"]["pattern"], "^[A-Z]{2}$");
        let minutes = &s["NewSlots"]["properties"]["minutes"];
        assert_eq!(
            (&minutes["minimum"], &minutes["maximum"]),
            (&json!(5), &json!(240))
        );
        assert_eq!(s["NewSlots"]["properties"]["start"]["format"], "date-time");
        assert_eq!(
            s["NewPrescription"]["properties"]["times_per_day"]["maximum"],
            24
        );
        assert_eq!(
            s["NewPrescription"]["properties"]["patient_id"]["format"],
            "uuid"
        );
        assert_eq!(
            s["NewVisit"]["properties"]["slot_id"]["anyOf"][0]["format"],
            "uuid"
        );
        let specialties = s["NewConsultation"]["properties"]["specialty"]["enum"]
            .as_array()
            .expect("specialty enum")
            .len();
        assert_eq!(specialties, caravan_domain::SPECIALTIES.len());
        assert_eq!(s["VerifyRequest"]["required"], json!(["text"]));
        assert_eq!(s["IssueRequest"]["properties"]["kind"]["enum"][3], "shc");
        let upload = &doc["paths"]["/api/v1/consultations/{id}/attachments"]["post"]["requestBody"]
            ["content"]["multipart/form-data"]["schema"];
        assert_eq!(upload["additionalProperties"], false);
    }

    #[test]
    fn every_write_declares_its_body() {
        let doc = openapi_document();
        for (method, path, _, _) in ROUTES {
            if !matches!(*method, "post" | "put" | "patch") {
                continue;
            }
            let op = &doc["paths"][*path][*method];
            let declared = op.get("requestBody").is_some();
            let none = NO_BODY.contains(&(*method, *path));
            assert!(
                declared != none,
                "{method} {path}: body declared {declared}, listed as bodiless {none}"
            );
        }
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        for (i, _) in text.match_indices("\"$ref\":\"#/components/schemas/") {
            let rest = &text[i + "\"$ref\":\"#/components/schemas/".len()..];
            let name = &rest[..rest.find('"').expect("end of $ref")];
            assert!(schemas.contains_key(name), "dangling $ref {name}");
        }
        // The consultation body names its required fields and the urgency's values.
        let nc = &schemas["NewConsultation"];
        let required: Vec<&str> = nc["required"]
            .as_array()
            .expect("required")
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert!(
            required.contains(&"patient_id") && required.contains(&"urgency"),
            "{nc}"
        );
        assert!(
            !required.contains(&"submit"),
            "defaulted fields are optional: {nc}"
        );
        assert_eq!(
            schemas["Urgency"]["enum"],
            json!(["routine", "urgent", "emergency"])
        );
    }

    #[test]
    fn every_path_placeholder_is_declared() {
        let doc = openapi_document();
        let paths = doc["paths"].as_object().expect("paths");
        for (path, ops) in paths {
            let wanted: Vec<&str> = path_parameters(path).collect();
            for (method, op) in ops.as_object().expect("operations") {
                let declared: Vec<&str> = op["parameters"]
                    .as_array()
                    .map(|ps| {
                        ps.iter()
                            .filter(|p| p["in"] == "path")
                            .filter_map(|p| p["name"].as_str())
                            .collect()
                    })
                    .unwrap_or_default();
                assert_eq!(declared, wanted, "{method} {path}");
            }
        }
        let table = &paths["/api/v1/rx/tables/{table}"]["get"]["parameters"][0]["schema"];
        assert_eq!(
            table["enum"],
            json!(["formulary", "interactions", "allergies"])
        );
    }
}
