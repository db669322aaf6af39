//! The reload loops on the control runtime: the config file, the files routes name (CA
//! files), and the plugins (a change rebuilds the routes that use them). Each applies a valid
//! change at once and keeps serving the last good state on a bad one.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use super::watch::FileWatch;
use routerd_control::routeset::RouteSet;
use routerd_plugins::PluginRegistry;
use routerd_routing::config;

/// Rebuilds the routes whenever the loaded plugins change.
pub(super) fn follow_plugins(
    registry: &PluginRegistry,
    routes: &Arc<RouteSet>,
    control: &tokio::runtime::Handle,
) {
    let routes = routes.clone();
    let mut changes = registry.subscribe();
    control.spawn(async move {
        while changes.changed().await.is_ok() {
            let routes = routes.clone();
            let _ = tokio::task::spawn_blocking(move || routes.plugins_changed()).await;
        }
    });
}

/// Applies every settled change of the config file at `path`; a change that does not load or
/// validate is logged, and the previous routes keep serving.
pub(super) fn follow_config(
    path: PathBuf,
    mut watch: FileWatch,
    routes: &Arc<RouteSet>,
    control: &tokio::runtime::Handle,
) {
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

/// Rebuilds the routes when a file they name (a `tls_ca_file`) changes. The set of files
/// follows the routes: the watch is re-armed when the table generation moves.
pub(super) async fn watch_named_files(routes: Arc<RouteSet>) {
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
