//! Building the body of `POST /api/v1/match` from curl-like arguments: the URL split into host
//! and path, `-H 'Name: value'` headers.

use anyhow::{Result, bail};
use serde_json::{Map, Value};

/// Where a request goes: the `Host` (from an absolute URL) and the path with its query.
#[derive(Debug, PartialEq, Eq)]
pub struct Target {
    /// The URL's authority without user information (port kept), for absolute URLs.
    pub host: Option<String>,
    /// Path and query, never empty; the fragment is dropped.
    pub path: String,
}

/// Splits `http://host[:port]/path?query` (or `https://...`), or a bare `/path?query`.
pub fn split_url(url: &str) -> Result<Target> {
    let without_fragment = url.split_once('#').map_or(url, |(before, _)| before);
    if without_fragment.starts_with('/') {
        return Ok(Target {
            host: None,
            path: without_fragment.to_owned(),
        });
    }
    let Some((scheme, rest)) = without_fragment.split_once("://") else {
        bail!("URL {url:?} must be absolute (http://host/path) or a path starting with /");
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        bail!("URL {url:?}: scheme must be http or https");
    }
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if host.is_empty() {
        bail!("URL {url:?} has no host");
    }
    let path = match path.chars().next() {
        None => "/".to_owned(),
        Some('?') => format!("/{path}"),
        Some(_) => path.to_owned(),
    };
    Ok(Target {
        host: Some(host.to_owned()),
        path,
    })
}

/// Parses `Name: value`: the name lowercased, both trimmed. The value may be empty.
pub fn parse_header(header: &str) -> Result<(String, String)> {
    let Some((name, value)) = header.split_once(':') else {
        bail!("header {header:?} must be `Name: value`");
    };
    let name = name.trim();
    if name.is_empty() || name.contains(char::is_whitespace) {
        bail!("header {header:?} must be `Name: value`");
    }
    Ok((name.to_ascii_lowercase(), value.trim().to_owned()))
}

/// The request to explain. Repeated headers are joined with `, `; without a host in the URL,
/// a `Host` header gives the host.
pub fn match_body(
    method: &str,
    url: &str,
    headers: &[String],
    body: Option<String>,
    remote_addr: Option<&str>,
) -> Result<Value> {
    let target = split_url(url)?;
    let mut map: Map<String, Value> = Map::new();
    for header in headers {
        let (name, value) = parse_header(header)?;
        let joined = match map.get(&name).and_then(Value::as_str) {
            Some(previous) => format!("{previous}, {value}"),
            None => value,
        };
        map.insert(name, Value::String(joined));
    }
    let host = target
        .host
        .or_else(|| map.get("host").and_then(Value::as_str).map(str::to_owned));
    let mut doc = Map::new();
    doc.insert("method".into(), method.to_ascii_uppercase().into());
    doc.insert("path".into(), target.path.into());
    if let Some(host) = host {
        doc.insert("host".into(), host.into());
    }
    doc.insert("headers".into(), Value::Object(map));
    if let Some(body) = body {
        doc.insert("body".into(), body.into());
    }
    if let Some(addr) = remote_addr {
        doc.insert("remote_addr".into(), addr.into());
    }
    Ok(Value::Object(doc))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn target(host: Option<&str>, path: &str) -> Target {
        Target {
            host: host.map(str::to_owned),
            path: path.to_owned(),
        }
    }

    #[test]
    fn splits_absolute_urls() {
        let t = |u| split_url(u).ok();
        assert_eq!(
            t("http://example.com/users/7?x=1"),
            Some(target(Some("example.com"), "/users/7?x=1"))
        );
        assert_eq!(
            t("https://u:p@api.example.com:8443"),
            Some(target(Some("api.example.com:8443"), "/"))
        );
        assert_eq!(
            t("HTTP://[::1]:8080?q=a/b#frag"),
            Some(target(Some("[::1]:8080"), "/?q=a/b"))
        );
        assert_eq!(
            t("http://h/a%20b/?x=%2F#top"),
            Some(target(Some("h"), "/a%20b/?x=%2F"))
        );
    }

    #[test]
    fn keeps_bare_paths() {
        assert_eq!(
            split_url("/users/7?x=1").ok(),
            Some(target(None, "/users/7?x=1"))
        );
        assert_eq!(split_url("/#x").ok(), Some(target(None, "/")));
    }

    #[test]
    fn rejects_other_urls() {
        assert!(split_url("example.com/users").is_err());
        assert!(split_url("ftp://example.com/").is_err());
        assert!(split_url("http:///path").is_err());
        assert!(split_url("").is_err());
    }

    #[test]
    fn parses_headers() {
        let h = |s| parse_header(s).ok();
        assert_eq!(h("X-Tier: gold"), Some(("x-tier".into(), "gold".into())));
        assert_eq!(h("x-a:b:c"), Some(("x-a".into(), "b:c".into())));
        assert_eq!(h("X-Empty:"), Some(("x-empty".into(), String::new())));
        assert_eq!(
            h("  Accept :  */*  "),
            Some(("accept".into(), "*/*".into()))
        );
        assert!(parse_header("no colon").is_err());
        assert!(parse_header(": v").is_err());
        assert!(parse_header("bad name: v").is_err());
    }

    #[test]
    fn builds_the_match_body() {
        let headers = [
            "X-Tier: gold".to_owned(),
            "Accept: a".to_owned(),
            "accept: b".to_owned(),
        ];
        let doc = match_body(
            "get",
            "http://example.com/users/7?x=1",
            &headers,
            None,
            None,
        )
        .ok();
        assert_eq!(
            doc,
            Some(json!({
                "method": "GET", "path": "/users/7?x=1", "host": "example.com",
                "headers": {"x-tier": "gold", "accept": "a, b"}
            }))
        );
    }

    #[test]
    fn host_header_gives_the_host_of_a_bare_path() {
        let headers = ["Host: api.example.com".to_owned()];
        let doc = match_body("POST", "/v1", &headers, Some("{}".into()), Some("10.0.0.1")).ok();
        assert_eq!(
            doc,
            Some(json!({
                "method": "POST", "path": "/v1", "host": "api.example.com",
                "headers": {"host": "api.example.com"}, "body": "{}", "remote_addr": "10.0.0.1"
            }))
        );
    }
}
