//! `bad-headers` (test plugin): a filter that floods routerd with headers.
//!
//! Args `[mode, count, size]`, all optional (defaults `reply`, `10000`, `1024`):
//!
//! * `reply`: `on-request` answers 200 with `count` headers `x-bad-00000 .. ` of `size` bytes
//!   each (10 000 x 1 KiB = 10 MiB of headers by default);
//! * `edits`: `on-request` proceeds with `count` `set` edits of that size;
//! * `response`: `on-request` proceeds unchanged and `on-response` returns `count` `set` edits;
//! * `body`: `on-request` answers 200 with no headers and a body of `count` x `size` bytes.
//!
//! routerd is expected to refuse the oversized result (failure policy) rather than forward it.
//! validate: mode is one of the three, count and size are non-negative integers.

use routerd_sdk::{
    Filter, HeaderOp, Reply, Request, RequestAction, RequestEdits, Response, ResponseEdits,
};

/// The plugin.
pub struct BadHeaders;

/// Where the flood goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A reply with the headers.
    Reply,
    /// Request edits.
    Edits,
    /// Response edits.
    Response,
    /// A reply with a large body instead.
    Body,
}

/// Parsed args.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Where the flood goes.
    pub mode: Mode,
    /// How many headers.
    pub count: usize,
    /// Bytes per header value.
    pub size: usize,
}

/// Parses `[mode?, count?, size?]`.
pub fn parse(args: &[String]) -> Result<Config, String> {
    if args.len() > 3 {
        return Err("bad-headers: expected at most 3 args [mode, count, size]".into());
    }
    let mode = match args.first().map(String::as_str) {
        None | Some("reply") => Mode::Reply,
        Some("edits") => Mode::Edits,
        Some("response") => Mode::Response,
        Some("body") => Mode::Body,
        Some(other) => {
            return Err(format!(
                "bad-headers: mode {other:?} must be reply, edits, response or body"
            ));
        }
    };
    let number = |i: usize, default: usize| match args.get(i) {
        None => Ok(default),
        Some(s) => s
            .parse::<usize>()
            .map_err(|_| format!("bad-headers: {s:?} is not a non-negative integer")),
    };
    Ok(Config {
        mode,
        count: number(1, 10_000)?,
        size: number(2, 1024)?,
    })
}

/// `count` headers `x-bad-00000`, `x-bad-00001`, ... with `size`-byte values.
pub fn flood_pairs(count: usize, size: usize) -> Vec<(String, String)> {
    let value = "a".repeat(size);
    (0..count)
        .map(|i| (format!("x-bad-{i:05}"), value.clone()))
        .collect()
}

/// The same flood as `set` operations.
pub fn flood(count: usize, size: usize) -> Vec<HeaderOp> {
    flood_pairs(count, size)
        .into_iter()
        .map(|(n, v)| HeaderOp::Set(n, v))
        .collect()
}

impl Filter for BadHeaders {
    fn validate(args: &[String]) -> Result<(), String> {
        parse(args).map(drop)
    }

    fn on_request(_req: &Request<'_>, args: &[String]) -> RequestAction {
        let Ok(cfg) = parse(args) else {
            return RequestAction::proceed();
        };
        match cfg.mode {
            Mode::Reply => {
                let mut reply = Reply::new(200);
                reply.headers = flood_pairs(cfg.count, cfg.size);
                reply.into()
            }
            Mode::Edits => RequestEdits {
                headers: flood(cfg.count, cfg.size),
                ..RequestEdits::default()
            }
            .into(),
            Mode::Response => RequestAction::proceed(),
            Mode::Body => {
                let mut reply = Reply::new(200);
                reply.body = vec![b'b'; cfg.count.saturating_mul(cfg.size)];
                reply.into()
            }
        }
    }

    fn on_response(_req: &Request<'_>, _resp: &Response<'_>, args: &[String]) -> ResponseEdits {
        match parse(args) {
            Ok(Config {
                mode: Mode::Response,
                count,
                size,
            }) => ResponseEdits {
                headers: flood(count, size),
                ..ResponseEdits::default()
            },
            _ => ResponseEdits::new(),
        }
    }
}

routerd_sdk::export_filter!(BadHeaders);

#[cfg(test)]
mod tests {
    use super::*;
    use routerd_sdk::testing::{MockRequest, MockResponse};

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses() {
        assert_eq!(
            parse(&[]),
            Ok(Config {
                mode: Mode::Reply,
                count: 10_000,
                size: 1024
            })
        );
        assert_eq!(
            parse(&args(&["edits", "5", "7"])),
            Ok(Config {
                mode: Mode::Edits,
                count: 5,
                size: 7
            })
        );
        assert!(parse(&args(&["nope"])).is_err());
        assert!(parse(&args(&["reply", "-1"])).is_err());
        assert!(parse(&args(&["reply", "1", "1", "1"])).is_err());
    }

    #[test]
    fn default_reply_is_ten_thousand_kib_headers() {
        let req = MockRequest::new("GET", "/");
        let RequestAction::Respond(reply) = BadHeaders::on_request(&req.as_request(), &[]) else {
            panic!("expected a reply");
        };
        assert_eq!(reply.headers.len(), 10_000);
        assert!(reply.headers.iter().all(|(_, v)| v.len() == 1024));
        assert_eq!(reply.headers[9_999].0, "x-bad-09999");
    }

    #[test]
    fn edits_and_response_modes() {
        let req = MockRequest::new("GET", "/");
        let resp = MockResponse::new(200);
        let a = args(&["edits", "3", "2"]);
        let RequestAction::Proceed(edits) = BadHeaders::on_request(&req.as_request(), &a) else {
            panic!("expected proceed");
        };
        assert_eq!(edits.headers.len(), 3);
        assert!(BadHeaders::on_response(&req.as_request(), &resp.as_response(), &a).is_empty());

        let a = args(&["response", "4", "1"]);
        assert_eq!(
            BadHeaders::on_request(&req.as_request(), &a),
            RequestAction::proceed()
        );
        let edits = BadHeaders::on_response(&req.as_request(), &resp.as_response(), &a);
        assert_eq!(edits.headers.len(), 4);

        let a = args(&["body", "10", "1024"]);
        let RequestAction::Respond(reply) = BadHeaders::on_request(&req.as_request(), &a) else {
            panic!("expected a reply");
        };
        assert!(reply.headers.is_empty());
        assert_eq!(reply.body.len(), 10 * 1024);
    }
}
