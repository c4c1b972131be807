//! FHIR R4 → domain: what a create request asks for, with a 4xx that names the element that is missing or wrong.

use crate::error::{FhirError, FhirResult};
use crate::map;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use caravan_domain::*;
use caravan_server::consult::{NewConsultation, NewPatient};
use fhirbolt::model::r4::resources as fr;
use fhirbolt::model::r4::types as ft;
use fhirbolt::serde::{DeserializationConfig, DeserializationMode};

/// Refuse bodies that are not FHIR JSON (415), then parse strictly with the fhirbolt model (400 with the parser's
/// message when the JSON is malformed or does not fit the resource).
pub fn parse<T>(headers: &HeaderMap, body: &[u8], rtype: &str) -> FhirResult<T>
where
    T: for<'de> fhirbolt::serde::DeserializeResource<'de>,
{
    let ct = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime != "application/fhir+json" && mime != "application/json" {
        return Err(FhirError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not-supported",
            format!("content type {ct:?} is not accepted; send application/fhir+json"),
        ));
    }
    // The resource type is checked first so that a Patient posted to /fhir/Consent gets a message that says so.
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| FhirError::invalid(format!("invalid JSON: {e}")))?;
    match value.get("resourceType").and_then(|v| v.as_str()) {
        Some(t) if t == rtype => {}
        Some(t) => {
            return Err(FhirError::invalid(format!(
                "resourceType is {t:?} but this endpoint takes {rtype}"
            )))
        }
        None => return Err(FhirError::invalid("resourceType is missing")),
    }
    drop(value);
    // fhirbolt's JSON deserialiser is used on the raw bytes: its `from_json_value` path goes through the element
    // model, which panics on some inputs (an empty array, for one). The parser is also fenced with catch_unwind so
    // that a panic on an input nobody foresaw becomes a 400, never a dropped connection.
    let config = Some(DeserializationConfig {
        mode: DeserializationMode::Strict,
    });
    match std::panic::catch_unwind(|| fhirbolt::json::from_slice::<T>(body, config)) {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(FhirError::invalid(format!(
            "not a valid FHIR R4 {rtype}: {e}"
        ))),
        Err(_) => Err(FhirError::invalid(format!(
            "not a valid FHIR R4 {rtype}: the parser could not read it"
        ))),
    }
}

fn required(element: &str) -> FhirError {
    FhirError::unprocessable("required", format!("{element} is required"))
}

/// The id in a reference (`Patient/123`, `http://host/fhir/Patient/123`) or search value (`123`), for the
/// expected resource type.
pub fn ref_id<T: std::str::FromStr>(rtype: &str, value: &str) -> FhirResult<T> {
    let value = value.trim();
    let id = match value.rsplit_once('/') {
        Some((head, id)) => {
            let t = head.rsplit('/').next().unwrap_or(head);
            if t != rtype {
                return Err(FhirError::invalid(format!(
                    "{value:?} does not refer to a {rtype}"
                )));
            }
            id
        }
        None => value,
    };
    id.parse()
        .map_err(|_| FhirError::invalid(format!("{id:?} is not a valid {rtype} id")))
}

fn reference_of<T: std::str::FromStr>(
    element: &str,
    rtype: &str,
    r: Option<&ft::Reference>,
) -> FhirResult<T> {
    let s = r
        .and_then(|r| r.reference.as_ref())
        .and_then(|s| s.value.as_deref())
        .ok_or_else(|| required(element))?;
    ref_id(rtype, s)
}

fn text(s: Option<&ft::String>) -> Option<&str> {
    s.and_then(|s| s.value.as_deref())
}

pub fn new_patient(p: &fr::Patient) -> FhirResult<NewPatient> {
    let name = p.name.first().ok_or_else(|| required("Patient.name"))?;
    let family = text(name.family.as_ref()).ok_or_else(|| required("Patient.name.family"))?;
    let given = name
        .given
        .iter()
        .filter_map(|g| g.value.as_deref())
        .collect::<Vec<_>>()
        .join(" ");
    if given.is_empty() {
        return Err(required("Patient.name.given"));
    }
    let birth = p
        .birth_date
        .as_ref()
        .and_then(|d| d.value.as_deref())
        .ok_or_else(|| required("Patient.birthDate"))?;
    let birth_date = chrono::NaiveDate::parse_from_str(birth, "%Y-%m-%d").map_err(|_| {
        FhirError::unprocessable(
            "value",
            format!("Patient.birthDate {birth:?} must be a full date (YYYY-MM-DD)"),
        )
    })?;
    let gender = p
        .gender
        .as_ref()
        .and_then(|g| g.value.as_deref())
        .unwrap_or("unknown");
    let sex = gender
        .parse::<Sex>()
        .map_err(|e| FhirError::unprocessable("code-invalid", format!("Patient.gender: {e}")))?;
    let national_id = p
        .identifier
        .iter()
        .find(|i| {
            i.system.as_ref().and_then(|s| s.value.as_deref()) == Some(map::NATIONAL_ID_SYSTEM)
        })
        .and_then(|i| text(i.value.as_ref()))
        .map(str::to_owned);
    let languages = p
        .communication
        .iter()
        .filter_map(|c| {
            c.language
                .coding
                .iter()
                .find_map(|cd| cd.code.as_ref().and_then(|c| c.value.clone()))
        })
        .collect();
    Ok(NewPatient {
        given_name: given,
        family_name: family.to_owned(),
        birth_date,
        sex,
        national_id,
        languages,
    })
}

fn specialty_of(cc: Option<&ft::CodeableConcept>) -> Option<String> {
    cc?.coding.iter().find_map(|c| {
        let system = c.system.as_ref().and_then(|s| s.value.as_deref());
        if system.is_none() || system == Some(map::SPECIALTY_SYSTEM) {
            c.code.as_ref().and_then(|c| c.value.clone())
        } else {
            None
        }
    })
}

/// A ServiceRequest creates a consultation: a draft, or submitted (and routed) when `status` is `active`.
pub fn new_consultation(sr: &fr::ServiceRequest) -> FhirResult<NewConsultation> {
    let submit = match sr.status.value.as_deref() {
        Some("draft") => false,
        Some("active") => true,
        other => {
            return Err(FhirError::unprocessable(
                "code-invalid",
                format!("ServiceRequest.status {other:?}: a new request is draft or active"),
            ))
        }
    };
    let patient_id = reference_of(
        "ServiceRequest.subject",
        "Patient",
        Some(sr.subject.as_ref()),
    )?;
    let specialty = specialty_of(sr.code.as_deref())
        .or_else(|| specialty_of(sr.performer_type.as_deref()))
        .ok_or_else(|| {
            required("ServiceRequest.code (a specialty code) or ServiceRequest.performerType")
        })?;
    let urgency = match sr.priority.as_ref().and_then(|p| p.value.as_deref()) {
        None => Urgency::Routine,
        Some(p) => map::urgency_from_priority(p).ok_or_else(|| {
            FhirError::unprocessable(
                "code-invalid",
                format!("ServiceRequest.priority {p:?} is not routine, urgent, asap or stat"),
            )
        })?,
    };
    let question = sr
        .reason_code
        .iter()
        .find_map(|c| text(c.text.as_ref()))
        .ok_or_else(|| required("ServiceRequest.reasonCode.text (the clinical question)"))?
        .to_owned();
    let clinical_summary = sr
        .note
        .iter()
        .filter_map(|n| n.text.value.as_deref())
        .collect::<Vec<_>>()
        .join("\n\n");
    Ok(NewConsultation {
        patient_id,
        question,
        clinical_summary,
        specialty,
        urgency,
        languages: Vec::new(),
        submit,
    })
}

pub struct NewMessage {
    pub consultation: ConsultationId,
    pub parent: Option<MessageId>,
    pub body: String,
}

pub fn new_message(c: &fr::Communication) -> FhirResult<NewMessage> {
    let consultation = reference_of(
        "Communication.basedOn (the ServiceRequest)",
        "ServiceRequest",
        c.based_on.first(),
    )?;
    let parent = match c.in_response_to.first() {
        Some(r) => Some(reference_of(
            "Communication.inResponseTo",
            "Communication",
            Some(r),
        )?),
        None => None,
    };
    let body = c
        .payload
        .iter()
        .filter_map(|p| match &p.content {
            fr::CommunicationPayloadContent::String(s) => s.value.as_deref(),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n");
    if body.is_empty() {
        return Err(required("Communication.payload.contentString"));
    }
    Ok(NewMessage {
        consultation,
        parent,
        body,
    })
}

pub struct NewConsent {
    pub patient: PatientId,
    pub scope: ConsentScope,
    pub granted: bool,
    pub note: String,
}

pub fn new_consent(c: &fr::Consent) -> FhirResult<NewConsent> {
    let patient = reference_of("Consent.patient", "Patient", c.patient.as_deref())?;
    let scope_code = c
        .category
        .iter()
        .flat_map(|cc| cc.coding.iter())
        .find(|cd| {
            cd.system.as_ref().and_then(|s| s.value.as_deref()) == Some(map::CONSENT_SCOPE_SYSTEM)
        })
        .and_then(|cd| cd.code.as_ref().and_then(|c| c.value.as_deref()))
        .ok_or_else(|| {
            required(&format!(
                "Consent.category with a code of {} (consultation, cross_border, share_identity)",
                map::CONSENT_SCOPE_SYSTEM
            ))
        })?;
    let scope = scope_code
        .parse::<ConsentScope>()
        .map_err(|e| FhirError::unprocessable("code-invalid", e.to_string()))?;
    let status = c.status.value.as_deref().unwrap_or("");
    let provision = c
        .provision
        .as_ref()
        .and_then(|p| p.r#type.as_ref())
        .and_then(|t| t.value.as_deref());
    // `rejected` is how FHIR R4 says the patient refused; a `deny` provision says the same for an active record.
    let granted = match (status, provision) {
        ("active", None | Some("permit")) => true,
        ("active", Some("deny")) | ("rejected", _) => false,
        _ => {
            return Err(FhirError::unprocessable(
                "code-invalid",
                format!(
                    "Consent.status {status:?} with provision.type {provision:?}: record active (permit or deny) or rejected"
                ),
            ))
        }
    };
    let note = c
        .source
        .as_ref()
        .and_then(|s| match s {
            fr::ConsentSource::Reference(r) => text(r.display.as_ref()).map(str::to_owned),
            fr::ConsentSource::Attachment(a) => text(a.title.as_ref()).map(str::to_owned),
            _ => None,
        })
        .unwrap_or_default();
    Ok(NewConsent {
        patient,
        scope,
        granted,
        note,
    })
}

pub struct NewDocument {
    pub consultation: ConsultationId,
    pub filename: String,
    pub content_type: String,
    pub bytes: bytes::Bytes,
}

pub fn new_document(d: &fr::DocumentReference) -> FhirResult<NewDocument> {
    let consultation = reference_of(
        "DocumentReference.context.related (the ServiceRequest)",
        "ServiceRequest",
        d.context.as_ref().and_then(|c| c.related.first()),
    )?;
    let att = &d
        .content
        .first()
        .ok_or_else(|| required("DocumentReference.content"))?
        .attachment;
    let content_type = att
        .content_type
        .as_ref()
        .and_then(|c| c.value.as_deref())
        .ok_or_else(|| required("DocumentReference.content.attachment.contentType"))?
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_owned();
    let data = att
        .data
        .as_ref()
        .and_then(|d| d.value.as_deref())
        .ok_or_else(|| {
            required(
                "DocumentReference.content.attachment.data (inline base64; url is not fetched)",
            )
        })?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| {
            FhirError::invalid(format!(
                "DocumentReference.content.attachment.data is not base64: {e}"
            ))
        })?;
    let filename = text(att.title.as_ref())
        .or_else(|| text(d.description.as_ref()))
        .unwrap_or("attachment")
        .to_owned();
    Ok(NewDocument {
        consultation,
        filename,
        content_type,
        bytes: bytes.into(),
    })
}

pub struct NewReport {
    pub consultation: ConsultationId,
    pub findings: String,
    pub impression: String,
    pub recommendations: String,
}

/// A DiagnosticReport issues the consultation's report: `conclusion` is the impression; findings and
/// recommendations come from text `presentedForm` attachments titled so (the shape this node serves).
pub fn new_report(r: &fr::DiagnosticReport) -> FhirResult<NewReport> {
    let consultation = reference_of(
        "DiagnosticReport.basedOn (the ServiceRequest)",
        "ServiceRequest",
        r.based_on.first(),
    )?;
    let section = |name: &str| -> FhirResult<Option<String>> {
        match r
            .presented_form
            .iter()
            .find(|a| text(a.title.as_ref()) == Some(name))
            .and_then(|a| a.data.as_ref().and_then(|d| d.value.as_deref()))
        {
            None => Ok(None),
            Some(data) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(data.trim())
                    .map_err(|e| {
                        FhirError::invalid(format!("presentedForm {name:?} is not base64: {e}"))
                    })?;
                String::from_utf8(bytes).map(Some).map_err(|_| {
                    FhirError::invalid(format!("presentedForm {name:?} is not UTF-8 text"))
                })
            }
        }
    };
    let impression = match text(r.conclusion.as_ref()) {
        Some(c) => c.to_owned(),
        None => section("impression")?.ok_or_else(|| required("DiagnosticReport.conclusion"))?,
    };
    Ok(NewReport {
        consultation,
        findings: section("findings")?.unwrap_or_default(),
        impression,
        recommendations: section("recommendations")?.unwrap_or_default(),
    })
}
