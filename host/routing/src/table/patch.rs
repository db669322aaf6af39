//! Changing a table by a few routes without building it again: the changed routes are compiled,
//! placed among the others by rank, and put into (or taken out of) the path index, which copies
//! only the nodes on their paths. Everything else is shared with the table before, so a change
//! to a table of 100,000 routes costs about what it costs on a table of ten, plus copying a
//! list of pointers.

use std::cmp::Ordering;
use std::sync::Arc;

use super::{NO_RANK, RouteTable};
use crate::config::{ErrorCode, RouteRule, RouteSetError};
use crate::endpoints::EndpointStates;
use crate::external::{External, PluginSource};
use crate::matchers::PathMatch;
use crate::route::Route;
use crate::tree::Place;

/// Where a route sits in the path index, if it is indexed: not the default rule, and not a
/// regex path or no path at all (those are checked for every request).
pub(super) fn place_of<X: External>(route: &Route<X>) -> Option<Place<'_>> {
    if route.rule.default_rule {
        return None;
    }
    match &route.path {
        PathMatch::Pattern(p) => Some(Place::Pattern(&p.segments)),
        PathMatch::Prefix(segments) => Some(Place::Prefix(segments)),
        PathMatch::Regex(_) | PathMatch::Any => None,
    }
}

/// Decision order: the default rule last, then higher priority, more specific path, more
/// matchers, and the name.
pub(super) fn rank_order<X: External>(a: &Route<X>, b: &Route<X>) -> Ordering {
    a.rule
        .default_rule
        .cmp(&b.rule.default_rule)
        .then(b.rule.priority.cmp(&a.rule.priority))
        .then_with(|| a.specificity.cmp(&b.specificity))
        .then(b.matcher_count().cmp(&a.matcher_count()))
        .then_with(|| a.name.as_bytes().cmp(b.name.as_bytes()))
}

impl<X: External> RouteTable<X> {
    /// This table with `puts` compiled in (each replacing the route of its name, if any) and
    /// the routes named in `removes` taken out; it serves what a table built from the changed
    /// document would serve. `None` when the change is one only a build makes as a build
    /// would: it involves the default rule or a route excluded for a missing plugin, names a
    /// route twice, or a changed route names a missing plugin (a build words that error).
    pub fn patched(
        &self,
        puts: &[&Arc<RouteRule>],
        removes: &[&str],
        plugins: &dyn PluginSource<X>,
        endpoints: &EndpointStates,
    ) -> Option<Result<RouteTable<X>, RouteSetError>> {
        let mut names: Vec<&str> = removes
            .iter()
            .copied()
            .chain(puts.iter().map(|r| r.name.as_str()))
            .collect();
        let named = names.len();
        names.sort_unstable();
        names.dedup();
        let is_touched = |name: &str| names.binary_search(&name).is_ok();
        let builds_only = names.len() != named
            || puts.iter().any(|r| r.default_rule)
            || self.excluded.iter().any(|(r, _)| is_touched(&r.name))
            || self
                .default_route
                .is_some_and(|d| is_touched(&self.routes[d as usize].name));
        if builds_only {
            return None;
        }
        let mut fresh = Vec::with_capacity(puts.len());
        let mut errors = Vec::new();
        for rule in puts {
            match Route::compile(rule, plugins, endpoints) {
                Ok(route) => fresh.push(Arc::new(route)),
                Err(e) => errors.extend(e),
            }
        }
        if errors.iter().any(|e| e.code == ErrorCode::UnknownPlugin) {
            return None;
        }
        if !errors.is_empty() {
            return Some(Err(RouteSetError(errors)));
        }
        Some(Ok(self.with_routes(fresh, &names)))
    }

    /// The table without the routes `names` names (sorted), and with `fresh` placed by rank.
    /// The routes that stay are not read (a table of 100,000 is mostly cache misses): they are
    /// found by their names' hashes, and keep the kind their old rank had.
    fn with_routes(&self, fresh: Vec<Arc<Route<X>>>, names: &[&str]) -> Self {
        let gone = |name: &str| names.binary_search(&name).is_ok();
        let mut index = self.index.clone();
        // Slots no route holds, this change's and earlier ones', are used again.
        let mut free: Vec<u32> = (0..self.rank_of.len() as u32)
            .filter(|&s| self.rank_of[s as usize] == NO_RANK)
            .collect();
        let gone_hashes: Vec<u64> = names.iter().map(|n| name_hash(n)).collect();
        let mut ranked: Vec<Placed<X>> = Vec::with_capacity(self.routes.len() + fresh.len());
        let mut old_unindexed = self.unindexed.iter().copied().peekable();
        for (rank, route) in self.routes.iter().enumerate() {
            let rank = rank as u32;
            let kind = if self.default_route == Some(rank) {
                Kind::Default
            } else if old_unindexed.next_if_eq(&rank).is_some() {
                Kind::Unindexed
            } else {
                Kind::Indexed
            };
            let (slot, hash) = (self.slot_of[rank as usize], self.name_hashes[rank as usize]);
            if gone_hashes.contains(&hash) && gone(&route.name) {
                if let Some(place) = place_of(route) {
                    index.remove(place, slot);
                }
                free.push(slot);
                continue;
            }
            ranked.push(Placed {
                route: Arc::clone(route),
                slot,
                hash,
                kind,
            });
        }
        let mut disabled: Vec<Arc<Route<X>>> = self
            .disabled
            .iter()
            .filter(|r| !gone(&r.name))
            .cloned()
            .collect();
        let mut next_slot = self.rank_of.len() as u32;
        for route in fresh {
            if !route.rule.enabled {
                disabled.push(route);
                continue;
            }
            let slot = free.pop().unwrap_or_else(|| {
                next_slot += 1;
                next_slot - 1
            });
            if let Some(place) = place_of(&route) {
                index.add(place, slot);
            }
            let at = ranked.partition_point(|p| rank_order(&p.route, &route) == Ordering::Less);
            ranked.insert(at, Placed::new(route, slot));
        }
        let mut table = RouteTable {
            routes: Vec::with_capacity(ranked.len()),
            slot_of: Vec::with_capacity(ranked.len()),
            rank_of: vec![NO_RANK; next_slot as usize],
            name_hashes: Vec::with_capacity(ranked.len()),
            index,
            unindexed: Vec::new(),
            default_route: None,
            default_url: self.default_url.clone(),
            max_body_bytes: self.max_body_bytes,
            disabled,
            excluded: self.excluded.clone(),
        };
        for (rank, placed) in ranked.into_iter().enumerate() {
            table.place(placed, rank as u32);
        }
        table
    }

    /// Puts a route at `rank` (the index already holds it in its slot).
    pub(super) fn place(&mut self, placed: Placed<X>, rank: u32) {
        match placed.kind {
            Kind::Default => self.default_route = Some(rank),
            Kind::Unindexed => self.unindexed.push(rank),
            Kind::Indexed => {}
        }
        if let Some(r) = self.rank_of.get_mut(placed.slot as usize) {
            *r = rank;
        }
        self.slot_of.push(placed.slot);
        self.name_hashes.push(placed.hash);
        self.routes.push(placed.route);
    }
}

/// How the table finds a route: through the path index, on every request (a regex path or
/// none), or as the default rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Indexed,
    Unindexed,
    Default,
}

/// A route with what the table keeps beside it.
pub(super) struct Placed<X: External> {
    route: Arc<Route<X>>,
    slot: u32,
    hash: u64,
    kind: Kind,
}

impl<X: External> Placed<X> {
    /// `route` in `slot`, its hash and kind read from it.
    pub(super) fn new(route: Arc<Route<X>>, slot: u32) -> Self {
        let kind = if route.rule.default_rule {
            Kind::Default
        } else if place_of(&route).is_none() {
            Kind::Unindexed
        } else {
            Kind::Indexed
        };
        Placed {
            hash: name_hash(&route.name),
            route,
            slot,
            kind,
        }
    }
}

/// A route name's hash, kept beside each route so a change finds the routes it replaces
/// without reading every route.
fn name_hash(name: &str) -> u64 {
    use std::hash::BuildHasher;
    rustc_hash::FxBuildHasher.hash_one(name)
}

#[cfg(test)]
mod tests {
    //! A table patched change by change decides every request as a table built from the
    //! document the changes leave.
    use std::collections::BTreeMap;

    use http::{HeaderMap, Method};
    use proptest::prelude::*;

    use super::*;
    use crate::config::{ConfigFile, parse};
    use crate::external::NoExternal;
    use crate::request::RequestView;
    use crate::table::{BuildMode, Decision, PredicateResults};

    const PATHS: [&str; 8] = [
        r#"{"condition": "path", "pattern": "/users/{id}"}"#,
        r#"{"condition": "path", "pattern": "/users/new"}"#,
        r#"{"condition": "path_prefix", "pattern": "/users"}"#,
        r#"{"condition": "path", "pattern": "/{*rest}"}"#,
        r#"{"condition": "path", "pattern": "/a/b"}"#,
        r#"{"condition": "path", "pattern": "/a/{x}/c", "is_regex": false}"#,
        r#"{"condition": "path", "pattern": "^/a/.*$", "is_regex": true}"#,
        r#"{"condition": "host", "pattern": "example.com"}"#,
    ];

    const REQUESTS: [(&str, &str); 9] = [
        ("GET", "/users/7"),
        ("GET", "/users/new"),
        ("POST", "/users/new"),
        ("GET", "/users"),
        ("GET", "/users/7/x"),
        ("GET", "/a/b"),
        ("PUT", "/a/z/c"),
        ("GET", "/a/"),
        ("DELETE", "/elsewhere"),
    ];

    /// Route `name` from a path choice, a method choice, a priority and whether it is enabled.
    fn rule(name: &str, path: usize, method: usize, priority: i64, enabled: bool) -> String {
        let methods = ["", "GET", "POST|PUT"][method];
        let method = if methods.is_empty() {
            String::new()
        } else {
            format!(r#", {{"condition": "method", "pattern": "{methods}"}}"#)
        };
        format!(
            r#"{{"name": "{name}", "target_url": "http://127.0.0.1:9", "priority": {priority},
                "enabled": {enabled}, "matchers": [{}{method}]}}"#,
            PATHS[path]
        )
    }

    fn document(routes: &BTreeMap<String, String>) -> ConfigFile {
        let list: Vec<&str> = routes.values().map(String::as_str).collect();
        parse(&format!(r#"{{"routes": [{}]}}"#, list.join(",")), "test").unwrap_or_default()
    }

    fn built(doc: &ConfigFile) -> RouteTable<NoExternal> {
        match RouteTable::build_with(doc, &(), BuildMode::Strict) {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        }
    }

    /// Which route (by name) each request gets, or how it is answered.
    fn decisions(t: &RouteTable<NoExternal>) -> Vec<String> {
        let headers = HeaderMap::new();
        let done = PredicateResults::default();
        REQUESTS
            .iter()
            .map(|(method, path)| {
                let method = Method::from_bytes(method.as_bytes()).unwrap_or(Method::GET);
                let req = RequestView {
                    method: &method,
                    path,
                    query: None,
                    host: Some("example.com"),
                    headers: &headers,
                    remote: std::net::Ipv4Addr::LOCALHOST.into(),
                    body: None,
                    shared: None,
                };
                match t.decide(&req, &done) {
                    Decision::Route(id) => t.route(id).name.to_string(),
                    other => format!("{other:?}"),
                }
            })
            .collect()
    }

    fn op() -> impl Strategy<Value = (usize, Option<(usize, usize, i64, bool)>)> {
        (
            0..6usize,
            proptest::option::weighted(
                0.8,
                (
                    0..PATHS.len(),
                    0..3usize,
                    0..3i64,
                    proptest::bool::weighted(0.9),
                ),
            ),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn a_patched_table_decides_as_a_built_one(ops in proptest::collection::vec(op(), 1..30)) {
            let mut routes = BTreeMap::new();
            let mut table = built(&document(&routes));
            let states = EndpointStates::default();
            for (n, change) in ops {
                let name = format!("r{n}");
                let (puts, removes) = match change {
                    Some((path, method, priority, enabled)) => {
                        routes.insert(name.clone(), rule(&name, path, method, priority, enabled));
                        (document(&routes).routes.into_iter().filter(|r| r.name == name).collect(), vec![])
                    }
                    None => {
                        routes.remove(&name);
                        (Vec::new(), vec![name.as_str()])
                    }
                };
                let puts: Vec<&Arc<RouteRule>> = puts.iter().collect();
                table = match table.patched(&puts, &removes, &(), &states) {
                    Some(Ok(t)) => t,
                    Some(Err(e)) => panic!("{e}"),
                    None => panic!("a plain change was not patched"),
                };
                let fresh = built(&document(&routes));
                prop_assert_eq!(decisions(&table), decisions(&fresh));
                let names = |t: &RouteTable<NoExternal>| {
                    let mut v: Vec<String> = t.routes().map(|r| r.name.to_string()).collect();
                    v.sort();
                    v
                };
                prop_assert_eq!(names(&table), names(&fresh));
            }
        }
    }

    #[test]
    fn the_default_rule_and_repeated_names_are_left_to_a_build() {
        let doc = parse(
            r#"{"routes": [{"name": "d", "default_rule": true, "target_url": "http://127.0.0.1:9"}]}"#,
            "test",
        )
        .unwrap_or_default();
        let table = built(&doc);
        let states = EndpointStates::default();
        assert!(table.patched(&[], &["d"], &(), &states).is_none());
        assert!(table.patched(&[], &["x", "x"], &(), &states).is_none());
        let put = &doc.routes[0];
        assert!(table.patched(&[put], &[], &(), &states).is_none());
    }
}
