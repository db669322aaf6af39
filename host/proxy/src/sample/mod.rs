//! The sample of recent request heads that dry runs replay: one request in `every` (picked at
//! random per worker thread, so a periodic client is not always or never picked) has its head
//! encoded into a bounded ring (`ring`), oldest out first, bounded in count and bytes. A request
//! that is not picked costs a thread-local countdown: no lock and no allocation. A picked one
//! is encoded in a per-thread buffer and copied in only if the ring's lock is free; under
//! contention the head is dropped (and counted).
//!
//! Secrets are sealed before they are kept: the values of `Authorization`,
//! `Proxy-Authorization`, each cookie's value and any header named by the operator are replaced
//! by a keyed hash (`sealed:` and 16 hex digits, keyed per process), enough to replay an
//! equality matcher, never the secret itself. Nothing here is written anywhere.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::HeaderName;

use routerd_routing::{BufferedBody, SharedHead};

mod ring;
mod seal;

use ring::Ring;
pub use seal::{SEALED_PREFIX, Seal};

/// How the sample is kept (the `--sample-*` flags).
#[derive(Debug, Clone)]
pub struct SampleOptions {
    /// One request in this many is kept, on average; 0: none.
    pub every: u32,
    /// The most heads kept.
    pub max_heads: usize,
    /// The most bytes kept (heads and bodies, encoded).
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
}

impl SampledHead {
    /// The body as matchers read it.
    pub fn buffered(&self) -> Option<BufferedBody> {
        self.body
            .as_ref()
            .map(|(bytes, cut)| BufferedBody::new(bytes.clone(), *cut))
    }
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
    /// Where this thread encodes a head before copying it into the ring.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A scratch buffer past this is given back after use.
const SCRATCH_KEEP: usize = 64 << 10;

impl HeadSample {
    /// An empty sample; `None` when `options.every` is 0 (sampling off).
    pub fn new(options: SampleOptions) -> Option<Arc<Self>> {
        (options.every > 0 && options.max_heads > 0).then(|| {
            Arc::new(HeadSample {
                seal: Seal::new(&options),
                ring: Mutex::new(Ring::new(options.max_heads, options.max_bytes)),
                options,
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
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let kept = SCRATCH.with(|scratch| {
            let Ok(mut out) = scratch.try_borrow_mut() else {
                return false;
            };
            let encoded = ring::encode(
                parts,
                body,
                self.options.max_body_bytes,
                &self.seal,
                &mut out,
            );
            let kept = encoded
                && match self.ring.try_lock() {
                    Ok(mut ring) => ring.push(&out, remote, scheme, unix_ms),
                    Err(_) => false,
                };
            if out.capacity() > SCRATCH_KEEP {
                *out = Vec::new();
            }
            kept
        });
        let counter = if kept { &self.kept } else { &self.dropped };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The heads kept now, oldest first (copied, so the ring goes on meanwhile).
    pub fn heads(&self) -> Vec<Arc<SampledHead>> {
        let copied = self
            .ring
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .copy();
        copied
            .into_iter()
            .filter_map(|(entry, bytes)| {
                let (parts, body) = ring::decode(&bytes)?;
                Some(Arc::new(SampledHead {
                    head: SharedHead {
                        parts: Arc::new(parts),
                        remote: entry.remote,
                        scheme: entry.scheme,
                    },
                    body,
                    unix_ms: entry.unix_ms,
                }))
            })
            .collect()
    }

    /// Heads kept and dropped since the start, and the bytes held now.
    pub fn stats(&self) -> SampleStats {
        let ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        SampleStats {
            held: ring.len(),
            bytes: ring.held(),
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
    /// Heads picked but dropped (the ring was busy, or the head was larger than it).
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
