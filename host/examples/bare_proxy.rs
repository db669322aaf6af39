//! The floor under routerd's proxy path: the same stack (hyper's HTTP/1.1 server, hyper-util's
//! pooled client, one single-threaded tokio runtime, as one routerd worker) forwarding every
//! request to one backend and doing nothing else. `tests/bench/e2e.sh` runs it beside nginx and
//! routerd, so what routerd spends beyond it is routerd's own work.
//!
//! `cargo run --release --example bare_proxy -- LISTEN BACKEND` (both `HOST:PORT`).

use std::convert::Infallible;
use std::net::SocketAddr;

use hyper::body::Incoming;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(backend)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: bare_proxy LISTEN BACKEND (both HOST:PORT)");
    };
    let listen: SocketAddr = listen.parse()?;
    let backend: SocketAddr = backend.parse()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(listen, backend))
}

async fn serve(listen: SocketAddr, backend: SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(256)
        .build(connector);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let client = client.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
                let client = client.clone();
                async move {
                    let pq = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
                    match format!("http://{backend}{pq}").parse() {
                        Ok(uri) => *req.uri_mut() = uri,
                        Err(_) => return Ok(bad_gateway()),
                    }
                    req.headers_mut().remove(http::header::HOST);
                    Ok::<_, Infallible>(match client.request(req).await {
                        Ok(resp) => resp.map(http_body_util::Either::Left),
                        Err(_) => bad_gateway(),
                    })
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn bad_gateway()
-> http::Response<http_body_util::Either<Incoming, http_body_util::Empty<bytes::Bytes>>> {
    let mut resp = http::Response::new(http_body_util::Either::Right(http_body_util::Empty::new()));
    *resp.status_mut() = http::StatusCode::BAD_GATEWAY;
    resp
}
