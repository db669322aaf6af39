//! The upstream phase: the backend request's head built from the client's, sent through the
//! route's client under the response timeout, and the backend's answer (or routerd's error
//! for what failed: the backend, TLS, a head over the limit, or the client's own body).

use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use tracing::warn;

use super::answer::client_body_failed;
use super::body::{ClientBodyError, RequestBody};
use super::clients::UpstreamError;
use super::spans::BackendSpan;
use super::upstream::{self, UpstreamPath};
use super::{Proxy, Trace, upgrade};
use routerd_base::Peer;
use routerd_base::ResponseBody;
use routerd_base::{error, error_chain};
use routerd_routing::Target;

/// Where a request goes: the target, the path and query as the filters left them, the
/// route's response timeout and its name (for errors and logs).
pub(super) struct Upstream<'a> {
    pub(super) target: &'a Target,
    pub(super) path: &'a UpstreamPath<'a>,
    pub(super) query: Option<&'a str>,
    pub(super) timeout: Option<Duration>,
    pub(super) route: &'a str,
}

/// A backend request's head, the client's side of an upgrade, and the try's span.
pub(super) type BackendHead = (http::request::Parts, Option<OnUpgrade>, Option<BackendSpan>);

/// One exchange with a backend: its answer (with the client's side of an upgrade), or what
/// failed before an answer head arrived.
pub(super) enum Exchange {
    /// The backend answered.
    Answered(Response<ResponseBody>, Option<OnUpgrade>),
    /// The backend request could not be built.
    Unbuildable(http::Error),
    /// No answer head within the deadline.
    TimedOut(Duration),
    /// The exchange failed.
    Failed(UpstreamError),
}

impl Proxy {
    /// The upstream phase: sends the request to `upstream` and answers with the backend's
    /// response, or with routerd's error for what went wrong on the way.
    pub(super) async fn forward(
        &self,
        upstream: Upstream<'_>,
        parts: http::request::Parts,
        body: RequestBody,
        peer: Peer,
        trace: &mut Trace,
    ) -> Response<ResponseBody> {
        let route = upstream.route;
        let exchange = self.exchange(&upstream, parts, body, &peer, trace).await;
        self.answer(exchange, route, trace)
    }

    /// Sends the request to `upstream` once, under the route's response timeout.
    pub(super) async fn exchange(
        &self,
        upstream: &Upstream<'_>,
        parts: http::request::Parts,
        body: RequestBody,
        peer: &Peer,
        trace: &mut Trace,
    ) -> Exchange {
        let (parts, client_upgrade, span) = match Self::upstream_head(upstream, parts, peer, trace)
        {
            Ok(head) => head,
            Err(e) => return Exchange::Unbuildable(e),
        };
        let limit = upstream.timeout.unwrap_or(self.response_timeout);
        let request = self.clients.send(
            upstream.target,
            Request::from_parts(parts, body),
            client_upgrade.is_some(),
        );
        let exchange = match tokio::time::timeout(limit, request).await {
            Ok(Ok(resp)) => Exchange::Answered(resp, client_upgrade),
            Ok(Err(e)) => Exchange::Failed(e),
            Err(_) => Exchange::TimedOut(limit),
        };
        if let Some(span) = span {
            span.end(match &exchange {
                Exchange::Answered(resp, _) => Ok(resp.status()),
                Exchange::Failed(e) if e.is_connect() => Err("connect"),
                Exchange::Failed(_) => Err("failed"),
                Exchange::TimedOut(_) => Err("timeout"),
                Exchange::Unbuildable(_) => Err("unbuildable"),
            });
        }
        exchange
    }

    /// The client's answer from an exchange: the backend's response, or routerd's error.
    pub(super) fn answer(
        &self,
        exchange: Exchange,
        route: &str,
        trace: &mut Trace,
    ) -> Response<ResponseBody> {
        match exchange {
            Exchange::Answered(resp, client_upgrade) => {
                self.backend_answer(Ok(resp), client_upgrade, route, trace)
            }
            Exchange::Failed(e) => self.backend_answer(Err(e), None, route, trace),
            Exchange::Unbuildable(e) => {
                warn!(route, error = %e, "cannot build the backend URI");
                error(
                    StatusCode::BAD_GATEWAY,
                    "cannot build the backend request",
                    Some(route),
                )
            }
            Exchange::TimedOut(limit) => {
                warn!(
                    route,
                    timeout_ms = limit.as_millis() as u64,
                    "backend timed out"
                );
                error(
                    StatusCode::GATEWAY_TIMEOUT,
                    "the backend did not answer in time",
                    Some(route),
                )
            }
        }
    }

    /// The client's answer from the backend's: its response (an upgrade spliced through), or
    /// routerd's error naming what failed, with a client's own fault told apart.
    fn backend_answer(
        &self,
        result: Result<Response<ResponseBody>, UpstreamError>,
        client_upgrade: Option<OnUpgrade>,
        route: &str,
        trace: &mut Trace,
    ) -> Response<ResponseBody> {
        match result {
            Ok(mut resp) => {
                if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                    let Some(client_upgrade) = client_upgrade else {
                        warn!(route, "the backend switched protocols without being asked");
                        return error(
                            StatusCode::BAD_GATEWAY,
                            "the backend switched protocols without being asked",
                            Some(route),
                        );
                    };
                    let backend_upgrade = hyper::upgrade::on(&mut resp);
                    upgrade::splice(
                        client_upgrade,
                        backend_upgrade,
                        self.upgrade_idle,
                        self.upgrades.clone(),
                    );
                    let protocol = resp.headers().get(header::UPGRADE).cloned();
                    upstream::remove_hop_by_hop(resp.headers_mut());
                    if let Some(protocol) = protocol {
                        upgrade::restore_headers(resp.headers_mut(), protocol);
                    }
                    return resp;
                }
                upstream::remove_hop_by_hop(resp.headers_mut());
                resp
            }
            Err(UpstreamError::Tls(e)) => {
                warn!(route, error = %e, "cannot set up TLS to the backend");
                error(
                    StatusCode::BAD_GATEWAY,
                    "cannot set up TLS to the backend",
                    Some(route),
                )
            }
            Err(e) if upstream::head_too_large(&e) => {
                warn!(route, error = %error_chain(&e), "backend response head over the limit (--max-response-headers)");
                error(
                    StatusCode::BAD_GATEWAY,
                    "backend response head too large",
                    Some(route),
                )
            }
            Err(e) => {
                if let Some(client) = ClientBodyError::among_causes(&e) {
                    return client_body_failed(client, Some(route), trace);
                }
                warn!(route, error = %error_chain(&e), "backend request failed");
                error(
                    StatusCode::BAD_GATEWAY,
                    "the backend is unreachable",
                    Some(route),
                )
            }
        }
    }

    /// The backend request's head: the URI for the target, hop-by-hop headers dropped (an
    /// upgrade's kept), forwarded headers added; with the client's side of an upgrade, and the
    /// try's span when the request is traced (its context written onto the head).
    pub(super) fn upstream_head(
        upstream: &Upstream<'_>,
        mut parts: http::request::Parts,
        peer: &Peer,
        trace: &mut Trace,
    ) -> Result<BackendHead, http::Error> {
        let Upstream {
            target,
            path,
            query,
            ..
        } = *upstream;
        // An upgrade (WebSocket, ...) keeps its two hop-by-hop headers, on HTTP/1.1 only.
        let upgrade = (parts.version == http::Version::HTTP_11)
            .then(|| upgrade::requested(&parts.headers))
            .flatten();
        // The plain HTTP/1.1 pool writes the path and query only; the other clients take an
        // absolute URI.
        let origin_form = target.connection.is_none() && upgrade.is_none();
        let uri = upstream::upstream_uri(target, path, query, &parts.uri, origin_form)?;
        // The Host as the client sent it (HTTP/2: the authority), port included.
        let host = parts.headers.get(header::HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        let client_upgrade = upgrade
            .as_ref()
            .and_then(|_| parts.extensions.remove::<OnUpgrade>());
        upstream::remove_hop_by_hop(&mut parts.headers);
        if let Some(protocol) = upgrade {
            upgrade::restore_headers(&mut parts.headers, protocol);
        }
        upstream::add_forwarded(&mut parts.headers, peer.addr.ip(), peer.scheme(), host);
        // The client sets Host from the URI: the backend sees its own authority.
        parts.headers.remove(header::HOST);
        if trace.on {
            trace.upstream = Some(target.authority.clone());
        }
        parts.uri = uri;
        parts.version = if target.connection.as_ref().is_some_and(|c| c.h2) {
            http::Version::HTTP_2
        } else {
            http::Version::HTTP_11
        };
        let span = trace.span.as_ref().map(|s| {
            s.backend(
                &parts.method,
                &parts.uri,
                &target.authority,
                &mut parts.headers,
            )
        });
        Ok((parts, client_upgrade, span))
    }
}
