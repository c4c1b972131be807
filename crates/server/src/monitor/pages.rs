//! Pages: the ward (`/ui/monitoring`), a patient's monitoring (`/ui/monitoring/patients/{id}`: current set,
//! NEWS2, trend chart, observations, alerts, devices with registration, password rotation and unbinding) and the
//! alerts list with acknowledgement (`/ui/monitoring/alerts`). All work without JavaScript.

use super::{AlertView, Credentials, NewDevice, PatientMonitoring, WardRow, CLINICAL};
use crate::auth::{Principal, UiPrincipal};
use crate::consult::PATIENT_READERS;
use crate::error::{AppError, AppResult};
use crate::ui::{ctx, done, render, Ctx};
use crate::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui/monitoring", get(ward_page))
        .route("/ui/monitoring/alerts", get(alerts_page))
        .route("/ui/monitoring/alerts/{id}/ack", post(ack_submit))
        .route("/ui/monitoring/patients/{id}", get(patient_page))
        .route(
            "/ui/monitoring/patients/{id}/devices",
            post(register_submit),
        )
        .route(
            "/ui/monitoring/devices/{device}/rotate",
            post(rotate_submit),
        )
        .route(
            "/ui/monitoring/devices/{device}/unbind",
            post(unbind_submit),
        )
}

fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

pub struct WardLine {
    pub patient_id: String,
    pub name: String,
    pub birth_date: String,
    pub latest: String,
    pub last_reading: String,
    pub score: String,
    pub risk: &'static str,
    pub risk_label: String,
    pub set_label: String,
    pub alerts: String,
    pub escalated: bool,
}

fn ward_line(c: &Ctx<'_>, r: &WardRow) -> WardLine {
    let (score, risk, risk_label, set_label) = match &r.news2 {
        Some(s) => (
            s.total.to_string(),
            s.risk,
            c.tr.t(&format!("monitoring-risk-{}", s.risk)),
            c.tr.t(if s.complete {
                "monitoring-set-complete"
            } else {
                "monitoring-set-partial"
            }),
        ),
        None => (
            "—".into(),
            "none",
            c.tr.t("monitoring-no-readings"),
            String::new(),
        ),
    };
    WardLine {
        patient_id: r.patient_id.clone(),
        name: r.name.clone(),
        birth_date: r.birth_date.clone(),
        latest: r
            .latest
            .iter()
            .map(|l| {
                format!(
                    "{} {}",
                    c.tr.t(&format!("monitoring-kind-{}", l.kind)),
                    l.value
                )
            })
            .collect::<Vec<_>>()
            .join(" · "),
        last_reading: r.last_reading.map(time).unwrap_or_default(),
        score,
        risk,
        risk_label,
        set_label,
        alerts: match r.escalation_tier {
            Some(t) => format!(
                "{} · {}",
                r.open_alerts,
                c.tr.t(&format!("monitoring-tier-{}", super::tier_name(t)))
            ),
            None => String::new(),
        },
        escalated: r.escalation_tier.is_some_and(|t| t >= 2),
    }
}

pub struct AlertLine {
    pub id: i64,
    pub patient_id: String,
    pub patient_name: String,
    pub level: &'static str,
    pub level_label: String,
    pub score: u8,
    pub set_label: String,
    pub tier_label: String,
    pub escalated: bool,
    pub raised: String,
    pub tier_since: String,
    pub acknowledged: String,
    pub open: bool,
    pub needs_me: bool,
    /// Whether the viewer may acknowledge it (clinical roles; a patient sees their alerts read-only).
    pub can_ack: bool,
}

fn alert_line(c: &Ctx<'_>, a: &AlertView, can_ack: bool) -> AlertLine {
    AlertLine {
        id: a.id,
        patient_id: a.patient_id.clone(),
        patient_name: a.patient_name.clone(),
        level: a.level,
        level_label: c.tr.t(&format!("monitoring-risk-{}", a.level)),
        score: a.score,
        set_label: c.tr.t(if a.complete {
            "monitoring-set-complete"
        } else {
            "monitoring-set-partial"
        }),
        tier_label: c.tr.t(&format!("monitoring-tier-{}", a.tier_name)),
        escalated: a.tier >= 2,
        raised: time(a.raised_at),
        tier_since: time(a.tier_since),
        acknowledged: match (&a.acknowledged_at, &a.acknowledged_by) {
            (Some(t), Some(b)) => format!("{} · {b}", time(*t)),
            _ => String::new(),
        },
        open: a.acknowledged_at.is_none(),
        needs_me: a.needs_me,
        can_ack,
    }
}

// ---------- the ward ----------

#[derive(Template)]
#[template(path = "monitoring_ward.html")]
struct WardPage<'a> {
    ctx: Ctx<'a>,
    rows: Vec<WardLine>,
    ingest: String,
}

async fn ward_page(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
) -> Response {
    let r = async {
        p.require(CLINICAL)?;
        let m = super::monitor(&st)?;
        let rows = super::ward(&st, &p).await?;
        let c = ctx(
            &st,
            Some(&p),
            &headers,
            "monitoring-ward-title",
            "/ui/monitoring",
        );
        let ingest = c.tr.t(match m.ingest_state() {
            super::IngestState::Off => "monitoring-ingest-off",
            super::IngestState::Connecting => "monitoring-ingest-connecting",
            super::IngestState::Subscribed => "monitoring-ingest-subscribed",
        });
        Ok(render(&WardPage {
            rows: rows.iter().map(|r| ward_line(&c, r)).collect(),
            ingest,
            ctx: c,
        }))
    }
    .await;
    done(&st, &p, &headers, r)
}

// ---------- alerts ----------

#[derive(Template)]
#[template(path = "monitoring_alerts.html")]
struct AlertsPage<'a> {
    ctx: Ctx<'a>,
    alerts: Vec<AlertLine>,
}

async fn alerts_page(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
) -> Response {
    let r = async {
        p.require(CLINICAL)?;
        let list = super::alerts(&st, &p, false).await?;
        let c = ctx(
            &st,
            Some(&p),
            &headers,
            "monitoring-alerts-title",
            "/ui/monitoring/alerts",
        );
        Ok(render(&AlertsPage {
            alerts: list.iter().map(|a| alert_line(&c, a, true)).collect(),
            ctx: c,
        }))
    }
    .await;
    done(&st, &p, &headers, r)
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
    /// Where to go afterwards: `patient` returns to the patient's page.
    #[serde(default)]
    back: String,
}

async fn ack_submit(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let r = async {
        p.require(CLINICAL)?;
        p.check_csrf(Some(&f.csrf))?;
        let id: i64 = id.parse().map_err(|_| AppError::not_found("alert"))?;
        let a = super::acknowledge(&st, &p, id).await?;
        let to = if f.back == "patient" {
            format!("/ui/monitoring/patients/{}", a.patient_id)
        } else {
            "/ui/monitoring/alerts".to_owned()
        };
        Ok(Redirect::to(&to).into_response())
    }
    .await;
    done(&st, &p, &headers, r)
}

// ---------- a patient ----------

pub struct ObsLine {
    pub time: String,
    pub kind: String,
    pub value: String,
    pub unit: &'static str,
    pub device: String,
}

pub struct DeviceLine {
    pub id: String,
    pub kind: String,
    pub registered: String,
    pub last_seen: String,
    pub has_password: bool,
    pub topic: String,
}

#[derive(Template)]
#[template(path = "monitoring_patient.html")]
struct PatientPage<'a> {
    ctx: Ctx<'a>,
    patient_id: String,
    name: String,
    birth_date: String,
    line: WardLine,
    missing: String,
    chart: String,
    observations: Vec<ObsLine>,
    alerts: Vec<AlertLine>,
    devices: Vec<DeviceLine>,
    can_manage: bool,
    kinds: Vec<(&'static str, String)>,
    credentials: Option<Credentials>,
    error: Option<String>,
    form: NewDeviceForm,
}

#[derive(Default, Deserialize, Clone)]
struct NewDeviceForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    device_id: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    spo2_scale: String,
}

const DEVICE_KINDS: [&str; 6] = [
    "pulse_oximeter",
    "bp_cuff",
    "thermometer",
    "ward_robot",
    "multiparameter_monitor",
    "other",
];

async fn patient_view<'a>(
    st: &'a AppState,
    p: &Principal,
    headers: &HeaderMap,
    id: &str,
    credentials: Option<Credentials>,
    error: Option<String>,
    form: NewDeviceForm,
) -> AppResult<PatientPage<'a>> {
    p.require(PATIENT_READERS)?;
    let v: PatientMonitoring = super::patient(st, p, id).await?;
    // The chart draws the same observations the table lists, from the records rather than the views.
    let m = super::monitor(st)?;
    let records = m
        .store()
        .observations(&monitoring::store::ObservationFilter {
            patients: vec![v.summary.patient_id.clone()],
            limit: 300,
            ..Default::default()
        })
        .await
        .map_err(AppError::internal)?;
    let c = ctx(
        st,
        Some(p),
        headers,
        "monitoring-patient-title",
        &format!("/ui/monitoring/patients/{id}"),
    );
    let chart = super::chart::trend_svg(&records, |k| c.tr.t(&format!("monitoring-kind-{k}")));
    let missing = v
        .summary
        .news2
        .as_ref()
        .map(|s| s.missing.join(", "))
        .unwrap_or_default();
    Ok(PatientPage {
        patient_id: v.summary.patient_id.clone(),
        name: v.summary.name.clone(),
        birth_date: v.summary.birth_date.clone(),
        line: ward_line(&c, &v.summary),
        missing,
        chart,
        observations: v
            .observations
            .iter()
            .take(100)
            .map(|o| ObsLine {
                time: time(o.effective),
                kind: c.tr.t(&format!("monitoring-kind-{}", o.kind)),
                value: o.value.clone(),
                unit: o.unit,
                device: o.device_id.clone(),
            })
            .collect(),
        alerts: v
            .alerts
            .iter()
            .map(|a| alert_line(&c, a, CLINICAL.contains(&p.role())))
            .collect(),
        devices: v
            .devices
            .iter()
            .map(|d| DeviceLine {
                id: d.device_id.clone(),
                kind: c.tr.t(&format!("monitoring-device-{}", d.kind)),
                registered: time(d.registered_at),
                last_seen: match (d.last_seen, d.last_seq) {
                    (Some(t), Some(s)) => format!("{} (#{s})", time(t)),
                    _ => String::new(),
                },
                has_password: d.has_password,
                topic: d.topic.clone(),
            })
            .collect(),
        can_manage: v.can_manage,
        kinds: DEVICE_KINDS
            .iter()
            .map(|k| (*k, c.tr.t(&format!("monitoring-device-{k}"))))
            .collect(),
        credentials,
        error,
        form,
        ctx: c,
    })
}

async fn patient_page(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let r = async {
        Ok(render(
            &patient_view(&st, &p, &headers, &id, None, None, NewDeviceForm::default()).await?,
        ))
    }
    .await;
    done(&st, &p, &headers, r)
}

async fn register_submit(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<NewDeviceForm>,
) -> Response {
    let r = async {
        p.require(CLINICAL)?;
        p.check_csrf(Some(&f.csrf))?;
        let scale = match f.spo2_scale.trim() {
            "" | "1" => None,
            "2" => Some(2),
            other => {
                return Err(AppError::unprocessable(
                    "error-monitoring-scale",
                    format!("SpO2 scale {other:?} is not 1 or 2"),
                ))
            }
        };
        let n = NewDevice {
            device_id: f.device_id.clone(),
            kind: f.kind.clone(),
            spo2_scale: scale,
        };
        match super::register_device(&st, &p, &id, n).await {
            Ok(creds) => Ok(render(
                &patient_view(
                    &st,
                    &p,
                    &headers,
                    &id,
                    Some(creds),
                    None,
                    NewDeviceForm::default(),
                )
                .await?,
            )),
            // A refused registration shows the form again with the reason, keeping what was typed.
            Err(e)
                if e.status.is_client_error()
                    && e.status.as_u16() != 403
                    && e.status.as_u16() != 404 =>
            {
                let c = ctx(&st, Some(&p), &headers, "monitoring-patient-title", "");
                let msg = if st.i18n().has(c.tr.lang, e.code) {
                    format!("{} ({})", c.tr.t(e.code), e.message)
                } else {
                    e.message.clone()
                };
                let mut page = patient_view(&st, &p, &headers, &id, None, Some(msg), f).await?;
                page.form.csrf.clear();
                let mut resp = render(&page);
                *resp.status_mut() = e.status;
                Ok(resp)
            }
            Err(e) => Err(e),
        }
    }
    .await;
    done(&st, &p, &headers, r)
}

async fn rotate_submit(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Path(device): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let r = async {
        p.require(CLINICAL)?;
        p.check_csrf(Some(&f.csrf))?;
        let creds = super::rotate_credentials(&st, &p, &device).await?;
        let patient = creds.device.patient_id.clone().unwrap_or_default();
        Ok(render(
            &patient_view(
                &st,
                &p,
                &headers,
                &patient,
                Some(creds),
                None,
                NewDeviceForm::default(),
            )
            .await?,
        ))
    }
    .await;
    done(&st, &p, &headers, r)
}

async fn unbind_submit(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Path(device): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let r = async {
        p.require(CLINICAL)?;
        p.check_csrf(Some(&f.csrf))?;
        // The patient is read before unbinding: afterwards the device no longer names one.
        let m = super::monitor(&st)?;
        let patient = m
            .store()
            .device(&device)
            .await
            .map_err(AppError::internal)?
            .and_then(|d| d.device.patient.map(|p| p.to_string()))
            .ok_or_else(|| AppError::not_found("device"))?;
        super::unbind(&st, &p, &device).await?;
        Ok(Redirect::to(&format!("/ui/monitoring/patients/{patient}")).into_response())
    }
    .await;
    done(&st, &p, &headers, r)
}
