//! Black-box tests of the protocols around a proxied request: a real `routerd` and real backends
//! on 127.0.0.1. h2c by prior knowledge, header limits with their own errors, the access log
//! (one line per request), and WebSocket upgrades proxied both ways.
#![allow(clippy::unwrap_used)]

mod harness;

use std::time::Duration;

use bytes::Bytes;
use harness::*;
use http::Request;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge() {
    let b = Backend::start("b").await;
    let rd = Routerd::start_in_process(&config(vec![
        Route::proxy("h2", &b.url()).m(prefix("/h2")),
        Route::respond("hello").m(path("/hello")),
    ]))
    .await;
    let sender = h2c_connect(rd.proxy).await.expect("h2c connection");
    let uri = |p: &str| format!("http://{}{p}", rd.proxy);

    // Several concurrent streams on one connection.
    let mut tasks = Vec::new();
    for i in 0..3 {
        let mut s = sender.clone();
        let body = pseudo_random_bytes(100_000 + i, i as u64);
        let req = Request::builder()
            .method("POST")
            .uri(uri(&format!("/h2/{i}?n={i}")))
            .body(full(body.clone()))
            .expect("request");
        tasks.push(tokio::spawn(async move {
            let resp = tokio::time::timeout(REQUEST_TIMEOUT, s.send_request(req))
                .await
                .map_err(|_| "h2 request timed out".to_owned())?
                .map_err(|e| format!("h2 request: {e}"))?;
            Ok::<_, String>((i, body, collect(resp).await?))
        }));
    }
    for task in tasks {
        let (i, body, resp) = task.await.expect("task").expect("h2 exchange");
        assert_eq!(resp.version, http::Version::HTTP_2);
        assert_eq!(resp.status, 200, "{}", resp.describe());
        let echo = resp.json();
        assert_eq!(echo["path"], format!("/h2/{i}"));
        assert_eq!(echo["query"], format!("n={i}"));
        assert_eq!(echo["method"], "POST");
        assert_eq!(echo["body_sha256"], sha256_hex(&body));
        let xfh = resp.echoed_header("x-forwarded-host");
        assert!(
            xfh.len() == 1 && xfh[0].starts_with("127.0.0.1"),
            "X-Forwarded-Host from :authority, got {xfh:?}"
        );
    }

    let req = Request::builder()
        .uri(uri("/hello"))
        .body(full(""))
        .expect("request");
    let resp = collect(send_h2c(rd.proxy, req).await.expect("h2c"))
        .await
        .expect("body");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "hello");

    let req = Request::builder()
        .uri(uri("/missing"))
        .body(full(""))
        .expect("request");
    let resp = collect(send_h2c(rd.proxy, req).await.expect("h2c"))
        .await
        .expect("body");
    assert_eq!(resp.status, 404, "{}", resp.describe());
}

/// Big heads: 150 header fields (more than hyper's default of 100) pass both ways with the
/// default limits, on HTTP/1.1 and h2c; over the limits a client gets 431 and a backend's
/// response gets 502, each with its own JSON error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_limits_are_flags_with_their_own_errors() {
    let fields = big_head();
    let mut builder = Backend::builder("b");
    for (k, v) in &fields {
        builder = builder.header(k, v);
    }
    let b = builder.start().await;
    let cfg = config(vec![Route::proxy("big", &b.url()).m(prefix("/big"))]);
    let headers: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let h2 = |addr: std::net::SocketAddr| async move {
        let mut req = Request::builder().uri(format!("http://{addr}/big"));
        for (k, v) in &big_head() {
            req = req.header(k, v);
        }
        let resp = send_h2c(addr, req.body(full(Bytes::new())).expect("request")).await;
        collect(resp.expect("h2c exchange"))
            .await
            .expect("h2c body")
    };

    let rd = Routerd::start_in_process(&cfg).await;
    let resp = request_to(rd.proxy, "GET", "/big", &headers, Bytes::new())
        .await
        .expect("h1 exchange");
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(resp.header("x-field-149").as_deref(), Some("v149"));
    assert_eq!(resp.echoed_header("x-field-149"), vec!["v149".to_owned()]);
    let resp = h2(rd.proxy).await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(resp.echoed_header("x-field-149"), vec!["v149".to_owned()]);
    drop(rd);

    let rd = Routerd::launch(&cfg)
        .arg("--max-request-headers")
        .arg("100")
        .arg("--max-response-headers")
        .arg("100")
        .start_in_process()
        .await;
    let resp = request_to(rd.proxy, "GET", "/big", &headers, Bytes::new())
        .await
        .expect("h1 exchange");
    assert_eq!(resp.status, 431, "{}", resp.describe());
    assert_eq!(resp.json()["error"], "request header fields too large");
    let resp = h2(rd.proxy).await;
    assert_eq!(resp.status, 431, "{}", resp.describe());
    assert_eq!(resp.json()["error"], "request header fields too large");
    // A small request, but the backend's answer has 150 fields.
    let resp = rd.get("/big").await;
    assert_eq!(resp.status, 502, "{}", resp.describe());
    assert_eq!(resp.json()["error"], "backend response head too large");
    assert_eq!(resp.json()["route"], "big");
    assert_eq!(b.requests(), 3, "the 431s never reached the backend");
}

/// 150 header fields.
fn big_head() -> Vec<(String, String)> {
    (0..150)
        .map(|i| (format!("x-field-{i}"), format!("v{i}")))
        .collect()
}

/// Reads the access log at `path` until it has `n` lines.
async fn access_lines(path: &std::path::Path, n: usize) -> Vec<String> {
    let mut lines = Vec::new();
    wait_until(
        async || {
            lines = std::fs::read_to_string(path)
                .unwrap_or_default()
                .lines()
                .map(str::to_owned)
                .collect();
            lines.len() >= n
        },
        Duration::from_secs(5),
    )
    .await;
    lines
}

/// `--access-log json|logfmt`: one line per request with time, remote, method, path, status,
/// bytes, duration, route, upstream and plugin time, written by routerd's own writer thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_has_one_line_per_request() {
    let b = Backend::start("b").await;
    let cfg = config(vec![
        Route::proxy("api", &b.url()).m(prefix("/api")),
        Route::respond("gold")
            .m(path("/gold"))
            .m(plugin_pred("header-eq", &["x-tier", "gold"])),
    ]);
    let dir = TempDir::new("access-log");
    let file = dir.path().join("access.log");
    let rd = Routerd::launch(&cfg)
        .plugin("header-eq")
        .warm_cache()
        .arg("--access-log")
        .arg("json")
        .arg("--access-log-file")
        .arg(&file)
        .start_in_process()
        .await;
    let api = rd.get("/api/x?q=1").await;
    assert_eq!(api.status, 200);
    assert_eq!(rd.get("/nothing").await.status, 404);
    let gold = rd
        .request("GET", "/gold", &[("x-tier", "gold")], Bytes::new())
        .await;
    assert_eq!(gold.text(), "gold");
    let lines = access_lines(&file, 3).await;
    assert_eq!(lines.len(), 3, "{lines:?}");
    let docs: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let d = &docs[0];
    assert_eq!(d["method"], "GET");
    assert_eq!(d["path"], "/api/x?q=1");
    assert_eq!(d["status"], 200);
    assert_eq!(d["route"], "api");
    assert_eq!(d["bytes"], api.body.len() as u64);
    assert_eq!(d["upstream"], b.url().trim_start_matches("http://"));
    assert_eq!(d["complete"], true);
    assert!(
        d["remote"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{d}"
    );
    assert!(d["time"].as_str().unwrap().ends_with('Z'), "{d}");
    assert!(d["duration_ms"].as_f64().unwrap() > 0.0, "{d}");
    assert_eq!(d["plugin_ms"], 0.0);
    assert_eq!(
        (&docs[1]["status"], &docs[1]["route"], &docs[1]["upstream"]),
        (&json!(404), &json!("none"), &Value::Null)
    );
    assert_eq!(docs[2]["route"], "gold");
    assert!(docs[2]["plugin_ms"].as_f64().unwrap() > 0.0, "{}", docs[2]);
    drop(rd);

    let file = dir.path().join("access.logfmt");
    let rd = Routerd::launch(&cfg)
        .plugin("header-eq")
        .warm_cache()
        .arg("--access-log")
        .arg("logfmt")
        .arg("--access-log-file")
        .arg(&file)
        .start_in_process()
        .await;
    assert_eq!(rd.get("/api/a%20b").await.status, 200);
    let lines = access_lines(&file, 1).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    for part in [
        "method=GET",
        "path=/api/a%20b",
        "status=200",
        "route=api",
        "complete=true",
    ] {
        assert!(line.split(' ').any(|p| p == part), "{part} in {line}");
    }
    assert!(line.starts_with("time="), "{line}");
}

/// A WebSocket echo server on 127.0.0.1; its address.
async fn websocket_echo() -> std::net::SocketAddr {
    use futures_util::{SinkExt, StreamExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_close() {
                        break;
                    }
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// A WebSocket through routerd: the handshake is routed like any request (a plugin predicate
/// runs on it), then 1,000 messages go each way over the spliced connection; the tunnel is
/// counted in `/metrics` and closes with the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_is_proxied_both_ways() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};
    let echo = websocket_echo().await;
    let cfg = config(vec![
        Route::proxy("ws-gold", &format!("http://{echo}"))
            .m(prefix("/ws"))
            .m(plugin_pred("header-eq", &["x-tier", "gold"])),
        Route::respond("not-gold").m(prefix("/ws")),
    ]);
    let rd = Routerd::launch(&cfg)
        .plugin("header-eq")
        .warm_cache()
        .start_in_process()
        .await;
    let url = format!("ws://{}/ws/chat", rd.proxy);

    // Without the header the predicate does not match: a plain 200 answer, no upgrade.
    let refused = tokio_tungstenite::connect_async(url.as_str()).await;
    assert!(refused.is_err(), "upgraded without the predicate matching");

    let mut req = url.as_str().into_client_request().unwrap();
    req.headers_mut()
        .insert("x-tier", http::HeaderValue::from_static("gold"));
    let (mut ws, resp) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(req),
    )
    .await
    .expect("handshake in time")
    .expect("handshake");
    assert_eq!(resp.status(), 101);
    for i in 0..1000 {
        let text = format!("message {i} {}", "x".repeat(i % 200));
        ws.send(Message::text(text.clone())).await.unwrap();
        let back = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("echo in time")
            .expect("an echo")
            .expect("a frame");
        assert_eq!(back.into_text().unwrap().as_str(), text);
    }
    let big = pseudo_random_bytes(300_000, 3);
    ws.send(Message::binary(big.clone())).await.unwrap();
    let back = ws.next().await.unwrap().unwrap();
    assert_eq!(back.into_data().as_ref(), big.as_slice());
    let metrics = rd.admin_get("/metrics").await.text();
    assert!(metrics.contains("routerd_upgrades_total 1"), "{metrics}");
    assert!(metrics.contains("routerd_upgrades_active 1"), "{metrics}");
    ws.close(None).await.unwrap();
    drop(ws);
    let closed = wait_until(
        async || {
            rd.admin_get("/metrics")
                .await
                .text()
                .contains("routerd_upgrades_active 0")
        },
        Duration::from_secs(5),
    )
    .await;
    assert!(closed, "the tunnel did not close with the client");
}
