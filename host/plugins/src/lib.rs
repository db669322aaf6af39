//! WebAssembly plugins: route predicates and filters as sandboxed components.
//!
//! `engine` owns the wasmtime engines (pooling, epochs, compiling, compile cache, instance
//! eviction), `contract` the versions of the WIT contract side by side, `external` makes a
//! plugin routing's external predicate and filter, `state` the host side of the contract, `services` the store and outbound HTTP plugins may use, `settings` a plugin's `NAME.json`, `gate` the
//! concurrency cap, circuit breaker and counters in front of every call, `journal` the record
//! of a traced request's calls, `plugin` one loaded
//! plugin with its warm instances and calls, `registry` the loaded set, `trial` a new version tried beside the live one (shadow or
//! canary) before it replaces it, and `watcher` the plugins directory.

mod clock;
pub mod contract;
pub mod counters;
pub mod engine;
pub mod external;
pub mod gate;
pub mod journal;
pub mod plugin;
pub mod producers;
pub mod registry;
pub mod services;
pub mod settings;
pub mod state;
pub mod trial;
pub mod watcher;

pub use counters::PluginCounters;
pub use engine::{ChildCompiler, EngineKind, PluginEngine, PoolLimits};
pub use gate::{Phase, PluginStats};
pub use plugin::{CallFailure, Plugin};
pub use registry::PluginRegistry;
pub use settings::{FailurePolicy, InstanceMode, PluginSettings};

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// The engine could not be set up (the cause is kept; the message shows its whole chain
    /// on one line).
    #[error("plugin engine: {}", one_line(.0))]
    Engine(#[source] wasmtime::Error),
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
    /// The component was built for a version of the contract routerd does not speak.
    #[error(
        "the component was built for {found} ({interface}); routerd speaks router:plugin@{speaks} (rebuild it against routerd's wit/ or SDK)",
        speaks = engine::CONTRACT_VERSIONS.iter().map(|v| format!("{v}.x")).collect::<Vec<_>>().join(", ")
    )]
    Contract {
        /// The interface that names the version.
        interface: String,
        /// The version it was built for.
        found: String,
    },
    /// The component exports neither interface.
    #[error(
        "the component exports neither router:plugin/predicate nor router:plugin/filter (build it for the predicate-plugin, filter-plugin or plugin world)"
    )]
    NoExports,
    /// The component failed to start.
    #[error("the component failed to instantiate: {0}")]
    Instantiate(String),
    /// A trial version was given for a name with no live version.
    #[error("no plugin {0:?} is loaded: a shadow or canary tries a new version of a loaded plugin")]
    NotLoaded(String),
    /// A trial version exports something else than the live one.
    #[error(
        "plugin {0:?} is a {1}; the new version is a {2}: a trial version must be the same kind"
    )]
    KindChanged(String, &'static str, &'static str),
}

impl PluginError {
    /// The engine error with every cause, on one line (wasmtime's own `to_string` shows only
    /// the outermost).
    pub(crate) fn engine(e: impl Into<wasmtime::Error>) -> Self {
        PluginError::Engine(e.into())
    }

    pub(crate) fn invalid(e: wasmtime::Error) -> Self {
        PluginError::Invalid(one_line(&e))
    }
}

/// `text`'s non-empty lines, trimmed, joined by spaces.
pub(crate) fn joined_lines(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// An error chain on one line: every cause, each with its lines joined, so a parser's
/// multi-line message ("expected=[...]") keeps its substance. Long chains are cut at 1,000
/// characters.
pub(crate) fn one_line(e: &wasmtime::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = joined_lines(&cause.to_string());
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    if out.len() > 1000 {
        let mut cut = 1000;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str(" ...");
    }
    out
}
