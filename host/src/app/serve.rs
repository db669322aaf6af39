//! Serving, in the order things start: the plugins, the route document, the store, the proxy
//! and the route set over them, the control plane's tasks, the listeners; then the wait for
//! SIGTERM and the drain.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{error, info, warn};

use super::listeners::{ProxyServing, start_tls};
use super::store::{Store, open_store};
use super::watch::FileWatch;
use super::{AppError, CompilerPlace, Settings, reload};
use routerd_admin::Admin;
use routerd_control::health::HealthChecks;
use routerd_control::live::LiveView;
use routerd_control::routeset::{RouteSet, StartError};
use routerd_plugins::Plugin;
use routerd_plugins::services::StoreBounds;
use routerd_plugins::{
    ChildCompiler, PluginCounters, PluginEngine, PluginRegistry, PoolLimits, watcher,
};
use routerd_proxy::Proxy;
use routerd_proxy::access_log::AccessLog;
use routerd_proxy::metrics::Metrics;
use routerd_proxy::route_counters::RouteCounters;
use routerd_proxy::sample::{HeadSample, SampleOptions};
use routerd_proxy::server::{self, conn::ConnTimeouts, workers};
use routerd_proxy::spans::{TraceExport, Tracing, TracingOptions};
use routerd_proxy::upstream::UpstreamOptions;
use routerd_routing::config::{self, ConfigFile};
use routerd_routing::{PublishedTable, RouteTable};

/// Serves until `stop` completes, then drains; `control` runs the control plane. Once both
/// listeners are bound, their addresses go to `ready` (proxy, admin).
pub(super) async fn serve(
    settings: Settings,
    control: tokio::runtime::Handle,
    stop: impl Future<Output = ()>,
    ready: Option<Ready>,
) -> Result<(), AppError> {
    // A write past the file size limit must fail with an error (which the route store reports
    // and survives), not kill the process: handling SIGXFSZ replaces its default action. The
    // handler stays installed for the life of the process.
    if let Err(e) =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(libc::SIGXFSZ))
    {
        warn!("cannot handle SIGXFSZ; a write past the file size limit will end routerd: {e}");
    }
    for dir in [&settings.plugins, &settings.data] {
        std::fs::create_dir_all(dir)
            .map_err(AppError::io(format!("cannot create {}", dir.display())))?;
    }
    let registry = open_plugins(&settings)?;
    // Watch before the first read, so a change made while starting is not missed.
    let config_watch = match &settings.config {
        Some(path) => Some(FileWatch::new(path).map_err(|source| AppError::Watch {
            what: "cannot watch the config file",
            source,
        })?),
        None => None,
    };
    let config = load_config(&settings)?;
    let token = admin_token(&settings)?;
    let store = open_store(&settings)?;
    // The proxy serves an empty table until the route set publishes the first one.
    let published = PublishedTable::new(RouteTable::build(&ConfigFile::default())?);
    let metrics = Metrics::new(vec![
        Box::new(PluginCounters::new(registry.clone())),
        Box::new(RouteCounters(published.clone())),
    ]);
    let (tracing, trace_export) = start_tracing(&settings, &control, &metrics)?;
    let sample = HeadSample::new(SampleOptions {
        every: settings.sample_every,
        max_heads: settings.sample_max_heads,
        max_bytes: settings.sample_max_mib << 20,
        max_body_bytes: settings.sample_max_body_bytes,
        secret_headers: settings.sample_secret_headers.clone(),
        secrets_in_clear: settings.sample_secrets_in_clear,
    });
    let proxy = start_proxy(&settings, &published, &metrics, tracing, sample.clone())?;
    let routes = start_routes(&settings, config, &registry, &store, &published, &metrics)?;
    // Health checks and the plugin watcher spawn their tasks on the control runtime.
    let entered = control.enter();
    let health = HealthChecks::start(
        proxy.clone(),
        Duration::from_secs(settings.health_interval_secs.max(1)),
    );
    let live = LiveView::start(metrics.clone());
    let admin =
        Arc::new(Admin::new(routes.clone(), metrics, health, live, token).with_sample(sample));
    let _plugin_watch = watcher::watch(registry.clone()).map_err(|source| AppError::Watch {
        what: "cannot watch the plugins directory",
        source,
    })?;
    drop(entered);
    reload::follow_plugins(&registry, &routes, &control);
    if let (Some(path), Some(watch)) = (&settings.config, config_watch) {
        reload::follow_config(path.clone(), watch, &routes, &control);
    }
    let served = Served {
        proxy: &proxy,
        routes: &routes,
        store: &store,
        admin,
    };
    let served = listen_and_serve(&settings, served, &control, stop, ready).await;
    if let Some(export) = trace_export {
        // Blocks until the last spans are sent (through the control runtime, which keeps
        // running meanwhile).
        let _ = tokio::task::spawn_blocking(move || export.shutdown()).await;
    }
    served
}

/// Tracing, when `--otlp-endpoint` is given: what the proxy records spans with, and the export
/// to flush at the end.
fn start_tracing(
    settings: &Settings,
    control: &tokio::runtime::Handle,
    metrics: &Metrics,
) -> Result<(Option<Tracing>, Option<TraceExport>), AppError> {
    let Some(endpoint) = &settings.otlp_endpoint else {
        return Ok((None, None));
    };
    let options = TracingOptions {
        endpoint: endpoint.clone(),
        ratio: settings.trace_sample_ratio,
    };
    let (export, tracing) = TraceExport::start(&options, control.clone(), metrics.traces())?;
    info!(endpoint = %endpoint, ratio = options.ratio, "tracing: exporting spans over OTLP");
    Ok((Some(tracing), Some(export)))
}

/// The plugin registry over the plugins directory, loaded, compiling in a child process unless
/// told otherwise.
fn open_plugins(settings: &Settings) -> Result<Arc<PluginRegistry>, AppError> {
    let limits = PoolLimits {
        instances: settings.plugin_instances,
        memories: settings.plugin_memories,
        max_memory_bytes: settings.plugin_max_memory_mib << 20,
    };
    let engine = PluginEngine::new(&limits, Some(&settings.data.join("plugin-cache")))?;
    engine.bound_cache(settings.plugin_cache_max_mib << 20);
    if settings.plugin_compiler == CompilerPlace::Child {
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
    let store_defaults = StoreBounds {
        max_keys: settings.plugin_store_max_keys,
        max_bytes: settings.plugin_store_max_mib << 20,
    };
    let registry = Arc::new(
        PluginRegistry::new(engine, &settings.plugins).with_store_defaults(store_defaults),
    );
    registry.load_dir();
    Ok(registry)
}

/// The route document: the config file, or the embedded example routes without one.
fn load_config(settings: &Settings) -> Result<ConfigFile, AppError> {
    Ok(match &settings.config {
        Some(path) => config::load_file(path)?,
        None => {
            info!("no --config given: serving the embedded example routes");
            config::parse(config::EMBEDDED_DEFAULT, "embedded default")?
        }
    })
}

/// The admin API's bearer token, when there is one; mandatory off loopback.
fn admin_token(settings: &Settings) -> Result<Option<String>, AppError> {
    match &settings.admin_token_file {
        Some(path) => {
            let token = std::fs::read_to_string(path)
                .map_err(AppError::io(format!(
                    "cannot read the admin token file {}",
                    path.display()
                )))?
                .trim()
                .to_owned();
            if token.is_empty() {
                return Err(AppError::Settings(format!(
                    "the admin token file {} is empty",
                    path.display()
                )));
            }
            Ok(Some(token))
        }
        None if !settings.admin.ip().is_loopback() => Err(AppError::Settings(format!(
            "the admin listener {} is not on a loopback address: --admin-token-file is required",
            settings.admin
        ))),
        None => Ok(None),
    }
}

/// The proxy, serving what is published.
fn start_proxy(
    settings: &Settings,
    published: &Arc<PublishedTable<Plugin>>,
    metrics: &Arc<Metrics>,
    tracing: Option<Tracing>,
    sample: Option<Arc<HeadSample>>,
) -> Result<Arc<Proxy>, AppError> {
    let access_log = AccessLog::start(
        settings.access_log,
        settings.access_log_file.as_deref(),
        metrics.access_log_dropped(),
    )?;
    Ok(Arc::new(
        Proxy::new(
            published.clone(),
            UpstreamOptions {
                connect: settings.backend_connect_timeout,
                response: settings.backend_response_timeout,
                max_response_headers: settings.max_response_headers,
                upgrade_idle: settings.upgrade_idle_timeout,
            },
            Some(metrics.clone()),
        )
        .with_access_log(access_log)
        .with_tracing(tracing)
        .with_sample(sample)
        .with_workers(settings.workers.threads().unwrap_or(1)),
    ))
}

/// The route set: the config file's routes and the store's, each table published.
fn start_routes(
    settings: &Settings,
    config: ConfigFile,
    registry: &Arc<PluginRegistry>,
    store: &Store,
    published: &Arc<PublishedTable<Plugin>>,
    metrics: &Arc<Metrics>,
) -> Result<Arc<RouteSet>, AppError> {
    let origin = settings
        .config
        .as_ref()
        .map_or("embedded default".to_owned(), |p| p.display().to_string());
    RouteSet::new(
        config,
        registry.clone(),
        Some(store.route_store()),
        published.clone(),
        Some(metrics.clone()),
    )
    .map(Arc::new)
    .map_err(|e| match e {
        StartError::Invalid(errors) => AppError::Config(config::ConfigError::Invalid {
            path: origin,
            errors,
        }),
        store => AppError::Start(store),
    })
}

/// Where the addresses of a started routerd's listeners go: (proxy, admin).
pub(super) type Ready = std::sync::mpsc::Sender<(SocketAddr, SocketAddr)>;

/// What the listeners serve.
struct Served<'a> {
    proxy: &'a Arc<Proxy>,
    routes: &'a Arc<RouteSet>,
    store: &'a Store,
    admin: Arc<Admin>,
}

/// Binds the listeners, serves until `stop` completes, then drains.
async fn listen_and_serve(
    settings: &Settings,
    served: Served<'_>,
    control: &tokio::runtime::Handle,
    stop: impl Future<Output = ()>,
    ready: Option<Ready>,
) -> Result<(), AppError> {
    let Served {
        proxy,
        routes,
        store,
        admin,
    } = served;
    let tls = match settings.tls_listen {
        Some(addr) => Some(start_tls(settings, addr, control).await?),
        None if settings.tls_cert.is_some() || settings.tls_dir.is_some() => {
            return Err(AppError::Settings(
                "--tls-cert and --tls-dir need --tls-listen".into(),
            ));
        }
        None => None,
    };
    let sockets = settings.workers.threads().unwrap_or(1);
    let proxy_listeners = workers::bind_shared(settings.listen, sockets).map_err(AppError::io(
        format!("cannot listen on {}", settings.listen),
    ))?;
    let proxy_addr = local_addr(proxy_listeners.first())?;
    let admin_listener = TcpListener::bind(settings.admin)
        .await
        .map_err(AppError::io(format!(
            "cannot listen on {} (admin)",
            settings.admin
        )))?;
    let admin_addr = admin_listener
        .local_addr()
        .map_err(AppError::io("the admin listener's address"))?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let options = server::ServeOptions {
        timeouts: ConnTimeouts {
            header_read: settings.header_read_timeout,
            keepalive: settings.keepalive_timeout,
        },
        max_connections: settings.max_connections,
        drain: Duration::from_secs(settings.drain_secs),
        max_request_headers: settings.max_request_headers,
    };
    info!("proxy listening on http://{proxy_addr}");
    info!("admin listening on http://{admin_addr}");
    let cluster = store.follow(routes, settings, proxy_addr, admin_addr);
    let (tls, tls_watch) = match tls {
        Some((listeners, terminator, watch)) => {
            (Some((listeners, terminator.acceptor())), Some(watch))
        }
        None => (None, None),
    };
    let serving = ProxyServing::start(
        settings.workers,
        proxy_listeners,
        tls,
        proxy,
        &stop_rx,
        options,
    )?;
    let admin_task = serve_admin(admin_listener, admin, stop_rx, options, control)?;
    control.spawn(reload::watch_named_files(routes.clone()));
    if let Some(ready) = ready {
        let _ = ready.send((proxy_addr, admin_addr));
    }
    stop.await;
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

/// The admin listener's accept loop, on the control runtime (whose reactor it is registered
/// with).
fn serve_admin(
    listener: TcpListener,
    admin: Arc<Admin>,
    stop: watch::Receiver<bool>,
    options: server::ServeOptions,
    control: &tokio::runtime::Handle,
) -> Result<tokio::task::JoinHandle<()>, AppError> {
    let listener = listener
        .into_std()
        .map_err(AppError::io("the admin listener"))?;
    Ok(control.spawn(async move {
        match TcpListener::from_std(listener) {
            Ok(listener) => {
                let slots = server::connection_slots(&options);
                server::serve(listener, None, admin, stop, options, slots).await
            }
            Err(e) => error!("cannot serve the admin listener: {e}"),
        }
    }))
}

/// The address of the first of a listener's sockets.
fn local_addr(listener: Option<&std::net::TcpListener>) -> Result<SocketAddr, AppError> {
    let listener = listener.ok_or_else(|| AppError::Settings("no proxy listener".into()))?;
    listener
        .local_addr()
        .map_err(AppError::io("the proxy listener's address"))
}
