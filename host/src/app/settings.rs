//! routerd's settings: every flag (and its environment variable) of the `routerd` command,
//! parsed by clap into [`Settings`], which is all [`super::run`] needs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use routerd_proxy::access_log::AccessLogFormat;
use routerd_proxy::server::workers::Workers;
use routerd_proxy::upstream::DEFAULT_MAX_HEADERS;

/// A programmable HTTP router: the `routerd` command's flags.
#[derive(Parser, Debug)]
#[command(version, about, args_conflicts_with_subcommands = true)]
pub struct Settings {
    /// A command other than serving.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Route config file (JSON). Watched: valid changes apply at once, invalid ones are logged
    /// and the last good routes keep serving. Without it, an embedded example route set is served.
    #[arg(long, env = "ROUTERD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Proxy listener address.
    #[arg(long, env = "ROUTERD_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Admin API listener address.
    #[arg(long, env = "ROUTERD_ADMIN", default_value = "127.0.0.1:9090")]
    pub admin: SocketAddr,
    /// A second proxy listener, TLS-terminating (TLS 1.2 and 1.3, ALPN h2 and http/1.1); needs
    /// --tls-cert and --tls-key, or --tls-dir.
    #[arg(long, env = "ROUTERD_TLS_LISTEN")]
    pub tls_listen: Option<SocketAddr>,
    /// PEM certificate chain for clients whose SNI name has no pair in --tls-dir.
    #[arg(long, env = "ROUTERD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "ROUTERD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// A directory of `NAME.crt` and `NAME.key` pairs, served to SNI `NAME` (`_.example.com`
    /// for `*.example.com`). Certificates are reloaded when their files change; a bad change
    /// is logged and the last good set keeps serving.
    #[arg(long, env = "ROUTERD_TLS_DIR")]
    pub tls_dir: Option<PathBuf>,
    /// Plugins directory (created if missing).
    #[arg(long, env = "ROUTERD_PLUGINS", default_value = "./plugins")]
    pub plugins: PathBuf,
    /// Data directory (created if missing).
    #[arg(long, env = "ROUTERD_DATA", default_value = "./data")]
    pub data: PathBuf,
    /// Where API routes (and, with etcd, uploaded plugins) are kept: `redb` (a database in the
    /// data directory, the default) or `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]`, shared by
    /// every instance given the same address (the prefix defaults to `/routerd`).
    #[arg(long, env = "ROUTERD_STORE", default_value = "redb")]
    pub store: String,
    /// This instance's name in `GET /api/v1/cluster` (etcd only); defaults to HOSTNAME-ADMINPORT.
    #[arg(long, env = "ROUTERD_INSTANCE_ID")]
    pub instance_id: Option<String>,
    /// Plugin instances alive at once (the pooling allocator's size).
    #[arg(long, env = "ROUTERD_PLUGIN_INSTANCES", default_value_t = 256)]
    pub plugin_instances: u32,
    /// Plugin linear memories alive at once.
    #[arg(long, env = "ROUTERD_PLUGIN_MEMORIES", default_value_t = 512)]
    pub plugin_memories: u32,
    /// The largest memory cap (MiB) a plugin may be given in its settings.
    #[arg(long, env = "ROUTERD_PLUGIN_MAX_MEMORY_MIB", default_value_t = 256)]
    pub plugin_max_memory_mib: usize,
    /// A file holding the admin API's bearer token; mutations need it. Mandatory when the admin
    /// listener is not on a loopback address.
    #[arg(long, env = "ROUTERD_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Seconds between active health checks of the backends.
    #[arg(long, env = "ROUTERD_HEALTH_INTERVAL_SECS", default_value_t = 1)]
    pub health_interval_secs: u64,
    /// How long SIGTERM waits for in-flight requests.
    #[arg(long, env = "ROUTERD_DRAIN_SECS", default_value_t = 30)]
    pub drain_secs: u64,
    /// How long a client may take to send a request head once it started (nginx's
    /// `client_header_timeout`); then the connection is closed.
    #[arg(long, env = "ROUTERD_HEADER_READ_TIMEOUT", default_value = "15s", value_parser = duration)]
    pub header_read_timeout: Duration,
    /// How long a client connection may stay idle between requests, or before its first one
    /// (nginx's `keepalive_timeout`).
    #[arg(long, env = "ROUTERD_KEEPALIVE_TIMEOUT", default_value = "75s", value_parser = duration)]
    pub keepalive_timeout: Duration,
    /// The proxy's threads: `auto` (one per CPU routerd may run on), a count, or `shared`. Each
    /// worker is a single-threaded runtime with its own accept loop on every proxy listener
    /// (the sockets share the port with SO_REUSEPORT; the kernel spreads connections) and its own
    /// backend connections, like nginx's worker processes. `shared` is one work-stealing runtime
    /// with one listener: connections move between threads as load shifts.
    #[arg(long, env = "ROUTERD_WORKERS", default_value = "auto")]
    pub workers: Workers,
    /// Client connections open at once, per listener (all workers together); beyond it, new connections wait in the
    /// listen backlog until one closes.
    #[arg(long, env = "ROUTERD_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// How long to wait for a backend's TCP connection.
    #[arg(long, env = "ROUTERD_BACKEND_CONNECT_TIMEOUT", default_value = "5s", value_parser = duration)]
    pub backend_connect_timeout: Duration,
    /// How long to wait for a backend's response head, connecting included; a route's
    /// `timeout_ms` overrides it.
    #[arg(long, env = "ROUTERD_BACKEND_RESPONSE_TIMEOUT", default_value = "60s", value_parser = duration)]
    pub backend_response_timeout: Duration,
    /// Header fields a client's request head may have (HTTP/1.1 and h2); more are answered 431.
    #[arg(long, env = "ROUTERD_MAX_REQUEST_HEADERS", default_value_t = DEFAULT_MAX_HEADERS)]
    pub max_request_headers: usize,
    /// Header fields a backend's response head may have; more are answered 502 `backend
    /// response head too large`.
    #[arg(long, env = "ROUTERD_MAX_RESPONSE_HEADERS", default_value_t = DEFAULT_MAX_HEADERS)]
    pub max_response_headers: usize,
    /// How long an upgraded connection (WebSocket, ...) may carry no byte either way.
    #[arg(long, env = "ROUTERD_UPGRADE_IDLE_TIMEOUT", default_value = "5m", value_parser = duration)]
    pub upgrade_idle_timeout: Duration,
    /// One line per request: `off`, `json` or `logfmt`.
    #[arg(long, env = "ROUTERD_ACCESS_LOG", default_value = "off")]
    pub access_log: AccessLogFormat,
    /// Where the access log goes (appended); standard output when not given.
    #[arg(long, env = "ROUTERD_ACCESS_LOG_FILE")]
    pub access_log_file: Option<PathBuf>,
    /// Where to send spans: an OTLP/HTTP traces URL, used as given
    /// (`http://127.0.0.1:4318/v1/traces`), protobuf. Without it routerd records no spans and
    /// passes trace headers through untouched.
    #[arg(long, env = "ROUTERD_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// The share of new traces that are sampled, 0 to 1. A request that comes with a
    /// `traceparent` follows its caller's decision.
    #[arg(long, env = "ROUTERD_TRACE_SAMPLE_RATIO", default_value_t = 1.0)]
    pub trace_sample_ratio: f64,
    /// Keep one request head in this many, on average, for dry runs to replay
    /// (`?dry_run=true`); 0: keep none. Kept in memory only, secrets sealed.
    #[arg(long, env = "ROUTERD_SAMPLE_EVERY", default_value_t = 100)]
    pub sample_every: u32,
    /// The most request heads the sample holds (the oldest go first).
    #[arg(long, env = "ROUTERD_SAMPLE_MAX_HEADS", default_value_t = 10_000)]
    pub sample_max_heads: usize,
    /// The most MiB the sample holds.
    #[arg(long, env = "ROUTERD_SAMPLE_MAX_MIB", default_value_t = 16)]
    pub sample_max_mib: usize,
    /// The most bytes of a request body the sample keeps (only bodies a body matcher read).
    #[arg(long, env = "ROUTERD_SAMPLE_MAX_BODY_BYTES", default_value_t = 4096)]
    pub sample_max_body_bytes: usize,
    /// A header whose value the sample keeps only as a keyed hash, besides `Authorization`,
    /// `Proxy-Authorization` and each cookie's value (repeat it for more).
    #[arg(
        long = "sample-secret-header",
        env = "ROUTERD_SAMPLE_SECRET_HEADERS",
        value_delimiter = ','
    )]
    pub sample_secret_headers: Vec<http::HeaderName>,
    /// Keep secrets in the sample in clear (a test bed's choice, never production traffic's).
    #[arg(long, env = "ROUTERD_SAMPLE_SECRETS_IN_CLEAR")]
    pub sample_secrets_in_clear: bool,
    /// The most MiB of compiled plugins kept in the compile cache (`DATA/plugin-cache`); past
    /// it, the least recently used artifacts are removed. 0: no bound.
    #[arg(long, env = "ROUTERD_PLUGIN_CACHE_MAX_MIB", default_value_t = routerd_plugins::engine::DEFAULT_CACHE_BOUND_BYTES >> 20)]
    pub plugin_cache_max_mib: u64,
    /// The most live keys in one plugin's key-value store, unless its settings file says
    /// otherwise (`store.max_keys`).
    #[arg(long, env = "ROUTERD_PLUGIN_STORE_MAX_KEYS", default_value_t = routerd_plugins::services::StoreBounds::default().max_keys)]
    pub plugin_store_max_keys: usize,
    /// The most MiB of keys and values in one plugin's key-value store, unless its settings
    /// file says otherwise (`store.max_bytes`).
    #[arg(long, env = "ROUTERD_PLUGIN_STORE_MAX_MIB", default_value_t = routerd_plugins::services::StoreBounds::default().max_bytes >> 20)]
    pub plugin_store_max_mib: usize,
    /// Where plugins of 1 MiB or more are compiled: `child` (a short-lived routerd process, so
    /// the compiler's memory is returned to the system) or `in-process`. Smaller ones always
    /// compile in routerd.
    #[arg(long, env = "ROUTERD_PLUGIN_COMPILER", default_value = "child")]
    pub plugin_compiler: CompilerPlace,
    /// Internal: compile the component on stdin for engine KIND into the ARTIFACT file, then
    /// exit (the child of `--plugin-compiler child`).
    #[arg(long, hide = true, num_args = 2, value_names = ["KIND", "ARTIFACT"])]
    pub compile_plugin: Option<Vec<String>>,
}

/// What `routerd` does instead of serving.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Validates a route document and the plugins it names without starting; prints every
    /// error with its route, field and reason and exits non-zero if there is one.
    Check {
        /// The route document (JSON) to check.
        #[arg(long, env = "ROUTERD_CONFIG")]
        config: PathBuf,
        /// Where the plugins the routes name are.
        #[arg(long, env = "ROUTERD_PLUGINS", default_value = "./plugins")]
        plugins: PathBuf,
    },
}

/// A duration such as `15s`, `500ms` or `2m`.
pub fn duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => Err("must be more than zero".to_owned()),
        Ok(d) => Ok(d),
        Err(e) => Err(format!("{e} (write it like 15s, 500ms or 2m)")),
    }
}

/// Where plugins are compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompilerPlace {
    /// In a short-lived child process.
    Child,
    /// In routerd itself.
    InProcess,
}
