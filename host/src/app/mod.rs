//! The daemon, assembled: from [`Settings`] to a serving routerd. The runtime layout (a
//! control runtime beside the proxy's workers), the store and following it, the plugin
//! registry, the route set, the listeners, the reload loops (config file, CA files, TLS
//! certificates, plugins) and the shutdown; also `routerd check` and the compiling child. The
//! `routerd` binary parses the flags and calls [`run`].

mod listeners;
mod reload;
mod serve;
mod settings;
mod store;
pub mod watch;

use std::process::ExitCode;
use std::time::Duration;

pub use settings::{Command, CompilerPlace, Settings, duration};

use routerd_control::routeset::StartError;
use routerd_control::store::StoreError;
use routerd_plugins::{EngineKind, PluginEngine, PluginError};
use routerd_proxy::access_log::AccessLogError;
use routerd_proxy::server::tls::TlsError;
use routerd_proxy::server::workers::Workers;
use routerd_routing::config::{ConfigError, RouteSetError};

/// Why routerd could not start (or stopped serving).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// The flags contradict each other or name something unusable.
    #[error("{0}")]
    Settings(String),
    /// A file, directory, socket or thread could not be set up.
    #[error("{what}: {source}")]
    Io {
        /// What was being set up.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file or directory could not be watched.
    #[error("{what}: {source}")]
    Watch {
        /// What was to be watched.
        what: &'static str,
        /// The watcher's error.
        source: notify::Error,
    },
    /// The plugin engine could not start.
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// The config file could not be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A route set is invalid.
    #[error(transparent)]
    Routes(#[from] RouteSetError),
    /// The route store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The route set could not start from the store.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The access log could not start.
    #[error(transparent)]
    AccessLog(#[from] AccessLogError),
    /// Tracing could not start.
    #[error(transparent)]
    Tracing(#[from] routerd_proxy::spans::TracingError),
    /// The TLS certificates could not be loaded.
    #[error("cannot load the TLS certificates: {0}")]
    Tls(#[source] TlsError),
    /// routerd's own thread panicked (a bug: please report it with the log).
    #[error("routerd's thread panicked")]
    Panicked,
}

impl AppError {
    /// An I/O error while setting up `what`.
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> AppError {
        let what = what.into();
        move |source| AppError::Io { what, source }
    }
}

/// Does what `settings` ask: compile a plugin (the compiling child), check a route document,
/// or serve until SIGTERM; the process's exit code.
pub fn run(settings: Settings) -> ExitCode {
    if let Some(child) = &settings.compile_plugin {
        return compile_plugin(child);
    }
    if let Some(Command::Check { config, plugins }) = &settings.command {
        return check(config, plugins);
    }
    let (runtime, control) = match runtimes(settings.workers) {
        Ok(rts) => rts,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stop = listeners::shutdown_signal();
    let result = runtime.block_on(serve::serve(settings, control.handle().clone(), stop, None));
    control.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("routerd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The runtimes: the proxy's (the main thread's; with workers it only starts and stops them,
/// as the workers build their own) and the control plane's. The control plane (admin API,
/// config and plugin watchers, table rebuilds) runs on its own thread, so its work never
/// queues behind, or in front of, proxied requests.
fn runtimes(
    workers: Workers,
) -> std::io::Result<(tokio::runtime::Runtime, tokio::runtime::Runtime)> {
    let proxy = match workers {
        Workers::Shared => tokio::runtime::Runtime::new(),
        _ => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
    }?;
    let control = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("routerd-control")
        .enable_all()
        .build()?;
    Ok((proxy, control))
}

/// A routerd serving in this process, on threads of its own: its listeners' addresses, and
/// [`Running::stop`]. Dropping it asks it to stop without waiting.
#[derive(Debug)]
pub struct Running {
    /// The proxy listener's address.
    pub proxy: std::net::SocketAddr,
    /// The admin listener's address.
    pub admin: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), AppError>>>,
}

impl Running {
    /// Stops serving, drains like a SIGTERM would, and waits until routerd has stopped.
    pub fn stop(mut self) -> Result<(), AppError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take() {
            Some(thread) => thread.join().unwrap_or(Err(AppError::Panicked)),
            None => Ok(()),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Starts serving as `settings` ask, in this process, and returns once both listeners are bound
/// (or with the reason routerd could not start). The same daemon as [`run`], stopped through
/// [`Running`] instead of a signal; `--plugin-compiler in-process` suits it best, as the
/// compiling child is this process's executable run with `--compile-plugin`.
pub fn start(settings: Settings) -> Result<Running, AppError> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("routerd".into())
        .spawn(move || {
            let (runtime, control) = runtimes(settings.workers)
                .map_err(AppError::io("cannot start the async runtime"))?;
            let stop = async {
                let _ = stop_rx.await;
            };
            let control_handle = control.handle().clone();
            let result =
                runtime.block_on(serve::serve(settings, control_handle, stop, Some(ready_tx)));
            control.shutdown_timeout(Duration::from_secs(1));
            result
        })
        .map_err(AppError::io("cannot start routerd's thread"))?;
    match ready_rx.recv() {
        Ok((proxy, admin)) => Ok(Running {
            proxy,
            admin,
            stop: Some(stop_tx),
            thread: Some(thread),
        }),
        // The thread ended before both listeners were bound: its error says why.
        Err(_) => Err(match thread.join() {
            Ok(Err(e)) => e,
            Ok(Ok(())) => AppError::Settings("routerd stopped before it listened".into()),
            Err(_) => AppError::Panicked,
        }),
    }
}

/// `routerd check`: the report on stdout; 0 when the document is valid, 1 when it is not, 2
/// when it could not be checked at all.
fn check(config: &std::path::Path, plugins: &std::path::Path) -> ExitCode {
    match crate::check::check(config, plugins) {
        Ok(report) => {
            println!("{report}");
            if report.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            println!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// The compiling child: `[KIND, ARTIFACT]`, the component on stdin.
fn compile_plugin(child: &[String]) -> ExitCode {
    let [kind, out] = child else {
        eprintln!("--compile-plugin takes KIND and ARTIFACT");
        return ExitCode::FAILURE;
    };
    let Some(kind) = EngineKind::parse(kind) else {
        eprintln!("unknown engine kind {kind:?}");
        return ExitCode::FAILURE;
    };
    let out = std::path::Path::new(out);
    let mut bytes = Vec::new();
    if let Err(e) = std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes) {
        eprintln!("cannot read the component from stdin: {e}");
        return ExitCode::FAILURE;
    }
    match PluginEngine::compile_to_file(&bytes, kind, out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(
            e @ (PluginError::Invalid(_) | PluginError::Link(_) | PluginError::Contract { .. }),
        ) => {
            eprintln!("{e}");
            ExitCode::from(routerd_plugins::engine::CHILD_EXIT_INVALID as u8)
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
