//! One loaded plugin: its compiled component linked once (`InstancePre`), its settings, a pool
//! of warm instances, and the two calls the router makes (predicate, filter phases) with the
//! deadline, memory cap and failure policy applied. A call that fails for any reason throws its
//! instance away; the next call gets a clean one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use wasmtime::Store;
use wasmtime::component::{Component, InstancePre, Resource};

use super::PluginError;
use super::engine::{EPOCH_TICK, PluginEngine};
use super::state::{
    CallRequest, CallResponse, FilterGuest, FilterIndices, PluginState, PredicateGuest,
    PredicateIndices, RequestAction, RequestHandle, ResponseEdits, ResponseHandle,
};

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

/// What a failed call counts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// A predicate does not match; a filter answers 500. The default.
    #[default]
    FailClosed,
    /// A predicate matches; a filter is skipped.
    FailOpen,
}

/// Per-plugin settings, from `NAME.json` beside `NAME.wasm` (every field optional).
#[derive(Debug, Clone, Serialize, Deserialize)]
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
}

impl Default for PluginSettings {
    fn default() -> Self {
        PluginSettings {
            mode: InstanceMode::Reuse,
            deadline_ms: 10,
            memory_mib: 64,
            failure: FailurePolicy::FailClosed,
            max_idle: 16,
        }
    }
}

/// What the plugin exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PluginKind {
    /// It exports `predicate`.
    pub predicate: bool,
    /// It exports `filter`.
    pub filter: bool,
}

impl PluginKind {
    /// `predicate`, `filter` or `predicate+filter`.
    pub fn as_str(&self) -> &'static str {
        match (self.predicate, self.filter) {
            (true, true) => "predicate+filter",
            (true, false) => "predicate",
            _ => "filter",
        }
    }
}

/// Call counters, shown by the admin API and metrics.
#[derive(Debug, Default)]
pub struct PluginStats {
    /// Calls made.
    pub calls: AtomicU64,
    /// Calls that trapped (panic, stack overflow, ...), deadline and memory hits excluded.
    pub traps: AtomicU64,
    /// Calls stopped at the deadline.
    pub deadline_hits: AtomicU64,
    /// Calls that hit the memory cap.
    pub memory_cap_hits: AtomicU64,
    /// Calls whose result was rejected (e.g. too many headers).
    pub bad_results: AtomicU64,
}

struct Warm {
    store: Store<PluginState>,
    predicate: Option<PredicateGuest>,
    filter: Option<FilterGuest>,
}

enum Attempt<R> {
    Done(Result<R, CallFailure>, Option<CallResponse>),
    HostPanicked(Option<CallRequest>, Option<CallResponse>),
}

/// Whether this thread may block in place: a worker of a multi-threaded tokio runtime.
fn can_block_in_place() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
}

fn host_panic() -> CallFailure {
    CallFailure::Trap("a host function panicked during the call".to_owned())
}

/// Why a call failed; the failure policy decides what it means for the request.
#[derive(Debug)]
pub enum CallFailure {
    /// The deadline passed.
    Deadline,
    /// The instance hit its memory cap.
    MemoryCap,
    /// The guest trapped (or instantiation failed).
    Trap(String),
    /// The guest answered something we refuse (too large, invalid).
    BadResult(String),
}

impl std::fmt::Display for CallFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallFailure::Deadline => f.write_str("deadline exceeded"),
            CallFailure::MemoryCap => f.write_str("memory cap exceeded"),
            CallFailure::Trap(t) => write!(f, "trap: {t}"),
            CallFailure::BadResult(r) => write!(f, "rejected result: {r}"),
        }
    }
}

/// A loaded plugin.
pub struct Plugin {
    /// Its name (file stem or explicit).
    pub name: Arc<str>,
    /// sha256 of the `.wasm` bytes, hex.
    pub sha256: String,
    /// Size of the `.wasm` bytes.
    pub size: usize,
    /// What it exports.
    pub kind: PluginKind,
    /// When it was loaded.
    pub loaded_at: SystemTime,
    /// Whether the compilation came from the cache.
    pub from_cache: bool,
    /// Its settings.
    pub settings: PluginSettings,
    /// Its counters.
    pub stats: PluginStats,
    engine: Arc<PluginEngine>,
    pre: InstancePre<PluginState>,
    predicate_indices: Option<PredicateIndices>,
    filter_indices: Option<FilterIndices>,
    idle: Mutex<Vec<Warm>>,
    needs_blocking: std::sync::atomic::AtomicBool,
    deadline_ticks: u64,
    memory_cap: usize,
}

/// Deadline of `validate` calls, in epoch ticks: they run at load, not per request, and a busy
/// machine must not turn a slow start into a rejected route.
const VALIDATE_TICKS: u64 = 1000;

/// Most headers a filter may set or reply with in one call.
pub const MAX_RESULT_HEADERS: usize = 256;
/// Most bytes of header names and values a filter may produce in one call.
pub const MAX_RESULT_HEADER_BYTES: usize = 256 << 10;

impl Plugin {
    /// Links a compiled component and checks that it exports a predicate or a filter, and that
    /// it can be instantiated.
    pub fn new(
        engine: Arc<PluginEngine>,
        name: &str,
        sha256: String,
        size: usize,
        component: Component,
        from_cache: bool,
        settings: PluginSettings,
    ) -> Result<Plugin, PluginError> {
        let pre = engine
            .linker
            .instantiate_pre(&component)
            .map_err(|e| PluginError::Link(format!("{e:#}")))?;
        let predicate_indices = PredicateIndices::new(&pre).ok();
        let filter_indices = FilterIndices::new(&pre).ok();
        if predicate_indices.is_none() && filter_indices.is_none() {
            return Err(PluginError::NoExports);
        }
        let kind = PluginKind {
            predicate: predicate_indices.is_some(),
            filter: filter_indices.is_some(),
        };
        let deadline_ticks =
            (settings.deadline_ms.max(1) * 1000).div_ceil(EPOCH_TICK.as_micros() as u64);
        let memory_cap = settings.memory_mib.max(1) << 20;
        let plugin = Plugin {
            name: name.into(),
            sha256,
            size,
            kind,
            loaded_at: SystemTime::now(),
            from_cache,
            settings,
            stats: PluginStats::default(),
            engine,
            pre,
            predicate_indices,
            filter_indices,
            idle: Mutex::new(Vec::new()),
            needs_blocking: std::sync::atomic::AtomicBool::new(false),
            deadline_ticks,
            memory_cap,
        };
        // Instantiate once now, so a component that cannot start is rejected at load.
        let warm = plugin
            .instantiate()
            .map_err(|f| PluginError::Instantiate(f.to_string()))?;
        plugin.put_back(warm);
        Ok(plugin)
    }

    /// The deadline per call.
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.settings.deadline_ms)
    }

    fn instantiate(&self) -> Result<Warm, CallFailure> {
        let mut store = Store::new(
            &self.engine.engine,
            PluginState::new(self.name.clone(), self.memory_cap),
        );
        store.limiter(|s| s as &mut dyn wasmtime::ResourceLimiter);
        // The deadline must be set before instantiating: start functions run too.
        store.set_epoch_deadline(self.deadline_ticks);
        store.epoch_deadline_trap();
        let instance = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| classify(&store, &e))?;
        let predicate = match &self.predicate_indices {
            Some(ix) => Some(
                ix.load(&mut store, &instance)
                    .map_err(|e| CallFailure::Trap(format!("{e:#}")))?,
            ),
            None => None,
        };
        let filter = match &self.filter_indices {
            Some(ix) => Some(
                ix.load(&mut store, &instance)
                    .map_err(|e| CallFailure::Trap(format!("{e:#}")))?,
            ),
            None => None,
        };
        Ok(Warm {
            store,
            predicate,
            filter,
        })
    }

    fn take(&self) -> Result<Warm, CallFailure> {
        if self.settings.mode == InstanceMode::Reuse
            && let Some(w) = self.idle.lock().ok().and_then(|mut idle| idle.pop())
        {
            return Ok(w);
        }
        self.instantiate()
    }

    fn put_back(&self, mut warm: Warm) {
        if self.settings.mode != InstanceMode::Reuse {
            return;
        }
        let data = warm.store.data_mut();
        data.request = None;
        data.response = None;
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < self.settings.max_idle
        {
            idle.push(warm);
        }
    }

    /// Runs `f` on an instance with the deadline armed; returns the instance to the pool only
    /// when the call succeeded.
    ///
    /// WASI's blocking operations (a guest writing to stdout, polling a clock) block on a tokio
    /// runtime, which a tokio worker thread may not do. Most plugins never use them, so calls
    /// run directly; the first time a plugin's call needs them (the host panics, the call is
    /// abandoned), the call is retried inside `block_in_place`, and so are the plugin's later
    /// calls.
    fn call<R>(
        &self,
        ticks: u64,
        request: Option<CallRequest>,
        response: Option<CallResponse>,
        f: impl Fn(&mut Warm) -> wasmtime::Result<R>,
    ) -> (Result<R, CallFailure>, Option<CallResponse>) {
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        // Only a plugin already known to block pays for the runtime check.
        if self.needs_blocking.load(Ordering::Relaxed) && can_block_in_place() {
            return self.finish(tokio::task::block_in_place(|| {
                self.attempt(ticks, request, response, &f)
            }));
        }
        match self.attempt(ticks, request, response, &f) {
            Attempt::HostPanicked(request, response) if can_block_in_place() => {
                self.needs_blocking.store(true, Ordering::Relaxed);
                tracing::info!(
                    plugin = &*self.name,
                    "plugin uses blocking WASI calls; its calls now run in block_in_place"
                );
                self.finish(tokio::task::block_in_place(|| {
                    self.attempt(ticks, request, response, &f)
                }))
            }
            other => self.finish(other),
        }
    }

    /// An attempt's result; a host panic counts as a trap.
    fn finish<R>(&self, attempt: Attempt<R>) -> (Result<R, CallFailure>, Option<CallResponse>) {
        match attempt {
            Attempt::Done(r, resp) => (r, resp),
            Attempt::HostPanicked(_, resp) => (Err(self.count(host_panic())), resp),
        }
    }

    fn attempt<R>(
        &self,
        ticks: u64,
        request: Option<CallRequest>,
        response: Option<CallResponse>,
        f: &impl Fn(&mut Warm) -> wasmtime::Result<R>,
    ) -> Attempt<R> {
        let mut warm = match self.take() {
            Ok(w) => w,
            Err(e) => return Attempt::Done(Err(self.count(e)), response),
        };
        {
            let data = warm.store.data_mut();
            data.request = request;
            data.response = response;
            data.log_lines = 0;
            data.memory_cap_hit = false;
        }
        warm.store.set_epoch_deadline(ticks);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut warm)));
        let data = warm.store.data_mut();
        let response = data.response.take();
        match result {
            Ok(Ok(r)) => {
                self.put_back(warm);
                Attempt::Done(Ok(r), response)
            }
            Ok(Err(e)) => {
                let failure = classify(&warm.store, &e);
                Attempt::Done(Err(self.count(failure)), response)
            }
            // The instance is abandoned mid-call and never reused.
            Err(_) => Attempt::HostPanicked(data.request.take(), response),
        }
    }

    fn count(&self, failure: CallFailure) -> CallFailure {
        let counter = match &failure {
            CallFailure::Deadline => &self.stats.deadline_hits,
            CallFailure::MemoryCap => &self.stats.memory_cap_hits,
            CallFailure::Trap(_) => &self.stats.traps,
            CallFailure::BadResult(_) => &self.stats.bad_results,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        failure
    }

    /// Asks the predicate to check a route's args.
    pub fn validate_predicate(&self, args: &[String]) -> Result<(), String> {
        let (r, _) = self.call(VALIDATE_TICKS, None, None, |w| match &w.predicate {
            Some(p) => p.call_validate(&mut w.store, args),
            None => Ok(Err("this plugin is not a predicate".to_owned())),
        });
        r.map_err(|f| format!("validate failed: {f}"))?
    }

    /// Asks the filter to check a route's args.
    pub fn validate_filter(&self, args: &[String]) -> Result<(), String> {
        let (r, _) = self.call(VALIDATE_TICKS, None, None, |w| match &w.filter {
            Some(p) => p.call_validate(&mut w.store, args),
            None => Ok(Err("this plugin is not a filter".to_owned())),
        });
        r.map_err(|f| format!("validate failed: {f}"))?
    }

    /// Runs the predicate.
    pub fn matches(&self, request: CallRequest, args: &[String]) -> Result<bool, CallFailure> {
        self.call(self.deadline_ticks, Some(request), None, |w| {
            match &w.predicate {
                Some(p) => {
                    p.call_matches(&mut w.store, Resource::<RequestHandle>::new_borrow(0), args)
                }
                None => Ok(false),
            }
        })
        .0
    }

    /// Runs the filter's request phase.
    pub fn on_request(
        &self,
        request: CallRequest,
        args: &[String],
    ) -> Result<RequestAction, CallFailure> {
        let action = self
            .call(self.deadline_ticks, Some(request), None, |w| {
                match &w.filter {
                    Some(p) => p.call_on_request(
                        &mut w.store,
                        Resource::<RequestHandle>::new_borrow(0),
                        args,
                    ),
                    None => Ok(RequestAction::Proceed(super::state::RequestEdits {
                        headers: Vec::new(),
                        path: None,
                        query: None,
                    })),
                }
            })
            .0?;
        let (headers, extra) = match &action {
            RequestAction::Proceed(e) => {
                (e.headers.len(), e.headers.iter().map(op_len).sum::<usize>())
            }
            RequestAction::Respond(r) => (
                r.headers.len(),
                r.headers.iter().map(|(k, v)| k.len() + v.len()).sum(),
            ),
        };
        self.check_headers(headers, extra)?;
        Ok(action)
    }

    /// Runs the filter's response phase on `response` (handed back with the result).
    pub fn on_response(
        &self,
        request: CallRequest,
        response: CallResponse,
        args: &[String],
    ) -> (Result<ResponseEdits, CallFailure>, CallResponse) {
        let (r, back) = self.call(
            self.deadline_ticks,
            Some(request),
            Some(response),
            |w| match &w.filter {
                Some(p) => p.call_on_response(
                    &mut w.store,
                    Resource::<RequestHandle>::new_borrow(0),
                    Resource::<ResponseHandle>::new_borrow(0),
                    args,
                ),
                None => Ok(ResponseEdits {
                    status: None,
                    headers: Vec::new(),
                }),
            },
        );
        let back = back.unwrap_or_default();
        let r = r.and_then(|edits| {
            self.check_headers(edits.headers.len(), edits.headers.iter().map(op_len).sum())?;
            Ok(edits)
        });
        (r, back)
    }

    fn check_headers(&self, count: usize, bytes: usize) -> Result<(), CallFailure> {
        if count > MAX_RESULT_HEADERS || bytes > MAX_RESULT_HEADER_BYTES {
            return Err(self.count(CallFailure::BadResult(format!(
                "{count} headers / {bytes} bytes exceed the limit of {MAX_RESULT_HEADERS} headers / {MAX_RESULT_HEADER_BYTES} bytes"
            ))));
        }
        Ok(())
    }
}

fn op_len(op: &super::state::HeaderOp) -> usize {
    use super::state::HeaderOp;
    match op {
        HeaderOp::Set((k, v)) | HeaderOp::Append((k, v)) => k.len() + v.len(),
        HeaderOp::Remove(k) => k.len(),
    }
}

fn classify(store: &Store<PluginState>, e: &wasmtime::Error) -> CallFailure {
    if store.data().memory_cap_hit {
        return CallFailure::MemoryCap;
    }
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => CallFailure::Deadline,
        // The root cause is the trap itself ("wasm trap: ..."); the wasm backtrace stays out
        // of the one-line log.
        _ => CallFailure::Trap(e.root_cause().to_string()),
    }
}
