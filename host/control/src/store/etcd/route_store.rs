//! The [`RouteStore`] contract on etcd: loading the routes and the revision, committing a batch
//! of changes in one transaction guarded by each change's expectation, the local copy that
//! answers while etcd is away, plugin bytes in chunks with their manifests, and the instance
//! listing.

use std::collections::BTreeMap;
use std::time::SystemTime;

use etcd_client::{
    Compare, CompareOp, DeleteOptions, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse,
};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{CHUNK_BYTES, EtcdStore, LocalCopy, unix};
use crate::store::{
    Change, Expect, PluginManifest, RouteStore, Snapshot, StoreError, StoredRoute, TrialManifest,
};

impl RouteStore for EtcdStore {
    fn describe(&self) -> String {
        self.shown.clone()
    }

    fn load(&self) -> Result<Snapshot, StoreError> {
        let base = format!("{}routes/", self.prefix);
        let read = self.block(move |mut kv| {
            let base = base.clone();
            async move {
                kv.get(base.as_str(), Some(GetOptions::new().with_prefix()))
                    .await
            }
        });
        match read {
            Ok(resp) => {
                let revision = resp.header().map_or(0, |h| h.revision());
                let routes = resp
                    .kvs()
                    .iter()
                    .filter_map(|kv| self.parse_route(kv.key(), kv.value(), kv.mod_revision()))
                    .collect();
                Ok(Snapshot {
                    routes,
                    revision: u64::try_from(revision).unwrap_or(0),
                    stale: None,
                })
            }
            Err(StoreError::Unavailable { reason, .. }) => {
                let copy = self.read_local().unwrap_or_default();
                let stale = format!(
                    "{} is unreachable ({reason}); serving the last routes this instance saw (revision {}, saved at unix time {}, from {})",
                    self.shown,
                    copy.revision,
                    copy.saved_unix,
                    self.local.display()
                );
                Ok(Snapshot {
                    routes: copy.routes,
                    revision: copy.revision,
                    stale: Some(stale),
                })
            }
            Err(e) => Err(e),
        }
    }

    fn commit(&self, changes: &[Change], _floor: u64) -> Result<u64, StoreError> {
        let mut compares = Vec::new();
        let mut ops = Vec::new();
        let mut keys = Vec::new();
        // What each key holds once the change is applied (None: absent).
        let mut wanted: Vec<Option<Vec<u8>>> = Vec::new();
        for change in changes {
            let key = self.route_key(change.name());
            match change.expect() {
                Expect::Any => {}
                Expect::Absent => {
                    compares.push(Compare::version(key.as_str(), CompareOp::Equal, 0))
                }
                Expect::Present => {
                    compares.push(Compare::version(key.as_str(), CompareOp::Greater, 0))
                }
                Expect::Version(v) => compares.push(Compare::mod_revision(
                    key.as_str(),
                    CompareOp::Equal,
                    i64::try_from(v).unwrap_or(i64::MAX),
                )),
            }
            match change {
                Change::Put { rule, .. } => {
                    let value = serde_json::to_vec(rule).map_err(|e| self.failed(e.to_string()))?;
                    ops.push(TxnOp::put(key.as_str(), value.clone(), None));
                    wanted.push(Some(value));
                }
                Change::Delete { .. } => {
                    ops.push(TxnOp::delete(key.as_str(), None));
                    wanted.push(None);
                }
            }
            keys.push(key);
        }
        // When a compare fails, read the named routes back to say which one moved.
        let reads: Vec<TxnOp> = keys.iter().map(|k| TxnOp::get(k.as_str(), None)).collect();
        let txn = Txn::new().when(compares).and_then(ops).or_else(reads);
        let (resp, maybe_applied) = self.block_retrying(move |mut kv| {
            let txn = txn.clone();
            async move { kv.txn(txn).await }
        })?;
        if resp.succeeded() {
            let revision = resp.header().map_or(0, |h| h.revision());
            return Ok(u64::try_from(revision).unwrap_or(0));
        }
        let found: Vec<Option<(u64, Vec<u8>)>> = resp
            .op_responses()
            .into_iter()
            .map(|r| match r {
                TxnOpResponse::Get(g) => g.kvs().first().map(|kv| {
                    (
                        u64::try_from(kv.mod_revision()).unwrap_or(0),
                        kv.value().to_vec(),
                    )
                }),
                _ => None,
            })
            .collect();
        // An earlier try may have landed before its answer was lost: then its compares fail
        // now against its own writes. Every key holding exactly what this change writes
        // means it did land.
        let landed = found
            .iter()
            .zip(&wanted)
            .all(|(found, wanted)| match (found, wanted) {
                (Some((_, value)), Some(wanted)) => value == wanted,
                (None, None) => true,
                _ => false,
            });
        if maybe_applied && landed {
            let revision = found.iter().flatten().map(|(v, _)| *v).max();
            let revision = revision.or_else(|| {
                resp.header()
                    .map(|h| u64::try_from(h.revision()).unwrap_or(0))
            });
            return Ok(revision.unwrap_or(0));
        }
        let found = found.into_iter().map(|f| f.map(|(version, _)| version));
        for (change, found) in changes.iter().zip(found) {
            if !change.expect().satisfied_by(found) {
                return Err(StoreError::Conflict {
                    name: change.name().to_owned(),
                    expected: change.expect(),
                    found,
                });
            }
        }
        Err(self.failed("the transaction's compares failed, yet every route reads as expected"))
    }

    fn remember(&self, routes: &BTreeMap<String, StoredRoute>, revision: u64) {
        let copy = LocalCopy {
            revision,
            saved_unix: unix(SystemTime::now()),
            routes: routes.values().cloned().collect(),
        };
        let tmp = self.local.with_extension("json.tmp");
        let written = serde_json::to_vec(&copy)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, &self.local));
        if let Err(e) = written {
            tracing::warn!(file = %self.local.display(), "cannot keep the local copy of the routes: {e}");
        }
    }

    fn stale(&self) -> Option<String> {
        let reach = self.reach.lock().unwrap_or_else(|p| p.into_inner());
        reach.down_since.map(|since| {
            format!(
                "{} unreachable since unix time {}: {}",
                self.shown,
                unix(since),
                reach.reason
            )
        })
    }

    fn stage_plugin(&self, sha256: &str, bytes: &[u8]) -> Result<usize, StoreError> {
        let base = self.blob_prefix(sha256);
        let chunks: Vec<(String, Vec<u8>)> = bytes
            .chunks(CHUNK_BYTES)
            .enumerate()
            .map(|(i, c)| (format!("{base}{i:05}"), c.to_vec()))
            .collect();
        let count = chunks.len();
        for (key, chunk) in chunks {
            self.block(move |mut kv| {
                let (key, chunk) = (key.clone(), chunk.clone());
                async move { kv.put(key, chunk, None).await }
            })?;
        }
        Ok(count)
    }

    fn publish_plugin(&self, name: &str, manifest: &PluginManifest) -> Result<(), StoreError> {
        let key = self.manifest_key(name);
        self.put_manifest(name, key, manifest, |m: PluginManifest| m.sha256)
    }

    fn withdraw_plugin(&self, name: &str) -> Result<(), StoreError> {
        let key = self.manifest_key(name);
        self.delete_manifest(name, key, |m: PluginManifest| m.sha256)
    }

    fn publish_trial(&self, name: &str, manifest: &TrialManifest) -> Result<(), StoreError> {
        let key = self.trial_key(name);
        self.put_manifest(name, key, manifest, |m: TrialManifest| m.plugin.sha256)
    }

    fn withdraw_trial(&self, name: &str) -> Result<(), StoreError> {
        let key = self.trial_key(name);
        self.delete_manifest(name, key, |m: TrialManifest| m.plugin.sha256)
    }

    fn instances(&self) -> Option<Result<Vec<serde_json::Value>, StoreError>> {
        let base = format!("{}instances/", self.prefix);
        Some(
            self.block(move |mut kv| {
                let base = base.clone();
                async move {
                    kv.get(base.as_str(), Some(GetOptions::new().with_prefix()))
                        .await
                }
            })
            .map(|resp| {
                resp.kvs()
                    .iter()
                    .filter_map(|kv| serde_json::from_slice(kv.value()).ok())
                    .collect()
            }),
        )
    }
}

impl EtcdStore {
    /// Writes `manifest` under `key`; then the bytes the manifest it replaced named (`sha`
    /// says which) go, unless a manifest still names them.
    fn put_manifest<M: Serialize + DeserializeOwned + 'static>(
        &self,
        name: &str,
        key: String,
        manifest: &M,
        sha: fn(M) -> String,
    ) -> Result<(), StoreError> {
        let value = serde_json::to_vec(manifest).map_err(|e| self.failed(e.to_string()))?;
        let prefix = self.prefix.clone();
        let replaced = self.block(move |mut kv| {
            let (key, value, prefix) = (key.clone(), value.clone(), prefix.clone());
            async move {
                let resp = kv
                    .put(key, value, Some(PutOptions::new().with_prev_key()))
                    .await?;
                let before = resp
                    .prev_key()
                    .and_then(|kv| serde_json::from_slice::<M>(kv.value()).ok())
                    .map(sha);
                Ok((before, EtcdStore::blobs_in_use(&mut kv, &prefix).await?))
            }
        })?;
        self.drop_unused_bytes(name, replaced);
        Ok(())
    }

    /// Deletes the manifest under `key`; then the bytes it named go, unless a manifest still
    /// names them.
    fn delete_manifest<M: DeserializeOwned + 'static>(
        &self,
        name: &str,
        key: String,
        sha: fn(M) -> String,
    ) -> Result<(), StoreError> {
        let prefix = self.prefix.clone();
        let removed = self.block(move |mut kv| {
            let (key, prefix) = (key.clone(), prefix.clone());
            async move {
                let resp = kv
                    .delete(key.as_str(), Some(DeleteOptions::new().with_prev_key()))
                    .await?;
                let gone = resp
                    .prev_kvs()
                    .first()
                    .and_then(|kv| serde_json::from_slice::<M>(kv.value()).ok())
                    .map(sha);
                Ok((gone, EtcdStore::blobs_in_use(&mut kv, &prefix).await?))
            }
        })?;
        self.drop_unused_bytes(name, removed);
        Ok(())
    }
}
