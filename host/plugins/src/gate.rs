//! What stands between a request and a plugin call: a concurrency cap and a circuit breaker, so
//! one plugin that burns its deadline on every call can neither hold every core nor keep
//! costing each request its full deadline. Also the per-plugin call counters.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::clock::now_ms;

/// The longest the breaker stays open between probes.
const MAX_BACKOFF_MS: u64 = 30_000;

/// What a call is for; calls are counted per phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Load-time `validate` of a route's args (and the trial instantiation).
    Validate,
    /// A route predicate.
    Predicate,
    /// A filter's request phase.
    Request,
    /// A filter's response phase.
    Response,
}

impl Phase {
    /// Every phase, in counter order.
    pub const ALL: [Phase; 4] = [
        Phase::Validate,
        Phase::Predicate,
        Phase::Request,
        Phase::Response,
    ];

    /// The label used in metrics and the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Validate => "validate",
            Phase::Predicate => "predicate",
            Phase::Request => "request",
            Phase::Response => "response",
        }
    }
}

/// Call counters, shown by the admin API and metrics.
#[derive(Debug, Default)]
pub struct PluginStats {
    /// Calls made (run or refused), by [`Phase`] in [`Phase::ALL`] order.
    pub calls: [AtomicU64; 4],
    /// Calls that trapped (panic, stack overflow, ...), deadline and memory hits excluded.
    pub traps: AtomicU64,
    /// Calls stopped at the deadline.
    pub deadline_hits: AtomicU64,
    /// Calls that hit the memory cap.
    pub memory_cap_hits: AtomicU64,
    /// Calls whose result was refused (too many headers, too large a body, ...).
    pub bad_results: AtomicU64,
    /// Calls refused because the plugin's concurrency cap stayed full for `queue_ms`.
    pub overloaded: AtomicU64,
    /// Calls refused at once because the circuit breaker was open.
    pub short_circuited: AtomicU64,
    /// Times the circuit breaker opened.
    pub breaker_opened: AtomicU64,
}

impl PluginStats {
    /// Calls in `phase`.
    pub fn calls_in(&self, phase: Phase) -> u64 {
        self.calls[phase as usize].load(Ordering::Relaxed)
    }

    /// Calls in every phase.
    pub fn total_calls(&self) -> u64 {
        self.calls.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// Whether a call may run.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// The breaker is closed.
    Run,
    /// The breaker was open and its back-off is over: this call is the one probe.
    Probe,
    /// The breaker is open.
    Refuse,
}

/// The circuit breaker: consecutive failures open it; after the back-off one probe call runs,
/// and its outcome closes it or reopens it for twice as long.
#[derive(Debug)]
pub(crate) struct Breaker {
    threshold: u32,
    base_backoff_ms: u64,
    consecutive: AtomicU32,
    /// 0 when closed; otherwise when the next probe may run, in [`now_ms`] (+1, so 0 is free).
    open_until: AtomicU64,
    backoff_ms: AtomicU64,
    probing: AtomicBool,
}

impl Breaker {
    pub(crate) fn new(threshold: u32, backoff_ms: u64) -> Self {
        Breaker {
            threshold,
            base_backoff_ms: backoff_ms.max(1),
            consecutive: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
            backoff_ms: AtomicU64::new(backoff_ms.max(1)),
            probing: AtomicBool::new(false),
        }
    }

    /// Whether the breaker is open now.
    pub(crate) fn is_open(&self) -> bool {
        self.open_until.load(Ordering::Relaxed) != 0
    }

    pub(crate) fn admit(&self) -> Admission {
        let until = self.open_until.load(Ordering::Acquire);
        if until == 0 {
            return Admission::Run;
        }
        if now_ms() + 1 < until {
            return Admission::Refuse;
        }
        if self
            .probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            Admission::Probe
        } else {
            Admission::Refuse
        }
    }

    /// Ends a probe that could not run (routerd had no capacity for it): it says nothing
    /// about the plugin, so the breaker stays as it was and the next call probes instead.
    pub(crate) fn abandon_probe(&self) {
        self.probing.store(false, Ordering::Release);
    }

    /// Records a call's outcome; true when this opened the breaker.
    pub(crate) fn record(&self, ok: bool, probe: bool) -> bool {
        if self.threshold == 0 {
            return false;
        }
        if ok {
            self.consecutive.store(0, Ordering::Relaxed);
            if probe {
                self.backoff_ms
                    .store(self.base_backoff_ms, Ordering::Relaxed);
                self.open_until.store(0, Ordering::Release);
                self.probing.store(false, Ordering::Release);
            }
            return false;
        }
        if probe {
            let backoff = (self.backoff_ms.load(Ordering::Relaxed) * 2).min(MAX_BACKOFF_MS);
            self.backoff_ms.store(backoff, Ordering::Relaxed);
            self.open_until
                .store(now_ms() + 1 + backoff, Ordering::Release);
            self.probing.store(false, Ordering::Release);
            return false;
        }
        let failures = self.consecutive.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= self.threshold && self.open_until.load(Ordering::Acquire) == 0 {
            let backoff = self.backoff_ms.load(Ordering::Relaxed);
            self.open_until
                .store(now_ms() + 1 + backoff, Ordering::Release);
            self.consecutive.store(0, Ordering::Relaxed);
            return true;
        }
        false
    }
}

/// The concurrency cap: how many calls of one plugin may run past their first epoch tick at
/// once. A call takes a slot only when it reaches a tick still running (the epoch callback asks
/// for one), so the short calls that make up nearly all traffic never touch it, and calls from
/// different workers never queue behind each other; a guest that spins holds a slot while it
/// runs, and no more than `limit` of them share the cores.
#[derive(Debug)]
pub(crate) struct ConcurrencyCap {
    slots: Arc<Semaphore>,
    limit: usize,
}

impl ConcurrencyCap {
    pub(crate) fn new(limit: usize) -> Self {
        ConcurrencyCap {
            slots: Arc::new(Semaphore::new(limit.max(1))),
            limit: limit.max(1),
        }
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// The semaphore, for the epoch callback of each instance.
    pub(crate) fn slots(&self) -> Arc<Semaphore> {
        self.slots.clone()
    }
}

/// One instance's wait for a slot of the cap, shared between the epoch callback (which starts
/// it and takes the slot once it resumes), the future the guest yields to while it waits, and
/// the timer that bounds the call.
#[derive(Debug, Default)]
pub(crate) struct SlotWait(Mutex<WaitState>);

#[derive(Debug, Default)]
struct WaitState {
    /// Set by the waiting future when a slot freed in time.
    granted: Option<OwnedSemaphorePermit>,
    /// For the timer that bounds calls waiting in WASI: while a wait is on, the latest moment
    /// the call may end (its deadline pushed back by the whole queue time); once it has the
    /// slot, its deadline pushed back by the time it waited.
    extended_until: Option<Instant>,
}

impl SlotWait {
    fn state(&self) -> std::sync::MutexGuard<'_, WaitState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn grant(&self, permit: OwnedSemaphorePermit) {
        self.state().granted = Some(permit);
    }

    pub(crate) fn take_granted(&self) -> Option<OwnedSemaphorePermit> {
        self.state().granted.take()
    }

    pub(crate) fn extend_until(&self, until: Option<Instant>) {
        self.state().extended_until = until;
    }

    pub(crate) fn extended_until(&self) -> Option<Instant> {
        self.state().extended_until
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_opens_after_consecutive_failures_and_probes_after_backoff() {
        let b = Breaker::new(3, 20);
        assert_eq!(b.admit(), Admission::Run);
        assert!(!b.record(false, false));
        assert!(!b.record(false, false));
        // A success in between resets the count.
        assert!(!b.record(true, false));
        assert!(!b.record(false, false));
        assert!(!b.record(false, false));
        assert!(
            b.record(false, false),
            "the third failure in a row opens it"
        );
        assert!(b.is_open());
        assert_eq!(b.admit(), Admission::Refuse);
        std::thread::sleep(std::time::Duration::from_millis(30));
        assert_eq!(b.admit(), Admission::Probe);
        assert_eq!(b.admit(), Admission::Refuse, "only one probe at a time");
        // A failed probe reopens it for twice as long.
        b.record(false, true);
        assert!(b.is_open());
        std::thread::sleep(std::time::Duration::from_millis(25));
        assert_eq!(b.admit(), Admission::Refuse, "back-off doubled to 40 ms");
        std::thread::sleep(std::time::Duration::from_millis(25));
        assert_eq!(b.admit(), Admission::Probe);
        b.record(true, true);
        assert!(!b.is_open());
        assert_eq!(b.admit(), Admission::Run);
    }

    #[test]
    fn a_probe_that_could_not_run_leaves_the_breaker_as_it_was() {
        let b = Breaker::new(1, 10);
        assert!(b.record(false, false));
        std::thread::sleep(std::time::Duration::from_millis(15));
        assert_eq!(b.admit(), Admission::Probe);
        b.abandon_probe();
        assert!(b.is_open(), "still open: the probe said nothing");
        assert_eq!(b.admit(), Admission::Probe, "the next call probes at once");
    }

    #[test]
    fn zero_threshold_never_opens() {
        let b = Breaker::new(0, 10);
        for _ in 0..100 {
            assert!(!b.record(false, false));
        }
        assert_eq!(b.admit(), Admission::Run);
    }
}
