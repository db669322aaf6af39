//! The live route set: routes from the config file and routes made through the admin API (kept
//! in the [`RouteStore`]), one name space, compiled together into the table the proxy serves.
//! Every change builds a whole new table and swaps it in; a change that does not validate
//! changes nothing. Writes are serialised by one lock, and an API change is committed to the
//! store before it is acknowledged and served. Reads never take that lock: every swap also
//! publishes the listing, so a slow write (a plugin's `validate`, a disk commit) delays no read.
//!
//! Names: a config file route and an API route may share a name only when the file came later
//! (API writes refuse names the file has). Then the file's route serves and the API route stays
//! stored but is listed `excluded`, with the reason; it serves again once the file drops the
//! name, and it can still be deleted. A restart builds the same table the same way, so a state
//! routerd accepted never stops it from starting.
//!
//! This module holds the state and how a table is made from it and published; `commands` the
//! API's changes (each checked, committed to the store, then applied), `follow` what another
//! instance changed in a shared store, and `errors` the refusals, in the route set's own terms.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;
use serde::Serialize;

mod commands;
mod errors;
mod follow;
mod plugin_plan;
mod replicas;

pub use commands::{Plan, PlannedDocument, ProposedChange};
pub use errors::{ChangeError, Refusal, StartError, store_error};

use errors::not_found;

use crate::store::{RouteStore, StoredRoute};
use routerd_plugins::Plugin;
use routerd_plugins::PluginRegistry;
use routerd_proxy::metrics::Metrics;
use routerd_routing::config::{
    ConfigFile, DocumentRef, ErrorCode, RouteError, RouteRule, RouteSetError,
};
use routerd_routing::endpoints::EndpointStates;
use routerd_routing::{BuildMode, PublishedTable, RouteTable};

/// Where a route comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The config file (read-only through the API).
    File,
    /// The admin API.
    Api,
}

/// A route as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RouteView {
    /// The route.
    #[serde(flatten)]
    pub rule: Arc<RouteRule>,
    /// Its version (for `If-Match`).
    pub version: u64,
    /// Where it comes from.
    pub source: Source,
    /// `active`, `disabled` or `excluded`.
    pub status: &'static str,
    /// Why it is excluded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The result of `apply`.
#[derive(Debug, Default, Serialize)]
pub struct ApplySummary {
    /// Routes created.
    pub created: Vec<String>,
    /// Routes changed.
    pub updated: Vec<String>,
    /// Routes deleted.
    pub deleted: Vec<String>,
}

struct State {
    file: ConfigFile,
    file_version: u64,
    api: BTreeMap<String, StoredRoute>,
    /// API routes deleted, by name, with the revision of the delete: a change another instance
    /// made earlier, reported late by the store, must not bring one back. Cleared on a resync.
    tombstones: HashMap<String, u64>,
    last_version: u64,
    table_version: u64,
}

/// A change another instance made, as the shared store reports it.
#[derive(Debug, Clone)]
pub enum Observed {
    /// A route was written.
    Put(Box<StoredRoute>),
    /// A route was deleted at `revision`.
    Delete {
        /// Its name.
        name: String,
        /// The revision of the delete.
        revision: u64,
    },
}

/// What reads see: the routes as listed, and the table generation, published on every swap.
struct Listing {
    routes: Vec<RouteView>,
    table_version: u64,
}

/// See the module docs.
pub struct RouteSet {
    state: Mutex<State>,
    listing: ArcSwap<Listing>,
    /// `State::last_version` as of the last swap, for readers that must not take the lock.
    revision: std::sync::atomic::AtomicU64,
    store: Option<Arc<dyn RouteStore>>,
    plugins: Arc<PluginRegistry>,
    /// The endpoints' live state, handed from each table to the next.
    endpoints: EndpointStates,
    /// Where each new table goes to be served.
    published: Arc<PublishedTable<Plugin>>,
    metrics: Option<Arc<Metrics>>,
}

/// The document to compile: the file's routes, then every API route whose name the file does
/// not take (see the module docs). Borrowed: a change does not copy every rule.
fn document<'a>(file: &'a ConfigFile, api: &'a BTreeMap<String, StoredRoute>) -> DocumentRef<'a> {
    let taken = file_names(file);
    let mut doc = DocumentRef::from(file);
    doc.routes.extend(
        api.values()
            .filter(|r| !taken.contains(r.rule.name.as_str()))
            .map(|r| &r.rule),
    );
    doc
}

/// The names the config file's routes take (looked up once per API route, so a set).
fn file_names(file: &ConfigFile) -> std::collections::HashSet<&str> {
    file.routes.iter().map(|r| r.name.as_str()).collect()
}

/// Whether the config file has a route named `name`.
fn shadowed(file: &ConfigFile, name: &str) -> bool {
    file.routes.iter().any(|r| r.name == name)
}

const SHADOWED: &str =
    "the config file has a route with this name; the file's route serves while it is there";

impl RouteSet {
    /// Starts from the config file and the stored API routes. File routes are strict (a
    /// missing plugin is an error); stored API routes whose plugin is missing are excluded.
    pub fn new(
        file: ConfigFile,
        plugins: Arc<PluginRegistry>,
        store: Option<Arc<dyn RouteStore>>,
        published: Arc<PublishedTable<Plugin>>,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<Self, StartError> {
        let snapshot = match &store {
            Some(s) => s.load().map_err(StartError::Store)?,
            None => Default::default(),
        };
        if let Some(why) = &snapshot.stale {
            tracing::warn!("serving stale API routes: {why}");
        }
        let last_version = snapshot.revision;
        let api: BTreeMap<String, StoredRoute> = snapshot
            .routes
            .into_iter()
            .map(|r| (r.rule.name.clone(), r))
            .collect();
        let endpoints = EndpointStates::default();
        let doc = document(&file, &api);
        let table = Self::compile(&plugins, &endpoints, &doc, None, |name| {
            file.routes.iter().any(|r| r.name == name)
        })?;
        let set = RouteSet {
            endpoints,
            state: Mutex::new(State {
                file,
                file_version: last_version + 1,
                api,
                tombstones: HashMap::new(),
                last_version: last_version + 1,
                table_version: 0,
            }),
            listing: ArcSwap::from_pointee(Listing {
                routes: Vec::new(),
                table_version: 0,
            }),
            revision: std::sync::atomic::AtomicU64::new(last_version),
            published,
            store,
            plugins,
            metrics,
        };
        let mut state = set.lock();
        set.swap(&mut state, table);
        drop(state);
        Ok(set)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Builds a table, excluding routes whose plugin is missing unless `strict(name)` says the
    /// route must not be excluded (then the missing plugin is an error). Routes of `previous`
    /// that depend on their rule alone are shared where the rule is unchanged.
    fn compile(
        plugins: &PluginRegistry,
        endpoints: &EndpointStates,
        doc: &DocumentRef<'_>,
        previous: Option<&RouteTable<Plugin>>,
        strict: impl Fn(&str) -> bool,
    ) -> Result<RouteTable<Plugin>, RouteSetError> {
        let mode = BuildMode::ExcludeMissingPlugins;
        let table = RouteTable::build_in(doc, plugins, mode, endpoints, previous)?;
        let errors: Vec<RouteError> = table
            .excluded()
            .iter()
            .filter(|(rule, _)| strict(&rule.name))
            .map(|(rule, reason)| {
                RouteError::new(
                    &rule.name,
                    "matchers",
                    ErrorCode::UnknownPlugin,
                    reason.clone(),
                )
            })
            .collect();
        if errors.is_empty() {
            Ok(table)
        } else {
            Err(RouteSetError(errors))
        }
    }

    fn swap(&self, state: &mut State, table: RouteTable<Plugin>) {
        for (rule, reason) in table.excluded() {
            tracing::warn!(route = %rule.name, "route excluded: {reason}");
        }
        let taken = file_names(&state.file);
        // The file's routes are few; the API's may be 100,000.
        for r in state.file.routes.iter() {
            if state.api.contains_key(&r.name) {
                tracing::warn!(route = %r.name, "API route excluded: {SHADOWED}");
            }
        }
        let routes = Self::views(state, &taken, &table);
        state.table_version += 1;
        if let Some(m) = &self.metrics {
            // The table's routes: the file's and the API's, but those excluded.
            let excluded: std::collections::HashSet<&str> = table
                .excluded()
                .iter()
                .map(|(r, _)| r.name.as_str())
                .collect();
            m.table_swapped(state.table_version, |name| {
                (taken.contains(name) || state.api.contains_key(name)) && !excluded.contains(name)
            });
        }
        self.published.publish(table);
        self.revision
            .store(state.last_version, std::sync::atomic::Ordering::Relaxed);
        self.listing.store(Arc::new(Listing {
            routes,
            table_version: state.table_version,
        }));
    }

    /// Every route as listed against `table`, by name (a file route before a shadowed API
    /// route of the same name).
    fn views(
        state: &State,
        taken: &std::collections::HashSet<&str>,
        table: &RouteTable<Plugin>,
    ) -> Vec<RouteView> {
        let excluded: BTreeMap<&str, &str> = table
            .excluded()
            .iter()
            .map(|(r, why)| (r.name.as_str(), why.as_str()))
            .collect();
        let view = |rule: Arc<RouteRule>, version: u64, source: Source| {
            let reason = if source == Source::Api && taken.contains(rule.name.as_str()) {
                Some(SHADOWED.to_owned())
            } else {
                excluded.get(rule.name.as_str()).map(|r| (*r).to_owned())
            };
            RouteView {
                status: if reason.is_some() {
                    "excluded"
                } else if rule.enabled {
                    "active"
                } else {
                    "disabled"
                },
                rule,
                version,
                source,
                reason,
            }
        };
        let mut file: Vec<RouteView> = state
            .file
            .routes
            .iter()
            .map(|r| view(Arc::clone(r), state.file_version, Source::File))
            .collect();
        file.sort_by(|a, b| a.rule.name.cmp(&b.rule.name));
        // The API's routes come in name order already: merged, not sorted again (a file route
        // before the API route it shadows).
        let mut api = state
            .api
            .values()
            .map(|r| view(Arc::clone(&r.rule), r.version, Source::Api))
            .peekable();
        let mut out = Vec::with_capacity(file.len() + state.api.len());
        for f in file {
            while let Some(a) = api.next_if(|a| a.rule.name < f.rule.name) {
                out.push(a);
            }
            out.push(f);
        }
        out.extend(api);
        out
    }

    /// The table being served now.
    pub fn table(&self) -> Arc<RouteTable<Plugin>> {
        self.published.current()
    }

    /// The plugin registry.
    pub fn plugins(&self) -> &Arc<PluginRegistry> {
        &self.plugins
    }

    /// Replaces the config file's routes if they are all valid; otherwise nothing changes.
    pub fn apply_file(&self, config: ConfigFile) -> Result<(), RouteSetError> {
        let mut state = self.lock();
        let table = Self::compile(
            &self.plugins,
            &self.endpoints,
            &document(&config, &state.api),
            Some(&self.published.current()),
            |name| config.routes.iter().any(|r| r.name == name),
        )?;
        state.file = config;
        state.file_version = state.last_version + 1;
        state.last_version += 1;
        self.swap(&mut state, table);
        Ok(())
    }

    /// Rebuilds after plugins changed: routes whose plugin is gone are excluded, and routes
    /// whose plugin is back return.
    pub fn plugins_changed(&self) {
        self.rebuild("a plugin change");
    }

    /// Recompiles the routes from their current sources after a file they name (a route's
    /// `tls_ca_file`) changed, so what is served is what a restart would load; if the routes no
    /// longer compile, the previous table keeps serving.
    pub fn files_changed(&self) {
        self.rebuild("a change to a file they name");
    }

    /// Compiles the current sources again; a failure keeps the previous table.
    fn rebuild(&self, after: &str) {
        let mut state = self.lock();
        match Self::compile(
            &self.plugins,
            &self.endpoints,
            &document(&state.file, &state.api),
            // Everything again: a plugin or a file a route reads changed.
            None,
            |_| false,
        ) {
            Ok(table) => {
                self.swap(&mut state, table);
                tracing::info!("routes rebuilt after {after}");
            }
            Err(e) => tracing::warn!(
                "routes not rebuilt after {after}, the previous table keeps serving: {e}"
            ),
        }
    }

    /// The files the routes read when compiled (their `tls_ca_file`s), sorted.
    pub fn named_files(&self) -> Vec<std::path::PathBuf> {
        let state = self.lock();
        let mut files: Vec<std::path::PathBuf> = state
            .file
            .routes
            .iter()
            .chain(state.api.values().map(|r| &r.rule))
            .filter_map(|r| r.tls_ca_file.as_ref().map(std::path::PathBuf::from))
            .collect();
        files.sort();
        files.dedup();
        files
    }

    /// The table generation being served.
    pub fn table_version(&self) -> u64 {
        self.listing.load().table_version
    }

    /// Every route, by name (never waits for a write in progress).
    pub fn list(&self) -> Vec<RouteView> {
        self.listing.load().routes.clone()
    }

    /// Runs `f` on the routes as listed and the table generation they belong to, both from one
    /// published snapshot, without copying the listing.
    pub fn with_listing<R>(&self, f: impl FnOnce(&[RouteView], u64) -> R) -> R {
        let listing = self.listing.load();
        f(&listing.routes, listing.table_version)
    }

    /// The route `name` from `source` (the file's and an excluded API route may share a
    /// name); from either when `None`, the file's first.
    pub fn get(&self, name: &str, source: Option<Source>) -> Result<RouteView, ChangeError> {
        let listing = self.listing.load();
        // The listing is in name order (a file route before an API route of its name).
        let first = listing
            .routes
            .partition_point(|r| r.rule.name.as_str() < name);
        listing.routes[first..]
            .iter()
            .take_while(|r| r.rule.name == name)
            .find(|r| source.is_none_or(|s| r.source == s))
            .cloned()
            .ok_or_else(|| not_found(name))
    }

    /// The store behind the API routes.
    pub fn store(&self) -> Option<&Arc<dyn RouteStore>> {
        self.store.as_ref()
    }

    /// The highest store revision this instance has applied (never waits for a write).
    pub fn revision(&self) -> u64 {
        self.revision.load(std::sync::atomic::Ordering::Relaxed)
    }
}
