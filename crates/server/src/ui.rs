//! The web UI: server-rendered HTML (askama), working without JavaScript. Every string comes from Fluent.

use crate::api::{self, parse_id};
use crate::auth::{self, Principal, UiPrincipal, LANG_COOKIE};
use crate::consult::{self, EventRequest, NewConsultation, NewPatient};
use crate::error::{AppError, AppResult};
use crate::i18n::{I18n, Tr};
use crate::AppState;
use askama::Template;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use axum_extra::extract::cookie::Cookie;
use axum_extra::extract::CookieJar;
use caravan_domain::*;
use caravan_store::{ConsultationFilter, ConsultationSummary, PatientFilter};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::collections::HashMap;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/inbox") }))
        .route("/ui", get(|| async { Redirect::to("/ui/inbox") }))
        .route("/ui/login", get(login_page).post(login_submit))
        .route("/ui/logout", post(logout))
        .route("/ui/lang", post(switch_language))
        .route("/ui/inbox", get(inbox))
        .route("/ui/worklist", get(worklist))
        .route("/ui/routing", get(routing_board))
        .route(
            "/ui/consultations/new",
            get(new_case_page).post(new_case_submit),
        )
        .route("/ui/consultations/{id}", get(case_page))
        .route("/ui/consultations/{id}/events", post(case_event))
        .route("/ui/consultations/{id}/messages", post(case_message))
        .route("/ui/consultations/{id}/attachments", post(case_upload))
        .route("/ui/attachments/{id}", get(download))
        .route("/ui/patients", get(patients_page).post(patient_create))
        .route("/ui/patients/{id}/consents", post(consent_submit))
        .route("/ui/patients/{id}/access-log", get(access_log_page))
        .route("/ui/me/access-log", get(my_access_log))
        .route(
            "/ui/admin/institutions",
            get(institutions_page).post(institution_create),
        )
        .route("/ui/admin/users", get(users_page).post(user_create))
        .route("/ui/admin/teams", get(teams_page).post(team_create))
        .route(
            "/ui/admin/federation",
            get(federation_page).post(federation_retry),
        )
        .route("/ui/tokens", get(tokens_page).post(token_create))
}

// ---------- page context ----------

pub struct NavUser {
    pub name: String,
    pub role: &'static str,
    pub role_label: String,
}

pub struct Ctx<'a> {
    pub tr: Tr<'a>,
    pub title: String,
    pub node_name: String,
    pub user: Option<NavUser>,
    pub csrf: String,
    pub path: String,
    pub flash: Option<String>,
}

pub(crate) fn lang_for(st: &AppState, p: Option<&Principal>, headers: &HeaderMap) -> &'static str {
    let jar = CookieJar::from_headers(headers);
    I18n::negotiate(
        p.map(|p| p.user.locale.as_str()),
        jar.get(LANG_COOKIE).map(|c| c.value()),
        headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
        &st.config().default_locale,
    )
}

pub fn ctx<'a>(
    st: &'a AppState,
    p: Option<&Principal>,
    headers: &HeaderMap,
    title_id: &str,
    path: &str,
) -> Ctx<'a> {
    let tr = Tr {
        i18n: st.i18n(),
        lang: lang_for(st, p, headers),
    };
    Ctx {
        title: tr.t(title_id),
        node_name: st.config().node_name.clone(),
        user: p.map(|p| NavUser {
            name: p.user.display_name.clone(),
            role: p.user.role.as_str(),
            role_label: format!("role-{}", p.user.role.as_str()),
        }),
        csrf: p.map(|p| p.csrf().to_owned()).unwrap_or_default(),
        path: path.to_owned(),
        flash: None,
        tr,
    }
}

pub fn render<T: Template>(t: &T) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => AppError::internal(e).into_response(),
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    ctx: Ctx<'a>,
    message: String,
    code: &'static str,
    status: u16,
}

pub(crate) fn error_page(
    st: &AppState,
    p: Option<&Principal>,
    headers: &HeaderMap,
    e: AppError,
) -> Response {
    let c = ctx(st, p, headers, "error-title", "/ui/inbox");
    // A translated explanation when there is one; the server's precise English message otherwise.
    let message = if st.i18n().has(c.tr.lang, e.code) {
        format!("{} ({})", c.tr.t(e.code), e.message)
    } else {
        e.message.clone()
    };
    let mut r = render(&ErrorPage {
        ctx: c,
        message,
        code: e.code,
        status: e.status.as_u16(),
    });
    *r.status_mut() = e.status;
    r
}

/// A file sent with a UI form.
pub struct UploadedFile {
    pub filename: String,
    pub content_type: String,
    pub bytes: bytes::Bytes,
}

/// A multipart form of the UI: its text fields by name and its `file`. Every such form sends its CSRF token
/// first, so the token is checked before anything else is read: a forged request never has its file buffered.
pub struct UploadForm {
    pub fields: HashMap<String, String>,
    pub file: Option<UploadedFile>,
}

/// Read a UI multipart form (see [`UploadForm`]); an oversized file is a 413, a malformed body a 400.
pub async fn read_upload_form(p: &Principal, mut mp: Multipart) -> AppResult<UploadForm> {
    let bad = |e: axum::extract::multipart::MultipartError| {
        AppError::bad_request(format!("malformed upload: {e}"))
    };
    let mut form = UploadForm {
        fields: HashMap::new(),
        file: None,
    };
    let mut checked = false;
    while let Some(field) = mp.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or_default().to_owned();
        if !checked {
            checked = true;
            if name == "csrf" {
                p.check_csrf(Some(&field.text().await.map_err(bad)?))?;
                continue;
            }
            // No token first: only a bearer-token caller (no CSRF) goes on.
            p.check_csrf(None)?;
        }
        if name == "file" {
            let filename = field.file_name().unwrap_or("upload").to_owned();
            let content_type = field
                .content_type()
                .unwrap_or("application/octet-stream")
                .to_owned();
            let bytes = field.bytes().await.map_err(|e| {
                AppError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "error-too-large",
                    e.to_string(),
                )
            })?;
            form.file = Some(UploadedFile {
                filename,
                content_type,
                bytes,
            });
        } else {
            let value = field.text().await.map_err(bad)?;
            form.fields.insert(name, value);
        }
    }
    if !checked {
        p.check_csrf(None)?;
    }
    Ok(form)
}

pub fn done(st: &AppState, p: &Principal, headers: &HeaderMap, r: AppResult<Response>) -> Response {
    r.unwrap_or_else(|e| error_page(st, Some(p), headers, e))
}

fn fmt_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

// ---------- sign-in ----------

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    ctx: Ctx<'a>,
    error: Option<String>,
}

async fn login_page(State(st): State<AppState>, headers: HeaderMap) -> Response {
    render(&LoginPage {
        ctx: ctx(&st, None, &headers, "sign-in-title", "/ui/login"),
        error: None,
    })
}

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
}

async fn login_submit(
    State(st): State<AppState>,
    jar: CookieJar,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    match api::check_password(&st, &f.username, &f.password).await {
        Ok(user) => match auth::start_session(&st, &user).await {
            Ok(cookie) => (jar.add(cookie), Redirect::to("/ui/inbox")).into_response(),
            Err(e) => error_page(&st, None, &headers, e),
        },
        Err(e)
            if e.status == StatusCode::UNAUTHORIZED
                || e.status == StatusCode::TOO_MANY_REQUESTS =>
        {
            let c = ctx(&st, None, &headers, "sign-in-title", "/ui/login");
            let error = Some(c.tr.t(e.code));
            let mut r = render(&LoginPage { ctx: c, error });
            *r.status_mut() = e.status;
            r
        }
        Err(e) => error_page(&st, None, &headers, e),
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    jar: CookieJar,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    let r = async {
        p.check_csrf(Some(&f.csrf))?;
        if let auth::Via::Session { token_hash, .. } = &p.via {
            st.store().delete_session(token_hash).await?;
            st.auth_cache().forget(token_hash);
        }
        Ok((
            jar.add(auth::clear_session_cookie()),
            Redirect::to("/ui/login"),
        )
            .into_response())
    }
    .await;
    done(&st, &p, &headers, r)
}

#[derive(Deserialize)]
struct LangForm {
    lang: String,
    #[serde(default)]
    next: String,
    #[serde(default)]
    csrf: String,
}

async fn switch_language(
    State(st): State<AppState>,
    jar: CookieJar,
    headers: HeaderMap,
    Form(f): Form<LangForm>,
) -> Response {
    let p = auth::authenticate(&headers, &st)
        .await
        .ok()
        .map(UiPrincipal);
    let Some(tag) = I18n::supported(&f.lang) else {
        return error_page(
            &st,
            None,
            &headers,
            AppError::bad_request(format!("unsupported language {:?}", f.lang)),
        );
    };
    if let Some(UiPrincipal(p)) = &p {
        if p.check_csrf(Some(&f.csrf)).is_ok() {
            let mut u = p.user.clone();
            u.locale = tag.to_owned();
            if let Err(e) = st.store().update_user(&u, vec![]).await {
                return error_page(&st, Some(p), &headers, e.into());
            }
            st.auth_cache().clear();
        }
    }
    // Only local paths: never an open redirect.
    let next = if f.next.starts_with("/ui/") && !f.next.starts_with("//") {
        f.next
    } else {
        "/ui/inbox".to_owned()
    };
    let mut cookie = Cookie::new(LANG_COOKIE, tag);
    cookie.set_path("/");
    cookie.set_same_site(axum_extra::extract::cookie::SameSite::Lax);
    (jar.add(cookie), Redirect::to(&next)).into_response()
}

// ---------- lists ----------

pub struct Row {
    id: String,
    patient: String,
    question: String,
    specialty: String,
    urgency: String,
    state: String,
    due: String,
    overdue: bool,
    assignee: String,
}

pub struct Section {
    title: String,
    rows: Vec<Row>,
}

#[derive(Template)]
#[template(path = "list.html")]
struct ListPage<'a> {
    ctx: Ctx<'a>,
    intro: Option<String>,
    sections: Vec<Section>,
}

fn rows(tr: &Tr, list: &[ConsultationSummary], now: DateTime<Utc>) -> Vec<Row> {
    list.iter()
        .map(|s| {
            let c = &s.consultation;
            let mut q: String = c.question.chars().take(90).collect();
            if c.question.chars().count() > 90 {
                q.push('…');
            }
            Row {
                id: c.id.to_string(),
                patient: s.patient_name.clone(),
                question: q,
                specialty: tr.t(&format!("specialty-{}", c.specialty)),
                urgency: tr.t(&format!("urgency-{}", c.urgency.as_str())),
                state: tr.t(&format!("state-{}", c.state.as_str())),
                due: c
                    .due_at
                    .filter(|_| c.state.awaits_report())
                    .map(fmt_time)
                    .unwrap_or_default(),
                overdue: c.is_overdue(now),
                assignee: s.assignee_name.clone().unwrap_or_default(),
            }
        })
        .collect()
}

async fn section(
    st: &AppState,
    p: &Principal,
    tr: &Tr<'_>,
    title: &str,
    f: ConsultationFilter,
) -> AppResult<Section> {
    let list = consult::list(st, p, &f).await?;
    Ok(Section {
        title: tr.t(title),
        rows: rows(tr, &list, Utc::now()),
    })
}

fn states(s: &[ConsultationState]) -> ConsultationFilter {
    ConsultationFilter {
        states: s.to_vec(),
        ..Default::default()
    }
}

async fn inbox(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
) -> Response {
    use ConsultationState as S;
    let r = async {
        let c = ctx(&st, Some(&p), &headers, "nav-inbox", "/ui/inbox");
        let tr = c.tr;
        let mut intro = None;
        let sections = match p.role() {
            Role::Referrer => vec![
                section(
                    &st,
                    &p,
                    &tr,
                    "inbox-reports-to-read",
                    ConsultationFilter {
                        referrer_id: Some(p.user.id),
                        ..states(&[S::Reported])
                    },
                )
                .await?,
                section(
                    &st,
                    &p,
                    &tr,
                    "inbox-outcome-due",
                    ConsultationFilter {
                        referrer_id: Some(p.user.id),
                        ..states(&[S::Acknowledged])
                    },
                )
                .await?,
                section(
                    &st,
                    &p,
                    &tr,
                    "inbox-open-cases",
                    ConsultationFilter {
                        referrer_id: Some(p.user.id),
                        ..states(&[S::Draft, S::Submitted, S::Assigned, S::InProgress])
                    },
                )
                .await?,
                section(
                    &st,
                    &p,
                    &tr,
                    "inbox-closed-cases",
                    ConsultationFilter {
                        referrer_id: Some(p.user.id),
                        limit: Some(50),
                        ..states(&[S::Closed, S::Cancelled])
                    },
                )
                .await?,
            ],
            Role::Consultant => return Ok(Redirect::to("/ui/worklist").into_response()),
            Role::Coordinator => return Ok(Redirect::to("/ui/routing").into_response()),
            Role::Pharmacist => return Ok(Redirect::to("/ui/rx/pharmacy").into_response()),
            Role::Patient => {
                intro = Some(tr.t("inbox-patient-intro"));
                vec![
                    section(
                        &st,
                        &p,
                        &tr,
                        "inbox-my-consultations",
                        ConsultationFilter::default(),
                    )
                    .await?,
                ]
            }
            Role::PublicHealthOfficer => {
                intro = Some(tr.t("inbox-officer-intro"));
                vec![]
            }
            Role::Admin => {
                intro = Some(tr.t("inbox-admin-intro"));
                vec![]
            }
        };
        Ok(render(&ListPage {
            ctx: c,
            intro,
            sections,
        }))
    }
    .await;
    done(&st, &p, &headers, r)
}

async fn worklist(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
) -> Response {
    use ConsultationState as S;
    let r = async {
        p.require(&[Role::Consultant])?;
        let c = ctx(&st, Some(&p), &headers, "nav-worklist", "/ui/worklist");
        let tr = c.tr;
        let sections = vec![
            section(
                &st,
                &p,
                &tr,
                "worklist-to-accept",
                ConsultationFilter {
                    assigned_to: Some(p.user.id),
                    ..states(&[S::Assigned])
                },
            )
            .await?,
            section(
                &st,
                &p,
                &tr,
                "worklist-in-progress",
                states(&[S::InProgress]),
            )
            .await?,
            section(
                &st,
                &p,
                &tr,
                "worklist-reported",
                ConsultationFilter {
                    limit: Some(50),
                    ..states(&[S::Reported, S::Acknowledged, S::Closed])
                },
            )
            .await?,
        ];
        Ok(render(&ListPage {
            ctx: c,
            intro: None,
            sections,
        }))
    }
    .await;
    done(&st, &p, &headers, r)
}

async fn routing_board(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
) -> Response {
    use ConsultationState as S;
    let r = async {
        p.require(&[Role::Coordinator])?;
        let c = ctx(&st, Some(&p), &headers, "nav-routing", "/ui/routing");
        let tr = c.tr;
        let sections = vec![
            section(
                &st,
                &p,
                &tr,
                "routing-overdue",
                ConsultationFilter {
                    overdue_at: Some(Utc::now()),
                    ..Default::default()
                },
            )
            .await?,
            section(&st, &p, &tr, "routing-unassigned", states(&[S::Submitted])).await?,
            section(
                &st,
                &p,
                &tr,
                "routing-awaiting-acceptance",
                states(&[S::Assigned]),
            )
            .await?,
            section(
                &st,
                &p,
                &tr,
                "routing-in-progress",
                states(&[S::InProgress]),
            )
            .await?,
        ];
        Ok(render(&ListPage {
            ctx: c,
            intro: Some(tr.t("routing-intro")),
            sections,
        }))
    }
    .await;
    done(&st, &p, &headers, r)
}

// ---------- new consultation ----------

#[derive(Template)]
#[template(path = "form_new_case.html")]
struct NewCasePage<'a> {
    ctx: Ctx<'a>,
    patients: Vec<(String, String)>,
    specialties: Vec<(String, String)>,
    urgencies: Vec<(String, String)>,
}

async fn new_case_page(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
) -> Response {
    let r = async {
        p.require(&[Role::Referrer])?;
        let c = ctx(
            &st,
            Some(&p),
            &headers,
            "new-consultation-title",
            "/ui/consultations/new",
        );
        let tr = c.tr;
        let list = consult::search_patients(
            &st,
            &p,
            &PatientFilter {
                limit: Some(500),
                ..Default::default()
            },
        )
        .await?;
        let patients = list
            .iter()
            .filter(|x| x.institution_id == p.user.institution_id)
            .map(|x| {
                (
                    x.id.to_string(),
                    format!("{} {} ({})", x.given_name, x.family_name, x.birth_date),
                )
            })
            .collect();
        let specialties = SPECIALTIES
            .iter()
            .map(|s| (s.to_string(), tr.t(&format!("specialty-{s}"))))
            .collect();
        let urgencies = Urgency::ALL
            .iter()
            .map(|u| {
                (
                    u.as_str().to_owned(),
                    tr.t(&format!("urgency-{}", u.as_str())),
                )
            })
            .collect();
        Ok(render(&NewCasePage {
            ctx: c,
            patients,
            specialties,
            urgencies,
        }))
    }
    .await;
    done(&st, &p, &headers, r)
}

#[derive(Deserialize)]
struct NewCaseForm {
    csrf: String,
    patient_id: String,
    question: String,
    #[serde(default)]
    clinical_summary: String,
    specialty: String,
    urgency: String,
    #[serde(default)]
    languages: String,
    #[serde(default)]
    consent: Option<String>,
    #[serde(default)]
    submit: Option<String>,
}

async fn new_case_submit(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Form(f): Form<NewCaseForm>,
) -> Response {
    let r = async {
        p.check_csrf(Some(&f.csrf))?;
        let patient_id: PatientId = parse_id("patient", &f.patient_id)?;
        if f.consent.as_deref() == Some("yes") {
            consult::record_consent(
                &st,
                &p,
                patient_id,
                ConsentScope::Consultation,
                true,
                "recorded with the referral",
            )
            .await?;
        }
        let urgency = f
            .urgency
            .parse()
            .map_err(|e: ParseError| AppError::bad_request(e.to_string()))?;
        let n = NewConsultation {
            patient_id,
            question: f.question,
            clinical_summary: f.clinical_summary,
            specialty: f.specialty,
            urgency,
            languages: f
                .languages
                .split(',')
                .map(|s| s.trim().to_owned())
                .collect(),
            submit: f.submit.as_deref() == Some("yes"),
        };
        let c = consult::create_consultation(&st, &p, n).await?;
        Ok(Redirect::to(&format!("/ui/consultations/{}", c.id)).into_response())
    }
    .await;
    done(&st, &p, &headers, r)
}

// ---------- case page ----------

struct PersonView {
    name: String,
    role: String,
    institution: String,
}
struct MessageView {
    id: String,
    author: String,
    at: String,
    body: String,
    preview: String,
    reply: bool,
}
struct AttachmentView {
    id: String,
    name: String,
    meta: String,
    /// A TIFF/SVS whole-slide image: linked to the slide viewer (src/slides.rs).
    slide: bool,
}
struct ReportView {
    meta: String,
    findings: String,
    impression: String,
    recommendations: String,
}
struct CaseVm {
    id: String,
    question: String,
    state_label: String,
    urgency_label: String,
    specialty_label: String,
    due: Option<String>,
    overdue: bool,
    escalated: bool,
    sla_text: String,
    patient_name: String,
    patient_birth: String,
    patient_id: String,
    patient_sex: String,
    summary: String,
    languages: String,
    people: Vec<PersonView>,
    report: Option<ReportView>,
    outcome: Option<String>,
    messages: Vec<MessageView>,
    /// Links to the part of a long thread before the one shown, and back to its latest part.
    thread_earlier: Option<String>,
    thread_latest: Option<String>,
    attachments: Vec<AttachmentView>,
}

#[derive(Deserialize)]
struct CaseQuery {
    /// Show the part of the thread just before this message (the latest part without it).
    before: Option<String>,
}
struct ActionView {
    kind: &'static str,
    label: String,
    choices: Vec<(String, String)>,
}
struct AuditView {
    at: String,
    who: String,
    what: String,
}

#[derive(Template)]
#[template(path = "case.html")]
struct CasePage<'a> {
    ctx: Ctx<'a>,
    c: CaseVm,
    actions: Vec<ActionView>,
    outcome_options: Vec<(String, String)>,
    can_write: bool,
    audit: Vec<AuditView>,
    /// DICOM studies and ECGs of the case (`studies`).
    imaging: crate::studies::CaseImaging,
}

/// The actions the domain would accept from this actor now: each is tried on a copy of the case, so the buttons
/// shown are exactly the legal transitions (one source of truth: `Consultation::apply`).
fn legal_actions(c: &Consultation, actor: &Actor, sla: &SlaPolicy) -> Vec<&'static str> {
    let probe = UserId::new();
    let text = || "x".to_owned();
    let candidates: Vec<(&'static str, ConsultationEvent)> = vec![
        ("submit", ConsultationEvent::Submit { consent: true }),
        (
            "assign",
            ConsultationEvent::Assign {
                consultant: probe,
                automatic: false,
                team: None,
            },
        ),
        ("accept", ConsultationEvent::Accept),
        ("decline", ConsultationEvent::Decline { reason: text() }),
        ("invite", ConsultationEvent::Invite { member: probe }),
        (
            "report",
            ConsultationEvent::Report {
                findings: text(),
                impression: text(),
                recommendations: text(),
            },
        ),
        ("acknowledge", ConsultationEvent::Acknowledge),
        (
            "record_outcome",
            ConsultationEvent::RecordOutcome {
                status: "improved".into(),
                note: String::new(),
            },
        ),
        ("cancel", ConsultationEvent::Cancel { reason: text() }),
    ];
    candidates
        .into_iter()
        .filter(|(_, ev)| c.clone().apply(actor, ev, Utc::now(), sla).is_ok())
        .map(|(k, _)| k)
        .collect()
}

async fn case_page(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<CaseQuery>,
) -> Response {
    let r = async {
        let id: ConsultationId = parse_id("consultation", &id)?;
        let before: Option<MessageId> = q
            .before
            .as_deref()
            .filter(|b| !b.is_empty())
            .map(|b| parse_id("message", b))
            .transpose()?;
        let v = consult::view(&st, &p, id).await?;
        // A long thread is shown a window of the latest messages at a time (the page stays light), with links
        // back and forth; the window ends just before `before` when it is given.
        let end = match before {
            None => v.messages.len(),
            Some(b) => v
                .messages
                .iter()
                .position(|m| m.id == b)
                .ok_or_else(|| AppError::not_found("message"))?,
        };
        let start = end.saturating_sub(caravan_store::THREAD_WINDOW);
        let window = &v.messages[start..end];
        let thread_earlier = (start > 0).then(|| {
            format!(
                "/ui/consultations/{id}?before={}#thread",
                v.messages[start].id
            )
        });
        let thread_latest =
            (end < v.messages.len()).then(|| format!("/ui/consultations/{id}#thread"));
        let path = format!("/ui/consultations/{id}");
        let mut c = ctx(&st, Some(&p), &headers, "case-title", &path);
        let tr = c.tr;
        let k = &v.consultation;
        c.title = k.question.chars().take(60).collect();
        let now = Utc::now();
        let names: HashMap<UserId, (String, String)> = v
            .people
            .iter()
            .map(|(id, n, i)| (*id, (n.clone(), i.clone())))
            .collect();
        let name_of = |u: UserId| {
            names
                .get(&u)
                .map(|x| x.0.clone())
                .unwrap_or_else(|| u.to_string())
        };
        let mut people = vec![];
        let mut push = |u: UserId, role: String| {
            if let Some((n, i)) = names.get(&u) {
                people.push(PersonView {
                    name: n.clone(),
                    role,
                    institution: i.clone(),
                });
            }
        };
        push(k.referrer_id, tr.t("team-referrer"));
        if let Some(a) = k.assigned_to {
            if !k.is_panel_member(a) {
                push(a, tr.t("team-assigned"));
            }
        }
        for m in &k.panel {
            push(m.user_id, tr.t(&format!("team-{}", m.role.as_str())));
        }
        let sla_text = match k.due_at {
            Some(due) if k.state.awaits_report() => {
                let mins = (due - now).num_minutes();
                if mins >= 0 {
                    tr.t1("sla-remaining", "minutes", mins)
                } else {
                    tr.t1("sla-overdue-by", "minutes", -mins)
                }
            }
            _ => String::new(),
        };
        let top: Vec<MessageId> = window
            .iter()
            .filter(|m| m.parent_id.is_none())
            .map(|m| m.id)
            .collect();
        // Threaded order: each top-level message followed by its replies (replies whose message is outside the
        // window follow in time order).
        let mut ordered = vec![];
        for t in &top {
            for m in window
                .iter()
                .filter(|m| m.id == *t || m.parent_id == Some(*t))
            {
                ordered.push(m);
            }
        }
        for m in window {
            if !ordered.iter().any(|o| o.id == m.id) {
                ordered.push(m);
            }
        }
        let cv = CaseVm {
            id: k.id.to_string(),
            question: k.question.clone(),
            state_label: tr.t(&format!("state-{}", k.state.as_str())),
            urgency_label: tr.t(&format!("urgency-{}", k.urgency.as_str())),
            specialty_label: tr.t(&format!("specialty-{}", k.specialty)),
            due: k.due_at.filter(|_| k.state.awaits_report()).map(fmt_time),
            overdue: k.is_overdue(now),
            escalated: k.escalated_at.is_some() && k.state.awaits_report(),
            sla_text,
            patient_name: format!("{} {}", v.patient.given_name, v.patient.family_name),
            patient_birth: v.patient.birth_date.to_string(),
            patient_id: v.patient.id.to_string(),
            patient_sex: tr.t(&format!("sex-{}", v.patient.sex.as_str())),
            summary: k.clinical_summary.clone(),
            languages: k.languages.join(", "),
            people,
            report: k.report.as_ref().map(|r| ReportView {
                meta: format!("{} · {}", name_of(r.author_id), fmt_time(r.issued_at)),
                findings: r.findings.clone(),
                impression: r.impression.clone(),
                recommendations: r.recommendations.clone(),
            }),
            outcome: k.outcome.as_ref().map(|o| {
                format!(
                    "{} — {} ({})",
                    tr.t(&format!("outcome-{}", o.status)),
                    o.note,
                    fmt_time(o.recorded_at)
                )
            }),
            messages: ordered
                .iter()
                .map(|m| MessageView {
                    id: m.id.to_string(),
                    author: m.author_name.clone(),
                    at: fmt_time(m.created_at),
                    body: m.body.clone(),
                    preview: m.body.chars().take(40).collect(),
                    reply: m.parent_id.is_some(),
                })
                .collect(),
            thread_earlier,
            thread_latest,
            attachments: v
                .attachments
                .iter()
                .map(|a| AttachmentView {
                    id: a.id.to_string(),
                    name: a.filename.clone(),
                    slide: a.content_type == "image/tiff",
                    meta: format!(
                        "{} · {} KB · {}",
                        a.content_type,
                        (a.size + 1023) / 1024,
                        fmt_time(a.created_at)
                    ),
                })
                .collect(),
        };
        let actor = p.actor();
        let mut actions = vec![];
        for kind in legal_actions(k, &actor, &st.config().sla) {
            let choices = match kind {
                "assign" => {
                    let mut choices: Vec<(String, String)> = consult::propose(&st, k)
                        .await?
                        .into_iter()
                        .map(|r| {
                            (
                                r.user_id.to_string(),
                                format!(
                                    "{} — {:.1} ({}/{})",
                                    r.display_name, r.score, r.open_cases, r.capacity
                                ),
                            )
                        })
                        .collect();
                    // Teams come after the single consultants, marked so the form can tell them apart.
                    for t in consult::propose_teams(&st, k).await? {
                        let label =
                            tr.t2("routing-team-choice", "name", &t.name, "lead", &t.lead_name);
                        choices.push((
                            format!("team:{}", t.team_id),
                            format!("{label} — {:.1}", t.score),
                        ));
                    }
                    choices
                }
                "invite" => st
                    .store()
                    .list_users(None)
                    .await?
                    .into_iter()
                    .filter(|u| u.role == Role::Consultant && u.active && !k.is_participant(u.id))
                    .map(|u| {
                        let spec = u
                            .profile
                            .map(|p| {
                                p.specialties
                                    .iter()
                                    .map(|s| tr.t(&format!("specialty-{s}")))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            })
                            .unwrap_or_default();
                        (u.id.to_string(), format!("{} — {}", u.display_name, spec))
                    })
                    .collect(),
                _ => vec![],
            };
            if matches!(kind, "assign" | "invite") && choices.is_empty() {
                continue;
            }
            actions.push(ActionView {
                kind,
                label: tr.t(&format!("action-{kind}")),
                choices,
            });
        }
        let can_write = !matches!(
            k.state,
            ConsultationState::Draft | ConsultationState::Cancelled
        ) && p.role().is_clinical()
            && (k.is_participant(p.user.id) || p.role() == Role::Coordinator);
        let audit = st
            .store()
            .audit_for_entity("consultation", &k.id.to_string(), Some(k.patient_id), 100)
            .await?
            .into_iter()
            .map(|r| AuditView {
                at: fmt_time(r.event.at),
                who: r.event.actor_name,
                what: format!(
                    "{} {}",
                    tr.t(&format!("audit-action-{}", r.event.action.as_str())),
                    r.event.detail
                ),
            })
            .collect();
        let outcome_options = consultation::OUTCOME_STATUSES
            .iter()
            .map(|s| (s.to_string(), tr.t(&format!("outcome-{s}"))))
            .collect();
        let imaging = crate::studies::case_section(&st, &p, k, &v.attachments, &tr).await?;
        Ok(render(&CasePage {
            ctx: c,
            c: cv,
            actions,
            outcome_options,
            can_write,
            audit,
            imaging,
        }))
    }
    .await;
    done(&st, &p, &headers, r)
}

#[derive(Deserialize)]
struct EventForm {
    csrf: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    findings: String,
    #[serde(default)]
    impression: String,
    #[serde(default)]
    recommendations: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    user: String,
}

async fn case_event(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<EventForm>,
) -> Response {
    let r = async {
        p.check_csrf(Some(&f.csrf))?;
        let id: ConsultationId = parse_id("consultation", &id)?;
        let ev = match f.kind.as_str() {
            "submit" => EventRequest::Submit,
            "assign" => match f.user.strip_prefix("team:") {
                Some(team) => EventRequest::AssignTeam {
                    team: parse_id("team", team)?,
                },
                None => EventRequest::Assign {
                    consultant: parse_id("user", &f.user)?,
                },
            },
            "accept" => EventRequest::Accept,
            "decline" => EventRequest::Decline { reason: f.reason },
            "invite" => EventRequest::Invite {
                member: parse_id("user", &f.user)?,
            },
            "report" => EventRequest::Report {
                findings: f.findings,
                impression: f.impression,
                recommendations: f.recommendations,
            },
            "acknowledge" => EventRequest::Acknowledge,
            "record_outcome" => EventRequest::RecordOutcome {
                status: f.status,
                note: f.note,
            },
            "cancel" => EventRequest::Cancel { reason: f.reason },
            other => return Err(AppError::bad_request(format!("unknown action {other:?}"))),
        };
        consult::apply(&st, &p, id, ev).await?;
        Ok(Redirect::to(&format!("/ui/consultations/{id}")).into_response())
    }
    .await;
    done(&st, &p, &headers, r)
}

#[derive(Deserialize)]
struct MessageForm {
    csrf: String,
    body: String,
    #[serde(default)]
    parent_id: String,
}

async fn case_message(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<MessageForm>,
) -> Response {
    let r = async {
        p.check_csrf(Some(&f.csrf))?;
        let id: ConsultationId = parse_id("consultation", &id)?;
        let parent = if f.parent_id.is_empty() {
            None
        } else {
            Some(parse_id("message", &f.parent_id)?)
        };
        let m = consult::post_message(&st, &p, id, parent, &f.body).await?;
        Ok(Redirect::to(&format!("/ui/consultations/{id}#m-{}", m.id)).into_response())
    }
    .await;
    done(&st, &p, &headers, r)
}

/// The case page's attachment form: the file is streamed into the blob store (see [`crate::upload`]; the node's
/// body limit does not apply, the attachment limit does), after its CSRF token.
async fn case_upload(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Body,
) -> Response {
    let r = async {
        let id: ConsultationId = parse_id("consultation", &id)?;
        let limit = st.config().max_attachment_bytes;
        let f =
            crate::upload::file(&p, crate::upload::Csrf::FirstField, &headers, body, limit).await?;
        let (filename, content_type) = (f.filename.clone(), f.content_type.clone());
        consult::add_attachment_stream(&st, &p, id, &filename, &content_type, f).await?;
        Ok(Redirect::to(&format!("/ui/consultations/{id}#attachments")).into_response())
    }
    .await;
    done(&st, &p, &headers, r)
}

async fn download(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let r = api::download_response(&st, &p, &id).await;
    done(&st, &p, &headers, r)
}

// ---------- patients ----------

struct PatientRow {
    id: String,
    name: String,
    birth: String,
    consent: String,
    home: bool,
}

#[derive(Template)]
#[template(path = "patients.html")]
struct PatientsPage<'a> {
    ctx: Ctx<'a>,
    query: String,
    patients: Vec<PatientRow>,
    scopes: Vec<(String, String)>,
    can_create: bool,
}

#[derive(Deserialize)]
struct PatientsQuery {
    #[serde(default)]
    q: String,
}

async fn patients_page(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Query(q): Query<PatientsQuery>,
) -> Response {
    let r = async {
        p.require(&[Role::Referrer, Role::Coordinator, Role::Consultant])?;
        let c = ctx(&st, Some(&p), &headers, "nav-patients", "/ui/patients");
        let tr = c.tr;
        let list = consult::search_patients(
            &st,
            &p,
            &PatientFilter {
                name: Some(q.q.clone()),
                limit: Some(200),
                ..Default::default()
            },
        )
        .await?;
        let mut patients = vec![];
        for x in list {
            let history = st.store().consents(&p.actor(), x.id).await?;
            let consent = ConsentScope::ALL
                .iter()
                .filter(|s| consent_in_force(&history, **s))
                .map(|s| tr.t(&format!("consent-scope-{}", s.as_str())))
                .collect::<Vec<_>>()
                .join(", ");
            patients.push(PatientRow {
                id: x.id.to_string(),
                name: format!("{} {}", x.given_name, x.family_name),
                birth: x.birth_date.to_string(),
                consent,
                home: x.institution_id == p.user.institution_id
                    && matches!(p.role(), Role::Referrer | Role::Coordinator),
            });
        }
        let scopes = ConsentScope::ALL
            .iter()
            .map(|s| {
                (
                    s.as_str().to_owned(),
                    tr.t(&format!("consent-scope-{}", s.as_str())),
                )
            })
            .collect();
        let can_create = matches!(p.role(), Role::Referrer | Role::Coordinator);
        Ok(render(&PatientsPage {
            ctx: c,
            query: q.q,
            patients,
            scopes,
            can_create,
        }))
    }
    .await;
    done(&st, &p, &headers, r)
}

#[derive(Deserialize)]
struct PatientForm {
    csrf: String,
    given_name: String,
    family_name: String,
    birth_date: String,
    sex: String,
    #[serde(default)]
    languages: String,
}

async fn patient_create(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Form(f): Form<PatientForm>,
) -> Response {
    let r = async {
        p.check_csrf(Some(&f.csrf))?;
        let n = NewPatient {
            given_name: f.given_name,
            family_name: f.family_name,
            birth_date: f.birth_date.parse().map_err(|_| {
                AppError::bad_request(format!("{:?} is not a date (YYYY-MM-DD)", f.birth_date))
            })?,
            sex: f
                .sex
                .parse()
                .map_err(|e: ParseError| AppError::bad_request(e.to_string()))?,
            national_id: None,
            languages: f
                .languages
                .split(',')
                .map(|s| s.trim().to_owned())
                .collect(),
        };
        consult::create_patient(&st, &p, n).await?;
        Ok(Redirect::to("/ui/patients").into_response())
    }
    .await;
    done(&st, &p, &headers, r)
}

#[derive(Deserialize)]
struct ConsentForm {
    csrf: String,
    scope: String,
    granted: String,
}

async fn consent_submit(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<ConsentForm>,
) -> Response {
    let r = async {
        p.check_csrf(Some(&f.csrf))?;
        let id = parse_id("patient", &id)?;
        let scope = f
            .scope
            .parse()
            .map_err(|e: ParseError| AppError::bad_request(e.to_string()))?;
        consult::record_consent(&st, &p, id, scope, f.granted == "yes", "").await?;
        Ok(Redirect::to("/ui/patients").into_response())
    }
    .await;
    done(&st, &p, &headers, r)
}

// ---------- access log, admin, tokens: tables ----------

struct FormField {
    name: &'static str,
    label: String,
    kind: &'static str,
    required: bool,
    options: Vec<(String, String)>,
}

struct FormView {
    action: &'static str,
    title: String,
    button: String,
    fields: Vec<FormField>,
}

#[derive(Template)]
#[template(path = "table.html")]
struct TablePage<'a> {
    ctx: Ctx<'a>,
    intro: Option<String>,
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
    forms: Vec<FormView>,
}

fn field(name: &'static str, label: String, kind: &'static str) -> FormField {
    FormField {
        name,
        label,
        kind,
        required: true,
        options: vec![],
    }
}

fn select(name: &'static str, label: String, options: Vec<(String, String)>) -> FormField {
    FormField {
        name,
        label,
        kind: "text",
        required: true,
        options,
    }
}

async fn access_log_table(
    st: &AppState,
    p: &Principal,
    headers: &HeaderMap,
    id: PatientId,
    path: &str,
) -> AppResult<Response> {
    let log = api::access_log_for(st, p, id).await?;
    let institutions: HashMap<InstitutionId, String> = st
        .store()
        .list_institutions()
        .await?
        .into_iter()
        .map(|i| (i.id, format!("{} ({})", i.name, i.country)))
        .collect();
    let c = ctx(st, Some(p), headers, "access-log-title", path);
    let tr = c.tr;
    let headers_row = vec![
        tr.t("col-when"),
        tr.t("col-who"),
        tr.t("col-institution"),
        tr.t("col-action"),
        tr.t("col-purpose"),
    ];
    let rows = log
        .into_iter()
        .map(|r| {
            let e = r.event;
            vec![
                fmt_time(e.at),
                e.actor_name,
                e.actor_institution
                    .and_then(|i| institutions.get(&i).cloned())
                    .unwrap_or_default(),
                format!(
                    "{} · {}",
                    tr.t(&format!("audit-action-{}", e.action.as_str())),
                    e.entity_type
                ),
                e.purpose,
            ]
        })
        .collect();
    Ok(render(&TablePage {
        intro: Some(tr.t("access-log-intro")),
        headers: headers_row,
        rows,
        forms: vec![],
        ctx: c,
    }))
}

async fn access_log_page(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let r = async {
        let id = parse_id("patient", &id)?;
        access_log_table(&st, &p, &headers, id, "/ui/patients").await
    }
    .await;
    done(&st, &p, &headers, r)
}

async fn my_access_log(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
) -> Response {
    let r = async {
        p.require(&[Role::Patient])?;
        let id = p.user.patient_id.ok_or_else(AppError::forbidden)?;
        access_log_table(&st, &p, &headers, id, "/ui/me/access-log").await
    }
    .await;
    done(&st, &p, &headers, r)
}

async fn institutions_page(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
) -> Response {
    let r = async {
        p.require(&[Role::Admin])?;
        let list = st.store().list_institutions().await?;
        let c = ctx(
            &st,
            Some(&p),
            &headers,
            "nav-institutions",
            "/ui/admin/institutions",
        );
        let tr = c.tr;
        let names: HashMap<InstitutionId, String> =
            list.iter().map(|i| (i.id, i.name.clone())).collect();
        let rows = list
            .iter()
            .map(|i| {
                vec![
                    i.name.clone(),
                    tr.t(&format!("level-{}", i.level.as_str())),
                    i.country.to_string(),
                    i.parent
                        .and_then(|x| names.get(&x).cloned())
                        .unwrap_or_default(),
                    i.timezone.clone(),
                ]
            })
            .collect();
        let headers_row = vec![
            tr.t("col-name"),
            tr.t("col-level"),
            tr.t("col-country"),
            tr.t("col-parent"),
            tr.t("col-timezone"),
        ];
        let mut parents = vec![(String::new(), "—".to_owned())];
        parents.extend(list.iter().map(|i| (i.id.to_string(), i.name.clone())));
        let form = FormView {
            action: "/ui/admin/institutions",
            title: tr.t("institutions-new"),
            button: tr.t("create"),
            fields: vec![
                field("name", tr.t("col-name"), "text"),
                select(
                    "level",
                    tr.t("col-level"),
                    InstitutionLevel::ALL
                        .iter()
                        .map(|l| {
                            (
                                l.as_str().to_owned(),
                                tr.t(&format!("level-{}", l.as_str())),
                            )
                        })
                        .collect(),
                ),
                field("country", tr.t("col-country"), "text"),
                select("parent", tr.t("col-parent"), parents),
                field("timezone", tr.t("col-timezone"), "text"),
            ],
        };
        Ok(render(&TablePage {
            ctx: c,
            intro: None,
            headers: headers_row,
            rows,
            forms: vec![form],
        }))
    }
    .await;
    done(&st, &p, &headers, r)
}

#[derive(Deserialize)]
struct InstitutionForm {
    csrf: String,
    name: String,
    level: String,
    country: String,
    #[serde(default)]
    parent: String,
    timezone: String,
}

async fn institution_create(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Form(f): Form<InstitutionForm>,
) -> Response {
    let r = async {
        p.check_csrf(Some(&f.csrf))?;
        let bad = |e: ParseError| AppError::unprocessable("error-bad-request", e.to_string());
        let n = api::NewInstitution {
            name: f.name,
            level: f.level.parse().map_err(bad)?,
            country: f.country.trim().to_uppercase().parse().map_err(bad)?,
            parent: if f.parent.is_empty() {
                None
            } else {
                Some(parse_id("institution", &f.parent)?)
            },
            timezone: f.timezone.trim().to_owned(),
        };
        api::do_create_institution(&st, &p, n).await?;
        Ok(Redirect::to("/ui/admin/institutions").into_response())
    }
    .await;
    done(&st, &p, &headers, r)
}

async fn users_page(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
) -> Response {
    let r = async {
        p.require(&[Role::Admin])?;
        let users = st.store().list_users(None).await?;
        let insts = st.store().list_institutions().await?;
        let names: HashMap<InstitutionId, String> =
            insts.iter().map(|i| (i.id, i.name.clone())).collect();
        let c = ctx(&st, Some(&p), &headers, "nav-users", "/ui/admin/users");
        let tr = c.tr;
        let rows = users
            .iter()
            .map(|u| {
                let prof = u
                    .profile
                    .as_ref()
                    .map(|p| {
                        format!(
                            "{} · {} · {}",
                            p.specialties.join(", "),
                            p.languages.join(", "),
                            p.timezone
                        )
                    })
                    .unwrap_or_default();
                vec![
                    u.username.clone(),
                    u.display_name.clone(),
                    tr.t(&format!("role-{}", u.role.as_str())),
                    names.get(&u.institution_id).cloned().unwrap_or_default(),
                    prof,
                ]
            })
            .collect();
        let headers_row = vec![
            tr.t("username"),
            tr.t("col-name"),
            tr.t("col-role"),
            tr.t("col-institution"),
            tr.t("col-profile"),
        ];
        let form = FormView {
            action: "/ui/admin/users",
            title: tr.t("users-new"),
            button: tr.t("create"),
            fields: vec![
                field("username", tr.t("username"), "text"),
                field("display_name", tr.t("col-name"), "text"),
                field("password", tr.t("password"), "password"),
                select(
                    "institution_id",
                    tr.t("col-institution"),
                    insts
                        .iter()
                        .map(|i| (i.id.to_string(), i.name.clone()))
                        .collect(),
                ),
                select(
                    "role",
                    tr.t("col-role"),
                    Role::ALL
                        .iter()
                        .filter(|r| **r != Role::Patient)
                        .map(|r| (r.as_str().to_owned(), tr.t(&format!("role-{}", r.as_str()))))
                        .collect(),
                ),
                FormField {
                    required: false,
                    ..field("specialties", tr.t("col-specialty"), "text")
                },
                FormField {
                    required: false,
                    ..field("languages", tr.t("case-languages"), "text")
                },
                FormField {
                    required: false,
                    ..field("timezone", tr.t("col-timezone"), "text")
                },
            ],
        };
        Ok(render(&TablePage {
            ctx: c,
            intro: None,
            headers: headers_row,
            rows,
            forms: vec![form],
        }))
    }
    .await;
    done(&st, &p, &headers, r)
}

#[derive(Deserialize)]
struct UserForm {
    csrf: String,
    username: String,
    display_name: String,
    password: String,
    institution_id: String,
    role: String,
    #[serde(default)]
    specialties: String,
    #[serde(default)]
    languages: String,
    #[serde(default)]
    timezone: String,
}

async fn user_create(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Form(f): Form<UserForm>,
) -> Response {
    let r = async {
        p.check_csrf(Some(&f.csrf))?;
        let role: Role = f
            .role
            .parse()
            .map_err(|e: ParseError| AppError::bad_request(e.to_string()))?;
        let list = |s: &str| {
            s.split(',')
                .map(|x| x.trim().to_owned())
                .filter(|x| !x.is_empty())
                .collect::<Vec<_>>()
        };
        let profile =
            matches!(role, Role::Consultant | Role::Referrer).then(|| PractitionerProfile {
                specialties: list(&f.specialties),
                languages: list(&f.languages),
                timezone: if f.timezone.trim().is_empty() {
                    "UTC".into()
                } else {
                    f.timezone.trim().to_owned()
                },
                hours: WorkingHours::default(),
                capacity: 10,
            });
        let n = api::NewUser {
            username: f.username,
            display_name: f.display_name,
            password: f.password,
            institution_id: parse_id("institution", &f.institution_id)?,
            role,
            patient_id: None,
            profile,
            locale: "en".into(),
        };
        api::do_create_user(&st, &p, n).await?;
        Ok(Redirect::to("/ui/admin/users").into_response())
    }
    .await;
    done(&st, &p, &headers, r)
}

async fn teams_page(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
) -> Response {
    let r = async {
        p.require(&[Role::Admin])?;
        let teams = crate::teams::list(&st, &p).await?;
        let users = st.store().list_users(None).await?;
        let name_of = |id: UserId| {
            users
                .iter()
                .find(|u| u.id == id)
                .map(|u| u.display_name.clone())
                .unwrap_or_default()
        };
        let c = ctx(&st, Some(&p), &headers, "nav-teams", "/ui/admin/teams");
        let tr = c.tr;
        let rows = teams
            .iter()
            .map(|t| {
                vec![
                    t.name.clone(),
                    tr.t(&format!("specialty-{}", t.specialty)),
                    name_of(t.lead_id),
                    t.member_ids
                        .iter()
                        .map(|m| name_of(*m))
                        .collect::<Vec<_>>()
                        .join(", "),
                ]
            })
            .collect();
        let form = FormView {
            action: "/ui/admin/teams",
            title: tr.t("teams-new"),
            button: tr.t("create"),
            fields: vec![
                field("name", tr.t("col-team"), "text"),
                select(
                    "specialty",
                    tr.t("col-specialty"),
                    SPECIALTIES
                        .iter()
                        .map(|s| (s.to_string(), tr.t(&format!("specialty-{s}"))))
                        .collect(),
                ),
                select(
                    "lead",
                    tr.t("col-lead"),
                    users
                        .iter()
                        .filter(|u| u.role == Role::Consultant && u.active)
                        .map(|u| (u.id.to_string(), u.display_name.clone()))
                        .collect(),
                ),
                FormField {
                    required: false,
                    ..field("members", tr.t("teams-members-hint"), "text")
                },
            ],
        };
        Ok(render(&TablePage {
            ctx: c,
            intro: Some(tr.t("teams-intro")),
            headers: vec![
                tr.t("col-team"),
                tr.t("col-specialty"),
                tr.t("col-lead"),
                tr.t("col-members"),
            ],
            rows,
            forms: vec![form],
        }))
    }
    .await;
    done(&st, &p, &headers, r)
}

#[derive(Deserialize)]
struct TeamForm {
    csrf: String,
    name: String,
    specialty: String,
    lead: String,
    #[serde(default)]
    members: String,
}

async fn team_create(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Form(f): Form<TeamForm>,
) -> Response {
    let r = async {
        p.check_csrf(Some(&f.csrf))?;
        p.require(&[Role::Admin])?;
        // Names to ids from the user list (no need to touch credentials for that).
        let users = st.store().list_users(None).await?;
        let mut member_ids = Vec::new();
        for name in f
            .members
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let u = users.iter().find(|u| u.username == name).ok_or_else(|| {
                AppError::unprocessable("error-not-a-clinician", format!("no user named {name:?}"))
            })?;
            member_ids.push(u.id);
        }
        let n = crate::teams::NewTeam {
            name: f.name,
            specialty: f.specialty,
            lead_id: parse_id("user", &f.lead)?,
            member_ids,
        };
        crate::teams::create(&st, &p, n).await?;
        Ok(Redirect::to("/ui/admin/teams").into_response())
    }
    .await;
    done(&st, &p, &headers, r)
}

/// The network as this node sees it: who we are, the outbox, and the dead letters with a retry button.
async fn federation_page(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
) -> Response {
    let r = async {
        p.require(&[Role::Admin])?;
        let c = ctx(
            &st,
            Some(&p),
            &headers,
            "nav-federation",
            "/ui/admin/federation",
        );
        let tr = c.tr;
        let status = crate::federation::status(&st).await?;
        let intro = if status["federated"] == true {
            let counts = &status["counts"];
            tr.tn(
                "federation-intro",
                &[
                    ("node", status["node_id"].as_str().unwrap_or("").to_owned()),
                    ("serial", status["directory_serial"].to_string()),
                    ("pending", counts["pending"].to_string()),
                    ("delivered", counts["delivered"].to_string()),
                    ("dead", counts["dead"].to_string()),
                    ("inbox", counts["inbox"].to_string()),
                ],
            )
        } else {
            tr.t("federation-off")
        };
        let mut rows = Vec::new();
        let mut choices = Vec::new();
        for state in ["dead", "pending"] {
            for o in st.store().fed_outbox(state, 200).await? {
                if state == "dead" {
                    choices.push((
                        o.envelope_id.to_string(),
                        format!("{} → {} ({})", o.message_type, o.destination, o.envelope_id),
                    ));
                }
                rows.push(vec![
                    tr.t(&format!("outbox-{state}")),
                    o.destination,
                    o.message_type,
                    o.attempts.to_string(),
                    o.last_error.unwrap_or_default(),
                    o.enqueued_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                ]);
            }
        }
        let forms = if choices.is_empty() {
            Vec::new()
        } else {
            vec![FormView {
                action: "/ui/admin/federation",
                title: tr.t("federation-retry-title"),
                button: tr.t("federation-retry"),
                fields: vec![select("envelope", tr.t("col-envelope"), choices)],
            }]
        };
        Ok(render(&TablePage {
            ctx: c,
            intro: Some(intro),
            headers: vec![
                tr.t("col-state"),
                tr.t("col-destination"),
                tr.t("col-type"),
                tr.t("col-attempts"),
                tr.t("col-last-error"),
                tr.t("col-enqueued"),
            ],
            rows,
            forms,
        }))
    }
    .await;
    done(&st, &p, &headers, r)
}

#[derive(Deserialize)]
struct RetryForm {
    csrf: String,
    envelope: String,
}

async fn federation_retry(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Form(f): Form<RetryForm>,
) -> Response {
    let r = async {
        p.check_csrf(Some(&f.csrf))?;
        p.require(&[Role::Admin])?;
        let id: uuid::Uuid = parse_id("envelope", &f.envelope)?;
        crate::federation::retry(&st, &p, id).await?;
        Ok(Redirect::to("/ui/admin/federation").into_response())
    }
    .await;
    done(&st, &p, &headers, r)
}

async fn tokens_page(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
) -> Response {
    let r = tokens_table(&st, &p, &headers, None).await;
    done(&st, &p, &headers, r)
}

async fn tokens_table(
    st: &AppState,
    p: &Principal,
    headers: &HeaderMap,
    flash: Option<String>,
) -> AppResult<Response> {
    let list = st.store().list_api_tokens(p.user.id).await?;
    let mut c = ctx(st, Some(p), headers, "nav-tokens", "/ui/tokens");
    c.flash = flash;
    let tr = c.tr;
    let rows = list
        .into_iter()
        .map(|t| vec![t.name, fmt_time(t.created_at), t.id])
        .collect();
    let form = FormView {
        action: "/ui/tokens",
        title: tr.t("tokens-new"),
        button: tr.t("create"),
        fields: vec![field("name", tr.t("col-name"), "text")],
    };
    Ok(render(&TablePage {
        intro: Some(tr.t("tokens-intro")),
        headers: vec![tr.t("col-name"), tr.t("col-when"), "id".into()],
        rows,
        forms: vec![form],
        ctx: c,
    }))
}

#[derive(Deserialize)]
struct TokenForm {
    csrf: String,
    name: String,
}

async fn token_create(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Form(f): Form<TokenForm>,
) -> Response {
    let r = async {
        p.check_csrf(Some(&f.csrf))?;
        let (token, _) = api::do_create_token(&st, &p, &f.name).await?;
        let tr = Tr {
            i18n: st.i18n(),
            lang: lang_for(&st, Some(&p), &headers),
        };
        tokens_table(
            &st,
            &p,
            &headers,
            Some(tr.t1("tokens-created", "token", token)),
        )
        .await
    }
    .await;
    done(&st, &p, &headers, r)
}
