//! Pages of live care. Clinicians: `/ui/visits` (waiting room, visits, booking, slots), `/ui/visits/{id}`
//! (invitations, admit, end) and `/ui/visits/{id}/call`. Guests: `/visit/join/{token}` (sets the guest cookie and
//! leaves the token out of later addresses), `/visit/guest` (pre-call check, place in the queue) and
//! `/visit/guest/call`. Everything but the check and the call works without JavaScript; the one script,
//! `/visit/assets/visit.js`, is served by the node (CSP `script-src 'self'`).

use super::{Visitor, CLINICIANS, GUEST_COOKIE, VISIT_READERS};
use crate::auth::{Principal, UiPrincipal};
use crate::error::{AppError, AppResult};
use crate::i18n::Tr;
use crate::ui::{ctx, done, error_page, render, Ctx};
use crate::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use axum_extra::extract::cookie::{Cookie, SameSite};
use axum_extra::extract::CookieJar;
use caravan_domain::Role;
use caravan_store::{GuestRole, PatientFilter, VisitFilter, VisitStatus, VisitView};
use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

const VISIT_JS: &str = include_str!("visit.js");

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui/visits", get(dashboard))
        .route("/ui/visits/book", post(book_submit))
        .route("/ui/visits/slots", post(slots_submit))
        .route("/ui/visits/admit-next", post(admit_next_submit))
        .route("/ui/visits/{id}", get(visit_page))
        .route("/ui/visits/{id}/call", get(call_page))
        .route("/ui/visits/{id}/{action}", post(visit_action))
        .route("/visit/join/{token}", get(join))
        .route("/visit/guest", get(guest_page))
        .route("/visit/guest/check-in", post(guest_check_in))
        .route("/visit/guest/call", get(guest_call_page))
        .route("/visit/signal/{id}", get(super::signal::socket))
        .route("/visit/assets/visit.js", get(visit_js))
}

async fn visit_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        VISIT_JS,
    )
        .into_response()
}

fn fmt_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn status_label(tr: Tr<'_>, s: VisitStatus) -> String {
    tr.t(&format!("visits-status-{}", s.as_str()))
}

fn role_label(tr: Tr<'_>, r: &str) -> String {
    tr.t(&format!("visits-role-{r}"))
}

// ---------- dashboard ----------

pub struct Row {
    id: Uuid,
    when: String,
    patient: String,
    clinician: String,
    status: String,
}

#[derive(Template)]
#[template(path = "visits.html")]
struct Dashboard<'a> {
    ctx: Ctx<'a>,
    clinician: bool,
    current: Option<(Uuid, String)>,
    queue: Vec<(Uuid, String, String)>,
    visits: Vec<Row>,
    patients: Vec<(String, String)>,
    slots: Vec<(String, String)>,
    schedules: Vec<(String, String)>,
}

async fn dashboard(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
) -> Response {
    let r = dashboard_inner(&st, &p, &headers, None).await;
    done(&st, &p, &headers, r)
}

async fn dashboard_inner(
    st: &AppState,
    p: &Principal,
    headers: &HeaderMap,
    flash: Option<String>,
) -> AppResult<Response> {
    p.require(VISIT_READERS)?;
    let mut c = ctx(st, Some(p), headers, "visits-title", "/ui/visits");
    c.flash = flash;
    let tr = c.tr;
    let clinician = CLINICIANS.contains(&p.role());
    let now = Utc::now();
    let list = super::list(
        st,
        p,
        &VisitFilter {
            from: Some(now - Duration::hours(12)),
            statuses: vec![
                VisitStatus::Booked,
                VisitStatus::Arrived,
                VisitStatus::InProgress,
            ],
            limit: Some(200),
            ..VisitFilter::default()
        },
    )
    .await?;
    let visits = list
        .iter()
        .map(|v| Row {
            id: v.visit.id,
            when: fmt_time(v.visit.start),
            patient: v.patient_name.clone(),
            clinician: v.practitioner_name.clone(),
            status: status_label(tr, v.visit.status),
        })
        .collect();
    let (mut current, mut queue, mut patients, mut slots, mut schedules) =
        (None, vec![], vec![], vec![], vec![]);
    if clinician {
        current = list
            .iter()
            .find(|v| {
                v.visit.status == VisitStatus::InProgress && v.visit.practitioner_id == p.user.id
            })
            .map(|v| (v.visit.id, v.patient_name.clone()));
        queue = super::queue(st, p)
            .await?
            .into_iter()
            .map(|v| {
                let arrived = v.visit.arrived_at.map(fmt_time).unwrap_or_default();
                (v.visit.id, v.patient_name, arrived)
            })
            .collect();
        patients = crate::consult::search_patients(
            st,
            p,
            &PatientFilter {
                limit: Some(200),
                ..PatientFilter::default()
            },
        )
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|x| {
            (
                x.id.to_string(),
                format!("{} {} ({})", x.given_name, x.family_name, x.birth_date),
            )
        })
        .collect();
        let all = st.store().visit_schedules(None, None).await?;
        let people = st
            .store()
            .people(&all.iter().map(|s| s.practitioner_id).collect::<Vec<_>>())
            .await?;
        for s in all.iter().filter(|s| s.active) {
            let who = people
                .iter()
                .find(|x| x.user_id == s.practitioner_id)
                .map(|x| format!("{} ({})", x.display_name, x.institution_name))
                .unwrap_or_default();
            for slot in st
                .store()
                .visit_slots(s.id, now, now + Duration::days(14))
                .await?
                .into_iter()
                .filter(|x| x.status == caravan_store::SlotStatus::Free)
                .take(50)
            {
                slots.push((
                    slot.id.to_string(),
                    format!("{} · {} · {}", fmt_time(slot.start), who, s.service),
                ));
            }
            if s.practitioner_id == p.user.id
                || (p.role() == Role::Coordinator && s.institution_id == p.user.institution_id)
            {
                schedules.push((s.id.to_string(), format!("{} · {}", s.service, who)));
            }
        }
    }
    Ok(render(&Dashboard {
        ctx: c,
        clinician,
        current,
        queue,
        visits,
        patients,
        slots,
        schedules,
    }))
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

#[derive(Deserialize)]
struct BookForm {
    csrf: String,
    patient_id: String,
    slot_id: String,
    #[serde(default)]
    reason: String,
}

async fn book_submit(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Form(f): Form<BookForm>,
) -> Response {
    let r = async {
        p.check_csrf(Some(&f.csrf))?;
        let v = super::book(
            &st,
            &p,
            super::NewVisit {
                patient_id: crate::api::parse_id("patient", &f.patient_id)?,
                slot_id: Some(crate::api::parse_id("slot", &f.slot_id)?),
                practitioner_id: None,
                start: None,
                end: None,
                reason: f.reason,
                consultation_id: None,
            },
        )
        .await?;
        Ok(Redirect::to(&format!("/ui/visits/{}", v.visit.id)).into_response())
    }
    .await;
    done(&st, &p, &headers, r)
}

#[derive(Deserialize)]
struct SlotsForm {
    csrf: String,
    schedule_id: Option<String>,
    service: Option<String>,
    start: String,
    minutes: i64,
    count: i64,
}

/// `datetime-local` sends `2030-03-01T09:00` (read as UTC); RFC 3339 is taken as is.
fn form_time(s: &str) -> AppResult<String> {
    if DateTime::parse_from_rfc3339(s).is_ok() {
        return Ok(s.to_owned());
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M")
        .map(|n| n.and_utc().to_rfc3339())
        .map_err(|_| {
            AppError::unprocessable(
                "error-visit-time",
                format!("start {s:?} is not a date and time"),
            )
        })
}

async fn slots_submit(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Form(f): Form<SlotsForm>,
) -> Response {
    let r = async {
        p.check_csrf(Some(&f.csrf))?;
        let schedule = match f.schedule_id.as_deref().filter(|s| !s.is_empty()) {
            Some(id) => crate::api::parse_id("schedule", id)?,
            None => {
                super::create_schedule(
                    &st,
                    &p,
                    super::NewSchedule {
                        practitioner_id: None,
                        service: f.service.unwrap_or_default(),
                    },
                )
                .await?
                .id
            }
        };
        let slots = super::add_slots(
            &st,
            &p,
            schedule,
            super::NewSlots {
                start: form_time(f.start.trim())?,
                minutes: f.minutes,
                count: f.count,
            },
        )
        .await?;
        let tr = ctx(&st, Some(&p), &headers, "visits-title", "/ui/visits").tr;
        dashboard_inner(
            &st,
            &p,
            &headers,
            Some(tr.t1("visits-slots-added", "count", slots.len())),
        )
        .await
    }
    .await;
    done(&st, &p, &headers, r)
}

async fn admit_next_submit(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    let r = async {
        p.check_csrf(Some(&f.csrf))?;
        let v = super::admit(&st, &p, None).await?;
        Ok(Redirect::to(&format!("/ui/visits/{}/call", v.id)).into_response())
    }
    .await;
    done(&st, &p, &headers, r)
}

// ---------- one visit ----------

#[derive(Template)]
#[template(path = "visit.html")]
struct VisitPage<'a> {
    ctx: Ctx<'a>,
    id: Uuid,
    status: String,
    status_code: &'static str,
    when: String,
    clinician: String,
    is_clinician: bool,
    reason: String,
    has_reason: bool,
    consultation: Option<String>,
    /// The prescribing form of the visit's patient, pre-filled with this visit (for prescribers).
    prescribe_link: Option<String>,
    can_join: bool,
    actions: Vec<(&'static str, String, &'static str)>,
    new_link: Option<String>,
    invitations: Vec<(String, String, String)>,
    open: bool,
    roles: Vec<(&'static str, String)>,
    participants: Vec<(String, String, String)>,
    ice_url: String,
}

async fn visit_page(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let r = visit_inner(&st, &p, &headers, &id, None).await;
    done(&st, &p, &headers, r)
}

async fn visit_inner(
    st: &AppState,
    p: &Principal,
    headers: &HeaderMap,
    id: &str,
    new_link: Option<String>,
) -> AppResult<Response> {
    p.require(VISIT_READERS)?;
    let id: Uuid = crate::api::parse_id("visit", id)?;
    let v = super::get(st, p, id).await?;
    let path = format!("/ui/visits/{id}");
    let mut c = ctx(st, Some(p), headers, "visits-visit", &path);
    let tr = c.tr;
    c.title = tr.t1("visits-visit-with", "name", &v.patient_name);
    let clinician = CLINICIANS.contains(&p.role());
    let participant = super::is_participant(st, p, &v.visit).await?;
    let status = v.visit.status;
    let mine = v.visit.practitioner_id == p.user.id;
    let mut actions = vec![];
    if clinician && mine && status == VisitStatus::Arrived {
        actions.push(("admit", tr.t("visits-admit"), ""));
    }
    if clinician && status == VisitStatus::Booked {
        actions.push(("check-in", tr.t("visits-check-in-for"), "secondary"));
    }
    if clinician && mine && status == VisitStatus::InProgress {
        actions.push(("finish", tr.t("visits-finish"), ""));
    }
    if clinician && matches!(status, VisitStatus::Booked | VisitStatus::Arrived) {
        actions.push(("cancel", tr.t("visits-cancel"), "secondary"));
    }
    let invitations = if clinician {
        st.store()
            .visit_invitations(id)
            .await?
            .into_iter()
            .map(|i| {
                (
                    role_label(tr, i.role.as_str()),
                    i.display_name,
                    tr.t1("visits-expires", "time", fmt_time(i.expires_at)),
                )
            })
            .collect()
    } else {
        vec![]
    };
    let participants = st
        .store()
        .visit_participants(id)
        .await?
        .into_iter()
        .map(|x| {
            let span = match x.left_at {
                Some(l) => format!("{} – {}", fmt_time(x.joined_at), fmt_time(l)),
                None => format!("{} –", fmt_time(x.joined_at)),
            };
            (x.display_name, role_label(tr, &x.role), span)
        })
        .collect();
    let roles = ["patient", "interpreter", "family"]
        .into_iter()
        .map(|r| (r, role_label(tr, r)))
        .collect();
    Ok(render(&VisitPage {
        id,
        status: status_label(tr, status),
        status_code: status.as_str(),
        when: format!(
            "{} – {}",
            fmt_time(v.visit.start),
            v.visit.end.format("%H:%M")
        ),
        clinician: v.practitioner_name,
        is_clinician: clinician,
        has_reason: !v.visit.reason.is_empty(),
        reason: v.visit.reason,
        consultation: v.visit.consultation_id.map(|c| c.to_string()),
        prescribe_link: (crate::rx::PRESCRIBERS.contains(&p.role())
            && status != VisitStatus::Cancelled)
            .then(|| {
                let mut link = format!("/ui/patients/{}/rx?visit={id}", v.visit.patient_id);
                if let Some(c) = v.visit.consultation_id {
                    link.push_str(&format!("&consultation={c}"));
                }
                link
            }),
        can_join: participant && status == VisitStatus::InProgress,
        actions,
        new_link,
        invitations,
        open: !matches!(status, VisitStatus::Finished | VisitStatus::Cancelled),
        roles,
        participants,
        ice_url: format!("/api/v1/visits/{id}/ice"),
        ctx: c,
    }))
}

#[derive(Deserialize)]
struct ActionForm {
    csrf: String,
    role: Option<String>,
    display_name: Option<String>,
}

async fn visit_action(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    Form(f): Form<ActionForm>,
) -> Response {
    let r = async {
        p.require(CLINICIANS)?;
        let vid: Uuid = crate::api::parse_id("visit", &id)?;
        p.check_csrf(Some(&f.csrf))?;
        match action.as_str() {
            "admit" => {
                super::admit(&st, &p, Some(vid)).await?;
                return Ok(Redirect::to(&format!("/ui/visits/{vid}/call")).into_response());
            }
            "check-in" => {
                super::check_in(&st, &Visitor::User(p.clone()), vid).await?;
            }
            "finish" => {
                super::finish(&st, &p, vid).await?;
            }
            "cancel" => {
                super::cancel(&st, &p, vid).await?;
            }
            "invite" => {
                let created = super::invite(
                    &st,
                    &p,
                    vid,
                    super::NewInvitation {
                        role: f.role.unwrap_or_default(),
                        display_name: f.display_name.unwrap_or_default(),
                        user_id: None,
                    },
                )
                .await?;
                let host = headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or("localhost");
                let scheme = if st.config().secure_cookies {
                    "https"
                } else {
                    "http"
                };
                let link = created.link.map(|l| format!("{scheme}://{host}{l}"));
                return visit_inner(&st, &p, &headers, &id, link).await;
            }
            _ => return Err(AppError::not_found("page")),
        }
        Ok(Redirect::to(&format!("/ui/visits/{vid}")).into_response())
    }
    .await;
    done(&st, &p, &headers, r)
}

// ---------- the call ----------

#[derive(Template)]
#[template(path = "visit_call.html")]
struct CallPage<'a> {
    ctx: Ctx<'a>,
    visit_id: Uuid,
    ice_url: String,
    back_url: String,
}

async fn call_page(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let r = async {
        p.require(VISIT_READERS)?;
        let vid: Uuid = crate::api::parse_id("visit", &id)?;
        let v = super::get(&st, &p, vid).await?;
        if !super::is_participant(&st, &p, &v.visit).await? {
            return Err(AppError::new(
                axum::http::StatusCode::FORBIDDEN,
                "error-visit-not-participant",
                "only the participants of this visit may join its call",
            ));
        }
        let path = format!("/ui/visits/{vid}/call");
        let mut c = ctx(&st, Some(&p), &headers, "visits-call", &path);
        c.title = c.tr.t1("visits-call-with", "name", &v.patient_name);
        Ok(render(&CallPage {
            ctx: c,
            visit_id: vid,
            ice_url: format!("/api/v1/visits/{vid}/ice"),
            back_url: format!("/ui/visits/{vid}"),
        }))
    }
    .await;
    done(&st, &p, &headers, r)
}

// ---------- guests ----------

async fn join(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Response {
    match super::guest(&st, &token).await {
        Err(e) => error_page(&st, None, &headers, e),
        Ok(inv) => {
            tracing::info!(invitation = %inv.id, "guest opened an invitation");
            let mut cookie = Cookie::new(GUEST_COOKIE, token);
            cookie.set_http_only(true);
            // Lax, not Strict: the link arrives from a message app or a mail, a cross-site navigation.
            cookie.set_same_site(SameSite::Lax);
            cookie.set_path("/");
            cookie.set_secure(st.config().secure_cookies);
            (CookieJar::new().add(cookie), Redirect::to("/visit/guest")).into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "visit_guest.html")]
struct GuestPage<'a> {
    ctx: Ctx<'a>,
    with_whom: String,
    status_code: &'static str,
    status_text: String,
    place_template: String,
    waiting: bool,
    can_check_in: bool,
    in_progress: bool,
    open: bool,
    csrf: String,
    ice_url: String,
}

fn guest_status_text(tr: Tr<'_>, s: &super::GuestState) -> String {
    match (s.status, s.place) {
        (VisitStatus::Arrived, Some(place)) => {
            tr.t2("visits-place", "place", place, "waiting", s.waiting)
        }
        (VisitStatus::Booked, _) if s.role != GuestRole::Patient => {
            tr.t("visits-waiting-for-clinician")
        }
        (VisitStatus::Booked, _) => tr.t("visits-not-checked-in"),
        (VisitStatus::InProgress, _) => tr.t("visits-admitted"),
        (VisitStatus::Finished | VisitStatus::Cancelled, _) => tr.t("visits-over"),
        (VisitStatus::Arrived, None) => tr.t("visits-waiting-for-clinician"),
    }
}

async fn guest_page(State(st): State<AppState>, headers: HeaderMap) -> Response {
    let r = async {
        let inv = super::guest_from(&st, &headers).await?;
        let token = super::guest_token(&headers).unwrap_or_default();
        let s = super::guest_state(&st, &inv).await?;
        let audit = vec![Visitor::Guest(inv.clone()).audit(
            caravan_domain::AuditAction::Read,
            "visit",
            s.visit_id,
            Some(st.store().visit_by_id(s.visit_id).await?.visit.patient_id),
            "guest page",
        )];
        st.store().append_audit(audit).await?;
        let mut c = ctx(&st, None, &headers, "visits-guest-title", "/visit/guest");
        let tr = c.tr;
        c.title = tr.t1("visits-guest-hello", "name", &inv.display_name);
        Ok(render(&GuestPage {
            with_whom: tr.t2(
                "visits-guest-with",
                "clinician",
                &s.practitioner_name,
                "time",
                fmt_time(s.start),
            ),
            status_code: s.status.as_str(),
            status_text: guest_status_text(tr, &s),
            place_template: tr.t2("visits-place", "place", "{place}", "waiting", "{waiting}"),
            waiting: matches!(s.status, VisitStatus::Booked | VisitStatus::Arrived),
            can_check_in: inv.role == GuestRole::Patient && s.status == VisitStatus::Booked,
            in_progress: s.status == VisitStatus::InProgress,
            open: !matches!(s.status, VisitStatus::Finished | VisitStatus::Cancelled),
            csrf: super::guest_csrf(&token),
            ice_url: "/api/v1/guest/ice".into(),
            ctx: c,
        }))
    }
    .await;
    r.unwrap_or_else(|e| error_page(&st, None, &headers, e))
}

async fn guest_check_in(
    State(st): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    let r = async {
        let inv = super::guest_from(&st, &headers).await?;
        let token = super::guest_token(&headers).unwrap_or_default();
        if f.csrf != super::guest_csrf(&token) {
            return Err(AppError::new(
                axum::http::StatusCode::FORBIDDEN,
                "error-csrf",
                "missing or wrong CSRF token; reload the page and try again",
            ));
        }
        if inv.role == GuestRole::Patient {
            super::check_in(&st, &Visitor::Guest(inv.clone()), inv.visit_id).await?;
        }
        Ok(Redirect::to("/visit/guest").into_response())
    }
    .await;
    r.unwrap_or_else(|e| error_page(&st, None, &headers, e))
}

#[derive(Deserialize)]
struct Nothing {}

async fn guest_call_page(
    State(st): State<AppState>,
    headers: HeaderMap,
    Query(_): Query<Nothing>,
) -> Response {
    let r = async {
        let inv = super::guest_from(&st, &headers).await?;
        let v: VisitView = st.store().visit_by_id(inv.visit_id).await?;
        if v.visit.status != VisitStatus::InProgress {
            return Ok(Redirect::to("/visit/guest").into_response());
        }
        let mut c = ctx(&st, None, &headers, "visits-call", "/visit/guest/call");
        c.title = c.tr.t1("visits-call-with", "name", &v.practitioner_name);
        Ok(render(&CallPage {
            ctx: c,
            visit_id: v.visit.id,
            ice_url: "/api/v1/guest/ice".into(),
            back_url: "/visit/guest".into(),
        }))
    }
    .await;
    r.unwrap_or_else(|e: AppError| error_page(&st, None, &headers, e))
}
