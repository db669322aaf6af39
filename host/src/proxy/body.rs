//! Request bodies on their way to the backend: streamed as received, or, when a body matcher
//! had to look at them, replayed from the bytes already read followed by the rest of the stream.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;

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

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            RequestBody::Streaming(b) => Pin::new(b).poll_frame(cx),
            RequestBody::Replay { prefix, rest } => {
                if let Some(p) = prefix.take()
                    && !p.is_empty()
                {
                    return Poll::Ready(Some(Ok(Frame::data(p))));
                }
                match rest {
                    Some(r) => Pin::new(r).poll_frame(cx),
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
) -> Result<(Bytes, bool, RequestBody), hyper::Error> {
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
