//! What a plugin's store holds and what the host gives a plugin: the `log` import, the
//! `request` / `response` imports (functions about the call in progress, so no handle is lent
//! that a guest could forget to drop; written once, for contract 0.2, which later versions
//! delegate to), WASI with nothing in it but clocks and random, `wasi:http` whose outgoing
//! requests go by the plugin's allow list ([`crate::services::outbound`]), the plugin's store
//! ([`crate::services::store`]), stdout/stderr into our log, and the memory limiter.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use http::HeaderMap;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use routerd_routing::{ExternalRequest, ResponseHead};

use crate::contract::v2::router;
use crate::services::outbound::OutboundHooks;
use crate::services::{InstanceServices, PluginStore};

/// The most log lines one call may write, through the `log` import and stdout/stderr
/// together; the rest are dropped (with one warning saying so).
const LOG_LINES_PER_CALL: u32 = 64;

/// The longest log line kept.
const LOG_LINE_MAX: usize = 4096;

/// What is left of a call's log lines; shared by the `log` import and the output streams.
#[derive(Clone, Default)]
pub(crate) struct LogBudget(Arc<AtomicU32>);

impl LogBudget {
    /// A new call starts with the whole budget.
    pub(crate) fn reset(&self) {
        self.0.store(0, Ordering::Relaxed);
    }

    /// Whether one more line may be written.
    fn take(&self, plugin: &str) -> bool {
        let n = self.0.fetch_add(1, Ordering::Relaxed) + 1;
        if n == LOG_LINES_PER_CALL + 1 {
            tracing::warn!(
                plugin,
                "more than {LOG_LINES_PER_CALL} log lines in one call; the rest of this call's lines are dropped"
            );
        }
        n <= LOG_LINES_PER_CALL
    }
}

/// A store's data.
pub struct PluginState {
    pub(crate) plugin: Arc<str>,
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    http: WasiHttpCtx,
    /// Outbound requests: the allow list, and the deadline of the call in progress (a copy of
    /// `deadline_at`, taken at each `wasi:http` call).
    pub(crate) outbound: OutboundHooks,
    /// The plugin's key-value store.
    pub(crate) store: Arc<PluginStore>,
    pub(crate) request: Option<ExternalRequest>,
    pub(crate) response: Option<ResponseHead>,
    pub(crate) memory_cap: usize,
    pub(crate) memory_cap_hit: bool,
    pub(crate) log_lines: LogBudget,
    /// When the call in progress must end; the epoch callback checks it every tick.
    pub(crate) deadline_at: std::time::Instant,
    /// Before this the call does not yield at a tick: a short call that happens to straddle one
    /// keeps its thread instead of queueing behind other tasks, and takes no slot of the cap.
    pub(crate) yield_from: std::time::Instant,
    /// The plugin's concurrency cap, taken by a call that reaches a tick still running.
    pub(crate) cap: Option<Arc<tokio::sync::Semaphore>>,
    /// How long such a call waits for a slot.
    pub(crate) queue: std::time::Duration,
    /// The slot the call in progress holds.
    pub(crate) slot: Option<tokio::sync::OwnedSemaphorePermit>,
    /// Since when the call in progress has been waiting for a slot.
    pub(crate) slot_wait_since: Option<std::time::Instant>,
    /// The wait shared with the future the guest yields to.
    pub(crate) slot_wait: Arc<super::gate::SlotWait>,
    /// The call in progress was stopped because no slot freed within `queue`.
    pub(crate) overloaded: bool,
}

impl PluginState {
    /// Fresh state for a new instance of `plugin`.
    pub fn new(plugin: Arc<str>, memory_cap: usize, services: &InstanceServices) -> Self {
        let mut wasi = wasmtime_wasi::WasiCtxBuilder::new();
        let log_lines = LogBudget::default();
        // No preopened directories, no environment, no arguments, no sockets (the default
        // socket check denies every address), no name lookups.
        wasi.allow_ip_name_lookup(false)
            .allow_tcp(false)
            .allow_udp(false)
            .stdout(LogStream::new(plugin.clone(), "stdout", log_lines.clone()))
            .stderr(LogStream::new(plugin.clone(), "stderr", log_lines.clone()));
        let now = std::time::Instant::now();
        PluginState {
            plugin,
            wasi: wasi.build(),
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
            outbound: OutboundHooks {
                policy: services.outbound.clone(),
                deadline: now,
            },
            store: services.store.clone(),
            request: None,
            response: None,
            memory_cap,
            memory_cap_hit: false,
            log_lines,
            deadline_at: now,
            yield_from: now,
            cap: None,
            queue: std::time::Duration::ZERO,
            slot: None,
            slot_wait_since: None,
            slot_wait: Arc::default(),
            overloaded: false,
        }
    }

    fn req(&self) -> Option<&ExternalRequest> {
        self.request.as_ref()
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for PluginState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        // Every `wasi:http` call comes through here: the hooks see the deadline as it is now
        // (a wait for a concurrency slot moves it).
        self.outbound.deadline = self.deadline_at;
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

impl wasmtime::ResourceLimiter for PluginState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_cap {
            self.memory_cap_hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

fn lossy(v: &http::HeaderValue) -> String {
    String::from_utf8_lossy(v.as_bytes()).into_owned()
}

fn header_list(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), lossy(v)))
        .collect()
}

impl router::plugin::types::Host for PluginState {}

impl router::plugin::request::Host for PluginState {
    fn method(&mut self) -> String {
        self.req()
            .map(|r| r.parts.method.to_string())
            .unwrap_or_default()
    }

    fn scheme(&mut self) -> String {
        self.req().map_or("http", |r| r.scheme).to_owned()
    }

    fn host(&mut self) -> String {
        self.req()
            .and_then(|r| routerd_routing::request_host(&r.parts.uri, &r.parts.headers))
            .unwrap_or_default()
            .to_owned()
    }

    fn path(&mut self) -> String {
        self.req()
            .map(|r| {
                r.path
                    .clone()
                    .unwrap_or_else(|| r.parts.uri.path().to_owned())
            })
            .unwrap_or_default()
    }

    fn query(&mut self) -> String {
        self.req()
            .and_then(|r| r.parts.uri.query())
            .unwrap_or_default()
            .to_owned()
    }

    fn header(&mut self, name: String) -> Option<String> {
        self.req()?.parts.headers.get(name.as_str()).map(lossy)
    }

    fn header_values(&mut self, name: String) -> Vec<String> {
        self.req()
            .map(|r| {
                r.parts
                    .headers
                    .get_all(name.as_str())
                    .iter()
                    .map(lossy)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn headers(&mut self) -> Vec<(String, String)> {
        self.req()
            .map(|r| header_list(&r.parts.headers))
            .unwrap_or_default()
    }

    fn remote_addr(&mut self) -> String {
        self.req().map(|r| r.remote.to_string()).unwrap_or_default()
    }

    fn param(&mut self, name: String) -> Option<String> {
        self.req()?
            .params
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
    }

    fn params(&mut self) -> Vec<(String, String)> {
        self.req().map(|r| r.params.clone()).unwrap_or_default()
    }
}

impl router::plugin::response::Host for PluginState {
    fn status(&mut self) -> u16 {
        self.response.as_ref().map_or(0, |r| r.status)
    }

    fn header(&mut self, name: String) -> Option<String> {
        self.response
            .as_ref()?
            .headers
            .get(name.as_str())
            .map(lossy)
    }

    fn headers(&mut self) -> Vec<(String, String)> {
        self.response
            .as_ref()
            .map(|r| header_list(&r.headers))
            .unwrap_or_default()
    }
}

impl router::plugin::log::Host for PluginState {
    fn write(&mut self, level: router::plugin::log::Level, message: String) {
        use router::plugin::log::Level;
        if !self.log_lines.take(&self.plugin) {
            return;
        }
        let mut message = message;
        if message.len() > LOG_LINE_MAX {
            let mut cut = LOG_LINE_MAX;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        let plugin = &*self.plugin;
        match level {
            Level::Debug => tracing::debug!(plugin, "{message}"),
            Level::Info => tracing::info!(plugin, "{message}"),
            Level::Warn => tracing::warn!(plugin, "{message}"),
            Level::Error => tracing::error!(plugin, "{message}"),
        }
    }
}

/// A plugin's stdout or stderr: complete lines go to our log, tagged with the plugin's name.
#[derive(Clone)]
struct LogStream {
    plugin: Arc<str>,
    stream: &'static str,
    pending: Arc<std::sync::Mutex<Vec<u8>>>,
    budget: LogBudget,
}

impl LogStream {
    fn new(plugin: Arc<str>, stream: &'static str, budget: LogBudget) -> Self {
        LogStream {
            plugin,
            stream,
            pending: Arc::default(),
            budget,
        }
    }

    fn emit(&self, line: &[u8]) {
        if !self.budget.take(&self.plugin) {
            return;
        }
        let line = String::from_utf8_lossy(&line[..line.len().min(LOG_LINE_MAX)]);
        tracing::info!(
            plugin = &*self.plugin,
            stream = self.stream,
            "{}",
            line.trim_end()
        );
    }
}

impl wasmtime_wasi::cli::IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for LogStream {
    fn p2_stream(&self) -> Box<dyn wasmtime_wasi::p2::OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(tokio::io::sink())
    }
}

#[wasmtime_wasi::async_trait]
impl wasmtime_wasi::p2::Pollable for LogStream {
    async fn ready(&mut self) {}
}

impl wasmtime_wasi::p2::OutputStream for LogStream {
    fn write(&mut self, bytes: bytes::Bytes) -> wasmtime_wasi::p2::StreamResult<()> {
        let Ok(mut pending) = self.pending.lock() else {
            return Ok(());
        };
        pending.extend_from_slice(&bytes);
        while let Some(nl) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=nl).collect();
            self.emit(&line);
        }
        if pending.len() > LOG_LINE_MAX {
            let line = std::mem::take(&mut *pending);
            self.emit(&line);
        }
        Ok(())
    }

    fn flush(&mut self) -> wasmtime_wasi::p2::StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> wasmtime_wasi::p2::StreamResult<usize> {
        Ok(LOG_LINE_MAX)
    }
}
