//! The route table: an immutable, compiled route set plus its path index. A new table is made
//! for every change, built whole (`build`: sharing the unchanged routes of the table before) or,
//! for a change to a few routes, patched from the table before (`patch`), and swapped in whole;
//! requests in flight keep the table they started with.
//!
//! Routes are stored in decision order (priority, path specificity, matcher count, name), so a
//! route's id is its rank and the winner among candidates is simply the smallest id that matches.
//! The path index holds slots, which stay with a route while ranks move around it; the table
//! maps them to ranks.

mod build;
mod explain;
mod patch;
mod predicates;
mod reach;

pub use explain::{Candidate, Explanation, Failure};

use std::sync::Arc;

use http::{Method, StatusCode};

use super::external::External;
use super::matchers::PathMatch;
use super::media;
use super::params::Params;
use super::request::RequestView;
use super::route::{Route, Target};
use super::tree::{Candidates, PathIndex};
use crate::config::RouteRule;

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
    /// Each route's slot in the path index, by rank.
    slot_of: Vec<u32>,
    /// Each slot's rank (`NO_RANK`: no route holds it).
    rank_of: Vec<u32>,
    /// Each route's name hash, by rank: a change finds what it replaces without reading
    /// every route.
    name_hashes: Vec<u64>,
    index: PathIndex,
    /// Routes with a regex path or no path matcher, in rank order.
    unindexed: Vec<u32>,
    default_route: Option<u32>,
    default_url: Option<Target>,
    max_body_bytes: usize,
    disabled: Vec<Arc<Route<X>>>,
    excluded: Vec<(Arc<RouteRule>, String)>,
}

/// The rank of a slot no route holds.
const NO_RANK: u32 = u32::MAX;

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

    /// The ranks of the indexed routes whose path pattern matches `path`, unordered.
    fn candidates(&self, path: &str, out: &mut Candidates) {
        self.index.candidates(path, out);
        out.retain(|slot| match self.rank_of.get(*slot as usize) {
            Some(&rank) if rank != NO_RANK => {
                *slot = rank;
                true
            }
            _ => false,
        });
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
        self.candidates(path, &mut cands);
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
        self.candidates(req.path, &mut cands);
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
