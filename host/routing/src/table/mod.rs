//! The route table: an immutable, compiled route set plus its path index. A new table is built
//! for every change and swapped in whole; requests in flight keep the table they started with.
//!
//! Routes are stored in decision order (priority, path specificity, matcher count, name), so a
//! route's id is its rank and the winner among candidates is simply the smallest id that matches.

mod explain;
mod predicates;

pub use explain::{Candidate, Explanation, Failure};

use std::sync::Arc;

use http::{Method, StatusCode};

use super::endpoints::EndpointStates;
use super::external::{External, PluginSource};
use super::matchers::PathMatch;
use super::media;
use super::params::Params;
use super::request::RequestView;
use super::route::{Route, Target};
use super::tree::{Candidates, PathIndex, PathIndexBuilder};
use crate::config::{ConfigFile, DocumentRef, ErrorCode, RouteError, RouteRule, RouteSetError};

/// The default limit on bodies read for body matchers.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;
/// The largest `max_body_bytes` accepted: a body a matcher needs is buffered in memory, once
/// per request in flight.
pub const MAX_BODY_BYTES_LIMIT: usize = 64 << 20;

/// An immutable compiled route set.
#[derive(Debug)]
pub struct RouteTable<X: External> {
    /// Shared with the tables built after this one while their rule stays the same.
    routes: Vec<Arc<Route<X>>>,
    index: PathIndex,
    /// Routes with a regex path or no path matcher, in rank order.
    unindexed: Vec<u32>,
    default_route: Option<u32>,
    default_url: Option<Target>,
    max_body_bytes: usize,
    disabled: Vec<Arc<Route<X>>>,
    excluded: Vec<(Arc<RouteRule>, String)>,
}

/// How [`RouteTable::build`] treats routes whose plugin is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildMode {
    /// Every error rejects the whole set (config loads and API changes).
    Strict,
    /// A route whose only problem is a missing plugin is excluded, with the reason, and comes
    /// back when the plugin does (rebuilds after a plugin change).
    ExcludeMissingPlugins,
}

/// What to do with a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Send it through this route.
    Route(u32),
    /// A route that needs the body is next in line: read the body and decide again.
    NeedBody,
    /// A route whose plugin predicates have not run yet is next in line: run them
    /// ([`RouteTable::run_predicates`]) and decide again with the result.
    NeedPredicates {
        /// The route.
        route: u32,
        /// Whether they run against the path with its trailing slash toggled (the redirect
        /// check) rather than the request's own.
        toggled: bool,
    },
    /// Proxy to `default_url`.
    DefaultUrl,
    /// Redirect to the same path with a trailing slash added or removed.
    Redirect(StatusCode, String),
    /// Some routes failed only on the method; these are the allowed ones.
    MethodNotAllowed(String),
    /// An OPTIONS request for a path whose routes allow these methods.
    Options(String),
    /// Some routes failed only on `consumes`: the request body's type is none of these.
    UnsupportedMediaType(String),
    /// Some routes failed only on `produces`: `Accept` allows none of these.
    NotAcceptable(String),
    /// Nothing matches.
    NotFound,
    /// The decision reached a route whose plugin predicate routerd could not run for want of
    /// capacity (the plugin's failure policy does not apply to the host's own shortage): the
    /// request cannot be decided, and routerd answers 503 itself.
    Overloaded {
        /// The route.
        route: u32,
        /// The plugin whose call could not run.
        plugin: String,
    },
}

enum Find {
    Found(u32),
    NeedBody,
    NeedPredicates(u32),
    Miss,
}

/// The plugin predicates already run for one request: per (route, toggled path), the rule index
/// of the first predicate that did not match, if any. Kept inline: a request rarely meets more
/// than a few routes with plugin predicates.
#[derive(Debug, Default)]
pub struct PredicateResults {
    done: smallvec::SmallVec<[(u32, bool, Option<usize>); 4]>,
    /// A route whose predicate could not run for want of capacity, with the plugin's name:
    /// it stops the decision ([`Decision::Overloaded`]).
    overloaded: Option<(u32, String)>,
}

impl PredicateResults {
    fn get(&self, route: u32, toggled: bool) -> Option<Option<usize>> {
        self.done
            .iter()
            .find(|(r, t, _)| *r == route && *t == toggled)
            .map(|(_, _, failed)| *failed)
    }
}

impl<X: External> RouteTable<X> {
    /// Validates and compiles a config document. Nothing is built unless every route is valid.
    pub fn build(config: &ConfigFile) -> Result<RouteTable<X>, RouteSetError> {
        Self::build_with(config, &(), BuildMode::Strict)
    }

    /// Like [`RouteTable::build`], with plugins.
    pub fn build_with(
        config: &ConfigFile,
        plugins: &dyn PluginSource<X>,
        mode: BuildMode,
    ) -> Result<RouteTable<X>, RouteSetError> {
        let doc = DocumentRef::from(config);
        Self::build_in(&doc, plugins, mode, &EndpointStates::default(), None)
    }

    /// Like [`RouteTable::build_with`], the endpoints' live state taken from `endpoints`, so
    /// what the tables before it learned about an endpoint carries over. A route of `previous`
    /// whose rule is unchanged is shared instead of compiled again, unless it depends on more
    /// than its rule (a plugin, which may have been replaced, or a CA file, which may have
    /// changed): a change to one route of many compiles that route alone.
    pub fn build_in(
        config: &DocumentRef<'_>,
        plugins: &dyn PluginSource<X>,
        mode: BuildMode,
        endpoints: &EndpointStates,
        previous: Option<&RouteTable<X>>,
    ) -> Result<RouteTable<X>, RouteSetError> {
        let reusable = previous.map(RouteTable::reusable).unwrap_or_default();
        let mut errors = Vec::new();
        let mut excluded = Vec::new();
        let mut compiled = Vec::with_capacity(config.routes.len());
        let mut names = rustc_hash::FxHashSet::default();
        names.reserve(config.routes.len());
        let mut default_seen: Option<&str> = None;
        for &rule in &config.routes {
            if !names.insert(rule.name.as_str()) {
                errors.push(RouteError::new(
                    &rule.name,
                    "name",
                    ErrorCode::RouteConflict,
                    "another route already has this name",
                ));
            }
            if rule.default_rule {
                if let Some(first) = default_seen {
                    errors.push(RouteError::new(
                        &rule.name,
                        "default_rule",
                        ErrorCode::MultipleDefaultRoutes,
                        format!("route {first:?} is already the default rule"),
                    ));
                }
                default_seen = Some(&rule.name);
            }
            // The same rule as shared by the route set is the common case, and the cheapest.
            let unchanged = |r: &&&Arc<Route<X>>| Arc::ptr_eq(&r.rule, rule) || *r.rule == **rule;
            if let Some(route) = reusable.get(rule.name.as_str()).filter(unchanged) {
                compiled.push(Arc::clone(route));
                continue;
            }
            match Route::compile(rule, plugins, endpoints) {
                Ok(r) => compiled.push(Arc::new(r)),
                Err(e)
                    if mode == BuildMode::ExcludeMissingPlugins
                        && e.iter().all(|e| e.code == ErrorCode::UnknownPlugin) =>
                {
                    let reason = e
                        .iter()
                        .map(|e| format!("{}: {}", e.field, e.reason))
                        .collect::<Vec<_>>()
                        .join("; ");
                    excluded.push((rule.clone(), reason));
                }
                Err(e) => errors.extend(e),
            }
        }
        let default_url = document_settings(config, &mut errors);
        if !errors.is_empty() {
            return Err(RouteSetError(errors));
        }
        let mut table = Self::assemble(
            compiled,
            default_url,
            config.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES),
        );
        table.excluded = excluded;
        Ok(table)
    }

    /// The routes a table built after this one may share, by name: those that depend on
    /// nothing but their rule.
    fn reusable(&self) -> rustc_hash::FxHashMap<&str, &Arc<Route<X>>> {
        self.routes
            .iter()
            .chain(&self.disabled)
            .filter(|r| r.depends_on_rule_alone())
            .map(|r| (&*r.name, r))
            .collect()
    }

    fn assemble(
        routes: Vec<Arc<Route<X>>>,
        default_url: Option<Target>,
        max_body_bytes: usize,
    ) -> RouteTable<X> {
        // Routes are large: sort the enabled ones' positions, then move each route once into a
        // vector of the right size (partitioning first moved every route twice more).
        let mut order: Vec<usize> = (0..routes.len())
            .filter(|&i| routes[i].rule.enabled)
            .collect();
        order.sort_by(|&a, &b| {
            let (a, b) = (&routes[a], &routes[b]);
            a.rule
                .default_rule
                .cmp(&b.rule.default_rule)
                .then(b.rule.priority.cmp(&a.rule.priority))
                .then_with(|| a.specificity.cmp(&b.specificity))
                .then(b.matcher_count().cmp(&a.matcher_count()))
                .then_with(|| a.name.as_bytes().cmp(b.name.as_bytes()))
        });
        let disabled_count = routes.len() - order.len();
        let mut slots: Vec<Option<Arc<Route<X>>>> = routes.into_iter().map(Some).collect();
        let mut routes = Vec::with_capacity(order.len());
        routes.extend(order.into_iter().filter_map(|i| slots[i].take()));
        let mut disabled = Vec::with_capacity(disabled_count);
        disabled.extend(slots.into_iter().flatten());
        let mut builder = PathIndexBuilder::new();
        let mut unindexed = Vec::new();
        let mut default_route = None;
        for (id, route) in routes.iter().enumerate() {
            let id = id as u32;
            if route.rule.default_rule {
                default_route = Some(id);
                continue;
            }
            match &route.path {
                PathMatch::Pattern(p) => builder.insert_pattern(&p.segments, id),
                PathMatch::Prefix(segs) => builder.insert_prefix(segs, id),
                PathMatch::Regex(_) | PathMatch::Any => unindexed.push(id),
            }
        }
        RouteTable {
            routes,
            index: builder.build(),
            unindexed,
            default_route,
            default_url,
            max_body_bytes,
            disabled,
            excluded: Vec::new(),
        }
    }

    /// Routes left out because a plugin they use is missing, with the reason.
    pub fn excluded(&self) -> &[(Arc<RouteRule>, String)] {
        &self.excluded
    }

    /// The route with id `id` (from a [`Decision::Route`]).
    pub fn route(&self, id: u32) -> &Route<X> {
        &self.routes[id as usize]
    }

    /// The enabled routes in decision order, then the disabled ones.
    pub fn routes(&self) -> impl Iterator<Item = &Route<X>> {
        self.routes.iter().chain(&self.disabled).map(|r| &**r)
    }

    /// The fallback backend.
    pub fn default_url(&self) -> Option<&Target> {
        self.default_url.as_ref()
    }

    /// The limit for bodies read by body matchers.
    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// The path parameters of route `id` for `path`.
    pub fn params<'a>(&'a self, id: u32, path: &'a str) -> Params<'a> {
        Params::new(&self.route(id).params, path)
    }

    /// Decides what to do with a request. Allocates nothing on the way to a route for paths with
    /// up to 16 candidate routes; the miss answers (redirect, 405) may allocate.
    /// Routes with plugin predicates answer [`Decision::NeedPredicates`] until `done` has their
    /// result.
    pub fn decide(&self, req: &RequestView<'_>, done: &PredicateResults) -> Decision {
        if let Some((route, plugin)) = &done.overloaded {
            return Decision::Overloaded {
                route: *route,
                plugin: plugin.clone(),
            };
        }
        match self.find(req, req.path, false, done, &mut None) {
            Find::Found(id) => return Decision::Route(id),
            Find::NeedBody => return Decision::NeedBody,
            Find::NeedPredicates(route) => {
                return Decision::NeedPredicates {
                    route,
                    toggled: false,
                };
            }
            Find::Miss => {}
        }
        if let Some(id) = self.default_route {
            return Decision::Route(id);
        }
        if self.default_url.is_some() {
            return Decision::DefaultUrl;
        }
        let alt = toggle_trailing_slash(req.path);
        let alt_found = match &alt {
            Some(alt) => match self.find(req, alt, true, done, &mut None) {
                Find::Found(_) => true,
                Find::NeedPredicates(route) => {
                    return Decision::NeedPredicates {
                        route,
                        toggled: true,
                    };
                }
                Find::NeedBody | Find::Miss => false,
            },
            None => false,
        };
        if let Some(alt) = alt
            && alt_found
        {
            let status = if req.method == Method::GET || req.method == Method::HEAD {
                StatusCode::MOVED_PERMANENTLY
            } else {
                StatusCode::PERMANENT_REDIRECT
            };
            let location = match req.query {
                Some(q) => format!("{alt}?{q}"),
                None => alt,
            };
            return Decision::Redirect(status, location);
        }
        let mut allowed = Some(Vec::new());
        if let Find::NeedPredicates(route) = self.find(req, req.path, false, done, &mut allowed) {
            return Decision::NeedPredicates {
                route,
                toggled: false,
            };
        }
        let mut allowed = allowed.unwrap_or_default();
        if allowed.is_empty() {
            return self.negotiation_miss(req, done);
        }
        allowed.push(Method::OPTIONS);
        allowed.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        allowed.dedup();
        let allow = allowed
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        if req.method == Method::OPTIONS {
            Decision::Options(allow)
        } else {
            Decision::MethodNotAllowed(allow)
        }
    }

    /// The first route (by rank) that matches `req` with `path`. With `allowed`, also collects
    /// the methods of routes that fail only on the method (body matchers count as passing).
    fn find(
        &self,
        req: &RequestView<'_>,
        path: &str,
        toggled: bool,
        done: &PredicateResults,
        allowed: &mut Option<Vec<Method>>,
    ) -> Find {
        let mut cands = Candidates::new();
        self.index.candidates(path, &mut cands);
        cands.sort_unstable();
        let mut indexed = cands.iter().copied().peekable();
        let mut unindexed = self.unindexed.iter().copied().peekable();
        loop {
            let id = match (indexed.peek(), unindexed.peek()) {
                (Some(&a), Some(&b)) if a < b => indexed.next(),
                (Some(_), None) => indexed.next(),
                (_, Some(_)) => unindexed.next(),
                (None, None) => return Find::Miss,
            };
            let Some(id) = id else { return Find::Miss };
            let route = &self.routes[id as usize];
            if let PathMatch::Regex(re) = &route.path
                && !re.is_match(path)
            {
                continue;
            }
            let method_ok = route
                .methods
                .as_ref()
                .is_none_or(|m| m.contains(req.method));
            if let Some(allowed) = allowed {
                // The method is judged first (go-restful's order): media types do not count.
                if !method_ok && matchers_match(route, req, true) {
                    match predicates_passed(route, id, toggled, done) {
                        Some(true) => {
                            allowed.extend(route.methods.iter().flat_map(|m| m.0.iter().cloned()))
                        }
                        Some(false) => {}
                        None => return Find::NeedPredicates(id),
                    }
                }
                continue;
            }
            if !method_ok {
                continue;
            }
            if route.needs_body && req.body.is_none() {
                // Only read the body if the cheap matchers already agree.
                if self.others_match(route, req, true) {
                    return Find::NeedBody;
                }
                continue;
            }
            if self.others_match(route, req, false) {
                match predicates_passed(route, id, toggled, done) {
                    Some(true) => return Find::Found(id),
                    Some(false) => {}
                    None => return Find::NeedPredicates(id),
                }
            }
        }
    }

    fn others_match(&self, route: &Route<X>, req: &RequestView<'_>, skip_body: bool) -> bool {
        matchers_match(route, req, skip_body)
            && media::consumes_ok(&route.consumes, req.headers)
            && media::produces_ok(&route.produces, req.headers)
    }

    /// After no route matched and none failed on the method alone: 415 when some route failed
    /// only on `consumes` (the request has a body), else 406 when some failed only on
    /// `produces`, else 404 (go-restful's order).
    fn negotiation_miss(&self, req: &RequestView<'_>, done: &PredicateResults) -> Decision {
        let mut cands = Candidates::new();
        self.index.candidates(req.path, &mut cands);
        let mut ids: Vec<u32> = cands
            .iter()
            .copied()
            .chain(self.unindexed.iter().copied())
            .collect();
        ids.sort_unstable();
        let (mut unsupported, mut available) = (Vec::new(), Vec::new());
        for id in ids {
            let route = &self.routes[id as usize];
            if route.consumes.is_empty() && route.produces.is_empty() {
                continue;
            }
            if let PathMatch::Regex(re) = &route.path
                && !re.is_match(req.path)
            {
                continue;
            }
            if route
                .methods
                .as_ref()
                .is_some_and(|m| !m.contains(req.method))
                || !matchers_match(route, req, true)
            {
                continue;
            }
            match predicates_passed(route, id, false, done) {
                Some(true) => {}
                Some(false) => continue,
                None => {
                    return Decision::NeedPredicates {
                        route: id,
                        toggled: false,
                    };
                }
            }
            if !media::consumes_ok(&route.consumes, req.headers) {
                unsupported.extend(route.consumes.iter().map(ToString::to_string));
            } else if !media::produces_ok(&route.produces, req.headers) {
                available.extend(route.produces.iter().map(ToString::to_string));
            }
        }
        let listed = |mut types: Vec<String>| {
            types.sort();
            types.dedup();
            types.join(", ")
        };
        if !unsupported.is_empty() {
            Decision::UnsupportedMediaType(listed(unsupported))
        } else if !available.is_empty() {
            Decision::NotAcceptable(listed(available))
        } else {
            Decision::NotFound
        }
    }
}

/// Whether `route`'s built-in matchers (not path, method or media types) all match.
fn matchers_match<X: External>(route: &Route<X>, req: &RequestView<'_>, skip_body: bool) -> bool {
    route
        .matchers
        .iter()
        .all(|(_, m)| (skip_body && m.needs_body()) || m.matches(req))
}

/// The document's own settings beside its routes: the fallback backend, and a body limit within
/// bounds (errors go to `errors`).
fn document_settings(config: &DocumentRef<'_>, errors: &mut Vec<RouteError>) -> Option<Target> {
    let default_url = match config.default_url {
        Some(url) => match Target::parse(url) {
            Ok(t) => Some(t),
            Err(reason) => {
                errors.push(RouteError::new(
                    "",
                    "default_url",
                    ErrorCode::InvalidUrl,
                    reason,
                ));
                None
            }
        },
        None => None,
    };
    if let Some(n) = config.max_body_bytes
        && !(1..=MAX_BODY_BYTES_LIMIT).contains(&n)
    {
        errors.push(RouteError::new(
            "",
            "max_body_bytes",
            ErrorCode::InvalidMaxBodyBytes,
            format!(
                "{n} is outside 1..={MAX_BODY_BYTES_LIMIT} (64 MiB): bodies a matcher reads are buffered in memory"
            ),
        ));
    }
    default_url
}

/// Whether route `id`'s plugin predicates passed: `None` while they have not run.
fn predicates_passed<X: External>(
    route: &Route<X>,
    id: u32,
    toggled: bool,
    done: &PredicateResults,
) -> Option<bool> {
    if route.predicates.is_empty() {
        return Some(true);
    }
    done.get(id, toggled).map(|failed| failed.is_none())
}

fn toggle_trailing_slash(path: &str) -> Option<String> {
    if path == "/" {
        None
    } else if let Some(p) = path.strip_suffix('/') {
        Some(p.to_owned())
    } else {
        Some(format!("{path}/"))
    }
}

#[cfg(test)]
mod reuse {
    //! A table built after another shares the routes whose rule did not change, and compiles
    //! the rest; what it serves is what a build from nothing serves.
    use super::*;
    use crate::config::parse;
    use crate::external::NoExternal;

    fn doc(routes: &str) -> ConfigFile {
        parse(&format!(r#"{{"routes": [{routes}]}}"#), "test").unwrap_or_default()
    }

    fn by_name<'a>(t: &'a RouteTable<NoExternal>, name: &str) -> &'a Arc<Route<NoExternal>> {
        let found = t
            .routes
            .iter()
            .chain(&t.disabled)
            .find(|r| &*r.name == name);
        found.unwrap_or_else(|| panic!("no route {name}"))
    }

    #[test]
    fn unchanged_routes_are_shared_and_changed_ones_compiled() {
        let a = r#"{"name": "a", "target_url": "http://127.0.0.1:1", "matchers": [{"condition": "path", "pattern": "/a/{id}"}]}"#;
        let b = r#"{"name": "b", "target_url": "http://127.0.0.1:2", "matchers": [{"condition": "path", "pattern": "/b"}]}"#;
        let b2 = r#"{"name": "b", "target_url": "http://127.0.0.1:3", "matchers": [{"condition": "path", "pattern": "/b"}]}"#;
        let states = EndpointStates::default();
        let build = |d: &ConfigFile, prev: Option<&RouteTable<NoExternal>>| {
            RouteTable::<NoExternal>::build_in(&d.into(), &(), BuildMode::Strict, &states, prev)
        };
        let first = match build(&doc(&format!("{a}, {b}")), None) {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        };
        let second = match build(&doc(&format!("{a}, {b2}")), Some(&first)) {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        };
        assert!(Arc::ptr_eq(by_name(&first, "a"), by_name(&second, "a")));
        // A compiled route holds the document's rule, not a copy of it.
        let fresh_doc = doc(&format!("{a}, {b2}"));
        let built = match build(&fresh_doc, None) {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        };
        assert!(Arc::ptr_eq(
            &by_name(&built, "a").rule,
            &fresh_doc.routes[0]
        ));
        assert!(!Arc::ptr_eq(by_name(&first, "b"), by_name(&second, "b")));
        let target = |t: &RouteTable<NoExternal>| {
            let route = by_name(t, "b");
            route.rule.target_url.clone()
        };
        assert_eq!(target(&second).as_deref(), Some("http://127.0.0.1:3"));
        // Decisions equal a build from nothing.
        let fresh = match build(&doc(&format!("{a}, {b2}")), None) {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        };
        let names =
            |t: &RouteTable<NoExternal>| t.routes().map(|r| r.name.to_string()).collect::<Vec<_>>();
        assert_eq!(names(&second), names(&fresh));
    }
}
