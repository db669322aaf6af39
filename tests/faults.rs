//! Fault tests against a real `routerd`: backends that reset mid-body, answer garbage or never
//! answer; a client that disconnects mid-upload; a route store whose disk is full; SIGKILL in
//! the middle of an apply (a restart shows all of it or none).
#![allow(clippy::unwrap_used)]

mod harness;

use std::time::{Duration, Instant};

use bytes::Bytes;
use harness::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ROUTES: &str = "/api/v1/routes";

/// A raw TCP backend: reads a request head, then runs `answer` on the socket.
async fn raw_backend<F, Fut>(answer: F) -> (String, tokio::task::JoinHandle<()>)
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let answer = std::sync::Arc::new(answer);
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                answer(stream).await;
            });
        }
    });
    (url, task)
}

fn answer(name: &str, p: &str, body: &str) -> Value {
    json!({
        "name": name,
        "matchers": [{"condition": "path", "pattern": p}],
        "filters": [{"name": "respond", "args": ["200", body, "text/plain"]}],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_faults_become_clean_errors() {
    // Promises 100,000 bytes, sends 1,000, then resets the connection.
    let (reset_url, _reset) = raw_backend(|mut s| async move {
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n")
            .await;
        let _ = s.write_all(&[b'a'; 1000]).await;
        let _ = s.flush().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let std = s.into_std().unwrap();
        let sock = socket2::SockRef::from(&std);
        let _ = sock.set_linger(Some(Duration::ZERO));
        drop(std);
    })
    .await;
    // Answers something that is not HTTP.
    let (garbage_url, _garbage) = raw_backend(|mut s| async move {
        let _ = s
            .write_all(b"SSH-2.0-OpenSSH_9.2\r\nnot http at all\r\n\r\n")
            .await;
    })
    .await;
    // Reads the request and never answers.
    let (mute_url, _mute) = raw_backend(|s| async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        drop(s);
    })
    .await;
    let rd = Routerd::launch(&config(vec![
        Route::proxy("reset", &reset_url).m(prefix("/reset")),
        Route::proxy("garbage", &garbage_url).m(prefix("/garbage")),
        Route::proxy("mute", &mute_url)
            .m(prefix("/mute"))
            .set("timeout_ms", json!(500)),
        Route::respond("fine").m(path("/fine")),
    ]))
    .start()
    .await;

    // Reset mid-body: the client must not get a short body that looks complete.
    let got = rd.try_request("GET", "/reset", &[], Bytes::new()).await;
    match &got {
        Err(_) => {}
        Ok(resp) => assert!(
            resp.status != 200 || resp.body.len() == 100_000,
            "a cut body looked complete: {} with {} bytes",
            resp.status,
            resp.body.len()
        ),
    }
    let resp = rd.get("/garbage").await;
    assert_eq!(resp.status, 502, "garbage: {}", resp.describe());
    assert_eq!(resp.json()["route"], "garbage", "{}", resp.describe());
    let started = Instant::now();
    let resp = rd.get("/mute").await;
    assert_eq!(resp.status, 504, "mute: {}", resp.describe());
    assert!(started.elapsed() < Duration::from_secs(10));
    // Nothing else is disturbed.
    let resp = rd.get("/fine").await;
    assert_eq!((resp.status, resp.text().as_str()), (200, "fine"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_mid_upload_frees_its_connection() {
    let b = Backend::start("b").await;
    let rd = Routerd::launch(&config(vec![
        Route::proxy("upload", &b.url()).m(prefix("/upload")),
        Route::respond("fine").m(path("/fine")),
    ]))
    .arg("--max-connections")
    .arg("1")
    .start()
    .await;
    for round in 0..3 {
        let mut s = TcpStream::connect(rd.proxy).await.unwrap();
        s.write_all(b"POST /upload HTTP/1.1\r\nHost: t\r\ncontent-length: 1000000\r\n\r\n")
            .await
            .unwrap();
        s.write_all(&vec![b'x'; 100_000]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(s);
        // With one connection slot, this is served only once the abandoned one is gone.
        let resp = tokio::time::timeout(Duration::from_secs(10), rd.get("/fine"))
            .await
            .unwrap_or_else(|_| panic!("round {round}: the abandoned upload kept its slot"));
        assert_eq!((resp.status, resp.text().as_str()), (200, "fine"));
    }
    assert!(
        b.bytes_received() < 3 * 1_000_000,
        "the backend got whole bodies that were never sent"
    );
}

/// A request body that turns malformed after routerd started forwarding it, or that the
/// client abandons, is the client's fault: 400 (as nginx answers) for the malformed one, 499 in
/// the access log for the one the client left, counted as client errors; never a 502 "the
/// backend is unreachable", a 5xx in `/metrics` or a backend failure in the log, which would
/// page someone for a healthy backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_broken_body_is_the_clients_fault_not_the_backends() {
    let b = Backend::start("b").await;
    let dir = TempDir::new("client-fault");
    let log = dir.path().join("access.log");
    let rd = Routerd::launch(&config(vec![
        Route::proxy("upload", &b.url()).m(prefix("/upload")),
    ]))
    .arg("--access-log")
    .arg("json")
    .arg("--access-log-file")
    .arg(&log)
    .start()
    .await;
    // Malformed: a valid first chunk, forwarded; then a chunk size line that is not hex.
    let mut s = TcpStream::connect(rd.proxy).await.unwrap();
    s.write_all(
        b"POST /upload HTTP/1.1\r\nHost: t\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.write_all(b"zz\r\n").await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer).to_string();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.contains(r#"{"error":"the request body is malformed","route":"upload"}"#),
        "{answer}"
    );
    // Abandoned: half of a declared length, then the client goes away.
    let mut s = TcpStream::connect(rd.proxy).await.unwrap();
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: t\r\ncontent-length: 100000\r\n\r\n")
        .await
        .unwrap();
    s.write_all(&[b'x'; 50_000]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(s);
    let docs = json_lines(&log, 2, Duration::from_secs(10)).await;
    assert!(docs.len() >= 2, "two access-log lines: {docs:?}");
    let outcome = |d: &Value| (d["status"].clone(), d["error"].clone(), d["route"].clone());
    assert_eq!(
        outcome(&docs[0]),
        (json!(400), json!("client_body_invalid"), json!("upload"))
    );
    assert_eq!(
        outcome(&docs[1]),
        (json!(499), json!("client_closed"), json!("upload"))
    );
    let metrics = rd.admin_get("/metrics").await.text();
    assert!(
        metrics.contains(r#"routerd_requests_total{route="upload",status="4xx"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"routerd_requests_total{route="upload",status="5xx"} 0"#),
        "{metrics}"
    );
    let blamed: Vec<String> = rd
        .logs()
        .into_iter()
        .filter(|l| l.contains("backend request failed"))
        .collect();
    assert!(blamed.is_empty(), "the backend is not blamed: {blamed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_the_write_and_loses_nothing() {
    let data = TempDir::new("full-disk");
    let cfg = config(vec![Route::respond("file").m(path("/file"))]);
    // Find the store's size with a few routes, then start again with room for little more.
    {
        let rd = Routerd::launch(&cfg).data_dir(data.path()).start().await;
        for i in 0..3 {
            let resp = rd
                .admin_json(
                    "POST",
                    ROUTES,
                    Some(&answer(&format!("kept-{i}"), &format!("/k{i}"), "kept")),
                )
                .await;
            assert_eq!(resp.status, 201, "{}", resp.describe());
        }
    }
    let size = std::fs::metadata(data.path().join("routes.redb"))
        .unwrap()
        .len();
    println!("routes.redb holds 3 routes in {size} bytes");
    let mut rd = Routerd::launch(&cfg)
        .data_dir(data.path())
        .file_size_limit(size + 256 * 1024)
        .start()
        .await;
    // A route bigger than the room left: its commit cannot be written.
    let big = answer("big", "/big", &"x".repeat(3 << 20));
    let resp = rd.admin_json("POST", ROUTES, Some(&big)).await;
    println!("big route: {}", resp.describe());
    assert_eq!(resp.status, 500, "{}", resp.describe());
    assert_eq!(resp.json()["error"], "store_failed");
    assert!(
        resp.json()["message"]
            .as_str()
            .is_some_and(|m| m.contains("routes.redb")),
        "the message names the store: {}",
        resp.describe()
    );
    // Not served, and serving goes on.
    assert_eq!(rd.get("/big").await.status, 404);
    assert_eq!(rd.get("/k0").await.text(), "kept");
    assert_eq!(rd.get("/file").await.text(), "file");
    assert!(rd.is_running(), "routerd died on a full disk");
    // Small writes that fit are acknowledged (or refused); whatever was acknowledged survives.
    let mut acknowledged = vec!["kept-0", "kept-1", "kept-2"];
    let resp = rd
        .admin_json("POST", ROUTES, Some(&answer("small", "/small", "small")))
        .await;
    println!("small route after the failure: {}", resp.describe());
    if resp.status == 201 {
        acknowledged.push("small");
    } else {
        assert_eq!(resp.json()["error"], "store_failed", "{}", resp.describe());
    }
    rd.kill9();
    let rd = Routerd::launch(&cfg).data_dir(data.path()).start().await;
    let doc = rd.admin_get(&format!("{ROUTES}?limit=1000")).await.json();
    let names: Vec<&str> = doc["routes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["source"] == "api")
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names, acknowledged, "after a restart");
    assert_eq!(rd.get("/big").await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_an_apply_keeps_all_of_it_or_none() {
    const ROUTES_PER_APPLY: usize = 1000;
    let data = TempDir::new("kill-apply");
    let cfg = config(vec![]);
    let doc = |generation: usize| {
        let routes: Vec<Value> = (0..ROUTES_PER_APPLY)
            .map(|i| {
                answer(
                    &format!("r{i}"),
                    &format!("/r/{i}"),
                    &format!("gen{generation}"),
                )
            })
            .collect();
        json!({ "routes": routes })
    };
    let mut committed = 0usize;
    for generation in 1..=6 {
        let mut rd = Routerd::launch(&cfg).data_dir(data.path()).start().await;
        let admin = rd.admin;
        let body = doc(generation).to_string();
        let apply = tokio::spawn(async move {
            request_to(
                admin,
                "POST",
                "/api/v1/routes/apply",
                &[("content-type", "application/json")],
                body,
            )
            .await
        });
        // Kill at a different point each time: before, during or after the commit.
        let delays_ms = [0, 30, 90, 200, 400, 1500];
        tokio::time::sleep(Duration::from_millis(delays_ms[generation - 1])).await;
        rd.kill9();
        let answered = apply.await.unwrap();
        if let Ok(resp) = &answered
            && resp.status == 200
        {
            committed = generation;
        }
        let rd = Routerd::launch(&cfg).data_dir(data.path()).start().await;
        let listed = rd.admin_get(&format!("{ROUTES}?limit=1000")).await.json();
        let bodies: std::collections::BTreeSet<String> = listed["routes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r["filters"][0]["args"][1]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        let count = listed["total"].as_u64().unwrap_or(0) as usize;
        println!(
            "generation {generation}: answered {:?}, after restart {count} routes {bodies:?}",
            answered.as_ref().map(|r| r.status)
        );
        assert!(
            count == 0 || (count == ROUTES_PER_APPLY && bodies.len() == 1),
            "generation {generation}: a partial apply survived: {count} routes, bodies {bodies:?}"
        );
        if count > 0 {
            let generation_seen: usize = bodies
                .iter()
                .next()
                .and_then(|b| b.strip_prefix("gen"))
                .and_then(|n| n.parse().ok())
                .unwrap();
            assert!(
                generation_seen >= committed,
                "generation {generation}: acknowledged gen{committed} lost, found gen{generation_seen}"
            );
            let resp = rd.get("/r/7").await;
            assert_eq!(
                resp.text(),
                format!("gen{generation_seen}"),
                "served after restart"
            );
        } else {
            assert_eq!(committed, 0, "an acknowledged apply was lost");
        }
        drop(rd);
    }
}
