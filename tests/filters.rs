//! Black-box tests of the built-in `cors` and `compress` filters through a real `routerd`
//! process and a real echo backend on 127.0.0.1: preflights answered without the backend, and
//! compressed answers that decode to what the backend sent.
#![allow(clippy::unwrap_used)]

mod harness;

use bytes::Bytes;
use harness::*;
use serde_json::Value;

/// The `cors` filter answers an allowed preflight itself (the backend sees none), refuses one
/// from another origin, and adds `Access-Control-*` to answers for an allowed origin only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflights_are_answered_without_the_backend() {
    let a = Backend::start("a").await;
    let cors = [
        "origins=https://app.example",
        "methods=GET,PUT",
        "headers=content-type",
        "credentials=true",
        "expose=x-trace",
        "max_age=300",
    ];
    let rd = Routerd::start(&config(vec![
        Route::proxy("c", &a.url())
            .m(prefix("/c"))
            .filter("cors", &cors),
    ]))
    .await;
    let preflight = async |origin: &str, method: &str| {
        let headers = [
            ("origin", origin),
            ("access-control-request-method", method),
            ("access-control-request-headers", "content-type"),
        ];
        rd.request("OPTIONS", "/c/items", &headers, Bytes::new())
            .await
    };
    let ok = preflight("https://app.example", "PUT").await;
    assert_eq!(ok.status, 204, "{}", ok.describe());
    assert_eq!(
        ok.header("access-control-allow-origin").as_deref(),
        Some("https://app.example")
    );
    assert_eq!(
        ok.header("access-control-allow-methods").as_deref(),
        Some("GET, PUT")
    );
    assert_eq!(
        ok.header("access-control-allow-headers").as_deref(),
        Some("content-type")
    );
    assert_eq!(
        ok.header("access-control-allow-credentials").as_deref(),
        Some("true")
    );
    assert_eq!(ok.header("access-control-max-age").as_deref(), Some("300"));
    let evil = preflight("https://evil.example", "PUT").await;
    assert_eq!(evil.status, 403, "{}", evil.describe());
    let delete = preflight("https://app.example", "DELETE").await;
    assert_eq!(delete.status, 403, "{}", delete.describe());
    assert_eq!(a.requests(), 0, "preflights never reach the backend");

    let get = rd
        .request(
            "GET",
            "/c/items",
            &[("origin", "https://app.example")],
            Bytes::new(),
        )
        .await;
    assert_eq!(get.backend().as_deref(), Some("a"));
    assert_eq!(
        get.header("access-control-allow-origin").as_deref(),
        Some("https://app.example")
    );
    assert_eq!(
        get.header("access-control-expose-headers").as_deref(),
        Some("x-trace")
    );
    let other = rd
        .request(
            "GET",
            "/c/items",
            &[("origin", "https://evil.example")],
            Bytes::new(),
        )
        .await;
    assert_eq!(other.backend().as_deref(), Some("a"));
    assert_eq!(other.header("access-control-allow-origin"), None);
}

/// The `compress` filter: a JSON answer comes back gzip or brotli as the client prefers, and
/// decodes to the backend's answer (the echo of the request: its body's digest matches what
/// was sent); an identity-only client gets it as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_answers_decode_to_the_original() {
    use std::io::Read;
    let a = Backend::start("a").await;
    let rd = Routerd::start(&config(vec![
        Route::proxy("z", &a.url())
            .m(prefix("/z"))
            .filter("compress", &["min_bytes=1024"]),
    ]))
    .await;
    let text: String = (0..2000)
        .map(|i| format!("line {i} of the payload\n"))
        .collect();
    let body = Bytes::from(text);
    let digest = sha256_hex(&body);
    let plain = rd
        .request(
            "POST",
            "/z",
            &[("accept-encoding", "identity")],
            body.clone(),
        )
        .await;
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.json()["body_sha256"], digest.as_str());
    let plain_len = plain.body.len();
    assert!(plain_len > 40_000, "{plain_len}");
    for (accept, coding) in [
        ("gzip", "gzip"),
        ("gzip, br", "br"),
        ("br;q=0.5, gzip", "gzip"),
    ] {
        let r = rd
            .request("POST", "/z", &[("accept-encoding", accept)], body.clone())
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("content-encoding").as_deref(),
            Some(coding),
            "{accept}"
        );
        assert!(
            r.header_all("vary")
                .iter()
                .any(|v| v.contains("accept-encoding"))
        );
        assert!(
            r.body.len() < plain_len / 4,
            "{coding}: {} bytes",
            r.body.len()
        );
        let mut decoded = Vec::new();
        let read = match coding {
            "gzip" => flate2::read::GzDecoder::new(&r.body[..]).read_to_end(&mut decoded),
            _ => brotli::Decompressor::new(&r.body[..], 4096).read_to_end(&mut decoded),
        };
        assert!(read.is_ok(), "{coding}: {read:?}");
        let echoed: Value = serde_json::from_slice(&decoded).unwrap();
        assert_eq!(
            echoed["body_sha256"],
            digest.as_str(),
            "{coding} decodes to the original"
        );
        assert_eq!(echoed["headers"]["accept-encoding"][0], accept);
    }
}
