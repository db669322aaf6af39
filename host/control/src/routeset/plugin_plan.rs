//! Dry runs of plugin changes: the table the route set would serve if plugin `name` were
//! replaced by another version (compiled, not installed) or unloaded, built beside the served
//! one; nothing served or loaded changes. And the args the served routes give a plugin, which
//! a trial version prepares.

use std::sync::Arc;

use super::{ApplySummary, ChangeError, Plan, PlannedDocument, RouteSet, document};
use routerd_plugins::{Plugin, PluginRegistry};
use routerd_routing::external::{Lookup, PluginSource};
use routerd_routing::{BuildMode, RouteFilter, RouteTable};

/// The loaded plugins, with plugin `name` replaced by `with` (or missing, for `None`).
struct Overlay<'a> {
    loaded: &'a PluginRegistry,
    name: &'a str,
    with: Option<&'a Arc<Plugin>>,
}

impl Overlay<'_> {
    fn lookup(&self, name: &str, kind_ok: impl Fn(&Plugin) -> bool) -> Lookup<Arc<Plugin>> {
        if name != self.name {
            return match self.loaded.get(name) {
                None => Lookup::Missing,
                Some(p) if !kind_ok(&p) => Lookup::WrongKind,
                Some(p) => Lookup::Found(p),
            };
        }
        match self.with {
            None => Lookup::Missing,
            Some(p) if !kind_ok(p) => Lookup::WrongKind,
            Some(p) => Lookup::Found(p.clone()),
        }
    }
}

impl PluginSource<Plugin> for Overlay<'_> {
    fn predicate(&self, name: &str) -> Lookup<Arc<Plugin>> {
        self.lookup(name, |p| p.kind.predicate)
    }

    fn filter(&self, name: &str) -> Lookup<Arc<Plugin>> {
        self.lookup(name, |p| p.kind.filter)
    }
}

impl RouteSet {
    /// The args the served table's routes give plugin `name`, each set once (what a trial
    /// version prepares when it is loaded).
    pub fn plugin_args(&self, name: &str) -> Vec<Vec<String>> {
        let table = self.table();
        let mut args: Vec<Vec<String>> = Vec::new();
        for route in table.routes() {
            let predicates = route
                .predicates
                .iter()
                .filter(|(_, call)| call.name() == name)
                .map(|(_, call)| &call.prepared.args);
            let filters = route.filters.iter().filter_map(|f| match f {
                RouteFilter::Plugin(call) if call.name() == name => Some(&call.prepared.args),
                _ => None,
            });
            for a in predicates.chain(filters) {
                if !args.contains(a) {
                    args.push(a.clone());
                }
            }
        }
        args
    }

    /// Plans replacing plugin `name` by `with` (a version compiled and not installed), or
    /// unloading it (`None`): the table that would be served. Routes a new version's
    /// `configure` refuses, or that lose their plugin, are excluded, as a real change would
    /// exclude them; the summary lists the routes that use the plugin as `updated`.
    pub fn plan_plugin(&self, name: &str, with: Option<&Arc<Plugin>>) -> Result<Plan, ChangeError> {
        let state = self.lock();
        let doc = document(&state.file, &state.api);
        let overlay = Overlay {
            loaded: self.plugins(),
            name,
            with,
        };
        let previous = self.published.current();
        let table: RouteTable<Plugin> = RouteTable::build_in(
            &doc,
            &overlay,
            BuildMode::ExcludeMissingPlugins,
            &self.endpoints,
            Some(&previous),
        )
        .map_err(|e| ChangeError::from_validation(&e))?;
        let summary = ApplySummary {
            updated: doc
                .routes
                .iter()
                .filter(|r| r.uses_plugin(name))
                .map(|r| r.name.clone())
                .collect(),
            ..ApplySummary::default()
        };
        Ok(Plan {
            table,
            summary,
            document: PlannedDocument::of(&doc),
            swap: Some((name.to_owned(), with.cloned())),
        })
    }
}
