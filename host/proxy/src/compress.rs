//! The `compress` filter's body: the backend's answer encoded with gzip or brotli as it
//! streams (nothing is held whole), by the policy in [`routerd_routing::compress`].

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_compression::Level;
use async_compression::tokio::bufread::{BrotliEncoder, GzipEncoder};
use bytes::Bytes;
use futures_core::Stream;
use http::{HeaderValue, Response, header};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tokio::io::AsyncRead;
use tokio_util::io::{ReaderStream, StreamReader};

use routerd_base::ResponseBody;
use routerd_routing::compress::Encoding;

/// Brotli's quality for answers made on the fly: its default (11) is for files compressed once;
/// 4 compresses about as well as gzip's default at a similar speed.
const BROTLI_QUALITY: i32 = 4;

/// The answer's data frames as a byte stream (trailers dropped), its errors carried as I/O
/// errors so the encoder can read it.
struct DataStream(ResponseBody);

impl Stream for DataStream {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            return match Pin::new(&mut self.0).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => Poll::Ready(Some(Ok(data))),
                    Err(_) => continue,
                },
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(io::Error::other(e)))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            };
        }
    }
}

type Encoder = Pin<Box<dyn AsyncRead + Send + Sync>>;

/// The encoded body.
struct Compressed(ReaderStream<Encoder>);

impl Body for Compressed {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match Pin::new(&mut self.0).poll_next(cx) {
            Poll::Ready(Some(Ok(data))) => Poll::Ready(Some(Ok(Frame::data(data)))),
            // The backend's own error, handed on as it came.
            Poll::Ready(Some(Err(e))) => match e
                .into_inner()
                .and_then(|inner| inner.downcast::<hyper::Error>().ok())
            {
                Some(backend) => Poll::Ready(Some(Err(*backend))),
                None => {
                    tracing::warn!("compressing an answer failed; its body is cut short");
                    Poll::Ready(None)
                }
            },
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// `resp` with its body encoded by `encoding`: `Content-Encoding` set, `Content-Length`
/// dropped (the length changes), `Vary: accept-encoding` added, a strong `ETag` weakened.
pub fn compress(resp: Response<ResponseBody>, encoding: Encoding) -> Response<ResponseBody> {
    let (mut parts, body) = resp.into_parts();
    let reader = StreamReader::new(DataStream(body));
    let encoder: Encoder = match encoding {
        Encoding::Gzip => Box::pin(GzipEncoder::with_quality(reader, Level::Default)),
        Encoding::Brotli => Box::pin(BrotliEncoder::with_quality(
            reader,
            Level::Precise(BROTLI_QUALITY),
        )),
    };
    let headers = &mut parts.headers;
    headers.remove(header::CONTENT_LENGTH);
    headers.insert(
        header::CONTENT_ENCODING,
        HeaderValue::from_static(encoding.token()),
    );
    headers.append(header::VARY, HeaderValue::from_static("accept-encoding"));
    if let Some(tag) = headers.get(header::ETAG)
        && !tag.as_bytes().starts_with(b"W/")
    {
        let mut weak = b"W/".to_vec();
        weak.extend_from_slice(tag.as_bytes());
        if let Ok(v) = HeaderValue::from_bytes(&weak) {
            headers.insert(header::ETAG, v);
        }
    }
    Response::from_parts(parts, Compressed(ReaderStream::new(encoder)).boxed())
}
