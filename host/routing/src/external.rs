//! What routing needs from an external predicate or filter (a WebAssembly plugin, for routerd),
//! as traits routing defines and the plugin runtime implements: so routes and the table call
//! plugins without knowing how they run, and the data flow stays one way. Also the plain types
//! that cross that line: the request a call sees, a filter's edits and replies, the failure
//! policy and what a failed call reports.
//!
//! Routing is generic over the one type that implements both ([`External`]), named by whoever
//! builds a table (routerd: its WebAssembly plugin), so calls stay statically dispatched: a boxed
//! future per call (the price of `dyn`) costs more than a third of a warm plugin call.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use http::HeaderMap;
use serde::{Deserialize, Serialize};

/// The request an external call is about. The head is shared, not copied.
#[derive(Debug, Clone)]
pub struct ExternalRequest {
    /// The request head.
    pub parts: Arc<http::request::Parts>,
    /// The client's address.
    pub remote: SocketAddr,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// The path as earlier filters left it, when it differs from `parts.uri`.
    pub path: Option<String>,
    /// The route's path parameters.
    pub params: Vec<(String, String)>,
}

/// The response head a filter's response phase sees (handed back after the call).
#[derive(Debug, Default, Clone)]
pub struct ResponseHead {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: HeaderMap,
}

/// A change to a header list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderOp {
    /// Replace every value of the header with this one.
    Set(String, String),
    /// Add a value, keeping existing ones.
    Append(String, String),
    /// Remove every value of the header.
    Remove(String),
}

/// What a filter's request phase changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestEdits {
    /// Header changes, in order.
    pub headers: Vec<HeaderOp>,
    /// A new upstream path.
    pub path: Option<String>,
    /// A new raw query (`Some("")` removes it).
    pub query: Option<String>,
}

/// A filter's own answer, sent instead of proxying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

/// The outcome of a filter's request phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestAction {
    /// Apply the edits and go on.
    Proceed(RequestEdits),
    /// Answer with this.
    Respond(Reply),
}

/// What a filter's response phase changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseEdits {
    /// A new status code.
    pub status: Option<u16>,
    /// Header changes, in order.
    pub headers: Vec<HeaderOp>,
}

/// What a failed call counts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// A predicate does not match; a filter answers 500. The default.
    #[default]
    FailClosed,
    /// A predicate matches; a filter is skipped.
    FailOpen,
}

/// Why an external call failed, for the log.
#[derive(Debug, Clone)]
pub struct CallFailed {
    /// A short machine-readable kind (`deadline`, `trap`, ...).
    pub kind: &'static str,
    /// What happened.
    pub reason: String,
    /// The host had no capacity to run the call (no instance or concurrency slot freed within
    /// the plugin's `queue_ms`): routerd's own failure, not the plugin's, so the plugin's
    /// failure policy does not decide the request; routerd answers 503 itself.
    pub overloaded: bool,
}

impl std::fmt::Display for CallFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

/// The type routing calls for its external predicates and filters: one type for both, as one
/// plugin may be either.
pub trait External: ExternalPredicate + ExternalFilter + 'static {}

impl<T: ExternalPredicate + ExternalFilter + 'static> External for T {}

/// No external predicates or filters: the type of a table built without any (a route naming a
/// plugin is refused as naming one that is not loaded).
#[derive(Debug)]
pub enum NoExternal {}

impl ExternalPredicate for NoExternal {
    fn name(&self) -> &str {
        match *self {}
    }

    fn failure_policy(&self) -> FailurePolicy {
        match *self {}
    }

    fn prepare(&self, _: &[String]) -> Result<Prepared, String> {
        match *self {}
    }

    async fn matches(&self, _: ExternalRequest, _: &Prepared) -> Result<bool, CallFailed> {
        match *self {}
    }
}

impl ExternalFilter for NoExternal {
    fn name(&self) -> &str {
        match *self {}
    }

    fn failure_policy(&self) -> FailurePolicy {
        match *self {}
    }

    fn prepare(&self, _: &[String]) -> Result<Prepared, String> {
        match *self {}
    }

    async fn on_request(
        &self,
        _: ExternalRequest,
        _: &Prepared,
    ) -> Result<RequestAction, CallFailed> {
        match *self {}
    }

    async fn on_response(
        &self,
        _: ExternalRequest,
        _: ResponseHead,
        _: &Prepared,
    ) -> (Result<ResponseEdits, CallFailed>, ResponseHead) {
        match *self {}
    }
}

/// A route predicate implemented outside routing.
pub trait ExternalPredicate: Send + Sync {
    /// Its name, for logs and errors.
    fn name(&self) -> &str;
    /// What a failed call means for the route.
    fn failure_policy(&self) -> FailurePolicy;
    /// Checks a route's args when the route is compiled, and prepares them for its calls; the
    /// error is shown to the user.
    fn prepare(&self, args: &[String]) -> Result<Prepared, String>;
    /// Whether `request` matches, given the route's prepared args.
    fn matches(
        &self,
        request: ExternalRequest,
        args: &Prepared,
    ) -> impl Future<Output = Result<bool, CallFailed>> + Send;
}

/// A request/response filter implemented outside routing.
pub trait ExternalFilter: Send + Sync {
    /// Its name, for logs and errors.
    fn name(&self) -> &str;
    /// What a failed call means for the request.
    fn failure_policy(&self) -> FailurePolicy;
    /// Checks a route's args when the route is compiled, and prepares them for its calls (the
    /// phases they run included); the error is shown to the user.
    fn prepare(&self, args: &[String]) -> Result<Prepared, String>;
    /// The request phase.
    fn on_request(
        &self,
        request: ExternalRequest,
        args: &Prepared,
    ) -> impl Future<Output = Result<RequestAction, CallFailed>> + Send;
    /// The response phase on `response`, which is handed back with the result.
    fn on_response(
        &self,
        request: ExternalRequest,
        response: ResponseHead,
        args: &Prepared,
    ) -> impl Future<Output = (Result<ResponseEdits, CallFailed>, ResponseHead)> + Send;
}

/// A route's arguments as an external predicate or filter accepted them when the route was
/// compiled: the calls name them by `config` (a plugin keeps what it made of them under that
/// number), and a filter says which of its phases run for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// The route's arguments.
    pub args: Vec<String>,
    /// The number the calls name the arguments by.
    pub config: u32,
    /// The phases a filter runs with these arguments (unused for a predicate).
    pub phases: FilterPhases,
    /// The route the arguments are for (set when the route is compiled), for counting a
    /// plugin's trial versions per route.
    pub route: Arc<str>,
}

/// Which phases of a filter run for a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilterPhases {
    /// The request phase.
    pub request: bool,
    /// The response phase.
    pub response: bool,
}

impl FilterPhases {
    /// Both phases.
    pub const BOTH: FilterPhases = FilterPhases {
        request: true,
        response: true,
    };
}

/// What looking up an external predicate or filter by name found.
pub enum Lookup<T> {
    /// It, ready to call.
    Found(T),
    /// Nothing of that name is loaded.
    Missing,
    /// Something of that name is loaded, but it is not of the kind asked for.
    WrongKind,
}

/// Where routes find their external predicates and filters.
pub trait PluginSource<X> {
    /// The predicate called `name`.
    fn predicate(&self, name: &str) -> Lookup<Arc<X>>;
    /// The filter called `name`.
    fn filter(&self, name: &str) -> Lookup<Arc<X>>;
}

/// No external predicates or filters at all.
impl<X> PluginSource<X> for () {
    fn predicate(&self, _: &str) -> Lookup<Arc<X>> {
        Lookup::Missing
    }

    fn filter(&self, _: &str) -> Lookup<Arc<X>> {
        Lookup::Missing
    }
}

/// A predicate with a route's arguments (prepared at compile time).
pub struct PredicateCall<X> {
    /// The predicate.
    pub predicate: Arc<X>,
    /// The route's arguments, as the predicate prepared them.
    pub prepared: Prepared,
}

impl<X: ExternalPredicate> PredicateCall<X> {
    /// `predicate` with the route's arguments it `prepared`.
    pub fn new(predicate: Arc<X>, prepared: Prepared) -> Self {
        PredicateCall {
            predicate,
            prepared,
        }
    }

    /// The predicate's name.
    pub fn name(&self) -> &str {
        ExternalPredicate::name(&*self.predicate)
    }

    /// The predicate's failure policy.
    pub fn failure_policy(&self) -> FailurePolicy {
        ExternalPredicate::failure_policy(&*self.predicate)
    }

    /// Runs it with the route's args.
    pub async fn matches(&self, request: ExternalRequest) -> Result<bool, CallFailed> {
        ExternalPredicate::matches(&*self.predicate, request, &self.prepared).await
    }
}

impl<X: ExternalPredicate> std::fmt::Debug for PredicateCall<X> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}({:?})",
            ExternalPredicate::name(&*self.predicate),
            self.prepared.args
        )
    }
}

/// A filter with a route's arguments (prepared at compile time).
pub struct FilterCall<X> {
    /// The filter.
    pub filter: Arc<X>,
    /// The route's arguments, as the filter prepared them.
    pub prepared: Prepared,
}

impl<X: ExternalFilter> FilterCall<X> {
    /// `filter` with the route's arguments it `prepared`.
    pub fn new(filter: Arc<X>, prepared: Prepared) -> Self {
        FilterCall { filter, prepared }
    }

    /// Whether its request phase runs for this route.
    pub fn runs_on_request(&self) -> bool {
        self.prepared.phases.request
    }

    /// Whether its response phase runs for this route.
    pub fn runs_on_response(&self) -> bool {
        self.prepared.phases.response
    }

    /// The filter's name.
    pub fn name(&self) -> &str {
        ExternalFilter::name(&*self.filter)
    }

    /// The filter's failure policy.
    pub fn failure_policy(&self) -> FailurePolicy {
        ExternalFilter::failure_policy(&*self.filter)
    }

    /// Runs its request phase with the route's args.
    pub async fn on_request(&self, request: ExternalRequest) -> Result<RequestAction, CallFailed> {
        ExternalFilter::on_request(&*self.filter, request, &self.prepared).await
    }

    /// Runs its response phase with the route's args.
    pub async fn on_response(
        &self,
        request: ExternalRequest,
        response: ResponseHead,
    ) -> (Result<ResponseEdits, CallFailed>, ResponseHead) {
        ExternalFilter::on_response(&*self.filter, request, response, &self.prepared).await
    }
}

impl<X: ExternalFilter> std::fmt::Debug for FilterCall<X> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}({:?})",
            ExternalFilter::name(&*self.filter),
            self.prepared.args
        )
    }
}
