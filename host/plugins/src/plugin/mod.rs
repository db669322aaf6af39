//! One loaded plugin: its compiled component linked once (`InstancePre`), its settings,
//! counters, concurrency cap and circuit breaker, and the calls the router makes of it
//! (`validate`, the predicate, a filter's phases). How a call runs is in `call`; the plugin's
//! warm instances in `warm`.

mod bounds;
mod call;
mod warm;

pub use bounds::CallFailure;
pub(crate) use warm::Warm;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use wasmtime::component::InstancePre;

use super::PluginError;
use super::contract::{
    Call, Config, ConfigIds, Indices, Outcome, RequestAction, RequestEdits, ResponseEdits,
};
use super::engine::{Compiled, CompiledBy, EngineKind, IdlePool, PluginEngine, TickerUse};
use super::gate::{Breaker, ConcurrencyCap, Phase, PluginStats};
use super::services::{InstanceServices, Kept, OutboundPolicy, OutboundStats, PluginStore};
use super::settings::{FailurePolicy, PluginSettings};
use super::state::PluginState;
use routerd_routing::{ExternalRequest, Prepared, ResponseHead};

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

/// The time a load-time call (trial instantiation, `validate`) gets: they run once, not per
/// request, and a busy machine or a big guest must not turn a slow start into a rejection.
const LOAD_ALLOWANCE: Duration = Duration::from_secs(5);

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
    /// The name's trial version (shadow or canary), shared the same way.
    trial: Arc<arc_swap::ArcSwapOption<crate::trial::Trial>>,
    /// What its instances are given: its name's store (shared the same way) and where it may
    /// send requests.
    services: InstanceServices,
    engine: Arc<PluginEngine>,
    pre: InstancePre<PluginState>,
    /// Its exports, by the contract version it speaks.
    indices: Indices,
    /// The numbers its routes' args go by.
    configs: ConfigIds,
    idle: Arc<IdlePool<Warm>>,
    deadline: Duration,
    queue: Duration,
    memory_cap: usize,
    cap: ConcurrencyCap,
    breaker: Breaker,
    /// Its calls' deadlines need the epoch ticker.
    ticker: TickerUse,
}

impl Plugin {
    /// Links a compiled component, checks that it exports a predicate or a filter, and
    /// instantiates it once (under the load-time allowance, not the call deadline) so a
    /// component that cannot start is rejected here. `kept` is what the name keeps (a new
    /// name's are fresh), `outbound` where it may send requests.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        engine: Arc<PluginEngine>,
        name: &str,
        sha256: String,
        size: usize,
        compiled: Compiled,
        settings: PluginSettings,
        kept: Kept,
        outbound: Arc<OutboundPolicy>,
    ) -> Result<Plugin, PluginError> {
        let pre = engine
            .runtime(compiled.kind)
            .linker
            .instantiate_pre(&compiled.component)
            .map_err(|e| PluginError::Link(crate::one_line(&e)))?;
        let indices = Indices::new(&pre).ok_or(PluginError::NoExports)?;
        let (predicate, filter) = indices.exports();
        let kind = PluginKind { predicate, filter };
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
            services: InstanceServices {
                store: kept.store,
                outbound,
            },
            stats: kept.stats,
            trial: kept.trial,
            engine: engine.clone(),
            pre,
            indices,
            configs: ConfigIds::default(),
            idle,
            ticker: engine.ticker_use(),
        };
        let started = Instant::now();
        let warm = engine
            .block_on(plugin.instantiate(LOAD_ALLOWANCE, LOAD_ALLOWANCE))
            .map_err(|f| PluginError::Instantiate(f.to_string()))?;
        plugin.instantiate_time = started.elapsed();
        plugin.put_back(warm);
        Ok(plugin)
    }

    /// What its name keeps for the version that replaces it.
    pub fn kept(&self) -> Kept {
        Kept {
            stats: self.stats.clone(),
            store: self.services.store.clone(),
            outbound: self.services.outbound.stats.clone(),
            trial: self.trial.clone(),
        }
    }

    /// The name's trial version, if one is loaded.
    pub fn trial(&self) -> Option<Arc<crate::trial::Trial>> {
        self.trial.load_full()
    }

    /// Puts `trial` beside this name's live version (replacing any), or takes it away; the
    /// one it replaced.
    pub fn set_trial(
        &self,
        trial: Option<Arc<crate::trial::Trial>>,
    ) -> Option<Arc<crate::trial::Trial>> {
        self.trial.swap(trial)
    }

    /// Its key-value store.
    pub fn store(&self) -> &PluginStore {
        &self.services.store
    }

    /// Its outbound request counters.
    pub fn outbound(&self) -> &OutboundStats {
        &self.services.outbound.stats
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

    /// The `router:plugin` contract version it speaks (`0.2`, `0.3`).
    pub fn contract(&self) -> &'static str {
        self.indices.version()
    }

    /// Asks the predicate to check a route's args and prepares them for its calls (at load;
    /// blocks the calling thread).
    pub fn prepare_predicate(&self, args: &[String]) -> Result<Prepared, String> {
        self.prepare(false, args)
    }

    /// Asks the filter to check a route's args and prepares them for its calls, with the
    /// phases it runs for them (at load; blocks the calling thread).
    pub fn prepare_filter(&self, args: &[String]) -> Result<Prepared, String> {
        self.prepare(true, args)
    }

    fn prepare(&self, filter: bool, args: &[String]) -> Result<Prepared, String> {
        let id = self.configs.id(args);
        let call = Call::Configure {
            filter,
            config: Config { id, args },
        };
        let (r, _) = self
            .engine
            .block_on(self.call(Phase::Validate, call, None, None));
        let phases = match r {
            Ok(Outcome::Configured(v)) => v?,
            Ok(_) => return Err("configure answered something else".into()),
            Err(f) => return Err(format!("validate failed: {f}")),
        };
        Ok(Prepared {
            args: args.to_vec(),
            config: id,
            phases,
            route: Arc::from(""),
        })
    }

    /// Runs the predicate (through the name's trial version, when one is loaded).
    pub async fn run_predicate(
        &self,
        request: ExternalRequest,
        args: &Prepared,
    ) -> Result<bool, CallFailure> {
        match self.trial.load().as_deref() {
            None => self.live_predicate(request, args).await,
            // Boxed: a trial's path stays out of every call's future.
            Some(trial) => Box::pin(self.predicate_on_trial(trial, request, args)).await,
        }
    }

    /// Runs this version's predicate.
    pub(crate) async fn live_predicate(
        &self,
        request: ExternalRequest,
        args: &Prepared,
    ) -> Result<bool, CallFailure> {
        match self
            .call(
                Phase::Predicate,
                Call::Matches(config(args)),
                Some(request),
                None,
            )
            .await
            .0?
        {
            Outcome::Matched(m) => Ok(m),
            _ => Ok(false),
        }
    }

    /// Runs the filter's request phase (through the name's trial version, when one is
    /// loaded).
    pub async fn run_request_phase(
        &self,
        request: ExternalRequest,
        args: &Prepared,
    ) -> Result<RequestAction, CallFailure> {
        match self.trial.load().as_deref() {
            None => self.live_request_phase(request, args).await,
            Some(trial) => Box::pin(self.request_phase_on_trial(trial, request, args)).await,
        }
    }

    /// Runs this version's request phase.
    pub(crate) async fn live_request_phase(
        &self,
        request: ExternalRequest,
        args: &Prepared,
    ) -> Result<RequestAction, CallFailure> {
        match self
            .call(
                Phase::Request,
                Call::OnRequest(config(args)),
                Some(request),
                None,
            )
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

    /// Runs the filter's response phase on `response` (handed back with the result), through
    /// the name's trial version when one is loaded.
    pub async fn run_response_phase(
        &self,
        request: ExternalRequest,
        response: ResponseHead,
        args: &Prepared,
    ) -> (Result<ResponseEdits, CallFailure>, ResponseHead) {
        match self.trial.load().as_deref() {
            None => self.live_response_phase(request, response, args).await,
            Some(trial) => {
                Box::pin(self.response_phase_on_trial(trial, request, response, args)).await
            }
        }
    }

    /// Runs this version's response phase.
    pub(crate) async fn live_response_phase(
        &self,
        request: ExternalRequest,
        response: ResponseHead,
        args: &Prepared,
    ) -> (Result<ResponseEdits, CallFailure>, ResponseHead) {
        let (r, back) = self
            .call(
                Phase::Response,
                Call::OnResponse(config(args)),
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

/// A call's view of a route's prepared args.
fn config(prepared: &Prepared) -> Config<'_> {
    Config {
        id: prepared.config,
        args: &prepared.args,
    }
}
