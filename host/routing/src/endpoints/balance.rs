//! Picking an endpoint: weighted round robin (a smooth schedule computed once), least request
//! (the less busy of two picked at random, relative to weight) and hashing (weighted rendezvous
//! hashing on a key: a key stays on its endpoint, and when an endpoint leaves only its keys
//! move). Every policy skips endpoints that are down, ejected or already tried by this request,
//! with atomics only: nothing is allocated or locked per request.

use std::cell::Cell;
use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::HeaderName;

use super::{Endpoint, Health};

/// How a request picks an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Balance {
    /// Weighted round robin.
    RoundRobin,
    /// The less busy (requests in flight over weight) of two picked at random.
    LeastRequest,
    /// Weighted rendezvous hashing on a key (round robin for a request without one).
    Hash(HashOn),
}

impl Balance {
    /// The policy's name, as the route document spells it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Balance::RoundRobin => "round_robin",
            Balance::LeastRequest => "least_request",
            Balance::Hash(_) => "hash",
        }
    }
}

/// What a hashing route's key is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashOn {
    /// A request header's first value.
    Header(HeaderName),
    /// A cookie's value.
    Cookie(Box<str>),
    /// The client's IP address.
    ClientAddr,
}

/// A stable 64-bit hash (SipHash with fixed keys: the same on every routerd and every run).
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h = std::hash::BuildHasherDefault::<std::hash::DefaultHasher>::default().build_hasher();
    h.write(bytes);
    h.finish()
}

impl HashOn {
    /// The key of a request, hashed; `None` when it has none.
    pub fn key(&self, headers: &http::HeaderMap, client: IpAddr) -> Option<u64> {
        match self {
            HashOn::Header(name) => headers.get(name).map(|v| stable_hash(v.as_bytes())),
            HashOn::Cookie(name) => headers
                .get_all(http::header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .find_map(|pair| {
                    let (k, v) = pair.trim().split_once('=')?;
                    (k == &**name).then(|| stable_hash(v.as_bytes()))
                }),
            HashOn::ClientAddr => Some(match client {
                IpAddr::V4(a) => stable_hash(&a.octets()),
                IpAddr::V6(a) => stable_hash(&a.octets()),
            }),
        }
    }
}

/// A smooth weighted round-robin order of endpoint indices (nginx's algorithm): each endpoint
/// appears `weight` times, spread out rather than in runs.
pub(super) fn schedule(weights: &[u32]) -> Box<[u16]> {
    let total: i64 = weights.iter().map(|w| i64::from(*w)).sum();
    let mut current = vec![0i64; weights.len()];
    let mut order = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for (i, w) in weights.iter().enumerate() {
            current[i] += i64::from(*w);
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        order.push(best as u16);
    }
    order.into()
}

/// SplitMix64's finaliser: spreads a combined key and seed over 64 bits.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A cheap per-thread random number (xorshift), for least request's two picks.
fn random() -> u64 {
    thread_local! {
        static STATE: Cell<u64> = Cell::new(
            std::hash::RandomState::new().build_hasher().finish() | 1
        );
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        x
    })
}

/// Whether endpoint `i` may take a request, or why not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Standing {
    /// It may.
    Usable,
    /// This request tried it already.
    Tried,
    /// Ejected for failing.
    Ejected,
    /// The health check finds it down.
    Down,
}

/// Endpoint `i`'s standing for a request that tried `tried`. The health check only steers
/// among several endpoints: a route's only endpoint is always tried, so its own answer (or
/// routerd's 502 or 504 for it) says what is wrong, never a check that may be a second old.
pub(super) fn standing(endpoints: &[Endpoint], i: usize, tried: u64, now: u64) -> Standing {
    let state = &endpoints[i].state;
    if tried & (1 << i) != 0 {
        Standing::Tried
    } else if state.ejected_for(now).is_some() {
        Standing::Ejected
    } else if endpoints.len() > 1 && state.health() == Health::Down {
        Standing::Down
    } else {
        Standing::Usable
    }
}

fn usable(endpoints: &[Endpoint], i: usize, tried: u64, now: u64) -> bool {
    standing(endpoints, i, tried, now) == Standing::Usable
}

/// Round robin over `order`, from the shared cursor.
pub(super) fn round_robin(
    endpoints: &[Endpoint],
    order: &[u16],
    next: &AtomicUsize,
    tried: u64,
    now: u64,
) -> Option<usize> {
    let start = next.fetch_add(1, Ordering::Relaxed);
    (0..order.len())
        .map(|k| usize::from(order[(start + k) % order.len()]))
        .find(|&i| usable(endpoints, i, tried, now))
}

/// The less busy of two usable endpoints picked at random, relative to their weights.
pub(super) fn least_request(endpoints: &[Endpoint], tried: u64, now: u64) -> Option<usize> {
    let n = endpoints.len();
    // The first usable one at or after `start`, other than `not`.
    let usable_from = |start: usize, not: Option<usize>| {
        (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| Some(i) != not && usable(endpoints, i, tried, now))
    };
    let a = usable_from(random() as usize % n, None)?;
    if n == 1 {
        return Some(a);
    }
    // The second among the others, so every pair is as likely as any other.
    let start = (a + 1 + random() as usize % (n - 1)) % n;
    let Some(b) = usable_from(start, Some(a)) else {
        return Some(a);
    };
    // out_b / w_b < out_a / w_a, without dividing.
    let (ea, eb) = (&endpoints[a], &endpoints[b]);
    let load_a = u64::from(ea.state.outstanding()) * u64::from(eb.weight);
    let load_b = u64::from(eb.state.outstanding()) * u64::from(ea.weight);
    Some(if load_b < load_a { b } else { a })
}

/// Weighted rendezvous hashing: each usable endpoint scores `weight / -ln(u)` for a uniform
/// `u` drawn from the key and the endpoint's own seed; the highest wins. An endpoint's score
/// for a key never depends on the others, so removing one moves only the keys it had.
pub(super) fn rendezvous(endpoints: &[Endpoint], key: u64, tried: u64, now: u64) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, e) in endpoints.iter().enumerate() {
        if !usable(endpoints, i, tried, now) {
            continue;
        }
        // 53 random bits as a float in (0, 1).
        let u = ((mix(key ^ e.seed) >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let score = f64::from(e.weight) / -u.ln();
        if best.is_none_or(|(_, s)| score > s) {
            best = Some((i, score));
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_gives_each_endpoint_its_weight_spread_out() {
        let order = schedule(&[5, 1, 1]);
        assert_eq!(order.len(), 7);
        assert_eq!(order.iter().filter(|i| **i == 0).count(), 5);
        assert_eq!(&*order, &[0, 0, 1, 0, 2, 0, 0], "nginx's smooth order");
    }

    #[test]
    fn cookie_and_header_keys() {
        let mut h = http::HeaderMap::new();
        h.insert(
            "cookie",
            "a=1; sid=xyz".parse().unwrap_or_else(|_| panic!()),
        );
        h.insert("x-user", "ada".parse().unwrap_or_else(|_| panic!()));
        let ip: IpAddr = [127, 0, 0, 1].into();
        assert_eq!(
            HashOn::Cookie("sid".into()).key(&h, ip),
            Some(stable_hash(b"xyz"))
        );
        assert_eq!(HashOn::Cookie("none".into()).key(&h, ip), None);
        assert_eq!(
            HashOn::Header(HeaderName::from_static("x-user")).key(&h, ip),
            Some(stable_hash(b"ada"))
        );
        assert!(HashOn::ClientAddr.key(&h, ip).is_some());
    }
}
