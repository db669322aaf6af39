//! Listeners: accept loops serving HTTP/1.1 and h2 (h2c by prior knowledge, or TLS with
//! ALPN through [`tls`]) with hyper-util, a cap on open connections (beyond it, new ones wait
//! unserved), the client-side timeouts of [`conn`], and a graceful shutdown that stops
//! accepting, lets in-flight requests finish, then returns. [`workers`] runs one accept loop
//! per thread.

pub mod conn;
pub mod tls;
pub mod workers;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

use conn::{ConnClock, ConnTimeouts, TimedIo, TrackedBody};
use routerd_base::{Peer, ResponseBody};

/// hyper's HTTP/1.1 read buffer, the largest request head it takes.
const H1_HEAD_BUFFER_BYTES: u32 = 8192 + 4096 * 100;

/// How a listener treats its clients.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// Client-side timeouts.
    pub timeouts: ConnTimeouts,
    /// Connections open at once.
    pub max_connections: usize,
    /// How long shutdown waits for open connections.
    pub drain: Duration,
    /// Header fields in a request head; a request with more is answered 431 (JSON) on
    /// HTTP/1.1 and h2 alike.
    pub max_request_headers: usize,
}

impl ServeOptions {
    /// The header fields a request head may have (at least one).
    fn header_limit(&self) -> usize {
        self.max_request_headers.max(1)
    }
}

/// Something that answers requests.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request from `peer`.
    fn call(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: Peer,
    ) -> impl Future<Output = Response<ResponseBody>> + Send;
}

/// The cap on connections open at once: one per listener, shared by every accept loop on it.
pub fn connection_slots(options: &ServeOptions) -> Arc<Semaphore> {
    Arc::new(Semaphore::new(options.max_connections.max(1)))
}

/// Serves `listener` (TLS when `tls` is given) until `stop` turns true, then waits (up to
/// `drain`) for open connections. Each connection holds one of `slots` while it is open.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handler: Arc<H>,
    mut stop: watch::Receiver<bool>,
    options: ServeOptions,
    slots: Arc<Semaphore>,
) {
    let connections = Connections {
        builder: connection_builder(&options),
        graceful: GracefulShutdown::new(),
        tls,
        handler,
        options,
    };
    while let Some((stream, remote, slot)) = next_connection(&listener, &slots, &mut stop).await {
        connections.spawn(stream, remote, slot);
    }
    drop(listener);
    if tokio::time::timeout(options.drain, connections.graceful.shutdown())
        .await
        .is_err()
    {
        warn!("drain timed out; closing remaining connections");
    }
}

/// hyper's connection settings for HTTP/1.1 and h2 alike.
fn connection_builder(options: &ServeOptions) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The parser's own cap is a backstop (it answers an empty 431 and can't be told apart
    // from other parse errors); up to twice the limit, the check in the service answers in JSON.
    let max_headers = options.header_limit();
    builder
        .http1()
        .max_headers(max_headers.saturating_mul(2).max(max_headers + 1));
    // h2 bounds a head by its bytes; give it the same bound as HTTP/1.1's read buffer
    // (hyper's default, about 408 KiB), so a head that fits one protocol fits the other.
    builder.http2().max_header_list_size(H1_HEAD_BUFFER_BYTES);
    builder
}

/// The next connection with its slot; `None` once `stop` turns true.
async fn next_connection(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
    stop: &mut watch::Receiver<bool>,
) -> Option<(TcpStream, SocketAddr, OwnedSemaphorePermit)> {
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopped(stop) => return None,
        };
        // Then a slot: at the cap, the accepted connection waits unserved (one per accept
        // loop; the rest wait in the kernel's backlog). Accepting first matters when several
        // loops share the cap: a loop holding a slot must not wait on an empty queue while
        // a connection waits in another loop's.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.ok()?,
            () = stopped(stop) => return None,
        };
        return Some((stream, remote, slot));
    }
}

/// What every connection of one listener is served with.
struct Connections<H> {
    builder: auto::Builder<TokioExecutor>,
    graceful: GracefulShutdown,
    tls: Option<TlsAcceptor>,
    handler: Arc<H>,
    options: ServeOptions,
}

impl<H: Handler> Connections<H> {
    /// Serves one connection in a task of its own, holding `slot` until it closes.
    fn spawn(&self, stream: TcpStream, remote: SocketAddr, slot: OwnedSemaphorePermit) {
        let _ = stream.set_nodelay(true);
        let handler = self.handler.clone();
        let clock = ConnClock::new(self.options.timeouts);
        let io = TimedIo::new(stream, clock.clone());
        let peer = Peer {
            addr: remote,
            tls: self.tls.is_some(),
        };
        let max_headers = self.options.header_limit();
        let service = service_fn(move |req| {
            let handler = handler.clone();
            let in_flight = clock.request_started();
            async move {
                let resp = if req.headers().len() > max_headers {
                    debug!(%remote, fields = req.headers().len(), "request head over --max-request-headers");
                    routerd_base::error(
                        http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                        "request header fields too large",
                        None,
                    )
                } else {
                    handler.call(req, peer).await
                };
                if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS {
                    in_flight.upgraded();
                }
                Ok::<_, Infallible>(resp.map(|body| TrackedBody::new(body, in_flight)))
            }
        });
        let Some(acceptor) = &self.tls else {
            let conn = self
                .builder
                .serve_connection_with_upgrades(TokioIo::new(io), service)
                .into_owned();
            let conn = self.graceful.watch(conn);
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    debug!(error = %e, %remote, "connection ended with an error");
                }
                drop(slot);
            });
            return;
        };
        // The handshake runs in the connection's task, bounded like a request head.
        let (acceptor, builder) = (acceptor.clone(), self.builder.clone());
        let watcher = self.graceful.watcher();
        let handshake_timeout = self.options.timeouts.header_read;
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(handshake_timeout, acceptor.accept(io)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    debug!(error = %e, %remote, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    debug!(%remote, "TLS handshake timed out");
                    return;
                }
            };
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                debug!(error = %e, %remote, "connection ended with an error");
            }
            drop(slot);
        });
    }
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    // A closed channel also means stop.
    let _ = stop.wait_for(|s| *s).await;
}
