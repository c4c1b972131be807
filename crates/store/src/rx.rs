//! e-Prescription: what a node keeps to prescribe, check, dispense and send prescriptions abroad.
//!
//! - **Reference tables the node imports** ([`RxTable`]): the formulary (coded medications, FHIR `Medication`), the
//!   drug–drug interaction rules and the allergy cross-reactivity rules. An import replaces a table wholesale in one
//!   transaction (no half-imported formulary).
//! - **Patient allergies** ([`Allergy`], shaped after FHIR `AllergyIntolerance`).
//! - **Prescriptions** ([`Prescription`], FHIR `MedicationRequest` with its dosage) with the warnings shown to the
//!   prescriber and, when a severe one was overridden, the reason; **dispenses** ([`Dispense`], FHIR
//!   `MedicationDispense`), recorded here or reported back by the dispensing node.
//!
//! Writes are [`RxChange`]s of a unit of work (`Store::apply` with `Change::Rx`), so a cross-border prescription's
//! outbox row commits with the prescription. Reads of patient data take the [`Actor`]: allergies and prescriptions
//! of a patient are visible exactly when the patient is; a prescription received from another node for dispensing
//! here (no local patient) is visible to the node's clinicians.

use async_trait::async_trait;
use caravan_domain::*;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Result;

/// RxNorm's code system URI (FHIR `Coding.system`).
pub const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";

/// One of the reference tables a node imports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RxTable {
    Formulary,
    Interactions,
    Allergies,
}

impl RxTable {
    pub const ALL: [RxTable; 3] = [
        RxTable::Formulary,
        RxTable::Interactions,
        RxTable::Allergies,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Formulary => "formulary",
            Self::Interactions => "interactions",
            Self::Allergies => "allergies",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// A coded medication of the formulary (FHIR `Medication`): one product, one strength, one form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormularyItem {
    /// The product's code (an RxNorm CUI in the starter formulary); the key of the table.
    pub code: String,
    /// Code system URI, [`RXNORM`] by default.
    pub system: String,
    /// Display name, e.g. "amoxicillin 500 MG Oral Capsule".
    pub display: String,
    /// The active ingredient (INN, lower case), e.g. "amoxicillin": what interaction rules name.
    pub ingredient: String,
    /// Strength as written, e.g. "500 mg".
    pub strength: String,
    /// Dose form, e.g. "capsule".
    pub form: String,
    /// Usual route, e.g. "oral".
    pub route: String,
    /// Classes the ingredient belongs to (lower case ids, e.g. "penicillin", "beta-lactam", "nsaid"): what
    /// allergy and class-level interaction rules name.
    pub classes: Vec<String>,
}

/// How severe a warning is. `High` blocks the prescription unless the prescriber overrides it with a reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Moderate,
    High,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Moderate => "moderate",
            Self::High => "high",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "low" => Some(Self::Low),
            "moderate" => Some(Self::Moderate),
            "high" => Some(Self::High),
            _ => None,
        }
    }
}

/// A drug–drug interaction rule: `a` and `b` each name an ingredient or a class (either order matches).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InteractionRule {
    pub a: String,
    pub b: String,
    pub severity: Severity,
    /// Why, as shown to the prescriber.
    pub reason: String,
    /// The published source of the rule.
    pub source: String,
}

impl InteractionRule {
    /// The table key: the two names in order.
    pub fn key(&self) -> String {
        let (x, y) = if self.a <= self.b {
            (&self.a, &self.b)
        } else {
            (&self.b, &self.a)
        };
        format!("{x}|{y}")
    }
}

/// An allergy rule: a patient allergic to `allergen` (an ingredient or class) is warned about drugs of
/// `drug_class` (an ingredient or class), e.g. penicillin → cephalosporin (cross-reactivity).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllergyRule {
    pub allergen: String,
    pub drug_class: String,
    pub severity: Severity,
    pub reason: String,
    pub source: String,
}

impl AllergyRule {
    pub fn key(&self) -> String {
        format!("{}|{}", self.allergen, self.drug_class)
    }
}

/// A patient's allergy or intolerance (FHIR `AllergyIntolerance`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allergy {
    pub id: Uuid,
    pub patient_id: PatientId,
    /// The substance: an ingredient or class id as the tables name them (e.g. "penicillin").
    pub substance: String,
    /// `low`, `high` or `unable-to-assess` (FHIR `criticality`).
    pub criticality: String,
    /// The reaction seen, free text (e.g. "urticaria").
    pub reaction: String,
    /// `active` or `inactive` (FHIR `clinicalStatus`).
    pub status: String,
    pub recorded_by: UserId,
    pub recorded_at: DateTime<Utc>,
}

/// The dosage of a prescription (FHIR `Dosage` + `dispenseRequest`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dosage {
    /// Dose per administration, as a decimal string (e.g. "500"), in `dose_unit`.
    pub dose: String,
    /// UCUM unit of the dose, e.g. "mg".
    pub dose_unit: String,
    pub route: String,
    /// Administrations per day.
    pub times_per_day: u32,
    pub duration_days: u32,
    /// Units to dispense (e.g. capsules).
    pub quantity: u32,
    /// Further instructions (e.g. "with food").
    pub instructions: String,
}

/// A warning the checks raised when the prescription was written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RxWarning {
    /// `allergy` or `interaction`.
    pub kind: String,
    pub severity: Severity,
    /// What it is about: the allergy substance, or the other drug.
    pub subject: String,
    pub reason: String,
    pub source: String,
}

/// `active`, `completed` (dispensed) or `cancelled` (FHIR `MedicationRequest.status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RxStatus {
    Active,
    Completed,
    Cancelled,
}

impl RxStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "completed" => Some(Self::Completed),
            "cancelled" => Some(Self::Cancelled),
            _ => None,
        }
    }
}

/// A prescription (FHIR `MedicationRequest`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prescription {
    pub id: Uuid,
    /// The local patient; `None` for a prescription received from another node for dispensing here.
    pub patient_id: Option<PatientId>,
    /// What a pharmacy needs to identify the patient: name and birth date.
    pub patient_name: String,
    pub patient_birth_date: Option<chrono::NaiveDate>,
    /// The consultation it was written in, if any.
    pub consultation_id: Option<ConsultationId>,
    /// The video visit (FHIR `Encounter`, `caravan_store::visits::Visit`) it was written after or during, if
    /// any. Prescriptions stored before this field existed read as `None`.
    #[serde(default)]
    pub visit_id: Option<Uuid>,
    pub prescriber_id: Option<UserId>,
    pub prescriber_name: String,
    pub institution_name: String,
    pub medication: FormularyItem,
    pub dosage: Dosage,
    pub warnings: Vec<RxWarning>,
    /// Why a severe warning was overridden.
    pub override_reason: Option<String>,
    pub status: RxStatus,
    /// The node that wrote it, when it came from another node.
    pub origin_node: Option<String>,
    /// The node it was sent to for dispensing.
    pub destination_node: Option<String>,
    /// The signed token (compact JWS) the printed QR carries.
    pub token: String,
    pub created_at: DateTime<Utc>,
}

/// A dispense (FHIR `MedicationDispense`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dispense {
    pub id: Uuid,
    pub prescription_id: Uuid,
    pub quantity: u32,
    /// Who dispensed, as they name themselves (a pharmacist, a pharmacy).
    pub performer: String,
    pub note: String,
    /// The node where it was dispensed, when it was reported back from another node.
    pub node: Option<String>,
    pub dispensed_at: DateTime<Utc>,
}

/// One write of the e-prescription records (a `Change::Rx` of a unit of work).
#[derive(Clone, Debug)]
pub enum RxChange {
    /// Replace a reference table with these rows (key, JSON document).
    ReplaceTable {
        table: RxTable,
        rows: Vec<(String, serde_json::Value)>,
    },
    InsertAllergy(Allergy),
    InsertPrescription(Box<Prescription>),
    /// Set a prescription's status; `NotFound("prescription")` if absent.
    SetStatus {
        id: Uuid,
        status: RxStatus,
    },
    /// Fails with `Duplicate("dispense")` if its id exists, `NotFound("prescription")` without its prescription.
    InsertDispense(Dispense),
}

/// Reads of the e-prescription records.
#[async_trait]
pub trait RxStore: Send + Sync {
    /// A reference table's documents, ordered by key.
    async fn rx_table(&self, table: RxTable) -> Result<Vec<serde_json::Value>>;
    /// One formulary entry by code.
    async fn rx_formulary_item(&self, code: &str) -> Result<FormularyItem>;
    /// The allergies of a patient the actor may see (`NotFound("patient")` otherwise), newest first.
    async fn rx_allergies(&self, actor: &Actor, patient: PatientId) -> Result<Vec<Allergy>>;
    /// The prescriptions of a patient the actor may see, newest first.
    async fn rx_prescriptions(
        &self,
        actor: &Actor,
        patient: PatientId,
    ) -> Result<Vec<Prescription>>;
    /// One prescription, if the actor may see it (`NotFound("prescription")` otherwise): when they may see its
    /// patient, and for a dispenser ([`rx_dispenser`]) any prescription by its id, received ones included.
    async fn rx_prescription(&self, actor: &Actor, id: Uuid) -> Result<Prescription>;
    /// Prescriptions received from other nodes for dispensing here (dispensers only; empty for other roles).
    async fn rx_received(&self, actor: &Actor, limit: u32) -> Result<Vec<Prescription>>;
    /// One prescription without actor scoping: for the node's own federation work only.
    async fn rx_prescription_unscoped(&self, id: Uuid) -> Result<Prescription>;
    /// The dispenses of a prescription (call after a scoped read of the prescription), oldest first.
    async fn rx_dispenses(&self, prescription: Uuid) -> Result<Vec<Dispense>>;
    /// One dispense by id, without actor scoping (`NotFound("dispense")` if absent): read its prescription with
    /// [`RxStore::rx_prescription`] before showing it.
    async fn rx_dispense(&self, id: Uuid) -> Result<Dispense>;
}

/// Whether an actor of this role dispenses (a pharmacist): they read any prescription of the node by its id, as
/// it is presented at the pharmacy, and the list of prescriptions received for dispensing here, but never a
/// patient's record or a patient's list of prescriptions.
pub fn rx_dispenser(role: Role) -> bool {
    role.dispenses()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Prescriptions stored before `visit_id` existed keep reading (as written after no visit).
    #[test]
    fn a_prescription_without_visit_id_reads_as_none() {
        let mut v = serde_json::json!({
            "id": Uuid::now_v7(), "patient_id": null, "patient_name": "A B", "patient_birth_date": null,
            "consultation_id": null, "prescriber_id": null, "prescriber_name": "Dr", "institution_name": "H",
            "medication": { "code": "308191", "system": RXNORM, "display": "amoxicillin 500 MG Oral Capsule",
                "ingredient": "amoxicillin", "strength": "500 mg", "form": "capsule", "route": "oral", "classes": [] },
            "dosage": { "dose": "500", "dose_unit": "mg", "route": "oral", "times_per_day": 3, "duration_days": 7,
                "quantity": 21, "instructions": "" },
            "warnings": [], "override_reason": null, "status": "active", "origin_node": null,
            "destination_node": null, "token": "t", "created_at": "2026-12-01T10:00:00Z"
        });
        let old: Prescription = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(old.visit_id, None);
        let visit = Uuid::now_v7();
        v["visit_id"] = serde_json::json!(visit);
        let new: Prescription = serde_json::from_value(v).unwrap();
        assert_eq!(new.visit_id, Some(visit));
    }
}
