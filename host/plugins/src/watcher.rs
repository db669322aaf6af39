//! Watching the plugins directory: a dropped `x.wasm` is loaded, a replaced one reloaded (calls
//! in flight finish on the old version), a deleted one unloaded. Changes are applied once the
//! directory has been quiet for a moment, so a file still being written is not loaded; if it is
//! caught half-written anyway, the load fails, the previous version keeps serving, and the
//! final write triggers another load.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::registry::PluginRegistry;

/// Quiet time before a change is applied.
pub const SETTLE: Duration = Duration::from_millis(200);

/// Starts watching the registry's directory; the returned watcher must be kept alive.
pub fn watch(registry: Arc<PluginRegistry>) -> notify::Result<notify::RecommendedWatcher> {
    let dir = registry.dir().to_path_buf();
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if event.kind.is_access() {
            return;
        }
        for path in &event.paths {
            if let Some(stem) = plugin_stem(path) {
                let _ = tx.send(stem);
            }
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut stems = BTreeSet::from([first]);
            // Debounce: collect until the directory is quiet.
            while let Ok(Some(stem)) = tokio::time::timeout(SETTLE, rx.recv()).await {
                stems.insert(stem);
            }
            // Compiling takes a while: keep it off the runtime's worker threads.
            let (registry, dir) = (registry.clone(), dir.clone());
            let applied = tokio::task::spawn_blocking(move || {
                for stem in stems {
                    apply(&registry, &dir, &stem);
                }
            });
            if let Err(e) = applied.await {
                tracing::warn!(error = %e, "applying a plugin change failed");
            }
        }
    });
    Ok(watcher)
}

fn plugin_stem(path: &Path) -> Option<String> {
    let ext = path.extension()?.to_str()?;
    if ext != "wasm" && ext != "json" {
        return None;
    }
    let stem = path.file_stem()?.to_str()?;
    super::registry::valid_name(stem).then(|| stem.to_owned())
}

fn apply(registry: &PluginRegistry, dir: &Path, stem: &str) {
    let wasm = dir.join(format!("{stem}.wasm"));
    if wasm.exists() {
        if let Err(e) = registry.load_file(&wasm) {
            let keeping = if registry.get(stem).is_some() {
                "; the previous version keeps serving"
            } else {
                ""
            };
            let reason = super::joined_lines(&e.to_string());
            tracing::warn!(plugin = stem, "plugin not loaded: {reason}{keeping}");
        }
    } else {
        registry.unload(stem);
    }
}
