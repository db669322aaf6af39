//! The wasmtime engines plugins run on, with the pooling allocator (copy-on-write memory images)
//! and epoch interruption driven by a ticker thread, which sleeps while no plugin is loaded, so a
//! router without plugins has no timer waking every millisecond. There are two: a standard engine, and one
//! with the component model's async support for guests whose toolchain emits its built-ins
//! (jco's QuickJS backend), because that support costs every call about 1 µs. Also the host
//! linker (async WASI, so a guest that blocks in WASI suspends its call instead of a thread),
//! compiling (in a short-lived child process when one is configured, so the compiler's memory
//! goes back to the system), the on-disk cache of compiled components keyed by content hash and
//! engine, and the warm instances of every plugin, which are a cache: when the pool runs short,
//! the least recently used idle instance is evicted.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use serde::Serialize;

use super::PluginError;
use super::plugin::Compiled;
use super::state::{PluginState, PluginWorld};

/// How often the epoch advances: the resolution of every call deadline.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

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
    /// Runs load-time calls (trial instantiation, `validate`) for callers that are not async.
    control: tokio::runtime::Handle,
    /// Every plugin's idle instances with the engine they belong to, for eviction.
    idle_pools: Mutex<Vec<(EngineKind, Weak<dyn Evictable>)>>,
    /// The command that compiles in a child process (see [`PluginEngine::compile_in_child`]).
    compiler: OnceLock<ChildCompiler>,
    ticker: Arc<Ticker>,
}

/// The epoch ticker's switch: it advances the epochs only while a plugin is loaded.
struct Ticker {
    /// Loaded plugins (each holds a [`TickerUse`]).
    live: AtomicUsize,
    /// Set when the engine goes away.
    closed: AtomicBool,
    thread: OnceLock<std::thread::Thread>,
}

impl Ticker {
    fn wake(&self) {
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
    }
}

/// Keeps the epoch ticker running while it lives: held by every loaded plugin, whose calls'
/// deadlines are counted in epochs.
pub(crate) struct TickerUse(Arc<Ticker>);

impl Drop for TickerUse {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for PluginEngine {
    fn drop(&mut self) {
        self.ticker.closed.store(true, Ordering::Release);
        self.ticker.wake();
    }
}

/// How to run a compiling child: this program with these arguments, then the engine kind and
/// the artifact's path; the component on its stdin.
#[derive(Debug, Clone)]
pub struct ChildCompiler {
    /// The program (routerd itself).
    pub program: PathBuf,
    /// Arguments before the engine kind and the artifact's path.
    pub args: Vec<String>,
}

/// Where a compiled component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompiledBy {
    /// Loaded from the compile cache.
    Cache,
    /// Compiled by a child process (then loaded from the cache it wrote).
    Child,
    /// Compiled in this process.
    Routerd,
}

impl CompiledBy {
    /// `cache`, `child` or `routerd`.
    pub fn as_str(self) -> &'static str {
        match self {
            CompiledBy::Cache => "cache",
            CompiledBy::Child => "child",
            CompiledBy::Routerd => "routerd",
        }
    }
}

/// The longest a compiling child may take (a 20 MB guest compiles in seconds).
const CHILD_COMPILE_TIMEOUT: Duration = Duration::from_secs(300);

/// A child's exit code for "the bytes are not a valid component" (its stderr says why).
pub const CHILD_EXIT_INVALID: i32 = 3;

/// One plugin's idle warm instances, oldest first.
pub(crate) struct IdlePool<T> {
    pub(crate) instances: Mutex<Vec<T>>,
    /// When an instance was last taken or returned, in ms since [`clock_base`].
    pub(crate) last_used: AtomicU64,
}

impl<T> IdlePool<T> {
    pub(crate) fn new() -> Self {
        IdlePool {
            instances: Mutex::new(Vec::new()),
            last_used: AtomicU64::new(now_ms()),
        }
    }

    pub(crate) fn touch(&self) {
        self.last_used.store(now_ms(), Ordering::Relaxed);
    }
}

/// Something that can give up its oldest idle instance.
pub(crate) trait Evictable: Send + Sync {
    /// When it was last used, and whether it has an idle instance.
    fn last_used(&self) -> Option<u64>;
    /// Drops its oldest idle instance; false when it had none.
    fn evict_oldest(&self) -> bool;
}

impl<T: Send> Evictable for IdlePool<T> {
    fn last_used(&self) -> Option<u64> {
        let has = self.instances.lock().is_ok_and(|v| !v.is_empty());
        has.then(|| self.last_used.load(Ordering::Relaxed))
    }

    fn evict_oldest(&self) -> bool {
        let oldest = match self.instances.lock() {
            Ok(mut v) if !v.is_empty() => Some(v.remove(0)),
            _ => None,
        };
        // Dropped outside the lock: freeing a store returns its slots to the pool.
        oldest.is_some()
    }
}

/// Tells calls waiting for an instance slot that one may be free: an instance was dropped
/// (its slot went back to the pool) or became idle (so it can be evicted). Signals cost an
/// atomic load while nobody waits, so the calls that return instances do not contend on a lock.
#[derive(Default)]
pub(crate) struct SlotSignal {
    waiting: AtomicUsize,
    notify: tokio::sync::Notify,
}

impl SlotSignal {
    /// A slot may be free now.
    pub(crate) fn freed(&self) {
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.notify.notify_waiters();
        }
    }

    /// Starts listening: every [`SlotSignal::freed`] after this returns wakes the listener.
    pub(crate) fn listen(self: &Arc<Self>) -> SlotListener {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        SlotListener {
            signal: self.clone(),
        }
    }
}

/// A call's registration as a waiter for a free slot.
pub(crate) struct SlotListener {
    signal: Arc<SlotSignal>,
}

impl SlotListener {
    /// A future that completes at the next [`SlotSignal::freed`]. Enable it (`enable`) before
    /// trying for a slot, so a slot freed between a failed try and the wait is not missed.
    pub(crate) fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.signal.notify.notified()
    }
}

impl Drop for SlotListener {
    fn drop(&mut self) {
        self.signal.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Held by every instance, after its store: dropped with the instance, once the store (and
/// so the instance's slot) is gone, and says so to the calls waiting for a slot.
pub(crate) struct SlotReturn(pub(crate) Arc<SlotSignal>);

impl Drop for SlotReturn {
    fn drop(&mut self) {
        self.0.freed();
    }
}

/// Milliseconds since the first call, on a monotonic clock.
pub(crate) fn now_ms() -> u64 {
    static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// Interfaces a plugin may import: WASI 0.2's CLI-world interfaces (wired to nothing but clocks,
/// random and our log), `wasi:http` (every outgoing request refused) and the router contract. Checked before compiling, so a component that
/// cannot link fails in milliseconds instead of after a multi-second compile.
const PROVIDED_IMPORTS: &[&str] = &[
    "wasi:cli/",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:filesystem/",
    "wasi:sockets/",
    "wasi:http/",
    "router:plugin/",
];

/// The versions of the `router:plugin` contract routerd speaks. A 0.x version is compatible
/// with the later patch releases of its minor version (the component model's semver rule), so
/// each entry is a `major.minor` prefix.
pub const CONTRACT_VERSIONS: &[&str] = &["0.2"];

/// Refuses an import or export of a `router:plugin` interface of a version routerd does not
/// speak, naming it: otherwise such a component fails later with a bare link error.
fn check_contract(name: &str) -> Result<(), PluginError> {
    let Some(rest) = name.strip_prefix("router:plugin/") else {
        return Ok(());
    };
    let version = rest.split_once('@').map_or("", |(_, v)| v);
    let spoken = CONTRACT_VERSIONS.iter().any(|v| {
        version
            .strip_prefix(v)
            .is_some_and(|patch| patch.is_empty() || patch.starts_with('.'))
    });
    if spoken {
        return Ok(());
    }
    Err(PluginError::Contract {
        interface: name.to_owned(),
        found: if version.is_empty() {
            "an unversioned router:plugin".to_owned()
        } else {
            format!("router:plugin@{version}")
        },
    })
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
        // Deadlines are counted in epochs; weak handles let the ticker end with the engines.
        // While no plugin is loaded no call can run, and the ticker parks: a plugin's load
        // wakes it (see `ticker_use`). An unpark that comes between the check and the park is
        // not lost: it makes the park return at once.
        let weak = [standard.engine.weak(), component_async.engine.weak()];
        let ticker = Arc::new(Ticker {
            live: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            thread: OnceLock::new(),
        });
        let switch = ticker.clone();
        let thread = std::thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || {
                loop {
                    if switch.closed.load(Ordering::Acquire) {
                        break;
                    }
                    if switch.live.load(Ordering::Acquire) == 0 {
                        std::thread::park();
                        continue;
                    }
                    let engines = weak.each_ref().map(|w| w.upgrade());
                    if engines.iter().all(Option::is_none) {
                        break;
                    }
                    for engine in engines.iter().flatten() {
                        engine.increment_epoch();
                    }
                    drop(engines);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(|e| PluginError::engine(wasmtime::Error::from(e)))?;
        let _ = ticker.thread.set(thread.thread().clone());
        Ok(Arc::new(PluginEngine {
            standard,
            component_async,
            cache_dir,
            control: control_runtime()?,
            idle_pools: Mutex::new(Vec::new()),
            compiler: OnceLock::new(),
            ticker,
        }))
    }

    /// Keeps the epochs advancing while the result lives (a loaded plugin holds one).
    pub(crate) fn ticker_use(&self) -> TickerUse {
        if self.ticker.live.fetch_add(1, Ordering::AcqRel) == 0 {
            self.ticker.wake();
        }
        TickerUse(self.ticker.clone())
    }

    /// Whether the epoch ticker is running (some plugin is loaded).
    #[cfg(test)]
    fn ticking(&self) -> bool {
        self.ticker.live.load(Ordering::Acquire) > 0
    }

    /// The engine of `kind`.
    pub(crate) fn runtime(&self, kind: EngineKind) -> &Runtime {
        match kind {
            EngineKind::Standard => &self.standard,
            EngineKind::ComponentAsync => &self.component_async,
        }
    }

    /// Compiles from now on in a child process (`program args... ARTIFACT`, the component on
    /// its stdin), which writes the artifact into the compile cache and exits, so the
    /// compiler's peak memory (hundreds of MiB for a big guest) is returned to the system
    /// instead of staying in this process. Needs a cache directory; without one, or when the
    /// child cannot run, compiling happens in this process.
    pub fn compile_in_child(&self, compiler: ChildCompiler) {
        let _ = self.compiler.set(compiler);
    }

    /// The child side of [`PluginEngine::compile_in_child`]: compiles `bytes` with the
    /// configuration of [`PluginEngine::new`] and writes the artifact to `out` (atomically, by
    /// rename). No engine, ticker or runtime is kept.
    pub fn compile_to_file(bytes: &[u8], kind: EngineKind, out: &Path) -> Result<(), PluginError> {
        Self::check_imports(bytes)?;
        // The artifact depends on the compiler settings and tunables, not on the allocator,
        // so an on-demand engine compiles what the pooled one loads (the compatibility hash
        // in the cache file name and wasmtime's own check on load both make sure).
        let engine = Engine::new(&Self::config(None, true, kind)).map_err(PluginError::engine)?;
        let artifact = engine
            .precompile_component(bytes)
            .map_err(PluginError::invalid)?;
        write_artifact(out, &artifact).map_err(|e| PluginError::Read(out.display().to_string(), e))
    }

    /// Runs the compiling child for `bytes`, leaving the artifact at `out`.
    fn run_child(
        &self,
        compiler: &ChildCompiler,
        bytes: &[u8],
        kind: EngineKind,
        out: &Path,
    ) -> Result<(), ChildFailure> {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let mut child = Command::new(&compiler.program)
            .args(&compiler.args)
            .arg(kind.as_str())
            .arg(out)
            // Only its error message is wanted, and a chatty child must not fill the pipe.
            .env("RUST_LOG", "error")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                ChildFailure::Run(format!("cannot start {}: {e}", compiler.program.display()))
            })?;
        let stderr = child.stderr.take().map(|mut pipe| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = std::io::Read::read_to_string(&mut pipe, &mut text);
                text
            })
        });
        // The child reads all of stdin before it compiles, so writing it all first is safe.
        let sent = match child.stdin.take() {
            Some(mut stdin) => stdin.write_all(bytes),
            None => Ok(()),
        };
        let deadline = Instant::now() + CHILD_COMPILE_TIMEOUT;
        let waited = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break Err(format!(
                        "the compiling child took longer than {CHILD_COMPILE_TIMEOUT:?}"
                    ));
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break Err(format!("cannot wait for the compiling child: {e}"));
                }
            }
        };
        let stderr = stderr
            .and_then(|reader| reader.join().ok())
            .unwrap_or_default();
        let status = waited.map_err(ChildFailure::Run)?;
        if let Err(e) = sent
            && status.success()
        {
            return Err(ChildFailure::Run(format!("cannot send the component: {e}")));
        }
        let message = super::joined_lines(&stderr);
        match status.code() {
            Some(0) => Ok(()),
            Some(CHILD_EXIT_INVALID) => Err(ChildFailure::Invalid(message)),
            _ => Err(ChildFailure::Run(format!(
                "the compiling child failed ({status}): {message}"
            ))),
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

    /// Registers a plugin's idle instances (on the engine of `kind`) for eviction.
    pub(crate) fn register_idle(&self, kind: EngineKind, pool: Weak<dyn Evictable>) {
        if let Ok(mut pools) = self.idle_pools.lock() {
            pools.retain(|(_, p)| p.strong_count() > 0);
            pools.push((kind, pool));
        }
    }

    /// Drops the least recently used idle instance of any plugin on the engine of `kind`;
    /// false only when no plugin on it has an idle instance. A pool whose last idle instance
    /// was taken by a call between the choice and the eviction is passed over for the next.
    pub(crate) fn evict_one(&self, kind: EngineKind) -> bool {
        let mut candidates: Vec<(u64, Arc<dyn Evictable>)> = {
            let Ok(mut pools) = self.idle_pools.lock() else {
                return false;
            };
            pools.retain(|(_, p)| p.strong_count() > 0);
            pools
                .iter()
                .filter(|(k, _)| *k == kind)
                .filter_map(|(_, p)| {
                    let p = p.upgrade()?;
                    let used = p.last_used()?;
                    Some((used, p))
                })
                .collect()
        };
        candidates.sort_unstable_by_key(|(used, _)| *used);
        candidates.into_iter().any(|(_, p)| p.evict_oldest())
    }

    /// Where a call that found every instance slot of `kind` in use waits for one to free.
    pub(crate) fn slots_of(&self, kind: EngineKind) -> &Arc<SlotSignal> {
        &self.runtime(kind).slots
    }

    /// Checks, without compiling, that everything the component imports is something we
    /// provide.
    pub fn check_imports(bytes: &[u8]) -> Result<(), PluginError> {
        // Nested modules and components come inline, each between its own `Version` and `End`;
        // only the outermost component's imports are ours to provide.
        let mut depth = 0usize;
        for payload in wasmparser::Parser::new(0).parse_all(bytes) {
            let payload =
                payload.map_err(|e| PluginError::Invalid(super::joined_lines(e.message())))?;
            match payload {
                wasmparser::Payload::Version { encoding, .. } => {
                    if depth == 0 && encoding == wasmparser::Encoding::Module {
                        return Err(PluginError::Invalid(
                            "this is a core WebAssembly module, not a component (wrap it with `wasm-tools component new`)".into(),
                        ));
                    }
                    depth += 1;
                }
                wasmparser::Payload::End(_) => depth = depth.saturating_sub(1),
                wasmparser::Payload::ComponentImportSection(imports) if depth == 1 => {
                    for import in imports {
                        let import = import
                            .map_err(|e| PluginError::Invalid(super::joined_lines(e.message())))?;
                        let name = import.name.name;
                        check_contract(name)?;
                        if !PROVIDED_IMPORTS.iter().any(|p| name.starts_with(p)) {
                            return Err(PluginError::Link(format!(
                                "the component imports {name}, which routerd does not provide (plugins get WASI 0.2's cli, io, clocks, random, filesystem, sockets and http interfaces, without any files or network, and router:plugin)"
                            )));
                        }
                    }
                }
                wasmparser::Payload::ComponentExportSection(exports) if depth == 1 => {
                    for export in exports {
                        let export = export
                            .map_err(|e| PluginError::Invalid(super::joined_lines(e.message())))?;
                        check_contract(export.name.name)?;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Whether instances come from the pooling allocator.
    pub fn pooling(&self) -> bool {
        self.standard.pooling
    }

    fn config(pool: Option<&PoolLimits>, deadlines: bool, kind: EngineKind) -> Config {
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

    /// Compiles `bytes` for the engine they need, or loads the compiled artifact cached for
    /// them.
    pub fn compile(&self, sha256: &str, bytes: &[u8]) -> Result<Compiled, PluginError> {
        let started = Instant::now();
        // Before the cache too: an artifact cached by an earlier routerd may be of a component
        // this one refuses (a contract version it no longer speaks).
        Self::check_imports(bytes)?;
        for kind in [EngineKind::Standard, EngineKind::ComponentAsync] {
            if let Some(path) = self.cache_path(kind, sha256)
                && path.exists()
            {
                match self.load_cached(kind, &path) {
                    Ok(component) => {
                        return Ok(Compiled {
                            component,
                            kind,
                            by: CompiledBy::Cache,
                            took: started.elapsed(),
                        });
                    }
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "ignoring an unusable cached compilation")
                    }
                }
            }
        }
        let kind = EngineKind::for_component(bytes);
        let cached = self.cache_path(kind, sha256);
        if let (Some(compiler), Some(path)) = (self.compiler.get(), &cached) {
            match self.run_child(compiler, bytes, kind, path) {
                Ok(()) => match self.load_cached(kind, path) {
                    Ok(component) => {
                        return Ok(Compiled {
                            component,
                            kind,
                            by: CompiledBy::Child,
                            took: started.elapsed(),
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot load what the compiling child wrote; compiling here")
                    }
                },
                Err(ChildFailure::Invalid(message)) => return Err(PluginError::Invalid(message)),
                Err(ChildFailure::Run(reason)) => {
                    tracing::warn!("{reason}; compiling here")
                }
            }
        }
        let component =
            Component::new(&self.runtime(kind).engine, bytes).map_err(PluginError::invalid)?;
        if let Some(path) = &cached {
            match component.serialize() {
                Ok(artifact) => {
                    if let Err(e) = write_artifact(path, &artifact) {
                        tracing::warn!(path = %path.display(), error = %e, "cannot write the compile cache");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot serialize a compiled plugin"),
            }
        }
        Ok(Compiled {
            component,
            kind,
            by: CompiledBy::Routerd,
            took: started.elapsed(),
        })
    }

    fn cache_path(&self, kind: EngineKind, sha256: &str) -> Option<PathBuf> {
        let dir = self.cache_dir.as_ref()?;
        // The kind is in the name too: it is what the component needs, decided when it was
        // compiled, so a cached artifact never puts a component on the slower engine.
        Some(dir.join(format!(
            "{sha256}-{}-{:016x}.cwasm",
            kind.as_str(),
            compatibility(&self.runtime(kind).engine)
        )))
    }

    #[allow(unsafe_code)]
    fn load_cached(&self, kind: EngineKind, path: &Path) -> wasmtime::Result<Component> {
        // SAFETY: `Component::deserialize_file` trusts the file to be a wasmtime artifact. This
        // one is: it lives in our own data directory, under a name made of the source's sha256
        // and this engine's compatibility hash, and only `compile` above writes it (atomically,
        // by rename) from `Component::serialize`. wasmtime itself rejects artifacts from another
        // version or configuration. Whoever can rewrite our data directory can already replace
        // our binary, so the file is as trusted as the code running this.
        unsafe { Component::deserialize_file(&self.runtime(kind).engine, path) }
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
        PluginWorld::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |s| s)
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

/// What an artifact compiled by `engine` is compatible with, as a number for file names.
fn compatibility(engine: &Engine) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    h.finish()
}

/// Writes a compiled artifact atomically (a temp file unique to this process, then a rename),
/// so a reader never sees half of one and several routerd may share a data directory.
fn write_artifact(path: &Path, artifact: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, artifact).and_then(|()| std::fs::rename(&tmp, path))
}

/// Why a compiling child did not leave an artifact.
enum ChildFailure {
    /// The component is invalid (the child's message).
    Invalid(String),
    /// The child could not run or crashed; compiling here may still work.
    Run(String),
}

/// A one-worker runtime of its own for load-time calls, so they never wait for (or hold) a
/// request worker. It lives as long as the process (it is leaked on purpose: dropping a runtime
/// from async code panics, and every engine shares it).
fn control_runtime() -> Result<tokio::runtime::Handle, PluginError> {
    static CONTROL: Mutex<Option<tokio::runtime::Handle>> = Mutex::new(None);
    let mut slot = CONTROL
        .lock()
        .map_err(|_| PluginError::Engine("the plugin control runtime lock is poisoned".into()))?;
    if let Some(handle) = &*slot {
        return Ok(handle.clone());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("plugin-control")
        .enable_all()
        .build()
        .map_err(PluginError::engine)?;
    let handle = Box::leak(Box::new(rt)).handle().clone();
    *slot = Some(handle.clone());
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pool that says it has an idle instance, but whose last one a call takes before the
    /// eviction reaches it (as when two calls pick the same least recently used victim).
    struct TakenMeanwhile;

    impl Evictable for TakenMeanwhile {
        fn last_used(&self) -> Option<u64> {
            Some(0)
        }

        fn evict_oldest(&self) -> bool {
            false
        }
    }

    /// The race the many-plugins spread hit 68 times in two rounds: the least recently used
    /// pool lost its idle instance to another call between the choice and the eviction. The
    /// eviction goes on to the next pool instead of reporting the pool full.
    #[test]
    fn eviction_passes_over_a_victim_emptied_meanwhile() {
        let engine = PluginEngine::new(&PoolLimits::default(), None).expect("an engine");
        let raced: Arc<dyn Evictable> = Arc::new(TakenMeanwhile);
        let idle = Arc::new(IdlePool::<u8>::new());
        if let Ok(mut v) = idle.instances.lock() {
            v.push(7);
        }
        let other: Arc<dyn Evictable> = idle.clone();
        engine.register_idle(EngineKind::Standard, Arc::downgrade(&raced));
        engine.register_idle(EngineKind::Standard, Arc::downgrade(&other));
        assert!(engine.evict_one(EngineKind::Standard));
        assert!(idle.instances.lock().is_ok_and(|v| v.is_empty()));
        assert!(
            !engine.evict_one(EngineKind::Standard),
            "nothing idle is left"
        );
    }

    #[test]
    fn contract_versions_other_than_the_spoken_ones_are_named() {
        assert!(check_contract("wasi:cli/environment@0.2.0").is_ok());
        assert!(check_contract("router:plugin/request@0.2.0").is_ok());
        assert!(check_contract("router:plugin/request@0.2.7").is_ok());
        for (name, found) in [
            ("router:plugin/predicate@0.1.0", "router:plugin@0.1.0"),
            ("router:plugin/request@0.20.0", "router:plugin@0.20.0"),
            ("router:plugin/request@1.0.0", "router:plugin@1.0.0"),
            ("router:plugin/request", "an unversioned router:plugin"),
        ] {
            let e = check_contract(name).expect_err(name).to_string();
            assert!(e.contains(found), "{e}");
            assert!(e.contains("routerd speaks router:plugin@0.2.x"), "{e}");
        }
    }

    /// wasmparser pretty-prints the expected and found magic numbers over many lines; the
    /// error a user sees (and the log line it goes into) is one line.
    #[test]
    fn an_invalid_file_is_reported_on_one_line() {
        let e = PluginEngine::check_imports(b"definitely not a wasm file at all")
            .expect_err("random bytes are refused")
            .to_string();
        assert!(!e.contains('\n'), "{e}");
        assert!(e.contains("magic"), "{e}");
    }

    #[test]
    fn pagemap_scan_needs_linux_6_7() {
        assert!(release_has_pagemap_scan("6.18.44-fc-v1098\n"));
        assert!(release_has_pagemap_scan("6.7.0"));
        assert!(release_has_pagemap_scan("7.0-rc1"));
        assert!(!release_has_pagemap_scan("6.6.58-generic"));
        assert!(!release_has_pagemap_scan("5.15.0-91-generic"));
        assert!(!release_has_pagemap_scan("unknown"));
    }

    #[test]
    fn the_epoch_ticker_runs_only_while_a_plugin_holds_it() {
        let engine = PluginEngine::new(&PoolLimits::default(), None).expect("an engine");
        assert!(!engine.ticking());
        let first = engine.ticker_use();
        let second = engine.ticker_use();
        assert!(engine.ticking());
        drop(first);
        assert!(engine.ticking());
        drop(second);
        assert!(!engine.ticking());
        let held = engine.ticker_use();
        drop(engine);
        drop(held);
    }

    /// A child compiles with an on-demand engine what the parent's pooled engine loads: both
    /// must agree on everything an artifact depends on.
    #[test]
    fn pooled_and_on_demand_engines_share_artifacts() {
        let hash = compatibility;
        for kind in [EngineKind::Standard, EngineKind::ComponentAsync] {
            let pooled = Engine::new(&PluginEngine::config(
                Some(&PoolLimits::default()),
                true,
                kind,
            ));
            let on_demand = Engine::new(&PluginEngine::config(None, true, kind));
            let (Ok(pooled), Ok(on_demand)) = (pooled, on_demand) else {
                // No virtual memory for the pool here: the parent falls back to on-demand too.
                continue;
            };
            assert_eq!(hash(&pooled), hash(&on_demand), "{kind:?}");
        }
        // The two kinds never share artifacts.
        let standard = Engine::new(&PluginEngine::config(None, true, EngineKind::Standard));
        let with_async = Engine::new(&PluginEngine::config(
            None,
            true,
            EngineKind::ComponentAsync,
        ));
        if let (Ok(a), Ok(b)) = (standard, with_async) {
            assert_ne!(hash(&a), hash(&b));
        }
    }
}
