//! Where spans go: an OTLP HTTP/protobuf exporter behind the SDK's batch processor (its own
//! thread, a bounded queue that drops when full), sending through a hyper client on the
//! control runtime. The exporter's HTTP client is routerd's, not a second HTTP stack.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, Sampler, SdkTracerProvider, SpanData, SpanExporter, SpanProcessor,
};

use super::Tracing;
use crate::metrics::TraceStats;

/// How long one export may take, connection included.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// The most bytes of a collector's answer read (it is only checked for its status).
const ANSWER_LIMIT: usize = 64 * 1024;

/// What tracing is told: where to send spans and which share of new traces to sample.
#[derive(Debug, Clone)]
pub struct TracingOptions {
    /// The OTLP/HTTP traces URL, used as given (`http://collector:4318/v1/traces`).
    pub endpoint: String,
    /// The share of traces started here that are sampled (0 to 1); a request that arrives
    /// with a `traceparent` follows its caller's decision.
    pub ratio: f64,
}

/// Why tracing could not start.
#[derive(Debug, thiserror::Error)]
pub enum TracingError {
    /// The sample ratio is out of range.
    #[error("--trace-sample-ratio {0}: must be between 0 and 1")]
    Ratio(f64),
    /// The endpoint is not a URL the exporter can send to.
    #[error("--otlp-endpoint {endpoint:?}: {reason}")]
    Endpoint {
        /// The endpoint as given.
        endpoint: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// The TLS settings for an https endpoint could not be built.
    #[error("--otlp-endpoint: cannot set up TLS: {0}")]
    Tls(#[from] rustls::Error),
}

/// The export pipeline; flush it with [`shutdown`](Self::shutdown) before the process ends.
pub struct TraceExport {
    provider: SdkTracerProvider,
}

impl TraceExport {
    /// Starts exporting; the tracing the proxy records spans with. `runtime` runs the
    /// exporter's connections.
    pub fn start(
        options: &TracingOptions,
        runtime: tokio::runtime::Handle,
        stats: TraceStats,
    ) -> Result<(TraceExport, Tracing), TracingError> {
        if !(0.0..=1.0).contains(&options.ratio) {
            return Err(TracingError::Ratio(options.ratio));
        }
        let endpoint_error = |reason: String| TracingError::Endpoint {
            endpoint: options.endpoint.clone(),
            reason,
        };
        let uri: http::Uri = options
            .endpoint
            .parse()
            .map_err(|e| endpoint_error(format!("not a URL: {e}")))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(endpoint_error(
                "must be an http:// or https:// URL with a host".into(),
            ));
        }
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(options.endpoint.clone())
            .with_timeout(EXPORT_TIMEOUT)
            .with_http_client(ExportClient::new(runtime)?)
            .build()
            .map_err(|e| endpoint_error(e.to_string()))?;
        let mut resource = Resource::builder();
        // OTEL_SERVICE_NAME, when set, names the service (the SDK reads it).
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name("routerd");
        }
        let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(options.ratio)));
        let exporter = CountedExporter {
            inner: exporter,
            stats: stats.clone(),
        };
        let batch = CountedQueue {
            inner: BatchSpanProcessor::builder(exporter).build(),
            ended: stats.ended,
        };
        let provider = SdkTracerProvider::builder()
            .with_span_processor(batch)
            .with_sampler(sampler)
            .with_resource(resource.build())
            .build();
        let tracing = Tracing::new(provider.tracer("routerd"));
        Ok((TraceExport { provider }, tracing))
    }

    /// Sends what is queued and stops the exporter (blocks up to the export timeout).
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!("tracing: the last spans may not have been exported: {e}");
        }
    }
}

/// The exporter's HTTP client: requests run on `runtime` (the batch processor exports from a
/// thread of its own, which has no reactor).
#[derive(Clone)]
struct ExportClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for ExportClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExportClient")
    }
}

impl ExportClient {
    fn new(runtime: tokio::runtime::Handle) -> Result<ExportClient, rustls::Error> {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let tls = crate::clients::tls_config(None, provider)?;
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        http.set_connect_timeout(Some(EXPORT_TIMEOUT));
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(2)
            .build(connector);
        Ok(ExportClient { client, runtime })
    }
}

#[async_trait::async_trait]
impl HttpClient for ExportClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let exchange = async move {
            let resp = client.request(request.map(Full::new)).await?;
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, ANSWER_LIMIT).collect().await?.to_bytes();
            Ok::<_, HttpError>(Response::from_parts(parts, body))
        };
        // The timer is made inside the task: this thread has no runtime to register it with.
        let sent = self
            .runtime
            .spawn(async move { tokio::time::timeout(EXPORT_TIMEOUT, exchange).await });
        match sent.await? {
            Ok(answer) => answer,
            Err(_) => Err(format!("no answer within {EXPORT_TIMEOUT:?}").into()),
        }
    }
}

/// The export, counting the spans the collector took and those it did not.
#[derive(Debug)]
struct CountedExporter<E> {
    inner: E,
    stats: TraceStats,
}

impl<E: SpanExporter> SpanExporter for CountedExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len() as u64;
        let result = self.inner.export(batch).await;
        match &result {
            Ok(()) => {
                self.stats.exported.inc_by(spans);
            }
            Err(e) => {
                self.stats.failed.inc_by(spans);
                tracing::warn!("tracing: an export of {spans} spans failed: {e}");
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The batch queue, counting the spans that end (so what it dropped shows in `/metrics`).
#[derive(Debug)]
struct CountedQueue {
    inner: BatchSpanProcessor,
    ended: prometheus_client::metrics::counter::Counter,
}

impl SpanProcessor for CountedQueue {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        self.ended.inc();
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
