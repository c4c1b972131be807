//! Pages: a patient's allergies and prescriptions with the prescribing form (`/ui/patients/{id}/rx`), a
//! prescription with its QR code and the dispense form (`/ui/rx/{id}`), its printable form (`/ui/rx/{id}/print`,
//! print CSS), the pharmacy (`/ui/rx/pharmacy`: look a prescription up by its id or QR code, the prescriptions
//! received from other nodes for dispensing here, the formulary), the offline verifier (`/ui/rx/verify`) and the
//! administrators' table import (`/ui/rx/admin`). All work without JavaScript.

use super::{NewAllergy, NewDispense, NewPrescription};
use crate::api::parse_id;
use crate::auth::{Principal, UiPrincipal};
use crate::error::{AppError, AppResult};
use crate::ui::{ctx, done, render, Ctx};
use crate::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use caravan_domain::Role;
use caravan_store::{Dispense, FormularyItem, Prescription, RxTable, RxWarning, Severity};
use serde::Deserialize;
use serde_json::Value;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/ui/patients/{id}/rx",
            get(patient_page).post(prescribe_submit),
        )
        .route("/ui/patients/{id}/rx/allergies", post(allergy_submit))
        .route("/ui/rx/received", get(received_page))
        .route("/ui/rx/pharmacy", get(pharmacy_page).post(pharmacy_lookup))
        .route("/ui/rx/verify", get(verify_page).post(verify_submit))
        .route("/ui/rx/admin", get(admin_page).post(admin_submit))
        .route("/ui/rx/{id}", get(prescription_page))
        .route("/ui/rx/{id}/print", get(print_page))
        .route("/ui/rx/{id}/dispense", post(dispense_submit))
        .route("/.well-known/caravan-rx-keys.json", get(keys))
}

async fn keys(State(st): State<AppState>) -> AppResult<Json<Value>> {
    Ok(Json(super::published_keys(&st)?))
}

fn severity_label(c: &Ctx<'_>, s: Severity) -> String {
    c.tr.t(&format!("rx-severity-{}", s.as_str()))
}

pub struct WarningView {
    pub severity: &'static str,
    pub severity_label: String,
    pub kind_label: String,
    pub subject: String,
    pub reason: String,
    pub source: String,
}

fn warning_views(c: &Ctx<'_>, ws: &[RxWarning]) -> Vec<WarningView> {
    ws.iter()
        .map(|w| WarningView {
            severity: w.severity.as_str(),
            severity_label: severity_label(c, w.severity),
            kind_label: c.tr.t(&format!("rx-kind-{}", w.kind)),
            subject: w.subject.clone(),
            reason: w.reason.clone(),
            source: w.source.clone(),
        })
        .collect()
}

pub struct RxRow {
    pub id: String,
    pub medication: String,
    pub dosage: String,
    pub status: String,
    pub created: String,
    pub patient: String,
    pub origin: String,
}

fn row(c: &Ctx<'_>, rx: &Prescription) -> RxRow {
    RxRow {
        id: rx.id.to_string(),
        medication: rx.medication.display.clone(),
        dosage: super::dosage_text(&rx.dosage),
        status: c.tr.t(&format!("rx-status-{}", rx.status.as_str())),
        created: rx.created_at.format("%Y-%m-%d %H:%M UTC").to_string(),
        patient: rx.patient_name.clone(),
        origin: rx.origin_node.clone().unwrap_or_default(),
    }
}

// ---------- the patient's page ----------

#[derive(Default, Deserialize, Clone)]
struct RxForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    consultation: String,
    /// The visit the form was opened from (`?visit=` on the visit page's link): the prescription's encounter.
    #[serde(default)]
    visit: String,
    #[serde(default)]
    medication: String,
    #[serde(default)]
    dose: String,
    #[serde(default)]
    dose_unit: String,
    #[serde(default)]
    route: String,
    #[serde(default)]
    times_per_day: String,
    #[serde(default)]
    duration_days: String,
    #[serde(default)]
    quantity: String,
    #[serde(default)]
    instructions: String,
    #[serde(default)]
    destination: String,
    /// Set once the prescriber saw the warnings.
    #[serde(default)]
    confirmed: String,
    #[serde(default)]
    override_reason: String,
}

#[derive(Template)]
#[template(path = "rx_patient.html")]
struct PatientPage<'a> {
    ctx: Ctx<'a>,
    patient_id: String,
    patient_name: String,
    patient_birth: String,
    allergies: Vec<(String, String, String)>,
    prescriptions: Vec<RxRow>,
    can_prescribe: bool,
    can_record: bool,
    formulary: Vec<FormularyItem>,
    destinations: Vec<String>,
    form: RxForm,
    warnings: Vec<WarningView>,
    needs_override: bool,
    error: Option<String>,
}

#[derive(Deserialize)]
struct FromCase {
    #[serde(default)]
    consultation: String,
    #[serde(default)]
    visit: String,
}

async fn patient_view<'a>(
    st: &'a AppState,
    p: &Principal,
    headers: &HeaderMap,
    id: &str,
    form: RxForm,
) -> AppResult<PatientPage<'a>> {
    p.require(super::READERS)?;
    let pid = parse_id("patient", id)?;
    let patient = crate::consult::get_patient(st, p, pid).await?;
    let c = ctx(
        st,
        Some(p),
        headers,
        "rx-title",
        &format!("/ui/patients/{id}/rx"),
    );
    let allergies = super::allergies(st, p, pid)
        .await?
        .into_iter()
        .map(|a| {
            (
                a.substance,
                c.tr.t(&format!("rx-criticality-{}", a.criticality)),
                a.reaction,
            )
        })
        .collect();
    let prescriptions = super::prescriptions(st, p, pid)
        .await?
        .iter()
        .map(|r| row(&c, r))
        .collect();
    let can_prescribe = super::PRESCRIBERS.contains(&p.role());
    let formulary = if can_prescribe {
        super::formulary(st).await?
    } else {
        Vec::new()
    };
    let destinations = match st.federation() {
        Some(f) if can_prescribe => f
            .directory()
            .members()
            .iter()
            .filter(|m| m.node_id != *f.me())
            .map(|m| m.node_id.to_string())
            .collect(),
        _ => Vec::new(),
    };
    Ok(PatientPage {
        patient_id: pid.to_string(),
        patient_name: format!("{} {}", patient.given_name, patient.family_name),
        patient_birth: patient.birth_date.to_string(),
        allergies,
        prescriptions,
        can_prescribe,
        can_record: super::CLINICIANS.contains(&p.role()),
        formulary,
        destinations,
        form,
        warnings: Vec::new(),
        needs_override: false,
        error: None,
        ctx: c,
    })
}

async fn patient_page(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<FromCase>,
) -> Response {
    let r = async {
        let form = RxForm {
            consultation: q.consultation,
            visit: q.visit,
            times_per_day: "1".into(),
            duration_days: "7".into(),
            ..RxForm::default()
        };
        Ok(render(&patient_view(&st, &p, &headers, &id, form).await?))
    }
    .await;
    done(&st, &p, &headers, r)
}

fn number(field: &str, s: &str) -> AppResult<u32> {
    s.trim().parse().map_err(|_| {
        AppError::unprocessable(
            "error-rx-dosage",
            format!("{field} {s:?} is not a whole number"),
        )
    })
}

fn to_request(patient: &str, f: &RxForm) -> AppResult<NewPrescription> {
    Ok(NewPrescription {
        patient_id: patient.to_owned(),
        consultation_id: Some(f.consultation.clone()),
        visit_id: Some(f.visit.clone()),
        medication: f.medication.clone(),
        dose: f.dose.clone(),
        dose_unit: f.dose_unit.clone(),
        route: f.route.clone(),
        times_per_day: number("times per day", &f.times_per_day)?,
        duration_days: number("days", &f.duration_days)?,
        quantity: if f.quantity.trim().is_empty() {
            None
        } else {
            Some(number("quantity", &f.quantity)?)
        },
        instructions: f.instructions.clone(),
        override_reason: Some(f.override_reason.clone()),
        destination: Some(f.destination.clone()),
    })
}

/// First submit: the checks; with warnings the form comes back showing them (and the override field for a severe
/// one). The confirmed submit writes the prescription.
async fn prescribe_submit(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<RxForm>,
) -> Response {
    let r = async {
        p.check_csrf(Some(&f.csrf))?;
        p.require(super::PRESCRIBERS)?;
        let attempt = async {
            let req = to_request(&id, &f)?;
            let checked = super::check_only(&st, &p, &req).await?;
            if !checked.warnings.is_empty() && f.confirmed != "yes" {
                return Ok(Err(checked));
            }
            super::prescribe(&st, &p, req).await.map(Ok)
        }
        .await;
        match attempt {
            Ok(Ok(rx)) => Ok(Redirect::to(&format!("/ui/rx/{}", rx.id)).into_response()),
            Ok(Err(checked)) => {
                let mut page = patient_view(&st, &p, &headers, &id, f.clone()).await?;
                page.warnings = warning_views(&page.ctx, &checked.warnings);
                page.needs_override = checked.override_required;
                page.form.confirmed = "yes".into();
                Ok(render(&page))
            }
            Err(e) if e.status.is_client_error() && e.code != "error-forbidden" => {
                let mut page = patient_view(&st, &p, &headers, &id, f.clone()).await?;
                let msg = if st.i18n().has(page.ctx.tr.lang, e.code) {
                    format!("{} ({})", page.ctx.tr.t(e.code), e.message)
                } else {
                    e.message.clone()
                };
                if e.code == "error-rx-override-required" {
                    page.needs_override = true;
                    page.form.confirmed = "yes".into();
                }
                page.error = Some(msg);
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

#[derive(Deserialize)]
struct AllergyForm {
    csrf: String,
    substance: String,
    #[serde(default)]
    criticality: String,
    #[serde(default)]
    reaction: String,
}

async fn allergy_submit(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<AllergyForm>,
) -> Response {
    let r = async {
        p.check_csrf(Some(&f.csrf))?;
        p.require(super::CLINICIANS)?;
        let pid = parse_id("patient", &id)?;
        super::record_allergy(
            &st,
            &p,
            pid,
            NewAllergy {
                substance: f.substance,
                criticality: f.criticality,
                reaction: f.reaction,
            },
        )
        .await?;
        Ok(Redirect::to(&format!("/ui/patients/{id}/rx")).into_response())
    }
    .await;
    done(&st, &p, &headers, r)
}

// ---------- one prescription ----------

#[derive(Template)]
#[template(path = "rx_prescription.html")]
struct PrescriptionPage<'a> {
    ctx: Ctx<'a>,
    rx: RxRow,
    rx_full: Prescription,
    warnings: Vec<WarningView>,
    dispenses: Vec<Dispense>,
    qr: String,
    can_dispense: bool,
    /// The last day it may be dispensed, and whether that has passed.
    valid_until: String,
    expired: bool,
    /// Who the dispense names by default (the pharmacist and their institution).
    performer: String,
    /// Whether the viewer may open the visit it follows (the pharmacy may not).
    show_visit: bool,
}

async fn load<'a>(
    st: &'a AppState,
    p: &Principal,
    headers: &HeaderMap,
    id: &str,
    title: &str,
) -> AppResult<PrescriptionPage<'a>> {
    p.require(super::PRESCRIPTION_READERS)?;
    let (rx, dispenses) = super::prescription(st, p, parse_id("prescription", id)?).await?;
    let c = ctx(st, Some(p), headers, title, &format!("/ui/rx/{id}"));
    let qr = super::sign::qr_svg(&rx.token).map_err(AppError::internal)?;
    let until = super::valid_until(&rx);
    let expired = chrono::Utc::now() > until;
    let dispenser = super::DISPENSERS.contains(&p.role());
    Ok(PrescriptionPage {
        rx: row(&c, &rx),
        warnings: warning_views(&c, &rx.warnings),
        can_dispense: dispenser && rx.status == caravan_store::RxStatus::Active && !expired,
        valid_until: until.format("%Y-%m-%d").to_string(),
        expired,
        performer: if dispenser {
            super::default_performer(st, p).await?
        } else {
            String::new()
        },
        show_visit: crate::visits::VISIT_READERS.contains(&p.role()),
        rx_full: rx,
        dispenses,
        qr,
        ctx: c,
    })
}

async fn prescription_page(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let r = async { Ok(render(&load(&st, &p, &headers, &id, "rx-one-title").await?)) }.await;
    done(&st, &p, &headers, r)
}

#[derive(Template)]
#[template(path = "rx_print.html")]
struct PrintPage<'a> {
    page: PrescriptionPage<'a>,
}

async fn print_page(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let r = async {
        let page = load(&st, &p, &headers, &id, "rx-print-title").await?;
        Ok(render(&PrintPage { page }))
    }
    .await;
    done(&st, &p, &headers, r)
}

#[derive(Deserialize)]
struct DispenseForm {
    csrf: String,
    #[serde(default)]
    quantity: String,
    #[serde(default)]
    performer: String,
    #[serde(default)]
    note: String,
}

async fn dispense_submit(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<DispenseForm>,
) -> Response {
    let r = async {
        p.check_csrf(Some(&f.csrf))?;
        p.require(super::DISPENSERS)?;
        let rid = parse_id("prescription", &id)?;
        let quantity = if f.quantity.trim().is_empty() {
            None
        } else {
            Some(number("quantity", &f.quantity)?)
        };
        super::dispense(
            &st,
            &p,
            rid,
            NewDispense {
                quantity,
                performer: f.performer,
                note: f.note,
            },
        )
        .await?;
        Ok(Redirect::to(&format!("/ui/rx/{id}")).into_response())
    }
    .await;
    done(&st, &p, &headers, r)
}

// ---------- received, verify, admin ----------

#[derive(Template)]
#[template(path = "rx_pharmacy.html")]
struct PharmacyPage<'a> {
    ctx: Ctx<'a>,
    code: String,
    error: Option<String>,
    rows: Vec<RxRow>,
    q: String,
    formulary: Vec<FormularyItem>,
}

#[derive(Default, Deserialize)]
struct FormularySearch {
    #[serde(default)]
    q: String,
}

/// Most formulary entries the pharmacy page lists for a search.
const FORMULARY_SHOWN: usize = 50;

async fn pharmacy_view<'a>(
    st: &'a AppState,
    p: &Principal,
    headers: &HeaderMap,
    q: &str,
) -> AppResult<PharmacyPage<'a>> {
    let list = super::received(st, p).await?;
    let c = ctx(st, Some(p), headers, "rx-pharmacy-title", "/ui/rx/pharmacy");
    let rows = list.iter().map(|x| row(&c, x)).collect();
    let q = q.trim().to_lowercase();
    let formulary = if q.is_empty() {
        Vec::new()
    } else {
        super::formulary(st)
            .await?
            .into_iter()
            .filter(|i| {
                i.display.to_lowercase().contains(&q) || i.ingredient.contains(&q) || i.code == q
            })
            .take(FORMULARY_SHOWN)
            .collect()
    };
    Ok(PharmacyPage {
        ctx: c,
        code: String::new(),
        error: None,
        rows,
        q,
        formulary,
    })
}

/// The pharmacist's page: look a prescription up, the prescriptions received for dispensing here, the formulary.
async fn pharmacy_page(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Query(f): Query<FormularySearch>,
) -> Response {
    let r = async { Ok(render(&pharmacy_view(&st, &p, &headers, &f.q).await?)) }.await;
    done(&st, &p, &headers, r)
}

#[derive(Deserialize)]
struct LookupForm {
    csrf: String,
    #[serde(default)]
    code: String,
}

/// Find the prescription by its id or QR text and open it; a code that finds nothing comes back with the reason.
async fn pharmacy_lookup(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Form(f): Form<LookupForm>,
) -> Response {
    let r = async {
        p.check_csrf(Some(&f.csrf))?;
        p.require(super::DISPENSERS)?;
        match super::lookup(&st, &p, &f.code).await {
            Ok((rx, _)) => Ok(Redirect::to(&format!("/ui/rx/{}", rx.id)).into_response()),
            Err(e) if e.status.is_client_error() && e.code != "error-forbidden" => {
                let mut page = pharmacy_view(&st, &p, &headers, "").await?;
                let code = if e.status == axum::http::StatusCode::NOT_FOUND {
                    "rx-lookup-none"
                } else {
                    e.code
                };
                page.error = Some(page.ctx.tr.t(code));
                page.code = f.code.chars().take(4096).collect();
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

/// The received list lives on the pharmacy page.
async fn received_page(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
) -> Response {
    let r = p
        .require(super::DISPENSERS)
        .map(|()| Redirect::to("/ui/rx/pharmacy").into_response());
    done(&st, &p, &headers, r)
}

#[derive(Template)]
#[template(path = "rx_verify.html")]
struct VerifyPage<'a> {
    ctx: Ctx<'a>,
    code: String,
    valid: Option<bool>,
    reason: String,
    payload: Option<super::sign::RxPayload>,
    /// A pharmacist may open a valid one for dispensing.
    can_dispense: bool,
}

async fn verify_page(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
) -> Response {
    render(&VerifyPage {
        ctx: ctx(&st, Some(&p), &headers, "rx-verify-title", "/ui/rx/verify"),
        code: String::new(),
        valid: None,
        reason: String::new(),
        payload: None,
        can_dispense: false,
    })
}

#[derive(Deserialize)]
struct VerifyForm {
    csrf: String,
    #[serde(default)]
    code: String,
}

/// Checks the code against this node's published keys only; nothing is stored.
async fn verify_submit(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Form(f): Form<VerifyForm>,
) -> Response {
    let r = async {
        p.check_csrf(Some(&f.csrf))?;
        let keys = super::sign::parse_keys(&super::published_keys(&st)?.to_string())
            .map_err(AppError::internal)?;
        let c = ctx(&st, Some(&p), &headers, "rx-verify-title", "/ui/rx/verify");
        let (valid, reason, payload) = match super::sign::verify(&f.code, &keys, chrono::Utc::now())
        {
            Ok(pl) => (true, String::new(), Some(pl)),
            Err(e) => (false, e.to_string(), None),
        };
        Ok(render(&VerifyPage {
            ctx: c,
            code: f.code,
            valid: Some(valid),
            reason,
            payload,
            can_dispense: super::DISPENSERS.contains(&p.role()),
        }))
    }
    .await;
    done(&st, &p, &headers, r)
}

#[derive(Template)]
#[template(path = "rx_admin.html")]
struct AdminPage<'a> {
    ctx: Ctx<'a>,
    counts: Vec<(&'static str, usize)>,
}

async fn admin_view<'a>(
    st: &'a AppState,
    p: &Principal,
    headers: &HeaderMap,
) -> AppResult<AdminPage<'a>> {
    p.require(&[Role::Admin])?;
    let mut counts = Vec::new();
    for t in RxTable::ALL {
        counts.push((t.as_str(), st.store().rx_table(t).await?.len()));
    }
    Ok(AdminPage {
        ctx: ctx(st, Some(p), headers, "rx-admin-title", "/ui/rx/admin"),
        counts,
    })
}

async fn admin_page(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
) -> Response {
    let r = async { Ok(render(&admin_view(&st, &p, &headers).await?)) }.await;
    done(&st, &p, &headers, r)
}

#[derive(Deserialize)]
struct ImportForm {
    csrf: String,
    table: String,
    #[serde(default)]
    text: String,
    /// `starter`: import the shipped starter table instead of the text.
    #[serde(default)]
    starter: String,
}

async fn admin_submit(
    State(st): State<AppState>,
    UiPrincipal(p): UiPrincipal,
    headers: HeaderMap,
    Form(f): Form<ImportForm>,
) -> Response {
    let r = async {
        p.check_csrf(Some(&f.csrf))?;
        p.require(&[Role::Admin])?;
        let text = if f.starter == "yes" {
            super::tables::STARTER
                .iter()
                .find(|(t, _)| t.as_str() == f.table)
                .map(|(_, text)| (*text).to_owned())
                .unwrap_or_default()
        } else {
            f.text
        };
        let n = super::import_table(&st, &p, &f.table, &text).await?;
        let mut page = admin_view(&st, &p, &headers).await?;
        page.ctx.flash = Some(page.ctx.tr.t1("rx-imported", "rows", n));
        Ok(render(&page))
    }
    .await;
    done(&st, &p, &headers, r)
}
