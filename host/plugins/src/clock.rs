//! The plugin runtime's cheap clock: milliseconds on a monotonic clock, read by the breaker (when
//! the next probe may run) and the idle pools (when an instance was last taken), stored in
//! atomics where an `Instant` would not fit.

use std::time::Instant;

/// Milliseconds since the first call, on a monotonic clock.
pub(crate) fn now_ms() -> u64 {
    static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_millis() as u64
}
