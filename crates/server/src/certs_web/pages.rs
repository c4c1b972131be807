//! Pages: `/ui/certs/verify` (paste, upload a photo of the QR code, or scan it with the camera through the
//! browser's own `BarcodeDetector` in `/ui/certs/scan.js`), `/ui/certs/issue` and `/ui/certs/admin`. Every page
//! works without JavaScript; the script only adds the camera.

use super::material::{DscInfo, ShcInfo};
use super::{IssueRequest, VerifyRequest};
use crate::auth::{Principal, UiPrincipal};
use crate::error::{AppError, AppResult};
use crate::i18n::Tr;
use crate::ui::{ctx, done, render, Ctx};
use crate::AppState;
use askama::Template;
use axum::extract::{Multipart, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use caravan_domain::{AuditAction, PatientId, Role};
use caravan_store::PatientFilter;
use serde::Deserialize;
use serde_json::Value;

/// The camera script: same origin, as the node's CSP (`script-src 'self'`) requires.
const SCAN_JS: &str = include_str!("scan.js");

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui/certs/verify", get(verify_page).post(verify_submit))
        .route("/ui/certs/issue", get(issue_page).post(issue_submit))
        .route("/ui/certs/admin", get(admin_page))
        .route("/ui/certs/admin/import", post(admin_import))
        .route("/ui/certs/admin/remove", post(admin_remove))
        .route("/ui/certs/admin/settings", post(admin_settings))
        .route("/ui/certs/admin/keys", post(admin_keys))
        .route("/ui/certs/scan.js", get(scan_js))
        .route("/.well-known/jwks.json", get(jwks))
}

async fn scan_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        SCAN_JS,
    )
        .into_response()
}

/// This node's SMART Health Card public keys, where verifiers look for them (`<iss>/.well-known/jwks.json`).
async fn jwks(State(st): State<AppState>) -> AppResult<Json<Value>> {
    Ok(Json(st.certs().loaded().await?.jwks()))
}

fn can_issue(p: &Principal) -> bool {
    super::ISSUERS.contains(&p.role())
}

// ---------- verifier ----------

pub struct ResultView {
    pub status: &'static str,
    pub status_text: String,
    pub name: String,
    pub dob: String,
    pub summary: String,
    pub reasons: Vec<(String, Option<String>)>,
    pub checked: String,
}

#[derive(Template)]
#[template(path = "certs_verify.html")]
struct VerifyPage<'a> {
    ctx: Ctx<'a>,
    countries: Vec<String>,
    country: String,
    at: String,
    result: Option<ResultView>,
    error: Option<String>,
    can_issue: bool,
    is_admin: bool,
}

fn default_country(countries: &[String], home: Option<&str>) -> String {
    home.filter(|h| countries.iter().any(|c| c == h))
        .map(str::to_owned)
        .unwrap_or_default()
}

async fn home_country(st: &AppState, p: &Principal) -> Option<String> {
    st.store()
        .get_institution(p.user.institution_id)
        .await
        .ok()
        .map(|i| i.country.as_str().to_owned())
}

async fn verify_page(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
) -> Response {
    let r = async {
        let l = st.certs().loaded().await?;
        let countries = super::arrival_countries(&l);
        let home = home_country(&st, &p).await;
        let country = default_country(&countries, home.as_deref());
        Ok(render(&VerifyPage {
            ctx: ctx(
                &st,
                Some(&p),
                &headers,
                "cert-verify-title",
                "/ui/certs/verify",
            ),
            countries,
            country,
            at: String::new(),
            result: None,
            error: None,
            can_issue: can_issue(&p),
            is_admin: p.role() == Role::Admin,
        }))
    }
    .await;
    done(&st, &p, &headers, r)
}

/// Reads the verifier form (multipart, for the optional photo of a QR code). The photo is decoded in memory and
/// dropped; nothing is written anywhere.
async fn read_verify_form(mut m: Multipart) -> AppResult<(String, VerifyRequest)> {
    let mut csrf = String::new();
    let mut req = VerifyRequest::default();
    let mut image: Option<Vec<u8>> = None;
    while let Some(field) = m
        .next_field()
        .await
        .map_err(|e| AppError::bad_request(format!("form: {e}")))?
    {
        let name = field.name().unwrap_or_default().to_owned();
        if name == "image" {
            let bytes = field
                .bytes()
                .await
                .map_err(|e| AppError::bad_request(format!("form: {e}")))?;
            if !bytes.is_empty() {
                image = Some(bytes.to_vec());
            }
            continue;
        }
        let value = field
            .text()
            .await
            .map_err(|e| AppError::bad_request(format!("form: {e}")))?;
        match name.as_str() {
            "csrf" => csrf = value,
            "text" => req.text = value,
            "country" => req.country = Some(value),
            "at" => req.at = Some(value),
            _ => {}
        }
    }
    if req.text.trim().is_empty() {
        if let Some(img) = image {
            req.text = tokio::task::spawn_blocking(move || certs::qr::decode_image(&img))
                .await
                .map_err(AppError::internal)?
                .map_err(|e| AppError::unprocessable("error-cert-input", e.to_string()))?;
        }
    }
    Ok((csrf, req))
}

pub fn result_view(tr: Tr<'_>, v: &super::VerifyResult) -> ResultView {
    let status = match v.status {
        certs::Status::Green => "green",
        certs::Status::Yellow => "yellow",
        certs::Status::Red => "red",
    };
    let name = v
        .holder
        .as_ref()
        .map(|h| {
            [h.given_name.as_deref(), h.family_name.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let format = match v.format {
        certs::verifier::Format::EuDcc => tr.t("cert-format-dcc"),
        certs::verifier::Format::SmartHealthCard => tr.t("cert-format-shc"),
        certs::verifier::Format::Unknown => String::new(),
    };
    let mut summary = vec![format];
    if let Some(t) = &v.certificate_type {
        let id = format!("cert-type-{t}");
        summary.push(if tr.i18n.has("en", &id) {
            tr.t(&id)
        } else {
            t.clone()
        });
    }
    if let Some(i) = &v.issuer {
        summary.push(tr.t1("cert-issued-by", "issuer", i));
    }
    if let Some(c) = &v.country {
        summary.push(tr.t1("cert-rules-of", "country", c));
    }
    ResultView {
        status,
        status_text: tr.t(&format!("cert-status-{status}")),
        name,
        dob: v
            .holder
            .as_ref()
            .and_then(|h| h.dob.clone())
            .unwrap_or_default(),
        summary: summary
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" · "),
        reasons: v
            .reasons
            .iter()
            .map(|r| (r.message.clone(), r.rule.clone()))
            .collect(),
        checked: tr.t1("cert-checked-at", "time", &v.checked_at),
    }
}

async fn verify_submit(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    m: Multipart,
) -> Response {
    let c = ctx(
        &st,
        Some(&p),
        &headers,
        "cert-verify-title",
        "/ui/certs/verify",
    );
    let tr = c.tr;
    let r: AppResult<Response> = async {
        let form = read_verify_form(m).await;
        let l = st.certs().loaded().await?;
        let countries = super::arrival_countries(&l);
        let (country, at) = match &form {
            Ok((_, req)) => (
                req.country.clone().unwrap_or_default(),
                req.at.clone().unwrap_or_default(),
            ),
            Err(_) => (String::new(), String::new()),
        };
        let outcome = async {
            let (csrf, req) = form?;
            p.check_csrf(Some(&csrf))?;
            super::verify(&st, &req, tr).await
        }
        .await;
        let (result, error, status) = match outcome {
            Ok(v) => (Some(result_view(tr, &v)), None, axum::http::StatusCode::OK),
            Err(e) if e.status.is_client_error() && e.code != "error-csrf" => {
                (None, Some(localised(tr, &e)), e.status)
            }
            Err(e) => return Err(e),
        };
        let mut r = render(&VerifyPage {
            ctx: c,
            countries,
            country,
            at,
            result,
            error,
            can_issue: can_issue(&p),
            is_admin: p.role() == Role::Admin,
        });
        *r.status_mut() = status;
        Ok(r)
    }
    .await;
    done(&st, &p, &headers, r)
}

/// A 4xx shown inside the page: the translated explanation and the server's precise message.
fn localised(tr: Tr<'_>, e: &AppError) -> String {
    if tr.i18n.has("en", e.code) {
        format!("{} ({})", tr.t(e.code), e.message)
    } else {
        e.message.clone()
    }
}

// ---------- issuing ----------

pub struct Choice {
    pub code: String,
    pub label: String,
}

/// The options of an EU value set document, active ones, by display name.
fn choices(doc: &str) -> Vec<Choice> {
    let v: Value = serde_json::from_str(doc).unwrap_or(Value::Null);
    let mut out: Vec<Choice> = v
        .get("valueSetValues")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(_, e)| e.get("active").and_then(Value::as_bool) != Some(false))
        .map(|(code, e)| Choice {
            code: code.clone(),
            label: e
                .get("display")
                .and_then(Value::as_str)
                .unwrap_or(code)
                .to_owned(),
        })
        .collect();
    out.sort_by(|a, b| a.label.cmp(&b.label));
    out
}

pub struct Found {
    pub id: String,
    pub name: String,
    pub birth: String,
}

pub struct IssuedView {
    pub text: String,
    pub png: String,
    pub id: String,
    pub format: String,
    pub expires: String,
}

#[derive(Template)]
#[template(path = "certs_issue.html")]
struct IssuePage<'a> {
    ctx: Ctx<'a>,
    q: String,
    found: Vec<Found>,
    patient: Option<Found>,
    products: Vec<Choice>,
    holders: Vec<Choice>,
    prophylaxis: Vec<Choice>,
    test_types: Vec<Choice>,
    test_results: Vec<Choice>,
    country: String,
    today: String,
    result: Option<IssuedView>,
    error: Option<String>,
    shc_ready: bool,
}

#[derive(Deserialize, Default)]
struct IssueQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    patient: String,
}

async fn issue_ctx<'a>(
    st: &'a AppState,
    p: &Principal,
    headers: &HeaderMap,
    q: &IssueQuery,
) -> AppResult<IssuePage<'a>> {
    p.require(super::ISSUERS)?;
    let c = ctx(st, Some(p), headers, "cert-issue-title", "/ui/certs/issue");
    let mut found = Vec::new();
    if !q.q.trim().is_empty() {
        for x in crate::consult::search_patients(
            st,
            p,
            &PatientFilter {
                name: Some(q.q.trim().to_owned()),
                limit: Some(50),
                ..Default::default()
            },
        )
        .await?
        {
            found.push(Found {
                id: x.id.to_string(),
                name: format!("{} {}", x.given_name, x.family_name),
                birth: x.birth_date.to_string(),
            });
        }
    }
    let patient = match q.patient.trim() {
        "" => None,
        id => {
            let id: PatientId = crate::api::parse_id("patient", id)?;
            let x = crate::consult::get_patient(st, p, id).await?;
            Some(Found {
                id: x.id.to_string(),
                name: format!("{} {}", x.given_name, x.family_name),
                birth: x.birth_date.to_string(),
            })
        }
    };
    let country = home_country(st, p).await.unwrap_or_default();
    let shc_ready = st.certs().loaded().await?.settings.shc_iss.is_some();
    Ok(IssuePage {
        ctx: c,
        q: q.q.clone(),
        found,
        patient,
        products: choices(include_str!(
            "../../fixtures/certs/vs-vaccine-medicinal-product.json"
        )),
        holders: choices(include_str!(
            "../../fixtures/certs/vs-vaccine-mah-manf.json"
        )),
        prophylaxis: choices(include_str!(
            "../../fixtures/certs/vs-vaccine-prophylaxis.json"
        )),
        test_types: choices(include_str!("../../fixtures/certs/vs-test-type.json")),
        // "Not detected" first: a certificate must never say positive by default.
        test_results: {
            let mut c = choices(include_str!("../../fixtures/certs/vs-test-result.json"));
            c.sort_by_key(|c| c.code != "260415000");
            c
        },
        country,
        today: chrono::Utc::now().format("%Y-%m-%d").to_string(),
        result: None,
        error: None,
        shc_ready,
    })
}

async fn issue_page(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Query(q): Query<IssueQuery>,
) -> Response {
    let r = async { Ok(render(&issue_ctx(&st, &p, &headers, &q).await?)) }.await;
    done(&st, &p, &headers, r)
}

/// The issuing form: one form for every kind (the `kind` radio chooses which fields count), plain strings so
/// that a wrong number is our 422 and not a form-parsing failure.
#[derive(Deserialize, Default)]
struct IssueForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    patient_id: String,
    #[serde(default)]
    family_name: String,
    #[serde(default)]
    given_name: String,
    #[serde(default)]
    dob: String,
    #[serde(default)]
    vp: String,
    #[serde(default)]
    mp: String,
    #[serde(default)]
    ma: String,
    #[serde(default)]
    dn: String,
    #[serde(default)]
    sd: String,
    #[serde(default)]
    dt: String,
    #[serde(default)]
    tt: String,
    #[serde(default)]
    nm: String,
    #[serde(default)]
    tma: String,
    #[serde(default)]
    sc: String,
    #[serde(default)]
    tr: String,
    #[serde(default)]
    tc: String,
    #[serde(default)]
    fr: String,
    #[serde(default)]
    df: String,
    #[serde(default)]
    du: String,
    #[serde(default)]
    co: String,
    #[serde(default)]
    cvx: String,
    #[serde(default)]
    sdate: String,
    #[serde(default)]
    lot: String,
    #[serde(default)]
    performer: String,
    #[serde(default)]
    days: String,
}

fn opt(s: &str) -> Option<String> {
    Some(s.trim().to_owned()).filter(|s| !s.is_empty())
}

fn number(s: &str, what: &str) -> AppResult<u32> {
    s.trim().parse().map_err(|_| {
        AppError::unprocessable("error-cert-issue", format!("{what} must be a number"))
    })
}

impl IssueForm {
    fn request(&self) -> AppResult<IssueRequest> {
        let kind = self.kind.trim().to_owned();
        let mut req = IssueRequest {
            kind: kind.clone(),
            patient_id: opt(&self.patient_id),
            qr: None,
            days: match self.days.trim() {
                "" => None,
                d => Some(i64::from(number(d, "validity (days)")?)),
            },
            ..Default::default()
        };
        if req.patient_id.is_none() {
            req.person = Some(super::PersonIn {
                family_name: self.family_name.clone(),
                given_name: opt(&self.given_name),
                dob: self.dob.clone(),
            });
        }
        match kind.as_str() {
            "vaccination" => {
                req.v = Some(super::VaccinationIn {
                    tg: None,
                    vp: self.vp.clone(),
                    mp: self.mp.clone(),
                    ma: self.ma.clone(),
                    dn: number(&self.dn, "dose number")?,
                    sd: number(&self.sd, "total doses")?,
                    dt: self.dt.clone(),
                    co: opt(&self.co),
                    is: None,
                })
            }
            "test" => {
                req.t = Some(super::TestIn {
                    tg: None,
                    tt: self.tt.clone(),
                    nm: opt(&self.nm),
                    ma: opt(&self.tma),
                    sc: self.sc.clone(),
                    tr: self.tr.clone(),
                    tc: self.tc.clone(),
                    co: opt(&self.co),
                    is: None,
                })
            }
            "recovery" => {
                req.r = Some(super::RecoveryIn {
                    tg: None,
                    fr: self.fr.clone(),
                    df: self.df.clone(),
                    du: self.du.clone(),
                    co: opt(&self.co),
                    is: None,
                })
            }
            "shc" => {
                req.immunization = Some(super::ImmunizationIn {
                    cvx: self.cvx.clone(),
                    date: self.sdate.clone(),
                    lot: opt(&self.lot),
                    performer: opt(&self.performer),
                })
            }
            _ => {}
        }
        Ok(req)
    }
}

async fn issue_submit(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Form(f): Form<IssueForm>,
) -> Response {
    let r = async {
        let q = IssueQuery {
            q: String::new(),
            patient: f.patient_id.clone(),
        };
        p.require(super::ISSUERS)?;
        p.check_csrf(Some(&f.csrf))?;
        let mut page = issue_ctx(&st, &p, &headers, &q).await?;
        let tr = page.ctx.tr;
        let outcome = match f.request() {
            Ok(req) => super::issue(&st, &p, req).await,
            Err(e) => Err(e),
        };
        let mut status = axum::http::StatusCode::OK;
        match outcome {
            Ok(issued) => {
                use base64::Engine as _;
                let png = certs::qr::render_png(&issued.text, 4).map_err(AppError::internal)?;
                page.result = Some(IssuedView {
                    png: base64::engine::general_purpose::STANDARD.encode(png),
                    id: issued.id,
                    format: match issued.format {
                        certs::verifier::Format::SmartHealthCard => tr.t("cert-format-shc"),
                        _ => tr.t("cert-format-dcc"),
                    },
                    expires: issued
                        .expires_at
                        .as_deref()
                        .map(|e| e.get(..10).unwrap_or(e).to_owned())
                        .unwrap_or_default(),
                    text: issued.text,
                });
            }
            Err(e) if e.status.is_client_error() && e.code != "error-forbidden" => {
                status = e.status;
                page.error = Some(localised(tr, &e));
            }
            Err(e) => return Err(e),
        }
        let mut r = render(&page);
        *r.status_mut() = status;
        Ok(r)
    }
    .await;
    done(&st, &p, &headers, r)
}

// ---------- administration ----------

pub struct RuleRow {
    pub country: String,
    pub count: usize,
}

pub struct KeyRow {
    pub country: String,
    pub kid: String,
    pub not_after: String,
}

#[derive(Template)]
#[template(path = "certs_admin.html")]
struct AdminPage<'a> {
    ctx: Ctx<'a>,
    dsc: Vec<DscInfo>,
    shc: Vec<ShcInfo>,
    rules: Vec<RuleRow>,
    value_sets: usize,
    keys: Vec<KeyRow>,
    shc_iss: String,
    shc_keys: Vec<String>,
    countries: Vec<String>,
    home: String,
}

async fn admin_render(
    st: &AppState,
    p: &Principal,
    headers: &HeaderMap,
    flash: Option<String>,
) -> AppResult<Response> {
    p.require(&[Role::Admin])?;
    let l = st.certs().loaded().await?;
    let mut c = ctx(st, Some(p), headers, "cert-admin-title", "/ui/certs/admin");
    c.flash = flash;
    Ok(render(&AdminPage {
        ctx: c,
        dsc: l.dsc.clone(),
        shc: l.shc.clone(),
        rules: l
            .rule_countries
            .iter()
            .map(|(c, n)| RuleRow {
                country: c.clone(),
                count: *n,
            })
            .collect(),
        value_sets: l.value_sets,
        keys: l
            .dcc_keys
            .values()
            .map(|k| KeyRow {
                country: k.country.clone(),
                kid: k.kid_b64.clone(),
                not_after: chrono::DateTime::from_timestamp(k.not_after, 0)
                    .map(|d| d.format("%Y-%m-%d").to_string())
                    .unwrap_or_default(),
            })
            .collect(),
        shc_iss: l.settings.shc_iss.clone().unwrap_or_default(),
        shc_keys: l.shc_keys.iter().map(|k| k.kid.clone()).collect(),
        countries: l
            .dsc
            .iter()
            .filter(|d| !d.own)
            .map(|d| d.country.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect(),
        home: home_country(st, p).await.unwrap_or_default(),
    }))
}

async fn admin_page(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
) -> Response {
    let r = admin_render(&st, &p, &headers, None).await;
    done(&st, &p, &headers, r)
}

/// The end of every admin action: the change in the audit chain, then the page with what was done.
async fn admin_after(
    st: &AppState,
    p: &Principal,
    headers: &HeaderMap,
    (action, what, detail): (AuditAction, &str, &str),
    flash: impl FnOnce(Tr<'_>) -> String,
) -> AppResult<Response> {
    super::audit_trust_change(st, p, action, what, detail).await?;
    let tr = Tr {
        i18n: st.i18n(),
        lang: crate::ui::lang_for(st, Some(p), headers),
    };
    admin_render(st, p, headers, Some(flash(tr))).await
}

async fn admin_import(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    m: Multipart,
) -> Response {
    let r = async {
        p.require(&[Role::Admin])?;
        let mut form = crate::ui::read_upload_form(&p, m).await?;
        let what = form.fields.remove("what").unwrap_or_default();
        let country = form.fields.remove("country").unwrap_or_default();
        let file = form.file.map(|f| f.bytes.to_vec()).unwrap_or_default();
        let rules = what == "rules";
        let report = if rules {
            st.certs()
                .change(move |d| d.import_rules_bytes(&file))
                .await?
        } else {
            st.certs().import_trust(file, opt(&country)).await?
        };
        let detail = serde_json::to_string(&report).unwrap_or_default();
        let what = if rules { "rules" } else { "trust" };
        admin_after(
            &st,
            &p,
            &headers,
            (AuditAction::Update, what, &detail),
            |tr| tr.t1("cert-admin-imported", "what", &detail),
        )
        .await
    }
    .await;
    done(&st, &p, &headers, r)
}

#[derive(Deserialize)]
struct AdminForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    country: String,
    #[serde(default)]
    iss: String,
    #[serde(default)]
    kind: String,
}

async fn admin_remove(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Form(f): Form<AdminForm>,
) -> Response {
    let r = async {
        p.require(&[Role::Admin])?;
        p.check_csrf(Some(&f.csrf))?;
        let what = if f.iss.trim().is_empty() {
            f.country.trim().to_owned()
        } else {
            f.iss.trim().to_owned()
        };
        let (by_country, w) = (f.iss.trim().is_empty(), what.clone());
        let removed = st
            .certs()
            .change(move |d| {
                if by_country {
                    d.remove_country(&w)
                } else {
                    d.remove_shc_issuer(&w).map(usize::from)
                }
            })
            .await?;
        let detail = format!("{what}: {removed}");
        admin_after(
            &st,
            &p,
            &headers,
            (AuditAction::Delete, "trust", &detail),
            |tr| tr.t2("cert-admin-removed", "what", &what, "count", removed),
        )
        .await
    }
    .await;
    done(&st, &p, &headers, r)
}

async fn admin_settings(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Form(f): Form<AdminForm>,
) -> Response {
    let r = async {
        p.require(&[Role::Admin])?;
        p.check_csrf(Some(&f.csrf))?;
        let iss = f.iss.clone();
        st.certs().change(move |d| d.set_shc_iss(&iss)).await?;
        admin_after(
            &st,
            &p,
            &headers,
            (AuditAction::Update, "settings", "shc_iss"),
            |tr| tr.t("cert-admin-saved"),
        )
        .await
    }
    .await;
    done(&st, &p, &headers, r)
}

async fn admin_keys(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Form(f): Form<AdminForm>,
) -> Response {
    let r = async {
        p.require(&[Role::Admin])?;
        p.check_csrf(Some(&f.csrf))?;
        let node = st.config().node_name.clone();
        let (shc, country) = (f.kind == "shc", f.country.clone());
        let kid = st
            .certs()
            .change(move |d| {
                if shc {
                    d.generate_shc_key()
                } else {
                    d.generate_dcc_key(&country, &node)
                }
            })
            .await?;
        let detail = format!("{} {kid}", if shc { "shc" } else { "dcc" });
        admin_after(
            &st,
            &p,
            &headers,
            (AuditAction::Create, "issuer_key", &detail),
            |tr| tr.t1("cert-admin-key-created", "kid", &kid),
        )
        .await
    }
    .await;
    done(&st, &p, &headers, r)
}
