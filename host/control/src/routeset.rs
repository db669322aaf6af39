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

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;
use serde::Serialize;

use crate::store::{Change, Expect, RouteStore, StoreError, StoredRoute};
use routerd_plugins::Plugin;
use routerd_plugins::PluginRegistry;
use routerd_proxy::metrics::Metrics;
use routerd_routing::config::{ConfigFile, ErrorCode, RouteError, RouteRule, RouteSetError};
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
    pub rule: RouteRule,
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

/// Why a change to the route set (or a read of it) was refused: what kind of refusal, for
/// callers to answer in their own terms (the admin API picks its HTTP status and error code),
/// and a message for a person.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ChangeError {
    /// What kind of refusal.
    pub refusal: Refusal,
    /// For a person.
    pub message: String,
    /// For a validation error, each thing wrong with the route, naming its field, so an
    /// editor can show each reason next to the field.
    pub errors: Vec<RouteError>,
}

/// The kinds of refusal. Exhaustive on purpose: the admin API must say each one in its terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No route of that name.
    NotFound,
    /// A route of that name exists already.
    Conflict,
    /// The route comes from the config file.
    ReadOnly,
    /// The route is a system route.
    SystemRoute,
    /// The route is not at the version the change was made against.
    VersionMismatch,
    /// The route set the change would make is invalid; the code of its first error.
    Invalid(ErrorCode),
    /// The store did not answer.
    StoreUnavailable,
    /// The store failed.
    StoreFailed,
}

impl ChangeError {
    /// A refusal of `refusal`'s kind.
    pub fn new(refusal: Refusal, message: impl Into<String>) -> Self {
        ChangeError {
            refusal,
            message: message.into(),
            errors: Vec::new(),
        }
    }

    fn from_validation(e: &RouteSetError) -> Self {
        let code = e.0.first().map_or(ErrorCode::InvalidMatcher, |e| e.code);
        ChangeError {
            errors: e.0.clone(),
            ..ChangeError::new(Refusal::Invalid(code), e.to_string())
        }
    }
}

/// Why the route set could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The API routes could not be loaded from the store.
    #[error("cannot load the API routes from the store: {0}")]
    Store(#[source] StoreError),
    /// The config file's routes are invalid.
    #[error(transparent)]
    Invalid(#[from] RouteSetError),
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
    /// Where each new table goes to be served.
    published: Arc<PublishedTable<Plugin>>,
    metrics: Option<Arc<Metrics>>,
}

/// The document to compile: the file's routes, then every API route whose name the file does
/// not take (see the module docs).
fn document(file: &ConfigFile, api: &BTreeMap<String, StoredRoute>) -> ConfigFile {
    let taken = file_names(file);
    let mut doc = file.clone();
    doc.routes.extend(
        api.values()
            .filter(|r| !taken.contains(r.rule.name.as_str()))
            .map(|r| r.rule.clone()),
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
        let table = Self::compile(&plugins, &document(&file, &api), |name| {
            file.routes.iter().any(|r| r.name == name)
        })?;
        let set = RouteSet {
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
    /// route must not be excluded (then the missing plugin is an error).
    fn compile(
        plugins: &PluginRegistry,
        doc: &ConfigFile,
        strict: impl Fn(&str) -> bool,
    ) -> Result<RouteTable<Plugin>, RouteSetError> {
        let table = RouteTable::build_with(doc, plugins, BuildMode::ExcludeMissingPlugins)?;
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
        for name in state.api.keys().filter(|n| taken.contains(n.as_str())) {
            tracing::warn!(route = %name, "API route excluded: {SHADOWED}");
        }
        let routes = Self::views(state, &taken, &table);
        state.table_version += 1;
        if let Some(m) = &self.metrics {
            m.table_swapped(state.table_version, table.routes().map(|r| &*r.name));
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
        let view = |rule: &RouteRule, version: u64, source: Source| {
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
                rule: rule.clone(),
                version,
                source,
                reason,
            }
        };
        let mut out: Vec<RouteView> = state
            .file
            .routes
            .iter()
            .map(|r| view(r, state.file_version, Source::File))
            .chain(
                state
                    .api
                    .values()
                    .map(|r| view(&r.rule, r.version, Source::Api)),
            )
            .collect();
        // Stable: a file route stays before the API route it shadows.
        out.sort_by(|a, b| a.rule.name.cmp(&b.rule.name));
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
        let table = Self::compile(&self.plugins, &document(&config, &state.api), |name| {
            config.routes.iter().any(|r| r.name == name)
        })?;
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
        match Self::compile(&self.plugins, &document(&state.file, &state.api), |_| false) {
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
        self.listing
            .load()
            .routes
            .iter()
            .find(|r| r.rule.name == name && source.is_none_or(|s| r.source == s))
            .cloned()
            .ok_or_else(|| not_found(name))
    }

    fn check_writable(state: &State, name: &str) -> Result<(), ChangeError> {
        if let Some(r) = state.file.routes.iter().find(|r| r.name == name) {
            return Err(if r.system {
                ChangeError::new(
                    Refusal::SystemRoute,
                    format!(
                        "route {name:?} is a system route and cannot be changed through the API"
                    ),
                )
            } else {
                ChangeError::new(
                    Refusal::ReadOnly,
                    format!("route {name:?} comes from the config file; change it there"),
                )
            });
        }
        Ok(())
    }

    /// API route `name` exists, may be changed, and is at version `if_match` (when given).
    fn check_changeable(
        state: &State,
        name: &str,
        if_match: Option<u64>,
    ) -> Result<(), ChangeError> {
        Self::check_writable(state, name)?;
        let current = state.api.get(name).ok_or_else(|| not_found(name))?;
        Self::check_version(current, if_match)
    }

    fn check_version(current: &StoredRoute, if_match: Option<u64>) -> Result<(), ChangeError> {
        match if_match {
            Some(v) if v != current.version => Err(ChangeError::new(
                Refusal::VersionMismatch,
                format!(
                    "route {:?} is at version {}, not {v}",
                    current.rule.name, current.version
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Validates the new API routes, commits them, and serves them. `api` holds the changed
    /// routes at any version: each gets the commit's revision.
    fn commit(
        &self,
        state: &mut State,
        mut api: BTreeMap<String, StoredRoute>,
        changes: Vec<Change>,
        changed: &[&str],
    ) -> Result<(), ChangeError> {
        let table = Self::compile(&self.plugins, &document(&state.file, &api), |name| {
            changed.contains(&name)
        })
        .map_err(|e| ChangeError::from_validation(&e))?;
        let revision = match &self.store {
            Some(store) => store
                .commit(&changes, state.last_version + 1)
                .map_err(store_error)?,
            None => state.last_version + 1,
        };
        for change in &changes {
            match change {
                Change::Put { rule, .. } => {
                    if let Some(r) = api.get_mut(&rule.name) {
                        r.version = revision;
                    }
                    state.tombstones.remove(&rule.name);
                }
                Change::Delete { name, .. } if !api.contains_key(name) => {
                    state.tombstones.insert(name.clone(), revision);
                }
                Change::Delete { .. } => {}
            }
        }
        state.last_version = state.last_version.max(revision);
        state.api = api;
        self.swap(state, table);
        self.remember(state);
        Ok(())
    }

    fn remember(&self, state: &State) {
        if let Some(store) = &self.store {
            store.remember(&state.api, state.last_version);
        }
    }

    /// Applies changes other instances made (one store revision, or several in order). A change
    /// older than what this instance already has for that name is skipped, so a late report
    /// never undoes a newer write.
    pub fn observe(&self, events: Vec<Observed>) {
        let mut state = self.lock();
        let mut api = state.api.clone();
        let mut tombstones = state.tombstones.clone();
        let mut moved = false;
        for event in events {
            let (name, revision) = match &event {
                Observed::Put(r) => (r.rule.name.clone(), r.version),
                Observed::Delete { name, revision } => (name.clone(), *revision),
            };
            let known = api
                .get(&name)
                .map(|r| r.version)
                .or_else(|| tombstones.get(&name).copied())
                .unwrap_or(0);
            if revision <= known {
                continue;
            }
            moved = true;
            state.last_version = state.last_version.max(revision);
            match event {
                Observed::Put(r) => {
                    tombstones.remove(&name);
                    api.insert(name, *r);
                }
                Observed::Delete { .. } => {
                    api.remove(&name);
                    tombstones.insert(name, revision);
                }
            }
        }
        if moved {
            self.replace_api(
                &mut state,
                api,
                tombstones,
                "a change from another instance",
            );
        }
    }

    /// Replaces every API route with what the store holds now (after a reconnect, or when its
    /// change feed was compacted away); returns the store's revision.
    pub fn resync(&self) -> Result<u64, StoreError> {
        let Some(store) = &self.store else {
            return Ok(0);
        };
        let mut state = self.lock();
        let snapshot = store.load()?;
        if let Some(why) = snapshot.stale {
            return Err(StoreError::Unavailable {
                store: store.describe(),
                reason: why,
            });
        }
        let api: BTreeMap<String, StoredRoute> = snapshot
            .routes
            .into_iter()
            .map(|r| (r.rule.name.clone(), r))
            .collect();
        state.last_version = state.last_version.max(snapshot.revision);
        if api != state.api {
            self.replace_api(&mut state, api, HashMap::new(), "a resync with the store");
        } else {
            state.tombstones.clear();
        }
        Ok(snapshot.revision)
    }

    /// Serves `api` (compiled leniently: another instance validated these routes, and a plugin
    /// one of them needs may still be on its way). Should they not compile here, the store's
    /// routes are still recorded and the previous table keeps serving.
    fn replace_api(
        &self,
        state: &mut State,
        api: BTreeMap<String, StoredRoute>,
        tombstones: HashMap<String, u64>,
        after: &str,
    ) {
        let compiled = Self::compile(&self.plugins, &document(&state.file, &api), |_| false);
        state.api = api;
        state.tombstones = tombstones;
        match compiled {
            Ok(table) => {
                self.swap(state, table);
                tracing::info!(
                    revision = state.last_version,
                    "routes updated after {after}"
                );
            }
            Err(e) => tracing::error!(
                "routes from the store do not compile here after {after}, the previous table keeps serving: {e}"
            ),
        }
        self.remember(state);
    }

    /// Why the API's reads may be stale (the shared store is unreachable), if they may.
    pub fn stale(&self) -> Option<String> {
        self.store.as_ref().and_then(|s| s.stale())
    }

    /// The store behind the API routes.
    pub fn store(&self) -> Option<&Arc<dyn RouteStore>> {
        self.store.as_ref()
    }

    /// The highest store revision this instance has applied (never waits for a write).
    pub fn revision(&self) -> u64 {
        self.revision.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Creates an API route.
    pub fn create(&self, rule: RouteRule) -> Result<RouteView, ChangeError> {
        let mut state = self.lock();
        let name = rule.name.clone();
        if state.file.routes.iter().any(|r| r.name == name) || state.api.contains_key(&name) {
            return Err(ChangeError::new(
                Refusal::Conflict,
                format!("a route named {name:?} already exists"),
            ));
        }
        let change = Change::Put {
            rule: Box::new(rule.clone()),
            expect: Expect::Absent,
        };
        let mut api = state.api.clone();
        api.insert(name.clone(), StoredRoute { rule, version: 0 });
        self.commit(&mut state, api, vec![change], &[&name])?;
        drop(state);
        self.get(&name, Some(Source::Api))
    }

    /// Replaces (and maybe renames) API route `name`.
    pub fn update(
        &self,
        name: &str,
        rule: RouteRule,
        if_match: Option<u64>,
    ) -> Result<RouteView, ChangeError> {
        let mut state = self.lock();
        Self::check_changeable(&state, name, if_match)?;
        let new_name = rule.name.clone();
        if new_name != name {
            Self::check_writable(&state, &new_name).map_err(|_| conflict(&new_name))?;
            if state.api.contains_key(&new_name) {
                return Err(conflict(&new_name));
            }
        }
        let expect = if_match.map_or(Expect::Present, Expect::Version);
        let mut changes = Vec::new();
        if new_name != name {
            changes.push(Change::Delete {
                name: name.to_owned(),
                expect,
            });
        }
        changes.push(Change::Put {
            rule: Box::new(rule.clone()),
            expect: if new_name == name {
                expect
            } else {
                Expect::Absent
            },
        });
        let mut api = state.api.clone();
        api.remove(name);
        api.insert(new_name.clone(), StoredRoute { rule, version: 0 });
        self.commit(&mut state, api, changes, &[&new_name])?;
        drop(state);
        self.get(&new_name, Some(Source::Api))
    }

    /// Deletes API route `name`.
    pub fn delete(&self, name: &str, if_match: Option<u64>) -> Result<(), ChangeError> {
        let mut state = self.lock();
        // An API route the file shadows can still be deleted (it serves nothing meanwhile).
        match state.api.get(name) {
            Some(current) if shadowed(&state.file, name) => Self::check_version(current, if_match)?,
            _ => Self::check_changeable(&state, name, if_match)?,
        }
        let mut api = state.api.clone();
        api.remove(name);
        let change = Change::Delete {
            name: name.to_owned(),
            expect: if_match.map_or(Expect::Present, Expect::Version),
        };
        self.commit(&mut state, api, vec![change], &[])
    }

    /// Makes the API routes equal to `doc`'s routes, in one transaction.
    pub fn apply(&self, doc: ConfigFile) -> Result<ApplySummary, ChangeError> {
        let mut state = self.lock();
        let mut seen = std::collections::BTreeSet::new();
        for r in &doc.routes {
            if !seen.insert(r.name.as_str()) {
                return Err(ChangeError::new(
                    Refusal::Conflict,
                    format!(
                        "route {:?} appears more than once in the document; nothing was applied",
                        r.name
                    ),
                ));
            }
            Self::check_writable(&state, &r.name)?;
        }
        let mut summary = ApplySummary::default();
        let mut api = BTreeMap::new();
        let mut changes = Vec::new();
        for rule in doc.routes {
            let name = rule.name.clone();
            match state.api.get(&name) {
                Some(current) if current.rule == rule => {
                    api.insert(name, current.clone());
                }
                existing => {
                    let expect = if existing.is_some() {
                        summary.updated.push(name.clone());
                        Expect::Any
                    } else {
                        summary.created.push(name.clone());
                        Expect::Absent
                    };
                    changes.push(Change::Put {
                        rule: Box::new(rule.clone()),
                        expect,
                    });
                    api.insert(name, StoredRoute { rule, version: 0 });
                }
            }
        }
        for name in state.api.keys() {
            if !api.contains_key(name) {
                summary.deleted.push(name.clone());
                changes.push(Change::Delete {
                    name: name.clone(),
                    expect: Expect::Any,
                });
            }
        }
        let changed: Vec<String> = summary
            .created
            .iter()
            .chain(&summary.updated)
            .cloned()
            .collect();
        let changed: Vec<&str> = changed.iter().map(String::as_str).collect();
        self.commit(&mut state, api, changes, &changed)?;
        Ok(summary)
    }
}

/// A failed store operation as a refusal of the change.
pub fn store_error(e: StoreError) -> ChangeError {
    match &e {
        StoreError::Unavailable { .. } => {
            ChangeError::new(Refusal::StoreUnavailable, e.to_string())
        }
        StoreError::Failed { .. } => ChangeError::new(Refusal::StoreFailed, e.to_string()),
        StoreError::Conflict {
            name,
            expected,
            found,
        } => {
            let now = found.map_or("it was deleted".to_owned(), |v| {
                format!("it is at version {v}")
            });
            match expected {
                Expect::Version(v) => ChangeError::new(
                    Refusal::VersionMismatch,
                    format!(
                        "route {name:?} is not at version {v}: {now} (changed through another instance)"
                    ),
                ),
                Expect::Present => not_found(name),
                Expect::Absent | Expect::Any => ChangeError::new(
                    Refusal::Conflict,
                    format!(
                        "a route named {name:?} already exists (made through another instance)"
                    ),
                ),
            }
        }
    }
}

fn not_found(name: &str) -> ChangeError {
    ChangeError::new(Refusal::NotFound, format!("no route named {name:?}"))
}

fn conflict(name: &str) -> ChangeError {
    ChangeError::new(
        Refusal::Conflict,
        format!("a route named {name:?} already exists"),
    )
}
