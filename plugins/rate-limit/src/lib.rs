//! `rate-limit`: args `[limit, window]` or `[limit, window, key]`.
//!
//! Lets `limit` requests per client through in each `window` (`500ms`, `10s`, `1m`, `1h`;
//! windows aligned to the wall clock) and answers the rest `429 Too Many Requests` with
//! `Retry-After` and the IETF draft's `RateLimit-Limit`, `RateLimit-Remaining` and
//! `RateLimit-Reset` headers. The client is the key: `remote` (the client's IP, the default) or
//! `header:NAME` (the value of header `NAME`; requests without it share the key `-`).
//!
//! The count lives in the plugin's store, so every instance of the plugin in one routerd counts
//! against the same limit (one atomic increment per request). In a cluster each routerd counts
//! its own. If the store refuses the count (at its bound of keys), the request goes through and
//! the refusal is logged: a full store must not turn into an outage.
//!
//! validate: `limit` a positive integer, `window` a positive duration, `key` as above.

use std::time::Duration;

use routerd_sdk::store::{self, Window};
use routerd_sdk::{Filter, Phases, Reply, Request, RequestAction, http};

/// The plugin.
pub struct RateLimit;

/// Whom a request counts against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// The client's IP address.
    Remote,
    /// A header's value.
    Header(String),
}

/// A route's parsed args.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    /// Requests per window.
    pub limit: u64,
    /// The window.
    pub window: Duration,
    /// Whom a request counts against.
    pub key: Key,
}

/// Parses `500ms`, `10s`, `2m`, `1h`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().ok().filter(|n| *n > 0)?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => Some(Duration::from_secs(n.checked_mul(60)?)),
        "h" => Some(Duration::from_secs(n.checked_mul(3600)?)),
        _ => None,
    }
}

/// Parses a route's args.
pub fn parse_args(args: &[String]) -> Result<Limit, String> {
    let (limit, window, key) = match args {
        [l, w] => (l, w, None),
        [l, w, k] => (l, w, Some(k)),
        _ => {
            return Err(format!(
                "rate-limit: expected args [limit, window] or [limit, window, key], got {}",
                args.len()
            ));
        }
    };
    let limit = limit
        .parse::<u64>()
        .ok()
        .filter(|l| *l > 0)
        .ok_or_else(|| format!("rate-limit: limit {limit:?} is not a positive integer"))?;
    let window = parse_duration(window).ok_or_else(|| {
        format!("rate-limit: window {window:?} is not a duration like 500ms, 10s, 1m or 1h")
    })?;
    let key = match key.map(String::as_str) {
        None | Some("remote") => Key::Remote,
        Some(k) => match k.strip_prefix("header:") {
            Some(name) if http::is_header_name(name) => Key::Header(name.to_ascii_lowercase()),
            _ => {
                return Err(format!(
                    "rate-limit: key {k:?} must be \"remote\" or \"header:NAME\""
                ));
            }
        },
    };
    Ok(Limit { limit, window, key })
}

/// The key a request counts under.
pub fn client_key(req: &Request<'_>, key: &Key) -> String {
    match key {
        Key::Remote => req
            .remote_ip()
            .map_or_else(|| "-".to_owned(), |ip| ip.to_string()),
        Key::Header(name) => req.header(name).unwrap_or_else(|| "-".to_owned()),
    }
}

/// The answer to a request over the limit.
pub fn too_many(w: &Window) -> RequestAction {
    // Whole seconds, rounded up: a client that waits this long is in the next window.
    let reset = w.reset.as_millis().div_ceil(1000).max(1).to_string();
    Reply::text(429, "too many requests\n")
        .header("retry-after", reset.clone())
        .header("ratelimit-limit", w.limit.to_string())
        .header("ratelimit-remaining", "0")
        .header("ratelimit-reset", reset)
        .into()
}

impl Filter for RateLimit {
    fn validate(args: &[String]) -> Result<(), String> {
        parse_args(args).map(|_| ())
    }

    fn on_request(req: &Request<'_>, args: &[String]) -> RequestAction {
        let Ok(limit) = parse_args(args) else {
            return Reply::text(500, "rate-limit misconfigured\n").into();
        };
        let key = client_key(req, &limit.key);
        match store::fixed_window(&key, limit.limit, limit.window) {
            Ok(w) if w.allowed => RequestAction::proceed(),
            Ok(w) => too_many(&w),
            Err(e) => {
                routerd_sdk::warn!("rate-limit: not counted, letting the request through: {e}");
                RequestAction::proceed()
            }
        }
    }

    fn phases(_args: &[String]) -> Phases {
        Phases::REQUEST
    }
}

routerd_sdk::export_filter!(RateLimit);

#[cfg(test)]
mod tests {
    use super::*;
    use routerd_sdk::testing::MockRequest;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn args_are_checked() {
        assert_eq!(
            parse_args(&args(&["10", "1m"])),
            Ok(Limit {
                limit: 10,
                window: Duration::from_secs(60),
                key: Key::Remote
            })
        );
        assert_eq!(
            parse_args(&args(&["3", "500ms", "header:X-Api-Key"])).map(|l| l.key),
            Ok(Key::Header("x-api-key".into()))
        );
        for bad in [
            &["0", "1s"][..],
            &["x", "1s"],
            &["1", "1d"],
            &["1", "0s"],
            &["1", "1s", "cookie"],
            &["1"],
        ] {
            assert!(parse_args(&args(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_limit_holds_per_key_and_the_rest_get_429_with_headers() {
        let a = args(&["2", "1h", "header:x-client"]);
        let from = |c: &str| MockRequest::new("GET", "/").header("x-client", c);
        for _ in 0..2 {
            assert_eq!(
                RateLimit::on_request(&from("a").as_request(), &a),
                RequestAction::proceed()
            );
        }
        let RequestAction::Respond(reply) = RateLimit::on_request(&from("a").as_request(), &a)
        else {
            panic!("the third request of a window must be refused");
        };
        assert_eq!(reply.status, 429);
        let header = |n: &str| reply.headers.iter().find(|(k, _)| k == n).map(|(_, v)| v);
        assert_eq!(header("ratelimit-limit").map(String::as_str), Some("2"));
        assert!(header("retry-after").is_some());
        assert_eq!(
            RateLimit::on_request(&from("b").as_request(), &a),
            RequestAction::proceed(),
            "another client has its own count"
        );
    }
}
