//! Errors of the FHIR facade, answered as an `OperationOutcome` with the HTTP status FHIR's REST API prescribes.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use caravan_server::error::AppError;
use fhirbolt::model::r4::resources::{OperationOutcome, OperationOutcomeIssue};
use fhirbolt::model::r4::Resource;

/// Media type of every FHIR response of this node.
pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

/// A refusal: the HTTP status, the FHIR issue type (`http://hl7.org/fhir/issue-type`) and what was wrong.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status}: {code}: {diagnostics}")]
pub struct FhirError {
    pub status: StatusCode,
    /// FHIR `IssueType` code, e.g. `invalid`, `not-found`, `forbidden`, `conflict`.
    pub code: &'static str,
    pub diagnostics: String,
}

pub type FhirResult<T> = Result<T, FhirError>;

impl FhirError {
    pub fn new(status: StatusCode, code: &'static str, diagnostics: impl Into<String>) -> Self {
        Self {
            status,
            code,
            diagnostics: diagnostics.into(),
        }
    }
    /// Malformed input: invalid JSON, a value of the wrong shape, an unknown search parameter.
    pub fn invalid(diagnostics: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid", diagnostics)
    }
    /// Well-formed input that lacks what the operation needs (a required element, a known code).
    pub fn unprocessable(code: &'static str, diagnostics: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, diagnostics)
    }
    pub fn not_found(diagnostics: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", diagnostics)
    }
    pub fn not_supported(diagnostics: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-supported", diagnostics)
    }
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "FHIR internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "exception",
            "internal error; the administrator can find the cause in the node log",
        )
    }

    pub fn outcome(&self) -> OperationOutcome {
        let severity = if self.status.is_server_error() {
            "fatal"
        } else {
            "error"
        };
        OperationOutcome {
            issue: vec![OperationOutcomeIssue {
                severity: severity.into(),
                code: self.code.into(),
                diagnostics: Some(self.diagnostics.clone().into()),
                ..Default::default()
            }],
            ..Default::default()
        }
    }
}

/// The server's errors keep their status; the issue type follows from it.
impl From<AppError> for FhirError {
    fn from(e: AppError) -> Self {
        let code = match e.status.as_u16() {
            400 => "invalid",
            401 => "login",
            403 => "forbidden",
            404 => "not-found",
            409 => "conflict",
            413 => "too-long",
            415 => "not-supported",
            422 => "business-rule",
            _ if e.status.is_server_error() => "exception",
            _ => "processing",
        };
        Self::new(e.status, code, e.message)
    }
}

impl From<caravan_store::StoreError> for FhirError {
    fn from(e: caravan_store::StoreError) -> Self {
        AppError::from(e).into()
    }
}

impl IntoResponse for FhirError {
    fn into_response(self) -> Response {
        let resource = Resource::OperationOutcome(Box::new(self.outcome()));
        match fhirbolt::json::to_vec(&resource, None) {
            Ok(body) => (self.status, [(header::CONTENT_TYPE, FHIR_JSON)], body).into_response(),
            // Serialising a two-field outcome cannot fail in practice; if it ever does, the status still tells.
            Err(_) => (self.status, self.diagnostics).into_response(),
        }
    }
}
