//! The live route set: the current route document and the plugin registry, from which the
//! table is rebuilt and swapped into the proxy whenever either changes. A document change is
//! all-or-nothing; a plugin change excludes (and later restores) the routes that use it.

use std::sync::{Arc, Mutex};

use crate::config::{ConfigFile, RouteSetError};
use crate::plugins::PluginRegistry;
use crate::proxy::Proxy;
use crate::routing::{BuildMode, RouteTable};

/// See the module docs.
pub struct RouteSet {
    config: Mutex<ConfigFile>,
    plugins: Arc<PluginRegistry>,
    proxy: Arc<Proxy>,
}

impl RouteSet {
    /// Compiles `config` strictly and starts serving it.
    pub fn new(config: ConfigFile, plugins: Arc<PluginRegistry>) -> Result<Self, RouteSetError> {
        let table = RouteTable::build_with(&config, &*plugins, BuildMode::Strict)?;
        Ok(RouteSet {
            config: Mutex::new(config),
            proxy: Arc::new(Proxy::new(table)),
            plugins,
        })
    }

    /// The proxy serving this route set.
    pub fn proxy(&self) -> &Arc<Proxy> {
        &self.proxy
    }

    /// The plugin registry.
    pub fn plugins(&self) -> &Arc<PluginRegistry> {
        &self.plugins
    }

    /// Replaces the document if every route in it is valid; otherwise nothing changes.
    pub fn apply(&self, config: ConfigFile) -> Result<(), RouteSetError> {
        let mut current = self.config.lock().unwrap_or_else(|p| p.into_inner());
        let table = RouteTable::build_with(&config, &*self.plugins, BuildMode::Strict)?;
        self.proxy.swap_table(table);
        *current = config;
        Ok(())
    }

    /// Rebuilds after plugins changed: routes whose plugin is gone are excluded, and routes
    /// whose plugin is back return.
    pub fn plugins_changed(&self) {
        let current = self.config.lock().unwrap_or_else(|p| p.into_inner());
        match RouteTable::build_with(&current, &*self.plugins, BuildMode::ExcludeMissingPlugins) {
            Ok(table) => {
                for (rule, reason) in table.excluded() {
                    tracing::warn!(route = %rule.name, "route excluded: {reason}");
                }
                self.proxy.swap_table(table);
            }
            Err(e) => tracing::warn!(
                "routes not rebuilt after a plugin change, the previous table keeps serving: {e}"
            ),
        }
    }
}
