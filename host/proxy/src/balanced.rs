//! The upstream phase over a route's endpoints: pick one by the route's balance (skipping those
//! down, ejected or already tried), send, record the outcome for outlier ejection, and retry a
//! failure the route retries on another endpoint, within the retry budget. A retry happens
//! only before anything of an answer has reached the client (the failed answer is dropped
//! unread), only for idempotent methods unless the route says otherwise, and only when the
//! request's body was buffered (or there is none). When no endpoint can take a request,
//! routerd answers 503 itself, saying why.

use bytes::Bytes;
use http::Response;
use tracing::warn;

use super::answer::client_body_failed;
use super::body::{ClientBodyError, RequestBody};
use super::forward::{Exchange, Upstream};
use super::upstream::UpstreamPath;
use super::{Proxy, Trace};
use routerd_base::{Peer, ResponseBody};
use routerd_routing::endpoints::{Backends, RetryOn, RetryPolicy};

/// Where a balanced request goes, apart from the endpoint.
pub(super) struct Destination<'a> {
    pub(super) backends: &'a Backends,
    pub(super) path: &'a UpstreamPath<'a>,
    pub(super) query: Option<&'a str>,
    pub(super) timeout: Option<std::time::Duration>,
    pub(super) route: &'a str,
}

/// How one try went: whether it counts against the endpoint, and the retry reason, if any.
fn outcome(exchange: &Exchange, counts_5xx: bool) -> (bool, Option<RetryOn>) {
    match exchange {
        Exchange::Answered(resp, _) => {
            let status = resp.status().as_u16();
            (counts_5xx && status >= 500, RetryOn::for_status(status))
        }
        Exchange::TimedOut(_) => (true, Some(RetryOn::Timeout)),
        Exchange::Failed(e) => {
            if ClientBodyError::among_causes(e).is_some() {
                (false, None)
            } else if e.is_connect() {
                (true, Some(RetryOn::Connect))
            } else if matches!(e, super::clients::UpstreamError::Tls(_)) {
                // routerd's TLS settings, not the endpoint.
                (false, None)
            } else {
                (true, Some(RetryOn::Reset))
            }
        }
        Exchange::Unbuildable(_) => (false, None),
    }
}

impl Proxy {
    /// Sends the request to one of `dest`'s endpoints, retrying as the route allows.
    pub(super) async fn forward_balanced(
        &self,
        dest: Destination<'_>,
        parts: http::request::Parts,
        body: RequestBody,
        peer: Peer,
        trace: &mut Trace,
    ) -> Response<ResponseBody> {
        let backends = dest.backends;
        let key = backends.key(&parts.headers, peer.addr.ip());
        let upgrade = parts.headers.contains_key(http::header::UPGRADE);
        let retry = backends
            .retry
            .as_ref()
            .filter(|r| !upgrade && r.method_allowed(&parts.method));
        let Some(retry) = retry else {
            return self.try_once(&dest, key, parts, body, peer, trace).await;
        };
        // Boxed: retries are the cold path, kept out of every request's future.
        Box::pin(self.retrying(dest, retry, key, parts, body, peer, trace)).await
    }

    /// A request the route may retry: its body held when it is small enough to send again
    /// (else one try, streamed), then the tries.
    #[allow(clippy::too_many_arguments)]
    async fn retrying(
        &self,
        dest: Destination<'_>,
        retry: &RetryPolicy,
        key: Option<u64>,
        parts: http::request::Parts,
        body: RequestBody,
        peer: Peer,
        trace: &mut Trace,
    ) -> Response<ResponseBody> {
        let replay = match body.hold(retry.buffer_bytes as u64).await {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(body)) => return self.try_once(&dest, key, parts, body, peer, trace).await,
            Err(e) => return client_body_failed(&e, Some(dest.route), trace),
        };
        self.with_retries(&dest, retry, key, parts, replay, peer, trace)
            .await
    }

    /// One try, no retry: the request's body streams as received.
    async fn try_once(
        &self,
        dest: &Destination<'_>,
        key: Option<u64>,
        parts: http::request::Parts,
        body: RequestBody,
        peer: Peer,
        trace: &mut Trace,
    ) -> Response<ResponseBody> {
        let i = match dest.backends.pick(key, 0) {
            Ok(i) => i,
            Err(why) => return self.no_endpoint(dest.route, why, trace),
        };
        let _in_flight = dest.backends.endpoints[i].state.begin();
        let upstream = upstream_to(dest, i, dest.timeout);
        let exchange = self.exchange(&upstream, parts, body, &peer, trace).await;
        settle(dest, i, &exchange);
        self.answer(exchange, dest.route, trace)
    }

    /// Tries, and retries what the route retries, each try on an endpoint not tried yet when
    /// there is one.
    #[allow(clippy::too_many_arguments)]
    async fn with_retries(
        &self,
        dest: &Destination<'_>,
        retry: &RetryPolicy,
        key: Option<u64>,
        parts: http::request::Parts,
        replay: Bytes,
        peer: Peer,
        trace: &mut Trace,
    ) -> Response<ResponseBody> {
        let backends = dest.backends;
        let _request = retry.begin_request();
        let timeout = match (retry.per_try_timeout, dest.timeout) {
            (Some(t), Some(r)) => Some(t.min(r)),
            (t, r) => t.or(r),
        };
        let mut tried = 0u64;
        let mut _retry_slot = None;
        let mut attempt = 0;
        loop {
            // A retry prefers an endpoint not tried yet, but goes back to one rather than none.
            let picked = backends.pick(key, tried).or_else(|why| {
                if attempt > 0 {
                    backends.pick(key, 0)
                } else {
                    Err(why)
                }
            });
            let i = match picked {
                Ok(i) => i,
                Err(why) => return self.no_endpoint(dest.route, why, trace),
            };
            let in_flight = backends.endpoints[i].state.begin();
            let upstream = upstream_to(dest, i, timeout);
            let body = RequestBody::whole(replay.clone());
            let exchange = self
                .exchange(&upstream, parts.clone(), body, &peer, trace)
                .await;
            drop(in_flight);
            let reason = settle(dest, i, &exchange);
            let again = reason.filter(|r| retry.retries_on(*r) && attempt < retry.attempts);
            let Some(reason) = again else {
                return self.answer(exchange, dest.route, trace);
            };
            let Some(slot) = retry.begin_retry() else {
                backends.note_budget_exhausted();
                return self.answer(exchange, dest.route, trace);
            };
            backends.note_retry(reason);
            tracing::debug!(
                route = dest.route,
                endpoint = &*backends.endpoints[i].state.key,
                reason = reason.as_str(),
                "retrying"
            );
            _retry_slot = Some(slot);
            tried |= 1 << i;
            attempt += 1;
        }
    }
}

/// Where a try on endpoint `i` goes.
fn upstream_to<'a>(
    dest: &Destination<'a>,
    i: usize,
    timeout: Option<std::time::Duration>,
) -> Upstream<'a> {
    Upstream {
        target: &dest.backends.endpoints[i].target,
        path: dest.path,
        query: dest.query,
        timeout,
        route: dest.route,
    }
}

/// Records how a try on endpoint `i` went, for outlier ejection (an ejection is logged); the
/// retry reason it gives, if any. Plain functions around the exchange, not an async layer of
/// their own: every layer adds to the request's future.
fn settle(dest: &Destination<'_>, i: usize, exchange: &Exchange) -> Option<RetryOn> {
    let backends = dest.backends;
    let (failed, reason) = outcome(exchange, backends.counts_5xx());
    if backends.record(i, failed) {
        warn!(
            route = dest.route,
            endpoint = &*backends.endpoints[i].state.key,
            "endpoint ejected after failing in a row"
        );
    }
    reason
}
