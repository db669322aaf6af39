//! How the engines allocate instances: wasmtime's pooling allocator sized by [`PoolLimits`],
//! with copy-on-write memory images and the pages a previous instance touched kept resident
//! (reset in place) so a fresh instance starts without page faults; and the engine
//! configuration every engine and compiling child shares.

use wasmtime::{Config, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::{EngineKind, PluginEngine};

/// Bytes of each linear memory kept resident when its instance goes away, when the kernel can
/// tell which of its pages were touched (`PAGEMAP_SCAN`, Linux 6.7): only those are reset, by a
/// memset, so a fresh instance starts without page faults and its teardown without `madvise`.
/// Two MiB cover a Rust or C guest's stack (the first MiB) and its data; a big guest keeps the
/// low part of its memory resident.
const KEEP_RESIDENT_SCANNED: usize = 2 << 20;

/// Without `PAGEMAP_SCAN` the whole kept region is reset by a memset at every teardown, so it
/// stays small.
const KEEP_RESIDENT_UNSCANNED: usize = 128 << 10;

/// Freed instance slots the pool keeps for the module that last used them (its memory image
/// mapped, its kept pages resident) before it hands the least recently used of them to another
/// module. wasmtime's default, 100, lets every replaced plugin version leave its slots resident
/// until a hundred have piled up: RSS grew 13-21% over 500 reloads (8.8% with 16). A few
/// cover the plugins that make a fresh instance per call, which get their own slot back.
const UNUSED_WARM_SLOTS: u32 = 16;

/// Whether this kernel has the `PAGEMAP_SCAN` ioctl (Linux 6.7 and later).
fn pagemap_scan_available() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .is_ok_and(|release| release_has_pagemap_scan(&release))
}

/// Whether a kernel release string (`6.18.44-generic`) is 6.7 or later.
fn release_has_pagemap_scan(release: &str) -> bool {
    let mut parts = release.trim().split(['.', '-']);
    let major = parts.next().and_then(|p| p.parse::<u32>().ok());
    let minor = parts.next().and_then(|p| p.parse::<u32>().ok());
    matches!((major, minor), (Some(major), Some(minor)) if (major, minor) >= (6, 7))
}

/// Pool sizes. The defaults fit a small machine: a few dozen plugins with a few warm instances
/// each; raise them for more.
#[derive(Debug, Clone)]
pub struct PoolLimits {
    /// Component instances alive at once across all plugins.
    pub instances: u32,
    /// Linear memories alive at once (a component may have several).
    pub memories: u32,
    /// The largest memory any plugin may be given (per-plugin caps are at most this).
    pub max_memory_bytes: usize,
}

impl Default for PoolLimits {
    fn default() -> Self {
        PoolLimits {
            instances: 256,
            memories: 512,
            max_memory_bytes: 256 << 20,
        }
    }
}

impl PluginEngine {
    pub(super) fn config(pool: Option<&PoolLimits>, deadlines: bool, kind: EngineKind) -> Config {
        let mut config = Config::new();
        config.epoch_interruption(deadlines);
        config.wasm_component_model(true);
        // Toolchains such as jco's QuickJS backend emit the component model's async built-ins
        // even for synchronous exports; only their engine pays for the concurrent machinery.
        let component_async = kind == EngineKind::ComponentAsync;
        config.concurrency_support(component_async);
        config.wasm_component_model_async(component_async);
        if let Some(limits) = pool {
            let mut pooling = PoolingAllocationConfig::default();
            pooling
                .total_component_instances(limits.instances)
                .total_core_instances(limits.instances * 4)
                .total_memories(limits.memories)
                .total_tables(limits.memories)
                .max_memory_size(limits.max_memory_bytes)
                .max_memories_per_component(8)
                .max_tables_per_component(8)
                .max_core_instances_per_component(64)
                // A fresh instance's cost is page faults and madvise: tables and memories a
                // previous instance used stay resident up to these sizes (reset in place, not
                // returned to the kernel), so small guests start without faulting.
                .table_keep_resident(64 << 10)
                .max_unused_warm_slots(UNUSED_WARM_SLOTS);
            if pagemap_scan_available() {
                pooling
                    .pagemap_scan(wasmtime::Enabled::Auto)
                    .linear_memory_keep_resident(KEEP_RESIDENT_SCANNED);
            } else {
                pooling.linear_memory_keep_resident(KEEP_RESIDENT_UNSCANNED);
            }
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pagemap_scan_needs_linux_6_7() {
        assert!(release_has_pagemap_scan("6.18.44-fc-v1098\n"));
        assert!(release_has_pagemap_scan("6.7.0"));
        assert!(release_has_pagemap_scan("7.0-rc1"));
        assert!(!release_has_pagemap_scan("6.6.58-generic"));
        assert!(!release_has_pagemap_scan("5.15.0-91-generic"));
        assert!(!release_has_pagemap_scan("unknown"));
    }
}
