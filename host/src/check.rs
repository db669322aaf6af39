//! `routerd check`: validates a route document, and the plugins it names, without serving
//! anything (like `nginx -t`). Each plugin a route names is loaded from the plugins directory
//! when the table asks for it, so plugins nothing names are never compiled, and a plugin that
//! fails to load is reported with its own reason, not only as a missing name.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use routerd_plugins::{Plugin, PluginEngine, PluginError, PluginRegistry, PoolLimits};
use routerd_routing::config::{self, ConfigError, RouteError};
use routerd_routing::table::BuildMode;
use routerd_routing::{Lookup, PluginSource, RouteTable};

/// What a check found.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// Routes in the document.
    pub routes: usize,
    /// Plugins the routes name that loaded, with their sha256.
    pub plugins: BTreeMap<String, String>,
    /// Plugins the routes name that did not load, with why.
    pub plugin_errors: BTreeMap<String, String>,
    /// Everything wrong with the routes.
    pub route_errors: Vec<RouteError>,
}

impl CheckReport {
    /// Whether the document would be accepted.
    pub fn is_ok(&self) -> bool {
        self.route_errors.is_empty() && self.plugin_errors.is_empty()
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, reason) in &self.plugin_errors {
            writeln!(f, "error: plugin {name:?}: {}", one_line(reason))?;
        }
        for e in &self.route_errors {
            writeln!(
                f,
                "error: route {:?}, field {}: {} [{}]",
                e.route,
                e.field,
                one_line(&e.reason),
                e.code
            )?;
        }
        let errors = self.plugin_errors.len() + self.route_errors.len();
        if errors == 0 {
            write!(
                f,
                "ok: {} routes, {} plugins ({})",
                self.routes,
                self.plugins.len(),
                self.plugins
                    .iter()
                    .map(|(n, sha)| format!("{n} sha256:{}", &sha[..sha.len().min(12)]))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            write!(f, "{errors} errors in {} routes", self.routes)
        }
    }
}

/// `text` on one line (a regex error draws a caret under the pattern; wasmparser lists bytes),
/// so each error is one line a script can grep.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Why a check could not even look at the routes.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The file is unreadable or not a route document.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The plugin engine could not start.
    #[error("cannot start the plugin engine: {0}")]
    Engine(#[source] PluginError),
}

/// Checks the route document in `config_path` against the plugins in `plugins_dir`.
pub fn check(config_path: &Path, plugins_dir: &Path) -> Result<CheckReport, CheckError> {
    let doc = config::load_file(config_path)?;
    let engine = PluginEngine::new(&PoolLimits::default(), None).map_err(CheckError::Engine)?;
    let source = OnDemand {
        registry: PluginRegistry::new(engine, plugins_dir),
        dir: plugins_dir.to_path_buf(),
        failed: Mutex::default(),
    };
    let route_errors = match RouteTable::build_with(&doc, &source, BuildMode::Strict) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.0,
    };
    let plugin_errors = source.failed.lock().map(|m| m.clone()).unwrap_or_default();
    let plugins = source
        .registry
        .list()
        .iter()
        .map(|p| (p.name.to_string(), p.sha256.clone()))
        .collect();
    Ok(CheckReport {
        routes: doc.routes.len(),
        plugins,
        plugin_errors,
        route_errors,
    })
}

/// Loads a plugin from the directory the first time a route asks for it.
struct OnDemand {
    registry: PluginRegistry,
    dir: PathBuf,
    failed: Mutex<BTreeMap<String, String>>,
}

impl OnDemand {
    fn ensure(&self, name: &str) {
        if self.registry.get(name).is_some() {
            return;
        }
        let Ok(mut failed) = self.failed.lock() else {
            return;
        };
        if failed.contains_key(name) || !routerd_plugins::registry::valid_name(name) {
            return;
        }
        let path = self.dir.join(format!("{name}.wasm"));
        let reason = if path.is_file() {
            match self.registry.load_file(&path) {
                Ok(_) => return,
                Err(e) => e.to_string(),
            }
        } else {
            format!("no {} in the plugins directory", path.display())
        };
        failed.insert(name.to_owned(), reason);
    }
}

impl PluginSource<Plugin> for OnDemand {
    fn predicate(&self, name: &str) -> Lookup<Arc<Plugin>> {
        self.ensure(name);
        self.registry.predicate(name)
    }

    fn filter(&self, name: &str) -> Lookup<Arc<Plugin>> {
        self.ensure(name);
        self.registry.filter(name)
    }
}
