//! The plugin's key-value store: shared by every instance of the plugin in one routerd.
//!
//! routerd keeps one store per plugin name. It survives a hot replace of the plugin with a new
//! version, and is cleared when the plugin is unloaded. In a cluster each routerd has its own,
//! so a limit kept here is a limit per routerd. It is bounded by the plugin's settings
//! (`store.max_keys`, `store.max_bytes`): past them a write fails with [`StoreError::Full`] and
//! changes nothing. Each call is atomic with respect to every other instance's calls.
//!
//! ```
//! use std::time::Duration;
//! use routerd_sdk::store;
//!
//! store::set("greeting", "hello", None).unwrap();
//! assert_eq!(store::get_string("greeting").as_deref(), Some("hello"));
//! assert_eq!(store::increment("hits", 1, Some(Duration::from_secs(60))), Ok(1));
//! assert_eq!(store::increment("hits", 1, None), Ok(2));
//! assert!(store::delete("greeting"));
//! ```
//!
//! Compiled natively (for `cargo test`) the store is an in-memory map per thread, with the same
//! expiry rules and no bounds.

use std::time::Duration;

/// Why a store operation was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The store is at its bound of keys or bytes (the message says which); nothing changed.
    Full(String),
    /// The key is empty or longer than 1,024 bytes.
    InvalidKey,
    /// [`increment`] on a value that is not a decimal `i64`.
    NotANumber,
    /// [`increment`] would overflow an `i64`; nothing changed.
    Overflow,
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Full(why) => f.write_str(why),
            StoreError::InvalidKey => f.write_str("the key is empty or longer than 1024 bytes"),
            StoreError::NotANumber => {
                f.write_str("the value is not a decimal signed 64-bit integer")
            }
            StoreError::Overflow => f.write_str("the increment overflows an i64"),
        }
    }
}

impl std::error::Error for StoreError {}

fn ttl_ms(ttl: Option<Duration>) -> u64 {
    // A ttl under a millisecond still expires: at least 1 ms.
    ttl.map_or(0, |t| {
        u64::try_from(t.as_millis()).unwrap_or(u64::MAX).max(1)
    })
}

/// The value under `key`, unless it is missing or expired.
pub fn get(key: &str) -> Option<Vec<u8>> {
    imp::get(key)
}

/// The value under `key` as text (invalid UTF-8 replaced).
pub fn get_string(key: &str) -> Option<String> {
    get(key).map(|v| String::from_utf8_lossy(&v).into_owned())
}

/// Stores `value` under `key`, replacing any value; it expires after `ttl` (`None`: kept until
/// deleted or the plugin is unloaded).
pub fn set(key: &str, value: impl AsRef<[u8]>, ttl: Option<Duration>) -> Result<(), StoreError> {
    imp::set(key, value.as_ref(), ttl_ms(ttl))
}

/// Removes `key`; whether it held a live value.
pub fn delete(key: &str) -> bool {
    imp::delete(key)
}

/// Adds `delta` to the integer under `key` (kept as decimal text) and returns the new value. A
/// missing or expired key starts at 0 and expires after `ttl`; an existing key keeps its
/// expiry, so a counter under a key naming a time window counts that window.
pub fn increment(key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64, StoreError> {
    imp::increment(key, delta, ttl_ms(ttl))
}

/// One fixed-window rate-limit decision: see [`fixed_window`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Whether this request is within the limit.
    pub allowed: bool,
    /// The limit per window.
    pub limit: u64,
    /// Requests left in this window after this one.
    pub remaining: u64,
    /// Time until the window ends.
    pub reset: Duration,
}

/// Counts one request for `key` in the current window of length `window` (windows are aligned
/// to the wall clock, so every instance and every routerd agrees on them) and says whether it
/// is within `limit`. One atomic store call per request; the counter expires with its window.
///
/// ```
/// use std::time::Duration;
/// use routerd_sdk::store::fixed_window;
///
/// let w = Duration::from_secs(3600);
/// assert!(fixed_window("client-a", 2, w).unwrap().allowed);
/// assert!(fixed_window("client-a", 2, w).unwrap().allowed);
/// let third = fixed_window("client-a", 2, w).unwrap();
/// assert!(!third.allowed);
/// assert_eq!(third.remaining, 0);
/// ```
pub fn fixed_window(key: &str, limit: u64, window: Duration) -> Result<Window, StoreError> {
    let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let index = now_ms / window_ms;
    let reset = Duration::from_millis(window_ms - now_ms % window_ms);
    // The counter outlives its window a little, so a clock read just before the boundary on
    // one instance and just after on another never recreates it.
    let count = increment(&format!("{key}@{index}"), 1, Some(reset + window))?;
    let used = u64::try_from(count).unwrap_or(0);
    Ok(Window {
        allowed: used <= limit,
        limit,
        remaining: limit.saturating_sub(used),
        reset,
    })
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::StoreError;
    use crate::bindings::store_iface as wit;

    fn error(e: wit::Error) -> StoreError {
        match e {
            wit::Error::Full(why) => StoreError::Full(why),
            wit::Error::InvalidKey => StoreError::InvalidKey,
            wit::Error::NotANumber => StoreError::NotANumber,
            wit::Error::Overflow => StoreError::Overflow,
        }
    }

    pub fn get(key: &str) -> Option<Vec<u8>> {
        wit::get(key)
    }

    pub fn set(key: &str, value: &[u8], ttl_ms: u64) -> Result<(), StoreError> {
        wit::set(key, value, ttl_ms).map_err(error)
    }

    pub fn delete(key: &str) -> bool {
        wit::delete(key)
    }

    pub fn increment(key: &str, delta: i64, ttl_ms: u64) -> Result<i64, StoreError> {
        wit::increment(key, delta, ttl_ms).map_err(error)
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    //! An in-memory store per thread, for native tests.
    use super::StoreError;
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::time::{Duration, Instant};

    thread_local! {
        static ENTRIES: RefCell<HashMap<String, (Vec<u8>, Option<Instant>)>> = RefCell::default();
    }

    fn live(key: &str) -> Option<(Vec<u8>, Option<Instant>)> {
        ENTRIES.with(|m| {
            let mut m = m.borrow_mut();
            match m.get(key) {
                Some((_, Some(at))) if *at <= Instant::now() => {
                    m.remove(key);
                    None
                }
                other => other.cloned(),
            }
        })
    }

    fn put(key: &str, value: Vec<u8>, expires: Option<Instant>) -> Result<(), StoreError> {
        if key.is_empty() || key.len() > 1024 {
            return Err(StoreError::InvalidKey);
        }
        ENTRIES.with(|m| m.borrow_mut().insert(key.to_owned(), (value, expires)));
        Ok(())
    }

    fn expiry(ttl_ms: u64) -> Option<Instant> {
        (ttl_ms > 0).then(|| Instant::now() + Duration::from_millis(ttl_ms))
    }

    pub fn get(key: &str) -> Option<Vec<u8>> {
        live(key).map(|(v, _)| v)
    }

    pub fn set(key: &str, value: &[u8], ttl_ms: u64) -> Result<(), StoreError> {
        put(key, value.to_vec(), expiry(ttl_ms))
    }

    pub fn delete(key: &str) -> bool {
        let was = live(key).is_some();
        ENTRIES.with(|m| m.borrow_mut().remove(key));
        was
    }

    pub fn increment(key: &str, delta: i64, ttl_ms: u64) -> Result<i64, StoreError> {
        let (current, expires) = match live(key) {
            Some((v, expires)) => {
                let text = String::from_utf8(v).map_err(|_| StoreError::NotANumber)?;
                (
                    text.parse::<i64>().map_err(|_| StoreError::NotANumber)?,
                    expires,
                )
            }
            None => (0, expiry(ttl_ms)),
        };
        let next = current.checked_add(delta).ok_or(StoreError::Overflow)?;
        put(key, next.to_string().into_bytes(), expires)?;
        Ok(next)
    }
}
