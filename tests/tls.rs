//! Black-box TLS tests: a real `routerd` with `--tls-listen`, certificates made by a test CA
//! (rcgen) on disk, and a rustls client that checks which certificate each SNI name gets, the
//! ALPN outcome, what the backend is told (`X-Forwarded-Proto`, a plugin's `scheme()`), and
//! that a certificate replaced on disk is served without a failed request.
#![allow(clippy::unwrap_used)]

mod harness;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use harness::*;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A certificate authority made for one test.
struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    der: CertificateDer<'static>,
    pem: String,
}

impl TestCa {
    fn new() -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "routerd test CA");
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            der: cert.der().clone(),
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf for `names`: its PEM chain, its PEM key and its DER.
    fn leaf(&self, names: &[&str]) -> (String, String, Vec<u8>) {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }

    /// Writes a leaf for `name` as `dir/stem.crt` and `dir/stem.key` (by rename, as a
    /// deployment tool would); returns its DER.
    fn write_leaf(&self, dir: &Path, stem: &str, name: &str) -> Vec<u8> {
        let (cert, key, der) = self.leaf(&[name]);
        for (ext, text) in [("key", key), ("crt", cert)] {
            let tmp = dir.join(format!(".{stem}.{ext}.tmp"));
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, dir.join(format!("{stem}.{ext}"))).unwrap();
        }
        der
    }

    fn client(&self, alpn: &[&[u8]]) -> TlsConnector {
        self.client_with(rustls::DEFAULT_VERSIONS, alpn)
    }

    /// A client that speaks TLS 1.2 only.
    fn client_tls12(&self) -> TlsConnector {
        self.client_with(&[&rustls::version::TLS12], &[])
    }

    fn client_with(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
        alpn: &[&[u8]],
    ) -> TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        // Every connection a full handshake: a resumed session shows the first certificate.
        config.resumption = rustls::client::Resumption::disabled();
        TlsConnector::from(Arc::new(config))
    }
}

/// What one TLS exchange saw.
struct TlsExchange {
    leaf: Vec<u8>,
    alpn: Option<Vec<u8>>,
    version: Option<rustls::ProtocolVersion>,
    resp: Resp,
}

/// `GET path` over a fresh TLS connection to `addr` with SNI `sni`, on h2 when ALPN picks it.
async fn tls_get(
    connector: &TlsConnector,
    addr: SocketAddr,
    sni: &str,
    path: &str,
) -> Result<TlsExchange, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let name = ServerName::try_from(sni.to_owned()).map_err(|e| e.to_string())?;
    let tls = tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp))
        .await
        .map_err(|_| "handshake timed out".to_owned())?
        .map_err(|e| format!("handshake: {e}"))?;
    let (_, session) = tls.get_ref();
    let leaf = session
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.as_ref().to_vec())
        .ok_or("no peer certificate")?;
    let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
    let version = session.protocol_version();
    let io = TokioIo::new(tls);
    let resp = if alpn.as_deref() == Some(b"h2") {
        let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| format!("h2 handshake: {e}"))?;
        tokio::spawn(conn);
        let req = http::Request::get(format!("https://{sni}{path}"))
            .body(full(Bytes::new()))
            .map_err(|e| e.to_string())?;
        send.send_request(req)
            .await
            .map_err(|e| format!("h2 request: {e}"))?
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| format!("h1 handshake: {e}"))?;
        tokio::spawn(conn);
        let req = http::Request::get(path)
            .header(http::header::HOST, sni)
            .body(full(Bytes::new()))
            .map_err(|e| e.to_string())?;
        send.send_request(req)
            .await
            .map_err(|e| format!("h1 request: {e}"))?
    };
    Ok(TlsExchange {
        leaf,
        alpn,
        version,
        resp: collect(resp).await?,
    })
}

/// The TLS listener's address, from its log line.
async fn tls_addr(rd: &Routerd) -> SocketAddr {
    let line = rd
        .wait_for_log(0, Duration::from_secs(10), |l| {
            l.contains("tls listening on")
        })
        .await
        .unwrap_or_else(|| panic!("no TLS listener logged:\n{}", rd.logs().join("\n")));
    let re = regex::Regex::new(r"https://([0-9.]+:[0-9]+)").unwrap();
    re.captures(&line)
        .and_then(|c| c[1].parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
}

fn tls_args(launch: Launch, dir: &Path, default: Option<&Path>) -> Launch {
    let launch = launch
        .arg("--tls-listen")
        .arg("127.0.0.1:0")
        .arg("--tls-dir")
        .arg(dir);
    match default {
        Some(d) => launch
            .arg("--tls-cert")
            .arg(d.join("default.crt"))
            .arg("--tls-key")
            .arg(d.join("default.key")),
        None => launch,
    }
}

/// Two SNI names get their own certificates, a wildcard covers its subdomains, other names
/// get the default pair; ALPN offers h2 and http/1.1; TLS 1.2 is taken; the backend is told
/// `https` both by `X-Forwarded-Proto` and by a plugin's `scheme()`, and a `host` matcher
/// routes by the name; the plain listener still says `http`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_picks_the_certificate_and_the_backend_hears_https() {
    let ca = TestCa::new();
    let certs = TempDir::new("tls-certs");
    let default_dir = TempDir::new("tls-default");
    let a = ca.write_leaf(certs.path(), "a.test", "a.test");
    let b = ca.write_leaf(certs.path(), "b.test", "b.test");
    let wild = ca.write_leaf(certs.path(), "_.w.test", "*.w.test");
    let fallback = ca.write_leaf(default_dir.path(), "default", "other.test");

    let backend = Backend::start("echo").await;
    let cfg = config(vec![
        Route::respond("only-b").m(host("b.test")).m(path("/who")),
        Route::respond("anyone").m(path("/who")),
        Route::proxy("echo", &backend.url())
            .m(prefix("/echo"))
            .plugin_filter("add-headers", &["req:X-Scheme", "{scheme}"]),
    ]);
    let launch = Routerd::launch(&cfg).plugin("add-headers");
    let rd = tls_args(launch, certs.path(), Some(default_dir.path()))
        .start()
        .await;
    let addr = tls_addr(&rd).await;
    let h1 = ca.client(&[b"http/1.1"]);
    let h2 = ca.client(&[b"h2", b"http/1.1"]);

    let ex = tls_get(&h1, addr, "a.test", "/echo/x").await.unwrap();
    assert!(ex.leaf == a, "a.test did not get its certificate");
    assert_eq!(ex.alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(ex.resp.status, 200, "{}", ex.resp.describe());
    assert_eq!(ex.resp.echoed_header("x-forwarded-proto"), ["https"]);
    assert_eq!(ex.resp.echoed_header("x-scheme"), ["https"]);
    assert_eq!(ex.resp.echoed_header("x-forwarded-host"), ["a.test"]);

    let ex = tls_get(&h2, addr, "b.test", "/who").await.unwrap();
    assert!(ex.leaf == b, "b.test did not get its certificate");
    assert_eq!(ex.alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(ex.resp.version, http::Version::HTTP_2);
    assert_eq!(ex.resp.text(), "only-b");
    let ex = tls_get(&h2, addr, "b.test", "/echo/h2").await.unwrap();
    assert_eq!(ex.resp.echoed_header("x-forwarded-proto"), ["https"]);
    assert_eq!(ex.resp.echoed_header("x-scheme"), ["https"]);

    let ex = tls_get(&h1, addr, "a.test", "/who").await.unwrap();
    assert_eq!(ex.resp.text(), "anyone");
    let ex = tls_get(&h1, addr, "x.w.test", "/who").await.unwrap();
    assert!(ex.leaf == wild, "x.w.test did not get the wildcard");
    // The default pair for names without their own: its name does not match, so a client
    // that checks names (as this one does) refuses it.
    let err = tls_get(&h1, addr, "unknown.test", "/who").await.err();
    assert!(
        err.as_deref().is_some_and(|e| e.contains("handshake")),
        "{err:?}"
    );
    let ex = tls_get(&h1, addr, "other.test", "/who").await.unwrap();
    assert!(
        ex.leaf == fallback,
        "other.test did not get the default pair"
    );

    let ex = tls_get(&ca.client_tls12(), addr, "a.test", "/who")
        .await
        .unwrap();
    assert_eq!(ex.version, Some(rustls::ProtocolVersion::TLSv1_2));
    assert_eq!(ex.resp.status, 200);

    // Plain HTTP on the other listener.
    let resp = rd.get("/echo/plain").await;
    assert_eq!(resp.echoed_header("x-forwarded-proto"), ["http"]);
    assert_eq!(resp.echoed_header("x-scheme"), ["http"]);

    // match explains a request as it would come in over TLS.
    let explained = rd
        .admin_json(
            "POST",
            "/api/v1/match",
            Some(&serde_json::json!({"path": "/who", "host": "b.test", "scheme": "https"})),
        )
        .await
        .json();
    assert_eq!(explained["route"], "only-b", "{explained}");
}

/// A certificate replaced on disk (key, then certificate, each by rename) is served within
/// 2 s, while clients keep connecting without one failed request; a broken replacement is
/// refused with the file named, and the last good certificate keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_certificate_is_served_without_a_failed_request() {
    let ca = TestCa::new();
    let certs = TempDir::new("tls-reload");
    let first = ca.write_leaf(certs.path(), "a.test", "a.test");
    let cfg = config(vec![Route::respond("who").m(path("/who"))]);
    let rd = tls_args(Routerd::launch(&cfg), certs.path(), None)
        .start()
        .await;
    let addr = tls_addr(&rd).await;
    let connector = ca.client(&[b"http/1.1"]);
    assert!(
        tls_get(&connector, addr, "a.test", "/who")
            .await
            .unwrap()
            .leaf
            == first
    );

    // Clients keep connecting (each a new handshake) until told to stop; bounded in time.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut clients = Vec::new();
    for _ in 0..2 {
        let (stop, ok, failed, connector) =
            (stop.clone(), ok.clone(), failed.clone(), connector.clone());
        clients.push(tokio::spawn(async move {
            let until = Instant::now() + Duration::from_secs(20);
            let mut errors = Vec::new();
            while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                match tls_get(&connector, addr, "a.test", "/who").await {
                    Ok(ex) if ex.resp.status == 200 => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(ex) => errors.push(ex.resp.describe()),
                    Err(e) => errors.push(e),
                }
                failed.store(errors.len(), Ordering::Relaxed);
            }
            errors
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = ca.write_leaf(certs.path(), "a.test", "a.test");
    let replaced = Instant::now();
    let served = wait_until(
        async || {
            tls_get(&connector, addr, "a.test", "/who")
                .await
                .is_ok_and(|ex| ex.leaf == second)
        },
        Duration::from_secs(2),
    )
    .await;
    let took = replaced.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut errors = Vec::new();
    for c in clients {
        errors.extend(c.await.unwrap());
    }
    assert!(
        served,
        "the new certificate was not served within 2 s:\n{}",
        rd.logs().join("\n")
    );
    assert!(errors.is_empty(), "failed requests: {errors:?}");
    assert!(ok.load(Ordering::Relaxed) > 0);
    eprintln!(
        "new certificate served after {took:?}; {} requests during the swap, {} failed",
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed)
    );

    // A broken certificate: refused, named, and the last good one keeps serving.
    let from = rd.log_count();
    std::fs::write(
        certs.path().join(".bad.tmp"),
        "-----BEGIN CERTIFICATE-----\nnot base64\n",
    )
    .unwrap();
    std::fs::rename(
        certs.path().join(".bad.tmp"),
        certs.path().join("a.test.crt"),
    )
    .unwrap();
    let rejected = rd
        .wait_for_log(from, Duration::from_secs(5), |l| {
            l.contains("TLS certificate change rejected") && l.contains("a.test.crt")
        })
        .await;
    assert!(rejected.is_some(), "{}", rd.logs().join("\n"));
    assert!(
        tls_get(&connector, addr, "a.test", "/who")
            .await
            .unwrap()
            .leaf
            == second
    );
}

/// A bad certificate at start is a start-up error that names the file; nothing listens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_certificate_at_start_names_the_file() {
    let ca = TestCa::new();
    let certs = TempDir::new("tls-bad");
    ca.write_leaf(certs.path(), "a.test", "a.test");
    ca.write_leaf(certs.path(), "b.test", "b.test");
    // b's key is a's: the pair does not fit.
    std::fs::copy(
        certs.path().join("a.test.key"),
        certs.path().join("b.test.key"),
    )
    .unwrap();
    let cfg = config(vec![Route::respond("who").m(path("/who"))]);
    let out = tls_args(Routerd::launch(&cfg), certs.path(), None)
        .run_to_exit(Duration::from_secs(20))
        .await;
    assert!(!out.started, "routerd served with a bad certificate");
    assert!(out.status.is_some_and(|s| !s.success()), "{:?}", out.status);
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(
        text.contains("b.test.key") && text.contains("does not belong to"),
        "{text}"
    );
}

/// An HTTPS backend on 127.0.0.1 with `cert`/`key` (PEM): HTTP/1.1 and h2 by ALPN, each
/// answer `VERSION AUTHORITY-OR-HOST`.
async fn https_backend(cert: &str, key: &str) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(
                    |req: http::Request<hyper::body::Incoming>| async move {
                        let host = req
                            .uri()
                            .authority()
                            .map(|a| a.to_string())
                            .or_else(|| {
                                req.headers()
                                    .get(http::header::HOST)
                                    .and_then(|h| h.to_str().ok())
                                    .map(str::to_owned)
                            })
                            .unwrap_or_default();
                        let text = format!("{:?} {host} {}", req.version(), req.uri().path());
                        Ok::<_, std::convert::Infallible>(http::Response::new(full(text)))
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (addr, task)
}

/// `https://` backends: trusted through the route's `tls_ca_file` with `tls_server_name`, over
/// HTTP/1.1 and (`upstream_protocol: h2`) HTTP/2; refused (502) when the certificate is not
/// trusted or names another host; taken with `tls_insecure_skip_verify` (with a warning that
/// names the route); bad settings are route errors naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_backends_with_their_own_ca_name_and_protocol() {
    let ca = TestCa::new();
    let dir = TempDir::new("tls-backend");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let (cert, key, _) = ca.leaf(&["backend.test"]);
    let (addr, _backend) = https_backend(&cert, &key).await;
    let url = format!("https://{addr}");
    let ca_path = ca_file.display().to_string();
    let trusted = |name: &str, prefix_path: &str| {
        Route::proxy(name, &url)
            .m(prefix(prefix_path))
            .set("tls_ca_file", ca_path.clone().into())
            .set("tls_server_name", "backend.test".into())
    };
    let cfg = config(vec![
        trusted("h1", "/h1"),
        trusted("h2", "/h2").set("upstream_protocol", "h2".into()),
        Route::proxy("public-roots", &url).m(prefix("/public")),
        trusted("wrong-name", "/wrong").set("tls_server_name", "other.test".into()),
        Route::proxy("insecure", &url)
            .m(prefix("/insecure"))
            .set("tls_insecure_skip_verify", true.into()),
    ]);
    let rd = Routerd::start(&cfg).await;

    let resp = rd.get("/h1/a").await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(resp.text(), format!("HTTP/1.1 {addr} /h1/a"));
    let resp = rd.get("/h2/b").await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(resp.text(), format!("HTTP/2.0 {addr} /h2/b"));
    for (path, route) in [("/public/c", "public-roots"), ("/wrong/d", "wrong-name")] {
        let resp = rd.get(path).await;
        assert_eq!(resp.status, 502, "{path}: {}", resp.describe());
        assert_eq!(resp.json()["error"], "the backend is unreachable");
        // The line may reach the log reader a moment after the answer reaches us.
        let why = rd
            .wait_for_log(0, Duration::from_secs(5), |l| {
                l.contains("backend request failed")
                    && l.contains(route)
                    && l.to_ascii_lowercase().contains("certificate")
            })
            .await;
        assert!(
            why.is_some(),
            "the log does not say why {route} failed:\n{}",
            rd.logs().join("\n")
        );
    }
    let resp = rd.get("/insecure/e").await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert!(
        rd.logs()
            .iter()
            .any(|l| l.contains("tls_insecure_skip_verify") && l.contains("insecure")),
        "no warning for the insecure route:\n{}",
        rd.logs().join("\n")
    );
    // Many requests reuse pooled TLS connections and keep working.
    for i in 0..50 {
        let resp = rd.get(&format!("/h2/{i}")).await;
        assert_eq!(resp.status, 200, "{}", resp.describe());
    }

    for (route, field, reason) in [
        (
            Route::proxy("bad", &url)
                .m(prefix("/x"))
                .set("tls_ca_file", "/nonexistent/ca.pem".into()),
            "tls_ca_file",
            "cannot read",
        ),
        (
            Route::proxy("bad", &format!("http://{addr}"))
                .m(prefix("/x"))
                .set("tls_server_name", "backend.test".into()),
            "tls_server_name",
            "only an https:// target_url",
        ),
        (
            Route::proxy("bad", &url)
                .m(prefix("/x"))
                .set("upstream_protocol", "h3".into()),
            "upstream_protocol",
            "neither",
        ),
    ] {
        let out = Routerd::launch(&config(vec![route]))
            .run_to_exit(Duration::from_secs(20))
            .await;
        assert!(!out.started);
        let text = format!("{}{}", out.stdout, out.stderr);
        assert!(
            text.contains(&format!("route \"bad\", field {field}")) && text.contains(reason),
            "{field}: {text}"
        );
    }
}

/// A route's `tls_ca_file` replaced on disk is trusted without touching the routes, as a
/// restart would: first the backend's CA is not in it (502), then it is (200).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_ca_file_is_used_without_a_route_change() {
    let (old_ca, new_ca) = (TestCa::new(), TestCa::new());
    let dir = TempDir::new("tls-ca-swap");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &old_ca.pem).unwrap();
    let (cert, key, _) = new_ca.leaf(&["backend.test"]);
    let (addr, _backend) = https_backend(&cert, &key).await;
    let cfg = config(vec![
        Route::proxy("b", &format!("https://{addr}"))
            .m(prefix("/b"))
            .set("tls_ca_file", ca_file.display().to_string().into())
            .set("tls_server_name", "backend.test".into()),
    ]);
    let rd = Routerd::start(&cfg).await;
    assert_eq!(rd.get("/b/1").await.status, 502);

    let tmp = dir.path().join(".ca.pem.tmp");
    std::fs::write(&tmp, &new_ca.pem).unwrap();
    std::fs::rename(&tmp, &ca_file).unwrap();
    let trusted = wait_until(
        async || rd.get("/b/2").await.status == 200,
        Duration::from_secs(3),
    )
    .await;
    assert!(
        trusted,
        "the new CA was not used:\n{}",
        rd.logs().join("\n")
    );
}
