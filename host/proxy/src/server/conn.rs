//! The clock of one client connection: how long a request head may take to arrive once it
//! started (`header_read_timeout`) and how long a connection may sit idle between requests,
//! before the first one included (`keepalive_timeout`). The socket is wrapped so that a read
//! waiting past the deadline fails, which makes hyper close the connection; while a request is
//! in flight (until its response body is done or dropped) no deadline applies, so a slow
//! download is never cut.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The two client-side timeouts.
#[derive(Debug, Clone, Copy)]
pub struct ConnTimeouts {
    /// From the first byte of a request head to its end (HTTP/1).
    pub header_read: Duration,
    /// Idle with no request in flight.
    pub keepalive: Duration,
}

/// What the socket and the requests on it share.
#[derive(Debug)]
pub struct ConnClock {
    start: Instant,
    timeouts: ConnTimeouts,
    in_flight: AtomicUsize,
    /// Milliseconds since `start`: when the connection last became idle.
    idle_since: AtomicU64,
    /// Milliseconds since `start` plus one: when a head began arriving (0: none is).
    head_started: AtomicU64,
    /// The client spoke the HTTP/2 preface: idle time only (frames arrive between requests).
    h2: AtomicBool,
    /// A read that went pending while a request was in flight (so without a deadline): woken
    /// when the connection turns idle, to arm the keep-alive deadline.
    reader: Mutex<Option<Waker>>,
    reader_waiting: AtomicBool,
    /// The connection was upgraded (WebSocket, ...): it is a tunnel now, bounded by the
    /// proxy's own idle timeout, not by HTTP's.
    upgraded: AtomicBool,
}

impl ConnClock {
    /// A clock for a connection accepted now.
    pub fn new(timeouts: ConnTimeouts) -> Arc<Self> {
        Arc::new(ConnClock {
            start: Instant::now(),
            timeouts,
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            head_started: AtomicU64::new(0),
            h2: AtomicBool::new(false),
            reader: Mutex::new(None),
            reader_waiting: AtomicBool::new(false),
            upgraded: AtomicBool::new(false),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A request head was read: the request is in flight until the guard is dropped.
    pub fn request_started(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.head_started.store(0, Ordering::Release);
        InFlight(self.clone())
    }

    /// The response switched protocols: no HTTP deadline applies from now on.
    pub fn upgraded(&self) {
        self.upgraded.store(true, Ordering::SeqCst);
    }

    /// Asks for `waker` to be woken once no request is in flight.
    fn wake_when_idle(&self, waker: &Waker) {
        let mut slot = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        match &*slot {
            Some(w) if w.will_wake(waker) => {}
            _ => *slot = Some(waker.clone()),
        }
        // SeqCst with the in-flight count: either the request's end sees this flag, or the
        // reader's re-check sees the request ended.
        self.reader_waiting.store(true, Ordering::SeqCst);
    }

    fn deadline(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::SeqCst) > 0 || self.upgraded.load(Ordering::SeqCst) {
            return None;
        }
        let at = |ms: u64, limit: Duration| self.start + Duration::from_millis(ms) + limit;
        match self.head_started.load(Ordering::Acquire) {
            0 => Some(at(
                self.idle_since.load(Ordering::Acquire),
                self.timeouts.keepalive,
            )),
            started => Some(at(started - 1, self.timeouts.header_read)),
        }
    }

    fn bytes_read(&self, first: &[u8]) {
        if self.in_flight.load(Ordering::Acquire) > 0 || self.h2.load(Ordering::Acquire) {
            return;
        }
        if self.head_started.load(Ordering::Acquire) == 0 {
            if first.starts_with(b"PRI * HTTP/2.0") {
                self.h2.store(true, Ordering::Release);
                return;
            }
            self.head_started
                .store(self.now_ms().saturating_add(1), Ordering::Release);
        }
    }
}

/// A request in flight on a connection; dropping it makes the connection idle again.
#[derive(Debug)]
pub struct InFlight(Arc<ConnClock>);

impl InFlight {
    /// Its response switched protocols: no HTTP deadline applies to the connection from now on.
    pub fn upgraded(&self) {
        self.0.upgraded();
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let clock = &self.0;
        clock.idle_since.store(clock.now_ms(), Ordering::Release);
        if clock.in_flight.fetch_sub(1, Ordering::SeqCst) == 1
            && clock.reader_waiting.swap(false, Ordering::SeqCst)
        {
            let waker = clock
                .reader
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            if let Some(w) = waker {
                w.wake();
            }
        }
    }
}

/// A response body that keeps its request in flight until it is done or dropped.
pub struct TrackedBody<B> {
    inner: B,
    in_flight: Option<InFlight>,
}

impl<B> TrackedBody<B> {
    /// Wraps `inner`.
    pub fn new(inner: B, in_flight: InFlight) -> Self {
        TrackedBody {
            inner,
            in_flight: Some(in_flight),
        }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for TrackedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if frame.is_none() {
            self.in_flight = None;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The socket, failing a read that waits past the connection's deadline.
pub struct TimedIo<S> {
    inner: S,
    clock: Arc<ConnClock>,
    sleep: Pin<Box<Sleep>>,
}

impl<S> TimedIo<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, clock: Arc<ConnClock>) -> Self {
        let first = clock.start + clock.timeouts.keepalive;
        TimedIo {
            inner,
            clock,
            sleep: Box::pin(tokio::time::sleep_until(first)),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for TimedIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let read = &buf.filled()[before..];
                if !read.is_empty() {
                    this.clock.bytes_read(read);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let deadline = match this.clock.deadline() {
                    Some(d) => d,
                    None => {
                        this.clock.wake_when_idle(cx.waker());
                        // The request may have ended in between.
                        match this.clock.deadline() {
                            Some(d) => d,
                            None => return Poll::Pending,
                        }
                    }
                };
                if this.sleep.deadline() != deadline {
                    this.sleep.as_mut().reset(deadline);
                }
                match this.sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "client connection timed out",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for TimedIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock() -> Arc<ConnClock> {
        ConnClock::new(ConnTimeouts {
            header_read: Duration::from_secs(2),
            keepalive: Duration::from_secs(10),
        })
    }

    #[tokio::test]
    async fn deadlines_follow_the_connection_state() {
        let c = clock();
        let idle = c.deadline().unwrap_or_else(|| panic!("no idle deadline"));
        assert_eq!(idle, c.start + Duration::from_secs(10));
        c.bytes_read(b"GET / HTTP/1.1\r\n");
        let head = c.deadline().unwrap_or_else(|| panic!("no head deadline"));
        assert!(head < idle, "a started head has the shorter deadline");
        let guard = c.request_started();
        assert_eq!(
            c.deadline(),
            None,
            "no deadline while a request is in flight"
        );
        // Pipelined bytes during a request do not start a head deadline.
        c.bytes_read(b"GET /next");
        drop(guard);
        let again = c
            .deadline()
            .unwrap_or_else(|| panic!("no idle deadline after"));
        assert!(
            again >= idle,
            "idle again: the keep-alive deadline from now"
        );
    }

    /// A read that went pending during a request must still time out once the request ends,
    /// though no byte ever arrives to poll it again.
    #[tokio::test(start_paused = true)]
    async fn the_end_of_a_request_arms_the_idle_deadline_of_a_waiting_read() {
        use tokio::io::AsyncReadExt;
        let c = clock();
        let (_client, server) = tokio::io::duplex(64);
        let mut io = TimedIo::new(server, c.clone());
        let guard = c.request_started();
        let read = tokio::spawn(async move {
            let mut buf = [0u8; 8];
            io.read(&mut buf).await
        });
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(
            !read.is_finished(),
            "timed out while a request was in flight"
        );
        drop(guard);
        let outcome = tokio::time::timeout(Duration::from_secs(20), read).await;
        let err = match outcome {
            Ok(Ok(Err(e))) => e,
            other => panic!("the idle deadline never fired: {other:?}"),
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn http2_connections_only_have_an_idle_deadline() {
        let c = clock();
        c.bytes_read(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        c.bytes_read(b"\x00\x00\x00\x04");
        assert_eq!(c.deadline(), Some(c.start + Duration::from_secs(10)));
    }
}
