//! `router:plugin@0.3.x` (`wit/`): a route's args are given once per instance to `configure`
//! under a number the calls then name them by, and a filter says which phases it runs. Its
//! `request`, `response` and `log` imports are 0.2's functions under the new version and answer
//! as 0.2's do; 0.3.1 adds `store`, the plugin's key-value store. A component built for 0.3.0
//! links to these by the component model's semver rule.

#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "plugin",
    exports: { default: async },
    // The shared types are 0.2's, field for field: one set of results for the runtime to read.
    with: { "router:plugin/types@0.3.1": super::v2::router::plugin::types },
});

use super::v2::router::plugin as v2;
use crate::services::StoreError;
use crate::state::PluginState;
use router::plugin::{log, request, response, store};

impl request::Host for PluginState {
    fn method(&mut self) -> String {
        v2::request::Host::method(self)
    }

    fn scheme(&mut self) -> String {
        v2::request::Host::scheme(self)
    }

    fn host(&mut self) -> String {
        v2::request::Host::host(self)
    }

    fn path(&mut self) -> String {
        v2::request::Host::path(self)
    }

    fn query(&mut self) -> String {
        v2::request::Host::query(self)
    }

    fn header(&mut self, name: String) -> Option<String> {
        v2::request::Host::header(self, name)
    }

    fn header_values(&mut self, name: String) -> Vec<String> {
        v2::request::Host::header_values(self, name)
    }

    fn headers(&mut self) -> Vec<(String, String)> {
        v2::request::Host::headers(self)
    }

    fn remote_addr(&mut self) -> String {
        v2::request::Host::remote_addr(self)
    }

    fn param(&mut self, name: String) -> Option<String> {
        v2::request::Host::param(self, name)
    }

    fn params(&mut self) -> Vec<(String, String)> {
        v2::request::Host::params(self)
    }
}

impl response::Host for PluginState {
    fn status(&mut self) -> u16 {
        v2::response::Host::status(self)
    }

    fn header(&mut self, name: String) -> Option<String> {
        v2::response::Host::header(self, name)
    }

    fn headers(&mut self) -> Vec<(String, String)> {
        v2::response::Host::headers(self)
    }
}

impl log::Host for PluginState {
    fn write(&mut self, level: log::Level, message: String) {
        let level = match level {
            log::Level::Debug => v2::log::Level::Debug,
            log::Level::Info => v2::log::Level::Info,
            log::Level::Warn => v2::log::Level::Warn,
            log::Level::Error => v2::log::Level::Error,
        };
        v2::log::Host::write(self, level, message)
    }
}

impl store::Host for PluginState {
    fn get(&mut self, key: String) -> Option<Vec<u8>> {
        self.store.get(&key)
    }

    fn set(&mut self, key: String, value: Vec<u8>, ttl_ms: u64) -> Result<(), store::Error> {
        self.store.set(&key, value, ttl_ms).map_err(store_error)
    }

    fn delete(&mut self, key: String) -> bool {
        self.store.delete(&key)
    }

    fn increment(&mut self, key: String, delta: i64, ttl_ms: u64) -> Result<i64, store::Error> {
        self.store
            .increment(&key, delta, ttl_ms)
            .map_err(store_error)
    }
}

fn store_error(e: StoreError) -> store::Error {
    match e {
        StoreError::Full(why) => store::Error::Full(why),
        StoreError::InvalidKey => store::Error::InvalidKey,
        StoreError::NotANumber => store::Error::NotANumber,
        StoreError::Overflow => store::Error::Overflow,
    }
}
