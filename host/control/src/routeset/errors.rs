//! Why the route set refuses a change or cannot start, in its own terms: a [`Refusal`] kind
//! the admin API maps to its statuses and codes, a message, and the field-named errors of a
//! route that does not validate.

use crate::store::{Expect, StoreError};
use routerd_routing::config::{ErrorCode, RouteError, RouteSetError};

/// Why a change to the route set (or a read of it) was refused: what kind of refusal, for
/// callers to answer in their own terms (the admin API picks its HTTP status and error code),
/// and a message for a person.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ChangeError {
    /// What kind of refusal.
    pub refusal: Refusal,
    /// For a person.
    pub message: String,
    /// For a validation error, each thing wrong with the route, naming its field, so an
    /// editor can show each reason next to the field.
    pub errors: Vec<RouteError>,
}

/// The kinds of refusal. Exhaustive on purpose: the admin API must say each one in its terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No route of that name.
    NotFound,
    /// A route of that name exists already.
    Conflict,
    /// The route comes from the config file.
    ReadOnly,
    /// The route is a system route.
    SystemRoute,
    /// The route is not at the version the change was made against.
    VersionMismatch,
    /// The route set the change would make is invalid; the code of its first error.
    Invalid(ErrorCode),
    /// The store did not answer.
    StoreUnavailable,
    /// The store failed.
    StoreFailed,
}

impl ChangeError {
    /// A refusal of `refusal`'s kind.
    pub fn new(refusal: Refusal, message: impl Into<String>) -> Self {
        ChangeError {
            refusal,
            message: message.into(),
            errors: Vec::new(),
        }
    }

    pub(super) fn from_validation(e: &RouteSetError) -> Self {
        let code = e.0.first().map_or(ErrorCode::InvalidMatcher, |e| e.code);
        ChangeError {
            errors: e.0.clone(),
            ..ChangeError::new(Refusal::Invalid(code), e.to_string())
        }
    }
}

/// Why the route set could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The API routes could not be loaded from the store.
    #[error("cannot load the API routes from the store: {0}")]
    Store(#[source] StoreError),
    /// The config file's routes are invalid.
    #[error(transparent)]
    Invalid(#[from] RouteSetError),
}

/// A failed store operation as a refusal of the change.
pub fn store_error(e: StoreError) -> ChangeError {
    match &e {
        StoreError::Unavailable { .. } => {
            ChangeError::new(Refusal::StoreUnavailable, e.to_string())
        }
        StoreError::Failed { .. } => ChangeError::new(Refusal::StoreFailed, e.to_string()),
        StoreError::Conflict {
            name,
            expected,
            found,
        } => {
            let now = found.map_or("it was deleted".to_owned(), |v| {
                format!("it is at version {v}")
            });
            match expected {
                Expect::Version(v) => ChangeError::new(
                    Refusal::VersionMismatch,
                    format!(
                        "route {name:?} is not at version {v}: {now} (changed through another instance)"
                    ),
                ),
                Expect::Present => not_found(name),
                Expect::Absent | Expect::Any => ChangeError::new(
                    Refusal::Conflict,
                    format!(
                        "a route named {name:?} already exists (made through another instance)"
                    ),
                ),
            }
        }
    }
}

pub(super) fn not_found(name: &str) -> ChangeError {
    ChangeError::new(Refusal::NotFound, format!("no route named {name:?}"))
}

pub(super) fn conflict(name: &str) -> ChangeError {
    ChangeError::new(
        Refusal::Conflict,
        format!("a route named {name:?} already exists"),
    )
}
