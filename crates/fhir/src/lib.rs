//! FHIR R4 at `/fhir`: a REST facade over Caravan's consultation service, and (module `live`) over video visits
//! and e-prescriptions.
//!
//! Every read and write goes through `caravan_server::consult` (or, where that service has no function for the
//! access, through the scoped [`caravan_store::Store`] plus an explicit audit event), so FHIR obeys exactly the
//! same role, institution-scope and audit rules as the JSON API and the web UI. Resources are built and parsed with
//! the `fhirbolt` model (R4), never with hand-written resource structs.
//!
//! Entry point: [`routes`], passed by the binary to `caravan_server::serve_with`.

pub mod error;
mod handlers;
mod input;
pub mod live;
pub mod map;
pub mod monitoring;
pub mod surveil;

pub use error::{FhirError, FhirResult, FHIR_JSON};

use axum::routing::get;
use axum::Router;
use caravan_server::AppState;

/// The resource types this node serves, in the order the CapabilityStatement lists them.
pub const RESOURCE_TYPES: &[&str] = &[
    "Patient",
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "ServiceRequest",
    "Task",
    "Communication",
    "DiagnosticReport",
    "Consent",
    "DocumentReference",
    "Binary",
    "AuditEvent",
    "Observation",
    "MeasureReport",
    "Device",
    // Live care and e-prescriptions (`live`).
    "Schedule",
    "Slot",
    "Appointment",
    "Encounter",
    "MedicationRequest",
    "MedicationDispense",
    "Medication",
];

/// The FHIR routes, all under `/fhir`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/fhir/metadata", get(handlers::metadata))
        .route(
            "/fhir/{rtype}",
            get(handlers::search)
                .post(handlers::create)
                .fallback(handlers::method_not_allowed),
        )
        .route(
            "/fhir/{rtype}/{id}",
            get(handlers::read).fallback(handlers::method_not_allowed),
        )
}
