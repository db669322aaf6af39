//! Who may do what: the bearer token for every change and for reads off loopback, and the
//! guards against another web site acting through the user's browser (a cross-origin page, a
//! rebound DNS name).

use http::{Method, StatusCode, header};

use crate::ApiError;

/// Why a request needs the token, when it does: every change (but `match`, which only
/// reads), and every read from a client off loopback but `/healthz`, which load balancers
/// probe.
pub(crate) fn token_needed(
    method: &Method,
    path: &str,
    peer: std::net::IpAddr,
) -> Option<&'static str> {
    let change =
        matches!(*method, Method::POST | Method::PUT | Method::DELETE) && path != "/api/v1/match";
    if change {
        Some("this change needs Authorization: Bearer <admin token>")
    } else if !peer.is_loopback() && path != "/healthz" {
        Some("reading from off loopback needs Authorization: Bearer <admin token>")
    } else {
        None
    }
}

/// Refuses what only another web site, acting through a browser, would send: a change from a
/// page of another origin (browsers send `Origin` with every cross-origin `POST`, `PUT` and
/// `DELETE`; API clients such as routerctl and curl send none), and, from loopback, a `Host`
/// that is a name other than `localhost` (DNS rebinding: a site whose name now resolves to
/// 127.0.0.1 must not read or change routerd from the user's own browser).
pub(crate) fn browser_guard(
    parts: &http::request::Parts,
    peer: std::net::IpAddr,
) -> Result<(), ApiError> {
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()));
    if peer.is_loopback()
        && let Some(host) = host
        && !loopback_host(host)
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "host_not_allowed",
            format!(
                "Host {host:?} is a name other than localhost; on loopback the admin listener answers only http://127.0.0.1:PORT, http://[::1]:PORT or http://localhost:PORT"
            ),
        ));
    }
    let change = !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
    if change && let Some(origin) = parts.headers.get(header::ORIGIN) {
        let origin_host = origin
            .to_str()
            .ok()
            .and_then(|o| o.split_once("://"))
            .map(|(_, rest)| rest);
        let same = matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h));
        if !same {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "cross_origin",
                format!(
                    "a page of another origin ({}) cannot change routerd",
                    origin.to_str().unwrap_or("?")
                ),
            ));
        }
    }
    Ok(())
}

/// An IP literal or `localhost` (with or without a port).
fn loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => {
            return v6
                .split(']')
                .next()
                .is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok());
        }
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.parse::<std::net::Ipv4Addr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || name.to_ascii_lowercase().ends_with(".localhost")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    #[test]
    fn the_token_guards_changes_everywhere_and_reads_off_loopback() {
        let local = std::net::IpAddr::from([127, 0, 0, 1]);
        let local6 = std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST);
        let remote = std::net::IpAddr::from([192, 0, 2, 7]);
        let get = Method::GET;
        for peer in [local, local6] {
            assert_eq!(token_needed(&get, "/api/v1/routes", peer), None);
            assert_eq!(token_needed(&get, "/metrics", peer), None);
            assert!(token_needed(&Method::PUT, "/api/v1/routes/a", peer).is_some());
        }
        assert!(token_needed(&Method::DELETE, "/api/v1/plugins/p", local).is_some());
        assert_eq!(token_needed(&Method::POST, "/api/v1/match", local), None);
        for path in [
            "/api/v1/routes",
            "/metrics",
            "/api/v1/live",
            "/api/v1/health",
        ] {
            let why = token_needed(&get, path, remote);
            assert!(why.is_some_and(|w| w.contains("off loopback")), "{path}");
        }
        assert!(token_needed(&Method::POST, "/api/v1/match", remote).is_some());
        assert_eq!(token_needed(&get, "/healthz", remote), None);
    }

    fn parts(method: Method, host: Option<&str>, origin: Option<&str>) -> http::request::Parts {
        let mut b = Request::builder().method(method).uri("/api/v1/routes");
        if let Some(h) = host {
            b = b.header(header::HOST, h);
        }
        if let Some(o) = origin {
            b = b.header(header::ORIGIN, o);
        }
        b.body(())
            .map(|r| r.into_parts().0)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn pages_of_other_sites_cannot_use_the_admin_api_through_a_browser() {
        let local = std::net::IpAddr::from([127, 0, 0, 1]);
        let remote = std::net::IpAddr::from([192, 0, 2, 7]);
        let code = |p: &http::request::Parts, peer| browser_guard(p, peer).err().map(|e| e.code);
        // The dashboard itself, and API clients without Origin.
        for host in [
            "127.0.0.1:9090",
            "localhost:9090",
            "[::1]:9090",
            "LOCALHOST",
            "a.localhost:1",
        ] {
            let origin = format!("http://{host}");
            assert_eq!(
                code(&parts(Method::POST, Some(host), Some(&origin)), local),
                None,
                "{host}"
            );
            assert_eq!(code(&parts(Method::DELETE, Some(host), None), local), None);
        }
        assert_eq!(code(&parts(Method::GET, None, None), local), None);
        // Another site's page posting to routerd.
        let cross = parts(
            Method::POST,
            Some("127.0.0.1:9090"),
            Some("http://evil.example"),
        );
        assert_eq!(code(&cross, local), Some("cross_origin"));
        let null = parts(Method::PUT, Some("127.0.0.1:9090"), Some("null"));
        assert_eq!(code(&null, local), Some("cross_origin"));
        // Reading cross-origin is the browser's to refuse (no CORS headers are sent).
        let read = parts(
            Method::GET,
            Some("127.0.0.1:9090"),
            Some("http://evil.example"),
        );
        assert_eq!(code(&read, local), None);
        // A rebound name, on loopback: refused, reads included.
        let rebound = parts(Method::GET, Some("evil.example:9090"), None);
        assert_eq!(code(&rebound, local), Some("host_not_allowed"));
        // Off loopback any name may reach routerd (the token guards it there).
        assert_eq!(code(&rebound, remote), None);
    }
}
