//! Outbound HTTP for plugins: the `wasi:http/outgoing-handler` a plugin calls. A request goes
//! out only to an origin (scheme, host, port) on the plugin's allow list (settings
//! `http.allow`), checked before any connection is made; it runs on one pooled client shared by
//! every plugin, is bounded by the call's deadline and its response body by a size cap, and is
//! counted per plugin. A plugin without an allow list has no network.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::{Scheme, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// A plugin's outbound HTTP settings (`http` in `NAME.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundSettings {
    /// Origins the plugin may call: `scheme://host[:port]`, the host exact or `*.domain` for
    /// its subdomains; the port defaults to the scheme's. Empty: no network.
    pub allow: Vec<String>,
    /// The largest response body a plugin may read, in bytes; a longer one ends in an error.
    pub max_response_bytes: u64,
}

impl Default for OutboundSettings {
    fn default() -> Self {
        OutboundSettings {
            allow: Vec::new(),
            max_response_bytes: 1 << 20,
        }
    }
}

/// One allowed origin.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    https: bool,
    /// Lowercase; a leading `*.` matches any subdomain (not the domain itself).
    host: String,
    port: u16,
}

impl Origin {
    fn parse(entry: &str) -> Result<Origin, String> {
        let uri: Uri = entry
            .parse()
            .map_err(|e| format!("{entry:?} is not a URL: {e}"))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(format!("{entry:?}: the scheme must be http or https")),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| format!("{entry:?}: no host"))?;
        if authority.as_str().contains('@') {
            return Err(format!("{entry:?}: user info is not allowed"));
        }
        if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
            return Err(format!(
                "{entry:?}: give an origin (scheme://host[:port]) without a path or query"
            ));
        }
        let host = authority.host().to_ascii_lowercase();
        if host.is_empty() || host.strip_prefix("*.").is_some_and(str::is_empty) {
            return Err(format!("{entry:?}: no host"));
        }
        Ok(Origin {
            https,
            port: authority.port_u16().unwrap_or(if https { 443 } else { 80 }),
            host,
        })
    }

    fn allows(&self, https: bool, host: &str, port: u16) -> bool {
        if self.https != https || self.port != port {
            return false;
        }
        match self.host.strip_prefix("*.") {
            Some(domain) => host
                .strip_suffix(domain)
                .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
            None => self.host == host,
        }
    }
}

/// Where a plugin may send requests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList(Vec<Origin>);

impl AllowList {
    /// The list in `settings`, every entry checked (the error names the entry).
    pub fn parse(allow: &[String]) -> Result<AllowList, String> {
        allow
            .iter()
            .enumerate()
            .map(|(i, e)| Origin::parse(e).map_err(|m| format!("http.allow[{i}]: {m}")))
            .collect::<Result<_, _>>()
            .map(AllowList)
    }

    /// Whether `uri` is on the list.
    pub fn allows(&self, uri: &Uri) -> bool {
        let https = match uri.scheme() {
            Some(s) if *s == Scheme::HTTPS => true,
            Some(s) if *s == Scheme::HTTP => false,
            _ => return false,
        };
        let Some(authority) = uri.authority() else {
            return false;
        };
        let host = authority.host().to_ascii_lowercase();
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        self.0.iter().any(|o| o.allows(https, &host, port))
    }

    /// Whether nothing is allowed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// How an outbound request ended, counted in `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboundOutcome {
    /// A response head arrived.
    Answered,
    /// Not on the allow list: refused before connecting.
    Denied,
    /// Connecting or the exchange failed.
    Failed,
    /// The call's deadline came first.
    TimedOut,
}

impl OutboundOutcome {
    /// Every outcome, in counter order.
    pub const ALL: [OutboundOutcome; 4] = [
        OutboundOutcome::Answered,
        OutboundOutcome::Denied,
        OutboundOutcome::Failed,
        OutboundOutcome::TimedOut,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            OutboundOutcome::Answered => "answered",
            OutboundOutcome::Denied => "denied",
            OutboundOutcome::Failed => "failed",
            OutboundOutcome::TimedOut => "timed_out",
        }
    }
}

/// A plugin's outbound counters (kept across versions like its other counters).
#[derive(Debug, Default)]
pub struct OutboundStats {
    outcomes: [AtomicU64; 4],
    /// Responses cut at the size cap.
    pub too_large: AtomicU64,
    /// Microseconds from send to response head, summed over answered requests.
    pub wait_micros: AtomicU64,
}

impl OutboundStats {
    /// Requests that ended in `outcome`.
    pub fn count(&self, outcome: OutboundOutcome) -> u64 {
        self.outcomes[outcome as usize].load(Ordering::Relaxed)
    }

    fn add(&self, outcome: OutboundOutcome) {
        self.outcomes[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// The pooled client every plugin's outbound requests share: HTTP/1.1 and TLS (Mozilla's
/// roots) with keep-alive.
#[derive(Clone)]
pub struct OutboundClient(Client<HttpsConnector<HttpConnector>, WasiBody>);

impl std::fmt::Debug for OutboundClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OutboundClient")
    }
}

impl OutboundClient {
    /// A new client (its pool starts empty).
    pub fn new() -> Result<OutboundClient, rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .build(connector);
        Ok(OutboundClient(client))
    }
}

/// What one plugin's outbound requests go by: shared by its instances.
#[derive(Debug)]
pub struct OutboundPolicy {
    plugin: Arc<str>,
    allow: AllowList,
    max_response_bytes: u64,
    /// `None` when TLS could not be set up: every request fails (routerd's fault, logged).
    client: Option<OutboundClient>,
    /// Its counters (its plugin name's, kept across versions).
    pub(crate) stats: Arc<OutboundStats>,
}

impl OutboundPolicy {
    /// The policy for `plugin`.
    pub fn new(
        plugin: Arc<str>,
        allow: AllowList,
        max_response_bytes: u64,
        client: Option<OutboundClient>,
        stats: Arc<OutboundStats>,
    ) -> OutboundPolicy {
        OutboundPolicy {
            plugin,
            allow,
            max_response_bytes,
            client,
            stats,
        }
    }
}

/// The `wasi:http` hooks of one instance: its plugin's policy and the deadline of the call in
/// progress.
pub(crate) struct OutboundHooks {
    pub(crate) policy: Arc<OutboundPolicy>,
    pub(crate) deadline: Instant,
}

/// An outgoing request's response, as `wasi:http` hooks return it.
type SendResult = wasmtime_wasi_http::Result<(
    http::Response<WasiBody>,
    Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
)>;

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        let policy = self.policy.clone();
        let deadline = self.deadline;
        Box::new(async move { policy.send(request, options, deadline).await })
    }
}

impl OutboundPolicy {
    async fn send(
        &self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        deadline: Instant,
    ) -> SendResult {
        if !self.allow.allows(request.uri()) {
            self.stats.add(OutboundOutcome::Denied);
            tracing::warn!(
                plugin = &*self.plugin,
                uri = %request.uri(),
                "plugin request refused: not on the plugin's http.allow list"
            );
            return Err(HttpError::HttpRequestDenied);
        }
        // The wait may take nine tenths of what is left of the call's deadline: the guest keeps
        // the rest to act on a timeout (fail open or closed) instead of being stopped. Its own
        // first-byte timeout, if shorter, ends the wait first.
        let now = Instant::now();
        let left = deadline.saturating_duration_since(now);
        let until = options
            .and_then(|o| o.first_byte_timeout)
            .map_or(now + left * 9 / 10, |t| (now + left * 9 / 10).min(now + t));
        let Some(client) = &self.client else {
            self.stats.add(OutboundOutcome::Failed);
            return Err(HttpError::InternalError(Some(
                "routerd's outbound HTTP client is unavailable (see its log)".into(),
            )));
        };
        let started = Instant::now();
        let answer = tokio::time::timeout_at(until.into(), client.0.request(request)).await;
        let response = match answer {
            Err(_) => {
                self.stats.add(OutboundOutcome::TimedOut);
                return Err(HttpError::HttpResponseTimeout);
            }
            Ok(Err(e)) => {
                self.stats.add(OutboundOutcome::Failed);
                tracing::debug!(plugin = &*self.plugin, "plugin request failed: {e}");
                return Err(if e.is_connect() {
                    HttpError::ConnectionRefused
                } else {
                    HttpError::HttpProtocolError
                });
            }
            Ok(Ok(r)) => r,
        };
        self.stats.add(OutboundOutcome::Answered);
        self.stats
            .wait_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        let cap = self.max_response_bytes;
        let stats = self.stats.clone();
        let response = response.map(|body| {
            Capped {
                inner: body,
                left: cap,
                cap,
                stats,
            }
            .boxed_unsync()
        });
        let done: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send> =
            Box::new(std::future::ready(Ok(())));
        Ok((response, done))
    }
}

pin_project_lite::pin_project! {
    /// A response body that ends in an error past `cap` bytes.
    struct Capped {
        #[pin]
        inner: hyper::body::Incoming,
        left: u64,
        cap: u64,
        stats: Arc<OutboundStats>,
    }
}

impl Body for Capped {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    if n > *this.left {
                        this.stats.too_large.fetch_add(1, Ordering::Relaxed);
                        *this.left = 0;
                        return Poll::Ready(Some(Err(HttpError::HttpResponseBodySize(Some(
                            *this.cap,
                        )))));
                    }
                    *this.left -= n;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(HttpError::Hyper(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> AllowList {
        let entries: Vec<String> = entries.iter().map(|s| s.to_string()).collect();
        AllowList::parse(&entries).unwrap_or_else(|e| panic!("{e}"))
    }

    fn uri(s: &str) -> Uri {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn origins_match_by_scheme_host_and_port() {
        let l = list(&[
            "http://127.0.0.1:8081",
            "https://auth.example.com",
            "https://*.svc.test",
        ]);
        assert!(l.allows(&uri("http://127.0.0.1:8081/check?x=1")));
        assert!(!l.allows(&uri("http://127.0.0.1:8082/check")), "port");
        assert!(!l.allows(&uri("https://127.0.0.1:8081/")), "scheme");
        assert!(l.allows(&uri("https://AUTH.example.com:443/a")));
        assert!(
            !l.allows(&uri("http://auth.example.com/a")),
            "default port 80"
        );
        assert!(!l.allows(&uri("https://evil-auth.example.com/")));
        assert!(l.allows(&uri("https://a.b.svc.test/")));
        assert!(
            !l.allows(&uri("https://svc.test/")),
            "the wildcard wants a subdomain"
        );
        assert!(!l.allows(&uri("https://xsvc.test/")));
        assert!(!list(&[]).allows(&uri("http://127.0.0.1/")));
    }

    #[test]
    fn bad_entries_are_named() {
        for (entry, says) in [
            ("ftp://x", "scheme"),
            ("http://x/path", "without a path"),
            ("127.0.0.1:80", "scheme"),
            ("http://u:p@x", "user info"),
        ] {
            let err = AllowList::parse(&["http://ok".into(), entry.into()]).err();
            assert!(
                err.as_deref()
                    .is_some_and(|e| e.starts_with("http.allow[1]") && e.contains(says)),
                "{entry}: {err:?}"
            );
        }
    }
}
