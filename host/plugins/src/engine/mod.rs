//! The wasmtime engines plugins run on. There are two: a standard engine, and one with the
//! component model's async support for guests whose toolchain emits its built-ins (jco's
//! QuickJS backend), because that support costs every call about 1 µs. Each has its host
//! linker (async WASI, so a guest that blocks in WASI suspends its call instead of a thread).
//! This module assembles them; by concern: `pooling` (instance allocation and the engine
//! configuration), `ticker` (epochs, the deadlines' clock), `compile` (compiling, in a child
//! process, and the compile cache), `cache` (the compile cache's files and size bound),
//! `imports` (what a component may import, the contract versions), `instances` (warm instances
//! as a cache, eviction, waiting for a slot).

mod cache;
mod compile;
mod imports;
mod instances;
mod pooling;
mod ticker;

pub use cache::DEFAULT_CACHE_BOUND_BYTES;
pub use compile::{CHILD_EXIT_INVALID, ChildCompiler, Compiled, CompiledBy};
pub use imports::CONTRACT_VERSIONS;
pub(crate) use instances::{Evictable, IdlePool, SlotReturn, SlotSignal};
pub use pooling::PoolLimits;
pub use ticker::EPOCH_TICK;
use ticker::Ticker;
pub(crate) use ticker::TickerUse;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use wasmtime::Engine;
use wasmtime::component::Linker;

use serde::Serialize;

use super::PluginError;
use super::contract::{v2, v3};
use super::state::PluginState;

/// Which engine a component runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EngineKind {
    /// Without the component model's async support: the fast path, for every component that
    /// does not use its built-ins.
    Standard,
    /// With it, for components that use its built-ins (`task.cancel`, streams, futures, ...).
    ComponentAsync,
}

impl EngineKind {
    /// `standard` or `component-async`.
    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Standard => "standard",
            EngineKind::ComponentAsync => "component-async",
        }
    }

    /// The kind named `text` ([`EngineKind::as_str`]).
    pub fn parse(text: &str) -> Option<EngineKind> {
        [EngineKind::Standard, EngineKind::ComponentAsync]
            .into_iter()
            .find(|k| k.as_str() == text)
    }

    /// The engine a component needs: the standard one when it validates without the
    /// component model's async features, else the one with them (whose compiler says why, if
    /// it is invalid either way).
    pub fn for_component(bytes: &[u8]) -> EngineKind {
        use wasmparser::WasmFeatures as F;
        let async_features = F::CM_ASYNC
            | F::CM_ASYNC_STACKFUL
            | F::CM_MORE_ASYNC_BUILTINS
            | F::CM_THREADING
            | F::CM_ERROR_CONTEXT;
        match wasmparser::Validator::new_with_features(F::all() - async_features)
            .validate_all(bytes)
        {
            Ok(_) => EngineKind::Standard,
            Err(_) => EngineKind::ComponentAsync,
        }
    }
}

/// One engine with its host linker.
pub(crate) struct Runtime {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<PluginState>,
    pooling: bool,
    /// Calls waiting for one of this engine's instance slots.
    slots: Arc<SlotSignal>,
}

/// The shared engines, linkers and compile cache.
pub struct PluginEngine {
    standard: Runtime,
    component_async: Runtime,
    cache_dir: Option<PathBuf>,
    /// The compile cache's size bound in bytes (0: none).
    cache_bound: std::sync::atomic::AtomicU64,
    /// Runs load-time calls (trial instantiation, `validate`) for callers that are not async.
    control: LoadRuntime,
    /// Every plugin's idle instances with the engine they belong to, for eviction.
    idle_pools: Mutex<Vec<(EngineKind, Weak<dyn Evictable>)>>,
    /// The command that compiles in a child process (see [`PluginEngine::compile_in_child`]).
    compiler: OnceLock<ChildCompiler>,
    ticker: Arc<Ticker>,
}

impl Drop for PluginEngine {
    fn drop(&mut self) {
        self.ticker.close();
    }
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
        let standard = Runtime::new(limits, deadlines, EngineKind::Standard)?;
        // Few guests need it: a quarter of the pool.
        let async_limits = PoolLimits {
            instances: (limits.instances / 4).max(8),
            memories: (limits.memories / 4).max(16),
            max_memory_bytes: limits.max_memory_bytes,
        };
        let component_async = Runtime::new(&async_limits, deadlines, EngineKind::ComponentAsync)?;
        let cache_dir = cache_dir.map(|d| d.to_path_buf());
        if let Some(dir) = &cache_dir
            && let Err(e) = std::fs::create_dir_all(dir)
        {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot create the plugin cache directory");
        }
        let ticker = Ticker::start([&standard.engine, &component_async.engine])?;
        Ok(Arc::new(PluginEngine {
            standard,
            component_async,
            cache_dir,
            cache_bound: std::sync::atomic::AtomicU64::new(cache::DEFAULT_CACHE_BOUND_BYTES),
            control: LoadRuntime::new()?,
            idle_pools: Mutex::new(Vec::new()),
            compiler: OnceLock::new(),
            ticker,
        }))
    }

    /// The engine of `kind`.
    pub(crate) fn runtime(&self, kind: EngineKind) -> &Runtime {
        match kind {
            EngineKind::Standard => &self.standard,
            EngineKind::ComponentAsync => &self.component_async,
        }
    }

    /// Runs `fut` to completion for a caller that is not async (loading a plugin, validating a
    /// route's args while a table is built). Inside a runtime it runs on a scoped thread, so it
    /// never blocks in an async context's place.
    pub(crate) fn block_on<F: Future + Send>(&self, fut: F) -> F::Output
    where
        F::Output: Send,
    {
        if tokio::runtime::Handle::try_current().is_err() {
            return self.control.block_on(fut);
        }
        std::thread::scope(|s| {
            let joined = std::thread::Builder::new()
                .name("plugin-load".into())
                .spawn_scoped(s, || self.control.block_on(fut))
                .map(|h| h.join());
            match joined {
                Ok(Ok(out)) => out,
                // A panic in the future is a bug in the host; let it surface where it belongs.
                Ok(Err(panic)) => std::panic::resume_unwind(panic),
                Err(e) => panic!("cannot start a plugin-load thread: {e}"),
            }
        })
    }

    /// Whether instances come from the pooling allocator.
    pub fn pooling(&self) -> bool {
        self.standard.pooling
    }
}

impl Runtime {
    /// An engine of `kind` with its linker; on-demand allocation (logged) when the pool's
    /// virtual memory cannot be reserved on this machine.
    fn new(limits: &PoolLimits, deadlines: bool, kind: EngineKind) -> Result<Runtime, PluginError> {
        let (engine, pooling) = match Engine::new(&PluginEngine::config(
            Some(limits),
            deadlines,
            kind,
        )) {
            Ok(e) => (e, true),
            Err(e) => {
                tracing::warn!(error = %e, engine = kind.as_str(), "cannot reserve the plugin instance pool; using on-demand allocation");
                (
                    Engine::new(&PluginEngine::config(None, deadlines, kind))
                        .map_err(PluginError::engine)?,
                    false,
                )
            }
        };
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(PluginError::engine)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(PluginError::engine)?;
        // Every contract version side by side: a component links to the one it imports.
        v2::Plugin::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |s| s)
            .map_err(PluginError::engine)?;
        v3::Plugin::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |s| s)
            .map_err(PluginError::engine)?;
        tracing::debug!(pooling, engine = kind.as_str(), "plugin engine ready");
        Ok(Runtime {
            engine,
            linker,
            pooling,
            slots: Arc::default(),
        })
    }
}

/// A one-worker runtime of the engine's own for load-time calls, so they never wait for (or
/// hold) a request worker. It goes with the engine, shut down in the background: the engine's
/// last reference may be dropped in async code, where a runtime's ordinary drop would panic.
pub(crate) struct LoadRuntime(Option<tokio::runtime::Runtime>);

impl LoadRuntime {
    fn new() -> Result<LoadRuntime, PluginError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("plugin-load")
            .enable_all()
            .build()
            .map_err(PluginError::engine)?;
        Ok(LoadRuntime(Some(rt)))
    }

    fn block_on<F: Future>(&self, fut: F) -> F::Output {
        match &self.0 {
            Some(rt) => rt.handle().block_on(fut),
            // Taken only in `drop`.
            None => unreachable!("the load runtime is in use after its engine was dropped"),
        }
    }
}

impl Drop for LoadRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}
