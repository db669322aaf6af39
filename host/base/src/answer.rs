//! routerd's own answers in their simplest form: an empty or complete body, a small JSON error
//! (`{"error": message, "route": name}`), and an error with its causes on one line for the log.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};

use crate::ResponseBody;

/// An empty body.
pub fn empty() -> ResponseBody {
    full(Bytes::new())
}

/// A complete body.
pub fn full(bytes: impl Into<Bytes>) -> ResponseBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A small JSON error response: `{"error": message, "route": name}`.
pub fn error(status: StatusCode, message: &str, route: Option<&str>) -> Response<ResponseBody> {
    let mut doc = serde_json::json!({ "error": message });
    if let Some(r) = route {
        doc["route"] = r.into();
    }
    json_response(status, &doc)
}

/// `doc` as a JSON response with `status`.
pub fn json_response(status: StatusCode, doc: &serde_json::Value) -> Response<ResponseBody> {
    let mut resp = Response::new(full(doc.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// An error and its causes on one line, joined by `: ` (a cause whose text its parent already
/// shows is left out), for a log record that stays one line.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out.lines().map(str::trim).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::error_chain;

    #[test]
    fn an_error_chain_is_one_line_without_repeats() {
        let refused =
            || std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused\nby peer");
        assert_eq!(
            error_chain(&Wrapped(refused(), false)),
            "connecting: refused by peer"
        );
        assert_eq!(
            error_chain(&Wrapped(refused(), true)),
            "connecting: refused by peer",
            "a cause the parent already shows is not repeated"
        );
    }

    /// An error with a cause, whose own text shows the cause when `.1`.
    #[derive(Debug)]
    struct Wrapped(std::io::Error, bool);

    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self.1 {
                true => write!(f, "connecting: {}", self.0),
                false => f.write_str("connecting"),
            }
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
}
