//! Scale-out: what makes one instance follow the etcd store it shares with others (skipper's
//! "data client"). It reads everything, then watches the prefix from the revision it read and
//! hands each change to the route set (routes) or the plugin registry (plugins, fetched by
//! their manifest, verified by SHA-256, written to the plugins directory so a restart loads
//! them). A compacted watch or a lost connection means: read everything again, with backoff
//! while etcd is unreachable; the last good table keeps serving meanwhile. Each instance also
//! keeps a leased key under `PREFIX/instances/` saying what it serves, which is how
//! `GET /api/v1/cluster` lists the live ones.
//!
//! Nothing here runs on the store's runtime while holding the route set's lock, and every
//! route set call runs on a blocking thread: a writer holding the lock waits for that runtime.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use etcd_client::{EventType, PutOptions, WatchOptions, WatchResponse, WatchStream};
use serde::Serialize;

mod trials;

use crate::routeset::{Observed, RouteSet};
use crate::store::etcd::EtcdStore;
use crate::store::{PluginManifest, RouteStore};
use trials::TrialChange;

/// How long an instance stays listed after it stopped renewing its lease.
const LEASE_TTL_SECS: i64 = 5;
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What an instance says of itself under `PREFIX/instances/ID`.
#[derive(Debug, Clone, Serialize)]
pub struct Member {
    /// Unique among the instances (`--instance-id`).
    pub id: String,
    /// Its admin API.
    pub admin: String,
    /// Its proxy listener.
    pub listen: String,
    /// routerd's version.
    pub version: &'static str,
    /// When it started.
    pub started_unix: u64,
}

impl Member {
    /// What the instance says of itself now: serving table `table_version` at store revision
    /// `revision`, with these trial counts.
    fn record(
        &self,
        table_version: u64,
        revision: u64,
        trials: &serde_json::Value,
    ) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "admin": self.admin,
            "listen": self.listen,
            "version": self.version,
            "started_unix": self.started_unix,
            "table_version": table_version,
            "revision": revision,
            "trials": trials,
            "seen_unix": SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        })
    }
}

/// The running follower and registration.
pub struct Cluster {
    lease: Arc<std::sync::atomic::AtomicI64>,
    store: Arc<EtcdStore>,
}

/// Starts following `store` for `routes` and registering `member`; `data` holds the record of
/// which plugins came from the store.
pub fn start(store: Arc<EtcdStore>, routes: Arc<RouteSet>, member: Member, data: &Path) -> Cluster {
    let lease = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let plugins = PluginFollower {
        store: store.clone(),
        routes: routes.clone(),
        record: data.join("etcd-plugins.json"),
    };
    store
        .runtime()
        .spawn(follow(store.clone(), routes.clone(), plugins));
    store
        .runtime()
        .spawn(register(store.clone(), routes, member, lease.clone()));
    Cluster { lease, store }
}

impl Cluster {
    /// Removes this instance from the listing at once (on shutdown), instead of when its
    /// lease runs out.
    pub fn leave(&self) {
        let id = self.lease.load(std::sync::atomic::Ordering::Relaxed);
        if id != 0 {
            let client = self.store.client();
            let _ = self.store.block(move |_| {
                let mut client = client.clone();
                async move { client.lease_revoke(id).await }
            });
        }
    }
}

/// Reads everything, then applies the watch's changes; again after any interruption.
async fn follow(store: Arc<EtcdStore>, routes: Arc<RouteSet>, mut plugins: PluginFollower) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let resync = {
            let routes = routes.clone();
            tokio::task::spawn_blocking(move || routes.resync()).await
        };
        let revision = match resync {
            Ok(Ok(revision)) => revision,
            Ok(Err(e)) => {
                tracing::debug!("resync failed, retrying in {backoff:?}: {e}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
            Err(_) => return,
        };
        if let Err(e) = plugins.sync_all().await {
            store.unreachable(&e.to_string());
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            continue;
        }
        if let Err(e) = trials::sync_all(&store, &routes).await {
            store.error(e);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            continue;
        }
        let Some(mut stream) = watch_from(&store, revision).await else {
            tokio::time::sleep(backoff).await;
            continue;
        };
        store.reached();
        backoff = Duration::from_millis(100);
        tracing::info!(revision, store = %store.prefix(), "following the route store");
        follow_stream(&store, &routes, &mut plugins, &mut stream).await;
    }
}

/// A watch of the store's prefix from the revision after `revision`; `None` (reported to the
/// store's health) when it could not be set up.
async fn watch_from(store: &EtcdStore, revision: u64) -> Option<WatchStream> {
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(i64::try_from(revision + 1).unwrap_or(i64::MAX))
        .with_progress_notify();
    let mut watch_client = store
        .client()
        .watch_client()
        .max_decoding_message_size(256 << 20);
    match tokio::time::timeout(
        crate::store::etcd::REQUEST_TIMEOUT,
        watch_client.watch(store.prefix(), Some(options)),
    )
    .await
    {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            store.error(e);
            None
        }
        Err(_) => {
            store.unreachable("the watch was not set up in time");
            None
        }
    }
}

/// Applies the watch's changes until the stream ends, fails or is cancelled (then everything
/// is read again).
async fn follow_stream(
    store: &EtcdStore,
    routes: &Arc<RouteSet>,
    plugins: &mut PluginFollower,
    stream: &mut WatchStream,
) {
    loop {
        let resp = match stream.message().await {
            Ok(Some(resp)) => resp,
            Ok(None) => {
                store.unreachable("the watch stream ended");
                return;
            }
            Err(e) => {
                store.error(e);
                return;
            }
        };
        if resp.canceled() {
            tracing::info!(
                compacted = resp.compact_revision(),
                "the store's watch was cancelled ({}); reading everything again",
                resp.cancel_reason()
            );
            return;
        }
        let Changes {
            observed,
            manifests,
            trials,
        } = changes(store, &resp);
        if !observed.is_empty() {
            let routes = routes.clone();
            let _ = tokio::task::spawn_blocking(move || routes.observe(observed)).await;
        }
        for (name, manifest) in manifests {
            plugins.apply(&name, manifest.as_ref()).await;
        }
        // After the plugins: a trial needs its live version loaded.
        for (name, manifest) in trials {
            trials::apply(store, routes, &name, manifest.as_ref()).await;
        }
    }
}

/// A plugin's manifest as the store now has it (`None`: withdrawn).
type ManifestChange = (String, Option<PluginManifest>);

/// One watch response's changes.
struct Changes {
    /// To routes.
    observed: Vec<Observed>,
    /// To plugin manifests.
    manifests: Vec<ManifestChange>,
    /// To trial manifests.
    trials: Vec<TrialChange>,
}

/// One watch response's route, plugin and trial changes.
fn changes(store: &EtcdStore, resp: &WatchResponse) -> Changes {
    let mut observed = Vec::new();
    let mut manifests = Vec::new();
    let mut trial_changes = Vec::new();
    let routes_prefix = format!("{}routes/", store.prefix());
    let manifests_prefix = format!("{}plugins/manifests/", store.prefix());
    let trials_prefix = format!("{}plugins/trials/", store.prefix());
    for event in resp.events() {
        let Some(kv) = event.kv() else { continue };
        let Ok(key) = std::str::from_utf8(kv.key()) else {
            continue;
        };
        let revision = u64::try_from(kv.mod_revision()).unwrap_or(0);
        if let Some(name) = key.strip_prefix(&routes_prefix) {
            match event.event_type() {
                EventType::Put => observed.extend(
                    store
                        .parse_route(kv.key(), kv.value(), kv.mod_revision())
                        .map(|route| Observed::Put(Box::new(route))),
                ),
                EventType::Delete => observed.push(Observed::Delete {
                    name: name.to_owned(),
                    revision,
                }),
            }
        } else if let Some(name) = key.strip_prefix(&manifests_prefix) {
            let manifest = match event.event_type() {
                EventType::Put => match serde_json::from_slice(kv.value()) {
                    Ok(m) => Some(m),
                    Err(e) => {
                        tracing::warn!(plugin = name, "ignoring an unreadable manifest: {e}");
                        continue;
                    }
                },
                EventType::Delete => None,
            };
            manifests.push((name.to_owned(), manifest));
        } else if let Some(change) =
            trials::trial_change(&trials_prefix, key, event.event_type(), kv.value())
        {
            trial_changes.push(change);
        }
    }
    Changes {
        observed,
        manifests,
        trials: trial_changes,
    }
}

/// Loads, replaces and unloads the plugins the store names.
struct PluginFollower {
    store: Arc<EtcdStore>,
    routes: Arc<RouteSet>,
    /// Which plugins came from the store (name -> sha256), so a plugin removed from it while
    /// this instance was away is unloaded on return, and files dropped into the plugins
    /// directory by hand are left alone.
    record: PathBuf,
}

impl PluginFollower {
    fn recorded(&self) -> BTreeMap<String, String> {
        std::fs::read(&self.record)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn keep_record(&self, record: &BTreeMap<String, String>) {
        let tmp = self.record.with_extension("json.tmp");
        let written = serde_json::to_vec(record)
            .map_err(std::io::Error::other)
            .and_then(|b| std::fs::write(&tmp, b))
            .and_then(|()| std::fs::rename(&tmp, &self.record));
        if let Err(e) = written {
            tracing::warn!(file = %self.record.display(), "cannot record the store's plugins: {e}");
        }
    }

    /// Makes the loaded plugins match every manifest in the store.
    async fn sync_all(&mut self) -> Result<(), ManifestsError> {
        let mut kv = self.store.kv();
        let manifests = tokio::time::timeout(
            crate::store::etcd::REQUEST_TIMEOUT,
            EtcdStore::manifests(&mut kv, self.store.prefix()),
        )
        .await
        .map_err(|_| ManifestsError::NoAnswer)?
        .map_err(ManifestsError::Store)?;
        for (name, manifest) in &manifests {
            self.apply(name, Some(manifest)).await;
        }
        for name in self.recorded().keys() {
            if !manifests.contains_key(name) {
                self.apply(name, None).await;
            }
        }
        Ok(())
    }

    /// Loads the version `manifest` names, or unloads `name` when it is `None`.
    async fn apply(&mut self, name: &str, manifest: Option<&PluginManifest>) {
        let registry = self.routes.plugins().clone();
        let mut record = self.recorded();
        match manifest {
            Some(m) => {
                let current = registry.get(name);
                let same_settings = match &m.settings {
                    Some(doc) => {
                        registry.settings_document(name).ok().flatten().as_ref() == Some(doc)
                    }
                    None => true,
                };
                if current.is_none_or(|p| p.sha256 != m.sha256) || !same_settings {
                    let mut kv = self.store.kv();
                    let fetched = EtcdStore::fetch_plugin(&mut kv, self.store.prefix(), m).await;
                    let bytes = match fetched {
                        Ok(b) => b,
                        Err(e) => {
                            tracing::warn!(plugin = name, "plugin from the store not loaded: {e}");
                            return;
                        }
                    };
                    let (name_owned, settings) = (name.to_owned(), m.settings.clone());
                    let registry = registry.clone();
                    let installed = tokio::task::spawn_blocking(move || {
                        if let Some(doc) = &settings {
                            registry.write_settings_document(&name_owned, doc)?;
                        }
                        registry.install(&name_owned, &bytes).map(drop)
                    })
                    .await;
                    match installed {
                        Ok(Ok(())) => {
                            tracing::info!(plugin = name, sha256 = %m.sha256, "plugin loaded from the store")
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(plugin = name, "plugin from the store not loaded: {e}");
                            return;
                        }
                        Err(_) => return,
                    }
                }
                if record.get(name) != Some(&m.sha256) {
                    record.insert(name.to_owned(), m.sha256.clone());
                    self.keep_record(&record);
                }
            }
            None => {
                if record.remove(name).is_none() {
                    return;
                }
                let name_owned = name.to_owned();
                let _ = tokio::task::spawn_blocking(move || {
                    let path = registry.dir().join(format!("{name_owned}.wasm"));
                    if let Err(e) = std::fs::remove_file(&path)
                        && e.kind() != std::io::ErrorKind::NotFound
                    {
                        tracing::warn!(file = %path.display(), "cannot remove an unloaded plugin: {e}");
                    }
                    registry.unload(&name_owned);
                })
                .await;
                tracing::info!(plugin = name, "plugin unloaded: removed from the store");
                self.keep_record(&record);
            }
        }
    }
}

/// Keeps `PREFIX/instances/ID` alive under a lease, rewritten whenever the table changes.
async fn register(
    store: Arc<EtcdStore>,
    routes: Arc<RouteSet>,
    member: Member,
    lease_id: Arc<std::sync::atomic::AtomicI64>,
) {
    let key = format!("{}instances/{}", store.prefix(), member.id);
    loop {
        let mut client = store.client();
        let granted = tokio::time::timeout(
            crate::store::etcd::REQUEST_TIMEOUT,
            client.lease_grant(LEASE_TTL_SECS, None),
        )
        .await;
        let lease = match granted {
            Ok(Ok(l)) => l.id(),
            _ => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        lease_id.store(lease, std::sync::atomic::Ordering::Relaxed);
        let Ok(Ok((mut keeper, mut answers))) = tokio::time::timeout(
            crate::store::etcd::REQUEST_TIMEOUT,
            client.lease_keep_alive(lease),
        )
        .await
        else {
            continue;
        };
        let mut shown = None;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let mut renewed = tokio::time::Instant::now();
        // Trial counts change with every call: they are read at most once a second.
        let mut counted = (serde_json::Value::Null, tokio::time::Instant::now());
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                answer = answers.message() => match answer {
                    Ok(Some(a)) if a.ttl() > 0 => continue,
                    // The lease is gone (expired while etcd was away): take a new one.
                    _ => break,
                },
            }
            if counted.0.is_null() || counted.1.elapsed() >= Duration::from_secs(1) {
                counted = (trials::counts(&routes), tokio::time::Instant::now());
            }
            let now = (
                routes.table_version(),
                routes.revision(),
                store.stale().is_some(),
                counted.0.to_string(),
            );
            if shown.as_ref() != Some(&now) {
                let doc = member.record(now.0, now.1, &counted.0);
                let put = tokio::time::timeout(
                    crate::store::etcd::REQUEST_TIMEOUT,
                    client.put(
                        key.as_str(),
                        doc.to_string(),
                        Some(PutOptions::new().with_lease(lease)),
                    ),
                )
                .await;
                if !matches!(put, Ok(Ok(_))) {
                    break;
                }
                shown = Some(now);
            }
            if renewed.elapsed() >= Duration::from_secs(1) {
                if keeper.keep_alive().await.is_err() {
                    break;
                }
                renewed = tokio::time::Instant::now();
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Why the plugin manifests could not be listed from the store.
#[derive(Debug, thiserror::Error)]
enum ManifestsError {
    /// The store did not answer within its request timeout.
    #[error("no answer listing the plugins")]
    NoAnswer,
    /// The store answered with an error.
    #[error("listing the plugins: {0}")]
    Store(#[source] etcd_client::Error),
}
