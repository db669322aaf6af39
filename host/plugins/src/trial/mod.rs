//! A new version of a plugin tried beside the live one, before it replaces it.
//!
//! - A **shadow** never decides: the live version answers every call, and a copy of the call
//!   (the same request and args) is queued for the shadow, which runs it later on the control
//!   runtime and compares: a predicate's boolean, a filter's request-phase action. The queue is
//!   bounded; a call that finds it full is dropped and counted, so a slow or broken shadow never
//!   delays a request.
//! - A **canary** decides for a share of calls (per call at random, or sticky by the client's
//!   address or a header's value). When its failure rate (traps, deadlines, memory, refused
//!   results, and calls its open breaker refused) exceeds the
//!   live version's by more than a margin, it is rolled back by itself: every call goes to the
//!   live version again, and the reason is logged and kept.
//!
//! The trial version is loaded with counters and a key-value store of its own: it never writes
//! into what the live version reads. Its route args are prepared when it is loaded (a canary
//! only decides for args it has prepared; new ones are prepared in the background).
//! Comparisons are counted per route, with a few examples of each divergence.

mod compare;

pub use compare::{Divergence, RouteComparison, TrialReport};

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::{Instant, SystemTime};

use http::HeaderName;
use tokio::sync::mpsc;

use crate::plugin::{CallFailure, Plugin};
use compare::{Answer, Comparisons, Verdict};
use routerd_routing::{ExternalRequest, Prepared, ResponseHead};

/// Calls waiting for the shadow; more are dropped.
const SHADOW_QUEUE: usize = 1024;
/// How often the shadow's runner takes the calls queued meanwhile.
const DRAIN_EVERY: std::time::Duration = std::time::Duration::from_millis(5);
/// The window a shadow's CPU budget is counted over.
const BUDGET_WINDOW: std::time::Duration = std::time::Duration::from_secs(1);
/// A shadow's default budget: 5% of one core.
pub const DEFAULT_SHADOW_BUDGET: f64 = 0.05;
/// Trial calls a canary makes before its failure rate is judged.
pub const CANARY_MIN_CALLS: u64 = 20;

/// How a trial version takes part.
#[derive(Debug, Clone, PartialEq)]
pub enum TrialMode {
    /// Runs on copies of calls, after them, and decides nothing.
    Shadow {
        /// The most of one core its calls may take (0.05: 5%); past it, queued calls are
        /// skipped (and counted) until the next second.
        budget: f64,
    },
    /// Decides for this share of calls.
    Canary {
        /// Calls per thousand.
        per_mille: u32,
        /// What keeps a client on one version.
        sticky: Sticky,
        /// How far its failure rate may exceed the live version's (0.05: five points).
        margin: f64,
    },
}

/// What keeps a client on the same version in a canary.
#[derive(Debug, Clone, PartialEq)]
pub enum Sticky {
    /// Each call picks anew.
    No,
    /// The client's address.
    ClientAddr,
    /// This header's value (a call without it picks anew).
    Header(HeaderName),
}

/// Which phase a queued call compares (a response phase with the response head it saw).
enum Shadowed {
    Predicate,
    Request,
    Response(Box<ResponseHead>),
}

/// One call queued for the shadow, or args to prepare.
enum Job {
    Compare {
        route: Arc<str>,
        args: Vec<String>,
        phase: Shadowed,
        request: ExternalRequest,
        live: Verdict,
    },
    Prepare(Vec<String>),
}

impl std::fmt::Debug for Trial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trial")
            .field("plugin", &self.plugin.name)
            .field("sha256", &self.plugin.sha256)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// A trial version of a plugin and what it has seen.
pub struct Trial {
    /// The version on trial (its own counters and store).
    pub plugin: Arc<Plugin>,
    /// Its bytes, installed as they are on promotion.
    pub bytes: Arc<[u8]>,
    /// Shadow or canary.
    pub mode: TrialMode,
    /// When it was loaded.
    pub started: SystemTime,
    /// Its route args, prepared (`None`: it refuses these args).
    prepared: RwLock<HashMap<Vec<String>, Option<Prepared>>>,
    jobs: Option<mpsc::Sender<Job>>,
    comparisons: Comparisons,
    seed: std::hash::RandomState,
    /// Calls the live version answered while the canary ran, and how many failed.
    live_calls: AtomicU64,
    live_failures: AtomicU64,
    /// Calls the canary answered, and how many failed.
    trial_calls: AtomicU64,
    trial_failures: AtomicU64,
    /// Shadow calls dropped because the queue was full, or skipped over the budget; the
    /// time of those run, in nanoseconds.
    dropped: AtomicU64,
    over_budget: AtomicU64,
    /// Set while the shadow has spent its budget for the current second: calls are then
    /// not even copied.
    paused: AtomicBool,
    shadow_nanos: AtomicU64,
    rolled_back: AtomicBool,
    rollback_reason: Mutex<Option<String>>,
}

impl Trial {
    /// A trial of `plugin` (loaded with its own counters and store), its route args prepared
    /// now (this blocks: call it off the proxy's workers). The shadow's runner, and the
    /// background preparation of new args, run on the current tokio runtime when there is one.
    pub fn start(
        plugin: Arc<Plugin>,
        bytes: Arc<[u8]>,
        mode: TrialMode,
        args_in_use: &[Vec<String>],
    ) -> Arc<Trial> {
        let mut prepared = HashMap::new();
        for args in args_in_use {
            prepared
                .entry(args.clone())
                .or_insert_with(|| prepare(&plugin, args));
        }
        let runtime = tokio::runtime::Handle::try_current().ok();
        let (jobs, queue) = match &runtime {
            Some(_) => {
                let (tx, rx) = mpsc::channel(SHADOW_QUEUE);
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let trial = Arc::new(Trial {
            plugin,
            bytes,
            mode,
            started: SystemTime::now(),
            prepared: RwLock::new(prepared),
            jobs,
            comparisons: Comparisons::default(),
            seed: std::hash::RandomState::new(),
            live_calls: AtomicU64::new(0),
            live_failures: AtomicU64::new(0),
            trial_calls: AtomicU64::new(0),
            trial_failures: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            over_budget: AtomicU64::new(0),
            paused: AtomicBool::new(false),
            shadow_nanos: AtomicU64::new(0),
            rolled_back: AtomicBool::new(false),
            rollback_reason: Mutex::new(None),
        });
        if let (Some(rt), Some(queue)) = (runtime, queue) {
            rt.spawn(run(Arc::downgrade(&trial), queue));
        }
        trial
    }

    /// Whether this call goes to the canary: its prepared args, when so.
    fn canary_pick(&self, request: &ExternalRequest, args: &Prepared) -> Option<Prepared> {
        let TrialMode::Canary {
            per_mille, sticky, ..
        } = &self.mode
        else {
            return None;
        };
        if self.rolled_back.load(Ordering::Relaxed) {
            return None;
        }
        let key = match sticky {
            Sticky::No => None,
            Sticky::ClientAddr => Some(self.seed.hash_one(request.remote.ip())),
            Sticky::Header(name) => request
                .parts
                .headers
                .get(name)
                .map(|v| self.seed.hash_one(v.as_bytes())),
        };
        let slot = key.map_or_else(|| fastrand::u32(0..1000), |k| (k % 1000) as u32);
        if slot >= *per_mille {
            return None;
        }
        let prepared = self
            .prepared
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&args.args)
            .cloned();
        match prepared {
            Some(p) => p,
            None => {
                self.queue(Job::Prepare(args.args.clone()));
                None
            }
        }
    }

    /// Counts a call answered by the live version (canary) or the canary.
    fn count(&self, canary: bool, answer: &impl Answer) {
        let (calls, failures) = match canary {
            true => (&self.trial_calls, &self.trial_failures),
            false => (&self.live_calls, &self.live_failures),
        };
        calls.fetch_add(1, Ordering::Relaxed);
        if answer.failure().is_some_and(counts_against) {
            failures.fetch_add(1, Ordering::Relaxed);
        }
        if canary {
            self.judge();
        }
    }

    /// Rolls the canary back when its failure rate exceeds the live version's by the margin.
    fn judge(&self) {
        let TrialMode::Canary { margin, .. } = &self.mode else {
            return;
        };
        let calls = self.trial_calls.load(Ordering::Relaxed);
        if calls < CANARY_MIN_CALLS || self.rolled_back.load(Ordering::Relaxed) {
            return;
        }
        let rate = |f: &AtomicU64, c: &AtomicU64| {
            let c = c.load(Ordering::Relaxed);
            if c == 0 {
                0.0
            } else {
                f.load(Ordering::Relaxed) as f64 / c as f64
            }
        };
        let canary = rate(&self.trial_failures, &self.trial_calls);
        let live = rate(&self.live_failures, &self.live_calls);
        if canary > live + margin && !self.rolled_back.swap(true, Ordering::Relaxed) {
            let why = format!(
                "its failure rate {:.1}% over {calls} calls exceeds the live version's {:.1}% by more than {:.1} points",
                canary * 100.0,
                live * 100.0,
                margin * 100.0
            );
            tracing::warn!(plugin = %self.plugin.name, sha256 = %self.plugin.sha256, "canary rolled back: {why}");
            *self
                .rollback_reason
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(why);
        }
    }

    /// Queues a copy of a call for the shadow (dropped, and counted, when the queue is full).
    fn shadow(
        &self,
        route: &Arc<str>,
        args: &Prepared,
        phase: impl FnOnce() -> Shadowed,
    ) -> Option<ShadowTicket> {
        if !matches!(self.mode, TrialMode::Shadow { .. }) || self.jobs.is_none() {
            return None;
        }
        if self.paused.load(Ordering::Relaxed) {
            self.over_budget.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(ShadowTicket {
            route: route.clone(),
            args: args.args.clone(),
            phase: phase(),
        })
    }

    fn queue(&self, job: Job) {
        let sent = match &self.jobs {
            Some(tx) => tx.try_send(job).is_ok(),
            None => false,
        };
        if !sent {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// What the trial has seen.
    pub fn report(&self) -> TrialReport {
        TrialReport {
            mode: match &self.mode {
                TrialMode::Shadow { .. } => "shadow".to_owned(),
                TrialMode::Canary { per_mille, .. } => {
                    format!("canary {}%", *per_mille as f64 / 10.0)
                }
            },
            sha256: self.plugin.sha256.clone(),
            started_unix: self
                .started
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            routes: self.comparisons.snapshot(),
            dropped: self.dropped.load(Ordering::Relaxed),
            over_budget: self.over_budget.load(Ordering::Relaxed),
            shadow_calls_ms: self.shadow_nanos.load(Ordering::Relaxed) as f64 / 1e6,
            live_calls: self.live_calls.load(Ordering::Relaxed),
            live_failures: self.live_failures.load(Ordering::Relaxed),
            trial_calls: self.trial_calls.load(Ordering::Relaxed),
            trial_failures: self.trial_failures.load(Ordering::Relaxed),
            rolled_back: self
                .rollback_reason
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }
}

/// The failures that count against a version: its own faults, and its breaker's refusals
/// (it opened because the version kept failing), not the host's shortage.
fn counts_against(f: &CallFailure) -> bool {
    matches!(
        f,
        CallFailure::Deadline
            | CallFailure::MemoryCap
            | CallFailure::Trap(_)
            | CallFailure::BadResult(_)
            | CallFailure::CircuitOpen
    )
}

fn prepare(plugin: &Plugin, args: &[String]) -> Option<Prepared> {
    let prepared = match plugin.kind.predicate {
        true => plugin.prepare_predicate(args),
        false => plugin.prepare_filter(args),
    };
    prepared.ok()
}

/// A call to copy to the shadow once the live version has answered.
struct ShadowTicket {
    route: Arc<str>,
    args: Vec<String>,
    phase: Shadowed,
}

impl ShadowTicket {
    fn send(self, trial: &Trial, request: ExternalRequest, live: Verdict) {
        trial.queue(Job::Compare {
            route: self.route,
            args: self.args,
            phase: self.phase,
            request,
            live,
        });
    }
}

/// The shadow's runner: runs queued calls on the trial version, one at a time, and compares.
/// It takes what was queued every few milliseconds instead of waiting on the queue, so a call
/// queued on the request path never wakes this runtime (a wake-up per call cost the worker
/// more than the copy itself).
///
/// A shadow runs on its own budget: at most its share of one core over each second. Calls past
/// it are skipped and counted, so on a saturated core the shadow takes its share and no more,
/// and the live traffic keeps the rest.
async fn run(trial: Weak<Trial>, mut queue: mpsc::Receiver<Job>) {
    let budget = match trial.upgrade().map(|t| t.mode.clone()) {
        Some(TrialMode::Shadow { budget }) => budget,
        _ => 1.0,
    };
    let (mut window, mut spent) = (Instant::now(), std::time::Duration::ZERO);
    loop {
        tokio::time::sleep(DRAIN_EVERY).await;
        if window.elapsed() >= BUDGET_WINDOW {
            (window, spent) = (Instant::now(), std::time::Duration::ZERO);
            if let Some(t) = trial.upgrade() {
                t.paused.store(false, Ordering::Relaxed);
            }
        }
        loop {
            let job = match queue.try_recv() {
                Ok(job) => job,
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => return,
            };
            let Some(trial) = trial.upgrade() else { return };
            let allowed = BUDGET_WINDOW.mul_f64(budget);
            if spent >= allowed && matches!(job, Job::Compare { .. }) {
                trial.over_budget.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let started = Instant::now();
            work(&trial, job).await;
            spent += started.elapsed();
            if spent >= allowed {
                // Until the next window, the request path stops copying calls for it.
                trial.paused.store(true, Ordering::Relaxed);
            }
        }
    }
}

/// One queued job: prepare args, or run a call on the trial version and compare.
async fn work(trial: &Arc<Trial>, job: Job) {
    match job {
        Job::Prepare(args) => {
            ready(trial, &args).await;
        }
        Job::Compare {
            route,
            args,
            phase,
            request,
            live,
        } => {
            let Some(prepared) = ready(trial, &args).await else {
                trial.comparisons.refused(&route);
                return;
            };
            let example = compare::Example::of(&request);
            let started = Instant::now();
            let shadow = match phase {
                Shadowed::Predicate => trial
                    .plugin
                    .live_predicate(request, &prepared)
                    .await
                    .verdict(),
                Shadowed::Request => trial
                    .plugin
                    .live_request_phase(request, &prepared)
                    .await
                    .verdict(),
                Shadowed::Response(head) => trial
                    .plugin
                    .live_response_phase(request, *head, &prepared)
                    .await
                    .verdict(),
            };
            trial
                .shadow_nanos
                .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
            trial.comparisons.record(&route, &live, &shadow, example);
        }
    }
}

/// The trial's prepared `args`, preparing them (off the runtime's threads) the first time.
async fn ready(trial: &Arc<Trial>, args: &[String]) -> Option<Prepared> {
    if let Some(p) = trial
        .prepared
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(args)
    {
        return p.clone();
    }
    let (plugin, owned) = (trial.plugin.clone(), args.to_vec());
    let p = tokio::task::spawn_blocking(move || prepare(&plugin, &owned))
        .await
        .ok()
        .flatten();
    trial
        .prepared
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(args.to_vec(), p.clone());
    p
}

impl Plugin {
    /// Runs one call through the name's trial: the canary may answer it; otherwise this
    /// version answers, and a copy (made by `shadowed` from the call's `input`) goes to the
    /// shadow with that answer. `call` runs a version's phase itself.
    async fn on_trial<I, R: Answer>(
        &self,
        trial: &Trial,
        request: ExternalRequest,
        input: I,
        args: &Prepared,
        shadowed: impl FnOnce(&I) -> Shadowed,
        call: impl AsyncFnOnce(&Plugin, ExternalRequest, I, &Prepared) -> R,
    ) -> R {
        if let Some(prepared) = trial.canary_pick(&request, args) {
            let answer = call(&trial.plugin, request, input, &prepared).await;
            trial.count(true, &answer);
            return answer;
        }
        let copy = trial
            .shadow(&args.route, args, || shadowed(&input))
            .map(|ticket| (ticket, request.clone()));
        let answer = call(self, request, input, args).await;
        trial.count(false, &answer);
        if let Some((ticket, request)) = copy {
            ticket.send(trial, request, answer.verdict());
        }
        answer
    }

    /// Runs the predicate through the name's trial ([`on_trial`](Self::on_trial)).
    pub(crate) async fn predicate_on_trial(
        &self,
        trial: &Trial,
        request: ExternalRequest,
        args: &Prepared,
    ) -> Result<bool, CallFailure> {
        let shadowed = |_: &()| Shadowed::Predicate;
        let call = async |p: &Plugin, r, (), a: &Prepared| p.live_predicate(r, a).await;
        self.on_trial(trial, request, (), args, shadowed, call)
            .await
    }

    /// Runs the filter's request phase through the name's trial.
    pub(crate) async fn request_phase_on_trial(
        &self,
        trial: &Trial,
        request: ExternalRequest,
        args: &Prepared,
    ) -> Result<crate::contract::RequestAction, CallFailure> {
        let shadowed = |_: &()| Shadowed::Request;
        let call = async |p: &Plugin, r, (), a: &Prepared| p.live_request_phase(r, a).await;
        self.on_trial(trial, request, (), args, shadowed, call)
            .await
    }

    /// Runs the filter's response phase through the name's trial (the shadow gets a copy of
    /// the response head this version saw).
    pub(crate) async fn response_phase_on_trial(
        &self,
        trial: &Trial,
        request: ExternalRequest,
        response: ResponseHead,
        args: &Prepared,
    ) -> (
        Result<crate::contract::ResponseEdits, CallFailure>,
        ResponseHead,
    ) {
        let shadowed = |head: &ResponseHead| Shadowed::Response(Box::new(head.clone()));
        let call =
            async |p: &Plugin, r, head, a: &Prepared| p.live_response_phase(r, head, a).await;
        self.on_trial(trial, request, response, args, shadowed, call)
            .await
    }
}
