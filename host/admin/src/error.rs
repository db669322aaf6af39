//! The admin API's error vocabulary: an HTTP status, a stable code and a message, and how the
//! route set's refusals ([`ChangeError`]) are said in it.

use http::StatusCode;

use routerd_control::routeset::{ChangeError, Refusal};
use routerd_routing::config::{ErrorCode, RouteError};

/// An API error: an HTTP status, a stable code and a message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The stable code.
    pub code: &'static str,
    /// For a person.
    pub message: String,
    /// For a validation error, each thing wrong with the route, naming its field, so an
    /// editor can show each reason next to the field.
    pub errors: Vec<RouteError>,
}

impl ApiError {
    /// Builds an error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            errors: Vec::new(),
        }
    }
}

impl From<ChangeError> for ApiError {
    fn from(e: ChangeError) -> Self {
        let (status, code) = match e.refusal {
            Refusal::NotFound => (StatusCode::NOT_FOUND, "route_not_found"),
            Refusal::Conflict => (StatusCode::CONFLICT, ErrorCode::RouteConflict.as_str()),
            Refusal::ReadOnly => (StatusCode::CONFLICT, "read_only_route"),
            Refusal::SystemRoute => (StatusCode::FORBIDDEN, "system_route_protected"),
            Refusal::VersionMismatch => (StatusCode::PRECONDITION_FAILED, "version_mismatch"),
            Refusal::Invalid(
                code @ (ErrorCode::RouteConflict | ErrorCode::MultipleDefaultRoutes),
            ) => (StatusCode::CONFLICT, code.as_str()),
            Refusal::Invalid(code) => (StatusCode::BAD_REQUEST, code.as_str()),
            Refusal::StoreUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
            Refusal::StoreFailed => (StatusCode::INTERNAL_SERVER_ERROR, "store_failed"),
        };
        ApiError {
            status,
            code,
            message: e.message,
            errors: e.errors,
        }
    }
}
