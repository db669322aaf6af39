//! A plugin's settings, read from `NAME.json` beside `NAME.wasm`: instance reuse, deadline,
//! memory cap, failure policy, concurrency cap, circuit breaker, store bounds and the origins
//! it may call.

use serde::{Deserialize, Serialize};

pub use crate::services::OutboundSettings;
use crate::services::StoreBounds;

/// How a plugin's instances are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum InstanceMode {
    /// Warm instances are reused across calls (a failed one is discarded). The default.
    #[default]
    Reuse,
    /// A fresh instance for every call: no state survives between requests.
    Fresh,
}

pub use routerd_routing::FailurePolicy;

/// Per-plugin settings, from `NAME.json` beside `NAME.wasm` (every field optional).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginSettings {
    /// Instance reuse or a fresh instance per call.
    pub mode: InstanceMode,
    /// Deadline per call, in milliseconds.
    pub deadline_ms: u64,
    /// Memory cap per instance, in MiB.
    pub memory_mib: usize,
    /// What a failed call counts as.
    pub failure: FailurePolicy,
    /// Most warm instances kept idle.
    pub max_idle: usize,
    /// Most calls of this plugin running past their first epoch tick at once (shorter calls,
    /// and guests waiting in WASI, take no slot). 0 means the number of CPUs, halved (at least
    /// 1), so a plugin that burns its whole deadline on every call can never hold every core.
    pub max_concurrent: usize,
    /// How long a call that needs a slot waits for one, in milliseconds, before it fails by
    /// the policy (counted as overloaded). The wait does not count against the deadline: a
    /// healthy plugin under a burst queues briefly instead of failing, while the queue stays
    /// bounded. 0: no wait.
    pub queue_ms: u64,
    /// Consecutive failed calls (deadline, memory cap, trap, refused result) that open the
    /// circuit breaker: while open, calls fail by the policy at once, without running. 0 turns
    /// the breaker off.
    pub breaker_failures: u32,
    /// How long the breaker stays open before one probe call is let through, in milliseconds;
    /// doubled after every failed probe, up to 30 s.
    pub breaker_backoff_ms: u64,
    /// Bounds of the plugin's key-value store.
    pub store: StoreSettings,
    /// Outbound HTTP: the origins the plugin may call and its response cap.
    pub http: OutboundSettings,
}

/// Bounds of a plugin's store; unset ones come from routerd's `--plugin-store-*` flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// Most live keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_keys: Option<usize>,
    /// Most bytes of keys and values together.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<usize>,
}

impl StoreSettings {
    /// These bounds, the unset ones from `defaults`.
    pub fn bounds(&self, defaults: StoreBounds) -> StoreBounds {
        StoreBounds {
            max_keys: self.max_keys.unwrap_or(defaults.max_keys),
            max_bytes: self.max_bytes.unwrap_or(defaults.max_bytes),
        }
    }
}

impl Default for PluginSettings {
    fn default() -> Self {
        PluginSettings {
            mode: InstanceMode::Reuse,
            deadline_ms: 10,
            memory_mib: 64,
            failure: FailurePolicy::FailClosed,
            max_idle: 16,
            max_concurrent: 0,
            queue_ms: 100,
            breaker_failures: 5,
            breaker_backoff_ms: 1000,
            store: StoreSettings::default(),
            http: OutboundSettings::default(),
        }
    }
}

impl PluginSettings {
    /// The effective concurrency cap.
    pub fn concurrency(&self) -> usize {
        if self.max_concurrent > 0 {
            return self.max_concurrent;
        }
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cpus / 2).max(1)
    }
}
