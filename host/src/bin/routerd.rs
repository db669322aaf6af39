//! `routerd`: the router server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{error, info, warn};

use routerd::access_log::{AccessLog, AccessLogFormat};
use routerd::admin::Admin;
use routerd::config::{self, watch::FileWatch};
use routerd::health::HealthChecks;
use routerd::live::LiveView;
use routerd::metrics::Metrics;
use routerd::plugins::{ChildCompiler, PluginEngine, PluginRegistry, PoolLimits, watcher};
use routerd::proxy::Proxy;
use routerd::proxy::upstream::{DEFAULT_MAX_HEADERS, UpstreamOptions};
use routerd::routeset::{RouteSet, StartError};
use routerd::routing::RouteTable;
use routerd::server::tls::{CertSource, TlsTerminator};
use routerd::server::workers::{self, Workers};
use routerd::server::{self, conn::ConnTimeouts};
use routerd::store::redb::RedbStore;

/// A programmable HTTP router.
#[derive(Parser, Debug)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Args {
    /// A command other than serving.
    #[command(subcommand)]
    command: Option<Command>,
    /// Route config file (JSON). Watched: valid changes apply at once, invalid ones are logged
    /// and the last good routes keep serving. Without it, an embedded example route set is served.
    #[arg(long, env = "ROUTERD_CONFIG")]
    config: Option<PathBuf>,
    /// Proxy listener address.
    #[arg(long, env = "ROUTERD_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Admin API listener address.
    #[arg(long, env = "ROUTERD_ADMIN", default_value = "127.0.0.1:9090")]
    admin: SocketAddr,
    /// A second proxy listener, TLS-terminating (TLS 1.2 and 1.3, ALPN h2 and http/1.1); needs
    /// --tls-cert and --tls-key, or --tls-dir.
    #[arg(long, env = "ROUTERD_TLS_LISTEN")]
    tls_listen: Option<SocketAddr>,
    /// PEM certificate chain for clients whose SNI name has no pair in --tls-dir.
    #[arg(long, env = "ROUTERD_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "ROUTERD_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// A directory of `NAME.crt` and `NAME.key` pairs, served to SNI `NAME` (`_.example.com`
    /// for `*.example.com`). Certificates are reloaded when their files change; a bad change
    /// is logged and the last good set keeps serving.
    #[arg(long, env = "ROUTERD_TLS_DIR")]
    tls_dir: Option<PathBuf>,
    /// Plugins directory (created if missing).
    #[arg(long, env = "ROUTERD_PLUGINS", default_value = "./plugins")]
    plugins: PathBuf,
    /// Data directory (created if missing).
    #[arg(long, env = "ROUTERD_DATA", default_value = "./data")]
    data: PathBuf,
    /// Where API routes (and, with etcd, uploaded plugins) are kept: `redb` (a database in the
    /// data directory, the default) or `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]`, shared by
    /// every instance given the same address (the prefix defaults to `/routerd`).
    #[arg(long, env = "ROUTERD_STORE", default_value = "redb")]
    store: String,
    /// This instance's name in `GET /api/v1/cluster` (etcd only); defaults to HOSTNAME-ADMINPORT.
    #[arg(long, env = "ROUTERD_INSTANCE_ID")]
    instance_id: Option<String>,
    /// Plugin instances alive at once (the pooling allocator's size).
    #[arg(long, env = "ROUTERD_PLUGIN_INSTANCES", default_value_t = 256)]
    plugin_instances: u32,
    /// Plugin linear memories alive at once.
    #[arg(long, env = "ROUTERD_PLUGIN_MEMORIES", default_value_t = 512)]
    plugin_memories: u32,
    /// The largest memory cap (MiB) a plugin may be given in its settings.
    #[arg(long, env = "ROUTERD_PLUGIN_MAX_MEMORY_MIB", default_value_t = 256)]
    plugin_max_memory_mib: usize,
    /// A file holding the admin API's bearer token; mutations need it. Mandatory when the admin
    /// listener is not on a loopback address.
    #[arg(long, env = "ROUTERD_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,
    /// Seconds between active health checks of the backends.
    #[arg(long, env = "ROUTERD_HEALTH_INTERVAL_SECS", default_value_t = 1)]
    health_interval_secs: u64,
    /// How long SIGTERM waits for in-flight requests.
    #[arg(long, env = "ROUTERD_DRAIN_SECS", default_value_t = 30)]
    drain_secs: u64,
    /// How long a client may take to send a request head once it started (nginx's
    /// `client_header_timeout`); then the connection is closed.
    #[arg(long, env = "ROUTERD_HEADER_READ_TIMEOUT", default_value = "15s", value_parser = duration)]
    header_read_timeout: Duration,
    /// How long a client connection may stay idle between requests, or before its first one
    /// (nginx's `keepalive_timeout`).
    #[arg(long, env = "ROUTERD_KEEPALIVE_TIMEOUT", default_value = "75s", value_parser = duration)]
    keepalive_timeout: Duration,
    /// The proxy's threads: `auto` (one per CPU routerd may run on), a count, or `shared`. Each
    /// worker is a single-threaded runtime with its own accept loop on every proxy listener
    /// (the sockets share the port with SO_REUSEPORT; the kernel spreads connections) and its own
    /// backend connections, like nginx's worker processes. `shared` is one work-stealing runtime
    /// with one listener: connections move between threads as load shifts.
    #[arg(long, env = "ROUTERD_WORKERS", default_value = "auto")]
    workers: Workers,
    /// Client connections open at once, per listener (all workers together); beyond it, new connections wait in the
    /// listen backlog until one closes.
    #[arg(long, env = "ROUTERD_MAX_CONNECTIONS", default_value_t = 10_000)]
    max_connections: usize,
    /// How long to wait for a backend's TCP connection.
    #[arg(long, env = "ROUTERD_BACKEND_CONNECT_TIMEOUT", default_value = "5s", value_parser = duration)]
    backend_connect_timeout: Duration,
    /// How long to wait for a backend's response head, connecting included; a route's
    /// `timeout_ms` overrides it.
    #[arg(long, env = "ROUTERD_BACKEND_RESPONSE_TIMEOUT", default_value = "60s", value_parser = duration)]
    backend_response_timeout: Duration,
    /// Header fields a client's request head may have (HTTP/1.1 and h2); more are answered 431.
    #[arg(long, env = "ROUTERD_MAX_REQUEST_HEADERS", default_value_t = DEFAULT_MAX_HEADERS)]
    max_request_headers: usize,
    /// Header fields a backend's response head may have; more are answered 502 `backend
    /// response head too large`.
    #[arg(long, env = "ROUTERD_MAX_RESPONSE_HEADERS", default_value_t = DEFAULT_MAX_HEADERS)]
    max_response_headers: usize,
    /// How long an upgraded connection (WebSocket, ...) may carry no byte either way.
    #[arg(long, env = "ROUTERD_UPGRADE_IDLE_TIMEOUT", default_value = "5m", value_parser = duration)]
    upgrade_idle_timeout: Duration,
    /// One line per request: `off`, `json` or `logfmt`.
    #[arg(long, env = "ROUTERD_ACCESS_LOG", default_value = "off")]
    access_log: AccessLogFormat,
    /// Where the access log goes (appended); standard output when not given.
    #[arg(long, env = "ROUTERD_ACCESS_LOG_FILE")]
    access_log_file: Option<PathBuf>,
    /// Where plugins are compiled: `child` (a short-lived routerd process, so the compiler's
    /// memory is returned to the system) or `in-process`.
    #[arg(long, env = "ROUTERD_PLUGIN_COMPILER", default_value = "child")]
    plugin_compiler: CompilerPlace,
    /// Internal: compile the component on stdin for engine KIND into the ARTIFACT file, then
    /// exit (the child of `--plugin-compiler child`).
    #[arg(long, hide = true, num_args = 2, value_names = ["KIND", "ARTIFACT"])]
    compile_plugin: Option<Vec<String>>,
}

/// What `routerd` does instead of serving.
#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Validates a route document and the plugins it names without starting; prints every
    /// error with its route, field and reason and exits non-zero if there is one.
    Check {
        /// The route document (JSON) to check.
        #[arg(long, env = "ROUTERD_CONFIG")]
        config: PathBuf,
        /// Where the plugins the routes name are.
        #[arg(long, env = "ROUTERD_PLUGINS", default_value = "./plugins")]
        plugins: PathBuf,
    },
}

/// A duration such as `15s`, `500ms` or `2m`.
fn duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => Err("must be more than zero".to_owned()),
        Ok(d) => Ok(d),
        Err(e) => Err(format!("{e} (write it like 15s, 500ms or 2m)")),
    }
}

/// Where plugins are compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum CompilerPlace {
    /// In a short-lived child process.
    Child,
    /// In routerd itself.
    InProcess,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    if let Some(child) = &args.compile_plugin {
        return compile_plugin(child);
    }
    if let Some(Command::Check { config, plugins }) = &args.command {
        return check(config, plugins);
    }
    // The control plane (admin API, config and plugin watchers, table rebuilds) runs on its own
    // thread, so its work never queues behind, or in front of, proxied requests. With workers,
    // the main thread only starts and stops things; the workers build their own runtimes.
    let main_runtime = match args.workers {
        Workers::Shared => tokio::runtime::Runtime::new(),
        _ => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
    };
    let runtimes = main_runtime.and_then(|proxy| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("routerd-control")
            .enable_all()
            .build()
            .map(|control| (proxy, control))
    });
    let (runtime, control) = match runtimes {
        Ok(rts) => rts,
        Err(e) => {
            error!("cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(args, control.handle().clone()));
    control.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            eprintln!("routerd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `routerd check`: the report on stdout; 0 when the document is valid, 1 when it is not, 2
/// when it could not be checked at all.
fn check(config: &std::path::Path, plugins: &std::path::Path) -> std::process::ExitCode {
    match routerd::check::check(config, plugins) {
        Ok(report) => {
            println!("{report}");
            if report.is_ok() {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::FAILURE
            }
        }
        Err(e) => {
            println!("error: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

/// The compiling child: `[KIND, ARTIFACT]`, the component on stdin.
fn compile_plugin(child: &[String]) -> std::process::ExitCode {
    let [kind, out] = child else {
        eprintln!("--compile-plugin takes KIND and ARTIFACT");
        return std::process::ExitCode::FAILURE;
    };
    let Some(kind) = routerd::plugins::EngineKind::parse(kind) else {
        eprintln!("unknown engine kind {kind:?}");
        return std::process::ExitCode::FAILURE;
    };
    let out = std::path::Path::new(out);
    let mut bytes = Vec::new();
    if let Err(e) = std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes) {
        eprintln!("cannot read the component from stdin: {e}");
        return std::process::ExitCode::FAILURE;
    }
    match PluginEngine::compile_to_file(&bytes, kind, out) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(
            e
            @ (routerd::plugins::PluginError::Invalid(_) | routerd::plugins::PluginError::Link(_)),
        ) => {
            eprintln!("{e}");
            std::process::ExitCode::from(routerd::plugins::engine::CHILD_EXIT_INVALID as u8)
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args, control: tokio::runtime::Handle) -> anyhow::Result<()> {
    // A write past the file size limit must fail with an error (which the route store reports
    // and survives), not kill the process: handling SIGXFSZ replaces its default action. The
    // handler stays installed for the life of the process.
    if let Err(e) =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(libc::SIGXFSZ))
    {
        warn!("cannot handle SIGXFSZ; a write past the file size limit will end routerd: {e}");
    }
    for dir in [&args.plugins, &args.data] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let limits = PoolLimits {
        instances: args.plugin_instances,
        memories: args.plugin_memories,
        max_memory_bytes: args.plugin_max_memory_mib << 20,
    };
    let engine = PluginEngine::new(&limits, Some(&args.data.join("plugin-cache")))?;
    if args.plugin_compiler == CompilerPlace::Child {
        match std::env::current_exe() {
            Ok(program) => engine.compile_in_child(ChildCompiler {
                program,
                args: vec!["--compile-plugin".into()],
            }),
            Err(e) => warn!(
                "cannot find routerd's own executable ({e}); compiling plugins in this process"
            ),
        }
    }
    let registry = Arc::new(PluginRegistry::new(engine, &args.plugins));
    registry.load_dir();
    // Watch before the first read, so a change made while starting is not missed.
    let config_watch = match &args.config {
        Some(path) => Some(FileWatch::new(path).context("cannot watch the config file")?),
        None => None,
    };
    let config = match &args.config {
        Some(path) => config::load_file(path)?,
        None => {
            info!("no --config given: serving the embedded example routes");
            config::parse(config::EMBEDDED_DEFAULT, "embedded default")?
        }
    };
    let origin = args
        .config
        .as_ref()
        .map_or("embedded default".to_owned(), |p| p.display().to_string());
    let token = match &args.admin_token_file {
        Some(path) => {
            let token = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the admin token file {}", path.display()))?
                .trim()
                .to_owned();
            anyhow::ensure!(
                !token.is_empty(),
                "the admin token file {} is empty",
                path.display()
            );
            Some(token)
        }
        None if !args.admin.ip().is_loopback() => anyhow::bail!(
            "the admin listener {} is not on a loopback address: --admin-token-file is required",
            args.admin
        ),
        None => None,
    };
    let store = open_store(&args)?;
    let metrics = Metrics::new(registry.clone());
    let access_log = AccessLog::start(
        args.access_log,
        args.access_log_file.as_deref(),
        metrics.access_log_dropped(),
    )?;
    let proxy = Arc::new(
        Proxy::new(
            RouteTable::build(&config::ConfigFile::default())?,
            UpstreamOptions {
                connect: args.backend_connect_timeout,
                response: args.backend_response_timeout,
                max_response_headers: args.max_response_headers,
                upgrade_idle: args.upgrade_idle_timeout,
            },
            Some(metrics.clone()),
        )
        .with_access_log(access_log)
        .with_workers(args.workers.threads().unwrap_or(1)),
    );
    let routes = Arc::new(
        RouteSet::new(
            config,
            registry.clone(),
            Some(store.route_store()),
            proxy.clone(),
            Some(metrics.clone()),
        )
        .map_err(|e| match e {
            StartError::Invalid(errors) => anyhow::Error::from(config::ConfigError::Invalid {
                path: origin,
                errors,
            }),
            store => anyhow::Error::from(store),
        })?,
    );
    // Health checks and the plugin watcher spawn their tasks on the control runtime.
    let entered = control.enter();
    let health = HealthChecks::start(
        proxy.clone(),
        Duration::from_secs(args.health_interval_secs.max(1)),
    );
    let live = LiveView::start(metrics.clone());
    let admin = Arc::new(Admin::new(routes.clone(), metrics, health, live, token));
    let _plugin_watch =
        watcher::watch(registry.clone()).context("cannot watch the plugins directory")?;
    drop(entered);
    {
        let routes = routes.clone();
        let mut changes = registry.subscribe();
        control.spawn(async move {
            while changes.changed().await.is_ok() {
                let routes = routes.clone();
                let _ = tokio::task::spawn_blocking(move || routes.plugins_changed()).await;
            }
        });
    }

    let tls = match args.tls_listen {
        Some(addr) => Some(start_tls(&args, addr, &control).await?),
        None => {
            anyhow::ensure!(
                args.tls_cert.is_none() && args.tls_dir.is_none(),
                "--tls-cert and --tls-dir need --tls-listen"
            );
            None
        }
    };
    let sockets = args.workers.threads().unwrap_or(1);
    let proxy_listeners = workers::bind_shared(args.listen, sockets)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let proxy_addr = proxy_listeners
        .first()
        .context("no proxy listener")?
        .local_addr()?;
    let admin_listener = TcpListener::bind(args.admin)
        .await
        .with_context(|| format!("cannot listen on {} (admin)", args.admin))?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let options = server::ServeOptions {
        timeouts: ConnTimeouts {
            header_read: args.header_read_timeout,
            keepalive: args.keepalive_timeout,
        },
        max_connections: args.max_connections,
        drain: Duration::from_secs(args.drain_secs),
        max_request_headers: args.max_request_headers,
    };
    info!("proxy listening on http://{proxy_addr}");
    info!("admin listening on http://{}", admin_listener.local_addr()?);
    let cluster = store.follow(&routes, &args, proxy_addr, admin_listener.local_addr()?);
    let (tls, tls_watch) = match tls {
        Some((listeners, terminator, watch)) => {
            (Some((listeners, terminator.acceptor())), Some(watch))
        }
        None => (None, None),
    };
    let serving = ProxyServing::start(
        args.workers,
        proxy_listeners,
        tls,
        &proxy,
        &stop_rx,
        options,
    )?;
    // The admin listener is registered with the control runtime's reactor: bind it there.
    let admin_listener = admin_listener.into_std()?;
    let admin_task = control.spawn(async move {
        match TcpListener::from_std(admin_listener) {
            Ok(listener) => {
                let slots = server::connection_slots(&options);
                server::serve(listener, None, admin, stop_rx, options, slots).await
            }
            Err(e) => error!("cannot serve the admin listener: {e}"),
        }
    });

    control.spawn(watch_named_files(routes.clone()));
    if let (Some(path), Some(mut watch)) = (args.config.clone(), config_watch) {
        let routes = routes.clone();
        control.spawn(async move {
            while watch.changed().await.is_some() {
                let (routes, path) = (routes.clone(), path.clone());
                let applied = tokio::task::spawn_blocking(move || {
                    config::load_file(&path).and_then(|cfg| {
                        let n = cfg.routes.len();
                        routes.apply_file(cfg).map(|()| n).map_err(|source| {
                            config::ConfigError::Invalid {
                                path: path.display().to_string(),
                                errors: source,
                            }
                        })
                    })
                })
                .await;
                let Ok(applied) = applied else { continue };
                match applied {
                    Ok(n) => info!(routes = n, "config reloaded"),
                    Err(e) => {
                        warn!("config change rejected, still serving the previous routes: {e}")
                    }
                }
            }
        });
    }

    shutdown_signal().await;
    info!("shutting down: draining in-flight requests");
    let _ = stop_tx.send(true);
    let _ = tokio::join!(serving.finished(), admin_task);
    drop(cluster);
    if let Some(watch) = tls_watch {
        watch.abort();
    }
    info!("stopped");
    Ok(())
}

/// The proxy listeners' accept loops: tasks on the shared runtime, or a thread per worker.
enum ProxyServing {
    Shared(Vec<tokio::task::JoinHandle<()>>),
    Workers(Vec<std::thread::JoinHandle<()>>),
}

impl ProxyServing {
    /// Serves `plain` (and `tls`, one socket per worker each) until `stop` turns true.
    fn start(
        mode: Workers,
        plain: Vec<std::net::TcpListener>,
        tls: Option<(Vec<std::net::TcpListener>, tokio_rustls::TlsAcceptor)>,
        proxy: &Arc<Proxy>,
        stop: &watch::Receiver<bool>,
        options: server::ServeOptions,
    ) -> anyhow::Result<ProxyServing> {
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
            .context("cannot start the workers' runtimes")?;
        let mut threads = Vec::with_capacity(runtimes.len());
        for (index, (runtime, work)) in runtimes.into_iter().zip(loops).enumerate() {
            let thread = std::thread::Builder::new()
                // Thread names are cut at 15 bytes: keep the index inside them.
                .name(format!("routerd-w{index}"))
                .spawn(move || {
                    workers::enter(index);
                    runtime.block_on(work);
                })
                .context("cannot start a worker thread")?;
            threads.push(thread);
        }
        info!(workers = threads.len(), "proxy workers started");
        Ok(ProxyServing::Workers(threads))
    }

    /// Waits until every accept loop has drained.
    async fn finished(self) {
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

/// The store `--store` names.
enum Store {
    Local(Arc<RedbStore>),
    #[cfg(feature = "etcd")]
    Etcd(Arc<routerd::store::etcd::EtcdStore>),
}

fn open_store(args: &Args) -> anyhow::Result<Store> {
    if args.store == "redb" {
        return Ok(Store::Local(Arc::new(RedbStore::open(
            &args.data.join("routes.redb"),
        )?)));
    }
    anyhow::ensure!(
        args.store.starts_with("etcd://"),
        "--store {:?} is neither redb nor etcd://HOST:PORT[,HOST:PORT...][/PREFIX]",
        args.store
    );
    #[cfg(feature = "etcd")]
    {
        let address: routerd::store::etcd::EtcdAddress = args
            .store
            .parse()
            .map_err(|e| anyhow::anyhow!("--store: {e}"))?;
        let store = routerd::store::etcd::EtcdStore::new(&address, &args.store, &args.data)?;
        info!(store = %args.store, "API routes and uploaded plugins are shared through etcd");
        Ok(Store::Etcd(Arc::new(store)))
    }
    #[cfg(not(feature = "etcd"))]
    anyhow::bail!(
        "--store {}: this routerd was built without etcd support; build it with `cargo build --release --features etcd` (which needs protoc: apt-get install protobuf-compiler)",
        args.store
    )
}

/// Leaves the cluster listing when dropped (at shutdown).
struct Following(#[cfg(feature = "etcd")] Option<routerd::cluster::Cluster>);

impl Drop for Following {
    fn drop(&mut self) {
        #[cfg(feature = "etcd")]
        if let Some(cluster) = &self.0 {
            cluster.leave();
        }
    }
}

impl Store {
    fn route_store(&self) -> Arc<dyn routerd::store::RouteStore> {
        match self {
            Store::Local(s) => s.clone(),
            #[cfg(feature = "etcd")]
            Store::Etcd(s) => s.clone(),
        }
    }

    /// With etcd: follows the store's changes and registers this instance.
    #[cfg_attr(not(feature = "etcd"), allow(unused_variables))]
    fn follow(
        &self,
        routes: &Arc<RouteSet>,
        args: &Args,
        listen: SocketAddr,
        admin: SocketAddr,
    ) -> Following {
        match self {
            Store::Local(_) => Following(
                #[cfg(feature = "etcd")]
                None,
            ),
            #[cfg(feature = "etcd")]
            Store::Etcd(store) => {
                let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|h| h.trim().to_owned())
                    .unwrap_or_else(|_| "routerd".to_owned());
                let member = routerd::cluster::Member {
                    id: args
                        .instance_id
                        .clone()
                        .unwrap_or_else(|| format!("{host}-{}", admin.port())),
                    admin: format!("http://{admin}"),
                    listen: format!("http://{listen}"),
                    version: env!("CARGO_PKG_VERSION"),
                    started_unix: std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs()),
                };
                Following(Some(routerd::cluster::start(
                    store.clone(),
                    routes.clone(),
                    member,
                    &args.data,
                )))
            }
        }
    }
}

/// Rebuilds the routes when a file they name (a `tls_ca_file`) changes. The set of files
/// follows the routes: the watch is re-armed when the table generation moves.
async fn watch_named_files(routes: Arc<RouteSet>) {
    loop {
        let version = routes.table_version();
        let files = {
            let routes = routes.clone();
            match tokio::task::spawn_blocking(move || routes.named_files()).await {
                Ok(f) => f,
                Err(_) => return,
            }
        };
        let mut watch = match FileWatch::paths(&files, None) {
            Ok(w) => w,
            Err(e) => {
                warn!("cannot watch the routes' CA files, changes to them need a reload: {e}");
                tokio::time::sleep(Duration::from_secs(10)).await;
                continue;
            }
        };
        // Settled changes come through a channel, whose receive is safe to cancel.
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let forward = tokio::spawn(async move {
            while watch.changed().await.is_some() {
                let _ = tx.try_send(());
            }
        });
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                changed = rx.recv() => {
                    if changed.is_none() {
                        break;
                    }
                    let routes = routes.clone();
                    let _ = tokio::task::spawn_blocking(move || routes.files_changed()).await;
                }
                _ = tick.tick() => {
                    if routes.table_version() != version {
                        break;
                    }
                }
            }
        }
        forward.abort();
    }
}

/// Loads the certificates (refusing to start on a bad one), binds the TLS listener and starts
/// the reload task; logs what it serves.
async fn start_tls(
    args: &Args,
    addr: SocketAddr,
    control: &tokio::runtime::Handle,
) -> anyhow::Result<(
    Vec<std::net::TcpListener>,
    Arc<TlsTerminator>,
    tokio::task::JoinHandle<()>,
)> {
    let source = CertSource {
        default: args.tls_cert.clone().zip(args.tls_key.clone()),
        dir: args.tls_dir.clone(),
    };
    let (files, dir) = source.watched();
    // Watch before the first read, so a change made while starting is not missed.
    let mut watch = FileWatch::paths(&files, dir.as_deref())
        .context("cannot watch the TLS certificate files")?;
    let terminator =
        Arc::new(TlsTerminator::new(source).context("cannot load the TLS certificates")?);
    log_certs(&terminator);
    let listeners = workers::bind_shared(addr, args.workers.threads().unwrap_or(1))
        .with_context(|| format!("cannot listen on {addr} (TLS)"))?;
    let bound = listeners.first().context("no TLS listener")?.local_addr()?;
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

async fn shutdown_signal() {
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
