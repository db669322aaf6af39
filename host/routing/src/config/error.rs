//! Validation errors: each names the route, the field and the reason, and carries a stable code
//! that the admin API returns as-is.

use std::fmt;

/// A stable, machine-readable error code (the admin API's `error` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The name is empty, too long, or has characters other than letters, digits, `-`, `_`.
    InvalidRouteName,
    /// Two routes share a name.
    RouteConflict,
    /// `priority` is outside 0..=1000.
    InvalidPriority,
    /// A regular expression does not compile.
    InvalidRegex,
    /// A non-default route has no matchers.
    NoMatchers,
    /// More than one route has `default_rule: true`.
    MultipleDefaultRoutes,
    /// `target_url` or `default_url` is missing or not an `http://host[:port][/base]` URL.
    InvalidUrl,
    /// `strip_prefix` does not start with `/`.
    InvalidStripPrefix,
    /// A matcher is malformed (unknown condition, missing field or pattern, bad pattern).
    InvalidMatcher,
    /// A filter is malformed (unknown name, wrong arguments).
    InvalidFilter,
    /// A route names a plugin that is not loaded.
    UnknownPlugin,
    /// A plugin rejected the route's arguments.
    InvalidPluginArgs,
    /// A `consumes` or `produces` entry is not a `type/subtype` media type.
    InvalidMediaType,
    /// `tls_ca_file`, `tls_server_name`, `tls_insecure_skip_verify` or `upstream_protocol` is
    /// malformed, unreadable, or does not fit the target.
    InvalidBackendTls,
    /// `max_body_bytes` is 0 or above [`crate::table::MAX_BODY_BYTES_LIMIT`].
    InvalidMaxBodyBytes,
    /// `targets`, `balance`, `outlier` or `retries` is malformed or contradicts another field.
    InvalidBackends,
    /// `rate_limit` is malformed.
    InvalidRateLimit,
    /// `mirror` is malformed.
    InvalidMirror,
}

impl ErrorCode {
    /// The code as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRouteName => "invalid_route_name",
            ErrorCode::RouteConflict => "route_conflict",
            ErrorCode::InvalidPriority => "invalid_priority",
            ErrorCode::InvalidRegex => "invalid_regex",
            ErrorCode::NoMatchers => "no_matchers",
            ErrorCode::MultipleDefaultRoutes => "multiple_default_routes",
            ErrorCode::InvalidUrl => "invalid_url",
            ErrorCode::InvalidStripPrefix => "invalid_strip_prefix",
            ErrorCode::InvalidMatcher => "invalid_matcher",
            ErrorCode::InvalidFilter => "invalid_filter",
            ErrorCode::InvalidMaxBodyBytes => "invalid_max_body_bytes",
            ErrorCode::InvalidMediaType => "invalid_media_type",
            ErrorCode::InvalidBackendTls => "invalid_backend_tls",
            ErrorCode::UnknownPlugin => "unknown_plugin",
            ErrorCode::InvalidPluginArgs => "invalid_plugin_args",
            ErrorCode::InvalidBackends => "invalid_backends",
            ErrorCode::InvalidRateLimit => "invalid_rate_limit",
            ErrorCode::InvalidMirror => "invalid_mirror",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing wrong with one route (or with the document itself, where `route` is empty).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("route {route:?}, field {field}: {reason}")]
pub struct RouteError {
    /// The route's name as written (may itself be the invalid part).
    pub route: String,
    /// Where in the route: `matchers[1].pattern`, `filters[0].args[1]`, `target_url`, ...
    pub field: String,
    /// The stable code.
    pub code: ErrorCode,
    /// What is wrong, for a person.
    pub reason: String,
}

impl RouteError {
    /// Builds an error for `route`'s `field`.
    pub fn new(
        route: &str,
        field: impl Into<String>,
        code: ErrorCode,
        reason: impl Into<String>,
    ) -> Self {
        RouteError {
            route: route.to_owned(),
            field: field.into(),
            code,
            reason: reason.into(),
        }
    }
}

/// One thing wrong with one field, found by a part of the route's compilation that does not
/// know the route or where in it the part sits (a filter's arguments, a matcher, the backend
/// settings): the caller places it ([`FieldError::in_route`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field {field}: {reason}")]
pub struct FieldError {
    /// The field, relative to the part that was checked: `args[1]`, `.pattern`, `tls_ca_file`.
    pub field: String,
    /// The stable code.
    pub code: ErrorCode,
    /// What is wrong, for a person.
    pub reason: String,
}

impl FieldError {
    /// Builds an error for `field`.
    pub fn new(field: impl Into<String>, code: ErrorCode, reason: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            code,
            reason: reason.into(),
        }
    }

    /// The error as `route`'s, its field placed after `prefix` (`filters[0].`, `matchers[2]`).
    pub fn in_route(self, route: &str, prefix: &str) -> RouteError {
        RouteError::new(
            route,
            format!("{prefix}{}", self.field),
            self.code,
            self.reason,
        )
    }
}

/// Everything wrong with a route set, in route order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RouteSetError(pub Vec<RouteError>);

impl fmt::Display for RouteSetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Why a config file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {cause}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        cause: std::io::Error,
    },
    /// The file is not a valid config document (syntax, unknown field, wrong type).
    #[error("config file {path} is not a valid route document: {cause}")]
    Parse {
        /// The file.
        path: String,
        /// serde's message, with line and column.
        cause: serde_json::Error,
    },
    /// The document parsed but some routes are invalid.
    #[error("config file {path} has invalid routes: {errors}")]
    Invalid {
        /// The file.
        path: String,
        /// The route errors.
        errors: RouteSetError,
    },
}
