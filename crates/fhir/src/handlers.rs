//! The REST interactions: `metadata`, `read`, `search-type` and `create`.

use crate::error::{FhirError, FhirResult, FHIR_JSON};
use crate::{input, map, RESOURCE_TYPES};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use caravan_domain::*;
use caravan_server::audit::event;
use caravan_server::auth::{authenticate, Principal};
use caravan_server::consult::{self, EventRequest};
use caravan_server::AppState;
use caravan_store::{ConsultationFilter, PatientFilter};
use fhirbolt::model::r4::resources as fr;
use fhirbolt::model::r4::Resource;

/// Search results are capped: FHIR paging (`next` links) is not offered yet, so `_count` may only lower this.
const MAX_COUNT: usize = 200;

/// Roles the JSON API lets read clinical data; the FHIR facade uses the same lists.
const CLINICAL: &[Role] = &[Role::Referrer, Role::Consultant, Role::Coordinator];
const CASE_READERS: &[Role] = &[
    Role::Referrer,
    Role::Consultant,
    Role::Coordinator,
    Role::Patient,
];

fn resource_id(r: &Resource) -> Option<String> {
    r.id().and_then(|id| id.value.clone())
}

/// The type name of the resources this facade produces (fhirbolt's enum has no accessor for it).
fn type_name(r: &Resource) -> &'static str {
    match r {
        Resource::Patient(_) => "Patient",
        Resource::Practitioner(_) => "Practitioner",
        Resource::PractitionerRole(_) => "PractitionerRole",
        Resource::Organization(_) => "Organization",
        Resource::ServiceRequest(_) => "ServiceRequest",
        Resource::Task(_) => "Task",
        Resource::Communication(_) => "Communication",
        Resource::DiagnosticReport(_) => "DiagnosticReport",
        Resource::Consent(_) => "Consent",
        Resource::DocumentReference(_) => "DocumentReference",
        Resource::Binary(_) => "Binary",
        Resource::AuditEvent(_) => "AuditEvent",
        Resource::Schedule(_) => "Schedule",
        Resource::Slot(_) => "Slot",
        Resource::Appointment(_) => "Appointment",
        Resource::Encounter(_) => "Encounter",
        Resource::MedicationRequest(_) => "MedicationRequest",
        Resource::MedicationDispense(_) => "MedicationDispense",
        Resource::Medication(_) => "Medication",
        Resource::Observation(_) => "Observation",
        Resource::Device(_) => "Device",
        Resource::Bundle(_) => "Bundle",
        Resource::OperationOutcome(_) => "OperationOutcome",
        Resource::CapabilityStatement(_) => "CapabilityStatement",
        _ => "Resource",
    }
}

fn respond(status: StatusCode, resource: Resource) -> Response {
    match fhirbolt::json::to_vec(&resource, None) {
        Ok(body) => (status, [(header::CONTENT_TYPE, FHIR_JSON)], body).into_response(),
        Err(e) => FhirError::internal(e).into_response(),
    }
}

async fn principal(st: &AppState, headers: &HeaderMap) -> FhirResult<Principal> {
    Ok(authenticate(headers, st).await?)
}

/// Base URL for `fullUrl` and `self` links, from the request's Host.
fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        })
        .unwrap_or("localhost");
    let scheme = match headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
    {
        Some("https") => "https",
        _ => "http",
    };
    format!("{scheme}://{host}/fhir")
}

pub async fn method_not_allowed() -> FhirError {
    FhirError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "not-supported",
        "this interaction is not supported; see /fhir/metadata",
    )
}

fn known_type(rtype: &str) -> FhirResult<()> {
    if RESOURCE_TYPES.contains(&rtype) {
        Ok(())
    } else {
        Err(FhirError::not_supported(format!(
            "resource type {rtype:?} is not served here; supported: {}",
            RESOURCE_TYPES.join(", ")
        )))
    }
}

// ---------------------------------------------------------------------------------------------------------------
// metadata

/// (type, search parameters, create supported)
const CAPABILITIES: &[(&str, &[&str], bool)] = &[
    ("Patient", &["name", "birthdate", "_count"], true),
    ("Practitioner", &["name", "_count"], false),
    (
        "PractitionerRole",
        &["specialty", "organization", "practitioner", "_count"],
        false,
    ),
    ("Organization", &["name", "type", "partof", "_count"], false),
    (
        "ServiceRequest",
        &[
            "patient",
            "subject",
            "status",
            "requester",
            "performer",
            "_count",
        ],
        true,
    ),
    (
        "Task",
        &["patient", "status", "owner", "focus", "_count"],
        false,
    ),
    ("Communication", &["based-on", "patient", "_count"], true),
    ("DiagnosticReport", &["based-on", "patient", "_count"], true),
    ("Consent", &["patient", "_count"], true),
    ("DocumentReference", &["related", "patient", "_count"], true),
    ("Binary", &[], false),
    ("AuditEvent", &["patient", "entity", "_count"], false),
    // Vital signs from remote monitoring (`monitoring`): read and search. Notifiable-disease reports
    // (`surveil`) are created here and read through the surveillance API.
    ("Observation", &["patient", "code", "date", "_count"], true),
    ("MeasureReport", &[], true),
    ("Device", &["patient", "_count"], false),
];

/// Types this facade only creates.
const CREATE_ONLY: &[&str] = &["MeasureReport"];

/// Every served type's capabilities: the handlers' own, then those of the modules they dispatch to.
fn all_capabilities() -> impl Iterator<Item = &'static (&'static str, &'static [&'static str], bool)>
{
    CAPABILITIES.iter().chain(crate::live::CAPABILITIES)
}

fn search_params_of(rtype: &str) -> &'static [&'static str] {
    all_capabilities()
        .find(|(t, _, _)| *t == rtype)
        .map(|(_, p, _)| *p)
        .unwrap_or(&[])
}

pub fn capability_statement() -> FhirResult<Resource> {
    let resources: Vec<serde_json::Value> = all_capabilities()
        .map(|(t, params, create)| {
            let mut interaction = if CREATE_ONLY.contains(t) {
                vec![]
            } else {
                vec![serde_json::json!({"code": "read"})]
            };
            if !params.is_empty() {
                interaction.push(serde_json::json!({"code": "search-type"}));
            }
            if *create {
                interaction.push(serde_json::json!({"code": "create"}));
            }
            let params: Vec<_> = params
                .iter()
                .filter(|p| **p != "_count")
                .map(|p| {
                    let ty = match *p {
                        "name" => "string",
                        "birthdate" | "date" | "start" => "date",
                        "status" | "type" | "specialty" | "code" => "token",
                        _ => "reference",
                    };
                    serde_json::json!({"name": p, "type": ty})
                })
                .collect();
            let mut r = serde_json::json!({ "type": t, "interaction": interaction });
            // FHIR JSON never carries empty arrays (and fhirbolt's parser panics on them).
            if !params.is_empty() {
                r["searchParam"] = serde_json::Value::Array(params);
            }
            r
        })
        .collect();
    // The statement is written as JSON and then parsed with the fhirbolt model in strict mode, which checks it
    // against the R4 structure; a mistake here fails the metadata test rather than reaching a client.
    let v = serde_json::json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-23",
        "publisher": "Caravan",
        "kind": "instance",
        "software": { "name": "Caravan", "version": env!("CARGO_PKG_VERSION") },
        "implementation": { "description": "Caravan node FHIR R4 facade" },
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "security": {
                "description": "Bearer API token (Authorization: Bearer ...) or a session cookie with the X-CSRF-Token header for writes. Every read and write is scoped by the user's institution and role and written to the audit chain."
            },
            "resource": resources,
        }],
    });
    // Parsed from bytes: fhirbolt's `from_json_value` path panics on empty arrays such as Binary's `searchParam`.
    let bytes = serde_json::to_vec(&v).map_err(FhirError::internal)?;
    fhirbolt::json::from_slice::<Resource>(&bytes, None).map_err(FhirError::internal)
}

pub async fn metadata() -> Response {
    match capability_statement() {
        Ok(r) => respond(StatusCode::OK, r),
        Err(e) => e.into_response(),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// read

pub async fn read(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path((rtype, id)): Path<(String, String)>,
) -> Response {
    match read_inner(&st, &headers, &rtype, &id).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

fn id<T: std::str::FromStr>(rtype: &str, id: &str) -> FhirResult<T> {
    // An id that is not one of ours cannot name a stored resource: that is "unknown", i.e. 404.
    id.parse()
        .map_err(|_| FhirError::not_found(format!("{rtype}/{id} is not known")))
}

async fn read_inner(
    st: &AppState,
    headers: &HeaderMap,
    rtype: &str,
    raw_id: &str,
) -> FhirResult<Response> {
    known_type(rtype)?;
    let p = principal(st, headers).await?;
    let resource = match rtype {
        "Patient" => {
            let pat = consult::get_patient(st, &p, id(rtype, raw_id)?).await?;
            Resource::Patient(Box::new(map::patient(&pat)))
        }
        "Practitioner" | "PractitionerRole" => {
            let u = directory_user(st, &p, id(rtype, raw_id)?).await?;
            if rtype == "Practitioner" {
                Resource::Practitioner(Box::new(map::practitioner(&u)))
            } else {
                Resource::PractitionerRole(Box::new(map::practitioner_role(&u)))
            }
        }
        "Organization" => {
            let i = st.store().get_institution(id(rtype, raw_id)?).await?;
            Resource::Organization(Box::new(map::organization(&i)))
        }
        "ServiceRequest" | "Task" | "DiagnosticReport" => {
            p.require(CASE_READERS)?;
            let view = consult::view(st, &p, id(rtype, raw_id)?).await?;
            let c = &view.consultation;
            match rtype {
                "ServiceRequest" => Resource::ServiceRequest(Box::new(map::service_request(c))),
                "Task" => Resource::Task(Box::new(map::task(c))),
                _ => {
                    let r = c.report.as_ref().ok_or_else(|| {
                        FhirError::not_found(format!(
                            "DiagnosticReport/{raw_id}: the consultation has no report yet"
                        ))
                    })?;
                    Resource::DiagnosticReport(Box::new(map::diagnostic_report(c, r)))
                }
            }
        }
        "Communication" => read_communication(st, &p, id(rtype, raw_id)?).await?,
        "Consent" => read_consent(st, &p, id(rtype, raw_id)?).await?,
        "DocumentReference" => {
            p.require(CLINICAL)?;
            let aid: AttachmentId = id(rtype, raw_id)?;
            let a = st
                .store()
                .get_attachment(&p.actor(), aid)
                .await
                .map_err(|_| {
                    FhirError::not_found(format!("DocumentReference/{raw_id} is not known"))
                })?;
            // Visible only through a consultation the principal may see, exactly like the download route.
            let c = st
                .store()
                .get_consultation(&p.actor(), a.consultation_id)
                .await
                .map_err(|_| {
                    FhirError::not_found(format!("DocumentReference/{raw_id} is not known"))
                })?;
            st.store()
                .append_audit(vec![event(
                    &p,
                    AuditAction::Read,
                    "attachment",
                    a.id,
                    Some(c.patient_id),
                    "fhir:DocumentReference",
                )])
                .await?;
            Resource::DocumentReference(Box::new(map::document_reference(&a, &c)))
        }
        "Binary" => {
            p.require(CLINICAL)?;
            let (a, bytes) = consult::attachment_content(st, &p, id(rtype, raw_id)?).await?;
            // A client that asks for the attachment's own type gets the raw bytes (FHIR's Binary convention).
            let accept = headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if accept
                .split(',')
                .any(|m| m.split(';').next().map(str::trim) == Some(a.content_type.as_str()))
            {
                let ct = HeaderValue::from_str(&a.content_type)
                    .unwrap_or(HeaderValue::from_static("application/octet-stream"));
                return Ok((StatusCode::OK, [(header::CONTENT_TYPE, ct)], bytes).into_response());
            }
            Resource::Binary(Box::new(map::binary(&a, &bytes)))
        }
        "AuditEvent" => read_audit_event(st, &p, raw_id).await?,
        "Observation" => crate::monitoring::read_observation(st, &p, raw_id).await?,
        "Device" => crate::monitoring::read_device(st, &p, raw_id).await?,
        t if crate::live::TYPES.contains(&t) => crate::live::read(st, &p, t, raw_id).await?,
        _ => return Err(FhirError::not_supported(format!("read of {rtype}"))),
    };
    Ok(respond(StatusCode::OK, resource))
}

/// Practitioners are the node's clinicians. Patients' own accounts and administrators are not practitioners, and
/// patients do not browse the directory.
async fn directory_user(st: &AppState, p: &Principal, uid: UserId) -> FhirResult<User> {
    p.require(&[
        Role::Referrer,
        Role::Consultant,
        Role::Coordinator,
        Role::PublicHealthOfficer,
        Role::Admin,
    ])?;
    let u = st
        .store()
        .get_user(uid)
        .await
        .map_err(|_| FhirError::not_found(format!("Practitioner/{uid} is not known")))?;
    if !u.role.is_clinical() {
        return Err(FhirError::not_found(format!(
            "Practitioner/{uid} is not known"
        )));
    }
    Ok(u)
}

/// One message of a consultation the actor may see (the store applies the same scope as `consult::view`);
/// the read is audited like a case read.
async fn read_communication(st: &AppState, p: &Principal, mid: MessageId) -> FhirResult<Resource> {
    p.require(CASE_READERS)?;
    let store = st.store();
    let unknown = || FhirError::not_found(format!("Communication/{mid} is not known"));
    let m = store
        .get_message(&p.actor(), mid)
        .await
        .map_err(|_| unknown())?;
    let c = store
        .get_consultation(&p.actor(), m.consultation_id)
        .await
        .map_err(|_| unknown())?;
    store
        .append_audit(vec![event(
            p,
            AuditAction::Read,
            "message",
            m.id,
            Some(c.patient_id),
            "fhir:Communication",
        )])
        .await?;
    Ok(Resource::Communication(Box::new(map::communication(
        &m, &c,
    ))))
}

/// One consent record of a patient the actor may see; the read is audited.
async fn read_consent(st: &AppState, p: &Principal, cid: ConsentId) -> FhirResult<Resource> {
    p.require(consult::PATIENT_READERS)?;
    let store = st.store();
    let c = store
        .get_consent(&p.actor(), cid)
        .await
        .map_err(|_| FhirError::not_found(format!("Consent/{cid} is not known")))?;
    store
        .append_audit(vec![event(
            p,
            AuditAction::Read,
            "consent",
            c.id,
            Some(c.patient_id),
            "fhir:Consent",
        )])
        .await?;
    Ok(Resource::Consent(Box::new(map::consent(&c))))
}

/// One audit record by sequence number: administrators see any; others only events about a patient whose access
/// log they may read (the rule of the JSON API's access-log route).
async fn read_audit_event(st: &AppState, p: &Principal, raw_id: &str) -> FhirResult<Resource> {
    let seq: i64 = id("AuditEvent", raw_id)?;
    let not_found = || FhirError::not_found(format!("AuditEvent/{raw_id} is not known"));
    let mut rec = st
        .store()
        .audit_page(seq.saturating_sub(1), 1)
        .await?
        .into_iter()
        .find(|r| r.seq == seq)
        .ok_or_else(not_found)?;
    if p.role() != Role::Admin {
        // The event as it concerns the first of its patients whose access log the principal may read
        // (access_log_for applies the role and home-institution rules, and audits the access-log read); a search
        // event is narrowed to that patient's subjects, the other patients it listed stay hidden.
        let mut allowed = None;
        for pid in rec.event.patients() {
            match caravan_server::api::access_log_for(st, p, pid).await {
                Ok(_) => {
                    allowed = Some(pid);
                    break;
                }
                Err(e) if matches!(e.status, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let pid = allowed.ok_or_else(not_found)?;
        rec = rec.narrowed(|s| s.patient_id == Some(pid));
    }
    Ok(Resource::AuditEvent(Box::new(map::audit_event(&rec))))
}

// ---------------------------------------------------------------------------------------------------------------
// search

pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    fn parse(raw: Option<&str>, rtype: &str) -> FhirResult<Self> {
        let pairs: Vec<(String, String)> = raw
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let known = search_params_of(rtype);
        // Unknown parameters are refused rather than silently ignored, so a client never mistakes an unfiltered
        // result for a filtered one. `_format` is accepted because JSON is all this node speaks anyway.
        if let Some((k, _)) = pairs
            .iter()
            .find(|(k, _)| k != "_format" && !known.contains(&k.as_str()))
        {
            return Err(FhirError::invalid(format!(
                "search parameter {k:?} is not supported for {rtype}; supported: {}",
                known.join(", ")
            )));
        }
        Ok(Self(pairs))
    }
    /// Every non-empty value of a parameter given more than once (e.g. `date=ge...&date=lt...`).
    pub(crate) fn all(&self, k: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(key, v)| key == k && !v.is_empty())
            .map(|(_, v)| v.as_str())
            .collect()
    }
    pub(crate) fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }
    fn count(&self) -> FhirResult<usize> {
        match self.get("_count") {
            None => Ok(MAX_COUNT),
            Some(c) => c
                .parse::<usize>()
                .map(|n| n.min(MAX_COUNT))
                .map_err(|_| FhirError::invalid(format!("_count {c:?} is not a number"))),
        }
    }
    fn query_string(&self) -> String {
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(self.0.iter())
            .finish()
    }
}

pub async fn search(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(rtype): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    match search_inner(&st, &headers, &rtype, q.as_deref()).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// A token search value: `code` or `system|code`.
fn token_code(v: &str) -> &str {
    v.rsplit('|').next().unwrap_or(v)
}

async fn search_inner(
    st: &AppState,
    headers: &HeaderMap,
    rtype: &str,
    q: Option<&str>,
) -> FhirResult<Response> {
    known_type(rtype)?;
    if rtype == "Binary" {
        return Err(FhirError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "not-supported",
            "Binary is read by id; search DocumentReference instead",
        ));
    }
    let params = Params::parse(q, rtype)?;
    let p = principal(st, headers).await?;
    let count = params.count()?;
    let mut found: Vec<Resource> = match rtype {
        "Patient" => {
            let birth_date = params
                .get("birthdate")
                .map(|d| {
                    chrono::NaiveDate::parse_from_str(d.trim_start_matches("eq"), "%Y-%m-%d")
                        .map_err(|_| {
                            FhirError::invalid(format!("birthdate {d:?} is not YYYY-MM-DD"))
                        })
                })
                .transpose()?;
            let filter = PatientFilter {
                name: params.get("name").map(str::to_owned),
                birth_date,
                limit: Some(u32::try_from(count).unwrap_or(u32::MAX)),
            };
            consult::search_patients(st, &p, &filter)
                .await?
                .iter()
                .map(|x| Resource::Patient(Box::new(map::patient(x))))
                .collect()
        }
        "Practitioner" | "PractitionerRole" => {
            p.require(&[
                Role::Referrer,
                Role::Consultant,
                Role::Coordinator,
                Role::PublicHealthOfficer,
                Role::Admin,
            ])?;
            let org = params
                .get("organization")
                .map(|o| input::ref_id::<InstitutionId>("Organization", o))
                .transpose()?;
            let pract = params
                .get("practitioner")
                .map(|o| input::ref_id::<UserId>("Practitioner", o))
                .transpose()?;
            let name = params.get("name").map(str::to_lowercase);
            let specialty = params.get("specialty").map(token_code);
            st.store()
                .list_users(org)
                .await?
                .into_iter()
                .filter(|u| u.role.is_clinical())
                .filter(|u| pract.is_none_or(|id| u.id == id))
                .filter(|u| {
                    name.as_deref()
                        .is_none_or(|n| u.display_name.to_lowercase().contains(n))
                })
                .filter(|u| {
                    specialty.is_none_or(|sp| {
                        u.profile
                            .as_ref()
                            .is_some_and(|pr| pr.specialties.iter().any(|x| x == sp))
                    })
                })
                .map(|u| {
                    if rtype == "Practitioner" {
                        Resource::Practitioner(Box::new(map::practitioner(&u)))
                    } else {
                        Resource::PractitionerRole(Box::new(map::practitioner_role(&u)))
                    }
                })
                .collect()
        }
        "Organization" => {
            let name = params.get("name").map(str::to_lowercase);
            let level = params.get("type").map(token_code);
            let part_of = params
                .get("partof")
                .map(|o| input::ref_id::<InstitutionId>("Organization", o))
                .transpose()?;
            st.store()
                .list_institutions()
                .await?
                .into_iter()
                .filter(|i| {
                    name.as_deref()
                        .is_none_or(|n| i.name.to_lowercase().contains(n))
                })
                .filter(|i| level.is_none_or(|l| i.level.as_str() == l || l == "prov"))
                .filter(|i| part_of.is_none_or(|po| i.parent == Some(po)))
                .map(|i| Resource::Organization(Box::new(map::organization(&i))))
                .collect()
        }
        "ServiceRequest" | "Task" | "DiagnosticReport" => {
            let mut f = ConsultationFilter::default();
            if let Some(pt) = params.get("patient").or_else(|| params.get("subject")) {
                f.patient_id = Some(input::ref_id("Patient", pt)?);
            }
            if let Some(s) = params.get("status") {
                let code = token_code(s);
                let states = if rtype == "Task" {
                    map::states_for_task_status(code)
                } else {
                    map::states_for_sr_status(code)
                };
                f.states = states.ok_or_else(|| {
                    FhirError::invalid(format!("status {code:?} is not a {rtype} status used here"))
                })?;
            }
            if let Some(r) = params.get("requester") {
                f.referrer_id = Some(input::ref_id("Practitioner", r)?);
            }
            if let Some(o) = params.get("performer").or_else(|| params.get("owner")) {
                f.assigned_to = Some(input::ref_id("Practitioner", o)?);
            }
            let only: Option<ConsultationId> = params
                .get("based-on")
                .or_else(|| params.get("focus"))
                .map(|b| input::ref_id("ServiceRequest", b))
                .transpose()?;
            consult::list(st, &p, &f)
                .await?
                .into_iter()
                .map(|row| row.consultation)
                .filter(|c| only.is_none_or(|id| c.id == id))
                .filter_map(|c| match rtype {
                    "ServiceRequest" => {
                        Some(Resource::ServiceRequest(Box::new(map::service_request(&c))))
                    }
                    "Task" => Some(Resource::Task(Box::new(map::task(&c)))),
                    _ => c.report.as_ref().map(|r| {
                        Resource::DiagnosticReport(Box::new(map::diagnostic_report(&c, r)))
                    }),
                })
                .collect()
        }
        "Communication" | "DocumentReference" => {
            if rtype == "DocumentReference" {
                p.require(CLINICAL)?;
            }
            let mut f = ConsultationFilter::default();
            if let Some(pt) = params.get("patient") {
                f.patient_id = Some(input::ref_id("Patient", pt)?);
            }
            let only: Option<ConsultationId> = params
                .get("based-on")
                .or_else(|| params.get("related"))
                .map(|b| input::ref_id("ServiceRequest", b))
                .transpose()?;
            let cases: Vec<Consultation> = match only {
                // One case: read it like the case page does (role, scope and one audited read).
                Some(id) => vec![consult::view(st, &p, id).await?.consultation],
                None => consult::list(st, &p, &f)
                    .await?
                    .into_iter()
                    .map(|r| r.consultation)
                    .collect(),
            };
            let mut out = Vec::new();
            for c in cases {
                if rtype == "Communication" {
                    for m in st.store().list_messages(&p.actor(), c.id).await? {
                        out.push(Resource::Communication(Box::new(map::communication(
                            &m, &c,
                        ))));
                    }
                } else {
                    for a in st.store().list_attachments(&p.actor(), c.id).await? {
                        out.push(Resource::DocumentReference(Box::new(
                            map::document_reference(&a, &c),
                        )));
                    }
                }
                if out.len() >= count {
                    break;
                }
            }
            out
        }
        "Consent" => {
            let pt = params
                .get("patient")
                .ok_or_else(|| FhirError::invalid("Consent search needs patient=Patient/<id>"))?;
            let pid: PatientId = input::ref_id("Patient", pt)?;
            consult::consents(st, &p, pid)
                .await?
                .iter()
                .map(|c| Resource::Consent(Box::new(map::consent(c))))
                .collect()
        }
        "AuditEvent" => {
            let records = if let Some(pt) = params.get("patient") {
                let pid: PatientId = input::ref_id("Patient", pt)?;
                caravan_server::api::access_log_for(st, &p, pid).await?
            } else if let Some(e) = params.get("entity") {
                // The trail of one consultation, with the rule of the JSON API's consultation-audit route.
                p.require(CLINICAL)?;
                let cid: ConsultationId = input::ref_id("ServiceRequest", e)?;
                let c = st.store().get_consultation(&p.actor(), cid).await?;
                st.store()
                    .append_audit(vec![event(
                        &p,
                        AuditAction::Read,
                        "audit_log",
                        cid,
                        Some(c.patient_id),
                        "fhir:AuditEvent",
                    )])
                    .await?;
                st.store()
                    .audit_for_entity("consultation", &cid.to_string(), Some(c.patient_id), 500)
                    .await?
            } else {
                return Err(FhirError::invalid(
                    "AuditEvent search needs patient=Patient/<id> or entity=ServiceRequest/<id>",
                ));
            };
            records
                .iter()
                .map(|r| Resource::AuditEvent(Box::new(map::audit_event(r))))
                .collect()
        }
        "Observation" => crate::monitoring::search_observations(st, &p, &params.0, count).await?,
        "Device" => crate::monitoring::search_devices(st, &p, &params.0).await?,
        t if crate::live::TYPES.contains(&t) => {
            crate::live::search(st, &p, t, &params, count).await?
        }
        _ => return Err(FhirError::not_supported(format!("search of {rtype}"))),
    };
    found.truncate(count);
    let base = base_url(headers);
    let total = u32::try_from(found.len()).unwrap_or(u32::MAX);
    let query = params.query_string();
    let self_url = if query.is_empty() {
        format!("{base}/{rtype}")
    } else {
        format!("{base}/{rtype}?{query}")
    };
    let entry = found
        .into_iter()
        .map(|r| fr::BundleEntry {
            full_url: resource_id(&r).map(|id| format!("{base}/{}/{id}", type_name(&r)).into()),
            resource: Some(r),
            search: Some(fr::BundleEntrySearch {
                mode: Some("match".into()),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect();
    let bundle = fr::Bundle {
        id: Some(uuid::Uuid::now_v7().to_string().into()),
        r#type: "searchset".into(),
        timestamp: Some(map::instant(chrono::Utc::now()).into()),
        total: Some(total.into()),
        link: vec![fr::BundleLink {
            relation: "self".into(),
            url: self_url.into(),
            ..Default::default()
        }],
        entry,
        ..Default::default()
    };
    Ok(respond(StatusCode::OK, Resource::Bundle(Box::new(bundle))))
}

// ---------------------------------------------------------------------------------------------------------------
// create

pub async fn create(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(rtype): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    match create_inner(&st, &headers, &rtype, &body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

fn created(headers: &HeaderMap, resource: Resource) -> Response {
    let location = resource_id(&resource)
        .map(|id| format!("{}/{}/{id}", base_url(headers), type_name(&resource)));
    let mut resp = respond(StatusCode::CREATED, resource);
    if let Some(loc) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        resp.headers_mut().insert(header::LOCATION, loc);
    }
    resp
}

async fn create_inner(
    st: &AppState,
    headers: &HeaderMap,
    rtype: &str,
    body: &[u8],
) -> FhirResult<Response> {
    known_type(rtype)?;
    let p = principal(st, headers).await?;
    p.check_csrf(headers.get("x-csrf-token").and_then(|v| v.to_str().ok()))?;
    let resource = match rtype {
        "Patient" => {
            let r: fr::Patient = input::parse(headers, body, rtype)?;
            let n = input::new_patient(&r)?;
            let pat = consult::create_patient(st, &p, n).await?;
            Resource::Patient(Box::new(map::patient(&pat)))
        }
        "ServiceRequest" => {
            let r: fr::ServiceRequest = input::parse(headers, body, rtype)?;
            let n = input::new_consultation(&r)?;
            let c = consult::create_consultation(st, &p, n).await?;
            Resource::ServiceRequest(Box::new(map::service_request(&c)))
        }
        "Communication" => {
            let r: fr::Communication = input::parse(headers, body, rtype)?;
            let n = input::new_message(&r)?;
            let m = consult::post_message(st, &p, n.consultation, n.parent, &n.body).await?;
            let c = st
                .store()
                .get_consultation(&p.actor(), n.consultation)
                .await?;
            Resource::Communication(Box::new(map::communication(&m, &c)))
        }
        "Observation" => {
            let r: fr::Observation = input::parse(headers, body, rtype)?;
            Resource::Observation(Box::new(
                crate::surveil::create_observation(st, &p, r).await?,
            ))
        }
        "MeasureReport" => {
            let r: fr::MeasureReport = input::parse(headers, body, rtype)?;
            Resource::MeasureReport(Box::new(
                crate::surveil::create_measure_report(st, &p, r).await?,
            ))
        }
        "Appointment" => {
            let r: fr::Appointment = input::parse(headers, body, rtype)?;
            Resource::Appointment(Box::new(crate::live::create_appointment(st, &p, r).await?))
        }
        "Consent" => {
            let r: fr::Consent = input::parse(headers, body, rtype)?;
            let n = input::new_consent(&r)?;
            let c = consult::record_consent(st, &p, n.patient, n.scope, n.granted, &n.note).await?;
            Resource::Consent(Box::new(map::consent(&c)))
        }
        "DocumentReference" => {
            let r: fr::DocumentReference = input::parse(headers, body, rtype)?;
            let n = input::new_document(&r)?;
            let a = consult::add_attachment(
                st,
                &p,
                n.consultation,
                &n.filename,
                &n.content_type,
                n.bytes,
            )
            .await?;
            let c = st
                .store()
                .get_consultation(&p.actor(), n.consultation)
                .await?;
            Resource::DocumentReference(Box::new(map::document_reference(&a, &c)))
        }
        "DiagnosticReport" => {
            let r: fr::DiagnosticReport = input::parse(headers, body, rtype)?;
            let n = input::new_report(&r)?;
            let c = consult::apply(
                st,
                &p,
                n.consultation,
                EventRequest::Report {
                    findings: n.findings,
                    impression: n.impression,
                    recommendations: n.recommendations,
                },
            )
            .await?;
            let rep = c
                .report
                .as_ref()
                .ok_or_else(|| FhirError::internal("report event applied without a report"))?;
            Resource::DiagnosticReport(Box::new(map::diagnostic_report(&c, rep)))
        }
        _ => {
            return Err(FhirError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "not-supported",
                format!("create is not supported for {rtype}; see /fhir/metadata"),
            ))
        }
    };
    Ok(created(headers, resource))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_statement_is_valid_r4() {
        let cs = capability_statement().unwrap();
        let json = fhirbolt::json::to_vec(&cs, None).unwrap();
        let back: Resource = fhirbolt::json::from_slice(&json, None).unwrap();
        assert_eq!(back, cs);
    }

    #[test]
    fn every_served_type_has_capabilities() {
        for t in RESOURCE_TYPES {
            assert!(all_capabilities().any(|(c, _, _)| c == t), "{t}");
        }
        for (t, _, _) in all_capabilities() {
            assert!(
                RESOURCE_TYPES.contains(t),
                "{t} has capabilities but is not served"
            );
        }
    }
}
