//! One loaded plugin: its compiled component linked once (`InstancePre`), its warm instances,
//! and the calls the router makes, each run as a future under a deadline (the epoch check
//! interrupts guest code; a timer ends a call that waits in WASI), behind the plugin's
//! concurrency cap and circuit breaker, with its result checked against the caps. A call that
//! fails for any reason throws its instance away; the next call gets a clean one.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use wasmtime::component::{Component, InstancePre};
use wasmtime::{Store, StoreContextMut, UpdateDeadline};

use super::PluginError;
use super::engine::{
    CompiledBy, EPOCH_TICK, EngineKind, IdlePool, PluginEngine, SlotReturn, TickerUse,
};
use super::gate::{Admission, Breaker, ConcurrencyCap, Phase, PluginStats, SlotWait};
use super::settings::{FailurePolicy, InstanceMode, PluginSettings};
use super::state::{
    FilterGuest, FilterIndices, HeaderOp, PluginState, PredicateGuest, PredicateIndices,
    RequestAction, RequestEdits, ResponseEdits,
};
use crate::routing::{ExternalRequest, ResponseHead};

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
    /// The plugin's concurrency cap (or the shared instance pool) stayed full until the
    /// deadline.
    Overloaded(String),
    /// The circuit breaker is open: the plugin kept failing, so it is not called for now.
    CircuitOpen,
}

impl CallFailure {
    /// A short machine-readable name: `deadline`, `memory_cap`, `trap`, `bad_result`,
    /// `overloaded` or `circuit_open`.
    pub fn kind(&self) -> &'static str {
        match self {
            CallFailure::Deadline => "deadline",
            CallFailure::MemoryCap => "memory_cap",
            CallFailure::Trap(_) => "trap",
            CallFailure::BadResult(_) => "bad_result",
            CallFailure::Overloaded(_) => "overloaded",
            CallFailure::CircuitOpen => "circuit_open",
        }
    }
}

impl std::fmt::Display for CallFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallFailure::Deadline => f.write_str("deadline exceeded"),
            CallFailure::MemoryCap => f.write_str("memory cap exceeded"),
            CallFailure::Trap(t) => write!(f, "trap: {t}"),
            CallFailure::BadResult(r) => write!(f, "rejected result: {r}"),
            CallFailure::Overloaded(r) => write!(f, "overloaded: {r}"),
            CallFailure::CircuitOpen => {
                f.write_str("circuit breaker open (the plugin kept failing; not called for now)")
            }
        }
    }
}

/// One instance with its store.
pub(crate) struct Warm {
    store: Store<PluginState>,
    predicate: Option<PredicateGuest>,
    filter: Option<FilterGuest>,
    /// The store's [`SlotWait`], also held here for the timer that bounds each call.
    slot_wait: Arc<SlotWait>,
    /// Last, so it is dropped after the store: tells waiting calls the slot is free.
    _returned: SlotReturn,
}

/// A call into the guest.
enum Call<'a> {
    Validate { filter: bool, args: &'a [String] },
    Matches(&'a [String]),
    OnRequest(&'a [String]),
    OnResponse(&'a [String]),
}

/// What a call answered.
enum Outcome {
    Valid(Result<(), String>),
    Matched(bool),
    Action(RequestAction),
    Edits(ResponseEdits),
}

/// The time a load-time call (trial instantiation, `validate`) gets: they run once, not per
/// request, and a busy machine or a big guest must not turn a slow start into a rejection.
const LOAD_ALLOWANCE: Duration = Duration::from_secs(5);

/// The time a call's new instance may take to start (the guest's start functions included).
/// It is the instance's budget, not the call's: the deadline bounds the guest's own run, and
/// a start slowed by the host (page faults, a busy worker) must not count against it. A plugin
/// that loaded starts in well under a millisecond to a few; this only bounds one that hangs.
const INSTANTIATE_ALLOWANCE: Duration = Duration::from_secs(1);

/// Evictions one attempt to instantiate may make before it waits for a slot instead: each
/// frees a slot, so more mean other calls keep taking the freed slots first.
const MAX_EVICTIONS_PER_ATTEMPT: usize = 64;

/// Most headers a filter may set or reply with in one call.
pub const MAX_RESULT_HEADERS: usize = 256;
/// Most bytes of header names and values a filter may produce in one call.
pub const MAX_RESULT_HEADER_BYTES: usize = 256 << 10;
/// The largest reply body a filter may answer with.
pub const MAX_REPLY_BODY_BYTES: usize = 1 << 20;

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
    /// The engine it runs on.
    pub engine_kind: EngineKind,
    /// How long compiling (or loading the cached compilation) took.
    pub compile_time: Duration,
    /// How long the trial instantiation at load took.
    pub instantiate_time: Duration,
    /// Its settings.
    pub settings: PluginSettings,
    /// The languages and tools it declares it was built with.
    pub producers: super::producers::Producers,
    /// Its counters, shared by every version loaded under its name (a replaced plugin's
    /// counters go on counting, so `/metrics` never sees a reset while the name stays loaded).
    pub stats: Arc<PluginStats>,
    engine: Arc<PluginEngine>,
    pre: InstancePre<PluginState>,
    predicate_indices: Option<PredicateIndices>,
    filter_indices: Option<FilterIndices>,
    idle: Arc<IdlePool<Warm>>,
    deadline: Duration,
    queue: Duration,
    memory_cap: usize,
    cap: ConcurrencyCap,
    breaker: Breaker,
    /// Its calls' deadlines need the epoch ticker.
    _ticker: TickerUse,
}

/// Where a compiled component came from.
pub struct Compiled {
    /// The component.
    pub component: Component,
    /// The engine it was compiled for.
    pub kind: EngineKind,
    /// Where it came from.
    pub by: CompiledBy,
    /// How long compiling or loading it took.
    pub took: Duration,
}

impl Plugin {
    /// Links a compiled component, checks that it exports a predicate or a filter, and
    /// instantiates it once (under the load-time allowance, not the call deadline) so a
    /// component that cannot start is rejected here.
    pub fn new(
        engine: Arc<PluginEngine>,
        name: &str,
        sha256: String,
        size: usize,
        compiled: Compiled,
        settings: PluginSettings,
    ) -> Result<Plugin, PluginError> {
        let pre = engine
            .runtime(compiled.kind)
            .linker
            .instantiate_pre(&compiled.component)
            .map_err(|e| PluginError::Link(super::one_line(&e)))?;
        let predicate_indices = PredicateIndices::new(&pre).ok();
        let filter_indices = FilterIndices::new(&pre).ok();
        if predicate_indices.is_none() && filter_indices.is_none() {
            return Err(PluginError::NoExports);
        }
        let kind = PluginKind {
            predicate: predicate_indices.is_some(),
            filter: filter_indices.is_some(),
        };
        let idle = Arc::new(IdlePool::new());
        let weak: std::sync::Weak<IdlePool<Warm>> = Arc::downgrade(&idle);
        engine.register_idle(compiled.kind, weak);
        let mut plugin = Plugin {
            name: name.into(),
            sha256,
            size,
            kind,
            loaded_at: SystemTime::now(),
            from_cache: compiled.by == CompiledBy::Cache,
            engine_kind: compiled.kind,
            compile_time: compiled.took,
            instantiate_time: Duration::ZERO,
            deadline: Duration::from_millis(settings.deadline_ms.max(1)),
            queue: Duration::from_millis(settings.queue_ms),
            memory_cap: settings.memory_mib.max(1) << 20,
            cap: ConcurrencyCap::new(settings.concurrency()),
            breaker: Breaker::new(settings.breaker_failures, settings.breaker_backoff_ms),
            settings,
            producers: Default::default(),
            stats: Arc::default(),
            engine: engine.clone(),
            pre,
            predicate_indices,
            filter_indices,
            idle,
            _ticker: engine.ticker_use(),
        };
        let started = Instant::now();
        let warm = engine
            .block_on(plugin.instantiate(LOAD_ALLOWANCE, LOAD_ALLOWANCE))
            .map_err(|f| PluginError::Instantiate(f.to_string()))?;
        plugin.instantiate_time = started.elapsed();
        plugin.put_back(warm);
        Ok(plugin)
    }

    /// Counts into `previous`'s counters from now on: the version this one replaces.
    pub fn continue_counters(&mut self, previous: &Plugin) {
        self.stats = previous.stats.clone();
    }

    /// The deadline per call.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// The concurrency cap in effect.
    pub fn concurrency(&self) -> usize {
        self.cap.limit()
    }

    /// Whether the circuit breaker is open now.
    pub fn breaker_open(&self) -> bool {
        self.breaker.is_open()
    }

    /// Idle warm instances kept now.
    pub fn idle_instances(&self) -> usize {
        self.idle.instances.lock().map_or(0, |v| v.len())
    }

    /// A new instance, its start bounded by `allowance`. When the shared pool is full, idle
    /// instances of any plugin are evicted, least recently used first; only when every slot
    /// is held by a running call does it wait, up to `queue`, for one of them to end: then the
    /// call is overloaded, which is routerd's capacity, never the plugin's failure.
    async fn instantiate(&self, allowance: Duration, queue: Duration) -> Result<Warm, CallFailure> {
        if let Some(done) = self.try_instantiate(allowance).await {
            return done;
        }
        let listener = self.engine.slots_of(self.engine_kind).listen();
        let until = Instant::now() + queue;
        loop {
            let mut freed = std::pin::pin!(listener.notified());
            freed.as_mut().enable();
            if let Some(done) = self.try_instantiate(allowance).await {
                return done;
            }
            if tokio::time::timeout_at(until.into(), freed).await.is_err() {
                return Err(CallFailure::Overloaded(format!(
                    "every plugin instance slot stayed in use by running calls for queue_ms ({} ms); raise --plugin-instances",
                    queue.as_millis()
                )));
            }
        }
    }

    /// One attempt at a new instance; `None` when the pool is full and no plugin has an idle
    /// instance left to evict.
    async fn try_instantiate(&self, allowance: Duration) -> Option<Result<Warm, CallFailure>> {
        for _ in 0..=MAX_EVICTIONS_PER_ATTEMPT {
            let until = Instant::now() + allowance;
            let mut store = Store::new(
                &self.engine.runtime(self.engine_kind).engine,
                PluginState::new(self.name.clone(), self.memory_cap),
            );
            store.limiter(|s| s as &mut dyn wasmtime::ResourceLimiter);
            {
                let data = store.data_mut();
                data.deadline_at = until;
                data.yield_from = Instant::now() + EPOCH_TICK;
                data.cap = Some(self.cap.slots());
                data.queue = self.queue;
            }
            store.epoch_deadline_callback(epoch_check);
            // Start functions run too: the deadline is armed before instantiating.
            store.set_epoch_deadline(1);
            let wait = store.data().slot_wait.clone();
            let instance = match within(until, &wait, self.pre.instantiate_async(&mut store)).await
            {
                None => return Some(Err(CallFailure::Deadline)),
                Some(Ok(i)) => i,
                Some(Err(e)) if e.is::<wasmtime::PoolConcurrencyLimitError>() => {
                    drop(store);
                    if self.engine.evict_one(self.engine_kind) {
                        continue;
                    }
                    return None;
                }
                Some(Err(e)) => return Some(Err(classify(&store, &e))),
            };
            return Some(self.ready(store, &instance, wait));
        }
        None
    }

    /// A started instance with its exports looked up.
    fn ready(
        &self,
        mut store: Store<PluginState>,
        instance: &wasmtime::component::Instance,
        slot_wait: Arc<SlotWait>,
    ) -> Result<Warm, CallFailure> {
        let trap = |e: wasmtime::Error| CallFailure::Trap(super::one_line(&e));
        let predicate = match &self.predicate_indices {
            Some(ix) => Some(ix.load(&mut store, instance).map_err(trap)?),
            None => None,
        };
        let filter = match &self.filter_indices {
            Some(ix) => Some(ix.load(&mut store, instance).map_err(trap)?),
            None => None,
        };
        Ok(Warm {
            store,
            predicate,
            filter,
            slot_wait,
            _returned: SlotReturn(self.engine.slots_of(self.engine_kind).clone()),
        })
    }

    /// An instance for a call: an idle one, or a new one (waiting up to `queue` for a slot).
    async fn take(&self, allowance: Duration, queue: Duration) -> Result<Warm, CallFailure> {
        self.idle.touch();
        if self.settings.mode == InstanceMode::Reuse
            && let Some(w) = self.idle.instances.lock().ok().and_then(|mut v| v.pop())
        {
            return Ok(w);
        }
        self.instantiate(allowance, queue).await
    }

    fn put_back(&self, mut warm: Warm) {
        if self.settings.mode != InstanceMode::Reuse {
            return;
        }
        let data = warm.store.data_mut();
        data.request = None;
        data.response = None;
        let kept = match self.idle.instances.lock() {
            Ok(mut idle) if idle.len() < self.settings.max_idle => {
                idle.push(warm);
                None
            }
            _ => Some(warm),
        };
        match kept {
            // Dropped outside the lock; its slot's return is signalled as it goes.
            Some(dropped) => drop(dropped),
            // Idle now, so evictable by a call waiting for a slot.
            None => self.engine.slots_of(self.engine_kind).freed(),
        }
    }

    /// Runs one call: breaker, concurrency cap, an instance, the guest under the deadline,
    /// the result caps; then the outcome is counted and the instance kept only on success.
    async fn call(
        &self,
        phase: Phase,
        call: Call<'_>,
        request: Option<ExternalRequest>,
        response: Option<ResponseHead>,
    ) -> (Result<Outcome, CallFailure>, Option<ResponseHead>) {
        self.stats.calls[phase as usize].fetch_add(1, Ordering::Relaxed);
        let load_time = phase == Phase::Validate;
        let admission = if load_time {
            Admission::Run
        } else {
            self.breaker.admit()
        };
        if admission == Admission::Refuse {
            self.stats.short_circuited.fetch_add(1, Ordering::Relaxed);
            return (Err(CallFailure::CircuitOpen), response);
        }
        let probe = admission == Admission::Probe;
        let queue = if load_time {
            LOAD_ALLOWANCE
        } else {
            self.queue
        };
        // The deadline is the guest's own time: it starts once the call has an instance (a
        // new one has its own budget), and a wait for a slot of the cap pushes it back.
        let allowance = if load_time {
            LOAD_ALLOWANCE
        } else {
            INSTANTIATE_ALLOWANCE
        };
        let taken = self.take(allowance, queue).await;
        let started = Instant::now();
        let deadline_at = started
            + if load_time {
                LOAD_ALLOWANCE
            } else {
                self.deadline
            };
        let (result, response) = match taken {
            Err(failure) => (Err(failure), response),
            Ok(mut warm) => {
                {
                    let data = warm.store.data_mut();
                    data.request = request;
                    data.response = response;
                    data.log_lines.reset();
                    data.memory_cap_hit = false;
                    data.deadline_at = deadline_at;
                    data.yield_from = started + EPOCH_TICK;
                    data.queue = queue;
                }
                warm.store.set_epoch_deadline(1);
                let Warm {
                    store,
                    predicate,
                    filter,
                    slot_wait,
                    ..
                } = &mut warm;
                let outcome = within(
                    deadline_at,
                    slot_wait,
                    invoke(store, predicate, filter, &call),
                )
                .await;
                // The request goes back to its caller's only reference: the proxy then reuses
                // the head it shared instead of copying it, and an idle instance holds no
                // request alive.
                let data = warm.store.data_mut();
                data.request = None;
                // The slot, if the call took one, is free again, and the timer's extension
                // a wait for it set is over. (A call still waiting never gets here in an
                // instance that is kept: it ended at its deadline or as overloaded.)
                if data.slot.take().is_some() {
                    warm.slot_wait.extend_until(None);
                }
                let response = data.response.take();
                match outcome {
                    Some(Ok(out)) => {
                        let checked = check_result(&out);
                        self.put_back(warm);
                        (checked.map(|()| out), response)
                    }
                    Some(Err(e)) => (Err(classify(&warm.store, &e)), response),
                    // The call was still waiting (in WASI) at the deadline; its instance
                    // is dropped mid-call and never reused.
                    None => (Err(CallFailure::Deadline), response),
                }
            }
        };
        if let Err(failure) = &result {
            self.count(failure);
        }
        // An overloaded call says nothing about the plugin's health, not even as the probe.
        let overloaded = matches!(result, Err(CallFailure::Overloaded(_)));
        if !load_time && overloaded && probe {
            self.breaker.abandon_probe();
        }
        if !load_time && !overloaded && self.breaker.record(result.is_ok(), probe) {
            self.stats.breaker_opened.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                plugin = &*self.name,
                backoff_ms = self.settings.breaker_backoff_ms,
                "circuit breaker opened: {} calls in a row failed; calls fail by the plugin's policy until a probe call succeeds",
                self.settings.breaker_failures
            );
        }
        (result, response)
    }

    fn count(&self, failure: &CallFailure) {
        let counter = match failure {
            CallFailure::Deadline => &self.stats.deadline_hits,
            CallFailure::MemoryCap => &self.stats.memory_cap_hits,
            CallFailure::Trap(_) => &self.stats.traps,
            CallFailure::BadResult(_) => &self.stats.bad_results,
            CallFailure::Overloaded(_) => &self.stats.overloaded,
            CallFailure::CircuitOpen => &self.stats.short_circuited,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Asks the predicate to check a route's args (at load; blocks the calling thread).
    pub fn validate_predicate(&self, args: &[String]) -> Result<(), String> {
        self.validate(false, args)
    }

    /// Asks the filter to check a route's args (at load; blocks the calling thread).
    pub fn validate_filter(&self, args: &[String]) -> Result<(), String> {
        self.validate(true, args)
    }

    fn validate(&self, filter: bool, args: &[String]) -> Result<(), String> {
        let call = Call::Validate { filter, args };
        let (r, _) = self
            .engine
            .block_on(self.call(Phase::Validate, call, None, None));
        match r {
            Ok(Outcome::Valid(v)) => v,
            Ok(_) => Err("validate answered something else".into()),
            Err(f) => Err(format!("validate failed: {f}")),
        }
    }

    /// Runs the predicate.
    pub async fn run_predicate(
        &self,
        request: ExternalRequest,
        args: &[String],
    ) -> Result<bool, CallFailure> {
        match self
            .call(Phase::Predicate, Call::Matches(args), Some(request), None)
            .await
            .0?
        {
            Outcome::Matched(m) => Ok(m),
            _ => Ok(false),
        }
    }

    /// Runs the filter's request phase.
    pub async fn run_request_phase(
        &self,
        request: ExternalRequest,
        args: &[String],
    ) -> Result<RequestAction, CallFailure> {
        match self
            .call(Phase::Request, Call::OnRequest(args), Some(request), None)
            .await
            .0?
        {
            Outcome::Action(a) => Ok(a),
            _ => Ok(RequestAction::Proceed(RequestEdits {
                headers: Vec::new(),
                path: None,
                query: None,
            })),
        }
    }

    /// Runs the filter's response phase on `response` (handed back with the result).
    pub async fn run_response_phase(
        &self,
        request: ExternalRequest,
        response: ResponseHead,
        args: &[String],
    ) -> (Result<ResponseEdits, CallFailure>, ResponseHead) {
        let (r, back) = self
            .call(
                Phase::Response,
                Call::OnResponse(args),
                Some(request),
                Some(response),
            )
            .await;
        let r = r.map(|out| match out {
            Outcome::Edits(e) => e,
            _ => ResponseEdits {
                status: None,
                headers: Vec::new(),
            },
        });
        (r, back.unwrap_or_default())
    }

    /// The failure policy.
    pub fn failure_policy(&self) -> FailurePolicy {
        self.settings.failure
    }
}

/// Runs the guest function `call` names.
async fn invoke(
    store: &mut Store<PluginState>,
    predicate: &Option<PredicateGuest>,
    filter: &Option<FilterGuest>,
    call: &Call<'_>,
) -> wasmtime::Result<Outcome> {
    Ok(match (call, predicate, filter) {
        (
            Call::Validate {
                filter: false,
                args,
            },
            Some(p),
            _,
        ) => Outcome::Valid(p.call_validate(&mut *store, args).await?),
        (Call::Validate { filter: true, args }, _, Some(f)) => {
            Outcome::Valid(f.call_validate(&mut *store, args).await?)
        }
        (Call::Validate { filter, .. }, _, _) => Outcome::Valid(Err(if *filter {
            "this plugin is not a filter".into()
        } else {
            "this plugin is not a predicate".into()
        })),
        (Call::Matches(args), Some(p), _) => {
            Outcome::Matched(p.call_matches(&mut *store, args).await?)
        }
        (Call::Matches(_), None, _) => Outcome::Matched(false),
        (Call::OnRequest(args), _, Some(f)) => {
            Outcome::Action(f.call_on_request(&mut *store, args).await?)
        }
        (Call::OnResponse(args), _, Some(f)) => {
            Outcome::Edits(f.call_on_response(&mut *store, args).await?)
        }
        (Call::OnRequest(_), _, None) => Outcome::Action(RequestAction::Proceed(RequestEdits {
            headers: Vec::new(),
            path: None,
            query: None,
        })),
        (Call::OnResponse(_), _, None) => Outcome::Edits(ResponseEdits {
            status: None,
            headers: Vec::new(),
        }),
    })
}

/// Runs `fut` until `deadline_at`; `None` when the deadline came first (the future is dropped).
/// Most calls finish in their first poll, so only one that suspends (an epoch yield, a wait in
/// WASI) pays for a timer.
async fn within<F: Future>(deadline_at: Instant, wait: &SlotWait, fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    if let Poll::Ready(out) = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await {
        return Some(out);
    }
    let mut until = deadline_at;
    loop {
        match tokio::time::timeout_at(until.into(), fut.as_mut()).await {
            Ok(out) => return Some(out),
            // The guest is waiting for a slot of the cap: that time is not its own.
            Err(_) => match wait.extended_until() {
                Some(later) if later > until => until = later,
                _ => return None,
            },
        }
    }
}

/// Called by wasmtime at every epoch tick while guest code runs: past the deadline the guest is
/// interrupted; before it, the call yields to the executor, so a long call shares its thread.
fn epoch_check(mut store: StoreContextMut<'_, PluginState>) -> wasmtime::Result<UpdateDeadline> {
    let now = Instant::now();
    let state = store.data_mut();
    if let Some(since) = state.slot_wait_since.take() {
        // Back from waiting for a slot: run on with it, the wait added to the deadline.
        match state.slot_wait.take_granted() {
            Some(permit) => {
                state.slot = Some(permit);
                state.deadline_at += now.saturating_duration_since(since);
                // The timer bounding the call moves with the deadline.
                state.slot_wait.extend_until(Some(state.deadline_at));
            }
            None => {
                state.overloaded = true;
                return Ok(UpdateDeadline::Interrupt);
            }
        }
    }
    if now >= state.deadline_at {
        return Ok(UpdateDeadline::Interrupt);
    }
    if now < state.yield_from {
        return Ok(UpdateDeadline::Continue(1));
    }
    // Still running a tick in: from here on the call needs a slot of the cap, and it yields
    // at every tick, so a long call shares its worker with the requests queued behind it.
    if state.slot.is_none()
        && let Some(cap) = &state.cap
    {
        match cap.clone().try_acquire_owned() {
            Ok(permit) => state.slot = Some(permit),
            Err(tokio::sync::TryAcquireError::Closed) => return Ok(UpdateDeadline::Interrupt),
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                if state.queue.is_zero() {
                    state.overloaded = true;
                    return Ok(UpdateDeadline::Interrupt);
                }
                let queue = state.queue;
                let left = state.deadline_at.saturating_duration_since(now);
                state.slot_wait_since = Some(now);
                state.slot_wait.extend_until(Some(now + queue + left));
                let wait = state.slot_wait.clone();
                let cap = cap.clone();
                return Ok(UpdateDeadline::YieldCustom(
                    1,
                    Box::pin(async move {
                        if let Ok(Ok(permit)) =
                            tokio::time::timeout(queue, cap.acquire_owned()).await
                        {
                            wait.grant(permit);
                        }
                    }),
                ));
            }
        }
    }
    // tokio's yield, not wasmtime's plain one: a task that wakes itself goes to the back of
    // a worker's queue, but the worker polls its sockets only every few dozen tasks, so a
    // spinning guest yielding every tick would leave other connections unread for tens of
    // milliseconds; `yield_now` lets the worker poll its I/O first.
    Ok(UpdateDeadline::YieldCustom(
        1,
        Box::pin(tokio::task::yield_now()),
    ))
}

/// Refuses results over the caps.
fn check_result(out: &Outcome) -> Result<(), CallFailure> {
    let (count, bytes, body) = match out {
        Outcome::Action(RequestAction::Proceed(e)) => (
            e.headers.len(),
            e.headers.iter().map(op_len).sum::<usize>(),
            0,
        ),
        Outcome::Action(RequestAction::Respond(r)) => (
            r.headers.len(),
            r.headers.iter().map(|(k, v)| k.len() + v.len()).sum(),
            r.body.len(),
        ),
        Outcome::Edits(e) => (e.headers.len(), e.headers.iter().map(op_len).sum(), 0),
        Outcome::Valid(_) | Outcome::Matched(_) => return Ok(()),
    };
    if count > MAX_RESULT_HEADERS || bytes > MAX_RESULT_HEADER_BYTES {
        return Err(CallFailure::BadResult(format!(
            "{count} headers / {bytes} bytes exceed the limit of {MAX_RESULT_HEADERS} headers / {MAX_RESULT_HEADER_BYTES} bytes"
        )));
    }
    if body > MAX_REPLY_BODY_BYTES {
        return Err(CallFailure::BadResult(format!(
            "a reply body of {body} bytes exceeds the limit of {MAX_REPLY_BODY_BYTES} bytes"
        )));
    }
    Ok(())
}

fn op_len(op: &HeaderOp) -> usize {
    match op {
        HeaderOp::Set((k, v)) | HeaderOp::Append((k, v)) => k.len() + v.len(),
        HeaderOp::Remove(k) => k.len(),
    }
}

fn classify(store: &Store<PluginState>, e: &wasmtime::Error) -> CallFailure {
    let state = store.data();
    if state.memory_cap_hit {
        return CallFailure::MemoryCap;
    }
    if state.overloaded {
        return CallFailure::Overloaded(format!(
            "the call ran past its first tick while max_concurrent calls already did, and none ended within queue_ms ({} ms)",
            state.queue.as_millis()
        ));
    }
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => CallFailure::Deadline,
        // The root cause is the trap itself ("wasm trap: ..."); the wasm backtrace stays out
        // of the one-line log.
        _ => CallFailure::Trap(super::joined_lines(&e.root_cause().to_string())),
    }
}
