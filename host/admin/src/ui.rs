//! The dashboard's files (`/ui/`), embedded in the binary: one page, its script and style, and
//! the vendored chart library. They hold no data (the page reads the API), so they are served
//! without the token; a strict Content-Security-Policy keeps the page to its own files.

use std::sync::OnceLock;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};

use routerd_base::{ResponseBody, full};

struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

/// A file of `ui/`, embedded.
macro_rules! asset {
    ($path:literal, $content_type:expr) => {
        Asset {
            path: $path,
            content_type: $content_type,
            body: include_bytes!(concat!("ui/", $path)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.js", JS),
    asset!("app.css", CSS),
    asset!("vendor/uPlot.iife.min.js", JS),
    asset!("vendor/uPlot.min.css", CSS),
    asset!("vendor/uPlot.LICENSE", "text/plain; charset=utf-8"),
];

/// Script and styles from these files only; nothing inline, no frames, no other origins.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The ETag of every file: they change together, with the binary.
fn etag() -> &'static HeaderValue {
    static ETAG: OnceLock<HeaderValue> = OnceLock::new();
    ETAG.get_or_init(|| {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        for a in ASSETS {
            hash.update(a.path.as_bytes());
            hash.update(a.body);
        }
        let digest = hex::encode(&hash.finalize()[..12]);
        HeaderValue::from_str(&format!("\"{digest}\"")).unwrap_or(HeaderValue::from_static("\"\""))
    })
}

/// Answers `GET /ui/<rest>` (`rest` empty for the page itself), or `None` when there is no
/// such file.
pub fn serve(rest: &str, request: &HeaderMap) -> Option<Response<ResponseBody>> {
    let path = if rest.is_empty() { "index.html" } else { rest };
    let asset = ASSETS.iter().find(|a| a.path == path)?;
    let etag = etag();
    let mut resp = if super::unchanged(request, etag) {
        super::empty(StatusCode::NOT_MODIFIED)
    } else {
        let mut r = Response::new(full(Bytes::from_static(asset.body)));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
        r
    };
    let h = resp.headers_mut();
    h.insert(header::ETAG, etag.clone());
    // Revalidated on every load, so a new binary's page is never mixed with an old script.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    Some(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_the_page_and_revalidates_with_the_etag() {
        let page = serve("", &HeaderMap::new());
        let Some(page) = page else { panic!("no page") };
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(
            page.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        let mut again = HeaderMap::new();
        again.insert(header::IF_NONE_MATCH, page.headers()[header::ETAG].clone());
        let cached = serve("app.js", &again).map(|r| r.status());
        assert_eq!(cached, Some(StatusCode::NOT_MODIFIED));
        assert!(serve("../Cargo.toml", &HeaderMap::new()).is_none());
        assert!(serve("vendor/", &HeaderMap::new()).is_none());
    }

    #[test]
    fn the_page_names_only_files_that_are_served() {
        let html = std::str::from_utf8(include_bytes!("ui/index.html")).unwrap_or("");
        for part in html.split(['"', '\'']) {
            if let Some(file) = part.strip_prefix("/ui/")
                && !file.is_empty()
            {
                assert!(
                    serve(file, &HeaderMap::new()).is_some(),
                    "{file} is not served"
                );
            }
        }
    }
}
