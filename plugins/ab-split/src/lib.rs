//! `ab-split`: args `[percent, source]` or `[percent, source, salt]`.
//!
//! Sends a stable share of clients to a route: the value of `source` is hashed into a bucket
//! `0..100`, and the predicate matches when `bucket < percent`. The same value always lands in
//! the same bucket, so a client keeps its variant across requests and routerd restarts.
//!
//! * `percent`: an integer `0..=100` (`0` never matches, `100` matches every request that has a
//!   value).
//! * `source`: `header:NAME` (first value of that header, name case-insensitive) or
//!   `cookie:NAME` (that cookie, name case-sensitive).
//! * `salt` (optional): mixed into the hash so that independent experiments over the same
//!   source split clients differently. Routes that must split complementarily use the same
//!   salt.
//! * A missing or empty value never matches: put a fallback route after this one.
//!
//! The bucket is `fmix64(fnv1a64(value)) % 100`, or with a salt
//! `fmix64(fnv1a64(salt ++ "\x1f" ++ value)) % 100`, where FNV-1a 64 is the standard hash and
//! `fmix64` is MurmurHash3's finalizer, which spreads FNV's weak low bits before the modulo.
//!
//! Two routes `[30, "cookie:uid"]` and `[100, "cookie:uid"]` (the second with lower priority)
//! give a 30/70 split.

use routerd_sdk::{Predicate, Request, http};

/// The plugin.
pub struct AbSplit;

/// Where the value that picks the bucket comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// First value of this request header.
    Header(String),
    /// Value of this cookie.
    Cookie(String),
}

/// Parses `header:NAME` or `cookie:NAME`.
pub fn parse_source(s: &str) -> Result<Source, String> {
    if let Some(name) = s.strip_prefix("header:") {
        if http::is_header_name(name) {
            return Ok(Source::Header(name.to_owned()));
        }
        return Err(format!("ab-split: {name:?} is not a valid header name"));
    }
    if let Some(name) = s.strip_prefix("cookie:") {
        // RFC 6265 cookie-name is a token, like a header name.
        if http::is_header_name(name) {
            return Ok(Source::Cookie(name.to_owned()));
        }
        return Err(format!("ab-split: {name:?} is not a valid cookie name"));
    }
    Err(format!(
        "ab-split: source {s:?} must be `header:NAME` or `cookie:NAME`"
    ))
}

/// Parses a percentage: an integer `0..=100`, digits only.
pub fn parse_percent(s: &str) -> Result<u8, String> {
    let err = || format!("ab-split: percent {s:?} must be an integer from 0 to 100");
    if s.is_empty() || s.len() > 3 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err());
    }
    match s.parse::<u8>() {
        Ok(p) if p <= 100 => Ok(p),
        _ => Err(err()),
    }
}

/// Checks the route args.
pub fn validate_args(args: &[String]) -> Result<(), String> {
    match args {
        [percent, source] | [percent, source, _] => {
            parse_percent(percent)?;
            parse_source(source)?;
            Ok(())
        }
        _ => Err(format!(
            "ab-split: expected args [percent, source] or [percent, source, salt], got {} args",
            args.len()
        )),
    }
}

/// 64-bit FNV-1a.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

/// MurmurHash3's 64-bit finalizer.
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The bucket `0..100` of `value` under `salt` (empty: no salt).
pub fn bucket(value: &str, salt: &str) -> u8 {
    let h = if salt.is_empty() {
        fnv1a64(value.as_bytes())
    } else {
        let mut input = Vec::with_capacity(salt.len() + 1 + value.len());
        input.extend_from_slice(salt.as_bytes());
        input.push(0x1f);
        input.extend_from_slice(value.as_bytes());
        fnv1a64(&input)
    };
    // < 100, so the cast is lossless.
    (fmix64(h) % 100) as u8
}

/// Whether `value` falls in the first `percent` buckets. Missing or empty values never do.
pub fn in_split(value: Option<&str>, percent: u8, salt: &str) -> bool {
    match value {
        Some(v) if !v.is_empty() => bucket(v, salt) < percent,
        _ => false,
    }
}

impl Predicate for AbSplit {
    fn validate(args: &[String]) -> Result<(), String> {
        validate_args(args)
    }

    fn matches(req: &Request<'_>, args: &[String]) -> bool {
        let (percent, source, salt) = match args {
            [p, s] => (p, s, ""),
            [p, s, salt] => (p, s, salt.as_str()),
            _ => return false,
        };
        let (Ok(percent), Ok(source)) = (parse_percent(percent), parse_source(source)) else {
            return false;
        };
        if percent == 0 {
            return false;
        }
        let value = match source {
            Source::Header(name) => req.header(&name),
            Source::Cookie(name) => req.cookie(&name),
        };
        in_split(value.as_deref(), percent, salt)
    }
}

routerd_sdk::export_predicate!(AbSplit);

#[cfg(test)]
mod tests {
    use super::*;
    use routerd_sdk::testing::MockRequest;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn validates() {
        assert!(validate_args(&args(&["50", "header:x-user"])).is_ok());
        assert!(validate_args(&args(&["0", "cookie:uid"])).is_ok());
        assert!(validate_args(&args(&["100", "cookie:uid", "exp-7"])).is_ok());
        for bad in [
            &["101", "header:x"][..],
            &["-1", "header:x"],
            &["+5", "header:x"],
            &["5.5", "header:x"],
            &["", "header:x"],
            &["0050", "header:x"],
            &["50", "query:x"],
            &["50", "header:"],
            &["50", "header:bad name"],
            &["50", "cookie:a;b"],
            &["50"],
            &["50", "header:x", "salt", "extra"],
        ] {
            assert!(validate_args(&args(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn fnv_known_values() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn buckets_are_stable_and_in_range() {
        for v in ["alice", "bob", "", "x".repeat(1000).as_str()] {
            assert_eq!(bucket(v, ""), bucket(v, ""));
            assert!(bucket(v, "") < 100);
            assert!(bucket(v, "salt") < 100);
        }
    }

    #[test]
    fn split_is_roughly_fair_and_nested() {
        let ids: Vec<String> = (0..20_000).map(|i| format!("user-{i}")).collect();
        for percent in [10u8, 30, 50, 90] {
            let hits = ids
                .iter()
                .filter(|id| in_split(Some(id), percent, ""))
                .count();
            let share = hits as f64 / ids.len() as f64 * 100.0;
            assert!(
                (share - f64::from(percent)).abs() < 2.0,
                "{percent}%: got {share:.2}%"
            );
        }
        // A client inside the 10% is inside the 30% too.
        assert!(
            ids.iter()
                .all(|id| !in_split(Some(id), 10, "") || in_split(Some(id), 30, ""))
        );
        // A salt reshuffles.
        let same = ids
            .iter()
            .filter(|id| bucket(id, "") == bucket(id, "other"))
            .count();
        assert!(same < ids.len() / 20, "{same}");
    }

    #[test]
    fn edges() {
        assert!(!in_split(Some("alice"), 0, ""));
        assert!(in_split(Some("alice"), 100, ""));
        assert!(!in_split(None, 100, ""));
        assert!(!in_split(Some(""), 100, ""));
    }

    #[test]
    fn reads_header_or_cookie() {
        let all_h = args(&["100", "header:X-User"]);
        let all_c = args(&["100", "cookie:uid"]);
        let none = args(&["0", "cookie:uid"]);
        let req = MockRequest::new("GET", "/")
            .header("x-user", "alice")
            .header("cookie", "a=1; uid=u-42");
        assert!(AbSplit::matches(&req.as_request(), &all_h));
        assert!(AbSplit::matches(&req.as_request(), &all_c));
        assert!(!AbSplit::matches(&req.as_request(), &none));
        let bare = MockRequest::new("GET", "/");
        assert!(!AbSplit::matches(&bare.as_request(), &all_h));
        assert!(!AbSplit::matches(&bare.as_request(), &all_c));
        // Consistent with the pure function.
        let half = args(&["50", "cookie:uid", "s"]);
        assert_eq!(
            AbSplit::matches(&req.as_request(), &half),
            bucket("u-42", "s") < 50
        );
    }
}
