//! Live care and e-prescriptions as FHIR R4: video visits (`Schedule`, `Slot`, `Appointment`, `Encounter`) and
//! prescriptions (`MedicationRequest`, `MedicationDispense`, `Medication` from the imported formulary).
//!
//! Every read goes through the same service functions or scoped store reads as the JSON API (`/api/v1/visits`,
//! `/api/v1/rx`), with the same roles, so a user sees here exactly what they see there, and every read of patient
//! data is an audit event. Mapping choices:
//!
//! - A visit is one row holding an appointment and its encounter, so `Appointment/{id}` and `Encounter/{id}` share
//!   the visit's id; `Encounter.appointment` points back. Statuses come from `VisitStatus::appointment_status` /
//!   `encounter_status` (booked → `booked`/`planned`, waiting room → `arrived`/`arrived`, admitted →
//!   `arrived`/`in-progress`, finished → `fulfilled`/`finished`, cancelled → `cancelled`/`cancelled`).
//!   `Encounter.class` is v3-ActCode `VR` (virtual).
//! - A schedule belongs to one clinician: `Schedule.actor` names the `Practitioner` and the `PractitionerRole`
//!   (which carries the organization). Schedules and slots carry no patient data and, as in the JSON API, every
//!   clinician may read them (a referrer books a specialist of another institution).
//! - `Medication/{id}`: the formulary entry whose code is `id`, coded in the formulary's own system (RxNorm in the
//!   starter set; ATC or a national code if the node imported one). A `MedicationRequest` refers to it when the
//!   prescribed product is in this node's formulary; otherwise (a prescription received from another node) it
//!   carries the coding itself in `medicationCodeableConcept`.
//! - The dosage is a FHIR `Dosage`: `timing.repeat` = times per day for the course's days (`boundsDuration`),
//!   `doseAndRate.doseQuantity` with the UCUM code when the unit is one, `route` with its SNOMED CT code when it is
//!   a common one; the dispense quantity and course length are in `dispenseRequest`.
//! - `MedicationRequest.encounter` is the visit the prescription was written after (`visit_id` in the JSON API).
//! - A pharmacist reads `MedicationRequest/{id}`, `MedicationDispense/{id}` and
//!   `MedicationDispense?prescription=` (any prescription of this node, as it is presented at the pharmacy) and
//!   the `Medication`s; searching by patient or encounter is refused (403): the pharmacy does not browse patients.

use crate::error::{FhirError, FhirResult};
use crate::handlers::Params;
use crate::input;
use crate::map::{coding, concept, instant, reference, s, text_concept, SNOMED};
use axum::http::StatusCode;
use caravan_domain::*;
use caravan_server::audit::event;
use caravan_server::auth::Principal;
use caravan_server::visits::{self, CLINICIANS, VISIT_READERS};
use caravan_server::{rx, AppState};
use caravan_store::*;
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use fhirbolt::model::r4::resources as fr;
use fhirbolt::model::r4::types as ft;
use fhirbolt::model::r4::Resource;
use std::collections::HashSet;
use uuid::Uuid;

pub const UCUM: &str = "http://unitsofmeasure.org";
pub const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
pub const PARTICIPATION_TYPE: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";

/// The types this module serves (the handlers dispatch them here).
pub const TYPES: &[&str] = &[
    "Schedule",
    "Slot",
    "Appointment",
    "Encounter",
    "MedicationRequest",
    "MedicationDispense",
    "Medication",
];

/// (type, search parameters, create supported), listed in the CapabilityStatement after the handlers' own.
pub const CAPABILITIES: &[(&str, &[&str], bool)] = &[
    ("Schedule", &["actor", "_count"], false),
    ("Slot", &["schedule", "start", "status", "_count"], false),
    (
        "Appointment",
        &["patient", "practitioner", "date", "status", "_count"],
        true,
    ),
    (
        "Encounter",
        &["patient", "appointment", "status", "_count"],
        false,
    ),
    (
        "MedicationRequest",
        &["patient", "encounter", "status", "_count"],
        false,
    ),
    (
        "MedicationDispense",
        &["prescription", "patient", "_count"],
        false,
    ),
    ("Medication", &["code", "_count"], false),
];

/// How far a slot search reaches when `start` does not bound it on both sides.
const SLOT_WINDOW_DAYS: i64 = 31;

fn unknown(rtype: &str, id: &str) -> FhirError {
    FhirError::not_found(format!("{rtype}/{id} is not known"))
}

/// An id of ours in a read: anything that does not parse cannot name a stored resource (404).
fn uuid_of(rtype: &str, raw: &str) -> FhirResult<Uuid> {
    raw.parse().map_err(|_| unknown(rtype, raw))
}

/// A refused read of one resource is "not known", whether it does not exist or is out of the user's scope.
fn hide<'a>(rtype: &'a str, id: &'a str) -> impl Fn(FhirError) -> FhirError + 'a {
    move |e| {
        if e.status == StatusCode::NOT_FOUND {
            unknown(rtype, id)
        } else {
            e
        }
    }
}

fn id_of(v: impl ToString) -> Option<ft::Id> {
    Some(v.to_string().into())
}

// ---------------------------------------------------------------------------------------------------------------
// mapping: visits

pub fn schedule(sc: &Schedule) -> fr::Schedule {
    fr::Schedule {
        id: id_of(sc.id),
        active: Some(sc.active.into()),
        service_type: vec![text_concept(&sc.service)],
        actor: vec![
            reference("Practitioner", sc.practitioner_id, None),
            reference("PractitionerRole", sc.practitioner_id, None),
        ],
        ..Default::default()
    }
}

pub fn slot(sl: &Slot) -> fr::Slot {
    fr::Slot {
        id: id_of(sl.id),
        schedule: Box::new(reference("Schedule", sl.schedule_id, None)),
        status: sl.status.as_str().into(),
        start: instant(sl.start).into(),
        end: instant(sl.end).into(),
        ..Default::default()
    }
}

fn period(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> Option<Box<ft::Period>> {
    start.map(|st| {
        Box::new(ft::Period {
            start: Some(instant(st).into()),
            end: end.map(|e| instant(e).into()),
            ..Default::default()
        })
    })
}

pub fn appointment(v: &VisitView) -> fr::Appointment {
    let x = &v.visit;
    let minutes = u32::try_from((x.end - x.start).num_minutes()).unwrap_or(0);
    fr::Appointment {
        id: id_of(x.id),
        status: x.status.appointment_status().into(),
        description: (!x.reason.is_empty()).then(|| s(x.reason.as_str())),
        start: Some(instant(x.start).into()),
        end: Some(instant(x.end).into()),
        minutes_duration: (minutes > 0).then(|| minutes.into()),
        slot: x
            .slot_id
            .iter()
            .map(|sl| reference("Slot", sl, None))
            .collect(),
        created: Some(instant(x.created_at).into()),
        based_on: x
            .consultation_id
            .iter()
            .map(|c| reference("ServiceRequest", c, None))
            .collect(),
        participant: vec![
            fr::AppointmentParticipant {
                actor: Some(Box::new(reference(
                    "Patient",
                    x.patient_id,
                    Some(&v.patient_name),
                ))),
                required: Some("required".into()),
                status: "accepted".into(),
                ..Default::default()
            },
            fr::AppointmentParticipant {
                r#type: vec![concept(
                    PARTICIPATION_TYPE,
                    "PPRF",
                    Some("primary performer"),
                )],
                actor: Some(Box::new(reference(
                    "Practitioner",
                    x.practitioner_id,
                    Some(&v.practitioner_name),
                ))),
                required: Some("required".into()),
                status: "accepted".into(),
                ..Default::default()
            },
        ],
        ..Default::default()
    }
}

pub fn encounter(v: &VisitView) -> fr::Encounter {
    let x = &v.visit;
    fr::Encounter {
        id: id_of(x.id),
        status: x.status.encounter_status().into(),
        class: Box::new(coding(ACT_CODE, "VR", Some("virtual"))),
        subject: Some(Box::new(reference(
            "Patient",
            x.patient_id,
            Some(&v.patient_name),
        ))),
        based_on: x
            .consultation_id
            .iter()
            .map(|c| reference("ServiceRequest", c, None))
            .collect(),
        participant: vec![fr::EncounterParticipant {
            r#type: vec![concept(
                PARTICIPATION_TYPE,
                "PPRF",
                Some("primary performer"),
            )],
            individual: Some(Box::new(reference(
                "Practitioner",
                x.practitioner_id,
                Some(&v.practitioner_name),
            ))),
            ..Default::default()
        }],
        appointment: vec![reference("Appointment", x.id, None)],
        period: period(x.started_at, x.ended_at),
        reason_code: if x.reason.is_empty() {
            vec![]
        } else {
            vec![text_concept(&x.reason)]
        },
        service_provider: Some(Box::new(reference("Organization", x.institution_id, None))),
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------------------------------------------
// mapping: prescriptions

/// SNOMED CT codes of the common routes of administration (the FHIR `route-codes` value set).
fn route_code(route: &str) -> Option<(&'static str, &'static str)> {
    Some(match route {
        "oral" | "po" => ("26643006", "Oral route"),
        "sublingual" => ("37839007", "Sublingual route"),
        "rectal" => ("37161004", "Rectal route"),
        "intravenous" | "iv" => ("47625008", "Intravenous route"),
        "intramuscular" | "im" => ("78421000", "Intramuscular route"),
        "subcutaneous" | "sc" => ("34206005", "Subcutaneous route"),
        "topical" => ("6064005", "Topical route"),
        "nasal" => ("46713006", "Nasal route"),
        "inhalation" | "inhaled" => ("447694001", "Respiratory tract route"),
        "ophthalmic" => ("54485002", "Ophthalmic route"),
        "otic" => ("10547007", "Otic route"),
        "vaginal" => ("16857009", "Vaginal route"),
        "transdermal" => ("45890007", "Transdermal route"),
        _ => return None,
    })
}

/// The UCUM code of a unit as prescribers write it, when it is one.
fn ucum(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "mg" => "mg",
        "g" => "g",
        "kg" => "kg",
        "mcg" | "ug" | "µg" => "ug",
        "ng" => "ng",
        "ml" | "mL" => "mL",
        "l" | "L" => "L",
        "mmol" => "mmol",
        "iu" | "IU" => "[iU]",
        "drop" | "drops" => "[drp]",
        _ => return None,
    })
}

fn quantity(value: impl ToString, unit: &str) -> ft::Quantity {
    let code = ucum(unit);
    ft::Quantity {
        value: Some(value.to_string().into()),
        unit: (!unit.is_empty()).then(|| s(unit)),
        system: code.map(|_| UCUM.into()),
        code: code.map(Into::into),
        ..Default::default()
    }
}

fn days(n: u32) -> ft::Duration {
    ft::Duration {
        value: Some(n.to_string().into()),
        unit: Some(s("days")),
        system: Some(UCUM.into()),
        code: Some("d".into()),
        ..Default::default()
    }
}

/// The prescription's dosage as a FHIR `Dosage`.
pub fn dosage(d: &Dosage) -> ft::Dosage {
    ft::Dosage {
        text: Some(s(rx::dosage_text(d))),
        patient_instruction: (!d.instructions.is_empty()).then(|| s(d.instructions.as_str())),
        timing: Some(Box::new(ft::Timing {
            repeat: Some(ft::TimingRepeat {
                bounds: Some(ft::TimingRepeatBounds::Duration(Box::new(days(
                    d.duration_days,
                )))),
                frequency: Some(d.times_per_day.into()),
                period: Some("1".into()),
                period_unit: Some("d".into()),
                ..Default::default()
            }),
            ..Default::default()
        })),
        route: (!d.route.is_empty()).then(|| {
            Box::new(match route_code(&d.route) {
                Some((code, display)) => ft::CodeableConcept {
                    coding: vec![coding(SNOMED, code, Some(display))],
                    text: Some(s(d.route.as_str())),
                    ..Default::default()
                },
                None => text_concept(&d.route),
            })
        }),
        dose_and_rate: vec![ft::DosageDoseAndRate {
            dose: Some(ft::DosageDoseAndRateDose::Quantity(Box::new(quantity(
                &d.dose,
                &d.dose_unit,
            )))),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A FHIR id is 1–64 of `[A-Za-z0-9.-]`; a formulary code that is not one cannot be a `Medication` id.
fn fhir_id(code: &str) -> bool {
    (1..=64).contains(&code.len())
        && code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

fn medication_concept(m: &FormularyItem) -> ft::CodeableConcept {
    concept(&m.system, &m.code, Some(&m.display))
}

/// The strength as a ratio per unit of the dose form, when it reads as "<number> <unit>".
fn strength(m: &FormularyItem) -> Option<Box<ft::Ratio>> {
    let mut parts = m.strength.split_whitespace();
    let (value, unit) = (parts.next()?, parts.next()?);
    if parts.next().is_some() || value.parse::<f64>().is_err() {
        return None;
    }
    Some(Box::new(ft::Ratio {
        numerator: Some(Box::new(quantity(value, unit))),
        denominator: Some(Box::new(ft::Quantity {
            value: Some("1".into()),
            unit: (!m.form.is_empty()).then(|| s(m.form.as_str())),
            ..Default::default()
        })),
        ..Default::default()
    }))
}

pub fn medication(m: &FormularyItem) -> fr::Medication {
    fr::Medication {
        id: id_of(&m.code),
        code: Some(Box::new(medication_concept(m))),
        status: Some("active".into()),
        form: (!m.form.is_empty()).then(|| Box::new(text_concept(&m.form))),
        ingredient: vec![fr::MedicationIngredient {
            item: fr::MedicationIngredientItem::CodeableConcept(Box::new(text_concept(
                &m.ingredient,
            ))),
            is_active: Some(true.into()),
            strength: strength(m),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The codes (system, code) of this node's formulary that are `Medication` resources here.
pub struct Formulary(HashSet<(String, String)>);

impl Formulary {
    pub async fn load(st: &AppState) -> FhirResult<Self> {
        Ok(Self(
            rx::formulary(st)
                .await?
                .into_iter()
                .filter(|m| fhir_id(&m.code))
                .map(|m| (m.system, m.code))
                .collect(),
        ))
    }
    fn has(&self, m: &FormularyItem) -> bool {
        self.0.contains(&(m.system.clone(), m.code.clone()))
    }
}

fn request_medication(m: &FormularyItem, f: &Formulary) -> fr::MedicationRequestMedication {
    if f.has(m) {
        fr::MedicationRequestMedication::Reference(Box::new(reference(
            "Medication",
            &m.code,
            Some(&m.display),
        )))
    } else {
        fr::MedicationRequestMedication::CodeableConcept(Box::new(medication_concept(m)))
    }
}

fn rx_subject(rx: &Prescription) -> ft::Reference {
    match rx.patient_id {
        Some(p) => reference("Patient", p, Some(&rx.patient_name)),
        None => ft::Reference {
            display: Some(s(rx.patient_name.as_str())),
            ..Default::default()
        },
    }
}

pub fn medication_request(rx: &Prescription, f: &Formulary) -> fr::MedicationRequest {
    let requester_display = format!("{} ({})", rx.prescriber_name, rx.institution_name);
    fr::MedicationRequest {
        id: id_of(rx.id),
        meta: rx.origin_node.as_ref().map(|n| {
            Box::new(ft::Meta {
                source: Some(n.as_str().into()),
                ..Default::default()
            })
        }),
        status: rx.status.as_str().into(),
        intent: "order".into(),
        medication: request_medication(&rx.medication, f),
        subject: Box::new(rx_subject(rx)),
        encounter: rx
            .visit_id
            .map(|v| Box::new(reference("Encounter", v, None))),
        authored_on: Some(instant(rx.created_at).into()),
        requester: Some(Box::new(match rx.prescriber_id {
            Some(u) => reference("Practitioner", u, Some(&requester_display)),
            None => ft::Reference {
                display: Some(s(requester_display)),
                ..Default::default()
            },
        })),
        based_on: rx
            .consultation_id
            .iter()
            .map(|c| reference("ServiceRequest", c, None))
            .collect(),
        note: rx
            .override_reason
            .iter()
            .map(|r| ft::Annotation {
                text: format!("Severe warning overridden: {r}").into(),
                ..Default::default()
            })
            .collect(),
        dosage_instruction: vec![dosage(&rx.dosage)],
        dispense_request: Some(fr::MedicationRequestDispenseRequest {
            quantity: Some(Box::new(quantity(rx.dosage.quantity, &rx.medication.form))),
            expected_supply_duration: Some(Box::new(days(rx.dosage.duration_days))),
            ..Default::default()
        }),
        detected_issue: rx
            .warnings
            .iter()
            .map(|w| ft::Reference {
                display: Some(s(format!(
                    "{} ({}): {}: {} [{}]",
                    w.kind,
                    w.severity.as_str(),
                    w.subject,
                    w.reason,
                    w.source
                ))),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

pub fn medication_dispense(
    rx: &Prescription,
    d: &Dispense,
    f: &Formulary,
) -> fr::MedicationDispense {
    let performer = match &d.node {
        Some(n) => format!("{} ({n})", d.performer),
        None => d.performer.clone(),
    };
    fr::MedicationDispense {
        id: id_of(d.id),
        status: "completed".into(),
        medication: match request_medication(&rx.medication, f) {
            fr::MedicationRequestMedication::Reference(r) => {
                fr::MedicationDispenseMedication::Reference(r)
            }
            fr::MedicationRequestMedication::CodeableConcept(c) => {
                fr::MedicationDispenseMedication::CodeableConcept(c)
            }
            // fhirbolt's choice enums carry a catch-all for unknown choices; this node never builds one.
            _ => fr::MedicationDispenseMedication::CodeableConcept(Box::new(medication_concept(
                &rx.medication,
            ))),
        },
        subject: Some(Box::new(rx_subject(rx))),
        context: rx
            .visit_id
            .map(|v| Box::new(reference("Encounter", v, None))),
        performer: vec![fr::MedicationDispensePerformer {
            actor: Box::new(ft::Reference {
                display: Some(s(performer)),
                ..Default::default()
            }),
            ..Default::default()
        }],
        authorizing_prescription: vec![reference("MedicationRequest", rx.id, None)],
        quantity: Some(Box::new(quantity(d.quantity, &rx.medication.form))),
        when_handed_over: Some(instant(d.dispensed_at).into()),
        note: if d.note.is_empty() {
            vec![]
        } else {
            vec![ft::Annotation {
                text: d.note.as_str().into(),
                ..Default::default()
            }]
        },
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------------------------------------------
// read

pub async fn read(st: &AppState, p: &Principal, rtype: &str, raw: &str) -> FhirResult<Resource> {
    Ok(match rtype {
        "Schedule" => {
            p.require(CLINICIANS)?;
            let sc = st
                .store()
                .visit_get_schedule(uuid_of(rtype, raw)?)
                .await
                .map_err(FhirError::from)
                .map_err(hide(rtype, raw))?;
            Resource::Schedule(Box::new(schedule(&sc)))
        }
        "Slot" => {
            p.require(CLINICIANS)?;
            let sl = st
                .store()
                .visit_get_slot(uuid_of(rtype, raw)?)
                .await
                .map_err(FhirError::from)
                .map_err(hide(rtype, raw))?;
            Resource::Slot(Box::new(slot(&sl)))
        }
        "Appointment" | "Encounter" => {
            p.require(VISIT_READERS)?;
            // The service's read: the store's visit scope and one audited read with the patient's id.
            let v = visits::get(st, p, uuid_of(rtype, raw)?)
                .await
                .map_err(FhirError::from)
                .map_err(hide(rtype, raw))?;
            if rtype == "Appointment" {
                Resource::Appointment(Box::new(appointment(&v)))
            } else {
                Resource::Encounter(Box::new(encounter(&v)))
            }
        }
        "MedicationRequest" => {
            // Read by id: its patient's readers, and a pharmacist (shown the prescription, never the patient).
            p.require(rx::PRESCRIPTION_READERS)?;
            let (x, _) = rx::prescription(st, p, uuid_of(rtype, raw)?)
                .await
                .map_err(FhirError::from)
                .map_err(hide(rtype, raw))?;
            let f = Formulary::load(st).await?;
            Resource::MedicationRequest(Box::new(medication_request(&x, &f)))
        }
        "MedicationDispense" => {
            p.require(rx::PRESCRIPTION_READERS)?;
            let store = st.store();
            let d = store
                .rx_dispense(uuid_of(rtype, raw)?)
                .await
                .map_err(FhirError::from)
                .map_err(hide(rtype, raw))?;
            // Visible exactly when its prescription is.
            let x = store
                .rx_prescription(&p.actor(), d.prescription_id)
                .await
                .map_err(FhirError::from)
                .map_err(hide(rtype, raw))?;
            store
                .append_audit(vec![event(
                    p,
                    AuditAction::Read,
                    "dispense",
                    d.id,
                    x.patient_id,
                    "fhir:MedicationDispense",
                )])
                .await?;
            let f = Formulary::load(st).await?;
            Resource::MedicationDispense(Box::new(medication_dispense(&x, &d, &f)))
        }
        "Medication" => {
            // The formulary is reference data: every signed-in user may read it, as in the JSON API.
            let m = st
                .store()
                .rx_formulary_item(raw)
                .await
                .map_err(FhirError::from)
                .map_err(hide(rtype, raw))?;
            if !fhir_id(&m.code) {
                return Err(unknown(rtype, raw));
            }
            Resource::Medication(Box::new(medication(&m)))
        }
        _ => return Err(FhirError::not_supported(format!("read of {rtype}"))),
    })
}

// ---------------------------------------------------------------------------------------------------------------
// search

/// A half-open interval of instants `[lower, upper)`; `None` is unbounded.
pub type Bounds = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// The instants a FHIR `date` search value admits, as a half-open interval `[lower, upper)`. Values: `YYYY`,
/// `YYYY-MM`, `YYYY-MM-DD` (UTC days) or an RFC 3339 date-time (a time without a zone is UTC); prefixes `eq`
/// (default), `ge`, `gt`, `le`, `lt`.
pub fn date_bounds(name: &str, raw: &str) -> FhirResult<Bounds> {
    let bad = || {
        FhirError::invalid(format!(
            "{name} {raw:?} is not a FHIR date search value (eq|ge|gt|le|lt followed by YYYY, YYYY-MM, YYYY-MM-DD or an RFC 3339 date-time)"
        ))
    };
    let (prefix, value) = match raw.get(..2) {
        Some(pre) if pre.chars().all(|c| c.is_ascii_lowercase()) => (pre, &raw[2..]),
        _ => ("eq", raw),
    };
    let day = |d: NaiveDate| d.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
    let (lo, hi) = match value.len() {
        4 => {
            let y: i32 = value.parse().map_err(|_| bad())?;
            (
                NaiveDate::from_ymd_opt(y, 1, 1).and_then(day),
                NaiveDate::from_ymd_opt(y + 1, 1, 1).and_then(day),
            )
        }
        7 => {
            let d =
                NaiveDate::parse_from_str(&format!("{value}-01"), "%Y-%m-%d").map_err(|_| bad())?;
            let next = if d.month() == 12 {
                NaiveDate::from_ymd_opt(d.year() + 1, 1, 1)
            } else {
                NaiveDate::from_ymd_opt(d.year(), d.month() + 1, 1)
            };
            (day(d), next.and_then(day))
        }
        10 => {
            let d = NaiveDate::parse_from_str(value, "%Y-%m-%d").map_err(|_| bad())?;
            (day(d), d.succ_opt().and_then(day))
        }
        _ => {
            let t = DateTime::parse_from_rfc3339(value)
                .map(|t| t.with_timezone(&Utc))
                .or_else(|_| {
                    chrono::NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S")
                        .map(|t| t.and_utc())
                })
                .map_err(|_| bad())?;
            (Some(t), Some(t + Duration::seconds(1)))
        }
    };
    let (lo, hi) = (lo.ok_or_else(bad)?, hi.ok_or_else(bad)?);
    Ok(match prefix {
        "eq" => (Some(lo), Some(hi)),
        "ge" => (Some(lo), None),
        "gt" => (Some(hi), None),
        "le" => (None, Some(hi)),
        "lt" => (None, Some(lo)),
        other => {
            return Err(FhirError::invalid(format!(
                "{name}: the prefix {other:?} is not supported here (eq, ge, gt, le, lt)"
            )))
        }
    })
}

/// All the `name` values of a search, intersected.
fn date_range(params: &Params, name: &str) -> FhirResult<Bounds> {
    let (mut lo, mut hi): (Option<DateTime<Utc>>, Option<DateTime<Utc>>) = (None, None);
    for raw in params.all(name) {
        let (l, h) = date_bounds(name, raw)?;
        lo = lo.max(l);
        hi = match (hi, h) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    Ok((lo, hi))
}

fn within(t: DateTime<Utc>, (lo, hi): Bounds) -> bool {
    lo.is_none_or(|l| t >= l) && hi.is_none_or(|h| t < h)
}

/// A token search value: comma-separated codes, each `code` or `system|code`.
fn codes(v: &str) -> impl Iterator<Item = &str> {
    v.split(',')
        .map(|c| c.rsplit('|').next().unwrap_or(c).trim())
}

/// The visit statuses a FHIR status token stands for (Appointment or Encounter), or 400.
fn visit_statuses(rtype: &str, v: &str) -> FhirResult<Vec<VisitStatus>> {
    let all = [
        VisitStatus::Booked,
        VisitStatus::Arrived,
        VisitStatus::InProgress,
        VisitStatus::Finished,
        VisitStatus::Cancelled,
    ];
    let mut out = Vec::new();
    for code in codes(v) {
        let matching: Vec<VisitStatus> = all
            .into_iter()
            .filter(|s| {
                if rtype == "Appointment" {
                    s.appointment_status() == code
                } else {
                    s.encounter_status() == code
                }
            })
            .collect();
        if matching.is_empty() {
            return Err(FhirError::invalid(format!(
                "status {code:?} is not a {rtype} status used here"
            )));
        }
        out.extend(matching);
    }
    Ok(out)
}

fn practitioner_ref(v: &str) -> FhirResult<UserId> {
    let t = if v.contains("PractitionerRole/") {
        "PractitionerRole"
    } else {
        "Practitioner"
    };
    input::ref_id(t, v)
}

pub(crate) async fn search(
    st: &AppState,
    p: &Principal,
    rtype: &str,
    params: &Params,
    count: usize,
) -> FhirResult<Vec<Resource>> {
    let store = st.store();
    Ok(match rtype {
        "Schedule" => {
            p.require(CLINICIANS)?;
            let actor = params.get("actor").map(practitioner_ref).transpose()?;
            store
                .visit_schedules(None, actor)
                .await?
                .iter()
                .take(count)
                .map(|sc| Resource::Schedule(Box::new(schedule(sc))))
                .collect()
        }
        "Slot" => {
            p.require(CLINICIANS)?;
            let range = date_range(params, "start")?;
            let statuses: Option<Vec<SlotStatus>> = params
                .get("status")
                .map(|v| {
                    codes(v)
                        .map(|c| {
                            SlotStatus::parse(c).ok_or_else(|| {
                                FhirError::invalid(format!(
                                    "status {c:?} is not a Slot status used here (free, busy)"
                                ))
                            })
                        })
                        .collect()
                })
                .transpose()?;
            let schedules: Vec<Uuid> = match params.get("schedule") {
                Some(v) => {
                    let id: Uuid = input::ref_id("Schedule", v)?;
                    store.visit_get_schedule(id).await?;
                    vec![id]
                }
                None => store
                    .visit_schedules(None, None)
                    .await?
                    .into_iter()
                    .map(|sc| sc.id)
                    .collect(),
            };
            let window = Duration::days(SLOT_WINDOW_DAYS);
            let from = match range {
                (Some(lo), _) => lo,
                (None, Some(hi)) => hi - window,
                (None, None) => Utc::now() - Duration::hours(12),
            };
            let to = range.1.unwrap_or(from + window);
            let mut out = Vec::new();
            for id in schedules {
                for sl in store.visit_slots(id, from, to).await? {
                    if within(sl.start, range)
                        && statuses.as_ref().is_none_or(|s| s.contains(&sl.status))
                    {
                        out.push(sl);
                    }
                }
            }
            out.sort_by_key(|sl| (sl.start, sl.id));
            out.iter()
                .take(count)
                .map(|sl| Resource::Slot(Box::new(slot(sl))))
                .collect()
        }
        "Appointment" | "Encounter" => {
            p.require(VISIT_READERS)?;
            let mut f = VisitFilter {
                limit: Some(u32::try_from(count).unwrap_or(u32::MAX)),
                ..Default::default()
            };
            if let Some(v) = params.get("patient") {
                f.patient_id = Some(input::ref_id("Patient", v)?);
            }
            if let Some(v) = params.get("practitioner") {
                f.practitioner_id = Some(input::ref_id("Practitioner", v)?);
            }
            if let Some(v) = params.get("status") {
                f.statuses = visit_statuses(rtype, v)?;
            }
            let range = date_range(params, "date")?;
            // The store selects visits overlapping [from, to); the exact test is on the start below.
            f.from = range.0;
            f.to = range.1;
            let found = match params.get("appointment") {
                Some(v) => {
                    let id: Uuid = input::ref_id("Appointment", v)?;
                    // One visit: the service's audited, scoped read; a visit out of scope is simply not found.
                    match visits::get(st, p, id).await {
                        Ok(v) => vec![v],
                        Err(e) if e.status == StatusCode::NOT_FOUND => vec![],
                        Err(e) => return Err(e.into()),
                    }
                }
                // The service's list: scoped in the store, one audit event per visit found.
                None => visits::list(st, p, &f).await?,
            };
            found
                .iter()
                .filter(|v| within(v.visit.start, range))
                .filter(|v| f.patient_id.is_none_or(|x| v.visit.patient_id == x))
                .filter(|v| f.statuses.is_empty() || f.statuses.contains(&v.visit.status))
                .take(count)
                .map(|v| {
                    if rtype == "Appointment" {
                        Resource::Appointment(Box::new(appointment(v)))
                    } else {
                        Resource::Encounter(Box::new(encounter(v)))
                    }
                })
                .collect()
        }
        "MedicationRequest" => {
            p.require(rx::READERS)?;
            let patient: Option<PatientId> = params
                .get("patient")
                .map(|v| input::ref_id("Patient", v))
                .transpose()?;
            let visit: Option<Uuid> = params
                .get("encounter")
                .map(|v| input::ref_id("Encounter", v))
                .transpose()?;
            let statuses: Option<Vec<RxStatus>> = params
                .get("status")
                .map(|v| {
                    codes(v)
                        .map(|c| {
                            RxStatus::parse(c).ok_or_else(|| {
                                FhirError::invalid(format!(
                                    "status {c:?} is not a MedicationRequest status used here (active, completed, cancelled)"
                                ))
                            })
                        })
                        .collect()
                })
                .transpose()?;
            let pid = match (visit, patient) {
                (Some(vid), _) => match visits::get(st, p, vid).await {
                    Ok(v) => Some(v.visit.patient_id),
                    Err(e) if e.status == StatusCode::NOT_FOUND => None,
                    Err(e) => return Err(e.into()),
                },
                (None, Some(pid)) => Some(pid),
                (None, None) => {
                    return Err(FhirError::invalid(
                        "MedicationRequest search needs patient=Patient/<id> or encounter=Encounter/<id>",
                    ))
                }
            };
            let Some(pid) = pid.filter(|pid| patient.is_none_or(|x| x == *pid)) else {
                return Ok(vec![]);
            };
            let list = rx::prescriptions(st, p, pid).await?;
            let f = Formulary::load(st).await?;
            list.iter()
                .filter(|x| visit.is_none_or(|v| x.visit_id == Some(v)))
                .filter(|x| statuses.as_ref().is_none_or(|s| s.contains(&x.status)))
                .take(count)
                .map(|x| Resource::MedicationRequest(Box::new(medication_request(x, &f))))
                .collect()
        }
        "MedicationDispense" => {
            // By prescription: whoever may read the prescription (a pharmacist too); by patient: only the
            // patient's readers (`rx::prescriptions` refuses a pharmacist with 403: no browsing by patient).
            p.require(rx::PRESCRIPTION_READERS)?;
            let f = Formulary::load(st).await?;
            let mut out = Vec::new();
            if let Some(v) = params.get("prescription") {
                let id: Uuid = input::ref_id("MedicationRequest", v)?;
                let (x, dispenses) = match rx::prescription(st, p, id).await {
                    Ok(found) => found,
                    Err(e) if e.status == StatusCode::NOT_FOUND => return Ok(vec![]),
                    Err(e) => return Err(e.into()),
                };
                if let Some(pt) = params.get("patient") {
                    let pid: PatientId = input::ref_id("Patient", pt)?;
                    if x.patient_id != Some(pid) {
                        return Ok(vec![]);
                    }
                }
                for d in &dispenses {
                    out.push(Resource::MedicationDispense(Box::new(medication_dispense(
                        &x, d, &f,
                    ))));
                }
            } else if let Some(pt) = params.get("patient") {
                let pid: PatientId = input::ref_id("Patient", pt)?;
                for x in rx::prescriptions(st, p, pid).await? {
                    for d in store.rx_dispenses(x.id).await? {
                        out.push(Resource::MedicationDispense(Box::new(medication_dispense(
                            &x, &d, &f,
                        ))));
                    }
                    if out.len() >= count {
                        break;
                    }
                }
            } else {
                return Err(FhirError::invalid(
                    "MedicationDispense search needs prescription=MedicationRequest/<id> or patient=Patient/<id>",
                ));
            }
            out.truncate(count);
            out
        }
        "Medication" => {
            let wanted: Option<Vec<(Option<&str>, &str)>> = params.get("code").map(|v| {
                v.split(',')
                    .map(|c| match c.split_once('|') {
                        Some((sys, code)) => ((!sys.is_empty()).then_some(sys), code.trim()),
                        None => (None, c.trim()),
                    })
                    .collect()
            });
            rx::formulary(st)
                .await?
                .iter()
                .filter(|m| fhir_id(&m.code))
                .filter(|m| {
                    wanted.as_ref().is_none_or(|w| {
                        w.iter().any(|(sys, code)| {
                            *code == m.code && sys.is_none_or(|sys| sys == m.system)
                        })
                    })
                })
                .take(count)
                .map(|m| Resource::Medication(Box::new(medication(m))))
                .collect()
        }
        _ => return Err(FhirError::not_supported(format!("search of {rtype}"))),
    })
}

// ---------------------------------------------------------------------------------------------------------------
// create: booking through FHIR

/// What `POST /fhir/Appointment` asks for: a free slot (`slot[0]`) or a practitioner participant with
/// `start`/`end`; the patient participant; `description` (or `reasonCode[0].text`) as the reason; `basedOn` a
/// ServiceRequest for an MDT meeting. Booked with the JSON API's rules (`visits::book`).
pub fn new_visit(a: &fr::Appointment) -> FhirResult<visits::NewVisit> {
    let required = |e: &str| FhirError::unprocessable("required", format!("{e} is required"));
    let status = a.status.value.as_deref().unwrap_or("");
    if !matches!(status, "booked" | "proposed" | "pending") {
        return Err(FhirError::unprocessable(
            "business-rule",
            format!("Appointment.status {status:?}: a new appointment is booked (status booked, proposed or pending)"),
        ));
    }
    let refs = |t: &str| -> Vec<String> {
        a.participant
            .iter()
            .filter_map(|pa| pa.actor.as_ref())
            .filter_map(|r| r.reference.as_ref().and_then(|s| s.value.clone()))
            .filter(|r| r.starts_with(&format!("{t}/")) || r.contains(&format!("/{t}/")))
            .collect()
    };
    let patients = refs("Patient");
    let [patient] = patients.as_slice() else {
        return Err(if patients.is_empty() {
            required("Appointment.participant with actor Patient/<id>")
        } else {
            FhirError::unprocessable("business-rule", "an appointment here is with one patient")
        });
    };
    let patient_id: PatientId = input::ref_id("Patient", patient)?;
    let slot_id: Option<Uuid> = match a.slot.as_slice() {
        [] => None,
        [sl] => {
            let r = sl
                .reference
                .as_ref()
                .and_then(|s| s.value.as_deref())
                .ok_or_else(|| required("Appointment.slot.reference"))?;
            Some(input::ref_id("Slot", r)?)
        }
        _ => {
            return Err(FhirError::unprocessable(
                "business-rule",
                "an appointment here takes one slot",
            ))
        }
    };
    let practitioner_id: Option<UserId> = refs("Practitioner")
        .first()
        .map(|r| input::ref_id("Practitioner", r))
        .transpose()?;
    if slot_id.is_none() && (practitioner_id.is_none() || a.start.is_none() || a.end.is_none()) {
        return Err(required(
            "Appointment.slot, or a Practitioner participant with start and end,",
        ));
    }
    let consultation_id: Option<ConsultationId> = match a.based_on.as_slice() {
        [] => None,
        [b] => b
            .reference
            .as_ref()
            .and_then(|s| s.value.as_deref())
            .map(|r| input::ref_id("ServiceRequest", r))
            .transpose()?,
        _ => {
            return Err(FhirError::unprocessable(
                "business-rule",
                "an appointment here is based on at most one ServiceRequest",
            ))
        }
    };
    let text = |v: &Option<ft::String>| v.as_ref().and_then(|s| s.value.clone());
    let reason = text(&a.description)
        .or_else(|| a.reason_code.first().and_then(|c| text(&c.text)))
        .unwrap_or_default();
    Ok(visits::NewVisit {
        patient_id,
        slot_id,
        // With a slot, the practitioner is the slot's (checked against this one before booking).
        practitioner_id,
        start: a.start.as_ref().and_then(|t| t.value.clone()),
        end: a.end.as_ref().and_then(|t| t.value.clone()),
        reason,
        consultation_id,
    })
}

pub async fn create_appointment(
    st: &AppState,
    p: &Principal,
    a: fr::Appointment,
) -> FhirResult<fr::Appointment> {
    p.require(CLINICIANS)?;
    let mut n = new_visit(&a)?;
    if let Some(slot_id) = n.slot_id {
        // The service books a slot with its schedule's clinician; a participant naming someone else is a mistake
        // the client should hear about rather than a silently different appointment.
        if let Some(named) = n.practitioner_id.take() {
            let store = st.store();
            let sl = store.visit_get_slot(slot_id).await?;
            let holder = store
                .visit_get_schedule(sl.schedule_id)
                .await?
                .practitioner_id;
            if holder != named {
                return Err(FhirError::unprocessable(
                    "business-rule",
                    format!("Slot/{slot_id} is on the schedule of Practitioner/{holder}, not Practitioner/{named}"),
                ));
            }
        }
    }
    let v = visits::book(st, p, n).await?;
    Ok(appointment(&v))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn date_search_values_are_intervals() {
        let (lo, hi) = date_bounds("date", "2030-03-01").unwrap();
        assert_eq!(lo, Some(t("2030-03-01T00:00:00Z")));
        assert_eq!(hi, Some(t("2030-03-02T00:00:00Z")));
        assert_eq!(
            date_bounds("date", "ge2030-12").unwrap(),
            (Some(t("2030-12-01T00:00:00Z")), None)
        );
        assert_eq!(
            date_bounds("date", "lt2031").unwrap(),
            (None, Some(t("2031-01-01T00:00:00Z")))
        );
        assert_eq!(
            date_bounds("date", "gt2030-03-01T09:00:00+02:00").unwrap(),
            (Some(t("2030-03-01T07:00:01Z")), None)
        );
        assert_eq!(
            date_bounds("date", "le2030-03-01T09:00:00").unwrap(),
            (None, Some(t("2030-03-01T09:00:01Z")))
        );
        for bad in [
            "tomorrow",
            "ne2030-01-01",
            "2030-13",
            "2030-02-30",
            "sa2030",
            "",
        ] {
            let e = date_bounds("date", bad).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad}");
        }
        let range = (
            Some(t("2030-03-01T00:00:00Z")),
            Some(t("2030-03-02T00:00:00Z")),
        );
        assert!(within(t("2030-03-01T23:59:59Z"), range));
        assert!(!within(t("2030-03-02T00:00:00Z"), range));
    }

    #[test]
    fn statuses_map_both_ways() {
        assert_eq!(
            visit_statuses("Appointment", "arrived").unwrap(),
            vec![VisitStatus::Arrived, VisitStatus::InProgress]
        );
        assert_eq!(
            visit_statuses("Encounter", "planned,finished").unwrap(),
            vec![VisitStatus::Booked, VisitStatus::Finished]
        );
        assert!(visit_statuses("Appointment", "planned").is_err());
        assert!(visit_statuses("Encounter", "noshow").is_err());
    }

    #[test]
    fn a_prescription_is_valid_r4_with_a_fhir_dosage() {
        let item = FormularyItem {
            code: "308191".into(),
            system: RXNORM.into(),
            display: "amoxicillin 500 MG Oral Capsule".into(),
            ingredient: "amoxicillin".into(),
            strength: "500 mg".into(),
            form: "capsule".into(),
            route: "oral".into(),
            classes: vec!["penicillin".into()],
        };
        let rx = Prescription {
            id: Uuid::now_v7(),
            patient_id: Some(PatientId::new()),
            patient_name: "Aigerim N".into(),
            patient_birth_date: None,
            consultation_id: None,
            visit_id: Some(Uuid::now_v7()),
            prescriber_id: Some(UserId::new()),
            prescriber_name: "Dr A".into(),
            institution_name: "H".into(),
            medication: item.clone(),
            dosage: Dosage {
                dose: "0.5".into(),
                dose_unit: "g".into(),
                route: "oral".into(),
                times_per_day: 3,
                duration_days: 7,
                quantity: 21,
                instructions: "after meals".into(),
            },
            warnings: vec![],
            override_reason: None,
            status: RxStatus::Active,
            origin_node: None,
            destination_node: None,
            token: String::new(),
            created_at: Utc::now(),
        };
        let f = Formulary([(RXNORM.to_owned(), "308191".to_owned())].into());
        let r = Resource::MedicationRequest(Box::new(medication_request(&rx, &f)));
        let json = fhirbolt::json::to_vec(&r, None).unwrap();
        let cfg = Some(fhirbolt::serde::DeserializationConfig {
            mode: fhirbolt::serde::DeserializationMode::Strict,
        });
        let back: Resource = fhirbolt::json::from_slice(&json, cfg).unwrap();
        assert_eq!(back, r);
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        let d = &v["dosageInstruction"][0];
        assert_eq!(d["timing"]["repeat"]["frequency"], 3);
        assert_eq!(d["timing"]["repeat"]["boundsDuration"]["code"], "d");
        assert_eq!(d["route"]["coding"][0]["code"], "26643006");
        assert_eq!(d["doseAndRate"][0]["doseQuantity"]["code"], "g");
        assert_eq!(v["medicationReference"]["reference"], "Medication/308191");
        assert!(v["encounter"]["reference"]
            .as_str()
            .unwrap()
            .starts_with("Encounter/"));
        // Not in this node's formulary (received from elsewhere): the coding travels in the request itself.
        let none = Formulary(HashSet::new());
        let r = Resource::MedicationRequest(Box::new(medication_request(&rx, &none)));
        let v: serde_json::Value =
            serde_json::from_slice(&fhirbolt::json::to_vec(&r, None).unwrap()).unwrap();
        assert_eq!(
            v["medicationCodeableConcept"]["coding"][0]["system"],
            RXNORM
        );
        let m = Resource::Medication(Box::new(medication(&item)));
        let v: serde_json::Value =
            serde_json::from_slice(&fhirbolt::json::to_vec(&m, None).unwrap()).unwrap();
        assert_eq!(v["ingredient"][0]["strength"]["numerator"]["code"], "mg");
        assert!(!fhir_id("code with spaces"));
    }
}
