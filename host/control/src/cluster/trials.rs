//! Trial plugin versions shared through the store: a shadow or canary loaded on one instance is
//! published as a trial manifest (`PREFIX/plugins/trials/NAME`, its bytes staged as a plugin's
//! are) and loaded by every instance beside its live version; withdrawn, it ends everywhere.
//! Each instance counts its own calls and says them in its instance record, which the cluster
//! view sums.

use std::sync::Arc;

use etcd_client::EventType;

use crate::routeset::RouteSet;
use crate::store::TrialManifest;
use crate::store::etcd::EtcdStore;

/// A trial manifest as the store now has it (`None`: withdrawn).
pub(super) type TrialChange = (String, Option<TrialManifest>);

/// The trial change a watch event carries, if its key is a trial manifest's.
pub(super) fn trial_change(
    base: &str,
    key: &str,
    event: EventType,
    value: &[u8],
) -> Option<TrialChange> {
    let name = key.strip_prefix(base)?;
    let manifest = match event {
        EventType::Put => match serde_json::from_slice(value) {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::warn!(plugin = name, "ignoring an unreadable trial manifest: {e}");
                return None;
            }
        },
        EventType::Delete => None,
    };
    Some((name.to_owned(), manifest))
}

/// Makes plugin `name`'s trial version the one `manifest` names, or ends it (`None`). A trial
/// already loaded with the same bytes and mode is left as it is, counts and all.
pub(super) async fn apply(
    store: &EtcdStore,
    routes: &Arc<RouteSet>,
    name: &str,
    manifest: Option<&TrialManifest>,
) {
    let registry = routes.plugins().clone();
    let Some(m) = manifest else {
        if registry.discard_trial(name).is_some() {
            tracing::info!(
                plugin = name,
                "trial version ended: withdrawn from the store"
            );
        }
        return;
    };
    let Some(mode) = m.mode() else {
        tracing::warn!(plugin = name, mode = %m.mode, "ignoring a trial manifest with an unknown mode");
        return;
    };
    let current = registry.get(name).and_then(|p| p.trial());
    if current.is_some_and(|t| t.plugin.sha256 == m.plugin.sha256 && t.mode == mode) {
        return;
    }
    let mut kv = store.kv();
    let bytes = match EtcdStore::fetch_plugin(&mut kv, store.prefix(), &m.plugin).await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(
                plugin = name,
                "trial version from the store not loaded: {e}"
            );
            return;
        }
    };
    let (routes, name_owned) = (routes.clone(), name.to_owned());
    let loaded = tokio::task::spawn_blocking(move || {
        let args = routes.plugin_args(&name_owned);
        registry.try_version(&name_owned, &bytes, mode, &args)
    })
    .await;
    match loaded {
        Ok(Ok(t)) => {
            tracing::info!(plugin = name, sha256 = %t.plugin.sha256, "trial version loaded from the store")
        }
        Ok(Err(e)) => tracing::warn!(
            plugin = name,
            "trial version from the store not loaded: {e}"
        ),
        Err(_) => {}
    }
}

/// Makes the loaded trial versions match every trial manifest in the store.
pub(super) async fn sync_all(
    store: &EtcdStore,
    routes: &Arc<RouteSet>,
) -> Result<(), etcd_client::Error> {
    let mut kv = store.kv();
    let manifests = EtcdStore::trials(&mut kv, store.prefix()).await?;
    for (name, m) in &manifests {
        apply(store, routes, name, Some(m)).await;
    }
    for plugin in routes.plugins().list() {
        if plugin.trial().is_some() && !manifests.contains_key(&*plugin.name) {
            apply(store, routes, &plugin.name, None).await;
        }
    }
    Ok(())
}

/// This instance's trial counts, for its instance record: per plugin, the shadow's comparisons
/// summed over routes and the canary's calls.
pub(super) fn counts(routes: &RouteSet) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for plugin in routes.plugins().list() {
        let Some(t) = plugin.trial() else { continue };
        let r = t.report();
        let total = r.total();
        out.insert(
            plugin.name.to_string(),
            serde_json::json!({
                "sha256": r.sha256,
                "mode": r.mode,
                "agreed": total.agreed,
                "diverged": total.diverged,
                "trial_failed": total.trial_failed,
                "live_calls": r.live_calls,
                "live_failures": r.live_failures,
                "trial_calls": r.trial_calls,
                "trial_failures": r.trial_failures,
                "rolled_back": r.rolled_back.is_some(),
            }),
        );
    }
    serde_json::Value::Object(out)
}
