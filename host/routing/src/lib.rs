//! Routing: from a route document (`config`: its model, parsing and errors) to the decision for
//! one request. It knows nothing of how external predicates and filters run: it is generic over
//! their type ([`External`]), so neither wasmtime nor an HTTP server is in its build.
//!
//! `route` compiles and validates one rule, `endpoints` its backends and how a request picks
//! one, `pattern` parses path patterns and orders them,
//! `tree` indexes them, `matchers` and `filters` are the built-in ones, `external` the traits
//! external (plugin) predicates and filters implement, and `table` puts it all together into the
//! immutable [`RouteTable`], which `published` hands from the control plane to the proxy.

pub mod backend;
pub mod compress;
pub mod config;
pub mod cors;
pub mod endpoints;
pub mod external;
pub mod filters;
pub mod matchers;
pub mod media;
pub mod mirror;
pub mod params;
pub mod pattern;
pub mod published;
pub mod ratelimit;
pub mod request;
pub mod route;
mod spec;
pub mod table;
pub mod tree;

pub use external::{
    CallFailed, External, ExternalFilter, ExternalPredicate, ExternalRequest, FailurePolicy,
    FilterCall, FilterPhases, HeaderOp, Lookup, NoExternal, PluginSource, PredicateCall, Prepared,
    Reply, RequestAction, RequestEdits, ResponseEdits, ResponseHead,
};
pub use params::Params;
pub use published::PublishedTable;
pub use request::{BufferedBody, RequestView, SharedHead, request_host};
pub use route::{Route, RouteFilter, Target};
pub use table::{
    BuildMode, Candidate, Decision, Explanation, Failure, PredicateResults, RouteTable,
};
