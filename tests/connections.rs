//! Black-box tests of connection limits on both sides of a real `routerd`: a half-sent request
//! head and an idle keep-alive connection are closed after their timeouts (a slow download is
//! not), connections beyond `--max-connections` wait until one closes, and backends that do
//! not accept or do not answer get the default connect and response-head timeouts. Worker
//! threads (`--workers`) share the listening port and each serves connections.
#![allow(clippy::unwrap_used)]

mod harness;

use std::time::{Duration, Instant};

use harness::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the peer closes (or resets) the connection; `None` if it is still open after
/// `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((started + limit).into(), stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// Sends one keep-alive `GET path` on `stream` and reads until `needle` arrived.
async fn exchange(stream: &mut TcpStream, path: &str, needle: &str) {
    let head = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    read_until(stream, needle).await;
}

/// Reads (bounded, 10 s) until `needle` arrived; panics if the peer closes first.
async fn read_until(stream: &mut TcpStream, needle: &str) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&got).contains(needle) {
        let n = tokio::time::timeout_at(deadline.into(), stream.read(&mut buf))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no {needle:?} in time; got {:?}",
                    String::from_utf8_lossy(&got)
                )
            })
            .unwrap();
        assert!(
            n > 0,
            "closed before {needle:?}: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
}

fn pong() -> serde_json::Value {
    config(vec![Route::respond("pong").m(path("/ping"))])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_request_head_is_closed_after_the_header_timeout() {
    let rd = Routerd::launch(&pong())
        .arg("--header-read-timeout")
        .arg("1s")
        .start()
        .await;
    let mut stream = TcpStream::connect(rd.proxy).await.unwrap();
    stream
        .write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let closed = closed_within(&mut stream, Duration::from_secs(15)).await;
    let after = closed.expect("the half-sent head was held open for 15 s");
    assert!(
        after >= Duration::from_millis(900),
        "closed after {after:?}, before the 1 s header timeout"
    );
    // Complete heads on other connections are unaffected.
    let resp = rd.get("/ping").await;
    assert_eq!((resp.status, resp.text().as_str()), (200, "pong"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_close_after_the_keepalive_timeout() {
    let rd = Routerd::launch(&pong())
        .arg("--keepalive-timeout")
        .arg("1s")
        .start()
        .await;
    // Silent from the start.
    let mut silent = TcpStream::connect(rd.proxy).await.unwrap();
    // Idle after one exchange; a second request in time still works.
    let mut used = TcpStream::connect(rd.proxy).await.unwrap();
    exchange(&mut used, "/ping", "\r\n\r\npong").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    exchange(&mut used, "/ping", "\r\n\r\npong").await;
    for (what, stream) in [("silent", &mut silent), ("idle", &mut used)] {
        let closed = closed_within(stream, Duration::from_secs(15)).await;
        assert!(
            closed.is_some(),
            "the {what} connection was held open for 15 s"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_download_outlives_the_keepalive_timeout() {
    let slow = Backend::builder("slow")
        .gated("first-part;", "second-part")
        .start()
        .await;
    let rd = Routerd::launch(&config(vec![
        Route::proxy("slow", &slow.url()).m(prefix("/slow")),
    ]))
    .arg("--keepalive-timeout")
    .arg("1s")
    .arg("--header-read-timeout")
    .arg("1s")
    .start()
    .await;
    let proxy = rd.proxy;
    let download = tokio::spawn(async move { request_to(proxy, "GET", "/slow", &[], "").await });
    tokio::time::sleep(Duration::from_millis(2500)).await;
    slow.open_gate();
    let resp = download.await.unwrap().expect("the download was cut");
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(resp.text(), "first-part;second-part");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let rd = Routerd::launch(&pong())
        .arg("--max-connections")
        .arg("2")
        .start()
        .await;
    let mut first = TcpStream::connect(rd.proxy).await.unwrap();
    exchange(&mut first, "/ping", "\r\n\r\npong").await;
    let mut second = TcpStream::connect(rd.proxy).await.unwrap();
    exchange(&mut second, "/ping", "\r\n\r\npong").await;

    // The third connects (the kernel's backlog) but is not served while both slots are taken.
    let mut third = TcpStream::connect(rd.proxy).await.unwrap();
    third
        .write_all(b"GET /ping HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let early = tokio::time::timeout(Duration::from_millis(700), third.read(&mut buf)).await;
    assert!(early.is_err(), "served beyond the cap: {early:?}");

    // A slot frees up: the waiting connection is served, and the open one still works.
    drop(first);
    read_until(&mut third, "\r\n\r\npong").await;
    exchange(&mut second, "/ping", "\r\n\r\npong").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_get_default_connect_and_response_timeouts() {
    // A backend that never answers, and one that answers in 500 ms.
    let mute = Backend::builder("mute")
        .delay(Duration::from_secs(30))
        .start()
        .await;
    let lagging = Backend::builder("lagging")
        .delay(Duration::from_millis(1500))
        .start()
        .await;
    // A listener that never accepts, its backlog full: connecting to it hangs.
    let full = tokio::net::TcpSocket::new_v4().unwrap();
    full.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let full = full.listen(0).unwrap();
    let full_addr = full.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(s)) =
            tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(full_addr)).await
        {
            fillers.push(s);
        }
    }
    let rd = Routerd::launch(&config(vec![
        Route::proxy("mute", &mute.url()).m(prefix("/mute")),
        Route::proxy("patient", &lagging.url())
            .m(prefix("/patient"))
            .set("timeout_ms", json!(10_000)),
        Route::proxy("impatient", &lagging.url()).m(prefix("/impatient")),
        // Its response-head limit is long: only the connect timeout can end it early.
        Route::proxy("full", &format!("http://{full_addr}"))
            .m(prefix("/full"))
            .set("timeout_ms", json!(30_000)),
    ]))
    .arg("--backend-response-timeout")
    .arg("1s")
    .arg("--backend-connect-timeout")
    .arg("300ms")
    .start()
    .await;

    let started = Instant::now();
    let resp = rd.get("/mute").await;
    assert_eq!(resp.status, 504, "{}", resp.describe());
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "504 took {:?}",
        started.elapsed()
    );
    let resp = rd.get("/impatient").await;
    assert_eq!(resp.status, 504, "the default applies: {}", resp.describe());
    let resp = rd.get("/patient").await;
    assert_eq!(
        resp.status,
        200,
        "timeout_ms overrides it: {}",
        resp.describe()
    );

    let started = Instant::now();
    let resp = rd.get("/full").await;
    let took = started.elapsed();
    assert_eq!(
        resp.status,
        502,
        "a backend that never accepts: {}",
        resp.describe()
    );
    assert!(
        took < Duration::from_secs(10),
        "the connect timeout took {took:?}"
    );
    drop(full);
}

/// The context switches of each `routerd-wN` thread of `pid`, by N.
fn worker_switches(pid: u32) -> std::collections::BTreeMap<String, u64> {
    let mut found = std::collections::BTreeMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let name = name.trim();
        let is_worker = name
            .strip_prefix("routerd-w")
            .is_some_and(|n| n.parse::<u32>().is_ok());
        if !is_worker {
            continue;
        }
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        let switches = status
            .lines()
            .filter(|l| l.contains("ctxt_switches"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum();
        found.insert(name.to_owned(), switches);
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_share_the_port_and_each_serves_connections() {
    let b = Backend::start("b").await;
    let cfg = config(vec![Route::proxy("all", &b.url()).m(prefix("/"))]);
    let rd = Routerd::launch(&cfg)
        .arg("--workers")
        .arg("3")
        .start()
        .await;
    let before = worker_switches(rd.pid());
    assert_eq!(
        before.keys().cloned().collect::<Vec<_>>(),
        ["routerd-w0", "routerd-w1", "routerd-w2"],
        "one thread per worker"
    );
    // 30 connections: the kernel spreads them over the three sockets (the chance that one
    // gets none is about 1 in 60,000); each is served, through its worker's own pool.
    let mut clients = Vec::new();
    for i in 0..30 {
        let proxy = rd.proxy;
        clients.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(proxy).await.unwrap();
            for _ in 0..3 {
                exchange(&mut s, &format!("/c{i}"), "\r\n\r\n").await;
            }
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    assert_eq!(b.requests(), 90);
    let after = worker_switches(rd.pid());
    for (name, n) in &after {
        assert!(
            *n > before[name],
            "{name} never woke up: no connection reached it ({before:?} -> {after:?})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_runtime_serves_without_worker_threads() {
    let rd = Routerd::launch(&pong())
        .arg("--workers")
        .arg("shared")
        .start()
        .await;
    let mut s = TcpStream::connect(rd.proxy).await.unwrap();
    exchange(&mut s, "/ping", "\r\n\r\npong").await;
    assert!(worker_switches(rd.pid()).is_empty());
}

#[test]
fn a_bad_worker_count_is_refused_by_name() {
    let out = std::process::Command::new(routerd_bin())
        .args(["--workers", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--workers") && err.contains("at least 1"),
        "{err}"
    );
}
