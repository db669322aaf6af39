//! A compiled route: one validated [`RouteRule`] turned into what the request path runs, and the
//! validation that produces it (every error names the route, the field and the reason).

use super::media::MediaType;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use http::uri::{Authority, Scheme};

use super::backend::BackendConnection;
use super::endpoints::{self, Backends, EndpointStates};
use super::external::{
    External, ExternalFilter, ExternalPredicate, FilterCall, Lookup, PluginSource, PredicateCall,
    Prepared,
};
use super::filters::BuiltinFilter;
use super::matchers::{Matcher, MethodSet, PathMatch};
use super::mirror::Mirror;
use super::pattern::{Segment, Specificity};
use super::ratelimit::RateLimit;
use super::spec::{Compiled, compile_matcher};
use crate::config::{ErrorCode, FieldError, RouteError, RouteRule};
/// A backend base URL.
#[derive(Debug, Clone)]
pub struct Target {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// `host:port`.
    pub authority: Authority,
    /// The authority as a Host header value, made once.
    pub host: HeaderValue,
    /// The base path without a trailing `/` (empty for none).
    pub base_path: Box<str>,
    /// TLS and HTTP/2 settings; `None` for plain HTTP/1.1.
    pub connection: Option<Arc<BackendConnection>>,
}

impl Target {
    /// Parses `http[s]://host[:port][/base]`; `https` gets Mozilla's roots and HTTP/1.1.
    pub fn parse(url: &str) -> Result<Target, String> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        let scheme = uri
            .scheme()
            .cloned()
            .ok_or_else(|| format!("{url:?} has no scheme"))?;
        if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
            return Err(format!(
                "{url:?}: a backend is reached over http:// or https://"
            ));
        }
        let authority = uri
            .authority()
            .cloned()
            .filter(|a| !a.host().is_empty())
            .ok_or_else(|| format!("{url:?} has no host"))?;
        if uri.query().is_some() {
            return Err(format!("{url:?}: a target URL cannot carry a query"));
        }
        let host = HeaderValue::from_str(authority.as_str())
            .map_err(|e| format!("{url:?}: the host cannot be a header value: {e}"))?;
        let base = uri.path().trim_end_matches('/');
        let connection = (scheme == Scheme::HTTPS).then(BackendConnection::default_https);
        Ok(Target {
            scheme,
            authority,
            host,
            base_path: base.into(),
            connection,
        })
    }
}

/// An item of a route's filter chain.
pub enum RouteFilter<X> {
    /// A built-in filter.
    Builtin(BuiltinFilter),
    /// An external (plugin) filter.
    Plugin(FilterCall<X>),
}

impl<X: ExternalFilter> std::fmt::Debug for RouteFilter<X> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RouteFilter::Builtin(b) => f.debug_tuple("Builtin").field(b).finish(),
            RouteFilter::Plugin(call) => f.debug_tuple("Plugin").field(call).finish(),
        }
    }
}

/// A compiled, validated route; `X` is the type of its external predicates and filters.
#[derive(Debug)]
pub struct Route<X: External> {
    /// The route's name.
    pub name: std::sync::Arc<str>,
    /// The rule it was compiled from (what the API shows), shared with the document.
    pub rule: std::sync::Arc<RouteRule>,
    /// Its path matcher.
    pub path: PathMatch,
    /// Parameter names and their segment positions (catch-all flagged), for templates.
    pub params: Vec<(Box<str>, usize, bool)>,
    /// Allowed methods; `None` means any.
    pub methods: Option<MethodSet>,
    /// Other built-in matchers (with their index in the rule), cheapest first, body matchers
    /// last.
    pub matchers: Vec<(usize, Matcher)>,
    /// Plugin predicates (with their index in the rule), run after every built-in matcher has
    /// matched.
    pub predicates: Vec<(usize, PredicateCall<X>)>,
    /// Whether any matcher reads the body.
    pub needs_body: bool,
    /// The backends (absent when a filter answers).
    pub backends: Option<Backends>,
    /// Removed from the path before joining to the target.
    pub strip_prefix: Option<Box<str>>,
    /// A token bucket per client, checked after the request filters (boxed, as `mirror`:
    /// few routes have one, and every route of a big table pays for what is inline).
    pub rate_limit: Option<Box<RateLimit>>,
    /// A share of requests copied to another backend.
    pub mirror: Option<Box<Mirror>>,
    /// The filter chain.
    pub filters: Vec<RouteFilter<X>>,
    /// Deadline for the backend's response head.
    pub timeout: Option<Duration>,
    /// Media types of request bodies it takes (empty: any).
    pub consumes: Box<[MediaType]>,
    /// Media types it answers with (empty: any).
    pub produces: Box<[MediaType]>,
    /// For ordering.
    pub specificity: Specificity,
}

impl<X: External> Route<X> {
    /// Whether compiling the rule again would give the same route: no plugin (a new version
    /// may have been loaded) and no CA file (it may have been rewritten).
    pub fn depends_on_rule_alone(&self) -> bool {
        self.predicates.is_empty()
            && !self
                .filters
                .iter()
                .any(|f| matches!(f, RouteFilter::Plugin(_)))
            && self.rule.tls_ca_file.is_none()
    }

    /// Validates and compiles `rule`. All problems are reported, not only the first.
    pub fn compile(
        rule: &std::sync::Arc<RouteRule>,
        plugins: &dyn PluginSource<X>,
        endpoints: &EndpointStates,
    ) -> Result<Route<X>, Vec<RouteError>> {
        let mut check = RuleCheck {
            rule,
            name: rule.name.as_str().into(),
            errors: Vec::new(),
        };
        let strip_prefix = check.identity();
        let Matchers {
            path,
            methods,
            matchers,
            predicates,
        } = check.matchers(plugins);
        let (params, specificity) = params_of(&path);
        let param_names: Vec<&str> = params.iter().map(|(n, _, _)| &**n).collect();
        let filters = check.filters(plugins, &param_names);
        let answers = filters
            .iter()
            .any(|f| matches!(f, RouteFilter::Builtin(b) if b.answers()));
        let backends = check.backends(answers, endpoints);
        let rate_limit = check
            .part(rule.rate_limit.as_deref(), RateLimit::compile)
            .map(Box::new);
        let mirror = check
            .part(rule.mirror.as_deref(), Mirror::compile)
            .map(Box::new);
        let consumes = check.media("consumes", &rule.consumes);
        let produces = check.media("produces", &rule.produces);
        if !check.errors.is_empty() {
            return Err(check.errors);
        }
        let needs_body = matchers.iter().any(|(_, m)| m.needs_body());
        Ok(Route {
            name: check.name,
            rule: std::sync::Arc::clone(rule),
            path,
            params,
            methods,
            matchers,
            predicates,
            needs_body,
            backends,
            strip_prefix,
            rate_limit,
            mirror,
            filters,
            timeout: rule.timeout_ms.map(Duration::from_millis),
            consumes,
            produces,
            specificity,
        })
    }

    /// The number of matchers, for ordering.
    pub fn matcher_count(&self) -> usize {
        self.rule.matchers.len()
    }
}

/// A route's checks, part by part, gathering every error (each naming the route and field).
struct RuleCheck<'a> {
    rule: &'a RouteRule,
    /// The route's name, made once: the route and its plugin calls share it.
    name: Arc<str>,
    errors: Vec<RouteError>,
}

/// What a route uses a plugin as.
#[derive(Clone, Copy)]
enum Role {
    Predicate,
    Filter,
}

/// A route's compiled matchers, by kind.
struct Matchers<X> {
    path: PathMatch,
    methods: Option<MethodSet>,
    matchers: Vec<(usize, Matcher)>,
    predicates: Vec<(usize, PredicateCall<X>)>,
}

impl RuleCheck<'_> {
    fn err(&mut self, field: &str, code: ErrorCode, reason: String) {
        self.errors
            .push(RouteError::new(&self.rule.name, field, code, reason));
    }

    /// The name, priority and `strip_prefix`; the prefix when it is valid.
    fn identity(&mut self) -> Option<Box<str>> {
        let rule = self.rule;
        let name = rule.name.as_str();
        if name.is_empty() || name.len() > 255 {
            self.err(
                "name",
                ErrorCode::InvalidRouteName,
                "a route name must be 1 to 255 characters".into(),
            );
        } else if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            self.err(
                "name",
                ErrorCode::InvalidRouteName,
                format!("{name:?} may only contain ASCII letters, digits, '-' and '_'"),
            );
        }
        if !(0..=1000).contains(&rule.priority) {
            self.err(
                "priority",
                ErrorCode::InvalidPriority,
                format!("{} is outside 0..=1000", rule.priority),
            );
        }
        match &rule.strip_prefix {
            Some(p) if !p.starts_with('/') => {
                self.err(
                    "strip_prefix",
                    ErrorCode::InvalidStripPrefix,
                    format!("{p:?} must start with '/'"),
                );
                None
            }
            Some(p) => Some(p.as_str().into()),
            None => None,
        }
    }

    /// The matchers: at most one path and one method matcher, the other built-in ones
    /// cheapest first, and the plugin predicates (looked up and asked to validate their args).
    fn matchers<X: External>(&mut self, plugins: &dyn PluginSource<X>) -> Matchers<X> {
        let rule = self.rule;
        let mut path = PathMatch::Any;
        let mut methods = None;
        let mut matchers = Vec::new();
        let mut predicates = Vec::new();
        for (i, spec) in rule.matchers.iter().enumerate() {
            let field = format!("matchers[{i}]");
            match compile_matcher(spec) {
                Ok(Compiled::Path(p)) => {
                    if !matches!(path, PathMatch::Any) {
                        self.err(
                            &format!("{field}.condition"),
                            ErrorCode::InvalidMatcher,
                            "a route may have at most one path or path_prefix matcher".into(),
                        );
                    }
                    path = p;
                }
                Ok(Compiled::Methods(m)) => {
                    if methods.is_some() {
                        self.err(
                            &format!("{field}.condition"),
                            ErrorCode::InvalidMatcher,
                            "a route may have at most one method matcher".into(),
                        );
                    }
                    methods = Some(m);
                }
                Ok(Compiled::Other(m)) => matchers.push((i, m)),
                Ok(Compiled::Plugin(name)) => {
                    let found = plugins.predicate(&name);
                    let prepare = |p: &X| ExternalPredicate::prepare(p, &spec.args);
                    if let Some((p, prepared)) =
                        self.plugin(&field, &name, Role::Predicate, found, prepare)
                    {
                        predicates.push((i, PredicateCall::new(p, prepared)));
                    }
                }
                Err(e) => self.err(&format!("{field}{}", e.field), e.code, e.reason),
            }
        }
        // Cheap matchers first; body matchers last so the body is read only when all else holds.
        matchers.sort_by_key(|(_, m)| match m {
            Matcher::Host(_) | Matcher::RemoteAddr(_) => 0,
            Matcher::Header(..) | Matcher::Cookie(..) | Matcher::QueryParam(..) => 1,
            Matcher::BodyField(..) | Matcher::BodyRegex(_) => 2,
        });
        if !rule.default_rule && rule.matchers.is_empty() {
            self.err(
                "matchers",
                ErrorCode::NoMatchers,
                "a route that is not the default rule needs at least one matcher".into(),
            );
        }
        Matchers {
            path,
            methods,
            matchers,
            predicates,
        }
    }

    /// The plugin a matcher or filter at `field` names, as `found` by the route's plugin
    /// source, with what it made of the route's args (`prepare`), if it is of the right `role`
    /// and accepts them; otherwise the error is recorded and there is none.
    fn plugin<X>(
        &mut self,
        field: &str,
        name: &str,
        role: Role,
        found: Lookup<Arc<X>>,
        prepare: impl FnOnce(&X) -> Result<Prepared, String>,
    ) -> Option<(Arc<X>, Prepared)> {
        let p = match found {
            Lookup::Found(p) => p,
            Lookup::Missing => {
                let reason = format!("plugin {name:?} is not loaded");
                self.err(&format!("{field}.plugin"), ErrorCode::UnknownPlugin, reason);
                return None;
            }
            Lookup::WrongKind => {
                let (code, reason) = match role {
                    Role::Predicate => (ErrorCode::InvalidMatcher, "a filter, not a predicate"),
                    Role::Filter => (ErrorCode::InvalidFilter, "a predicate, not a filter"),
                };
                self.err(
                    &format!("{field}.plugin"),
                    code,
                    format!("plugin {name:?} is {reason}"),
                );
                return None;
            }
        };
        match prepare(&p) {
            Ok(mut prepared) => {
                prepared.route = self.name.clone();
                Some((p, prepared))
            }
            Err(reason) => {
                self.err(
                    &format!("{field}.args"),
                    ErrorCode::InvalidPluginArgs,
                    reason,
                );
                None
            }
        }
    }

    /// The filters, built-in (their args checked against the path's parameters) and plugin.
    fn filters<X: External>(
        &mut self,
        plugins: &dyn PluginSource<X>,
        param_names: &[&str],
    ) -> Vec<RouteFilter<X>> {
        let rule = self.rule;
        let mut filters = Vec::new();
        for (i, f) in rule.filters.iter().enumerate() {
            let field = format!("filters[{i}]");
            match (&f.name, &f.plugin) {
                (Some(fname), None) => match BuiltinFilter::compile(fname, &f.args, param_names) {
                    Ok(bf) => filters.push(RouteFilter::Builtin(bf)),
                    Err(e) => self.err(&format!("{field}.{}", e.field), e.code, e.reason),
                },
                (None, Some(name)) => {
                    let found = plugins.filter(name);
                    let prepare = |p: &X| ExternalFilter::prepare(p, &f.args);
                    if let Some((p, prepared)) =
                        self.plugin(&field, name, Role::Filter, found, prepare)
                    {
                        filters.push(RouteFilter::Plugin(FilterCall::new(p, prepared)));
                    }
                }
                _ => self.err(
                    &field,
                    ErrorCode::InvalidFilter,
                    "a filter has either \"name\" (built-in) or \"plugin\", not both".into(),
                ),
            }
        }
        filters
    }

    /// The backends, with their connection settings and policies; none are needed when a
    /// filter answers.
    fn backends(&mut self, answers: bool, states: &EndpointStates) -> Option<Backends> {
        let rule = self.rule;
        match endpoints::compile(rule, states) {
            Ok(Some(b)) => {
                if rule.tls_insecure_skip_verify {
                    tracing::warn!(
                        route = %rule.name,
                        "tls_insecure_skip_verify: the backend's certificate is not checked"
                    );
                }
                Some(b)
            }
            Ok(None) if !answers => {
                self.err(
                    "target_url",
                    ErrorCode::InvalidUrl,
                    "missing: every route needs a target_url (or targets) unless a respond or redirect filter answers"
                        .into(),
                );
                None
            }
            Ok(None) => {
                let tls_fields = rule.tls_ca_file.is_some()
                    || rule.tls_server_name.is_some()
                    || rule.tls_insecure_skip_verify
                    || rule.upstream_protocol.is_some();
                if tls_fields {
                    self.err(
                        "target_url",
                        ErrorCode::InvalidBackendTls,
                        "missing: the backend TLS and protocol fields need a target_url".into(),
                    );
                }
                None
            }
            Err(errors) => {
                for e in errors {
                    self.err(&e.field, e.code, e.reason);
                }
                None
            }
        }
    }

    /// An optional part of the rule, compiled by `compile` (its error recorded).
    fn part<S, T>(
        &mut self,
        spec: Option<&S>,
        compile: impl FnOnce(&S) -> Result<T, FieldError>,
    ) -> Option<T> {
        match compile(spec?) {
            Ok(t) => Some(t),
            Err(e) => {
                self.err(&e.field, e.code, e.reason);
                None
            }
        }
    }

    /// A list of media types (`consumes`, `produces`).
    fn media(&mut self, field: &str, list: &[String]) -> Box<[MediaType]> {
        let mut parsed = Vec::with_capacity(list.len());
        for (i, text) in list.iter().enumerate() {
            match MediaType::parse(text) {
                Some(m) => parsed.push(m),
                None => self.err(
                    &format!("{field}[{i}]"),
                    ErrorCode::InvalidMediaType,
                    format!("{text:?} is not a media type such as application/json or text/*"),
                ),
            }
        }
        parsed.into()
    }
}

/// A path matcher's parameters (name, segment, catch-all) and its specificity, for ordering.
fn params_of(path: &PathMatch) -> (Vec<(Box<str>, usize, bool)>, Specificity) {
    match path {
        PathMatch::Pattern(p) => {
            let mut params: Vec<_> = p
                .segments
                .iter()
                .enumerate()
                .filter_map(|(i, s)| match s {
                    Segment::Param(n) => Some((n.clone(), i, false)),
                    Segment::CatchAll(n) => Some((n.clone(), i, true)),
                    Segment::Literal(_) => None,
                })
                .collect();
            // A filtered collect reserves room for four; a table keeps this for every route.
            params.shrink_to_fit();
            (params, Specificity::of_pattern(p))
        }
        PathMatch::Prefix(segs) => (Vec::new(), Specificity::of_prefix(segs.len())),
        PathMatch::Regex(_) => (Vec::new(), Specificity::regex()),
        PathMatch::Any => (Vec::new(), Specificity::none()),
    }
}

#[cfg(test)]
mod footprint {
    //! A table of 100,000 routes keeps a compiled route and its rule for each: what is inline
    //! in them is paid by every route, so what few routes use (rate limits, mirrors, retries,
    //! balancing, ejection) is boxed.
    use super::*;
    use crate::external::NoExternal;

    #[test]
    fn a_route_and_its_rule_stay_small() {
        let route = std::mem::size_of::<Route<NoExternal>>();
        let rule = std::mem::size_of::<RouteRule>();
        // 760 and 576 bytes before the boxing.
        assert!(route <= 544, "a compiled route is {route} bytes");
        assert!(rule <= 344, "a route rule is {rule} bytes");
    }
}
