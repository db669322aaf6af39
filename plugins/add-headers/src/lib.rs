//! `add-headers`: args `["req:NAME", value, "resp:NAME", value, ...]`.
//!
//! Each pair sets a header, replacing any value it had: `req:` pairs on the request before it
//! is proxied, `resp:` pairs on the response before it is sent. Pairs apply in order, so a later
//! pair for the same header wins. A `req:` value of exactly `{scheme}` becomes the scheme the
//! client used (`http` or `https`), so a backend behind a TLS listener can be told so.
//!
//! ```json
//! {"plugin": "add-headers", "args": ["req:X-Env", "prod", "resp:Cache-Control", "no-store"]}
//! ```
//!
//! validate: an even number of args, every key starts with `req:` or `resp:` followed by a
//! valid header name, every value is a valid header value (no CR/LF or other control
//! characters).

use routerd_sdk::{
    Filter, Phases, Request, RequestAction, RequestEdits, Response, ResponseEdits, http,
};

/// The plugin.
pub struct AddHeaders;

/// Which message a header goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The request, before proxying.
    Request,
    /// The response, before sending.
    Response,
}

/// One header to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Request or response.
    pub phase: Phase,
    /// Header name as written (without the prefix).
    pub name: &'a str,
    /// Header value.
    pub value: &'a str,
}

/// Parses and checks the args.
pub fn parse(args: &[String]) -> Result<Vec<Entry<'_>>, String> {
    if !args.len().is_multiple_of(2) {
        return Err(format!(
            "add-headers: expected pairs [\"req:NAME\"|\"resp:NAME\", value, ...], got {} args",
            args.len()
        ));
    }
    args.chunks_exact(2)
        .map(|pair| {
            let (key, value) = (&pair[0], &pair[1]);
            let (phase, name) = if let Some(name) = key.strip_prefix("req:") {
                (Phase::Request, name)
            } else if let Some(name) = key.strip_prefix("resp:") {
                (Phase::Response, name)
            } else {
                return Err(format!(
                    "add-headers: {key:?} must start with `req:` or `resp:`"
                ));
            };
            if !http::is_header_name(name) {
                return Err(format!("add-headers: {name:?} is not a valid header name"));
            }
            if !http::is_header_value(value) {
                return Err(format!(
                    "add-headers: the value for {name:?} contains control characters"
                ));
            }
            Ok(Entry { phase, name, value })
        })
        .collect()
}

/// The request edits for these entries, for a request that came in over `scheme`.
pub fn request_edits(entries: &[Entry<'_>], scheme: &str) -> RequestEdits {
    entries
        .iter()
        .filter(|e| e.phase == Phase::Request)
        .fold(RequestEdits::new(), |edits, e| {
            let value = if e.value == "{scheme}" {
                scheme
            } else {
                e.value
            };
            edits.set_header(e.name, value)
        })
}

/// The response edits for these entries.
pub fn response_edits(entries: &[Entry<'_>]) -> ResponseEdits {
    entries
        .iter()
        .filter(|e| e.phase == Phase::Response)
        .fold(ResponseEdits::new(), |edits, e| {
            edits.set_header(e.name, e.value)
        })
}

impl Filter for AddHeaders {
    fn validate(args: &[String]) -> Result<(), String> {
        parse(args).map(drop)
    }

    fn on_request(req: &Request<'_>, args: &[String]) -> RequestAction {
        parse(args)
            .map(|entries| request_edits(&entries, &req.scheme()))
            .unwrap_or_default()
            .into()
    }

    fn on_response(_req: &Request<'_>, _resp: &Response<'_>, args: &[String]) -> ResponseEdits {
        parse(args)
            .map(|entries| response_edits(&entries))
            .unwrap_or_default()
    }

    /// Only the phases the args have pairs for run: `resp:` pairs alone cost one call.
    fn phases(args: &[String]) -> Phases {
        let entries = parse(args).unwrap_or_default();
        Phases {
            request: entries.iter().any(|e| e.phase == Phase::Request),
            response: entries.iter().any(|e| e.phase == Phase::Response),
        }
    }
}

routerd_sdk::export_filter!(AddHeaders);

#[cfg(test)]
mod tests {
    use super::*;
    use routerd_sdk::HeaderOp;
    use routerd_sdk::testing::{MockRequest, MockResponse};

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn runs_only_the_phases_its_pairs_need() {
        let only_response = AddHeaders::phases(&args(&["resp:X-B", "1"]));
        assert_eq!(only_response, Phases::RESPONSE);
        let both = AddHeaders::phases(&args(&["req:X-A", "v", "resp:X-B", "1"]));
        assert_eq!(both, Phases::BOTH);
        assert_eq!(
            AddHeaders::phases(&args(&["req:X-A", "v"])),
            Phases::REQUEST
        );
    }

    #[test]
    fn validates() {
        assert!(AddHeaders::validate(&[]).is_ok());
        assert!(AddHeaders::validate(&args(&["req:X-A", "v", "resp:X-B", ""])).is_ok());
        assert!(AddHeaders::validate(&args(&["req:X-A"])).is_err());
        assert!(AddHeaders::validate(&args(&["X-A", "v"])).is_err());
        assert!(AddHeaders::validate(&args(&["request:X-A", "v"])).is_err());
        assert!(AddHeaders::validate(&args(&["req:", "v"])).is_err());
        assert!(AddHeaders::validate(&args(&["req:X A", "v"])).is_err());
        assert!(AddHeaders::validate(&args(&["resp:X-A", "v\r\nSet-Cookie: x"])).is_err());
    }

    #[test]
    fn splits_by_phase_in_order() {
        let a = args(&[
            "req:X-A", "1", "resp:X-B", "2", "req:X-C", "3", "req:x-a", "4",
        ]);
        let req = MockRequest::new("GET", "/");
        let RequestAction::Proceed(edits) = AddHeaders::on_request(&req.as_request(), &a) else {
            panic!("expected proceed");
        };
        assert_eq!(
            edits.headers,
            vec![
                HeaderOp::Set("x-a".into(), "1".into()),
                HeaderOp::Set("x-c".into(), "3".into()),
                HeaderOp::Set("x-a".into(), "4".into()),
            ]
        );
        assert_eq!(edits.path, None);
        let resp = MockResponse::new(200);
        let edits = AddHeaders::on_response(&req.as_request(), &resp.as_response(), &a);
        assert_eq!(edits.headers, vec![HeaderOp::Set("x-b".into(), "2".into())]);
        assert_eq!(edits.status, None);
    }

    #[test]
    fn scheme_placeholder_takes_the_request_scheme() {
        let a = args(&["req:X-Scheme", "{scheme}", "req:X-Lit", "{scheme}!"]);
        for scheme in ["http", "https"] {
            let req = MockRequest::new("GET", "/").scheme(scheme);
            let RequestAction::Proceed(edits) = AddHeaders::on_request(&req.as_request(), &a)
            else {
                panic!("expected proceed");
            };
            assert_eq!(
                edits.headers,
                vec![
                    HeaderOp::Set("x-scheme".into(), scheme.into()),
                    HeaderOp::Set("x-lit".into(), "{scheme}!".into()),
                ]
            );
        }
    }

    #[test]
    fn nothing_to_do() {
        let req = MockRequest::new("GET", "/");
        assert_eq!(
            AddHeaders::on_request(&req.as_request(), &args(&["resp:X", "y"])),
            RequestAction::proceed()
        );
        let resp = MockResponse::new(200);
        assert!(AddHeaders::on_response(&req.as_request(), &resp.as_response(), &[]).is_empty());
    }
}
