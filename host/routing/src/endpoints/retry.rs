//! Retrying a failed request: what a route retries (`retries.on`), which methods, each try's
//! deadline, how much of a body is kept to send again, and the budget that keeps retries in
//! flight under a share of the route's requests in flight, so a failing backend is not flooded.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use http::Method;

use super::invalid;
use crate::config::{FieldError, RouteRule};

/// What a retry is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryOn {
    /// The connection could not be made.
    Connect,
    /// The connection failed before an answer head.
    Reset,
    /// No answer head within the try's deadline.
    Timeout,
    /// The backend answered 502.
    Status502,
    /// The backend answered 503.
    Status503,
    /// The backend answered 504.
    Status504,
}

impl RetryOn {
    pub(super) const ALL: [(RetryOn, &'static str); 6] = [
        (RetryOn::Connect, "connect"),
        (RetryOn::Reset, "reset"),
        (RetryOn::Timeout, "timeout"),
        (RetryOn::Status502, "502"),
        (RetryOn::Status503, "503"),
        (RetryOn::Status504, "504"),
    ];

    /// The name, as `retries.on` spells it (and the metric label).
    pub fn as_str(self) -> &'static str {
        RetryOn::ALL
            .iter()
            .find(|(r, _)| *r == self)
            .map_or("", |(_, n)| n)
    }

    /// The retry reason for a backend's status, if it is one.
    pub fn for_status(status: u16) -> Option<RetryOn> {
        match status {
            502 => Some(RetryOn::Status502),
            503 => Some(RetryOn::Status503),
            504 => Some(RetryOn::Status504),
            _ => None,
        }
    }
}

/// When a failed request is tried again.
#[derive(Debug)]
pub struct RetryPolicy {
    /// Tries after the first.
    pub attempts: u32,
    on: u8,
    /// Each try's deadline for the answer head.
    pub per_try_timeout: Option<Duration>,
    /// Whether POST and PATCH are retried too.
    pub non_idempotent: bool,
    /// Retries in flight as a share of requests in flight, in percent.
    pub budget_percent: u32,
    /// The largest request body kept for a retry.
    pub buffer_bytes: usize,
    /// Requests of the route in flight, and retries in flight, for the budget.
    requests: AtomicU32,
    retries: AtomicU32,
}

impl RetryPolicy {
    /// Whether `reason` is retried.
    pub fn retries_on(&self, reason: RetryOn) -> bool {
        self.on & (1 << reason as u8) != 0
    }

    /// Whether a request with `method` may be retried at all.
    pub fn method_allowed(&self, method: &Method) -> bool {
        self.non_idempotent || method.is_idempotent()
    }

    /// Counts a request in flight until the guard drops.
    pub fn begin_request(&self) -> BudgetGuard<'_> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        BudgetGuard(&self.requests)
    }

    /// A retry, if the budget allows one now: retries in flight stay under `budget_percent` of
    /// requests in flight (at least 3 are always allowed), so a failing backend is not flooded.
    pub fn begin_retry(&self) -> Option<BudgetGuard<'_>> {
        let requests = self.requests.load(Ordering::Relaxed);
        let allowed = (requests * self.budget_percent / 100).max(3);
        let prior = self.retries.fetch_add(1, Ordering::Relaxed);
        if prior >= allowed {
            self.retries.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(BudgetGuard(&self.retries))
    }
}

/// A request or retry counted in flight.
#[derive(Debug)]
pub struct BudgetGuard<'a>(&'a AtomicU32);

impl Drop for BudgetGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(super) fn retry_of(rule: &RouteRule) -> Result<Option<RetryPolicy>, FieldError> {
    let Some(spec) = &rule.retries else {
        return Ok(None);
    };
    let attempts = spec.attempts.unwrap_or(1);
    if !(1..=5).contains(&attempts) {
        return Err(invalid(
            "retries.attempts",
            format!("{attempts} is outside 1..=5"),
        ));
    }
    let mut on = 0u8;
    if spec.on.is_empty() {
        on = u8::MAX;
    }
    for (i, name) in spec.on.iter().enumerate() {
        match RetryOn::ALL.iter().find(|(_, n)| n == name) {
            Some((r, _)) => on |= 1 << *r as u8,
            None => {
                return Err(invalid(
                    format!("retries.on[{i}]"),
                    format!("{name:?}: use connect, reset, timeout, 502, 503 or 504"),
                ));
            }
        }
    }
    if spec.per_try_timeout_ms == Some(0) {
        return Err(invalid("retries.per_try_timeout_ms", "must be at least 1"));
    }
    let budget_percent = spec.budget_percent.unwrap_or(20);
    if budget_percent > 100 {
        return Err(invalid(
            "retries.budget_percent",
            format!("{budget_percent} is above 100"),
        ));
    }
    Ok(Some(RetryPolicy {
        attempts,
        on,
        per_try_timeout: spec.per_try_timeout_ms.map(Duration::from_millis),
        non_idempotent: spec.non_idempotent,
        budget_percent,
        buffer_bytes: spec.buffer_bytes.unwrap_or(64 << 10),
        requests: AtomicU32::new(0),
        retries: AtomicU32::new(0),
    }))
}
