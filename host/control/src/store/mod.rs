//! Durable storage of what the admin API changes: the API routes and, in a scale-out setup, the
//! plugins. One trait, [`RouteStore`], with two implementations: the embedded database in the
//! data directory ([`redb::RedbStore`], the default) and etcd shared by many instances
//! ([`etcd::EtcdStore`], with the `etcd` feature). The route set and the admin API see only
//! the trait. A store hands out the versions: every commit gets one new revision, greater than
//! every earlier one, and a change commits only if the routes it names are still as the writer
//! saw them ([`Expect`]), so optimistic concurrency holds across instances.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use routerd_plugins::trial::{DEFAULT_SHADOW_BUDGET, Sticky, TrialMode};
use routerd_routing::config::RouteRule;

#[cfg(feature = "etcd")]
pub mod etcd;
pub mod redb;

/// A route as stored: the rule and its version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredRoute {
    /// The route (shared with the route set's document and listing, never copied per change).
    pub rule: Arc<RouteRule>,
    /// The revision of the commit that wrote it; never reused.
    pub version: u64,
}

/// What a change requires of the stored route it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Nothing: the last writer wins.
    Any,
    /// No route has the name (a create).
    Absent,
    /// A route has the name, at any version.
    Present,
    /// The route is at this version (`If-Match`).
    Version(u64),
}

impl Expect {
    /// Whether a stored route at `found` (absent: `None`) is what this requires.
    pub fn satisfied_by(self, found: Option<u64>) -> bool {
        match self {
            Expect::Any => true,
            Expect::Absent => found.is_none(),
            Expect::Present => found.is_some(),
            Expect::Version(v) => found == Some(v),
        }
    }
}

/// One write.
#[derive(Debug, Clone)]
pub enum Change {
    /// Insert or replace a route.
    Put {
        /// The new route; it is stored under its name.
        rule: Arc<RouteRule>,
        /// What the stored route must be for the commit to go ahead.
        expect: Expect,
    },
    /// Remove a route.
    Delete {
        /// Its name.
        name: String,
        /// What the stored route must be for the commit to go ahead.
        expect: Expect,
    },
}

impl Change {
    /// The route the change names.
    pub fn name(&self) -> &str {
        match self {
            Change::Put { rule, .. } => &rule.name,
            Change::Delete { name, .. } => name,
        }
    }

    /// What it requires.
    pub fn expect(&self) -> Expect {
        match self {
            Change::Put { expect, .. } | Change::Delete { expect, .. } => *expect,
        }
    }
}

/// Every stored route at one revision.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The routes.
    pub routes: Vec<StoredRoute>,
    /// The store's revision when read.
    pub revision: u64,
    /// Set when the store could not be reached and this is the last state this instance saw
    /// (kept in its data directory): why, for the log and for readers.
    pub stale: Option<String>,
}

/// Why the store failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The store answered with an error, or its data is unreadable.
    #[error("route store {store}: {reason}")]
    Failed {
        /// Which store.
        store: String,
        /// What went wrong.
        reason: String,
    },
    /// The store cannot be reached; nothing was written.
    #[error("route store {store} is unreachable, nothing was written: {reason}")]
    Unavailable {
        /// Which store.
        store: String,
        /// What went wrong.
        reason: String,
    },
    /// A route a change names is not as [`Expect`] required (another writer got there first);
    /// nothing was written.
    #[error("route {name:?} changed in the store (now {})", found.map_or("absent".to_owned(), |v| format!("at version {v}")))]
    Conflict {
        /// The route.
        name: String,
        /// What the change required.
        expected: Expect,
        /// Its version in the store, if it exists.
        found: Option<u64>,
    },
}

/// A plugin as shared through a store: its bytes are addressed by their SHA-256, and this
/// small record switches a name from one version to the next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginManifest {
    /// Hex SHA-256 of the component.
    pub sha256: String,
    /// Its size in bytes.
    pub size: usize,
    /// How many chunks the bytes are stored in.
    pub chunks: usize,
    /// The plugin's settings document (`NAME.json`) as the uploading instance had it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<serde_json::Value>,
}

/// A trial version of a plugin (shadow or canary) as the store shares it: its bytes, staged
/// like a plugin's, and how it takes part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialManifest {
    /// The trial version's bytes.
    #[serde(flatten)]
    pub plugin: PluginManifest,
    /// `shadow` or `canary`.
    pub mode: String,
    /// A canary's share of calls, per thousand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_mille: Option<u32>,
    /// A canary's stickiness: `client` or `header:NAME` (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky: Option<String>,
    /// A canary's margin, as a fraction (0.05: five points).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub margin: Option<f64>,
    /// A shadow's share of one core, as a fraction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<f64>,
}

impl TrialManifest {
    /// The manifest of a trial of the version `plugin` names, taking part as `mode` says.
    pub fn new(plugin: PluginManifest, mode: &TrialMode) -> Self {
        match mode {
            TrialMode::Shadow { budget } => TrialManifest {
                plugin,
                mode: "shadow".to_owned(),
                per_mille: None,
                sticky: None,
                margin: None,
                budget: Some(*budget),
            },
            TrialMode::Canary {
                per_mille,
                sticky,
                margin,
            } => TrialManifest {
                plugin,
                mode: "canary".to_owned(),
                per_mille: Some(*per_mille),
                sticky: match sticky {
                    Sticky::No => None,
                    Sticky::ClientAddr => Some("client".to_owned()),
                    Sticky::Header(h) => Some(format!("header:{h}")),
                },
                margin: Some(*margin),
                budget: None,
            },
        }
    }

    /// How the trial takes part; `None` for a manifest this version cannot read.
    pub fn mode(&self) -> Option<TrialMode> {
        match self.mode.as_str() {
            "shadow" => Some(TrialMode::Shadow {
                budget: self.budget.unwrap_or(DEFAULT_SHADOW_BUDGET),
            }),
            "canary" => Some(TrialMode::Canary {
                per_mille: self.per_mille?,
                sticky: match self.sticky.as_deref() {
                    None => Sticky::No,
                    Some("client") => Sticky::ClientAddr,
                    Some(other) => Sticky::Header(
                        http::HeaderName::from_bytes(other.strip_prefix("header:")?.as_bytes())
                            .ok()?,
                    ),
                },
                margin: self.margin.unwrap_or(0.05),
            }),
            _ => None,
        }
    }
}

/// Where the admin API's changes are kept. Called from blocking threads: every method may
/// wait for disk or network.
pub trait RouteStore: Send + Sync {
    /// How the store is named in messages (`redb data/routes.redb`, `etcd://...`).
    fn describe(&self) -> String;

    /// Every stored route.
    fn load(&self) -> Result<Snapshot, StoreError>;

    /// Applies `changes` atomically, if each named route is as its [`Expect`] says, under one
    /// new revision, which it returns; the revision is at least `floor`.
    fn commit(&self, changes: &[Change], floor: u64) -> Result<u64, StoreError>;

    /// Keeps a local copy of the routes this instance serves, for a restart while the store is
    /// unreachable. A local store is its own copy.
    fn remember(&self, _routes: &BTreeMap<String, StoredRoute>, _revision: u64) {}

    /// Why reads may be stale right now (the store is unreachable), if they may.
    fn stale(&self) -> Option<String> {
        None
    }

    /// Shares an uploaded plugin with the other instances: stores its bytes, before
    /// [`RouteStore::publish_plugin`] names them. A local store shares nothing (the plugins
    /// directory is its store).
    fn stage_plugin(&self, _sha256: &str, _bytes: &[u8]) -> Result<usize, StoreError> {
        Ok(0)
    }

    /// Points plugin `name` at staged bytes, for every instance.
    fn publish_plugin(&self, _name: &str, _manifest: &PluginManifest) -> Result<(), StoreError> {
        Ok(())
    }

    /// Removes plugin `name` from every instance.
    fn withdraw_plugin(&self, _name: &str) -> Result<(), StoreError> {
        Ok(())
    }

    /// Puts a trial version beside plugin `name` on every instance (its bytes staged first).
    /// A local store shares nothing: the trial lives in this instance's memory.
    fn publish_trial(&self, _name: &str, _manifest: &TrialManifest) -> Result<(), StoreError> {
        Ok(())
    }

    /// Ends plugin `name`'s trial version on every instance.
    fn withdraw_trial(&self, _name: &str) -> Result<(), StoreError> {
        Ok(())
    }

    /// The instances sharing this store, each with the table it serves; `None` for a store
    /// only this instance uses.
    fn instances(&self) -> Option<Result<Vec<serde_json::Value>, StoreError>> {
        None
    }
}
