//! What routerd knows about one endpoint while it serves: requests in flight, failures in a
//! row, whether it is ejected (and until when), whether the active health check finds it down.
//! Shared by every route and every table that names the same endpoint ([`EndpointStates`]), so
//! a route change never forgets that an endpoint is failing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

/// Milliseconds since the first call in this process: a clock that fits an atomic.
pub fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// Bits of [`EndpointState`]'s traffic word that count requests in flight (16 million).
const IN_FLIGHT_BITS: u32 = 24;
const IN_FLIGHT_MASK: u64 = (1 << IN_FLIGHT_BITS) - 1;

/// The active health check's view of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Not checked yet (counts as up).
    Unknown,
    /// The last check connected.
    Up,
    /// The last check failed: requests skip it.
    Down,
}

/// One endpoint's live state.
#[derive(Debug)]
pub struct EndpointState {
    /// `scheme://host:port`: what the endpoint is, for metrics, health and the API.
    pub key: Box<str>,
    /// Requests sent (the high 40 bits) and requests in flight (the low 24): one atomic add
    /// counts both as a request starts.
    traffic: AtomicU64,
    consecutive_failures: AtomicU32,
    ejected_until_ms: AtomicU64,
    /// Ejections in a row: the next one lasts `base << ejections`.
    ejections: AtomicU32,
    health: AtomicU8,
    /// Requests that failed (connect error, reset, timeout; 5xx when the route counts them).
    pub failures: AtomicU64,
    /// Times it was ejected.
    pub ejected_total: AtomicU64,
}

impl EndpointState {
    fn new(key: &str) -> EndpointState {
        EndpointState {
            key: key.into(),
            traffic: AtomicU64::new(0),
            consecutive_failures: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
            ejections: AtomicU32::new(0),
            health: AtomicU8::new(0),
            failures: AtomicU64::new(0),
            ejected_total: AtomicU64::new(0),
        }
    }

    /// Requests in flight to it.
    pub fn outstanding(&self) -> u32 {
        (self.traffic.load(Ordering::Relaxed) & IN_FLIGHT_MASK) as u32
    }

    /// Requests sent to it.
    pub fn requests(&self) -> u64 {
        self.traffic.load(Ordering::Relaxed) >> IN_FLIGHT_BITS
    }

    /// Counts a request sent and in flight until the guard is dropped.
    pub fn begin(&self) -> InFlight<'_> {
        self.traffic
            .fetch_add((1 << IN_FLIGHT_BITS) | 1, Ordering::Relaxed);
        InFlight(self)
    }

    /// The health check's finding.
    pub fn health(&self) -> Health {
        match self.health.load(Ordering::Relaxed) {
            1 => Health::Up,
            2 => Health::Down,
            _ => Health::Unknown,
        }
    }

    /// Records the health check's finding.
    pub fn set_health(&self, up: bool) {
        self.health.store(if up { 1 } else { 2 }, Ordering::Relaxed);
    }

    /// Whether it is ejected at `now` (ms), and for how much longer.
    pub fn ejected_for(&self, now: u64) -> Option<Duration> {
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        (until > now).then(|| Duration::from_millis(until - now))
    }

    /// Records a success: the failures in a row start over, and an endpoint back from an
    /// ejection works its way down to the base ejection length again.
    pub fn succeeded(&self) {
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
        let ejections = self.ejections.load(Ordering::Relaxed);
        if ejections > 0 && self.ejected_until_ms.load(Ordering::Relaxed) <= now_ms() {
            let _ = self.ejections.compare_exchange(
                ejections,
                ejections - 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    /// Records a failure; `true` when it is the one that reaches `threshold` failures in a
    /// row (the caller decides whether to eject).
    pub fn failed(&self, threshold: u32) -> bool {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let n = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        threshold > 0 && n >= threshold
    }

    /// Ejects it from `now` for `base` doubled per ejection in a row, at most `max`. `false`
    /// when another request ejected it first.
    pub fn eject(&self, now: u64, base: Duration, max: Duration) -> bool {
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        if until > now {
            return false;
        }
        let ejections = self.ejections.load(Ordering::Relaxed).min(16);
        let length = base.saturating_mul(1 << ejections).min(max);
        let next = now + length.as_millis() as u64;
        if self
            .ejected_until_ms
            .compare_exchange(until, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        self.ejections.fetch_add(1, Ordering::Relaxed);
        self.ejected_total.fetch_add(1, Ordering::Relaxed);
        self.consecutive_failures.store(0, Ordering::Relaxed);
        true
    }
}

/// A request in flight to an endpoint.
#[derive(Debug)]
pub struct InFlight<'a>(&'a EndpointState);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.traffic.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The state of every endpoint some table names, by key: a table built later finds the same
/// state for the same endpoint. Entries go when no table holds them.
#[derive(Debug, Default)]
pub struct EndpointStates(Mutex<HashMap<Box<str>, Weak<EndpointState>>>);

impl EndpointStates {
    /// The state of endpoint `key`, made when no table has it.
    pub fn get(&self, key: &str) -> Arc<EndpointState> {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(state) = map.get(key).and_then(Weak::upgrade) {
            return state;
        }
        // An entry to replace means a dead one; clear them all now and then, not per call.
        if map.len() > 64 && map.len().is_power_of_two() {
            map.retain(|_, w| w.strong_count() > 0);
        }
        let state = Arc::new(EndpointState::new(key));
        map.insert(key.into(), Arc::downgrade(&state));
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ejections_grow_and_a_table_built_later_sees_the_same_state() {
        let states = EndpointStates::default();
        let a = states.get("http://a:1");
        assert!(Arc::ptr_eq(&a, &states.get("http://a:1")));
        assert!(!a.failed(3) && !a.failed(3));
        assert!(
            a.failed(3),
            "the third failure in a row reaches the threshold"
        );
        let base = Duration::from_millis(100);
        let max = Duration::from_millis(1000);
        assert!(a.eject(1000, base, max));
        assert_eq!(a.ejected_for(1050), Some(Duration::from_millis(50)));
        assert_eq!(a.ejected_for(1100), None, "back after its ejection");
        assert!(a.eject(1100, base, max), "the second ejection");
        assert_eq!(
            a.ejected_for(1100),
            Some(Duration::from_millis(200)),
            "doubled"
        );
        assert!(!a.eject(1150, base, max), "already out");
        a.set_health(false);
        assert_eq!(a.health(), Health::Down);
        drop(a);
        let fresh = states.get("http://a:1");
        assert_eq!(
            fresh.health(),
            Health::Unknown,
            "no table held it: a new state"
        );
    }
}
