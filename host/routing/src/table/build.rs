//! Building a table: every rule validated and compiled (or shared with the table before, when
//! unchanged), then ordered and indexed. Nothing is built unless every route is valid.

use std::sync::Arc;

use super::patch::{Placed, place_of, rank_order};
use super::{BuildMode, DEFAULT_MAX_BODY_BYTES, MAX_BODY_BYTES_LIMIT, NO_RANK, RouteTable};
use crate::config::{ConfigFile, DocumentRef, ErrorCode, RouteError, RouteSetError};
use crate::endpoints::EndpointStates;
use crate::external::{External, PluginSource};
use crate::route::{Route, Target};
use crate::tree::{PathIndexBuilder, Place};

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
        order.sort_by(|&a, &b| rank_order(&routes[a], &routes[b]));
        let disabled_count = routes.len() - order.len();
        let mut held: Vec<Option<Arc<Route<X>>>> = routes.into_iter().map(Some).collect();
        let mut ranked = Vec::with_capacity(order.len());
        ranked.extend(order.into_iter().filter_map(|i| held[i].take()));
        let mut disabled = Vec::with_capacity(disabled_count);
        disabled.extend(held.into_iter().flatten());
        // Built whole, a route's slot is its rank.
        let segments = ranked.iter().map(|r| r.path.segment_count()).sum::<usize>();
        let mut builder = PathIndexBuilder::with_capacity(segments + 1);
        for (slot, route) in ranked.iter().enumerate() {
            match place_of(route) {
                Some(Place::Pattern(segments)) => builder.insert_pattern(segments, slot as u32),
                Some(Place::Prefix(segments)) => builder.insert_prefix(segments, slot as u32),
                None => {}
            }
        }
        let mut table = RouteTable {
            routes: Vec::with_capacity(ranked.len()),
            slot_of: Vec::with_capacity(ranked.len()),
            rank_of: vec![NO_RANK; ranked.len()],
            name_hashes: Vec::with_capacity(ranked.len()),
            index: builder.build(),
            unindexed: Vec::new(),
            default_route: None,
            default_url,
            max_body_bytes,
            disabled,
            excluded: Vec::new(),
        };
        for (rank, route) in ranked.into_iter().enumerate() {
            table.place(Placed::new(route, rank as u32), rank as u32);
        }
        table
    }
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
