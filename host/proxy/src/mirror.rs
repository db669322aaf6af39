//! Mirroring: a copy of a request (its head as the filters left it, and its body when there is
//! none or it is small enough to hold) sent to the route's mirror in a task of its own. The
//! client's request never waits for the copy and never sees its answer, which is read and
//! dropped. Copies in flight are bounded ([`crate::MIRROR_IN_FLIGHT`]); one that finds no room,
//! or a request whose body cannot be held, is dropped and counted.

use std::sync::atomic::Ordering;

use http::Request;
use http_body_util::BodyExt;

use super::Proxy;
use super::Trace;
use super::body::{ClientBodyError, RequestBody};
use super::forward::Upstream;
use super::upstream::UpstreamPath;
use routerd_base::Peer;
use routerd_routing::mirror::Mirror;

/// The largest request body a mirrored request carries along.
pub const MIRROR_BODY_BYTES: u64 = 64 << 10;

impl Proxy {
    /// Sends a copy of the request to `mirror` if this request is one of its share; the body
    /// for the primary request comes back (read into memory when the copy needed it), or the
    /// client's body error met while reading it.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn mirror(
        &self,
        mirror: &Mirror,
        route: &str,
        path: &UpstreamPath<'_>,
        query: Option<&str>,
        parts: &http::request::Parts,
        body: RequestBody,
        peer: &Peer,
    ) -> Result<RequestBody, ClientBodyError> {
        if !mirror.take() {
            return Ok(body);
        }
        let bytes = match body.hold(MIRROR_BODY_BYTES).await? {
            Ok(bytes) => bytes,
            Err(body) => {
                mirror.dropped.fetch_add(1, Ordering::Relaxed);
                return Ok(body);
            }
        };
        let body = RequestBody::whole(bytes.clone());
        let Ok(slot) = self.mirror_slots.clone().try_acquire_owned() else {
            mirror.dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(body);
        };
        let upstream = Upstream {
            target: &mirror.target,
            path,
            query,
            timeout: None,
            route,
        };
        // The copy's head, built like the primary's but traced nowhere.
        let head = Self::upstream_head(&upstream, parts.clone(), peer, &mut Trace::default());
        let Ok((head, _, _)) = head else {
            mirror.dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(body);
        };
        mirror.sent.fetch_add(1, Ordering::Relaxed);
        let clients = self.clients.clone();
        let target = mirror.target.clone();
        let limit = self.response_timeout;
        let copy = RequestBody::whole(bytes);
        let failed = mirror.failed.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let sent = clients.send(&target, Request::from_parts(head, copy), false);
            let ok = match tokio::time::timeout(limit, sent).await {
                Ok(Ok(resp)) => resp.into_body().collect().await.is_ok(),
                _ => false,
            };
            if !ok {
                failed.fetch_add(1, Ordering::Relaxed);
            }
        });
        Ok(body)
    }
}
