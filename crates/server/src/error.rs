//! The one mapping from errors to HTTP. Clients get a status, a stable code (also the Fluent message id) and a
//! message that says what was wrong; internal causes go to the log only.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use caravan_domain::TransitionError;
use caravan_store::StoreError;
use serde::Serialize;

#[derive(Debug, Clone)]
pub struct AppError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: &'a str,
}

impl AppError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "error-bad-request", message)
    }
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }
    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "error-unauthenticated",
            "sign in first (session expired or missing credentials)",
        )
    }
    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "error-forbidden",
            "your role may not do this",
        )
    }
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "error-not-found",
            format!("{what} not found"),
        )
    }
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "error-internal",
            "internal error; the administrator can find the cause in the node log",
        )
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => Self::not_found(what),
            StoreError::Duplicate(what) => Self::new(
                StatusCode::CONFLICT,
                "error-duplicate",
                format!("{what} already exists"),
            ),
            StoreError::Conflict => {
                Self::new(StatusCode::CONFLICT, "error-conflict", e.to_string())
            }
            StoreError::Corrupt(_) | StoreError::Database(_) => Self::internal(e),
        }
    }
}

impl From<TransitionError> for AppError {
    fn from(e: TransitionError) -> Self {
        let status = match e {
            TransitionError::NotPermitted { .. } => StatusCode::FORBIDDEN,
            TransitionError::IllegalTransition { .. }
            | TransitionError::AlreadyDeclined
            | TransitionError::AlreadyInPanel => StatusCode::CONFLICT,
            TransitionError::ConsentMissing
            | TransitionError::Empty(_)
            | TransitionError::UnknownOutcome(_) => StatusCode::UNPROCESSABLE_ENTITY,
        };
        Self::new(status, e.code(), e.to_string())
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code,
            message: &self.message,
        };
        (self.status, Json(body)).into_response()
    }
}

pub type AppResult<T> = Result<T, AppError>;
