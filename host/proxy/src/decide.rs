//! The decide phase: the route for a request, running plugin predicates and reading the body
//! only as the decision reaches a route that needs them.

use std::sync::Arc;

use http::Response;
use hyper::body::Incoming;

use super::answer::client_body_failed;
use super::body::{self, RequestBody};
use super::{Proxy, Trace};
use routerd_base::Peer;
use routerd_base::ResponseBody;
use routerd_plugins::Plugin;
use routerd_routing::{
    BufferedBody, Decision, PredicateResults, RequestView, RouteTable, SharedHead, request_host,
};

/// The request head while the route is chosen: owned, until a plugin predicate needs it shared
/// (then it moves into an `Arc` once, and back out after the decision unless a plugin kept it).
enum Head {
    Owned(http::request::Parts),
    Shared(SharedHead),
}

impl Head {
    fn view<'a>(&'a self, peer: &Peer, body: Option<&'a BufferedBody>) -> RequestView<'a> {
        match self {
            Head::Owned(p) => RequestView {
                method: &p.method,
                path: p.uri.path(),
                query: p.uri.query(),
                host: request_host(&p.uri, &p.headers),
                headers: &p.headers,
                remote: peer.addr.ip(),
                body,
                shared: None,
            },
            Head::Shared(s) => s.view(body),
        }
    }

    /// The head as plugins take it.
    fn into_shared(self, peer: &Peer) -> SharedHead {
        match self {
            Head::Owned(parts) => SharedHead {
                parts: Arc::new(parts),
                remote: peer.addr,
                scheme: peer.scheme(),
            },
            Head::Shared(s) => s,
        }
    }

    fn parts(&self) -> &http::request::Parts {
        match self {
            Head::Owned(p) => p,
            Head::Shared(s) => &s.parts,
        }
    }

    fn into_parts(self) -> http::request::Parts {
        match self {
            Head::Owned(p) => p,
            Head::Shared(s) => Arc::try_unwrap(s.parts).unwrap_or_else(|shared| (*shared).clone()),
        }
    }
}

/// What the decide phase hands on: the decision, the request head, and the body to forward
/// (which replays what a body matcher read).
pub(super) struct Decided {
    pub(super) decision: Decision,
    pub(super) parts: http::request::Parts,
    pub(super) body: RequestBody,
}

impl Proxy {
    /// Decides, running plugin predicates and reading the body as the decision needs them; an
    /// error answer when the client's body could not be read.
    pub(super) async fn decide(
        &self,
        table: &RouteTable<Plugin>,
        parts: http::request::Parts,
        body: Incoming,
        peer: &Peer,
        trace: &mut Trace,
    ) -> Result<Decided, Response<ResponseBody>> {
        let mut head = Head::Owned(parts);
        let mut body = RequestBody::Streaming(body);
        let mut buffered: Option<BufferedBody> = None;
        let mut predicates = PredicateResults::default();
        loop {
            match table.decide(&head.view(peer, buffered.as_ref()), &predicates) {
                Decision::NeedPredicates { route, toggled } => {
                    let shared = head.into_shared(peer);
                    trace
                        .plugin(Box::pin(table.run_predicates(
                            route,
                            toggled,
                            &shared.view(buffered.as_ref()),
                            &mut predicates,
                        )))
                        .await;
                    head = Head::Shared(shared);
                }
                Decision::NeedBody => {
                    match Box::pin(body::read_prefix(body, table.max_body_bytes())).await {
                        Ok((bytes, too_large, replay)) => {
                            body = replay;
                            buffered = Some(BufferedBody::new(bytes, too_large));
                        }
                        Err(e) => return Err(client_body_failed(&e, None, trace)),
                    }
                }
                decision => {
                    if let Some(sample) = &self.sample
                        && sample.pick()
                    {
                        sample.keep(head.parts(), peer.addr, peer.scheme(), buffered.as_ref());
                    }
                    return Ok(Decided {
                        decision,
                        parts: head.into_parts(),
                        body,
                    });
                }
            }
        }
    }
}
