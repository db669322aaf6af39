//! Following a shared store: changes another instance committed, observed or read again in
//! full, applied to this instance's state and table like its own.

use std::collections::{BTreeMap, HashMap};

use super::{Observed, RouteSet, State, document};
use crate::store::{StoreError, StoredRoute};

impl RouteSet {
    pub(super) fn remember(&self, state: &State) {
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
        let compiled = Self::compile(
            &self.plugins,
            &self.endpoints,
            &document(&state.file, &api),
            Some(&self.published.current()),
            |_| false,
        );
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
}
