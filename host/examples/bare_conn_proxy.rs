//! The other floor under routerd's proxy path: hyper's HTTP/1.1 server and hyper's low-level
//! client (`hyper::client::conn::http1`, no hyper-util pool) with a thread-local list of idle
//! backend connections, on one single-threaded tokio runtime: the smallest transparent proxy
//! this stack allows. Each backend connection runs as its own task (hyper's usual way);
//! `bare_proxy` is the same with hyper-util's pooled client. `tests/bench/e2e.sh` runs both
//! beside nginx and routerd.
//!
//! `cargo run --release --example bare_conn_proxy -- LISTEN BACKEND` (both `HOST:PORT`).

use std::cell::RefCell;
use std::convert::Infallible;
use std::net::SocketAddr;

use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

thread_local! {
    /// Idle backend connections of this thread.
    static IDLE: RefCell<Vec<SendRequest<Incoming>>> = const { RefCell::new(Vec::new()) };
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(backend)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: bare_conn_proxy LISTEN BACKEND (both HOST:PORT)");
    };
    let listen: SocketAddr = listen.parse()?;
    let backend: SocketAddr = backend.parse()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(tokio::task::LocalSet::new().run_until(serve(listen, backend)))
}

async fn serve(listen: SocketAddr, backend: SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::task::spawn_local(async move {
            let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                forward(backend, req)
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

type Body = http_body_util::Either<Incoming, http_body_util::Empty<bytes::Bytes>>;

async fn forward(
    backend: SocketAddr,
    mut req: http::Request<Incoming>,
) -> Result<http::Response<Body>, Infallible> {
    // A backend request carries an origin-form target; the Host header goes along as it came.
    if let Some(pq) = req.uri().path_and_query().cloned() {
        *req.uri_mut() = pq.into();
    }
    // The newest connection whose last response has been read; the busy ones stay listed.
    let idle = IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let ready = idle.iter().rposition(SendRequest::is_ready);
        if ready.is_none() {
            idle.retain(|s| !s.is_closed());
        }
        ready.map(|i| idle.swap_remove(i))
    });
    let mut sender = match idle {
        Some(s) => s,
        None => match connect(backend).await {
            Some(s) => s,
            None => return Ok(bad_gateway()),
        },
    };
    let resp = match sender.send_request(req).await {
        Ok(resp) => resp,
        Err(_) => return Ok(bad_gateway()),
    };
    // Listed again at once; it is taken again once its body has been read (`is_ready`).
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        if idle.len() < 256 {
            idle.push(sender);
        }
    });
    Ok(resp.map(http_body_util::Either::Left))
}

async fn connect(backend: SocketAddr) -> Option<SendRequest<Incoming>> {
    let stream = tokio::net::TcpStream::connect(backend).await.ok()?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::task::spawn_local(async move {
        let _ = conn.await;
    });
    Some(sender)
}

fn bad_gateway() -> http::Response<Body> {
    let mut resp = http::Response::new(http_body_util::Either::Right(http_body_util::Empty::new()));
    *resp.status_mut() = http::StatusCode::BAD_GATEWAY;
    resp
}
