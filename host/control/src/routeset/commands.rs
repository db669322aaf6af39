//! The API's changes to the route set: create, update, delete and a whole-document apply. Each
//! is checked against the state (names the file owns, versions for `If-Match`), committed to
//! the store, and only then built into a table and served.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::errors::{conflict, not_found, store_error};
use super::{
    ApplySummary, ChangeError, Refusal, RouteSet, RouteView, Source, State, document, shadowed,
};
use crate::store::{Change, Expect, StoredRoute};
use routerd_routing::config::{ConfigFile, RouteRule};

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

    /// Validates the new API routes, commits them, and serves them. `api` holds the changed
    /// routes at any version: each gets the commit's revision.
    fn commit(
        &self,
        state: &mut State,
        mut api: BTreeMap<String, StoredRoute>,
        changes: Vec<Change>,
        changed: &[&str],
    ) -> Result<(), ChangeError> {
        let table = Self::compile(
            &self.plugins,
            &self.endpoints,
            &document(&state.file, &api),
            Some(&self.published.current()),
            |name| changed.contains(&name),
        )
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
        let rule = Arc::new(rule);
        let change = Change::Put {
            rule: Arc::clone(&rule),
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
        let rule = Arc::new(rule);
        changes.push(Change::Put {
            rule: Arc::clone(&rule),
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
        self.commit(&mut state, api, changes, &changed)?;
        Ok(summary)
    }
}
