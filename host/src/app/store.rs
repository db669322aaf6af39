//! The store `--store` names (a local redb database, or etcd shared by every instance), and,
//! with etcd, following its changes and being listed among the instances.

use std::net::SocketAddr;
use std::sync::Arc;

#[cfg(feature = "etcd")]
use tracing::info;

use super::{AppError, Settings};
use routerd_control::routeset::RouteSet;
use routerd_control::store::redb::RedbStore;

/// The store `--store` names.
pub(super) enum Store {
    Local(Arc<RedbStore>),
    #[cfg(feature = "etcd")]
    Etcd(Arc<routerd_control::store::etcd::EtcdStore>),
}

pub(super) fn open_store(args: &Settings) -> Result<Store, AppError> {
    if args.store == "redb" {
        return Ok(Store::Local(Arc::new(RedbStore::open(
            &args.data.join("routes.redb"),
        )?)));
    }
    if !args.store.starts_with("etcd://") {
        return Err(AppError::Settings(format!(
            "--store {:?} is neither redb nor etcd://HOST:PORT[,HOST:PORT...][/PREFIX]",
            args.store
        )));
    }
    #[cfg(feature = "etcd")]
    {
        let address: routerd_control::store::etcd::EtcdAddress = args
            .store
            .parse()
            .map_err(|e| AppError::Settings(format!("--store: {e}")))?;
        let store =
            routerd_control::store::etcd::EtcdStore::new(&address, &args.store, &args.data)?;
        info!(store = %args.store, "API routes and uploaded plugins are shared through etcd");
        Ok(Store::Etcd(Arc::new(store)))
    }
    #[cfg(not(feature = "etcd"))]
    Err(AppError::Settings(format!(
        "--store {}: this routerd was built without etcd support; build it with `cargo build --release --features etcd` (which needs protoc: apt-get install protobuf-compiler)",
        args.store
    )))
}

/// Leaves the cluster listing when dropped (at shutdown).
pub(super) struct Following(#[cfg(feature = "etcd")] Option<routerd_control::cluster::Cluster>);

impl Drop for Following {
    fn drop(&mut self) {
        #[cfg(feature = "etcd")]
        if let Some(cluster) = &self.0 {
            cluster.leave();
        }
    }
}

impl Store {
    pub(super) fn route_store(&self) -> Arc<dyn routerd_control::store::RouteStore> {
        match self {
            Store::Local(s) => s.clone(),
            #[cfg(feature = "etcd")]
            Store::Etcd(s) => s.clone(),
        }
    }

    /// With etcd: follows the store's changes and registers this instance.
    #[cfg_attr(not(feature = "etcd"), allow(unused_variables))]
    pub(super) fn follow(
        &self,
        routes: &Arc<RouteSet>,
        args: &Settings,
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
                let member = routerd_control::cluster::Member {
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
                Following(Some(routerd_control::cluster::start(
                    store.clone(),
                    routes.clone(),
                    member,
                    &args.data,
                )))
            }
        }
    }
}
