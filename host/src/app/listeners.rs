//! The listeners: the proxy's accept loops (a thread per worker, or tasks on one shared
//! runtime), the TLS listener with its certificate reloads, and the shutdown signal.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{error, info, warn};

use super::{AppError, Settings};
use crate::app::watch::FileWatch;
use crate::server;
use routerd_proxy::Proxy;
use routerd_proxy::server::tls::{CertSource, TlsTerminator};
use routerd_proxy::server::workers::{self, Workers};

/// The proxy listeners' accept loops: tasks on the shared runtime, or a thread per worker.
pub(super) enum ProxyServing {
    Shared(Vec<tokio::task::JoinHandle<()>>),
    Workers(Vec<std::thread::JoinHandle<()>>),
}

impl ProxyServing {
    /// Serves `plain` (and `tls`, one socket per worker each) until `stop` turns true.
    pub(super) fn start(
        mode: Workers,
        plain: Vec<std::net::TcpListener>,
        tls: Option<(Vec<std::net::TcpListener>, tokio_rustls::TlsAcceptor)>,
        proxy: &Arc<Proxy>,
        stop: &watch::Receiver<bool>,
        options: server::ServeOptions,
    ) -> Result<ProxyServing, AppError> {
        // A cap per listener, shared by its accept loops.
        let (plain_slots, tls_slots) = (
            server::connection_slots(&options),
            server::connection_slots(&options),
        );
        let (tls, acceptor) = match tls {
            Some((listeners, acceptor)) => {
                (listeners.into_iter().map(Some).collect(), Some(acceptor))
            }
            None => (plain.iter().map(|_| None).collect::<Vec<_>>(), None),
        };
        let serve = {
            let (proxy, stop) = (proxy.clone(), stop.clone());
            move |listener: std::net::TcpListener,
                  acceptor: Option<tokio_rustls::TlsAcceptor>,
                  slots| {
                let (proxy, stop) = (proxy.clone(), stop.clone());
                async move {
                    match TcpListener::from_std(listener) {
                        Ok(l) => server::serve(l, acceptor, proxy, stop, options, slots).await,
                        Err(e) => error!("cannot serve a proxy listener: {e}"),
                    }
                }
            }
        };
        // One accept loop per listening socket: a plain one and, with TLS, a TLS one each.
        let loops: Vec<_> = plain
            .into_iter()
            .zip(tls)
            .map(|(listener, tls_listener)| {
                let plain = serve(listener, None, plain_slots.clone());
                let tls = tls_listener.map(|l| serve(l, acceptor.clone(), tls_slots.clone()));
                async move {
                    tokio::join!(plain, async move {
                        if let Some(tls) = tls {
                            tls.await;
                        }
                    });
                }
            })
            .collect();
        if mode == Workers::Shared {
            return Ok(ProxyServing::Shared(
                loops.into_iter().map(tokio::spawn).collect(),
            ));
        }
        // Every runtime first, so a failure stops the start before anything serves.
        let runtimes = loops
            .iter()
            .map(|_| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
            })
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(AppError::io("cannot start the workers' runtimes"))?;
        let mut threads = Vec::with_capacity(runtimes.len());
        for (index, (runtime, work)) in runtimes.into_iter().zip(loops).enumerate() {
            let thread = std::thread::Builder::new()
                // Thread names are cut at 15 bytes: keep the index inside them.
                .name(format!("routerd-w{index}"))
                .spawn(move || {
                    workers::enter(index);
                    runtime.block_on(work);
                })
                .map_err(AppError::io("cannot start a worker thread"))?;
            threads.push(thread);
        }
        info!(workers = threads.len(), "proxy workers started");
        Ok(ProxyServing::Workers(threads))
    }

    /// Waits until every accept loop has drained.
    pub(super) async fn finished(self) {
        match self {
            ProxyServing::Shared(tasks) => {
                for task in tasks {
                    let _ = task.await;
                }
            }
            ProxyServing::Workers(threads) => {
                let _ = tokio::task::spawn_blocking(move || {
                    for thread in threads {
                        let _ = thread.join();
                    }
                })
                .await;
            }
        }
    }
}

/// Loads the certificates (refusing to start on a bad one), binds the TLS listener and starts
/// the reload task; logs what it serves.
pub(super) async fn start_tls(
    args: &Settings,
    addr: SocketAddr,
    control: &tokio::runtime::Handle,
) -> Result<
    (
        Vec<std::net::TcpListener>,
        Arc<TlsTerminator>,
        tokio::task::JoinHandle<()>,
    ),
    AppError,
> {
    let source = CertSource {
        default: args.tls_cert.clone().zip(args.tls_key.clone()),
        dir: args.tls_dir.clone(),
    };
    let (files, dir) = source.watched();
    // Watch before the first read, so a change made while starting is not missed.
    let mut watch = FileWatch::paths(&files, dir.as_deref()).map_err(|source| AppError::Watch {
        what: "cannot watch the TLS certificate files",
        source,
    })?;
    let terminator = Arc::new(TlsTerminator::new(source).map_err(AppError::Tls)?);
    log_certs(&terminator);
    let listeners = workers::bind_shared(addr, args.workers.threads().unwrap_or(1))
        .map_err(AppError::io(format!("cannot listen on {addr} (TLS)")))?;
    let bound = listeners
        .first()
        .ok_or_else(|| AppError::Settings("no TLS listener".into()))?
        .local_addr()
        .map_err(AppError::io("the TLS listener's address"))?;
    info!("tls listening on https://{bound}");
    let reloading = terminator.clone();
    let task = control.spawn(async move {
        while watch.changed().await.is_some() {
            let t = reloading.clone();
            let result = tokio::task::spawn_blocking(move || t.reload()).await;
            match result {
                Ok(Ok(())) => {
                    info!("TLS certificates reloaded");
                    log_certs(&reloading);
                }
                Ok(Err(e)) => warn!(
                    "TLS certificate change rejected, still serving the previous certificates: {e}"
                ),
                Err(e) => warn!("TLS certificate reload failed: {e}"),
            }
        }
    });
    Ok((listeners, terminator, task))
}

fn log_certs(terminator: &TlsTerminator) {
    let set = terminator.current();
    info!(
        names = ?set.names(),
        default = set.has_default(),
        "TLS certificates loaded"
    );
}

pub(super) async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            warn!("cannot listen for SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
