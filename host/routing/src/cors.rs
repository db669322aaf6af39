//! The `cors` filter's policy: which origins may call the route from a browser, with which
//! methods and headers, whether credentials go along, and how long a preflight holds. A
//! preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) is answered without
//! the backend; other requests from an allowed origin get the `Access-Control-*` response
//! headers. Args are `key=value`: `origins=https://a.example,https://b.example` (or `*`),
//! `methods=GET,POST`, `headers=content-type,authorization`, `expose=x-request-id`,
//! `credentials=true`, `max_age=600`.

use http::{HeaderMap, HeaderName, HeaderValue, Method, header};

use crate::config::{ErrorCode, FieldError};

/// A compiled CORS policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsPolicy {
    /// Allowed origins, lowercase; `None`: any.
    origins: Option<Vec<String>>,
    methods: Vec<Method>,
    methods_value: HeaderValue,
    /// Allowed request headers, lowercase; `None`: whatever the preflight asks for.
    headers: Option<Vec<HeaderName>>,
    expose: Option<HeaderValue>,
    credentials: bool,
    max_age: HeaderValue,
}

/// What a preflight gets.
#[derive(Debug, PartialEq, Eq)]
pub enum Preflight {
    /// Allowed: answer 204 with these headers.
    Allowed(Vec<(HeaderName, HeaderValue)>),
    /// The origin, method or a header is not allowed: answer 403 saying which.
    Refused(String),
}

fn invalid(i: usize, reason: impl Into<String>) -> FieldError {
    FieldError::new(format!("args[{i}]"), ErrorCode::InvalidFilter, reason)
}

fn list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|v| !v.is_empty())
}

impl CorsPolicy {
    /// Compiles the filter's `key=value` args, naming the one at fault.
    pub fn compile(args: &[String]) -> Result<CorsPolicy, FieldError> {
        let mut origins = None;
        let mut methods = vec![Method::GET, Method::HEAD, Method::POST];
        let mut headers = None;
        let mut expose = None;
        let mut credentials = false;
        let mut max_age = 600u64;
        for (i, arg) in args.iter().enumerate() {
            let (key, value) = arg
                .split_once('=')
                .ok_or_else(|| invalid(i, format!("{arg:?} is not key=value")))?;
            match key {
                "origins" if value.trim() == "*" => origins = None,
                "origins" => {
                    let mut list_of = Vec::new();
                    for o in list(value) {
                        let ok = (o.starts_with("http://") || o.starts_with("https://"))
                            && !o.ends_with('/');
                        if !ok {
                            return Err(invalid(
                                i,
                                format!("origin {o:?} is not scheme://host[:port]"),
                            ));
                        }
                        list_of.push(o.to_ascii_lowercase());
                    }
                    origins = Some(list_of);
                }
                "methods" => {
                    methods = list(value)
                        .map(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()))
                        .collect::<Result<_, _>>()
                        .map_err(|_| invalid(i, format!("{value:?} has an invalid method")))?;
                }
                "headers" => {
                    headers = Some(
                        list(value)
                            .map(|h| HeaderName::try_from(h.to_ascii_lowercase()))
                            .collect::<Result<_, _>>()
                            .map_err(|_| invalid(i, format!("{value:?} has an invalid header")))?,
                    );
                }
                "expose" => {
                    expose = Some(
                        HeaderValue::from_str(value)
                            .map_err(|_| invalid(i, format!("{value:?} is not a header value")))?,
                    );
                }
                "credentials" => {
                    credentials = value
                        .parse()
                        .map_err(|_| invalid(i, "credentials is true or false"))?;
                }
                "max_age" => {
                    max_age = value
                        .parse()
                        .map_err(|_| invalid(i, "max_age is a number of seconds"))?;
                }
                other => {
                    return Err(invalid(
                        i,
                        format!(
                            "unknown key {other:?} (origins, methods, headers, expose, credentials, max_age)"
                        ),
                    ));
                }
            }
        }
        if credentials && origins.is_none() {
            return Err(invalid(
                0,
                "credentials=true needs a list of origins: browsers refuse * with credentials",
            ));
        }
        let names: Vec<&str> = methods.iter().map(Method::as_str).collect();
        let methods_value = HeaderValue::from_str(&names.join(", "))
            .map_err(|_| invalid(0, "the methods do not make a header value"))?;
        Ok(CorsPolicy {
            origins,
            methods,
            methods_value,
            headers,
            expose,
            credentials,
            max_age: HeaderValue::from(max_age),
        })
    }

    fn allows_origin(&self, origin: &HeaderValue) -> bool {
        match (&self.origins, origin.to_str()) {
            (None, _) => true,
            (Some(list), Ok(o)) => list.iter().any(|a| a.eq_ignore_ascii_case(o)),
            (Some(_), Err(_)) => false,
        }
    }

    /// The `Access-Control-Allow-Origin` value for an allowed `origin`.
    fn allow_origin(&self, origin: &HeaderValue) -> HeaderValue {
        if self.origins.is_none() && !self.credentials {
            HeaderValue::from_static("*")
        } else {
            origin.clone()
        }
    }

    /// The answer to a preflight, when `method` and `headers` make one.
    pub fn preflight(&self, method: &Method, headers: &HeaderMap) -> Option<Preflight> {
        if method != Method::OPTIONS {
            return None;
        }
        let origin = headers.get(header::ORIGIN)?;
        let asked = headers.get(header::ACCESS_CONTROL_REQUEST_METHOD)?;
        if !self.allows_origin(origin) {
            return Some(Preflight::Refused(format!(
                "origin {} is not allowed",
                String::from_utf8_lossy(origin.as_bytes())
            )));
        }
        let asked_method = Method::from_bytes(asked.as_bytes()).ok();
        if !asked_method.is_some_and(|m| self.methods.contains(&m)) {
            return Some(Preflight::Refused(format!(
                "method {} is not allowed",
                String::from_utf8_lossy(asked.as_bytes())
            )));
        }
        let requested = headers
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let allow_headers = match &self.headers {
            None => HeaderValue::from_str(requested).ok(),
            Some(allowed) => {
                if let Some(bad) = list(requested)
                    .find(|h| !allowed.iter().any(|a| a.as_str().eq_ignore_ascii_case(h)))
                {
                    return Some(Preflight::Refused(format!("header {bad} is not allowed")));
                }
                let names: Vec<&str> = allowed.iter().map(HeaderName::as_str).collect();
                HeaderValue::from_str(&names.join(", ")).ok()
            }
        };
        let mut out = vec![
            (
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                self.allow_origin(origin),
            ),
            (
                header::ACCESS_CONTROL_ALLOW_METHODS,
                self.methods_value.clone(),
            ),
            (header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone()),
            (header::VARY, HeaderValue::from_static("origin")),
        ];
        if let Some(h) = allow_headers.filter(|h| !h.is_empty()) {
            out.push((header::ACCESS_CONTROL_ALLOW_HEADERS, h));
        }
        if self.credentials {
            out.push((
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            ));
        }
        Some(Preflight::Allowed(out))
    }

    /// The headers an actual (not preflight) response gets for a request from `origin`; none
    /// when the origin is not allowed (the browser then keeps the answer from the page).
    pub fn response_headers(&self, origin: &HeaderValue) -> Vec<(HeaderName, HeaderValue)> {
        if !self.allows_origin(origin) {
            return Vec::new();
        }
        let mut out = vec![
            (
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                self.allow_origin(origin),
            ),
            (header::VARY, HeaderValue::from_static("origin")),
        ];
        if let Some(e) = &self.expose {
            out.push((header::ACCESS_CONTROL_EXPOSE_HEADERS, e.clone()));
        }
        if self.credentials {
            out.push((
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(args: &[&str]) -> CorsPolicy {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        CorsPolicy::compile(&args).unwrap_or_else(|e| panic!("{e}"))
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::try_from(*k).unwrap_or_else(|_| panic!()),
                HeaderValue::from_str(v).unwrap_or_else(|_| panic!()),
            );
        }
        h
    }

    #[test]
    fn preflights_are_answered_by_the_policy() {
        let p = policy(&[
            "origins=https://app.example",
            "methods=GET,PUT",
            "headers=content-type",
            "credentials=true",
        ]);
        let ask = |origin: &str, method: &str, hs: &str| {
            p.preflight(
                &Method::OPTIONS,
                &headers(&[
                    ("origin", origin),
                    ("access-control-request-method", method),
                    ("access-control-request-headers", hs),
                ]),
            )
        };
        let Some(Preflight::Allowed(h)) = ask("https://app.example", "PUT", "content-type") else {
            panic!("allowed");
        };
        assert!(h.contains(&(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("https://app.example")
        )));
        assert!(h.contains(&(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true")
        )));
        assert!(matches!(
            ask("https://evil.example", "PUT", ""),
            Some(Preflight::Refused(_))
        ));
        assert!(matches!(
            ask("https://app.example", "DELETE", ""),
            Some(Preflight::Refused(_))
        ));
        assert!(matches!(
            ask("https://app.example", "PUT", "x-secret"),
            Some(Preflight::Refused(_))
        ));
        assert_eq!(
            p.preflight(&Method::GET, &headers(&[("origin", "x")])),
            None
        );
    }

    #[test]
    fn any_origin_without_credentials_is_a_star() {
        let p = policy(&["origins=*", "expose=x-request-id"]);
        let h = p.response_headers(&HeaderValue::from_static("https://x.example"));
        assert!(h.contains(&(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*")
        )));
        assert!(h.contains(&(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("x-request-id")
        )));
        let bad = CorsPolicy::compile(&["origins=*".into(), "credentials=true".into()]);
        assert!(bad.is_err());
        assert_eq!(
            CorsPolicy::compile(&["nope=1".into()])
                .err()
                .map(|e| e.field),
            Some("args[0]".into())
        );
    }
}
