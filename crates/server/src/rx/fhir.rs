//! FHIR R4 JSON of the e-prescription records: MedicationRequest (with its Medication contained), MedicationDispense
//! and AllergyIntolerance, gathered in a `collection` Bundle. Plain JSON built to the R4 resource definitions (the
//! `/fhir` facade's fhirbolt models are tied to the consultation service; these are served from `/api/v1/rx`).

use caravan_store::{Allergy, Dispense, Prescription, RxStatus};
use serde_json::{json, Value};

const UCUM: &str = "http://unitsofmeasure.org";

pub fn medication_request(rx: &Prescription) -> Value {
    let med = &rx.medication;
    let mut v = json!({
        "resourceType": "MedicationRequest",
        "id": rx.id,
        "status": match rx.status { RxStatus::Active => "active", RxStatus::Completed => "completed", RxStatus::Cancelled => "cancelled" },
        "intent": "order",
        "contained": [{
            "resourceType": "Medication",
            "id": "med",
            "code": { "coding": [{ "system": med.system, "code": med.code, "display": med.display }], "text": med.display },
            "form": { "text": med.form },
            "ingredient": [{ "itemCodeableConcept": { "text": med.ingredient }, "isActive": true }],
        }],
        "medicationReference": { "reference": "#med" },
        "authoredOn": rx.created_at.to_rfc3339(),
        "requester": { "display": format!("{} ({})", rx.prescriber_name, rx.institution_name) },
        "dosageInstruction": [{
            "text": super::dosage_text(&rx.dosage),
            "route": { "text": rx.dosage.route },
            "timing": { "repeat": {
                "frequency": rx.dosage.times_per_day, "period": 1, "periodUnit": "d",
                "boundsDuration": { "value": rx.dosage.duration_days, "unit": "days", "system": UCUM, "code": "d" }
            } },
            "doseAndRate": [{ "doseQuantity": {
                "value": rx.dosage.dose.parse::<serde_json::Number>().ok(),
                "unit": rx.dosage.dose_unit, "system": UCUM, "code": rx.dosage.dose_unit
            } }],
            "patientInstruction": rx.dosage.instructions,
        }],
        "dispenseRequest": {
            "quantity": { "value": rx.dosage.quantity },
            "expectedSupplyDuration": { "value": rx.dosage.duration_days, "unit": "days", "system": UCUM, "code": "d" },
        },
        "subject": match rx.patient_id {
            Some(p) => json!({ "reference": format!("Patient/{p}"), "display": rx.patient_name }),
            None => json!({ "display": rx.patient_name }),
        },
    });
    if let Some(visit) = rx.visit_id {
        v["encounter"] = json!({ "reference": format!("Encounter/{visit}") });
    }
    if let Some(c) = rx.consultation_id {
        v["basedOn"] = json!([{ "reference": format!("ServiceRequest/{c}") }]);
    }
    if let Some(node) = &rx.origin_node {
        v["meta"] = json!({ "source": node });
    }
    if !rx.warnings.is_empty() {
        v["detectedIssue"] = Value::Array(
            rx.warnings
                .iter()
                .map(|w| json!({ "display": format!("{} ({}): {}", w.kind, w.severity.as_str(), w.reason) }))
                .collect(),
        );
    }
    if let Some(r) = &rx.override_reason {
        v["note"] = json!([{ "text": format!("Severe warning overridden: {r}") }]);
    }
    v
}

pub fn medication_dispense(rx: &Prescription, d: &Dispense) -> Value {
    json!({
        "resourceType": "MedicationDispense",
        "id": d.id,
        "status": "completed",
        "medicationCodeableConcept": { "coding": [{ "system": rx.medication.system, "code": rx.medication.code, "display": rx.medication.display }] },
        "authorizingPrescription": [{ "reference": format!("MedicationRequest/{}", rx.id) }],
        "quantity": { "value": d.quantity },
        "whenHandedOver": d.dispensed_at.to_rfc3339(),
        "performer": [{ "actor": { "display": match &d.node { Some(n) => format!("{} ({n})", d.performer), None => d.performer.clone() } } }],
        "note": if d.note.is_empty() { json!([]) } else { json!([{ "text": d.note }]) },
    })
}

pub fn allergy_intolerance(a: &Allergy) -> Value {
    json!({
        "resourceType": "AllergyIntolerance",
        "id": a.id,
        "clinicalStatus": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": a.status }] },
        "criticality": a.criticality,
        "code": { "text": a.substance },
        "patient": { "reference": format!("Patient/{}", a.patient_id) },
        "recordedDate": a.recorded_at.to_rfc3339(),
        "reaction": if a.reaction.is_empty() { json!([]) } else { json!([{ "description": a.reaction, "manifestation": [{ "text": a.reaction }] }]) },
    })
}

/// A `collection` Bundle of a prescription and its dispenses.
pub fn bundle(rx: &Prescription, dispenses: &[Dispense]) -> Value {
    let mut entries = vec![json!({ "resource": medication_request(rx) })];
    entries.extend(
        dispenses
            .iter()
            .map(|d| json!({ "resource": medication_dispense(rx, d) })),
    );
    json!({ "resourceType": "Bundle", "type": "collection", "entry": entries })
}
