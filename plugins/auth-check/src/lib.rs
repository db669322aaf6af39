//! `auth-check`: args `[url]` or `[url, header...]`.
//!
//! Asks an auth service about every request before it is proxied: a `GET` of `url` carrying the
//! request's `authorization` header (or the headers named after the URL), plus `x-original-method`
//! and `x-original-uri`, the way nginx's `auth_request` and Traefik's `forwardAuth` do.
//!
//! - A 2xx answer lets the request through; the service's `x-auth-user` header, if any, is passed
//!   to the backend as `x-auth-user` (a client-sent one is always removed first).
//! - A 401 or 403 is passed back to the client as it is: status, body, `www-authenticate`.
//! - Anything else, no answer within the call's deadline, or a refused call (the URL's origin is
//!   not on the plugin's `http.allow` list) answers `503`: authentication that cannot be asked
//!   does not let anyone in.
//!
//! The plugin's settings must allow the service's origin, e.g. `auth-check.json`:
//! `{"deadline_ms": 100, "http": {"allow": ["http://127.0.0.1:9001"]}}`.
//!
//! validate: an absolute `http`/`https` URL, and valid header names.

use std::time::Duration;

use routerd_sdk::outbound::{OutboundError, OutboundRequest, OutboundResponse};
use routerd_sdk::{Filter, Phases, Reply, Request, RequestAction, RequestEdits, http};

/// The plugin.
pub struct AuthCheck;

/// A route's parsed args.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check<'a> {
    /// The auth service's URL.
    pub url: &'a str,
    /// The request headers passed to it.
    pub headers: Vec<&'a str>,
}

/// Parses a route's args.
pub fn parse_args(args: &[String]) -> Result<Check<'_>, String> {
    let [url, headers @ ..] = args else {
        return Err("auth-check: expected args [url, header...]".into());
    };
    let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
    if !scheme_ok || url.len() < "http://x".len() {
        return Err(format!(
            "auth-check: {url:?} is not an absolute http:// or https:// URL"
        ));
    }
    if let Some(bad) = headers.iter().find(|h| !http::is_header_name(h)) {
        return Err(format!("auth-check: {bad:?} is not a valid header name"));
    }
    Ok(Check {
        url,
        headers: if headers.is_empty() {
            vec!["authorization"]
        } else {
            headers.iter().map(String::as_str).collect()
        },
    })
}

/// The question for the auth service about `req`.
pub fn question(check: &Check<'_>, req: &Request<'_>) -> OutboundRequest {
    let mut ask = OutboundRequest::get(check.url);
    for name in &check.headers {
        for value in req.header_values(name) {
            ask = ask.header(*name, value);
        }
    }
    let query = req.query();
    let uri = if query.is_empty() {
        req.path()
    } else {
        format!("{}?{query}", req.path())
    };
    ask.header("x-original-method", req.method())
        .header("x-original-uri", uri)
        // The call's deadline bounds it anyway; this ends the wait first so the answer is a
        // clear 503 rather than a failed call.
        .timeout(Duration::from_secs(5))
}

/// The decision, from the auth service's answer.
pub fn decide(answer: Result<OutboundResponse, OutboundError>) -> RequestAction {
    match answer {
        Ok(r) if (200..300).contains(&r.status) => {
            let edits = RequestEdits::new().remove_header("x-auth-user");
            match r.header("x-auth-user") {
                Some(user) if http::is_header_value(user) => {
                    edits.set_header("x-auth-user", user).into()
                }
                _ => edits.into(),
            }
        }
        Ok(r) if r.status == 401 || r.status == 403 => {
            let mut reply = Reply::new(r.status).body(r.body.clone());
            for name in ["content-type", "www-authenticate"] {
                if let Some(v) = r.header(name) {
                    reply = reply.header(name, v);
                }
            }
            reply.into()
        }
        Ok(r) => {
            routerd_sdk::warn!("auth-check: the auth service answered {}", r.status);
            Reply::text(503, "authentication unavailable\n").into()
        }
        Err(e) => {
            routerd_sdk::warn!("auth-check: {e}");
            Reply::text(503, "authentication unavailable\n").into()
        }
    }
}

impl Filter for AuthCheck {
    fn validate(args: &[String]) -> Result<(), String> {
        parse_args(args).map(|_| ())
    }

    fn on_request(req: &Request<'_>, args: &[String]) -> RequestAction {
        let Ok(check) = parse_args(args) else {
            return Reply::text(500, "auth-check misconfigured\n").into();
        };
        decide(question(&check, req).send())
    }

    fn phases(_args: &[String]) -> Phases {
        Phases::REQUEST
    }
}

routerd_sdk::export_filter!(AuthCheck);

#[cfg(test)]
mod tests {
    use super::*;
    use routerd_sdk::testing::{MockRequest, respond_outbound};

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn args_are_checked() {
        assert!(parse_args(&args(&["http://127.0.0.1:9001/check"])).is_ok());
        assert!(parse_args(&args(&["ftp://x"])).is_err());
        assert!(parse_args(&args(&["http://x", "bad header"])).is_err());
        assert!(parse_args(&[]).is_err());
    }

    #[test]
    fn answers_by_what_the_service_says() {
        respond_outbound(|q| {
            let token = q.headers.iter().find(|(n, _)| n == "authorization");
            let uri = q.headers.iter().find(|(n, _)| n == "x-original-uri");
            assert_eq!(uri.map(|(_, v)| v.as_str()), Some("/a?b=1"));
            Ok(match token.map(|(_, v)| v.as_str()) {
                Some("Bearer good") => OutboundResponse {
                    status: 200,
                    headers: vec![("x-auth-user".into(), "ada".into())],
                    body: Vec::new(),
                },
                Some(_) => OutboundResponse {
                    status: 403,
                    body: b"no".to_vec(),
                    ..Default::default()
                },
                None => return Err(OutboundError::Denied),
            })
        });
        let a = args(&["http://auth/check"]);
        let req = |token: Option<&str>| {
            let r = MockRequest::new("GET", "/a?b=1").header("x-auth-user", "mallory");
            match token {
                Some(t) => r.header("authorization", t),
                None => r,
            }
        };
        assert_eq!(
            AuthCheck::on_request(&req(Some("Bearer good")).as_request(), &a),
            RequestEdits::new()
                .remove_header("x-auth-user")
                .set_header("x-auth-user", "ada")
                .into()
        );
        let RequestAction::Respond(no) =
            AuthCheck::on_request(&req(Some("Bearer bad")).as_request(), &a)
        else {
            panic!("refused");
        };
        assert_eq!((no.status, no.body.as_slice()), (403, &b"no"[..]));
        let RequestAction::Respond(down) = AuthCheck::on_request(&req(None).as_request(), &a)
        else {
            panic!("refused");
        };
        assert_eq!(down.status, 503);
    }
}
