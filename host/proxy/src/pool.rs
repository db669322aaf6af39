//! Plain HTTP/1.1 backend connections kept per thread and driven by the request that uses them.
//!
//! hyper-util's pooled client runs each backend connection as its own task: a request is handed
//! to that task through a channel, and the response head and every body chunk come back through
//! another, so each request costs several task wake-ups on top of its socket events. Here the
//! request's own task polls the connection (`hyper::client::conn::http1`) while it waits for the
//! head, and the response body polls it while the client reads: the socket's readiness is the
//! only wake-up. A connection goes back to its thread's idle list when its response has been
//! read to the end, and is taken again only after a poll shows it is still open. (A task per
//! connection, hyper's usual way, measured 4% less CPU per request at 32 client connections
//! but 8-12% more at 256, where the extra wake-up per event adds up; see RESULTS.md.)

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::Authority;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::body::RequestBody;

/// An idle connection unused this long is closed when it is next looked at.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle connections kept per backend and thread.
const MAX_IDLE_PER_BACKEND: usize = 256;

/// Why a backend request failed.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// The TCP connection could not be made.
    #[error("connecting to {authority}: {source}")]
    Connect {
        /// The backend.
        authority: String,
        /// Why.
        source: std::io::Error,
    },
    /// The TCP connection was not made within the connect timeout.
    #[error("connecting to {authority}: no connection within {timeout:?}")]
    ConnectTimeout {
        /// The backend.
        authority: String,
        /// The connect timeout.
        timeout: Duration,
    },
    /// The exchange failed (written, read, or parsed).
    #[error("{0}")]
    Http(#[source] hyper::Error),
}

/// One backend connection: the sending half and the connection state machine it feeds.
struct Conn {
    send: http1::SendRequest<RequestBody>,
    conn: http1::Connection<TokioIo<TcpStream>, RequestBody>,
    idle_since: Instant,
}

impl Conn {
    /// Polls the connection without registering for a wake-up: true while it is open and
    /// ready for a request.
    fn still_usable(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        if Pin::new(&mut self.conn).poll(&mut cx).is_ready() {
            return false;
        }
        self.send.is_ready()
    }
}

thread_local! {
    /// The idle connections of this thread, by backend authority. Boxed: a connection moves
    /// from here into a request's future and its response body, and back, as a pointer.
    #[allow(clippy::vec_box)]
    static IDLE: RefCell<HashMap<Box<str>, Vec<Box<Conn>>>> = RefCell::new(HashMap::new());
}

/// An idle connection to `authority` that is still open, if this thread has one.
fn checkout(authority: &str) -> Option<Box<Conn>> {
    IDLE.try_with(|idle| {
        let mut idle = idle.borrow_mut();
        let list = idle.get_mut(authority)?;
        // The most recently used first: the likeliest to be open, and warm in the caches.
        while let Some(mut c) = list.pop() {
            if c.idle_since.elapsed() < IDLE_TIMEOUT && c.still_usable() {
                return Some(c);
            }
        }
        None
    })
    .ok()
    .flatten()
}

/// Returns a connection whose exchange is over to this thread's idle list.
fn release(authority: &str, mut c: Box<Conn>) {
    if !c.still_usable() {
        return;
    }
    c.idle_since = Instant::now();
    // A thread being torn down keeps nothing.
    let _ = IDLE.try_with(|idle| {
        let mut idle = idle.borrow_mut();
        match idle.get_mut(authority) {
            Some(list) => {
                // Taking from the top leaves the oldest at the bottom: each release looks at
                // one of them, so connections a burst left behind (and the backend has closed
                // meanwhile) are closed here too, not kept until the thread ends.
                if list.first_mut().is_some_and(|oldest| {
                    oldest.idle_since.elapsed() >= IDLE_TIMEOUT || !oldest.still_usable()
                }) {
                    list.remove(0);
                }
                if list.len() < MAX_IDLE_PER_BACKEND {
                    list.push(c);
                }
            }
            None => {
                idle.insert(authority.into(), vec![c]);
            }
        }
    });
}

/// How new connections are made.
#[derive(Debug, Clone, Copy)]
pub struct ConnectOptions {
    /// The TCP connect timeout.
    pub timeout: Duration,
    /// Header fields accepted in a response head.
    pub max_headers: usize,
}

async fn connect(authority: &Authority, options: ConnectOptions) -> Result<Box<Conn>, PoolError> {
    let host = authority.host();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = authority.port_u16().unwrap_or(80);
    let stream = match tokio::time::timeout(options.timeout, TcpStream::connect((host, port))).await
    {
        Ok(Ok(s)) => s,
        Ok(Err(source)) => {
            return Err(PoolError::Connect {
                authority: authority.to_string(),
                source,
            });
        }
        Err(_) => {
            return Err(PoolError::ConnectTimeout {
                authority: authority.to_string(),
                timeout: options.timeout,
            });
        }
    };
    // Small heads and bodies go out at once, as with hyper-util's connector.
    let _ = stream.set_nodelay(true);
    let (send, conn) = http1::Builder::new()
        .max_headers(options.max_headers.max(1))
        .handshake(TokioIo::new(stream))
        .await
        .map_err(PoolError::Http)?;
    Ok(Box::new(Conn {
        send,
        conn,
        idle_since: Instant::now(),
    }))
}

/// Sends `req` (its URI in origin form or absolute; only the path and query are sent) to
/// `authority`, with `host` (the authority as a header value) for its Host header, on a
/// connection of this thread, made if none is idle. A request that an idle connection turned
/// out to be closed for before it was written is sent once more on a new one.
pub async fn send(
    authority: &Authority,
    host: &HeaderValue,
    mut req: Request<RequestBody>,
    options: ConnectOptions,
) -> Result<Response<PooledBody>, PoolError> {
    // conn::http1 writes the URI as given, and the Host header only if it is set.
    if req.uri().scheme().is_some()
        && let Some(pq) = req.uri().path_and_query().cloned()
    {
        *req.uri_mut() = http::Uri::from(pq);
    }
    req.headers_mut().insert(header::HOST, host.clone());
    let mut retried = false;
    loop {
        let idle = if retried {
            None
        } else {
            checkout(authority.as_str())
        };
        let reused = idle.is_some();
        let mut c = match idle {
            Some(c) => c,
            // Boxed: connecting is rare, and its future would enlarge every request's.
            None => Box::pin(connect(authority, options)).await?,
        };
        let mut response = std::pin::pin!(c.send.try_send_request(req));
        let mut conn = Some(c);
        let result = std::future::poll_fn(|cx| {
            if let Some(c) = conn.as_mut()
                && Pin::new(&mut c.conn).poll(cx).is_ready()
            {
                // The connection ended: dropping it answers the request with its error.
                conn = None;
            }
            match conn {
                // The response arrives only while the connection is polled, which this task
                // does: its own wake-up would be one extra poll of the task.
                Some(_) => response
                    .as_mut()
                    .poll(&mut Context::from_waker(Waker::noop())),
                None => response.as_mut().poll(cx),
            }
        })
        .await;
        match result {
            Ok(resp) => {
                // Without `conn`, it closed right after the head (`Connection: close`): the
                // body, if any, was read with it.
                let mut resp = resp.map(|body| PooledBody {
                    body,
                    conn,
                    authority: authority.clone(),
                });
                if resp.body().body.is_end_stream() {
                    resp.body_mut().release();
                }
                return Ok(resp);
            }
            Err(mut e) => match e.take_message() {
                // Not written: the idle connection was closed meanwhile; a new one gets it.
                Some(back) if reused => {
                    req = back;
                    retried = true;
                }
                _ => return Err(PoolError::Http(e.into_error())),
            },
        }
    }
}

/// A backend response body; reading it drives the connection, and the connection goes back to
/// the idle list once the body has been read to its end.
pub struct PooledBody {
    body: Incoming,
    conn: Option<Box<Conn>>,
    authority: Authority,
}

impl std::fmt::Debug for PooledBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledBody")
            .field("authority", &self.authority)
            .field("connected", &self.conn.is_some())
            .finish_non_exhaustive()
    }
}

impl PooledBody {
    fn release(&mut self) {
        if let Some(c) = self.conn.take() {
            release(self.authority.as_str(), c);
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let Some(c) = this.conn.as_mut() else {
            return Pin::new(&mut this.body).poll_frame(cx);
        };
        // Frames arrive only while the connection is polled, which this poll does.
        let mut quiet = Context::from_waker(Waker::noop());
        let mut frame = Pin::new(&mut this.body).poll_frame(&mut quiet);
        if frame.is_pending() {
            if Pin::new(&mut c.conn).poll(cx).is_ready() {
                // Ended: what the body still gets comes from the dropped connection.
                this.conn = None;
                return Pin::new(&mut this.body).poll_frame(cx);
            }
            frame = Pin::new(&mut this.body).poll_frame(&mut quiet);
        }
        match &frame {
            Poll::Ready(None) => this.release(),
            Poll::Ready(Some(Ok(_))) if this.body.is_end_stream() => this.release(),
            Poll::Ready(Some(Err(_))) => this.conn = None,
            _ => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // A body the client read to its end (hyper stops polling at the last frame when the
        // length says so) leaves a reusable connection; anything else closes it.
        if self.body.is_end_stream() {
            self.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const OPTIONS: ConnectOptions = ConnectOptions {
        timeout: Duration::from_secs(2),
        max_headers: 100,
    };

    /// A listener on 127.0.0.1 and its authority.
    async fn listen() -> (tokio::net::TcpListener, Authority) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let authority = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|e| panic!("addr: {e}"))
            .parse()
            .unwrap_or_else(|e| panic!("authority: {e}"));
        (listener, authority)
    }

    /// A backend that answers `body` to every request on keep-alive connections, counting the
    /// connections it accepted.
    async fn backend(body: &'static str) -> (Authority, Arc<AtomicUsize>) {
        let (listener, authority) = listen().await;
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_req| async move {
                        Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Full::new(
                            Bytes::from_static(body.as_bytes()),
                        )))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (authority, accepted)
    }

    fn get(path: &str) -> Request<RequestBody> {
        Request::get(path)
            .body(RequestBody::Replay {
                prefix: None,
                rest: None,
            })
            .unwrap_or_else(|e| panic!("request: {e}"))
    }

    async fn read(resp: Response<PooledBody>) -> String {
        let bytes = resp
            .into_body()
            .collect()
            .await
            .unwrap_or_else(|e| panic!("body: {e}"))
            .to_bytes();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[tokio::test]
    async fn sequential_requests_reuse_one_connection() {
        let (authority, accepted) = backend("hello").await;
        for _ in 0..20 {
            let resp = send(&authority, &host(&authority), get("/x"), OPTIONS)
                .await
                .unwrap_or_else(|e| panic!("send: {e}"));
            assert_eq!(resp.status(), 200);
            assert_eq!(read(resp).await, "hello");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_body_dropped_unread_closes_its_connection() {
        let (authority, accepted) = backend("hello").await;
        let first = send(&authority, &host(&authority), get("/x"), OPTIONS)
            .await
            .unwrap_or_else(|e| panic!("send: {e}"));
        drop(first);
        let second = send(&authority, &host(&authority), get("/x"), OPTIONS)
            .await
            .unwrap_or_else(|e| panic!("send: {e}"));
        assert_eq!(read(second).await, "hello");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    /// A backend that answers one request per connection and then closes it without saying
    /// so (no `Connection: close`), as a backend whose keep-alive timer fired does.
    async fn closing_backend() -> (Authority, Arc<AtomicUsize>) {
        let (listener, authority) = listen().await;
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let mut head = Vec::new();
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                });
            }
        });
        (authority, accepted)
    }

    #[tokio::test]
    async fn a_connection_the_backend_closed_while_idle_is_not_used() {
        let (authority, accepted) = closing_backend().await;
        for _ in 0..5 {
            let resp = send(&authority, &host(&authority), get("/x"), OPTIONS)
                .await
                .unwrap_or_else(|e| panic!("send: {e}"));
            assert_eq!(read(resp).await, "ok");
            // The backend closes the connection meanwhile.
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 5);
    }

    fn host(authority: &Authority) -> HeaderValue {
        HeaderValue::from_str(authority.as_str()).unwrap_or_else(|e| panic!("host: {e}"))
    }

    fn idle_count(authority: &Authority) -> usize {
        IDLE.with(|idle| idle.borrow().get(authority.as_str()).map_or(0, Vec::len))
    }

    #[tokio::test]
    async fn connections_a_burst_left_idle_are_swept_once_closed() {
        let (authority, _) = closing_backend().await;
        // Five at once: five connections, all idle afterwards.
        let host = host(&authority);
        let burst = (0..5).map(|_| send(&authority, &host, get("/x"), OPTIONS));
        for resp in futures_util::future::join_all(burst).await {
            let resp = resp.unwrap_or_else(|e| panic!("send: {e}"));
            assert_eq!(read(resp).await, "ok");
        }
        assert_eq!(idle_count(&authority), 5);
        // The backend closes them all; each new exchange sweeps one stale connection.
        tokio::time::sleep(Duration::from_millis(60)).await;
        let resp = send(&authority, &host, get("/x"), OPTIONS)
            .await
            .unwrap_or_else(|e| panic!("send: {e}"));
        assert_eq!(read(resp).await, "ok");
        assert!(idle_count(&authority) <= 1, "{}", idle_count(&authority));
    }

    #[tokio::test]
    async fn an_unreachable_backend_names_itself() {
        let (listener, authority) = listen().await;
        drop(listener);
        let e = send(&authority, &host(&authority), get("/x"), OPTIONS)
            .await
            .err()
            .map(|e| e.to_string());
        assert!(
            e.as_deref()
                .is_some_and(|e| e.starts_with(&format!("connecting to {authority}"))),
            "{e:?}"
        );
    }
}
