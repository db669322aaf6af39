//! Request bodies on their way to the backend: streamed as received, or, when a body matcher
//! had to look at them, replayed from the bytes already read followed by the rest of the stream.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;

/// The client's request body failed while routerd read or forwarded it: the client's fault,
/// never the backend's. Its own type, so an exchange that failed because of it is told apart
/// by finding it among the failure's causes, not guessed from a message.
#[derive(Debug, thiserror::Error)]
pub enum ClientBodyError {
    /// The body's framing is malformed (a bad chunk size line, ...).
    #[error("the client's request body is malformed: {0}")]
    Invalid(#[source] hyper::Error),
    /// The client went away (or stopped sending) before its body ended.
    #[error("the client's request body ended early: {0}")]
    Closed(#[source] hyper::Error),
}

impl ClientBodyError {
    /// Sorts a read error of the client's body: malformed framing is reported by hyper's
    /// decoder as invalid input or data; anything else means the stream ended early.
    fn from_read(e: hyper::Error) -> Self {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(c) = cause {
            if let Some(io) = c.downcast_ref::<std::io::Error>()
                && matches!(
                    io.kind(),
                    std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData
                )
            {
                return ClientBodyError::Invalid(e);
            }
            cause = c.source();
        }
        if e.is_parse() {
            ClientBodyError::Invalid(e)
        } else {
            ClientBodyError::Closed(e)
        }
    }

    /// The client body error among `error`'s causes, if any.
    pub fn among_causes<'a>(
        error: &'a (dyn std::error::Error + 'static),
    ) -> Option<&'a ClientBodyError> {
        let mut cause = Some(error);
        while let Some(c) = cause {
            if let Some(found) = c.downcast_ref::<ClientBodyError>() {
                return Some(found);
            }
            cause = c.source();
        }
        None
    }
}

/// The body sent upstream.
#[derive(Debug)]
pub enum RequestBody {
    /// The client's body, streamed.
    Streaming(Incoming),
    /// Bytes read for body matchers, then whatever the client has not sent yet.
    Replay {
        /// The bytes already read.
        prefix: Option<Bytes>,
        /// The unread rest, if the body was longer than the limit.
        rest: Option<Incoming>,
    },
}

impl RequestBody {
    /// A body of exactly these bytes (read whole already).
    pub fn whole(bytes: Bytes) -> RequestBody {
        RequestBody::Replay {
            prefix: Some(bytes),
            rest: None,
        }
    }

    /// The whole body when it is empty or of a known length up to `limit` (read now), or the
    /// body back untouched when it is longer or of unknown length: what a retry or a mirrored
    /// copy can send again.
    pub async fn hold(self, limit: u64) -> Result<Result<Bytes, RequestBody>, ClientBodyError> {
        if self.is_end_stream() {
            return Ok(Ok(Bytes::new()));
        }
        match self.size_hint().exact() {
            Some(0) => Ok(Ok(Bytes::new())),
            Some(n) if n <= limit => Ok(Ok(self.collect().await?.to_bytes())),
            _ => Ok(Err(self)),
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        let client = |frame: Poll<Option<Result<Frame<Bytes>, hyper::Error>>>| {
            frame.map(|f| f.map(|r| r.map_err(ClientBodyError::from_read)))
        };
        match self.get_mut() {
            RequestBody::Streaming(b) => client(Pin::new(b).poll_frame(cx)),
            RequestBody::Replay { prefix, rest } => {
                if let Some(p) = prefix.take()
                    && !p.is_empty()
                {
                    return Poll::Ready(Some(Ok(Frame::data(p))));
                }
                match rest {
                    Some(r) => client(Pin::new(r).poll_frame(cx)),
                    None => Poll::Ready(None),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Streaming(b) => b.is_end_stream(),
            RequestBody::Replay { prefix, rest } => {
                prefix.as_ref().is_none_or(Bytes::is_empty)
                    && rest.as_ref().is_none_or(Body::is_end_stream)
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Streaming(b) => b.size_hint(),
            RequestBody::Replay { prefix, rest } => {
                let len = prefix.as_ref().map_or(0, |p| p.len() as u64);
                match rest {
                    None => SizeHint::with_exact(len),
                    Some(r) => {
                        let h = r.size_hint();
                        let mut out = SizeHint::new();
                        out.set_lower(h.lower() + len);
                        if let Some(u) = h.upper() {
                            out.set_upper(u + len);
                        }
                        out
                    }
                }
            }
        }
    }
}

/// Reads up to `limit` bytes. Returns the bytes, whether the body was longer, and the body to
/// forward (which replays what was read).
pub async fn read_prefix(
    body: RequestBody,
    limit: usize,
) -> Result<(Bytes, bool, RequestBody), ClientBodyError> {
    let mut body = body;
    let mut buf = BytesMut::new();
    loop {
        match body.frame().await {
            None => {
                let bytes = buf.freeze();
                return Ok((
                    bytes.clone(),
                    false,
                    RequestBody::Replay {
                        prefix: Some(bytes),
                        rest: None,
                    },
                ));
            }
            Some(frame) => {
                // Trailers of a body that a matcher read are dropped.
                if let Ok(data) = frame?.into_data() {
                    buf.extend_from_slice(&data);
                }
                if buf.len() > limit {
                    let bytes = buf.freeze();
                    let rest = match body {
                        RequestBody::Streaming(inc) => Some(inc),
                        RequestBody::Replay { rest, .. } => rest,
                    };
                    return Ok((
                        bytes.clone(),
                        true,
                        RequestBody::Replay {
                            prefix: Some(bytes),
                            rest,
                        },
                    ));
                }
            }
        }
    }
}
