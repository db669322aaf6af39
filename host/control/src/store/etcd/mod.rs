//! The shared route store of a scale-out setup: etcd, under one key prefix. API routes are one
//! key each (`PREFIX/routes/NAME`, the rule as JSON; its version is the key's mod revision),
//! and a commit is one etcd transaction whose compares are the changes' [`Expect`]s, so
//! `If-Match` holds across instances. Plugins are stored content-addressed
//! (`PREFIX/plugins/blobs/SHA256/NNNNN`, chunks well under etcd's request limit) and named by
//! a small manifest (`PREFIX/plugins/manifests/NAME`), written last, so a name switches from
//! one version to the next in one write. Live instances register under
//! `PREFIX/instances/ID` with a lease.
//!
//! The store runs its own small runtime, so its blocking methods can be called from any
//! thread. A local copy of the routes last seen is kept in the data directory: a restart while
//! etcd is unreachable serves it, marked stale. Following changes (the watch) is
//! [`crate::cluster`]'s job.

/// The etcd client this store speaks through, for tools (and tests) that read the store's keys
/// directly with the same version.
pub use etcd_client as client;

mod route_store;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use etcd_client::{Client, ConnectOptions, DeleteOptions, GetOptions, KvClient};
use serde::{Deserialize, Serialize};

use super::{PluginManifest, StoreError, StoredRoute, TrialManifest};
use routerd_routing::config::RouteRule;

/// How long one request to etcd may take before the store counts as unreachable.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(4);
/// How long one try within a request may take; an election in a healthy cluster (etcd's
/// default election timeout is 1 s) fits in the tries that follow.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);
/// Plugin bytes per key: etcd refuses requests over 1.5 MiB by default.
pub const CHUNK_BYTES: usize = 1 << 20;
/// The largest answer read from etcd (a listing of many routes, a big watch batch).
const MAX_MESSAGE: usize = 256 << 20;

/// Where the shared store is: `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdAddress {
    /// `http://HOST:PORT` per member.
    pub endpoints: Vec<String>,
    /// The key prefix, with a leading and a trailing `/`.
    pub prefix: String,
}

impl std::str::FromStr for EtcdAddress {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let rest = text
            .strip_prefix("etcd://")
            .ok_or_else(|| format!("{text:?} does not start with etcd://"))?;
        let (hosts, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let prefix = if prefix.is_empty() {
            "/routerd"
        } else {
            prefix
        };
        let mut endpoints = Vec::new();
        for host in hosts.split(',') {
            let valid = host
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !valid {
                return Err(format!(
                    "{host:?} in {text:?} is not HOST:PORT (write etcd://127.0.0.1:2379/routerd)"
                ));
            }
            endpoints.push(format!("http://{host}"));
        }
        Ok(EtcdAddress {
            endpoints,
            prefix: format!("{prefix}/"),
        })
    }
}

/// Whether etcd answered the last request, and since when it has not.
#[derive(Debug, Clone)]
struct Reach {
    down_since: Option<SystemTime>,
    reason: String,
}

/// What is kept in the data directory: the routes this instance served last.
#[derive(Debug, Default, Serialize, Deserialize)]
struct LocalCopy {
    revision: u64,
    saved_unix: u64,
    routes: Vec<StoredRoute>,
}

/// See the module docs.
pub struct EtcdStore {
    shown: String,
    prefix: String,
    client: Client,
    kv: KvClient,
    runtime: tokio::runtime::Handle,
    reach: Mutex<Reach>,
    local: PathBuf,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl EtcdStore {
    /// Prepares the client (it connects when first used, so an unreachable etcd does not stop
    /// routerd from starting) on a runtime of its own; the local copy lives in `data`.
    pub fn new(address: &EtcdAddress, shown: &str, data: &Path) -> Result<Self, StoreError> {
        let fail = |reason: String| StoreError::Failed {
            store: shown.to_owned(),
            reason,
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("routerd-etcd".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                match runtime {
                    Ok(rt) => {
                        let _ = tx.send(Ok(rt.handle().clone()));
                        // Lives as long as the process: the store is never dropped before.
                        rt.block_on(std::future::pending::<()>());
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            })
            .map_err(|e| fail(format!("cannot start its thread: {e}")))?;
        let runtime = rx
            .recv()
            .map_err(|e| fail(e.to_string()))?
            .map_err(|e| fail(format!("cannot start its runtime: {e}")))?;
        let endpoints = address.endpoints.clone();
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(1))
            .with_keep_alive(Duration::from_secs(1), Duration::from_secs(2))
            .with_keep_alive_while_idle(true);
        let (tx, rx) = std::sync::mpsc::channel();
        runtime.spawn(async move {
            let _ = tx.send(Client::connect(endpoints, Some(options)).await);
        });
        let client = rx
            .recv()
            .map_err(|e| fail(e.to_string()))?
            .map_err(|e| fail(format!("cannot set up the client: {e}")))?;
        let kv = client
            .kv_client()
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        Ok(EtcdStore {
            shown: shown.to_owned(),
            prefix: address.prefix.clone(),
            client,
            kv,
            runtime,
            reach: Mutex::new(Reach {
                down_since: None,
                reason: String::new(),
            }),
            local: data.join("etcd-routes.json"),
        })
    }

    /// The client, for the watch and the lease (run them on [`EtcdStore::runtime`]).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// A KV client that reads big answers.
    pub fn kv(&self) -> KvClient {
        self.kv.clone()
    }

    /// The runtime the store's I/O runs on.
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    /// The key prefix (ends with `/`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The key of API route `name`.
    pub fn route_key(&self, name: &str) -> String {
        format!("{}routes/{name}", self.prefix)
    }

    /// The key of plugin `name`'s manifest.
    pub fn manifest_key(&self, name: &str) -> String {
        format!("{}plugins/manifests/{name}", self.prefix)
    }

    fn blob_prefix(&self, sha256: &str) -> String {
        format!("{}plugins/blobs/{sha256}/", self.prefix)
    }

    /// Records that etcd answered.
    pub fn reached(&self) {
        let mut reach = self.reach.lock().unwrap_or_else(|p| p.into_inner());
        if reach.down_since.take().is_some() {
            tracing::info!(store = %self.shown, "the route store is reachable again");
        }
    }

    /// Records that etcd did not answer, and why.
    pub fn unreachable(&self, reason: &str) {
        let mut reach = self.reach.lock().unwrap_or_else(|p| p.into_inner());
        if reach.down_since.is_none() {
            tracing::warn!(store = %self.shown, "the route store is unreachable: {reason}");
            reach.down_since = Some(SystemTime::now());
        }
        reach.reason = reason.to_owned();
    }

    fn unavailable(&self, reason: impl Into<String>) -> StoreError {
        let reason = reason.into();
        self.unreachable(&reason);
        StoreError::Unavailable {
            store: self.shown.clone(),
            reason,
        }
    }

    fn failed(&self, reason: impl Into<String>) -> StoreError {
        StoreError::Failed {
            store: self.shown.clone(),
            reason: reason.into(),
        }
    }

    /// Classifies a client error: the ones that mean "no answer" make the store unreachable.
    pub fn error(&self, e: etcd_client::Error) -> StoreError {
        use etcd_client::Error as E;
        match &e {
            E::TransportError(_) | E::IoError(_) => self.unavailable(e.to_string()),
            E::GRpcStatus(status)
                if matches!(
                    status.code(),
                    tonic::Code::Unavailable
                        | tonic::Code::DeadlineExceeded
                        | tonic::Code::Cancelled
                ) || status.message().contains("transport") =>
            {
                self.unavailable(e.to_string())
            }
            _ => self.failed(e.to_string()),
        }
    }

    /// Runs `work` (given a KV client) on the store's runtime and waits for it, at most
    /// [`REQUEST_TIMEOUT`] in all. A request that failed in a way that passes (a member down, an
    /// election under way) is tried again: the client's balancer then picks another member.
    pub fn block<T, F, W>(&self, work: W) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
        W: Fn(KvClient) -> F + Send + Sync + 'static,
    {
        self.block_retrying(work).map(|(value, _)| value)
    }

    /// [`block`](Self::block), also saying whether an earlier try may have been applied: it
    /// reached a member and failed without saying whether its proposal was committed (the
    /// leader changed under it). A write told so checks what it finds instead of trusting
    /// its compares.
    fn block_retrying<T, F, W>(&self, work: W) -> Result<(T, bool), StoreError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
        W: Fn(KvClient) -> F + Send + Sync + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let kv = self.kv();
        self.runtime.spawn(async move {
            let attempts = async {
                let mut maybe_applied = false;
                // The whole loop is bounded by REQUEST_TIMEOUT below.
                loop {
                    // A try stuck on a member that went away is abandoned, not awaited: the
                    // channel notices a dead peer only after its keepalive timeout.
                    match tokio::time::timeout(ATTEMPT_TIMEOUT, work(kv.clone())).await {
                        Ok(Err(e)) if passing(&e) => maybe_applied |= !never_sent(&e),
                        Err(_) => maybe_applied = true,
                        Ok(done) => return done.map(|value| (value, maybe_applied)),
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            };
            let _ = tx.send(tokio::time::timeout(REQUEST_TIMEOUT, attempts).await);
        });
        match rx.recv() {
            Ok(Ok(Ok(value))) => {
                self.reached();
                Ok(value)
            }
            Ok(Ok(Err(e))) => Err(self.error(e)),
            Ok(Err(_)) => {
                Err(self.unavailable(format!("no answer within {}s", REQUEST_TIMEOUT.as_secs())))
            }
            Err(_) => Err(self.failed("its runtime stopped")),
        }
    }

    /// Removes the bytes of a manifest that was replaced or deleted, unless a manifest (the
    /// new version's, or another name's) still points at them: without this, every upload of
    /// a new version would leave its predecessor's chunks in etcd for good.
    fn drop_unused_bytes(
        &self,
        name: &str,
        (before, in_use): (Option<String>, std::collections::BTreeSet<String>),
    ) {
        let Some(before) = before else { return };
        if in_use.contains(&before) {
            return;
        }
        let base = self.blob_prefix(&before);
        if let Err(e) = self.block(move |mut kv| {
            let base = base.clone();
            async move {
                kv.delete(base.as_str(), Some(DeleteOptions::new().with_prefix()))
                    .await
            }
        }) {
            tracing::warn!(
                plugin = name,
                "a plugin's old stored bytes were not removed: {e}"
            );
        }
    }

    /// A route from its key and value; `None` for keys that are not routes.
    pub fn parse_route(&self, key: &[u8], value: &[u8], revision: i64) -> Option<StoredRoute> {
        let key = std::str::from_utf8(key).ok()?;
        let name = key.strip_prefix(&format!("{}routes/", self.prefix))?;
        match serde_json::from_slice::<RouteRule>(value) {
            Ok(rule) if rule.name == name => Some(StoredRoute {
                rule: Arc::new(rule),
                version: u64::try_from(revision).unwrap_or(0),
            }),
            Ok(rule) => {
                tracing::warn!(
                    key,
                    "ignoring a stored route named {:?} under another key",
                    rule.name
                );
                None
            }
            Err(e) => {
                tracing::warn!(key, "ignoring an unreadable stored route: {e}");
                None
            }
        }
    }

    /// The key of plugin `name`'s trial manifest.
    pub fn trial_key(&self, name: &str) -> String {
        format!("{}plugins/trials/{name}", self.prefix)
    }

    /// Every trial manifest, by plugin name.
    pub async fn trials(
        kv: &mut KvClient,
        prefix: &str,
    ) -> Result<BTreeMap<String, TrialManifest>, etcd_client::Error> {
        Self::named(kv, &format!("{prefix}plugins/trials/")).await
    }

    /// The SHA-256 of every stored version a plugin or trial manifest points at.
    pub async fn blobs_in_use(
        kv: &mut KvClient,
        prefix: &str,
    ) -> Result<std::collections::BTreeSet<String>, etcd_client::Error> {
        let plugins = Self::manifests(kv, prefix).await?;
        let trials = Self::trials(kv, prefix).await?;
        Ok(plugins
            .into_values()
            .map(|m| m.sha256)
            .chain(trials.into_values().map(|t| t.plugin.sha256))
            .collect())
    }

    /// Every plugin manifest, by name.
    pub async fn manifests(
        kv: &mut KvClient,
        prefix: &str,
    ) -> Result<BTreeMap<String, PluginManifest>, etcd_client::Error> {
        Self::named(kv, &format!("{prefix}plugins/manifests/")).await
    }

    /// Every JSON document under `base`, by the rest of its key; unreadable ones are logged
    /// and left out.
    async fn named<M: serde::de::DeserializeOwned>(
        kv: &mut KvClient,
        base: &str,
    ) -> Result<BTreeMap<String, M>, etcd_client::Error> {
        let resp = kv.get(base, Some(GetOptions::new().with_prefix())).await?;
        let mut out = BTreeMap::new();
        for kv in resp.kvs() {
            let Some(name) = std::str::from_utf8(kv.key())
                .ok()
                .and_then(|k| k.strip_prefix(base))
            else {
                continue;
            };
            match serde_json::from_slice::<M>(kv.value()) {
                Ok(m) => {
                    out.insert(name.to_owned(), m);
                }
                Err(e) => tracing::warn!(key = %base, name, "ignoring an unreadable manifest: {e}"),
            }
        }
        Ok(out)
    }

    /// The bytes a manifest names, chunk by chunk (each answer stays small), checked against
    /// its size and SHA-256.
    pub async fn fetch_plugin(
        kv: &mut KvClient,
        prefix: &str,
        manifest: &PluginManifest,
    ) -> Result<Vec<u8>, String> {
        use sha2::{Digest, Sha256};
        let mut bytes = Vec::with_capacity(manifest.size);
        for i in 0..manifest.chunks {
            let key = format!("{prefix}plugins/blobs/{}/{i:05}", manifest.sha256);
            let resp = kv
                .get(key.as_str(), None)
                .await
                .map_err(|e| e.to_string())?;
            let chunk = resp
                .kvs()
                .first()
                .ok_or_else(|| format!("chunk {i} of {} is missing", manifest.sha256))?;
            bytes.extend_from_slice(chunk.value());
        }
        let sha = hex::encode(Sha256::digest(&bytes));
        if bytes.len() != manifest.size || sha != manifest.sha256 {
            return Err(format!(
                "the stored bytes ({} bytes, sha256 {sha}) are not the manifest's ({} bytes, sha256 {})",
                bytes.len(),
                manifest.size,
                manifest.sha256
            ));
        }
        Ok(bytes)
    }

    fn read_local(&self) -> Option<LocalCopy> {
        let text = std::fs::read(&self.local).ok()?;
        match serde_json::from_slice(&text) {
            Ok(copy) => Some(copy),
            Err(e) => {
                tracing::warn!(file = %self.local.display(), "ignoring an unreadable local copy of the routes: {e}");
                None
            }
        }
    }
}

/// Whether a request failed before anything reached etcd (no connection to the member).
/// An error that passes: the cluster or the connection to it, not the request.
fn passing(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(status) => status.code() == tonic::Code::Unavailable,
        etcd_client::Error::TransportError(_) => true,
        _ => false,
    }
}

/// A passing error that says the request never reached etcd, or was refused before it was
/// proposed (no leader), so it cannot have been applied.
fn never_sent(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(status) => {
            status.code() == tonic::Code::Unavailable
                && (status.message().contains("connect") || status.message().contains("no leader"))
        }
        etcd_client::Error::TransportError(_) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_with_a_default_prefix() {
        let a: EtcdAddress = "etcd://127.0.0.1:2379,10.0.0.2:2379/prod/edge/"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            a.endpoints,
            ["http://127.0.0.1:2379", "http://10.0.0.2:2379"]
        );
        assert_eq!(a.prefix, "/prod/edge/");
        let b: EtcdAddress = "etcd://localhost:2379"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(b.prefix, "/routerd/");
        for bad in ["http://h:1", "etcd://h", "etcd://:1/x", "etcd://h:99999"] {
            assert!(bad.parse::<EtcdAddress>().is_err(), "{bad}");
        }
    }
}
