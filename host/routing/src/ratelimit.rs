//! A route's rate limit: a token bucket per key (the client's address, or a header's value,
//! which a plugin filter earlier in the chain may have computed), refilled at `rate` per second
//! up to `burst`. Local to each routerd. Memory is bounded: a full bucket is the same as no
//! bucket, so full ones are dropped first when the key bound is reached, then the least
//! recently used.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use http::HeaderName;

use crate::config::{ErrorCode, FieldError, RateLimitSpec};
use crate::endpoints::{now_ms, stable_hash};

/// Buckets are kept in this many independently locked shards.
const SHARDS: usize = 16;

/// What a request counts against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitKey {
    /// The client's IP address.
    ClientAddr,
    /// A request header's value as the request filters left it (absent: one shared key).
    Header(HeaderName),
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last_ms: u64,
}

/// The decision for one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// Within the limit.
    Allowed,
    /// Over it: the next token comes after this long.
    Limited {
        /// Time until one token is back.
        retry_after: Duration,
    },
}

/// A compiled rate limit.
#[derive(Debug)]
pub struct RateLimit {
    /// Tokens per second.
    pub rate: f64,
    /// The bucket's size.
    pub burst: u32,
    /// What a request counts against.
    pub key: LimitKey,
    max_keys_per_shard: usize,
    shards: Box<[Mutex<HashMap<u64, Bucket>>]>,
    /// Requests refused.
    pub limited: AtomicU64,
}

impl RateLimit {
    /// Compiles `spec`, or names the field at fault.
    pub fn compile(spec: &RateLimitSpec) -> Result<RateLimit, FieldError> {
        let invalid = |field: &str, reason: String| {
            FieldError::new(
                format!("rate_limit.{field}"),
                ErrorCode::InvalidRateLimit,
                reason,
            )
        };
        if !(spec.requests_per_second > 0.0 && spec.requests_per_second <= 1e6) {
            return Err(invalid(
                "requests_per_second",
                format!("{} is outside (0, 1000000]", spec.requests_per_second),
            ));
        }
        let burst = spec
            .burst
            .unwrap_or_else(|| spec.requests_per_second.ceil() as u32);
        if burst == 0 || burst > 1_000_000 {
            return Err(invalid("burst", format!("{burst} is outside 1..=1000000")));
        }
        let key = match spec.key.as_deref() {
            None | Some("client_addr") => LimitKey::ClientAddr,
            Some(k) => match k.strip_prefix("header:") {
                Some(name) => LimitKey::Header(
                    HeaderName::try_from(name)
                        .map_err(|_| invalid("key", format!("{name:?} is not a header name")))?,
                ),
                None => {
                    return Err(invalid(
                        "key",
                        format!("{k:?}: use client_addr or header:NAME"),
                    ));
                }
            },
        };
        let max_keys = spec.max_keys.unwrap_or(100_000);
        if max_keys == 0 {
            return Err(invalid("max_keys", "must be at least 1".into()));
        }
        Ok(RateLimit {
            rate: spec.requests_per_second,
            burst,
            key,
            max_keys_per_shard: max_keys.div_ceil(SHARDS),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            limited: AtomicU64::new(0),
        })
    }

    /// The key a request counts against, hashed.
    pub fn key_of(&self, headers: &http::HeaderMap, client: IpAddr) -> u64 {
        match &self.key {
            LimitKey::ClientAddr => match client {
                IpAddr::V4(a) => stable_hash(&a.octets()),
                IpAddr::V6(a) => stable_hash(&a.octets()),
            },
            LimitKey::Header(name) => headers.get(name).map_or(0, |v| stable_hash(v.as_bytes())),
        }
    }

    /// Takes a token for `key` now.
    pub fn check(&self, key: u64) -> Verdict {
        self.check_at(key, now_ms())
    }

    fn check_at(&self, key: u64, now: u64) -> Verdict {
        let shard = &self.shards[(key as usize) % SHARDS];
        let mut buckets = shard.lock().unwrap_or_else(PoisonError::into_inner);
        let burst = f64::from(self.burst);
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: burst,
            last_ms: now,
        });
        let elapsed = now.saturating_sub(bucket.last_ms) as f64 / 1000.0;
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(burst);
        bucket.last_ms = now;
        let verdict = if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Verdict::Allowed
        } else {
            let wait = (1.0 - bucket.tokens) / self.rate;
            Verdict::Limited {
                retry_after: Duration::from_secs_f64(wait),
            }
        };
        if buckets.len() > self.max_keys_per_shard {
            self.shrink(&mut buckets, now);
        }
        if verdict != Verdict::Allowed {
            self.limited.fetch_add(1, Ordering::Relaxed);
        }
        verdict
    }

    /// Brings a shard back under its bound: full buckets go first (they equal no bucket),
    /// then the least recently used, down to nine tenths of the bound.
    fn shrink(&self, buckets: &mut HashMap<u64, Bucket>, now: u64) {
        let burst = f64::from(self.burst);
        let rate = self.rate;
        buckets
            .retain(|_, b| b.tokens + now.saturating_sub(b.last_ms) as f64 / 1000.0 * rate < burst);
        let target = self.max_keys_per_shard * 9 / 10;
        if buckets.len() > target {
            let mut ages: Vec<u64> = buckets.values().map(|b| b.last_ms).collect();
            let cut = buckets.len() - target;
            ages.select_nth_unstable(cut - 1);
            let oldest_kept = ages[cut - 1];
            buckets.retain(|_, b| b.last_ms > oldest_kept);
        }
    }

    /// Keys held now.
    pub fn keys(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    /// The `RateLimit-Policy` value: `BURST;w=WINDOW` with the window the burst refills in.
    pub fn policy(&self) -> String {
        let window = (f64::from(self.burst) / self.rate).ceil().max(1.0) as u64;
        format!("{};w={window}", self.burst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(rate: f64, burst: u32, max_keys: usize) -> RateLimit {
        RateLimit::compile(&RateLimitSpec {
            requests_per_second: rate,
            burst: Some(burst),
            key: None,
            max_keys: Some(max_keys),
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let l = limit(10.0, 5, 100);
        let allowed = (0..8)
            .filter(|_| l.check_at(1, 1000) == Verdict::Allowed)
            .count();
        assert_eq!(allowed, 5, "the burst");
        assert_eq!(
            l.check_at(1, 1000),
            Verdict::Limited {
                retry_after: Duration::from_millis(100)
            }
        );
        assert_eq!(
            l.check_at(1, 1100),
            Verdict::Allowed,
            "one token per 100 ms"
        );
        assert_ne!(l.check_at(1, 1100), Verdict::Allowed);
        assert_eq!(
            l.check_at(2, 1100),
            Verdict::Allowed,
            "another key has its own"
        );
        assert_eq!(l.limited.load(Ordering::Relaxed), 5);
    }

    #[test]
    fn memory_is_bounded_and_full_buckets_go_first() {
        let l = limit(1.0, 2, SHARDS * 10);
        for k in 0..10_000u64 {
            l.check_at(k, 5000);
        }
        assert!(l.keys() <= SHARDS * 10, "{} keys", l.keys());
        // An active key keeps its state while idle full ones are dropped.
        let l = limit(1.0, 2, SHARDS);
        l.check_at(0, 0);
        l.check_at(0, 0);
        for k in 1..100u64 {
            l.check_at(k * SHARDS as u64, 10_000 + k);
        }
        assert!(l.keys() <= SHARDS);
    }

    #[test]
    fn bad_specs_name_their_field() {
        let field = |spec: serde_json::Value| {
            let spec: RateLimitSpec =
                serde_json::from_value(spec).unwrap_or_else(|e| panic!("{e}"));
            RateLimit::compile(&spec)
                .err()
                .map(|e| e.field)
                .unwrap_or_default()
        };
        assert_eq!(
            field(serde_json::json!({"requests_per_second": 0})),
            "rate_limit.requests_per_second"
        );
        assert_eq!(
            field(serde_json::json!({"requests_per_second": 5, "key": "cookie:x"})),
            "rate_limit.key"
        );
        assert_eq!(
            field(serde_json::json!({"requests_per_second": 5, "burst": 0})),
            "rate_limit.burst"
        );
    }
}
