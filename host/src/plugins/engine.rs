//! The one wasmtime [`Engine`] every plugin runs on: pooling allocator with copy-on-write memory
//! images, epoch interruption driven by a ticker thread, the host linker, and the on-disk cache
//! of compiled components keyed by content hash and engine.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::PluginError;
use super::state::{PluginState, PluginWorld};

/// How often the epoch advances: the resolution of every call deadline.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

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

/// The shared engine, linker and compile cache.
pub struct PluginEngine {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<PluginState>,
    cache_dir: Option<PathBuf>,
    pooling: bool,
}

impl PluginEngine {
    /// Builds the engine. Falls back to on-demand allocation (logged) when the pool's virtual
    /// memory cannot be reserved on this machine.
    pub fn new(limits: &PoolLimits, cache_dir: Option<&Path>) -> Result<Arc<Self>, PluginError> {
        Self::build(limits, cache_dir, true)
    }

    /// An engine whose calls have no deadline: only for measuring what deadlines cost. A plugin
    /// that loops forever hangs its caller here.
    pub fn without_deadlines(limits: &PoolLimits) -> Result<Arc<Self>, PluginError> {
        Self::build(limits, None, false)
    }

    fn build(
        limits: &PoolLimits,
        cache_dir: Option<&Path>,
        deadlines: bool,
    ) -> Result<Arc<Self>, PluginError> {
        let (engine, pooling) = match Engine::new(&Self::config(Some(limits), deadlines)) {
            Ok(e) => (e, true),
            Err(e) => {
                tracing::warn!(error = %e, "cannot reserve the plugin instance pool; using on-demand allocation");
                (
                    Engine::new(&Self::config(None, deadlines)).map_err(PluginError::engine)?,
                    false,
                )
            }
        };
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(PluginError::engine)?;
        PluginWorld::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |s| s)
            .map_err(PluginError::engine)?;
        tracing::debug!(pooling, "plugin engine ready");
        let cache_dir = cache_dir.map(|d| d.to_path_buf());
        if let Some(dir) = &cache_dir
            && let Err(e) = std::fs::create_dir_all(dir)
        {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot create the plugin cache directory");
        }
        // Deadlines are counted in epochs; a weak handle lets the ticker end with the engine.
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(|e| PluginError::engine(wasmtime::Error::from(e)))?;
        Ok(Arc::new(PluginEngine {
            engine,
            linker,
            cache_dir,
            pooling,
        }))
    }

    /// Whether instances come from the pooling allocator.
    pub fn pooling(&self) -> bool {
        self.pooling
    }

    fn config(pool: Option<&PoolLimits>, deadlines: bool) -> Config {
        let mut config = Config::new();
        config.epoch_interruption(deadlines);
        // Our calls are synchronous; concurrency bookkeeping costs every call.
        config.concurrency_support(false);
        config.wasm_component_model(true);
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
                .max_core_instances_per_component(64);
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
        }
        config
    }

    /// Compiles `bytes`, or loads the compiled artifact cached for them.
    pub fn compile(
        &self,
        sha256: &str,
        bytes: &[u8],
    ) -> Result<(Component, bool, Duration), PluginError> {
        let started = Instant::now();
        let cached = self.cache_path(sha256);
        if let Some(path) = &cached
            && path.exists()
        {
            match self.load_cached(path) {
                Ok(c) => return Ok((c, true, started.elapsed())),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "ignoring an unusable cached compilation")
                }
            }
        }
        let component = Component::new(&self.engine, bytes).map_err(PluginError::invalid)?;
        if let Some(path) = &cached {
            match component.serialize() {
                Ok(artifact) => {
                    // Unique per process: several routerd may share a data directory.
                    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
                    if let Err(e) =
                        std::fs::write(&tmp, artifact).and_then(|()| std::fs::rename(&tmp, path))
                    {
                        tracing::warn!(path = %path.display(), error = %e, "cannot write the compile cache");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot serialize a compiled plugin"),
            }
        }
        Ok((component, false, started.elapsed()))
    }

    fn cache_path(&self, sha256: &str) -> Option<PathBuf> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        let dir = self.cache_dir.as_ref()?;
        Some(dir.join(format!("{sha256}-{:016x}.cwasm", h.finish())))
    }

    #[allow(unsafe_code)]
    fn load_cached(&self, path: &Path) -> wasmtime::Result<Component> {
        // SAFETY: `Component::deserialize_file` trusts the file to be a wasmtime artifact. This
        // one is: it lives in our own data directory, under a name made of the source's sha256
        // and this engine's compatibility hash, and only `compile` above writes it (atomically,
        // by rename) from `Component::serialize`. wasmtime itself rejects artifacts from another
        // version or configuration. Whoever can rewrite our data directory can already replace
        // our binary, so the file is as trusted as the code running this.
        unsafe { Component::deserialize_file(&self.engine, path) }
    }
}
