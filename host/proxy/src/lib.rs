//! The request path, as named phases around one request: decide (`decide`: the route, with
//! plugin predicates and body matchers as the decision reaches them), the route's request
//! filters, the upstream request (`forward`) and the response filters (`route`), then the log
//! (`Proxy::handle`). routerd's own answers (errors, redirects, 405/406/415, its 503 under
//! plugin pressure, a broken client body) are in `answer`.
//!
//! Around the request path, the rest of the data plane: `server` (listeners, connection caps,
//! client timeouts, TLS, graceful shutdown; it knows only its `Handler` trait, which the proxy
//! implements), `clients` and `pool` (backend connections), `metrics` and `access_log` (what the
//! request path records; neither reads the proxy back).

pub mod access_log;
mod answer;
mod balanced;
pub mod body;
pub mod clients;
mod compress;
mod decide;
mod edits;
mod forward;
pub mod metrics;
mod mirror;
pub mod pool;
mod route;
pub mod route_counters;
pub mod sample;
pub mod server;
pub mod spans;
pub mod upgrade;
pub mod upstream;

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::access_log::{AccessLog, Record};
use crate::metrics::Metrics;
use clients::UpstreamClients;

/// The most mirrored copies in flight at once; past it, copies are dropped (and counted).
pub const MIRROR_IN_FLIGHT: usize = 256;
use decide::Decided;
use forward::Upstream;
use routerd_base::{Peer, ResponseBody, error};
use routerd_plugins::Phase;
use routerd_plugins::Plugin;
use routerd_routing::{Decision, PublishedTable, RouteTable};
use upstream::{UpstreamOptions, UpstreamPath};

/// The proxy: the current table and the upstream client.
pub struct Proxy {
    table: Arc<PublishedTable<Plugin>>,
    clients: Arc<UpstreamClients>,
    /// Mirrored copies in flight, bounded.
    mirror_slots: Arc<tokio::sync::Semaphore>,
    response_timeout: std::time::Duration,
    upgrade_idle: std::time::Duration,
    upgrades: crate::metrics::UpgradeStats,
    metrics: Option<Arc<Metrics>>,
    access_log: Option<Arc<AccessLog>>,
    tracing: Option<Arc<spans::Tracing>>,
    /// Recent request heads for dry runs, when sampling is on.
    sample: Option<Arc<sample::HeadSample>>,
}

/// What a request's handling learns for its access-log line, and its span when traced.
#[derive(Debug, Default)]
struct Trace {
    /// Whether anything reads it (the access log is on); otherwise nothing is measured.
    on: bool,
    upstream: Option<http::uri::Authority>,
    plugin_time: std::time::Duration,
    /// What went wrong, when routerd or the client (not the route or backend) decided the
    /// answer: `overloaded`, ...
    error: Option<&'static str>,
    /// The request's span, when tracing is on.
    span: Option<Box<spans::RequestSpan>>,
}

impl Trace {
    /// Runs a plugin call, adding its time.
    async fn plugin<T>(&mut self, call: impl Future<Output = T>) -> T {
        if !self.on {
            return call.await;
        }
        let started = std::time::Instant::now();
        let out = call.await;
        self.plugin_time += started.elapsed();
        out
    }
}

impl Proxy {
    /// A proxy serving `table`.
    pub fn new(
        table: Arc<PublishedTable<Plugin>>,
        upstream: UpstreamOptions,
        metrics: Option<Arc<Metrics>>,
    ) -> Self {
        Proxy {
            table,
            clients: Arc::new(UpstreamClients::new(&upstream, 1)),
            mirror_slots: Arc::new(tokio::sync::Semaphore::new(MIRROR_IN_FLIGHT)),
            response_timeout: upstream.response,
            upgrade_idle: upstream.upgrade_idle,
            upgrades: metrics.as_ref().map(|m| m.upgrades()).unwrap_or_default(),
            metrics,
            access_log: None,
            tracing: None,
            sample: None,
        }
    }

    /// Gives each of `workers` its own pool of plain backend connections.
    pub fn with_workers(mut self, workers: usize) -> Self {
        self.clients = Arc::new(UpstreamClients::new(&self.clients.options(), workers));
        self
    }

    /// Writes a line per request to `log`.
    pub fn with_access_log(mut self, log: Option<Arc<AccessLog>>) -> Self {
        self.access_log = log;
        self
    }

    /// Traces requests with `tracing`.
    pub fn with_tracing(mut self, tracing: Option<spans::Tracing>) -> Self {
        self.tracing = tracing.map(Arc::new);
        self
    }

    /// Keeps a sample of request heads in `sample`.
    pub fn with_sample(mut self, sample: Option<Arc<sample::HeadSample>>) -> Self {
        self.sample = sample;
        self
    }

    /// The current table.
    pub fn table(&self) -> Arc<RouteTable<Plugin>> {
        self.table.current()
    }

    /// Handles one request. Never fails: every error becomes a response.
    pub async fn handle(&self, req: Request<Incoming>, peer: Peer) -> Response<ResponseBody> {
        let started = std::time::Instant::now();
        let logged = self.access_log.as_ref().map(|_| {
            let path = req
                .uri()
                .path_and_query()
                .map_or_else(|| req.uri().path().to_owned(), |pq| pq.as_str().to_owned());
            (std::time::SystemTime::now(), req.method().clone(), path)
        });
        let mut trace = Trace {
            on: logged.is_some(),
            span: self.tracing.as_ref().map(|t| t.begin(&req, &peer)),
            ..Trace::default()
        };
        let journal = trace.span.as_ref().and_then(|s| s.journal());
        let (resp, route) = match journal {
            None => self.dispatch(req, peer, &mut trace).await,
            // Boxed: a sampled request's path, kept out of every request's future.
            Some(journal) => {
                let traced = self.dispatch(req, peer, &mut trace);
                Box::pin(routerd_plugins::journal::recording(journal, traced)).await
            }
        };
        if let Some(span) = trace.span.take() {
            span.finish(resp.status(), &route);
        }
        if let Some(m) = &self.metrics {
            m.request(&route, resp.status().as_u16(), started.elapsed());
        }
        match (&self.access_log, logged) {
            (Some(log), Some((time, method, path))) => {
                let record = Record {
                    time,
                    remote: peer.addr,
                    method,
                    path,
                    status: resp.status().as_u16(),
                    route,
                    upstream: trace.upstream,
                    plugin_time: trace.plugin_time,
                    error: trace.error,
                };
                resp.map(|body| log.wrap(record, started, body))
            }
            _ => resp,
        }
    }

    /// Answers a request; also says which route did (`default_url`, or `none`).
    async fn dispatch(
        &self,
        req: Request<Incoming>,
        peer: Peer,
        trace: &mut Trace,
    ) -> (Response<ResponseBody>, Arc<str>) {
        let table = self.table.current();
        let (parts, body) = req.into_parts();
        if let Some(span) = &mut trace.span {
            span.deciding();
        }
        let Decided {
            decision,
            parts,
            body,
        } = match self.decide(&table, parts, body, &peer, trace).await {
            Ok(decided) => decided,
            Err(answer) => {
                if let Some(span) = &mut trace.span {
                    span.decided("client_body_failed");
                }
                return (answer, Arc::from("none"));
            }
        };
        let route: Arc<str> = match &decision {
            Decision::Route(id) | Decision::Overloaded { route: id, .. } => {
                table.route(*id).name.clone()
            }
            Decision::DefaultUrl => Arc::from("default_url"),
            _ => Arc::from("none"),
        };
        if let Some(span) = &mut trace.span {
            span.decided(decision_outcome(&decision, &route));
        }
        let resp = match decision {
            Decision::Route(id) => self.run_route(&table, id, parts, body, peer, trace).await,
            Decision::DefaultUrl => match table.default_url() {
                Some(target) => {
                    let uri = parts.uri.clone();
                    let path = UpstreamPath::Joined(uri.path().into());
                    let upstream = Upstream {
                        target,
                        path: &path,
                        query: uri.query(),
                        timeout: None,
                        route: "default_url",
                    };
                    self.forward(upstream, parts, body, peer, trace).await
                }
                None => error(StatusCode::NOT_FOUND, "no route matches", None),
            },
            Decision::Overloaded { plugin, .. } => {
                self.overloaded(&route, &plugin, Phase::Predicate, trace)
            }
            other => answer::for_decision(other),
        };
        (resp, route)
    }
}

/// What a decision span says was decided: the route, or the answer routerd gives itself.
fn decision_outcome<'a>(decision: &Decision, route: &'a str) -> &'a str {
    match decision {
        Decision::Route(_) | Decision::DefaultUrl => route,
        Decision::Overloaded { .. } => "overloaded",
        Decision::MethodNotAllowed(_) => "405",
        Decision::Options(_) => "options",
        Decision::NotAcceptable(_) => "406",
        Decision::UnsupportedMediaType(_) => "415",
        Decision::Redirect(..) => "redirect",
        _ => "404",
    }
}

/// The proxy is what its listeners serve.
impl server::Handler for Proxy {
    async fn call(self: Arc<Self>, req: Request<Incoming>, peer: Peer) -> Response<ResponseBody> {
        self.handle(req, peer).await
    }
}

#[cfg(test)]
mod tests {
    //! Plugin results come from untrusted guests: any header names, values and status codes
    //! must decode without a panic, keep what is valid and drop what is not.
    use super::answer::reply_response;
    use super::edits::apply_ops;
    use http::StatusCode;
    use http::header::HeaderValue;
    use proptest::prelude::*;
    use routerd_routing::{HeaderOp, Reply};

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z0-9-]{1,12}",
            "[ -~]{0,16}",
            any::<String>(),
            Just(String::new()),
            Just("bad\r\nheader".to_owned()),
        ]
    }

    fn op() -> impl Strategy<Value = HeaderOp> {
        prop_oneof![
            (text(), text()).prop_map(|(n, v)| HeaderOp::Set(n, v)),
            (text(), text()).prop_map(|(n, v)| HeaderOp::Append(n, v)),
            text().prop_map(HeaderOp::Remove),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn header_ops_keep_the_valid_and_skip_the_rest(ops in proptest::collection::vec(op(), 0..16)) {
            let mut headers = http::HeaderMap::new();
            apply_ops(&mut headers, ops.clone(), "fuzz");
            // The last op on a valid name decides whether it is there.
            if let Some(HeaderOp::Set(n, v)) = ops.last()
                && let (Ok(name), Ok(value)) =
                    (http::HeaderName::from_bytes(n.as_bytes()), HeaderValue::from_str(v))
            {
                prop_assert_eq!(headers.get(&name), Some(&value));
            }
            if let Some(HeaderOp::Remove(n)) = ops.last()
                && let Ok(name) = http::HeaderName::from_bytes(n.as_bytes())
            {
                prop_assert!(headers.get(&name).is_none());
            }
        }

        #[test]
        fn replies_decode_to_their_status_or_500(
            status in any::<u16>(),
            headers in proptest::collection::vec((text(), text()), 0..8),
            body in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let resp = reply_response(Reply { status, headers, body }, "fuzz");
            let want = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            prop_assert_eq!(resp.status(), want);
        }
    }
}

#[cfg(test)]
mod future_size {
    //! hyper moves a connection's request future into place on every request, and the memcpy
    //! showed in profiles while plugin and body-reading futures were stored inline (12.7 KB).
    //! Those paths are boxed now; this keeps the common path's future small.
    use super::*;

    fn output_size<A, B, C, R>(_: impl Fn(A, B, C) -> R) -> usize {
        std::mem::size_of::<R>()
    }

    #[test]
    fn the_request_future_stays_small() {
        let size = output_size(<Proxy as crate::server::Handler>::call);
        // 6 KiB, and 32 bytes for tracing's two boxes (the request's span and a backend
        // try's), which live across awaits whether tracing is on or not.
        assert!(size <= 6 * 1024 + 32, "the request future is {size} bytes");
    }
}
