//! Content negotiation as go-restful does it: a route's `consumes` (media types of the request
//! body it takes) against `Content-Type`, and its `produces` (media types it answers) against
//! `Accept` with q-values and wildcards. Parsing walks the header in place: nothing allocates
//! per request.

use http::HeaderMap;
use http::header;

/// One media range, `type/subtype` (either may be `*`); parameters are not compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaType {
    main: Box<str>,
    sub: Box<str>,
}

impl MediaType {
    /// Parses `text/html`, `application/*`, `*/*`; `None` when it is not `type/subtype`.
    pub fn parse(text: &str) -> Option<MediaType> {
        let (main, sub) = split(text)?;
        Some(MediaType {
            main: main.to_ascii_lowercase().into(),
            sub: sub.to_ascii_lowercase().into(),
        })
    }

    /// Whether this range covers `t`: equal parts, `*`, or a structured-syntax suffix
    /// (`application/*+json` covers `application/problem+json`).
    pub fn covers(&self, t: &MediaType) -> bool {
        let main = self.main.as_ref() == "*" || self.main == t.main;
        let sub = match self.sub.strip_prefix('*') {
            Some("") => true,
            Some(suffix) => t.sub.ends_with(suffix),
            None => self.sub == t.sub,
        };
        main && sub
    }

    /// Whether this range and `main/sub` overlap (wildcards on either side).
    fn overlaps(&self, main: &str, sub: &str) -> bool {
        let part = |ours: &str, theirs: &str| {
            ours == "*" || theirs == "*" || ours.eq_ignore_ascii_case(theirs)
        };
        part(&self.main, main) && part(&self.sub, sub)
    }
}

impl std::fmt::Display for MediaType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.main, self.sub)
    }
}

/// `type/subtype` of a media type with optional parameters, trimmed.
fn split(text: &str) -> Option<(&str, &str)> {
    let essence = text.split(';').next()?.trim();
    let (main, sub) = essence.split_once('/')?;
    let token = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+*".contains(&b))
    };
    (token(main) && token(sub)).then_some((main, sub))
}

/// Whether the request carries a body (a `Content-Length` above 0, or chunked).
pub fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|n| n > 0)
}

/// Whether a route consuming `consumes` takes this request: always without a body; otherwise
/// its `Content-Type` (`application/octet-stream` when missing, as HTTP says) must be covered.
pub fn consumes_ok(consumes: &[MediaType], headers: &HeaderMap) -> bool {
    if consumes.is_empty() || !has_body(headers) {
        return true;
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream");
    let Some((main, sub)) = split(content_type) else {
        return false;
    };
    consumes.iter().any(|m| m.overlaps(main, sub))
}

/// Whether a route producing `produces` can answer this request's `Accept` (`*/*` when
/// missing): some range with q > 0 must overlap one of the route's types.
pub fn produces_ok(produces: &[MediaType], headers: &HeaderMap) -> bool {
    if produces.is_empty() {
        return true;
    }
    let mut accepts = headers.get_all(header::ACCEPT).iter().peekable();
    if accepts.peek().is_none() {
        return true;
    }
    accepts
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter(|range| quality(range) > 0.0)
        .filter_map(split)
        .any(|(main, sub)| produces.iter().any(|p| p.overlaps(main, sub)))
}

/// The `q` parameter of one `Accept` range (1 when absent or malformed).
fn quality(range: &str) -> f32 {
    range
        .split(';')
        .skip(1)
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
        .and_then(|(_, v)| v.trim().parse::<f32>().ok())
        .unwrap_or(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn types(list: &[&str]) -> Vec<MediaType> {
        list.iter().filter_map(|t| MediaType::parse(t)).collect()
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn parses_media_ranges() {
        assert!(MediaType::parse("application/json").is_some());
        assert!(MediaType::parse("text/*").is_some());
        assert!(MediaType::parse(" text/html ; charset=utf-8").is_some());
        for bad in ["json", "/json", "text/", "a b/c", ""] {
            assert!(MediaType::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn consumes_looks_at_content_type_only_with_a_body() {
        let json = types(&["application/json"]);
        assert!(consumes_ok(&json, &headers(&[])), "no body");
        assert!(consumes_ok(
            &json,
            &headers(&[
                ("content-length", "2"),
                ("content-type", "application/JSON; charset=utf-8")
            ])
        ));
        assert!(!consumes_ok(
            &json,
            &headers(&[("content-length", "2"), ("content-type", "text/csv")])
        ));
        assert!(
            !consumes_ok(&json, &headers(&[("transfer-encoding", "chunked")])),
            "a body without Content-Type is application/octet-stream"
        );
        assert!(consumes_ok(
            &types(&["text/*"]),
            &headers(&[("content-length", "2"), ("content-type", "text/csv")])
        ));
    }

    #[test]
    fn produces_follows_accept_with_q_values_and_wildcards() {
        let html = types(&["text/html"]);
        assert!(produces_ok(&html, &headers(&[])), "no Accept is */*");
        assert!(produces_ok(&html, &headers(&[("accept", "text/*")])));
        assert!(produces_ok(&html, &headers(&[("accept", "*/*;q=0.1")])));
        assert!(!produces_ok(
            &html,
            &headers(&[("accept", "application/json")])
        ));
        assert!(!produces_ok(
            &html,
            &headers(&[("accept", "text/html;q=0, application/json")])
        ));
        assert!(produces_ok(
            &html,
            &headers(&[
                ("accept", "application/json"),
                ("accept", "text/html;q=0.5")
            ])
        ));
        assert!(produces_ok(
            &types(&["text/*"]),
            &headers(&[("accept", "text/plain")])
        ));
    }
}
