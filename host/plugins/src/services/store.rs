//! A plugin's key-value store (`router:plugin/store`): shared by every instance of the plugin,
//! kept across a hot replace of the same name, dropped with the plugin's name. Bounded in live
//! keys and bytes; expired entries are removed lazily (when read, when the bound is reached,
//! and in an amortised sweep), so a call never pays for a timer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The longest key accepted.
pub const MAX_KEY_BYTES: usize = 1024;

/// Operations between two amortised sweeps of expired entries.
const SWEEP_EVERY: u64 = 1024;

/// A store's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreBounds {
    /// Most live keys.
    pub max_keys: usize,
    /// Most bytes of keys and values together.
    pub max_bytes: usize,
}

impl Default for StoreBounds {
    fn default() -> Self {
        StoreBounds {
            max_keys: 10_000,
            max_bytes: 8 << 20,
        }
    }
}

/// Why a store operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// At the bound of keys or bytes; nothing changed.
    #[error("{0}")]
    Full(String),
    /// Empty, or longer than [`MAX_KEY_BYTES`].
    #[error("the key is empty or longer than {MAX_KEY_BYTES} bytes")]
    InvalidKey,
    /// `increment` on a value that is not a decimal `i64`.
    #[error("the value is not a decimal signed 64-bit integer")]
    NotANumber,
    /// `increment` would overflow.
    #[error("the increment overflows a signed 64-bit integer")]
    Overflow,
}

/// The operations counted in `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOp {
    /// `get`.
    Get,
    /// `set`.
    Set,
    /// `delete`.
    Delete,
    /// `increment`.
    Increment,
}

impl StoreOp {
    /// Every operation, in counter order.
    pub const ALL: [StoreOp; 4] = [
        StoreOp::Get,
        StoreOp::Set,
        StoreOp::Delete,
        StoreOp::Increment,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreOp::Get => "get",
            StoreOp::Set => "set",
            StoreOp::Delete => "delete",
            StoreOp::Increment => "increment",
        }
    }
}

#[derive(Clone)]
struct Entry {
    value: Vec<u8>,
    expires: Option<Instant>,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|at| at > now)
    }
}

#[derive(Default, Clone)]
struct Entries {
    map: HashMap<Box<str>, Entry>,
    /// Bytes of every key and value in `map`.
    bytes: usize,
    /// No entry expires before this (`None`: none expires); a sweep before it finds nothing.
    first_expiry: Option<Instant>,
}

impl Entries {
    fn remove(&mut self, key: &str) -> Option<Entry> {
        let (key, entry) = self.map.remove_entry(key)?;
        self.bytes -= key.len() + entry.value.len();
        Some(entry)
    }

    fn sweep(&mut self, now: Instant) {
        if self.first_expiry.is_none_or(|at| at > now) {
            return;
        }
        let mut freed = 0;
        let mut first = None::<Instant>;
        self.map.retain(|key, entry| {
            if entry.live(now) {
                if let Some(at) = entry.expires {
                    first = Some(first.map_or(at, |f| f.min(at)));
                }
                true
            } else {
                freed += key.len() + entry.value.len();
                false
            }
        });
        self.bytes -= freed;
        self.first_expiry = first;
    }

    /// The keys and bytes there would be with `new` bytes under `key`.
    fn after_put(&self, key: &str, new: usize) -> (usize, usize) {
        let old = self.map.get(key).map(|e| key.len() + e.value.len());
        (
            self.map.len() + usize::from(old.is_none()),
            self.bytes - old.unwrap_or(0) + new,
        )
    }

    fn note_expiry(&mut self, expires: Option<Instant>) {
        if let Some(at) = expires {
            self.first_expiry = Some(self.first_expiry.map_or(at, |f| f.min(at)));
        }
    }
}

/// One plugin's store.
#[derive(Default)]
pub struct PluginStore {
    entries: Mutex<Entries>,
    max_keys: AtomicUsize,
    max_bytes: AtomicUsize,
    ops: [AtomicU64; 4],
    refused_full: AtomicU64,
}

impl std::fmt::Debug for PluginStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginStore")
            .field("keys", &self.keys())
            .finish_non_exhaustive()
    }
}

fn expiry(now: Instant, ttl_ms: u64) -> Option<Instant> {
    (ttl_ms > 0).then(|| now + Duration::from_millis(ttl_ms))
}

fn check_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(StoreError::InvalidKey);
    }
    Ok(())
}

impl PluginStore {
    /// An empty store with `bounds`.
    pub fn new(bounds: StoreBounds) -> PluginStore {
        let store = PluginStore::default();
        store.set_bounds(bounds);
        store
    }

    /// A copy of the store as it is now, with its bounds and fresh counters: what a replica
    /// reads, so its writes never reach this store.
    pub fn snapshot(&self) -> PluginStore {
        let copy = PluginStore {
            entries: Mutex::new(self.lock().clone()),
            ..PluginStore::default()
        };
        copy.max_keys
            .store(self.max_keys.load(Ordering::Relaxed), Ordering::Relaxed);
        copy.max_bytes
            .store(self.max_bytes.load(Ordering::Relaxed), Ordering::Relaxed);
        copy
    }

    /// New bounds (a replaced plugin's settings); entries over them stay until they go, and
    /// meanwhile nothing new is added.
    pub fn set_bounds(&self, bounds: StoreBounds) {
        self.max_keys.store(bounds.max_keys, Ordering::Relaxed);
        self.max_bytes.store(bounds.max_bytes, Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // Nothing under the lock panics; if something did, the map is still consistent.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts `op` and, every [`SWEEP_EVERY`] operations, sweeps expired entries.
    fn count(&self, op: StoreOp, entries: &mut Entries, now: Instant) {
        let n = self.ops[op as usize].fetch_add(1, Ordering::Relaxed);
        if n % SWEEP_EVERY == SWEEP_EVERY - 1 {
            entries.sweep(now);
        }
    }

    /// The live value under `key`.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let now = Instant::now();
        let mut entries = self.lock();
        self.count(StoreOp::Get, &mut entries, now);
        match entries.map.get(key) {
            Some(e) if e.live(now) => Some(e.value.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Stores `value` under `key`, expiring after `ttl_ms` (0: never).
    pub fn set(&self, key: &str, value: Vec<u8>, ttl_ms: u64) -> Result<(), StoreError> {
        check_key(key)?;
        let now = Instant::now();
        let mut entries = self.lock();
        self.count(StoreOp::Set, &mut entries, now);
        let expires = expiry(now, ttl_ms);
        self.put(&mut entries, key, value, expires, now)
    }

    /// Removes `key`; whether it had a live value.
    pub fn delete(&self, key: &str) -> bool {
        let now = Instant::now();
        let mut entries = self.lock();
        self.count(StoreOp::Delete, &mut entries, now);
        entries.remove(key).is_some_and(|e| e.live(now))
    }

    /// Adds `delta` to the integer under `key`; a missing or expired key starts at 0 with
    /// `ttl_ms`, an existing one keeps its expiry.
    pub fn increment(&self, key: &str, delta: i64, ttl_ms: u64) -> Result<i64, StoreError> {
        check_key(key)?;
        let now = Instant::now();
        let mut entries = self.lock();
        self.count(StoreOp::Increment, &mut entries, now);
        let (current, expires) = match entries.map.get(key) {
            Some(e) if e.live(now) => {
                let text = std::str::from_utf8(&e.value).map_err(|_| StoreError::NotANumber)?;
                let n: i64 = text.parse().map_err(|_| StoreError::NotANumber)?;
                (n, e.expires)
            }
            _ => (0, expiry(now, ttl_ms)),
        };
        let next = current.checked_add(delta).ok_or(StoreError::Overflow)?;
        self.put(
            &mut entries,
            key,
            next.to_string().into_bytes(),
            expires,
            now,
        )?;
        Ok(next)
    }

    /// Puts an entry in, within the bounds (sweeping expired entries first when at them).
    fn put(
        &self,
        entries: &mut Entries,
        key: &str,
        value: Vec<u8>,
        expires: Option<Instant>,
        now: Instant,
    ) -> Result<(), StoreError> {
        let new = key.len() + value.len();
        let max_keys = self.max_keys.load(Ordering::Relaxed);
        let max_bytes = self.max_bytes.load(Ordering::Relaxed);
        let (mut keys, mut bytes) = entries.after_put(key, new);
        if keys > max_keys || bytes > max_bytes {
            entries.sweep(now);
            (keys, bytes) = entries.after_put(key, new);
        }
        if keys > max_keys || bytes > max_bytes {
            self.refused_full.fetch_add(1, Ordering::Relaxed);
            return Err(StoreError::Full(if keys > max_keys {
                format!(
                    "the plugin's store holds its most keys ({max_keys}; settings store.max_keys)"
                )
            } else {
                format!(
                    "the plugin's store would exceed its most bytes ({max_bytes}; settings store.max_bytes)"
                )
            }));
        }
        entries.remove(key);
        entries.bytes += new;
        entries.note_expiry(expires);
        entries.map.insert(key.into(), Entry { value, expires });
        Ok(())
    }

    /// Keys held now (expired ones not yet removed included).
    pub fn keys(&self) -> usize {
        self.lock().map.len()
    }

    /// Bytes of keys and values held now.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Operations of kind `op` so far.
    pub fn operations(&self, op: StoreOp) -> u64 {
        self.ops[op as usize].load(Ordering::Relaxed)
    }

    /// Writes refused because the store was full.
    pub fn refused_full(&self) -> u64 {
        self.refused_full.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> PluginStore {
        PluginStore::new(StoreBounds {
            max_keys: 3,
            max_bytes: 64,
        })
    }

    #[test]
    fn set_get_delete() {
        let s = small();
        assert_eq!(s.get("a"), None);
        s.set("a", b"one".to_vec(), 0)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.get("a").as_deref(), Some(&b"one"[..]));
        assert_eq!(s.bytes(), 4);
        s.set("a", b"three".to_vec(), 0)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.bytes(), 6, "a replaced value is counted once");
        assert!(s.delete("a"));
        assert!(!s.delete("a"));
        assert_eq!((s.keys(), s.bytes()), (0, 0));
        assert_eq!(s.operations(StoreOp::Set), 2);
    }

    #[test]
    fn bounds_refuse_and_change_nothing() {
        let s = small();
        for k in ["a", "b", "c"] {
            s.set(k, vec![0; 4], 0).unwrap_or_else(|e| panic!("{e}"));
        }
        let err = s.set("d", vec![0; 4], 0);
        assert!(
            matches!(&err, Err(StoreError::Full(m)) if m.contains("store.max_keys")),
            "{err:?}"
        );
        assert_eq!(s.get("d"), None);
        // Replacing an existing key needs no new key.
        s.set("a", vec![1; 4], 0).unwrap_or_else(|e| panic!("{e}"));
        let err = s.set("b", vec![0; 100], 0);
        assert!(
            matches!(&err, Err(StoreError::Full(m)) if m.contains("store.max_bytes")),
            "{err:?}"
        );
        assert_eq!(s.get("b").as_deref(), Some(&[0u8; 4][..]), "kept as it was");
        assert_eq!(s.refused_full(), 2);
        assert_eq!(s.set("", vec![], 0), Err(StoreError::InvalidKey));
    }

    #[test]
    fn expired_entries_do_not_count_against_the_bound() {
        let s = small();
        for k in ["a", "b", "c"] {
            s.set(k, vec![0; 4], 1).unwrap_or_else(|e| panic!("{e}"));
        }
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(s.get("a"), None, "expired");
        s.set("d", vec![0; 4], 0).unwrap_or_else(|e| panic!("{e}"));
        s.set("e", vec![0; 4], 0).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.keys(), 2, "the sweep at the bound removed b and c");
    }

    #[test]
    fn increment_counts_a_window_and_keeps_its_expiry() {
        let s = small();
        assert_eq!(s.increment("w", 1, 30), Ok(1));
        assert_eq!(s.increment("w", 2, 10_000), Ok(3));
        assert_eq!(s.get("w").as_deref(), Some(&b"3"[..]));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(s.increment("w", 1, 30), Ok(1), "the first ttl held");
        s.set("t", b"x".to_vec(), 0)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.increment("t", 1, 0), Err(StoreError::NotANumber));
        s.set("m", i64::MAX.to_string().into_bytes(), 0)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.increment("m", 1, 0), Err(StoreError::Overflow));
    }

    #[test]
    fn concurrent_increments_are_atomic() {
        let s = std::sync::Arc::new(PluginStore::new(StoreBounds::default()));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        s.increment("n", 1, 0).unwrap_or_else(|e| panic!("{e}"));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap_or_else(|_| panic!("thread"));
        }
        assert_eq!(s.get("n").as_deref(), Some(&b"4000"[..]));
    }
}
