//! The plugin registry: name -> loaded plugin. Loading validates and compiles before anything
//! is replaced, so a bad file never displaces a working plugin; every change bumps a generation
//! that the route set watches to rebuild its table.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::PluginError;
use super::engine::PluginEngine;
use super::plugin::Plugin;
use super::services::{AllowList, HostServices, Kept, OutboundPolicy, StoreBounds};
use super::settings::PluginSettings;
use super::trial::{Trial, TrialMode};

/// Checks a plugin name: letters, digits, `-`, `_`; no path separators or dots.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Loaded plugins by name.
pub struct PluginRegistry {
    engine: Arc<PluginEngine>,
    dir: PathBuf,
    plugins: RwLock<HashMap<String, Arc<Plugin>>>,
    generation: watch::Sender<u64>,
    /// Serialises [`PluginRegistry::install`], so the loaded plugin and the file on disk
    /// always come from the same upload.
    installing: Mutex<()>,
    uploads: AtomicU64,
    services: HostServices,
}

/// Why an uploaded plugin was not installed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// It did not load (nothing changed).
    #[error(transparent)]
    Load(#[from] PluginError),
    /// It loaded but could not be written to the plugins directory (the previous file, if
    /// any, is still there).
    #[error("cannot write {path}: {source}")]
    Write {
        /// The plugin file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl PluginRegistry {
    /// An empty registry for plugins in `dir`.
    pub fn new(engine: Arc<PluginEngine>, dir: &Path) -> Self {
        PluginRegistry {
            engine,
            dir: dir.to_path_buf(),
            plugins: RwLock::default(),
            generation: watch::channel(0).0,
            installing: Mutex::new(()),
            uploads: AtomicU64::new(0),
            services: HostServices::default(),
        }
    }

    /// The store bounds for plugins whose settings do not set them.
    pub fn with_store_defaults(mut self, bounds: StoreBounds) -> Self {
        self.services = HostServices::new(bounds);
        self
    }

    /// The plugins directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Loads every `*.wasm` in the directory, on every core at once (compiling is most of a
    /// cold start); failures are logged and skipped.
    pub fn load_dir(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
            .collect();
        paths.sort();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(paths.len());
        let load_next = || {
            while let Some(path) =
                paths.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
            {
                self.load_logged(path);
            }
        };
        std::thread::scope(|s| {
            for _ in 1..workers {
                s.spawn(load_next);
            }
            load_next();
        });
    }

    fn load_logged(&self, path: &Path) {
        if let Err(e) = self.load_file(path) {
            let plugin = path.file_stem().map(|s| s.to_string_lossy());
            let reason = super::joined_lines(&e.to_string());
            tracing::warn!(plugin = plugin.as_deref().unwrap_or(""), path = %path.display(), "plugin not loaded: {reason}");
        }
    }

    /// Loads (or reloads) the plugin in `path`, named after the file stem, with settings from
    /// `NAME.json` beside it. Unchanged bytes and settings keep the loaded plugin.
    pub fn load_file(&self, path: &Path) -> Result<Arc<Plugin>, PluginError> {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .filter(|n| valid_name(n))
            .ok_or_else(|| PluginError::InvalidName(path.display().to_string()))?
            .to_owned();
        let bytes =
            std::fs::read(path).map_err(|e| PluginError::Read(path.display().to_string(), e))?;
        let settings = self.read_settings(&name)?;
        self.load_bytes(&name, &bytes, settings)
    }

    /// Loads `bytes` as plugin `name` with the settings in `NAME.json` (read the same way the
    /// watcher reads them: a malformed file is an error), then writes `NAME.wasm` so a restart
    /// loads the same plugin. The watcher sees the same bytes and keeps the loaded plugin.
    pub fn install(&self, name: &str, bytes: &[u8]) -> Result<Arc<Plugin>, InstallError> {
        let _one_at_a_time = self.installing.lock().unwrap_or_else(|p| p.into_inner());
        let settings = self.read_settings(name)?;
        let path = self.dir.join(format!("{name}.wasm"));
        let write_error = |source| InstallError::Write {
            path: path.display().to_string(),
            source,
        };
        // Written first (a full disk refuses the upload before anything changes) under a
        // unique temp name, never a file another writer is still filling; renamed in last.
        let tmp = self.dir.join(format!(
            ".{name}.{}.{}.upload",
            std::process::id(),
            self.uploads.fetch_add(1, Ordering::Relaxed)
        ));
        if let Err(e) = std::fs::write(&tmp, bytes) {
            let _ = std::fs::remove_file(&tmp);
            return Err(write_error(e));
        }
        let previous = self.get(name);
        let plugin = match self.load_bytes(name, bytes, settings) {
            Ok(p) => p,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e.into());
            }
        };
        if let Err(e) = std::fs::rename(&tmp, &path) {
            let _ = std::fs::remove_file(&tmp);
            // What is served must stay what a restart loads: put the previous plugin back.
            if let Ok(mut map) = self.plugins.write() {
                match previous {
                    Some(p) => map.insert(name.to_owned(), p),
                    None => map.remove(name),
                };
            }
            self.generation.send_modify(|g| *g += 1);
            return Err(write_error(e));
        }
        Ok(plugin)
    }

    /// Plugin `name`'s settings file (`NAME.json`) as written, if there is one.
    pub fn settings_document(&self, name: &str) -> Result<Option<serde_json::Value>, PluginError> {
        let path = self.dir.join(format!("{name}.json"));
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| PluginError::Settings(path.display().to_string(), e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(PluginError::Read(path.display().to_string(), e)),
        }
    }

    /// Writes plugin `name`'s settings file (by rename, so the watcher never reads half of
    /// it), unless it already holds `doc`.
    pub fn write_settings_document(
        &self,
        name: &str,
        doc: &serde_json::Value,
    ) -> Result<(), InstallError> {
        if self.settings_document(name).ok().flatten().as_ref() == Some(doc) {
            return Ok(());
        }
        let path = self.dir.join(format!("{name}.json"));
        let tmp = self
            .dir
            .join(format!(".{name}.{}.settings", std::process::id()));
        let write_error = |source| InstallError::Write {
            path: path.display().to_string(),
            source,
        };
        let text = serde_json::to_vec_pretty(doc).map_err(|e| write_error(e.into()))?;
        std::fs::write(&tmp, text).map_err(write_error)?;
        std::fs::rename(&tmp, &path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            write_error(e)
        })
    }

    fn read_settings(&self, name: &str) -> Result<PluginSettings, PluginError> {
        let path = self.dir.join(format!("{name}.json"));
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| PluginError::Settings(path.display().to_string(), e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(PluginSettings::default()),
            Err(e) => Err(PluginError::Read(path.display().to_string(), e)),
        }
    }

    /// Compiles, links and test-instantiates `bytes` as plugin `name`, then swaps it in.
    pub fn load_bytes(
        &self,
        name: &str,
        bytes: &[u8],
        settings: PluginSettings,
    ) -> Result<Arc<Plugin>, PluginError> {
        if !valid_name(name) {
            return Err(PluginError::InvalidName(name.to_owned()));
        }
        let sha256 = hex::encode(Sha256::digest(bytes));
        if let Some(current) = self.get(name)
            && current.sha256 == sha256
            && current.settings == settings
        {
            return Ok(current);
        }
        // A new version keeps the name's counters and store.
        let kept = self.get(name).map(|previous| previous.kept());
        let plugin = self.build(name, bytes, sha256, settings, kept, false)?;
        if let Ok(mut map) = self.plugins.write() {
            map.insert(name.to_owned(), plugin.clone());
        }
        self.generation.send_modify(|g| *g += 1);
        Ok(plugin)
    }

    /// Compiles, links and test-instantiates `bytes` as a version of plugin `name` with what
    /// its name keeps (fresh counters and store when `kept` is `None`), without serving it;
    /// logged unless it is a `replica` made for a dry run.
    fn build(
        &self,
        name: &str,
        bytes: &[u8],
        sha256: String,
        settings: PluginSettings,
        kept: Option<Kept>,
        replica: bool,
    ) -> Result<Arc<Plugin>, PluginError> {
        let allow = AllowList::parse(&settings.http.allow)
            .map_err(|e| PluginError::Settings(format!("{name}.json"), e))?;
        let bounds = settings.store.bounds(self.services.store_defaults);
        let compiled = self.engine.compile(&sha256, bytes)?;
        let compiled_by = compiled.by;
        let took = compiled.took;
        let kept = kept.unwrap_or_else(|| Kept::new(bounds));
        let outbound = Arc::new(OutboundPolicy::new(
            name.into(),
            allow,
            settings.http.max_response_bytes,
            self.services.client(),
            kept.outbound.clone(),
        ));
        let mut plugin = Plugin::new(
            self.engine.clone(),
            name,
            sha256,
            bytes.len(),
            compiled,
            settings,
            kept,
            outbound,
        )?;
        plugin.producers = super::producers::read(bytes);
        // Only now that it replaces the previous version do its bounds apply to the store.
        plugin.store().set_bounds(bounds);
        let plugin = Arc::new(plugin);
        // A replica for a dry run is not news; a version that may serve is.
        if replica {
            return Ok(plugin);
        }
        tracing::info!(
            plugin = name,
            kind = plugin.kind.as_str(),
            sha256 = %plugin.sha256,
            size = plugin.size,
            cache = if plugin.from_cache { "hit" } else { "miss" },
            compiled_by = compiled_by.as_str(),
            engine = plugin.engine_kind.as_str(),
            compile_ms = took.as_millis() as u64,
            instantiate_ms = plugin.instantiate_time.as_millis() as u64,
            "plugin loaded"
        );
        Ok(plugin)
    }

    /// Loads `bytes` as a trial version of loaded plugin `name` (shadow or canary), beside the
    /// live one and replacing any earlier trial; `args_in_use` are the args its routes give it,
    /// prepared now. The trial version gets counters and a store of its own. Blocks: call it
    /// off the proxy's workers.
    pub fn try_version(
        &self,
        name: &str,
        bytes: &[u8],
        mode: TrialMode,
        args_in_use: &[Vec<String>],
    ) -> Result<Arc<Trial>, PluginError> {
        let live = self
            .get(name)
            .ok_or_else(|| PluginError::NotLoaded(name.to_owned()))?;
        let sha256 = hex::encode(Sha256::digest(bytes));
        let plugin = self.build(name, bytes, sha256, live.settings.clone(), None, false)?;
        if plugin.kind != live.kind {
            return Err(PluginError::KindChanged(
                name.to_owned(),
                live.kind.as_str(),
                plugin.kind.as_str(),
            ));
        }
        let trial = Trial::start(plugin, Arc::from(bytes), mode, args_in_use);
        live.set_trial(Some(trial.clone()));
        tracing::info!(plugin = name, sha256 = %trial.plugin.sha256, mode = ?trial.mode, "trial version loaded");
        Ok(trial)
    }

    /// Compiles `bytes` as a version of plugin `name` (its settings file's settings) with
    /// counters of its own and a copy of the live version's store, without serving it: what
    /// a dry run of an upload decides with. Blocks.
    pub fn candidate(&self, name: &str, bytes: &[u8]) -> Result<Arc<Plugin>, PluginError> {
        if !valid_name(name) {
            return Err(PluginError::InvalidName(name.to_owned()));
        }
        let settings = self.read_settings(name)?;
        let sha256 = hex::encode(Sha256::digest(bytes));
        // It reads what the live version's store holds now; its writes go nowhere.
        let kept = self.get(name).map(|live| Kept {
            store: Arc::new(live.store().snapshot()),
            ..Kept::new(Default::default())
        });
        self.build(name, bytes, sha256, settings, kept, true)
    }

    /// A replica of loaded plugin `name`: the same bytes (read back from the plugins
    /// directory, checked against the loaded version's SHA-256) and settings, with counters of
    /// its own and a copy of its store, so calls to it change nothing the live version sees.
    /// What a dry run replays requests with. Blocks.
    pub fn replica(&self, name: &str) -> Result<Arc<Plugin>, PluginError> {
        let live = self
            .get(name)
            .ok_or_else(|| PluginError::NotLoaded(name.to_owned()))?;
        let path = self.dir.join(format!("{name}.wasm"));
        let bytes =
            std::fs::read(&path).map_err(|e| PluginError::Read(path.display().to_string(), e))?;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        if sha256 != live.sha256 {
            return Err(PluginError::Invalid(format!(
                "{} changed since plugin {name:?} was loaded",
                path.display()
            )));
        }
        let kept = Kept {
            store: Arc::new(live.store().snapshot()),
            ..Kept::new(Default::default())
        };
        self.build(
            name,
            &bytes,
            sha256,
            live.settings.clone(),
            Some(kept),
            true,
        )
    }

    /// Drops plugin `name`'s trial version; the one dropped.
    pub fn discard_trial(&self, name: &str) -> Option<Arc<Trial>> {
        let dropped = self.get(name)?.set_trial(None);
        if dropped.is_some() {
            tracing::info!(plugin = name, "trial version discarded");
        }
        dropped
    }

    /// Unloads `name`; calls in flight finish on it.
    pub fn unload(&self, name: &str) -> Option<Arc<Plugin>> {
        let removed = self.plugins.write().ok()?.remove(name);
        if removed.is_some() {
            tracing::info!(plugin = name, "plugin unloaded");
            self.generation.send_modify(|g| *g += 1);
        }
        removed
    }

    /// The plugin called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Plugin>> {
        self.plugins.read().ok()?.get(name).cloned()
    }

    /// All plugins, by name.
    pub fn list(&self) -> Vec<Arc<Plugin>> {
        let mut v: Vec<_> = self
            .plugins
            .read()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// A receiver that changes whenever a plugin is loaded, replaced or unloaded.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }
}
