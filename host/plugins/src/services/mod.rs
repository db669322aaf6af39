//! What routerd gives a plugin beyond the request it is called about: a key-value store per
//! plugin (`store`) and outbound HTTP to the origins its settings allow (`outbound`). Both are
//! imports a plugin may use or not; what a plugin's name keeps across versions (its counters and
//! its store) is a [`Kept`].

pub mod outbound;
pub mod store;

use std::sync::{Arc, OnceLock};

pub use outbound::{
    AllowList, OutboundClient, OutboundOutcome, OutboundPolicy, OutboundSettings, OutboundStats,
};
pub use store::{PluginStore, StoreBounds, StoreError, StoreOp};

use crate::gate::PluginStats;

/// Shared by every plugin of one routerd: the store bounds a plugin's settings do not name, and
/// the pooled client outbound requests go through (built on first use).
#[derive(Debug, Default)]
pub struct HostServices {
    /// Store bounds for plugins whose settings do not set them.
    pub store_defaults: StoreBounds,
    client: OnceLock<Option<OutboundClient>>,
}

impl HostServices {
    /// Services with `store_defaults`.
    pub fn new(store_defaults: StoreBounds) -> HostServices {
        HostServices {
            store_defaults,
            client: OnceLock::new(),
        }
    }

    /// The outbound client; `None` if TLS could not be set up (logged once).
    pub fn client(&self) -> Option<OutboundClient> {
        self.client
            .get_or_init(|| match OutboundClient::new() {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::error!("plugin outbound HTTP is unavailable: TLS setup failed: {e}");
                    None
                }
            })
            .clone()
    }
}

/// What a plugin's name keeps while it stays loaded: replacing the plugin with a new version
/// hands these on, unloading drops them.
#[derive(Debug, Clone)]
pub struct Kept {
    /// Call counters.
    pub stats: Arc<PluginStats>,
    /// The key-value store.
    pub store: Arc<PluginStore>,
    /// Outbound request counters.
    pub outbound: Arc<OutboundStats>,
    /// The trial version beside the live one (shadow or canary), if any.
    pub trial: Arc<arc_swap::ArcSwapOption<crate::trial::Trial>>,
}

impl Kept {
    /// Fresh counters and an empty store with `bounds`.
    pub fn new(bounds: StoreBounds) -> Kept {
        Kept {
            stats: Arc::default(),
            store: Arc::new(PluginStore::new(bounds)),
            outbound: Arc::default(),
            trial: Arc::default(),
        }
    }
}

/// What every instance of one plugin version is given: its name's store and its outbound
/// policy.
#[derive(Debug, Clone)]
pub struct InstanceServices {
    /// The store.
    pub store: Arc<PluginStore>,
    /// Where it may send requests, through which client.
    pub outbound: Arc<OutboundPolicy>,
}
