//! The sample of recent request heads that dry runs replay: one request in `every` (picked at
//! random per worker thread, so a periodic client is not always or never picked) has its head
//! copied into a bounded ring, oldest out first, bounded in count and bytes. A request that is
//! not picked costs a thread-local countdown: no lock and no allocation. A picked one takes
//! the ring's lock only if it is free; under contention the head is dropped (and counted).
//!
//! Secrets are sealed before they are kept: the values of `Authorization`,
//! `Proxy-Authorization`, each cookie's value and any header named by the operator are replaced
//! by a keyed hash (`sealed:` and 16 hex digits, keyed per process), enough to replay an
//! equality matcher, never the secret itself. Nothing here is written anywhere.

use std::cell::Cell;
use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{AUTHORIZATION, COOKIE, HeaderName, PROXY_AUTHORIZATION};
use http::{HeaderMap, HeaderValue};

use routerd_routing::{BufferedBody, SharedHead};

/// What a sealed value starts with.
pub const SEALED_PREFIX: &str = "sealed:";

/// How the sample is kept (the `--sample-*` flags).
#[derive(Debug, Clone)]
pub struct SampleOptions {
    /// One request in this many is kept, on average; 0: none.
    pub every: u32,
    /// The most heads kept.
    pub max_heads: usize,
    /// The most bytes kept (headers, target and bodies, counted as their lengths).
    pub max_bytes: usize,
    /// The most bytes of a body kept (only bodies a body matcher read are kept at all).
    pub max_body_bytes: usize,
    /// Headers sealed besides `Authorization`, `Proxy-Authorization` and `Cookie`.
    pub secret_headers: Vec<HeaderName>,
    /// Keep secrets in clear (for a test bed, never for production traffic).
    pub secrets_in_clear: bool,
}

impl Default for SampleOptions {
    fn default() -> Self {
        SampleOptions {
            every: 100,
            max_heads: 10_000,
            max_bytes: 16 << 20,
            max_body_bytes: 4096,
            secret_headers: Vec::new(),
            secrets_in_clear: false,
        }
    }
}

/// One kept request head, as the decision saw it (secrets sealed).
#[derive(Debug)]
pub struct SampledHead {
    /// The head, ready to decide on (its `parts` carry no extensions).
    pub head: SharedHead,
    /// The body a body matcher read, up to the cap, and whether it was cut.
    pub body: Option<(Bytes, bool)>,
    /// When it was seen, in milliseconds since the Unix epoch.
    pub unix_ms: u64,
    bytes: usize,
}

impl SampledHead {
    /// The body as matchers read it.
    pub fn buffered(&self) -> Option<BufferedBody> {
        self.body
            .as_ref()
            .map(|(bytes, cut)| BufferedBody::new(bytes.clone(), *cut))
    }
}

/// The sealing key and which headers it seals.
#[derive(Debug)]
pub struct Seal {
    key: std::hash::RandomState,
    headers: Vec<HeaderName>,
    in_clear: bool,
}

impl Seal {
    fn new(options: &SampleOptions) -> Self {
        let mut headers = vec![AUTHORIZATION, PROXY_AUTHORIZATION];
        headers.extend(options.secret_headers.iter().cloned());
        Seal {
            key: std::hash::RandomState::new(),
            headers,
            in_clear: options.secrets_in_clear,
        }
    }

    /// The sealed form of `value`.
    pub fn seal(&self, value: &[u8]) -> String {
        format!("{SEALED_PREFIX}{:016x}", self.key.hash_one(value))
    }

    /// Whether a header's values are sealed (cookies: each value, not the names).
    pub fn covers(&self, name: &HeaderName) -> bool {
        !self.in_clear && (*name == COOKIE || self.headers.contains(name))
    }

    /// `headers` with secrets sealed.
    fn headers(&self, headers: &HeaderMap) -> HeaderMap {
        let mut out = HeaderMap::with_capacity(headers.len());
        for (name, value) in headers {
            let kept = if !self.covers(name) {
                value.clone()
            } else if *name == COOKIE {
                self.cookies(value)
            } else {
                sealed_value(self.seal(value.as_bytes()))
            };
            out.append(name.clone(), kept);
        }
        out
    }

    /// A `Cookie` header with each value sealed and the names kept.
    fn cookies(&self, value: &HeaderValue) -> HeaderValue {
        let Ok(text) = value.to_str() else {
            return sealed_value(self.seal(value.as_bytes()));
        };
        let pairs: Vec<String> = text
            .split(';')
            .map(|pair| match pair.split_once('=') {
                Some((k, v)) => format!("{}={}", k.trim(), self.seal(v.trim().as_bytes())),
                None => pair.trim().to_owned(),
            })
            .collect();
        sealed_value(pairs.join("; "))
    }
}

fn sealed_value(text: String) -> HeaderValue {
    // A sealed value is ASCII (names from a valid header, `sealed:` and hex), so this holds.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("sealed:invalid"))
}

#[derive(Default)]
struct Ring {
    heads: VecDeque<Arc<SampledHead>>,
    bytes: usize,
}

/// See the module docs.
pub struct HeadSample {
    options: SampleOptions,
    seal: Seal,
    ring: Mutex<Ring>,
    dropped: AtomicU64,
    kept: AtomicU64,
}

thread_local! {
    /// Requests this thread lets pass before it keeps one.
    static UNTIL_NEXT: Cell<u32> = const { Cell::new(0) };
}

impl HeadSample {
    /// An empty sample; `None` when `options.every` is 0 (sampling off).
    pub fn new(options: SampleOptions) -> Option<Arc<Self>> {
        (options.every > 0 && options.max_heads > 0).then(|| {
            Arc::new(HeadSample {
                seal: Seal::new(&options),
                options,
                ring: Mutex::new(Ring::default()),
                dropped: AtomicU64::new(0),
                kept: AtomicU64::new(0),
            })
        })
    }

    /// Whether to keep this request's head: on average one in `every`, the gaps drawn at
    /// random (uniform over 0..2*every) so no request pattern lines up with them.
    #[inline]
    pub fn pick(&self) -> bool {
        UNTIL_NEXT.with(|left| match left.get() {
            0 => {
                let every = self.options.every;
                left.set(if every == 1 {
                    0
                } else {
                    fastrand::u32(0..every.saturating_mul(2))
                });
                true
            }
            n => {
                left.set(n - 1);
                false
            }
        })
    }

    /// Keeps a copy of a picked head (and of the body a matcher read, up to the cap).
    pub fn keep(
        &self,
        parts: &http::request::Parts,
        remote: SocketAddr,
        scheme: &'static str,
        body: Option<&BufferedBody>,
    ) {
        let headers = self.seal.headers(&parts.headers);
        let body = body.map(|b| {
            let cap = self.options.max_body_bytes;
            let cut = b.too_large || b.bytes.len() > cap;
            (b.bytes.slice(..b.bytes.len().min(cap)), cut)
        });
        let bytes = 128
            + parts.uri.to_string().len()
            + headers
                .iter()
                .map(|(n, v)| n.as_str().len() + v.len() + 16)
                .sum::<usize>()
            + body.as_ref().map_or(0, |(b, _)| b.len());
        if bytes > self.options.max_bytes {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut head = http::Request::new(()).into_parts().0;
        head.method = parts.method.clone();
        head.uri = parts.uri.clone();
        head.version = parts.version;
        head.headers = headers;
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let sampled = Arc::new(SampledHead {
            head: SharedHead {
                parts: Arc::new(head),
                remote,
                scheme,
            },
            body,
            unix_ms,
            bytes,
        });
        let Ok(mut ring) = self.ring.try_lock() else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        while !ring.heads.is_empty()
            && (ring.heads.len() >= self.options.max_heads
                || ring.bytes + bytes > self.options.max_bytes)
        {
            if let Some(old) = ring.heads.pop_front() {
                ring.bytes -= old.bytes;
            }
        }
        ring.bytes += bytes;
        ring.heads.push_back(sampled);
        drop(ring);
        self.kept.fetch_add(1, Ordering::Relaxed);
    }

    /// The heads kept now, oldest first (shared, so the ring goes on meanwhile).
    pub fn heads(&self) -> Vec<Arc<SampledHead>> {
        let ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        ring.heads.iter().cloned().collect()
    }

    /// Heads kept and dropped since the start, and the bytes held now.
    pub fn stats(&self) -> SampleStats {
        let ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        SampleStats {
            held: ring.heads.len(),
            bytes: ring.bytes,
            kept: self.kept.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            every: self.options.every,
        }
    }

    /// How secrets are sealed (to replay equality matchers on sealed values).
    pub fn seal(&self) -> &Seal {
        &self.seal
    }
}

/// The sample's size and history.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct SampleStats {
    /// Heads held now.
    pub held: usize,
    /// Their bytes.
    pub bytes: usize,
    /// Heads kept since the start (some since pushed out).
    pub kept: u64,
    /// Heads picked but dropped (the ring was busy, or one head was over the byte bound).
    pub dropped: u64,
    /// One request in this many is picked.
    pub every: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(headers: &[(&str, &str)]) -> http::request::Parts {
        let mut req = http::Request::builder().uri("/a?b=c");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(())
            .unwrap_or_else(|e| panic!("{e}"))
            .into_parts()
            .0
    }

    fn remote() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 9))
    }

    #[test]
    fn secrets_are_sealed_and_names_kept() {
        let sample = HeadSample::new(SampleOptions {
            every: 1,
            secret_headers: vec![HeaderName::from_static("x-api-key")],
            ..SampleOptions::default()
        })
        .unwrap_or_else(|| panic!("sampling is on"));
        let p = parts(&[
            ("authorization", "Bearer hunter2"),
            ("cookie", "session=abc123; theme=dark"),
            ("x-api-key", "k-42"),
            ("x-tier", "gold"),
        ]);
        sample.keep(&p, remote(), "http", None);
        let heads = sample.heads();
        let h = &heads[0].head.parts.headers;
        let seal = sample.seal();
        assert_eq!(h["authorization"], seal.seal(b"Bearer hunter2").as_str());
        assert_eq!(h["x-api-key"], seal.seal(b"k-42").as_str());
        assert_eq!(h["x-tier"], "gold");
        let cookie = h["cookie"].to_str().unwrap_or_default();
        assert_eq!(
            cookie,
            format!(
                "session={}; theme={}",
                seal.seal(b"abc123"),
                seal.seal(b"dark")
            )
        );
        let all = format!("{h:?}");
        for secret in ["hunter2", "abc123", "k-42"] {
            assert!(!all.contains(secret), "{secret} in {all}");
        }
    }

    #[test]
    fn the_ring_keeps_the_newest_within_its_bounds() {
        let sample = HeadSample::new(SampleOptions {
            every: 1,
            max_heads: 3,
            ..SampleOptions::default()
        })
        .unwrap_or_else(|| panic!("sampling is on"));
        for i in 0..5 {
            let p = parts(&[("x-i", &i.to_string())]);
            sample.keep(&p, remote(), "http", None);
        }
        let kept: Vec<String> = sample
            .heads()
            .iter()
            .map(|h| {
                h.head.parts.headers["x-i"]
                    .to_str()
                    .unwrap_or("")
                    .to_owned()
            })
            .collect();
        assert_eq!(kept, ["2", "3", "4"]);
        assert_eq!(sample.stats().kept, 5);
    }

    #[test]
    fn picks_about_one_in_every() {
        let sample = HeadSample::new(SampleOptions {
            every: 10,
            ..SampleOptions::default()
        })
        .unwrap_or_else(|| panic!("sampling is on"));
        let picked = (0..100_000).filter(|_| sample.pick()).count();
        assert!((8_000..12_000).contains(&picked), "{picked}");
    }

    #[test]
    fn off_at_zero() {
        assert!(
            HeadSample::new(SampleOptions {
                every: 0,
                ..SampleOptions::default()
            })
            .is_none()
        );
    }
}
