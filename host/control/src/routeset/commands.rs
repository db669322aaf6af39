//! The API's changes to the route set: create, update, delete and a whole-document apply. Each
//! is checked against the state (names the file owns, versions for `If-Match`), committed to
//! the store, and only then built into a table and served. A dry run ([`RouteSet::plan`]) goes
//! through the same checks and build, and stops before the store: it hands back the table the
//! change would serve, and nothing served or stored changes.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::errors::{conflict, not_found, store_error};
use super::{
    ApplySummary, ChangeError, Refusal, RouteSet, RouteView, Source, State, document, shadowed,
};
use crate::store::{Change, Expect, StoredRoute};
use routerd_plugins::Plugin;
use routerd_routing::RouteTable;
use routerd_routing::config::{ConfigFile, DocumentRef, RouteRule, RouteSetError};

/// The most routes one change patches into the table being served; a bigger change builds a
/// table (sharing the unchanged routes).
const PATCH_LIMIT: usize = 64;

/// A change the API proposes, to plan (a dry run) rather than make.
#[derive(Debug)]
pub enum ProposedChange {
    /// Create this route.
    Create(RouteRule),
    /// Replace (and maybe rename) route `name`, at version `if_match` when given.
    Update {
        /// The route's name now.
        name: String,
        /// What replaces it.
        rule: RouteRule,
        /// The version it must be at.
        if_match: Option<u64>,
    },
    /// Delete route `name`.
    Delete {
        /// The route.
        name: String,
        /// The version it must be at.
        if_match: Option<u64>,
    },
    /// Make the API routes equal to this document's.
    Apply(ConfigFile),
}

/// A change planned and not made: the table it would serve, and which routes it touches.
pub struct Plan {
    /// The table the change would serve.
    pub table: RouteTable<Plugin>,
    /// The routes it would create, update and delete.
    pub summary: ApplySummary,
    /// The route document that table was built from.
    pub document: PlannedDocument,
    /// For a plugin change: the plugin, and the version it would be (`None`: unloaded).
    pub swap: Option<(String, Option<Arc<Plugin>>)>,
}

/// A table planned by a dry run, and the document it was built from.
type Planned = (RouteTable<Plugin>, PlannedDocument);

/// A route document owned (its rules shared), kept beside a plan to build it again.
#[derive(Debug, Clone, Default)]
pub struct PlannedDocument {
    routes: Vec<Arc<RouteRule>>,
    default_url: Option<String>,
    max_body_bytes: Option<usize>,
}

impl PlannedDocument {
    /// `doc`, owned.
    pub fn of(doc: &DocumentRef<'_>) -> Self {
        PlannedDocument {
            routes: doc.routes.iter().map(|r| Arc::clone(r)).collect(),
            default_url: doc.default_url.map(str::to_owned),
            max_body_bytes: doc.max_body_bytes,
        }
    }

    /// The document, to build from.
    pub fn as_doc(&self) -> DocumentRef<'_> {
        DocumentRef {
            routes: self.routes.iter().collect(),
            default_url: self.default_url.as_deref(),
            max_body_bytes: self.max_body_bytes,
        }
    }
}

/// Whether a command makes its change or only plans it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Commit,
    DryRun,
}

impl RouteSet {
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

    /// Validates the API routes a change leaves, commits the change, and serves them: `api`
    /// is the whole new set (apply), or `None` for `changes` made to the current set in place
    /// (and undone if the change is refused). Each changed route gets the commit's revision.
    /// A dry run undoes the change once the table is built, and hands the table back.
    fn commit(
        &self,
        state: &mut State,
        api: Option<BTreeMap<String, StoredRoute>>,
        changes: Vec<Change>,
        changed: &[&str],
        mode: Mode,
    ) -> Result<Option<Planned>, ChangeError> {
        let undo = match api {
            Some(api) => Undo::Whole(std::mem::replace(&mut state.api, api)),
            None => Undo::Edits(edit(&mut state.api, &changes)),
        };
        let table = match self.table_after(state, &changes, changed) {
            Ok(table) => table,
            Err(e) => {
                undo.revert(&mut state.api);
                return Err(ChangeError::from_validation(&e));
            }
        };
        if mode == Mode::DryRun {
            let planned = PlannedDocument::of(&document(&state.file, &state.api));
            undo.revert(&mut state.api);
            return Ok(Some((table, planned)));
        }
        let revision = match &self.store {
            Some(store) => match store.commit(&changes, state.last_version + 1) {
                Ok(revision) => revision,
                Err(e) => {
                    undo.revert(&mut state.api);
                    return Err(store_error(e));
                }
            },
            None => state.last_version + 1,
        };
        for change in &changes {
            match change {
                Change::Put { rule, .. } => {
                    if let Some(r) = state.api.get_mut(&rule.name) {
                        r.version = revision;
                    }
                    state.tombstones.remove(&rule.name);
                }
                Change::Delete { name, .. } if !state.api.contains_key(name) => {
                    state.tombstones.insert(name.clone(), revision);
                }
                Change::Delete { .. } => {}
            }
        }
        state.last_version = state.last_version.max(revision);
        self.swap(state, table);
        self.remember(state);
        Ok(None)
    }

    /// The table for the API routes as `state` holds them after `changes`: the table being
    /// served, patched, when the change is a few routes the file does not shadow; else built
    /// (sharing the unchanged routes).
    fn table_after(
        &self,
        state: &State,
        changes: &[Change],
        changed: &[&str],
    ) -> Result<RouteTable<Plugin>, RouteSetError> {
        let previous = self.published.current();
        let patchable = changes.len() <= PATCH_LIMIT
            && !changes.iter().any(|c| shadowed(&state.file, c.name()));
        if patchable {
            let mut puts = Vec::new();
            let mut removes = Vec::new();
            for change in changes {
                match change {
                    Change::Put { rule, .. } => puts.push(rule),
                    Change::Delete { name, .. } => removes.push(name.as_str()),
                }
            }
            if let Some(patched) =
                previous.patched(&puts, &removes, &**self.plugins(), &self.endpoints)
            {
                return patched;
            }
        }
        Self::compile(
            self.plugins(),
            &self.endpoints,
            &document(&state.file, &state.api),
            Some(&previous),
            |name| changed.contains(&name),
        )
    }

    /// Plans `change` without making it: the table it would serve (a dry run).
    pub fn plan(&self, change: ProposedChange) -> Result<Plan, ChangeError> {
        let mut summary = ApplySummary::default();
        let table = match change {
            ProposedChange::Create(rule) => {
                summary.created.push(rule.name.clone());
                self.create_in(rule, Mode::DryRun)?
            }
            ProposedChange::Update {
                name,
                rule,
                if_match,
            } => {
                if rule.name != name {
                    summary.deleted.push(name.clone());
                    summary.created.push(rule.name.clone());
                } else {
                    summary.updated.push(name.clone());
                }
                self.update_in(&name, rule, if_match, Mode::DryRun)?
            }
            ProposedChange::Delete { name, if_match } => {
                summary.deleted.push(name.clone());
                self.delete_in(&name, if_match, Mode::DryRun)?
            }
            ProposedChange::Apply(doc) => {
                let (applied, table) = self.apply_in(doc, Mode::DryRun)?;
                summary = applied;
                table
            }
        };
        // A dry run always builds a table; `None` would be a commit's.
        let (table, document) = table.ok_or_else(|| {
            ChangeError::new(Refusal::Conflict, "the dry run built no table".to_owned())
        })?;
        Ok(Plan {
            table,
            summary,
            document,
            swap: None,
        })
    }

    /// Creates an API route.
    pub fn create(&self, rule: RouteRule) -> Result<RouteView, ChangeError> {
        let name = rule.name.clone();
        self.create_in(rule, Mode::Commit)?;
        self.get(&name, Some(Source::Api))
    }

    fn create_in(&self, rule: RouteRule, mode: Mode) -> Result<Option<Planned>, ChangeError> {
        let mut state = self.lock();
        let name = rule.name.clone();
        if state.file.routes.iter().any(|r| r.name == name) || state.api.contains_key(&name) {
            return Err(ChangeError::new(
                Refusal::Conflict,
                format!("a route named {name:?} already exists"),
            ));
        }
        let change = Change::Put {
            rule: Arc::new(rule),
            expect: Expect::Absent,
        };
        self.commit(&mut state, None, vec![change], &[&name], mode)
    }

    /// Replaces (and maybe renames) API route `name`.
    pub fn update(
        &self,
        name: &str,
        rule: RouteRule,
        if_match: Option<u64>,
    ) -> Result<RouteView, ChangeError> {
        let new_name = rule.name.clone();
        self.update_in(name, rule, if_match, Mode::Commit)?;
        self.get(&new_name, Some(Source::Api))
    }

    fn update_in(
        &self,
        name: &str,
        rule: RouteRule,
        if_match: Option<u64>,
        mode: Mode,
    ) -> Result<Option<Planned>, ChangeError> {
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
            rule: Arc::new(rule),
            expect: if new_name == name {
                expect
            } else {
                Expect::Absent
            },
        });
        self.commit(&mut state, None, changes, &[&new_name], mode)
    }

    /// Deletes API route `name`.
    pub fn delete(&self, name: &str, if_match: Option<u64>) -> Result<(), ChangeError> {
        self.delete_in(name, if_match, Mode::Commit).map(drop)
    }

    fn delete_in(
        &self,
        name: &str,
        if_match: Option<u64>,
        mode: Mode,
    ) -> Result<Option<Planned>, ChangeError> {
        let mut state = self.lock();
        // An API route the file shadows can still be deleted (it serves nothing meanwhile).
        match state.api.get(name) {
            Some(current) if shadowed(&state.file, name) => Self::check_version(current, if_match)?,
            _ => Self::check_changeable(&state, name, if_match)?,
        }
        let change = Change::Delete {
            name: name.to_owned(),
            expect: if_match.map_or(Expect::Present, Expect::Version),
        };
        self.commit(&mut state, None, vec![change], &[], mode)
    }

    /// Makes the API routes equal to `doc`'s routes, in one transaction.
    pub fn apply(&self, doc: ConfigFile) -> Result<ApplySummary, ChangeError> {
        self.apply_in(doc, Mode::Commit).map(|(summary, _)| summary)
    }

    fn apply_in(
        &self,
        doc: ConfigFile,
        mode: Mode,
    ) -> Result<(ApplySummary, Option<Planned>), ChangeError> {
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
                        rule: Arc::clone(&rule),
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
        let table = self.commit(&mut state, Some(api), changes, &changed, mode)?;
        Ok((summary, table))
    }
}

/// A change made to the API routes in place, to undo when the change is refused.
enum Undo {
    /// The whole set before.
    Whole(BTreeMap<String, StoredRoute>),
    /// What each edit replaced, in order.
    Edits(Vec<(String, Option<StoredRoute>)>),
}

impl Undo {
    fn revert(self, api: &mut BTreeMap<String, StoredRoute>) {
        match self {
            Undo::Whole(before) => *api = before,
            Undo::Edits(edits) => {
                for (name, before) in edits.into_iter().rev() {
                    match before {
                        Some(route) => api.insert(name, route),
                        None => api.remove(&name),
                    };
                }
            }
        }
    }
}

/// Makes `changes` to `api` (a put's route at version 0 until the commit gives it one), and
/// says what they replaced.
fn edit(
    api: &mut BTreeMap<String, StoredRoute>,
    changes: &[Change],
) -> Vec<(String, Option<StoredRoute>)> {
    changes
        .iter()
        .map(|change| match change {
            Change::Put { rule, .. } => {
                let route = StoredRoute {
                    rule: Arc::clone(rule),
                    version: 0,
                };
                (rule.name.clone(), api.insert(rule.name.clone(), route))
            }
            Change::Delete { name, .. } => (name.clone(), api.remove(name)),
        })
        .collect()
}
