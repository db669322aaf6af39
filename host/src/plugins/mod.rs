//! WebAssembly plugins: route predicates and filters as sandboxed components.
//!
//! `engine` owns the wasmtime engine (pooling, epochs, compile cache), `state` the host side of
//! the WIT contract, `plugin` one loaded plugin with its warm instances and limits, `registry`
//! the loaded set, and `watcher` the plugins directory.

pub mod engine;
pub mod plugin;
pub mod registry;
pub mod state;
pub mod watcher;

pub use engine::{PluginEngine, PoolLimits};
pub use plugin::{CallFailure, FailurePolicy, InstanceMode, Plugin, PluginSettings};
pub use registry::PluginRegistry;
pub use state::{CallRequest, CallResponse};

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// The engine could not be set up.
    #[error("plugin engine: {0}")]
    Engine(String),
    /// The name has characters other than letters, digits, `-`, `_`.
    #[error("invalid plugin name {0:?}: use letters, digits, '-' and '_'")]
    InvalidName(String),
    /// The file could not be read.
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
    /// The settings file is invalid.
    #[error("invalid plugin settings in {0}: {1}")]
    Settings(String, String),
    /// The bytes are not a valid WebAssembly component.
    #[error("not a valid WebAssembly component: {0}")]
    Invalid(String),
    /// The component imports something we do not provide.
    #[error("cannot link the component (it imports something routerd does not provide): {0}")]
    Link(String),
    /// The component exports neither interface.
    #[error(
        "the component exports neither router:plugin/predicate nor router:plugin/filter (build it for the predicate-plugin, filter-plugin or plugin world)"
    )]
    NoExports,
    /// The component failed to start.
    #[error("the component failed to instantiate: {0}")]
    Instantiate(String),
}

impl PluginError {
    pub(crate) fn engine(e: impl std::fmt::Display) -> Self {
        PluginError::Engine(e.to_string())
    }

    pub(crate) fn invalid(e: wasmtime::Error) -> Self {
        PluginError::Invalid(one_line(&e))
    }
}

/// An error chain on one line: the first line of the outermost and of the root cause (parser
/// errors can carry multi-line dumps).
fn one_line(e: &wasmtime::Error) -> String {
    let first = |s: String| s.lines().next().unwrap_or_default().to_owned();
    let top = first(e.to_string());
    let root = first(e.root_cause().to_string());
    if top == root {
        top
    } else {
        format!("{top}: {root}")
    }
}
