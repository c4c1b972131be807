//! e-Prescription: the service both doors (JSON API in `api`, pages in `pages`) call, so role checks, scope checks,
//! the allergy and interaction checks and the audit events are made once, here.
//!
//! - Reference tables (formulary, interactions, allergy rules) are imported by administrators (`tables`); the node
//!   ships a starter set (`starter/README.md`: provenance and licence).
//! - A prescription is checked against the patient's recorded allergies and active prescriptions; every warning
//!   carries its reason, severity and source, and a `high` one needs an override reason, which is audited.
//! - Each prescription is signed (`sign`: a compact JWS with the node's Ed25519 prescription key) and printed with a
//!   QR code that a pharmacy verifies offline with the published key (`caravan rx verify`, `/ui/rx/verify`).
//! - Sent abroad, it travels as an `rx.prescription` envelope with only what the dispensing country needs (patient
//!   name and birth date, medication, dosage, prescriber, the signed token and the public keys), committed in the
//!   same unit of work as the prescription; the dispense comes back as `rx.dispense`.

pub mod api;
pub mod cli;
pub mod fhir;
pub mod pages;
pub mod sign;
pub mod tables;

use crate::audit::{event, search_events, system_event};
use crate::auth::Principal;
use crate::consult::PATIENT_READERS;
use crate::error::{AppError, AppResult};
use crate::AppState;
use axum::http::StatusCode;
use caravan_domain::*;
use caravan_federation::envelope::MessageType;
use caravan_federation::keys::Keyring;
use caravan_store::*;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use uuid::Uuid;

/// Who writes prescriptions.
pub const PRESCRIBERS: &[Role] = &[Role::Referrer, Role::Consultant];
/// Who records allergies.
pub const CLINICIANS: &[Role] = &[Role::Referrer, Role::Consultant, Role::Coordinator];
/// Who records dispenses (MedicationDispense) and sees the prescriptions received for dispensing here: the
/// pharmacy. Clinicians prescribe; they do not dispense.
pub const DISPENSERS: &[Role] = &[Role::Pharmacist];
/// Who reads a patient's allergies and prescriptions (subject to the patient's scope).
pub const READERS: &[Role] = PATIENT_READERS;
/// Who reads one prescription by its id or its signed code: the readers of its patient (by the patient's scope),
/// and pharmacists, who are shown the prescription (any of this node's) but never list a patient's.
pub const PRESCRIPTION_READERS: &[Role] = &[
    Role::Referrer,
    Role::Consultant,
    Role::Coordinator,
    Role::Patient,
    Role::Pharmacist,
];

/// How long a printed prescription stays valid after its course would have ended.
const VALID_EXTRA_DAYS: i64 = 30;

fn bad(code: &'static str, message: impl Into<String>) -> AppError {
    AppError::unprocessable(code, message)
}

fn unavailable(message: impl Into<String>) -> AppError {
    AppError::new(StatusCode::SERVICE_UNAVAILABLE, "error-rx-no-key", message)
}

// ---------- reference tables ----------

/// Import a table (CSV or JSON text), replacing the stored one in one transaction.
pub async fn import_table(
    st: &AppState,
    p: &Principal,
    table: &str,
    text: &str,
) -> AppResult<usize> {
    p.require(&[Role::Admin])?;
    let t = RxTable::parse(table).ok_or_else(|| {
        bad(
            "error-rx-table",
            tables::TableError::UnknownTable(table.to_owned()).to_string(),
        )
    })?;
    let rows = tables::parse(t, text).map_err(|e| bad("error-rx-table", e.to_string()))?;
    let n = rows.len();
    st.store()
        .apply(
            vec![Change::Rx(RxChange::ReplaceTable { table: t, rows })],
            vec![event(
                p,
                AuditAction::Update,
                "rx-table",
                t.as_str(),
                None,
                &format!("{n} rows imported"),
            )],
        )
        .await?;
    tracing::info!(
        table = t.as_str(),
        rows = n,
        "e-prescription table imported"
    );
    Ok(n)
}

/// Import the starter tables where a table is empty (the demo does this; a node in service imports its own).
pub async fn seed_starter(store: &dyn Store) -> Result<usize, StoreError> {
    let mut changes = Vec::new();
    for (t, text) in tables::STARTER {
        if store.rx_table(t).await?.is_empty() {
            let rows = tables::parse(t, text).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            changes.push(Change::Rx(RxChange::ReplaceTable { table: t, rows }));
        }
    }
    let n = changes.len();
    if n > 0 {
        store
            .apply(
                changes,
                vec![system_event(
                    AuditAction::Update,
                    "rx-table",
                    "starter",
                    None,
                    "starter tables imported",
                )],
            )
            .await?;
    }
    Ok(n)
}

fn docs<T: serde::de::DeserializeOwned>(v: Vec<Value>) -> AppResult<Vec<T>> {
    v.into_iter()
        .map(|d| serde_json::from_value(d).map_err(AppError::internal))
        .collect()
}

pub async fn formulary(st: &AppState) -> AppResult<Vec<FormularyItem>> {
    docs(st.store().rx_table(RxTable::Formulary).await?)
}

pub async fn table(st: &AppState, table: &str) -> AppResult<Vec<Value>> {
    let t = RxTable::parse(table).ok_or_else(|| {
        bad(
            "error-rx-table",
            tables::TableError::UnknownTable(table.to_owned()).to_string(),
        )
    })?;
    Ok(st.store().rx_table(t).await?)
}

// ---------- checks ----------

/// The names rules may use for a medication: its ingredient and its classes.
fn names(item: &FormularyItem) -> BTreeSet<String> {
    let mut n: BTreeSet<String> = item.classes.iter().cloned().collect();
    n.insert(item.ingredient.clone());
    n
}

/// The warnings for prescribing `item` to a patient with these allergies and active medications, most severe
/// first. Pure: the tables and the patient's records are passed in.
pub fn check(
    item: &FormularyItem,
    allergies: &[Allergy],
    current: &[FormularyItem],
    interactions: &[InteractionRule],
    allergy_rules: &[AllergyRule],
) -> Vec<RxWarning> {
    let n = names(item);
    let mut out: Vec<RxWarning> = Vec::new();
    for a in allergies.iter().filter(|a| a.status == "active") {
        let substance = tables::norm(&a.substance);
        let mut matched = false;
        for r in allergy_rules
            .iter()
            .filter(|r| r.allergen == substance && n.contains(&r.drug_class))
        {
            matched = true;
            out.push(RxWarning {
                kind: "allergy".into(),
                severity: r.severity,
                subject: substance.clone(),
                reason: r.reason.clone(),
                source: r.source.clone(),
            });
        }
        if !matched && n.contains(&substance) {
            out.push(RxWarning {
                kind: "allergy".into(),
                severity: Severity::High,
                subject: substance.clone(),
                reason: format!(
                    "The patient has a recorded allergy to {substance}, which this drug is or contains."
                ),
                source: "patient record".into(),
            });
        }
    }
    for c in current {
        let m = names(c);
        if c.ingredient == item.ingredient {
            out.push(RxWarning {
                kind: "duplicate".into(),
                severity: Severity::Moderate,
                subject: c.display.clone(),
                reason: format!(
                    "The patient already has an active prescription of {}.",
                    c.ingredient
                ),
                source: "patient record".into(),
            });
        }
        for r in interactions {
            if (n.contains(&r.a) && m.contains(&r.b)) || (n.contains(&r.b) && m.contains(&r.a)) {
                out.push(RxWarning {
                    kind: "interaction".into(),
                    severity: r.severity,
                    subject: c.display.clone(),
                    reason: r.reason.clone(),
                    source: r.source.clone(),
                });
            }
        }
    }
    out.sort_by_key(|w| std::cmp::Reverse(w.severity));
    out.dedup_by(|x, y| x.kind == y.kind && x.subject == y.subject && x.reason == y.reason);
    out
}

// ---------- allergies ----------

#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema)]
pub struct NewAllergy {
    #[schemars(length(min = 1), regex(pattern = crate::api::NON_BLANK))]
    pub substance: String,
    #[serde(default)]
    pub criticality: String,
    #[serde(default)]
    pub reaction: String,
}

pub async fn record_allergy(
    st: &AppState,
    p: &Principal,
    patient: PatientId,
    a: NewAllergy,
) -> AppResult<Allergy> {
    p.require(CLINICIANS)?;
    st.store().get_patient(&p.actor(), patient).await?;
    let substance = tables::norm(&a.substance);
    if substance.is_empty() || substance.chars().count() > 200 {
        return Err(bad(
            "error-rx-allergy",
            "substance is required (an ingredient or class, at most 200 characters)",
        ));
    }
    let criticality = match tables::norm(&a.criticality).as_str() {
        "" | "unable-to-assess" => "unable-to-assess",
        "low" => "low",
        "high" => "high",
        other => {
            return Err(bad(
                "error-rx-allergy",
                format!("criticality {other:?} is not low, high or unable-to-assess"),
            ))
        }
    };
    let allergy = Allergy {
        id: Uuid::now_v7(),
        patient_id: patient,
        substance,
        criticality: criticality.into(),
        reaction: a.reaction.trim().chars().take(500).collect(),
        status: "active".into(),
        recorded_by: p.user.id,
        recorded_at: Utc::now(),
    };
    st.store()
        .apply(
            vec![Change::Rx(RxChange::InsertAllergy(allergy.clone()))],
            vec![event(
                p,
                AuditAction::Create,
                "allergy",
                allergy.id,
                Some(patient),
                "",
            )],
        )
        .await?;
    Ok(allergy)
}

pub async fn allergies(
    st: &AppState,
    p: &Principal,
    patient: PatientId,
) -> AppResult<Vec<Allergy>> {
    p.require(READERS)?;
    let list = st.store().rx_allergies(&p.actor(), patient).await?;
    st.store()
        .append_audit(vec![event(
            p,
            AuditAction::Read,
            "allergy",
            patient,
            Some(patient),
            "list",
        )])
        .await?;
    Ok(list)
}

// ---------- prescriptions ----------

#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema)]
pub struct NewPrescription {
    #[schemars(extend("format" = "uuid"))]
    pub patient_id: String,
    #[serde(default)]
    #[schemars(schema_with = "crate::api::uuid_or_null")]
    pub consultation_id: Option<String>,
    /// The video visit it is written after or during (FHIR `MedicationRequest.encounter`): a visit of the same
    /// patient that the prescriber may see and that was not cancelled.
    #[serde(default)]
    #[schemars(schema_with = "crate::api::uuid_or_null")]
    pub visit_id: Option<String>,
    /// Formulary code.
    #[schemars(length(min = 1), regex(pattern = crate::api::NON_BLANK))]
    pub medication: String,
    #[schemars(length(min = 1), regex(pattern = crate::api::NON_BLANK))]
    pub dose: String,
    #[serde(default)]
    pub dose_unit: String,
    #[serde(default)]
    pub route: String,
    #[schemars(range(min = 1, max = MAX_TIMES_PER_DAY))]
    pub times_per_day: u32,
    #[schemars(range(min = 1, max = MAX_DAYS))]
    pub duration_days: u32,
    /// Units to dispense; by default times per day × days.
    #[serde(default)]
    #[schemars(range(min = 1, max = MAX_QUANTITY))]
    pub quantity: Option<u32>,
    #[serde(default)]
    pub instructions: String,
    /// Required when a warning is `high`.
    #[serde(default)]
    pub override_reason: Option<String>,
    /// Another node's id, for a cross-border prescription dispensed there.
    #[serde(default)]
    pub destination: Option<String>,
}

/// Dosage bounds: checked by [`prepare`] and stated in the request schemas (one number for both).
pub(crate) const MAX_TIMES_PER_DAY: u32 = 24;
pub(crate) const MAX_DAYS: u32 = 365;
pub(crate) const MAX_QUANTITY: u32 = 10_000;

/// The outcome of the checks, before anything is written.
#[derive(Clone, Debug, Serialize)]
pub struct CheckResult {
    pub medication: FormularyItem,
    pub warnings: Vec<RxWarning>,
    /// A `high` warning: the prescription needs an override reason.
    pub override_required: bool,
}

struct Prepared {
    patient: Patient,
    consultation: Option<ConsultationId>,
    visit: Option<Uuid>,
    item: FormularyItem,
    dosage: Dosage,
    warnings: Vec<RxWarning>,
}

fn parse_dose(s: &str) -> AppResult<String> {
    let t = s.trim().replace(',', ".");
    match t.parse::<f64>() {
        Ok(v) if v > 0.0 && v < 1.0e6 && t.len() <= 12 => Ok(t),
        _ => Err(bad(
            "error-rx-dosage",
            format!("dose {s:?} is not a positive number"),
        )),
    }
}

async fn prepare(st: &AppState, p: &Principal, r: &NewPrescription) -> AppResult<Prepared> {
    p.require(PRESCRIBERS)?;
    let actor = p.actor();
    let pid: PatientId = crate::api::parse_id("patient", &r.patient_id)?;
    let patient = st.store().get_patient(&actor, pid).await?;
    let consultation = match r.consultation_id.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(c) => {
            let c = st
                .store()
                .get_consultation(&actor, crate::api::parse_id("consultation", c)?)
                .await?;
            if c.patient_id != pid {
                return Err(bad(
                    "error-rx-consultation",
                    "the consultation is about another patient",
                ));
            }
            Some(c.id)
        }
    };
    let visit = match r.visit_id.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(v) => {
            let id: Uuid = crate::api::parse_id("visit", v)?;
            // The visit must be one the prescriber may see (404 otherwise, like any record out of scope).
            let v = st.store().visit_get(&actor, id).await?.visit;
            if v.patient_id != pid {
                return Err(bad("error-rx-visit", "the visit is with another patient"));
            }
            if v.status == VisitStatus::Cancelled {
                return Err(bad(
                    "error-rx-visit",
                    "the visit was cancelled; a prescription follows a visit that took place",
                ));
            }
            Some(v.id)
        }
    };
    let item = match st.store().rx_formulary_item(r.medication.trim()).await {
        Ok(i) => i,
        Err(StoreError::NotFound(_)) => {
            return Err(bad(
                "error-rx-unknown-medication",
                format!("{:?} is not in this node's formulary", r.medication),
            ))
        }
        Err(e) => return Err(e.into()),
    };
    let dose = parse_dose(&r.dose)?;
    if !(1..=MAX_TIMES_PER_DAY).contains(&r.times_per_day) {
        return Err(bad(
            "error-rx-dosage",
            format!("times per day must be 1 to {MAX_TIMES_PER_DAY}"),
        ));
    }
    if !(1..=MAX_DAYS).contains(&r.duration_days) {
        return Err(bad(
            "error-rx-dosage",
            format!("duration must be 1 to {MAX_DAYS} days"),
        ));
    }
    let quantity = r.quantity.unwrap_or(r.times_per_day * r.duration_days);
    if !(1..=MAX_QUANTITY).contains(&quantity) {
        return Err(bad(
            "error-rx-dosage",
            format!("quantity must be 1 to {MAX_QUANTITY}"),
        ));
    }
    let unit = r.dose_unit.trim();
    let dose_unit = if unit.is_empty() {
        item.strength
            .split_whitespace()
            .last()
            .unwrap_or("unit")
            .to_owned()
    } else {
        unit.chars().take(20).collect()
    };
    let route = if r.route.trim().is_empty() {
        item.route.clone()
    } else {
        tables::norm(&r.route).chars().take(40).collect()
    };
    let dosage = Dosage {
        dose,
        dose_unit,
        route,
        times_per_day: r.times_per_day,
        duration_days: r.duration_days,
        quantity,
        instructions: r.instructions.trim().chars().take(500).collect(),
    };
    let allergies = st.store().rx_allergies(&actor, pid).await?;
    let current: Vec<FormularyItem> = st
        .store()
        .rx_prescriptions(&actor, pid)
        .await?
        .into_iter()
        .filter(|x| x.status == RxStatus::Active)
        .map(|x| x.medication)
        .collect();
    let interactions: Vec<InteractionRule> =
        docs(st.store().rx_table(RxTable::Interactions).await?)?;
    let allergy_rules: Vec<AllergyRule> = docs(st.store().rx_table(RxTable::Allergies).await?)?;
    let warnings = check(&item, &allergies, &current, &interactions, &allergy_rules);
    Ok(Prepared {
        patient,
        consultation,
        visit,
        item,
        dosage,
        warnings,
    })
}

/// Run the checks without writing (the form shows the warnings before the prescriber confirms). Audited as a read
/// of the patient's allergies and prescriptions.
pub async fn check_only(
    st: &AppState,
    p: &Principal,
    r: &NewPrescription,
) -> AppResult<CheckResult> {
    let prep = prepare(st, p, r).await?;
    st.store()
        .append_audit(vec![event(
            p,
            AuditAction::Read,
            "prescription-check",
            prep.patient.id,
            Some(prep.patient.id),
            &format!("medication {}", prep.item.code),
        )])
        .await?;
    let override_required = prep.warnings.iter().any(|w| w.severity == Severity::High);
    Ok(CheckResult {
        medication: prep.item,
        warnings: prep.warnings,
        override_required,
    })
}

/// The dosage as one line of text (English; printed with the prescription and carried in the QR code).
pub fn dosage_text(d: &Dosage) -> String {
    let mut s = format!(
        "{} {} {} {}x/day for {} days",
        d.dose, d.dose_unit, d.route, d.times_per_day, d.duration_days
    );
    if !d.instructions.is_empty() {
        s.push_str("; ");
        s.push_str(&d.instructions);
    }
    s
}

fn rx_keyring(st: &AppState) -> AppResult<Keyring> {
    let dir = st.config().certs_dir.as_ref().ok_or_else(|| {
        unavailable("this node has no data directory for its prescription signing key")
    })?;
    sign::load_or_create(dir).map_err(|e| {
        tracing::error!(error = %e, "prescription keyring");
        unavailable("the prescription signing key cannot be read; see the node log")
    })
}

/// The published prescription keys (JWKS).
pub fn published_keys(st: &AppState) -> AppResult<Value> {
    Ok(sign::jwks(&rx_keyring(st)?))
}

fn payload(rx: &Prescription, issuer: &str) -> sign::RxPayload {
    let exp = valid_until(rx);
    sign::RxPayload {
        v: 1,
        iss: issuer.to_owned(),
        id: rx.id.to_string(),
        iat: rx.created_at.timestamp(),
        exp: exp.timestamp(),
        pn: rx.patient_name.clone(),
        pb: rx
            .patient_birth_date
            .map(|d| d.to_string())
            .unwrap_or_default(),
        ms: rx.medication.system.clone(),
        mc: rx.medication.code.clone(),
        md: rx.medication.display.clone(),
        dt: dosage_text(&rx.dosage),
        q: rx.dosage.quantity,
        d: rx.dosage.duration_days,
        by: rx.prescriber_name.clone(),
        org: rx.institution_name.clone(),
    }
}

/// Write a prescription: checks (a `high` warning without an override reason is refused with 409
/// `error-rx-override-required`), signature, and for a cross-border one the envelope, in one unit of work.
pub async fn prescribe(
    st: &AppState,
    p: &Principal,
    r: NewPrescription,
) -> AppResult<Prescription> {
    let prep = prepare(st, p, &r).await?;
    let highs: Vec<RxWarning> = prep
        .warnings
        .iter()
        .filter(|w| w.severity == Severity::High)
        .cloned()
        .collect();
    let override_reason = r
        .override_reason
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.chars().take(500).collect::<String>());
    if !highs.is_empty() && override_reason.is_none() {
        let reasons: Vec<String> = highs
            .iter()
            .map(|w| format!("{} {}: {}", w.kind, w.subject, w.reason))
            .collect();
        return Err(AppError::new(
            StatusCode::CONFLICT,
            "error-rx-override-required",
            format!(
                "a severe warning needs an override reason: {}",
                reasons.join(" | ")
            ),
        ));
    }
    let destination = r
        .destination
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    let institution = st.store().get_institution(p.user.institution_id).await?;
    let mut rx = Prescription {
        id: Uuid::now_v7(),
        patient_id: Some(prep.patient.id),
        patient_name: format!("{} {}", prep.patient.given_name, prep.patient.family_name),
        patient_birth_date: Some(prep.patient.birth_date),
        consultation_id: prep.consultation,
        visit_id: prep.visit,
        prescriber_id: Some(p.user.id),
        prescriber_name: p.user.display_name.clone(),
        institution_name: institution.name,
        medication: prep.item,
        dosage: prep.dosage,
        warnings: prep.warnings,
        override_reason: if highs.is_empty() {
            None
        } else {
            override_reason
        },
        status: RxStatus::Active,
        origin_node: None,
        destination_node: destination.clone(),
        token: String::new(),
        created_at: Utc::now(),
    };
    let ring = rx_keyring(st)?;
    rx.token = sign::sign(ring.active(), &payload(&rx, &st.config().node_name))
        .map_err(AppError::internal)?;
    let mut changes = vec![Change::Rx(RxChange::InsertPrescription(Box::new(
        rx.clone(),
    )))];
    let pid = prep.patient.id;
    let mut audit = vec![event(
        p,
        AuditAction::Create,
        "prescription",
        rx.id,
        Some(pid),
        &format!("medication {}", rx.medication.code),
    )];
    if let Some(reason) = &rx.override_reason {
        let overridden: Vec<String> = highs
            .iter()
            .map(|w| format!("{}:{}", w.kind, w.subject))
            .collect();
        audit.push(event(
            p,
            AuditAction::Update,
            "prescription-override",
            rx.id,
            Some(pid),
            &format!(
                "severe warning overridden ({}); reason: {reason}",
                overridden.join(", ")
            ),
        ));
    }
    if let Some(dest) = &destination {
        changes.push(Change::Enqueue(
            cross_border(st, p, &rx, &ring, dest).await?,
        ));
        audit.push(event(
            p,
            AuditAction::Export,
            "prescription",
            rx.id,
            Some(pid),
            &format!("sent to {dest} for dispensing"),
        ));
    }
    crate::federation::commit(st, changes, audit).await?;
    tracing::info!(prescription = %rx.id, warnings = rx.warnings.len(), cross_border = destination.is_some(), "prescription written");
    Ok(rx)
}

/// The `rx.prescription` envelope: only what the dispensing country needs. Needs the patient's cross-border and
/// identity-sharing consents (the name crosses so a pharmacy can identify the patient).
async fn cross_border(
    st: &AppState,
    p: &Principal,
    rx: &Prescription,
    ring: &Keyring,
    dest: &str,
) -> AppResult<Outgoing> {
    let fed = st.federation().ok_or_else(|| {
        bad(
            "error-rx-destination",
            "this node is not a member of a network",
        )
    })?;
    let dir = fed.directory();
    let known = dir
        .members()
        .iter()
        .any(|m| m.node_id.as_str() == dest && m.node_id != *fed.me());
    if !known {
        return Err(bad(
            "error-rx-destination",
            format!("{dest:?} is not another member of this network"),
        ));
    }
    let pid = rx
        .patient_id
        .ok_or_else(|| AppError::internal("no patient"))?;
    let consents = st.store().consents(&p.actor(), pid).await?;
    if !consent_in_force(&consents, ConsentScope::CrossBorder)
        || !consent_in_force(&consents, ConsentScope::ShareIdentity)
    {
        return Err(bad(
            "error-consent-cross-border",
            "a prescription abroad names the patient: it needs the patient's cross-border and identity-sharing consents",
        ));
    }
    fed.outgoing(
        dest,
        MessageType::RxPrescription,
        wire_prescription(rx, ring),
        None,
    )
}

/// The body of `rx.prescription`.
pub fn wire_prescription(rx: &Prescription, ring: &Keyring) -> Value {
    json!({
        "id": rx.id,
        "patient": {
            "name": rx.patient_name,
            "birth_date": rx.patient_birth_date,
        },
        "medication": {
            "system": rx.medication.system,
            "code": rx.medication.code,
            "display": rx.medication.display,
            "ingredient": rx.medication.ingredient,
            "strength": rx.medication.strength,
            "form": rx.medication.form,
        },
        "dosage": rx.dosage,
        "prescriber": { "name": rx.prescriber_name, "institution": rx.institution_name },
        "created_at": rx.created_at,
        "token": rx.token,
        "keys": sign::jwks(ring),
    })
}

pub async fn prescriptions(
    st: &AppState,
    p: &Principal,
    patient: PatientId,
) -> AppResult<Vec<Prescription>> {
    p.require(READERS)?;
    let list = st.store().rx_prescriptions(&p.actor(), patient).await?;
    st.store()
        .append_audit(vec![event(
            p,
            AuditAction::Read,
            "prescription",
            patient,
            Some(patient),
            "list",
        )])
        .await?;
    Ok(list)
}

/// One prescription and its dispenses (the store's scope: its patient's readers, or a pharmacist).
pub async fn prescription(
    st: &AppState,
    p: &Principal,
    id: Uuid,
) -> AppResult<(Prescription, Vec<Dispense>)> {
    read_one(st, p, id, None, "").await
}

/// Read a prescription (and, when `token` is given, only if it is exactly the stored token), with its
/// dispenses; one audited read.
async fn read_one(
    st: &AppState,
    p: &Principal,
    id: Uuid,
    token: Option<&str>,
    detail: &str,
) -> AppResult<(Prescription, Vec<Dispense>)> {
    p.require(PRESCRIPTION_READERS)?;
    let rx = st.store().rx_prescription(&p.actor(), id).await?;
    if token.is_some_and(|t| t != rx.token) {
        return Err(AppError::not_found("prescription"));
    }
    let dispenses = st.store().rx_dispenses(id).await?;
    st.store()
        .append_audit(vec![event(
            p,
            AuditAction::Read,
            "prescription",
            id,
            rx.patient_id,
            detail,
        )])
        .await?;
    Ok((rx, dispenses))
}

/// Look a prescription up by what the pharmacy is shown: its id, or the code of its QR (`RX1:` + the JWS, or the
/// bare JWS). A code must be exactly the token stored with the prescription (signed here, or verified with its
/// origin's keys when it was received), so an altered code finds nothing. Not found is 404, as for any record out
/// of scope. Audited as a read of the prescription.
pub async fn lookup(
    st: &AppState,
    p: &Principal,
    code: &str,
) -> AppResult<(Prescription, Vec<Dispense>)> {
    p.require(PRESCRIPTION_READERS)?;
    let code = code.trim();
    if code.is_empty() || code.len() > 4096 {
        return Err(bad(
            "error-rx-lookup",
            "give the prescription's id or the text of its QR code",
        ));
    }
    if let Ok(id) = code.parse::<Uuid>() {
        return read_one(st, p, id, None, "lookup by id").await;
    }
    let (token, id) = sign::claimed_id(code).ok_or_else(|| {
        bad(
            "error-rx-lookup",
            "neither a prescription id nor a prescription code (RX1: and a compact JWS)",
        )
    })?;
    let id: Uuid = id
        .parse()
        .map_err(|_| AppError::not_found("prescription"))?;
    read_one(st, p, id, Some(token), "lookup by code").await
}

/// The day after which a prescription is no longer dispensed (the printed code's `exp`).
pub fn valid_until(rx: &Prescription) -> DateTime<Utc> {
    rx.created_at + chrono::Duration::days(i64::from(rx.dosage.duration_days) + VALID_EXTRA_DAYS)
}

/// Prescriptions received from other nodes for dispensing here: the pharmacy's list.
pub async fn received(st: &AppState, p: &Principal) -> AppResult<Vec<Prescription>> {
    p.require(DISPENSERS)?;
    let list = st.store().rx_received(&p.actor(), 200).await?;
    // Prescriptions from other nodes carry no patient of this node: the subjects name the prescriptions alone.
    let audit = search_events(
        p,
        "prescription",
        list.iter().map(|x| (x.id, None)),
        "received list",
    );
    st.store().append_audit(audit).await?;
    Ok(list)
}

#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema)]
pub struct NewDispense {
    /// 1 to the prescribed quantity; by default the prescribed quantity.
    #[serde(default)]
    #[schemars(range(min = 1, max = MAX_QUANTITY))]
    pub quantity: Option<u32>,
    /// Who dispensed (FHIR `MedicationDispense.performer`); by default the signed-in pharmacist and their
    /// institution.
    #[serde(default)]
    pub performer: String,
    #[serde(default)]
    pub note: String,
}

/// The performer a pharmacist's dispense names when none is given.
pub async fn default_performer(st: &AppState, p: &Principal) -> AppResult<String> {
    let inst = st.store().get_institution(p.user.institution_id).await?;
    Ok(format!("{}, {}", p.user.display_name, inst.name))
}

/// Record a dispense (here, or of a prescription received from another node, which is then told). Pharmacists
/// only; an expired prescription (past the printed code's validity) is not dispensed.
pub async fn dispense(
    st: &AppState,
    p: &Principal,
    id: Uuid,
    d: NewDispense,
) -> AppResult<Dispense> {
    p.require(DISPENSERS)?;
    let rx = st.store().rx_prescription(&p.actor(), id).await?;
    if rx.status != RxStatus::Active {
        return Err(AppError::new(
            StatusCode::CONFLICT,
            "error-rx-not-active",
            format!("the prescription is {}", rx.status.as_str()),
        ));
    }
    let until = valid_until(&rx);
    if Utc::now() > until {
        return Err(AppError::new(
            StatusCode::CONFLICT,
            "error-rx-expired",
            format!("the prescription expired on {}", until.format("%Y-%m-%d")),
        ));
    }
    let quantity = d.quantity.unwrap_or(rx.dosage.quantity);
    if quantity == 0 || quantity > rx.dosage.quantity {
        return Err(bad(
            "error-rx-dosage",
            format!("quantity must be 1 to {}", rx.dosage.quantity),
        ));
    }
    let mut performer: String = d.performer.trim().chars().take(200).collect();
    if performer.is_empty() {
        performer = default_performer(st, p).await?.chars().take(200).collect();
    }
    let dispense = Dispense {
        id: Uuid::now_v7(),
        prescription_id: id,
        quantity,
        performer,
        note: d.note.trim().chars().take(500).collect(),
        node: None,
        dispensed_at: Utc::now(),
    };
    let mut changes = vec![
        Change::Rx(RxChange::SetStatus {
            id,
            status: RxStatus::Completed,
        }),
        Change::Rx(RxChange::InsertDispense(dispense.clone())),
    ];
    let mut audit = vec![event(
        p,
        AuditAction::Create,
        "dispense",
        dispense.id,
        rx.patient_id,
        &format!("prescription {id}"),
    )];
    if let Some(origin) = &rx.origin_node {
        let fed = st.federation().ok_or_else(|| {
            bad(
                "error-rx-destination",
                "this node is not a member of a network",
            )
        })?;
        let body = json!({
            "prescription": id,
            "id": dispense.id,
            "quantity": dispense.quantity,
            "performer": dispense.performer,
            "dispensed_at": dispense.dispensed_at,
        });
        changes.push(Change::Enqueue(fed.outgoing(
            origin,
            MessageType::RxDispense,
            body,
            None,
        )?));
        audit.push(event(
            p,
            AuditAction::Export,
            "dispense",
            dispense.id,
            None,
            &format!("reported to {origin}"),
        ));
    }
    crate::federation::commit(st, changes, audit).await?;
    Ok(dispense)
}

// ---------- federation: the receiving side ----------

/// What an envelope did, for the inbox row (`Ok`: changes and audit to commit; `Err`: the reason it is ignored).
pub type Received = Result<(Vec<Change>, Vec<AuditEvent>), String>;

#[derive(Deserialize)]
struct WirePatient {
    name: String,
    #[serde(default)]
    birth_date: Option<chrono::NaiveDate>,
}

#[derive(Deserialize)]
struct WireMedication {
    system: String,
    code: String,
    display: String,
    #[serde(default)]
    ingredient: String,
    #[serde(default)]
    strength: String,
    #[serde(default)]
    form: String,
}

#[derive(Deserialize)]
struct WirePrescriber {
    name: String,
    institution: String,
}

#[derive(Deserialize)]
struct WirePrescription {
    id: Uuid,
    patient: WirePatient,
    medication: WireMedication,
    dosage: Dosage,
    prescriber: WirePrescriber,
    created_at: DateTime<Utc>,
    token: String,
    keys: Value,
}

/// `rx.prescription` from `from`: stored for dispensing here, if its token verifies with the keys it carries.
pub async fn receive_prescription(st: &AppState, from: &str, body: Value) -> AppResult<Received> {
    let w: WirePrescription = match serde_json::from_value(body) {
        Ok(w) => w,
        Err(e) => return Ok(Err(format!("malformed body: {e}"))),
    };
    match st.store().rx_prescription_unscoped(w.id).await {
        Ok(_) => return Ok(Err("a prescription with this id exists".into())),
        Err(StoreError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let keys = match sign::parse_keys(&w.keys.to_string()) {
        Ok(k) => k,
        Err(e) => return Ok(Err(format!("keys: {e}"))),
    };
    match sign::verify(&w.token, &keys, Utc::now()) {
        Ok(pl) if pl.id == w.id.to_string() && pl.mc == w.medication.code => {}
        Ok(_) => return Ok(Err("the token is about another prescription".into())),
        Err(e) => return Ok(Err(format!("token: {e}"))),
    }
    let rx = Prescription {
        id: w.id,
        patient_id: None,
        patient_name: w.patient.name.chars().take(200).collect(),
        patient_birth_date: w.patient.birth_date,
        consultation_id: None,
        visit_id: None,
        prescriber_id: None,
        prescriber_name: w.prescriber.name.chars().take(200).collect(),
        institution_name: w.prescriber.institution.chars().take(200).collect(),
        medication: FormularyItem {
            code: w.medication.code,
            system: w.medication.system,
            display: w.medication.display,
            ingredient: w.medication.ingredient,
            strength: w.medication.strength,
            form: w.medication.form,
            route: w.dosage.route.clone(),
            classes: Vec::new(),
        },
        dosage: w.dosage,
        warnings: Vec::new(),
        override_reason: None,
        status: RxStatus::Active,
        origin_node: Some(from.to_owned()),
        destination_node: None,
        token: w.token,
        created_at: w.created_at,
    };
    let audit = vec![system_event(
        AuditAction::Create,
        "prescription",
        rx.id,
        None,
        &format!("received from {from} for dispensing"),
    )];
    Ok(Ok((
        vec![Change::Rx(RxChange::InsertPrescription(Box::new(rx)))],
        audit,
    )))
}

#[derive(Deserialize)]
struct WireDispense {
    prescription: Uuid,
    id: Uuid,
    quantity: u32,
    performer: String,
    dispensed_at: DateTime<Utc>,
}

/// `rx.dispense` from `from`: the prescription sent there was dispensed.
pub async fn receive_dispense(st: &AppState, from: &str, body: Value) -> AppResult<Received> {
    let w: WireDispense = match serde_json::from_value(body) {
        Ok(w) => w,
        Err(e) => return Ok(Err(format!("malformed body: {e}"))),
    };
    let rx = match st.store().rx_prescription_unscoped(w.prescription).await {
        Ok(rx) => rx,
        Err(StoreError::NotFound(_)) => return Ok(Err("unknown prescription".into())),
        Err(e) => return Err(e.into()),
    };
    if rx.destination_node.as_deref() != Some(from) {
        return Ok(Err("the prescription was not sent to this node".into()));
    }
    if rx.status != RxStatus::Active {
        return Ok(Err(format!("the prescription is {}", rx.status.as_str())));
    }
    let d = Dispense {
        id: w.id,
        prescription_id: rx.id,
        quantity: w.quantity.min(rx.dosage.quantity),
        performer: w.performer.chars().take(200).collect(),
        note: String::new(),
        node: Some(from.to_owned()),
        dispensed_at: w.dispensed_at,
    };
    let audit = vec![system_event(
        AuditAction::Create,
        "dispense",
        d.id,
        rx.patient_id,
        &format!("dispensed at {from}"),
    )];
    Ok(Ok((
        vec![
            Change::Rx(RxChange::SetStatus {
                id: rx.id,
                status: RxStatus::Completed,
            }),
            Change::Rx(RxChange::InsertDispense(d)),
        ],
        audit,
    )))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn item(code: &str) -> FormularyItem {
        let rows = tables::parse(RxTable::Formulary, tables::STARTER[0].1).unwrap();
        serde_json::from_value(rows.into_iter().find(|(k, _)| k == code).unwrap().1).unwrap()
    }

    fn rules<T: serde::de::DeserializeOwned>(i: usize) -> Vec<T> {
        tables::parse(tables::STARTER[i].0, tables::STARTER[i].1)
            .unwrap()
            .into_iter()
            .map(|(_, v)| serde_json::from_value(v).unwrap())
            .collect()
    }

    fn allergy(s: &str) -> Allergy {
        Allergy {
            id: Uuid::now_v7(),
            patient_id: PatientId::new(),
            substance: s.into(),
            criticality: "high".into(),
            reaction: String::new(),
            status: "active".into(),
            recorded_by: UserId::new(),
            recorded_at: Utc::now(),
        }
    }

    #[test]
    fn allergies_and_interactions_warn_with_reasons() {
        let (ddi, alg): (Vec<InteractionRule>, Vec<AllergyRule>) = (rules(1), rules(2));
        // Penicillin allergy: amoxicillin is high, cefalexin moderate (cross-reactivity), paracetamol nothing.
        let pen = [allergy("Penicillin")];
        let w = check(&item("308191"), &pen, &[], &ddi, &alg);
        assert_eq!(w.len(), 1);
        assert_eq!(
            (w[0].kind.as_str(), w[0].severity),
            ("allergy", Severity::High)
        );
        let w = check(&item("309114"), &pen, &[], &ddi, &alg);
        assert_eq!(w[0].severity, Severity::Moderate);
        assert!(w[0].reason.contains("cross-reactivity"), "{}", w[0].reason);
        assert!(check(&item("198440"), &pen, &[], &ddi, &alg).is_empty());
        // Simvastatin with clarithromycin (ONC high-priority) either way round; warfarin + ibuprofen moderate.
        let w = check(&item("197517"), &[], &[item("198211")], &ddi, &alg);
        assert_eq!(w[0].severity, Severity::High);
        assert!(w[0].source.contains("Phansalkar"));
        assert_eq!(w[0].subject, "simvastatin 40 MG Oral Tablet");
        let w = check(&item("198211"), &[], &[item("197517")], &ddi, &alg);
        assert_eq!(w[0].severity, Severity::High);
        let w = check(&item("197805"), &[], &[item("855332")], &ddi, &alg);
        assert_eq!(w[0].severity, Severity::Moderate);
        // An allergy with no rule still warns when the drug is the substance itself.
        let w = check(&item("198440"), &[allergy("paracetamol")], &[], &ddi, &alg);
        assert_eq!(w[0].severity, Severity::High);
        assert_eq!(w[0].source, "patient record");
    }
}
