//! The access log: one line per request (JSON or logfmt), written by its own thread so the
//! request path never waits for a disk or a pipe. Records go through a bounded channel; when
//! the writer falls behind and the channel is full, records are dropped and counted
//! (`routerd_access_log_dropped_total`), never queued without bound.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use prometheus_client::metrics::counter::Counter;

use routerd_base::ResponseBody;

/// Records waiting for the writer at most.
const CHANNEL_CAPACITY: usize = 8192;

/// How lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AccessLogFormat {
    /// No access log.
    Off,
    /// One JSON object per line.
    Json,
    /// `key=value` pairs, values quoted when they need it.
    Logfmt,
}

/// Why the access log could not start.
#[derive(Debug, thiserror::Error)]
pub enum AccessLogError {
    /// The file could not be opened for appending.
    #[error("cannot open the access log {path}: {source}")]
    Open {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The writer thread could not start.
    #[error("cannot start the access log writer: {0}")]
    Thread(std::io::Error),
}

/// What is known about a request when its response head is ready; the rest (bytes, duration)
/// comes when the body ends.
#[derive(Debug)]
pub struct Record {
    /// When the request arrived.
    pub time: SystemTime,
    /// The client.
    pub remote: SocketAddr,
    /// The request method.
    pub method: http::Method,
    /// The request path and query, as sent.
    pub path: String,
    /// The response status.
    pub status: u16,
    /// The route that answered (`default_url`, `none`).
    pub route: Arc<str>,
    /// The backend's authority, when the request was proxied.
    pub upstream: Option<http::uri::Authority>,
    /// Time spent in plugin calls.
    pub plugin_time: Duration,
    /// Why routerd or the client, not the route or its backend, decided the answer:
    /// `overloaded` (no capacity to run a plugin call), `client_body_invalid` (a malformed
    /// request body), `client_closed` (the client went away before the answer).
    pub error: Option<&'static str>,
}

/// A finished record.
struct Line {
    record: Record,
    bytes: u64,
    duration: Duration,
    complete: bool,
}

/// The access log's sending side.
pub struct AccessLog {
    tx: SyncSender<Line>,
    dropped: Counter,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessLog")
    }
}

impl AccessLog {
    /// Starts the writer for `format` on `file` (standard output when `None`); `dropped`
    /// counts records the full channel refused. `None` when the format is `off`.
    pub fn start(
        format: AccessLogFormat,
        file: Option<&Path>,
        dropped: Counter,
    ) -> Result<Option<Arc<AccessLog>>, AccessLogError> {
        if format == AccessLogFormat::Off {
            return Ok(None);
        }
        let out: Box<dyn Write + Send> = match file {
            None => Box::new(std::io::stdout()),
            Some(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| AccessLogError::Open {
                        path: path.display().to_string(),
                        source,
                    })?,
            ),
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(CHANNEL_CAPACITY);
        let path = file.map(Path::to_path_buf);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_lines(rx, out, format, path))
            .map_err(AccessLogError::Thread)?;
        Ok(Some(Arc::new(AccessLog { tx, dropped })))
    }

    /// Wraps a response so its record is sent when the body ends (or is dropped unfinished).
    pub fn wrap(
        self: &Arc<Self>,
        record: Record,
        started: Instant,
        body: ResponseBody,
    ) -> ResponseBody {
        http_body_util::BodyExt::boxed(LoggedBody {
            inner: body,
            bytes: 0,
            complete: false,
            started,
            record: Some(record),
            log: self.clone(),
        })
    }

    fn send(&self, line: Line) {
        match self.tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.inc();
            }
        }
    }
}

/// The writer thread: formats and writes lines, flushing whenever the channel is empty.
fn write_lines(
    rx: Receiver<Line>,
    mut out: Box<dyn Write + Send>,
    format: AccessLogFormat,
    path: Option<PathBuf>,
) {
    let mut buf = Vec::with_capacity(64 << 10);
    let mut failing = false;
    while let Ok(first) = rx.recv() {
        format_line(&mut buf, &first, format);
        while let Ok(next) = rx.try_recv() {
            format_line(&mut buf, &next, format);
            if buf.len() >= 60 << 10 {
                break;
            }
        }
        let written = out.write_all(&buf).and_then(|()| out.flush());
        buf.clear();
        match written {
            Ok(()) => failing = false,
            Err(e) if !failing => {
                failing = true;
                let to = path
                    .as_ref()
                    .map_or("standard output".to_owned(), |p| p.display().to_string());
                tracing::warn!(
                    "cannot write the access log to {to}: {e}; lines are lost until it works again"
                );
            }
            Err(_) => {}
        }
    }
}

fn format_line(buf: &mut Vec<u8>, line: &Line, format: AccessLogFormat) {
    let r = &line.record;
    let time = humantime::format_rfc3339_millis(r.time).to_string();
    let upstream = r.upstream.as_ref().map(|a| a.as_str());
    let duration_ms = line.duration.as_secs_f64() * 1000.0;
    let plugin_ms = r.plugin_time.as_secs_f64() * 1000.0;
    match format {
        AccessLogFormat::Off => {}
        AccessLogFormat::Json => {
            let doc = serde_json::json!({
                "time": time,
                "remote": r.remote.to_string(),
                "method": r.method.as_str(),
                "path": r.path,
                "status": r.status,
                "bytes": line.bytes,
                "duration_ms": round3(duration_ms),
                "route": &*r.route,
                "upstream": upstream,
                "plugin_ms": round3(plugin_ms),
                "complete": line.complete,
                "error": r.error,
            });
            // Writing JSON into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *buf, &doc);
            buf.push(b'\n');
        }
        AccessLogFormat::Logfmt => {
            let pairs: [(&str, String); 12] = [
                ("time", time),
                ("remote", r.remote.to_string()),
                ("method", r.method.as_str().to_owned()),
                ("path", r.path.clone()),
                ("status", r.status.to_string()),
                ("bytes", line.bytes.to_string()),
                ("duration_ms", format!("{:.3}", duration_ms)),
                ("route", r.route.to_string()),
                ("upstream", upstream.unwrap_or("").to_owned()),
                ("plugin_ms", format!("{:.3}", plugin_ms)),
                ("complete", line.complete.to_string()),
                ("error", r.error.unwrap_or("").to_owned()),
            ];
            for (i, (key, value)) in pairs.iter().enumerate() {
                if i > 0 {
                    buf.push(b' ');
                }
                buf.extend_from_slice(key.as_bytes());
                buf.push(b'=');
                logfmt_value(buf, value);
            }
            buf.push(b'\n');
        }
    }
}

fn round3(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

/// A logfmt value: bare when it is a plain token, otherwise quoted with `"` and `\` escaped
/// (control characters as `\n`, `\t` or `\u{..}`), so a line always parses back.
fn logfmt_value(buf: &mut Vec<u8>, value: &str) {
    let bare = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '=' && c != '\\');
    if bare {
        buf.extend_from_slice(value.as_bytes());
        return;
    }
    buf.push(b'"');
    for c in value.chars() {
        match c {
            '"' => buf.extend_from_slice(b"\\\""),
            '\\' => buf.extend_from_slice(b"\\\\"),
            '\n' => buf.extend_from_slice(b"\\n"),
            '\t' => buf.extend_from_slice(b"\\t"),
            c if c.is_control() => {
                buf.extend_from_slice(format!("\\u{{{:x}}}", c as u32).as_bytes())
            }
            c => {
                let mut tmp = [0u8; 4];
                buf.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
            }
        }
    }
    buf.push(b'"');
}

/// A response body that counts what it sends and logs the request when it is done.
struct LoggedBody {
    inner: ResponseBody,
    bytes: u64,
    complete: bool,
    started: Instant,
    record: Option<Record>,
    log: Arc<AccessLog>,
}

impl Body for LoggedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes += data.len() as u64;
                }
            }
            Poll::Ready(None) => self.complete = true,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        if let Some(record) = self.record.take() {
            // hyper may stop polling once `is_end_stream` says so.
            let complete = self.complete || self.inner.is_end_stream();
            self.log.send(Line {
                record,
                bytes: self.bytes,
                duration: self.started.elapsed(),
                complete,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logfmt_values_quote_what_needs_it() {
        let mut buf = Vec::new();
        logfmt_value(&mut buf, "/plain");
        buf.push(b' ');
        logfmt_value(&mut buf, "a b=\"c\"\\\n");
        buf.push(b' ');
        logfmt_value(&mut buf, "");
        assert_eq!(
            String::from_utf8_lossy(&buf),
            r#"/plain "a b=\"c\"\\\n" """#
        );
    }
}
