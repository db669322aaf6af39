//! Blocking HTTP access to routerd's admin API: JSON answers, bearer token on mutations, error
//! answers turned into [`ApiError`].

use std::fmt;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use ureq::http::{Method, Request, StatusCode};

/// Largest answer body read (a full route page is far smaller).
const MAX_ANSWER_BYTES: u64 = 64 * 1024 * 1024;

/// An error answer of the admin API, `{"error": CODE, "message": "..."}`.
#[derive(Debug)]
pub struct ApiError {
    /// The stable error code (`route_not_found`), or `HTTP <status>` when the answer had none.
    pub code: String,
    /// The human-readable message; may be empty.
    pub message: String,
}

impl ApiError {
    /// Reads an error answer; tolerates bodies that are not the API's error JSON.
    pub fn from_answer(status: StatusCode, body: &[u8]) -> Self {
        let doc: Option<Value> = serde_json::from_slice(body).ok();
        let field = |key: &str| {
            doc.as_ref()
                .and_then(|d| d.get(key))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        match (field("error"), field("message")) {
            (Some(code), Some(message)) => ApiError { code, message },
            // An older listener answers `{"error": "message"}`.
            (Some(message), None) | (None, Some(message)) => ApiError {
                code: format!("HTTP {}", status.as_u16()),
                message,
            },
            (None, None) => {
                let text = String::from_utf8_lossy(body);
                let text = text.trim();
                let message = if text.is_empty() {
                    status.canonical_reason().unwrap_or_default().to_owned()
                } else {
                    text.chars().take(300).collect()
                };
                ApiError {
                    code: format!("HTTP {}", status.as_u16()),
                    message,
                }
            }
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            f.write_str(&self.code)
        } else {
            write!(f, "{}: {}", self.code, self.message)
        }
    }
}

impl std::error::Error for ApiError {}

/// A request body and its content type.
pub struct Body<'a> {
    /// The `Content-Type` header.
    pub content_type: &'static str,
    /// The bytes sent.
    pub bytes: &'a [u8],
}

impl<'a> Body<'a> {
    /// A JSON body.
    pub fn json(bytes: &'a [u8]) -> Self {
        Body {
            content_type: "application/json",
            bytes,
        }
    }
}

/// A client of one admin API.
pub struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    /// A client of the admin API at `admin` (`http://host:port`), sending `token` on mutations.
    pub fn new(admin: &str, token: Option<String>) -> Result<Self> {
        let base = admin.trim_end_matches('/').to_owned();
        let scheme_ok = base
            .get(..7)
            .is_some_and(|s| s.eq_ignore_ascii_case("http://"));
        if !scheme_ok || base.len() <= 7 {
            bail!(
                "admin URL {admin:?} must be http://HOST[:PORT] (routerctl speaks plain HTTP only)"
            );
        }
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(5)))
            .build()
            .into();
        Ok(Client { base, token, agent })
    }

    /// `GET path`; the answer's JSON.
    pub fn get(&self, path: &str) -> Result<Value> {
        self.call(Method::GET, path, None, None)?
            .with_context(|| format!("GET {}{path} answered with an empty body", self.base))
    }

    /// One request; `Ok(None)` for an empty successful answer (204). `path` starts with `/` and
    /// is already percent-encoded (see [`encode`]). The token, when there is one, goes with every
    /// method but GET.
    pub fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Body<'_>>,
        if_match: Option<&str>,
    ) -> Result<Option<Value>> {
        let url = format!("{}{path}", self.base);
        let mut request = Request::builder().method(method.clone()).uri(&url);
        if method != Method::GET
            && let Some(token) = &self.token
        {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if let Some(version) = if_match {
            request = request.header("if-match", version);
        }
        let sent = match body {
            Some(body) => {
                let request = request
                    .header("content-type", body.content_type)
                    .body(body.bytes)
                    .with_context(|| format!("invalid request URL {url:?}"))?;
                self.agent.run(request)
            }
            None => {
                let request = request
                    .body(())
                    .with_context(|| format!("invalid request URL {url:?}"))?;
                self.agent.run(request)
            }
        };
        let mut answer = sent.map_err(|e| self.unreachable(e))?;
        let status = answer.status();
        let bytes = answer
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_to_vec()
            .map_err(|e| self.unreachable(e))
            .with_context(|| format!("reading the answer to {method} {url}"))?;
        if !status.is_success() {
            return Err(ApiError::from_answer(status, &bytes).into());
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        let doc = serde_json::from_slice(&bytes).with_context(|| {
            format!("{method} {url} answered {status} with a body that is not JSON")
        })?;
        Ok(Some(doc))
    }

    fn unreachable(&self, e: ureq::Error) -> anyhow::Error {
        let reason = match e {
            ureq::Error::Io(io) => io.to_string(),
            other => other.to_string(),
        };
        anyhow::anyhow!("cannot reach the admin API at {}: {reason}", self.base)
    }
}

/// Percent-encodes `s` for a path segment or a query value: everything but RFC 3986 unreserved
/// characters.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_error_with_code_and_message() {
        let e = ApiError::from_answer(
            StatusCode::NOT_FOUND,
            br#"{"error": "route_not_found", "message": "no route named \"x\""}"#,
        );
        assert_eq!(e.to_string(), r#"route_not_found: no route named "x""#);
        assert_eq!(e.code, "route_not_found");
    }

    #[test]
    fn api_error_without_json() {
        let e = ApiError::from_answer(StatusCode::BAD_GATEWAY, b"upstream down\n");
        assert_eq!(e.to_string(), "HTTP 502: upstream down");
        let e = ApiError::from_answer(StatusCode::NOT_FOUND, b"");
        assert_eq!(e.to_string(), "HTTP 404: Not Found");
        let e = ApiError::from_answer(
            StatusCode::NOT_FOUND,
            br#"{"error": "no such admin endpoint"}"#,
        );
        assert_eq!(e.to_string(), "HTTP 404: no such admin endpoint");
    }

    #[test]
    fn encodes_segments() {
        assert_eq!(encode("users-v2_x.y~"), "users-v2_x.y~");
        assert_eq!(encode("a/b c?"), "a%2Fb%20c%3F");
        assert_eq!(encode("é"), "%C3%A9");
    }

    #[test]
    fn rejects_non_http_admin_urls() {
        assert!(Client::new("https://example.com", None).is_err());
        assert!(Client::new("127.0.0.1:9090", None).is_err());
        assert!(Client::new("http://", None).is_err());
        assert!(Client::new("HTTP://127.0.0.1:9090/", None).is_ok());
    }
}
