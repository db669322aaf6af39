//! Black-box tests of request tracing through a real `routerd` process: an OTLP/HTTP receiver
//! in the test decodes the protobuf routerd exports, and a real echo backend shows the trace
//! context routerd sends on. The spans of one request form one tree under the caller's span:
//! the request, its route decision (with the plugin predicate under it), the plugin filter and
//! the backend try, whose span is the parent the backend is told about.
#![allow(clippy::unwrap_used)]

mod harness;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use harness::*;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;
use serde_json::{Value, json};

const CALLER_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const CALLER_SPAN: &str = "b7ad6b7169203331";

/// An OTLP/HTTP traces receiver on 127.0.0.1: every span of every export, decoded.
struct Receiver {
    url: String,
    spans: Arc<Mutex<Vec<Span>>>,
    /// Resource attributes of the exports (`service.name`, ...).
    services: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
        let services: Arc<Mutex<Vec<String>>> = Arc::default();
        let (s, n) = (spans.clone(), services.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (s, n) = (s.clone(), n.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (s, n) = (s.clone(), n.clone());
                        async move {
                            let ok = req.uri().path() == "/v1/traces"
                                && req.headers().get("content-type").map(|v| v.as_bytes())
                                    == Some(b"application/x-protobuf");
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let status = match ExportTraceServiceRequest::decode(body) {
                                Ok(export) if ok => {
                                    for rs in export.resource_spans {
                                        for attr in
                                            rs.resource.iter().flat_map(|r| r.attributes.iter())
                                        {
                                            if attr.key == "service.name" {
                                                n.lock().unwrap().push(text(&attr.value));
                                            }
                                        }
                                        for ss in rs.scope_spans {
                                            s.lock().unwrap().extend(ss.spans);
                                        }
                                    }
                                    200
                                }
                                _ => 400,
                            };
                            Ok::<_, Infallible>(
                                hyper::Response::builder()
                                    .status(status)
                                    .header("content-type", "application/x-protobuf")
                                    .body(Full::new(Bytes::new()))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Receiver {
            url,
            spans,
            services,
            task,
        }
    }

    /// The spans of trace `trace` (hex) received so far.
    fn trace(&self, trace: &str) -> Vec<Span> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| hex(&s.trace_id) == trace)
            .cloned()
            .collect()
    }

    /// Waits (bounded) until trace `trace` has a span named `name`; its spans.
    async fn wait_for(&self, trace: &str, name: &str) -> Vec<Span> {
        let found = wait_until(
            async || self.trace(trace).iter().any(|s| s.name == name),
            Duration::from_secs(15),
        )
        .await;
        let spans = self.trace(trace);
        assert!(
            found,
            "no span {name:?} in trace {trace}: {:#?}",
            names(&spans)
        );
        spans
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(value: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        other => format!("{other:?}"),
    }
}

fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .map(|a| text(&a.value))
}

fn names(spans: &[Span]) -> Vec<(String, String, String)> {
    spans
        .iter()
        .map(|s| (s.name.clone(), hex(&s.span_id), hex(&s.parent_span_id)))
        .collect()
}

fn one<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    let found: Vec<&Span> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(found.len(), 1, "one span {name:?} in {:#?}", names(spans));
    found[0]
}

/// The `traceparent` the backend received: (version, trace id, parent id, flags).
fn received_traceparent(echo: &Value) -> (String, String, String, String) {
    let value = echo["headers"]["traceparent"][0]
        .as_str()
        .unwrap_or_else(|| panic!("the backend got no traceparent: {echo}"));
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "traceparent {value:?}");
    (
        parts[0].to_owned(),
        parts[1].to_owned(),
        parts[2].to_owned(),
        parts[3].to_owned(),
    )
}

/// A GET of `path` through the traced route (with `traceparent` when given): the backend's echo.
async fn traced_get(rd: &Routerd, path: &str, traceparent: Option<&str>) -> Value {
    let mut headers = vec![("x-pass", "yes")];
    if let Some(tp) = traceparent {
        headers.push(("traceparent", tp));
    }
    let r = rd.request("GET", path, &headers, Bytes::new()).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    r.json()
}

/// The traced route: a plugin predicate and a plugin filter in front of `backend`.
fn traced_config(backend: &Backend) -> Value {
    config(vec![
        Route::proxy("traced", &backend.url())
            .m(prefix("/t"))
            .m(plugin_pred("header-eq", &["x-pass", "yes"]))
            .plugin_filter("add-headers", &["req:x-filtered", "1"]),
    ])
}

fn traced_launch(cfg: &Value, receiver: &Receiver, ratio: &str) -> Launch {
    launch(cfg, &["header-eq", "add-headers"])
        .arg("--otlp-endpoint")
        .arg(&receiver.url)
        .arg("--trace-sample-ratio")
        .arg(ratio)
        // Export every 100 ms instead of the SDK's 5 s.
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
}

/// A request that comes with a sampled `traceparent` gets one tree of spans under the caller's
/// span, and the backend is told the backend try's span as its parent; the caller's
/// `tracestate` goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_join_the_callers_trace_with_the_right_parents() {
    let receiver = Receiver::start().await;
    let backend = Backend::start("echo").await;
    let rd = traced_launch(&traced_config(&backend), &receiver, "1")
        .start()
        .await;
    let traceparent = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    let headers = [
        ("traceparent", traceparent.as_str()),
        ("tracestate", "vendor=abc"),
        ("x-pass", "yes"),
    ];
    let r = rd.request("GET", "/t/items", &headers, Bytes::new()).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    let echo = r.json();
    assert_eq!(echo["headers"]["x-filtered"][0], "1", "the filter ran");
    assert_eq!(echo["headers"]["tracestate"][0], "vendor=abc");
    let (version, trace, parent, flags) = received_traceparent(&echo);
    assert_eq!(
        (version.as_str(), trace.as_str(), flags.as_str()),
        ("00", CALLER_TRACE, "01")
    );
    assert_ne!(
        parent, CALLER_SPAN,
        "routerd names its own span as the parent"
    );

    let spans = receiver.wait_for(CALLER_TRACE, "GET traced").await;
    let request = one(&spans, "GET traced");
    assert_eq!(request.kind, SpanKind::Server as i32);
    assert_eq!(hex(&request.parent_span_id), CALLER_SPAN);
    assert_eq!(
        attr(request, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(attr(request, "routerd.route").as_deref(), Some("traced"));
    let request_id = hex(&request.span_id);

    let route = one(&spans, "route");
    assert_eq!(hex(&route.parent_span_id), request_id);
    assert_eq!(attr(route, "routerd.decision").as_deref(), Some("traced"));

    let predicate = one(&spans, "plugin header-eq");
    assert_eq!(hex(&predicate.parent_span_id), hex(&route.span_id));
    assert_eq!(
        attr(predicate, "routerd.plugin.phase").as_deref(),
        Some("predicate")
    );
    assert_eq!(
        attr(predicate, "routerd.plugin.outcome").as_deref(),
        Some("ok")
    );

    let filter = one(&spans, "plugin add-headers");
    assert_eq!(hex(&filter.parent_span_id), request_id);
    assert_eq!(
        attr(filter, "routerd.plugin.phase").as_deref(),
        Some("request")
    );

    let backend_try = one(&spans, "GET");
    assert_eq!(backend_try.kind, SpanKind::Client as i32);
    assert_eq!(hex(&backend_try.parent_span_id), request_id);
    assert_eq!(
        hex(&backend_try.span_id),
        parent,
        "the backend's parent is the try's span"
    );
    assert_eq!(
        attr(backend_try, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(
        attr(backend_try, "server.address").as_deref(),
        Some("127.0.0.1")
    );

    // Each child lies within the request's span.
    for child in [route, predicate, filter, backend_try] {
        assert!(
            child.start_time_unix_nano >= request.start_time_unix_nano,
            "{}",
            child.name
        );
        assert!(
            child.end_time_unix_nano <= request.end_time_unix_nano,
            "{}",
            child.name
        );
        assert!(
            child.start_time_unix_nano <= child.end_time_unix_nano,
            "{}",
            child.name
        );
    }
    assert!(
        receiver
            .services
            .lock()
            .unwrap()
            .iter()
            .all(|s| s == "routerd"),
        "service.name is routerd"
    );

    // Without a traceparent a new trace starts here; the backend joins it.
    let r = rd
        .request("GET", "/t/new", &[("x-pass", "yes")], Bytes::new())
        .await;
    let echo = r.json();
    let (_, trace, parent, flags) = received_traceparent(&echo);
    assert_eq!(flags, "01");
    assert!(
        echo["headers"].get("tracestate").is_none(),
        "no empty tracestate"
    );
    assert_ne!(trace, "0".repeat(32));
    let spans = receiver.wait_for(&trace, "GET traced").await;
    let request = one(&spans, "GET traced");
    assert!(request.parent_span_id.is_empty(), "a root span");
    assert_eq!(hex(&one(&spans, "GET").span_id), parent);

    // A request no route takes has a request span and a decision span saying 404.
    let r = rd.request("GET", "/nowhere", &headers, Bytes::new()).await;
    assert_eq!(r.status, 404);
    let spans = receiver.wait_for(CALLER_TRACE, "GET none").await;
    let decisions: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "route" && attr(s, "routerd.decision").as_deref() == Some("404"))
        .collect();
    assert_eq!(decisions.len(), 1, "{:#?}", names(&spans));

    // `/metrics` counts what was exported: every span the receiver got, none failed.
    let received = receiver.spans.lock().unwrap().len() as f64;
    let metrics = rd.admin_get("/metrics").await.text();
    let exported = series_value(&metrics, "routerd_trace_spans_exported_total").unwrap();
    let ended = series_value(&metrics, "routerd_trace_spans_ended_total").unwrap();
    assert!(
        exported >= received,
        "{exported} exported, {received} received"
    );
    assert!(ended >= exported, "{ended} ended, {exported} exported");
    assert_eq!(
        series_value(&metrics, "routerd_trace_spans_failed_total"),
        Some(0.0)
    );
}

/// With the collector down, requests are served as before, and `/metrics` says the spans
/// were not delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_costs_requests_nothing_and_shows_in_metrics() {
    let backend = Backend::start("echo").await;
    let down = format!("http://127.0.0.1:{}/v1/traces", unused_port());
    let rd = launch(&traced_config(&backend), &["header-eq", "add-headers"])
        .arg("--otlp-endpoint")
        .arg(&down)
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .start()
        .await;
    for i in 0..20 {
        let echo = traced_get(&rd, &format!("/t/{i}"), None).await;
        assert_eq!(received_traceparent(&echo).3, "01");
    }
    let failed = wait_until(
        async || {
            let metrics = rd.admin_get("/metrics").await.text();
            series_value(&metrics, "routerd_trace_spans_failed_total").unwrap_or(0.0) > 0.0
        },
        Duration::from_secs(30),
    )
    .await;
    assert!(failed, "failed exports are counted");
    assert!(
        rd.logs()
            .iter()
            .any(|l| l.contains("tracing: an export of")),
        "and logged"
    );
}

/// Ratio 0 samples no new trace, yet every backend request still carries a trace context
/// (unsampled); a caller's sampled trace is still followed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ratio_samples_new_traces_and_callers_decide_for_theirs() {
    let receiver = Receiver::start().await;
    let backend = Backend::start("echo").await;
    let rd = traced_launch(&traced_config(&backend), &receiver, "0")
        .start()
        .await;
    let mut unsampled = Vec::new();
    for i in 0..20 {
        let echo = traced_get(&rd, &format!("/t/{i}"), None).await;
        let (_, trace, _, flags) = received_traceparent(&echo);
        assert_eq!(flags, "00", "not sampled");
        unsampled.push(trace);
    }
    // A caller that did not sample is followed too: its trace id goes on, unsampled.
    let not_sampled = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-00");
    let echo = traced_get(&rd, "/t/x", Some(&not_sampled)).await;
    let (_, trace, _, flags) = received_traceparent(&echo);
    assert_eq!((trace.as_str(), flags.as_str()), (CALLER_TRACE, "00"));

    let sampled_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let sampled = format!("00-{sampled_trace}-00f067aa0ba902b7-01");
    let echo = traced_get(&rd, "/t/y", Some(&sampled)).await;
    assert_eq!(received_traceparent(&echo).3, "01");
    receiver.wait_for(sampled_trace, "GET traced").await;
    // Spans leave in the order they end: everything before the sampled request has gone.
    let all = receiver.spans.lock().unwrap().clone();
    let traces: std::collections::BTreeSet<String> = all.iter().map(|s| hex(&s.trace_id)).collect();
    assert_eq!(
        traces.into_iter().collect::<Vec<_>>(),
        vec![sampled_trace.to_owned()],
        "only the caller-sampled trace is exported"
    );
    assert!(unsampled.iter().all(|t| t != sampled_trace));
}

/// A bad ratio or endpoint stops routerd at start, naming the flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tracing_flags_are_refused_by_name() {
    for (flag, value, expect) in [
        (
            "--trace-sample-ratio",
            "1.5",
            "--trace-sample-ratio 1.5: must be between 0 and 1",
        ),
        (
            "--otlp-endpoint",
            "collector:4318",
            "--otlp-endpoint \"collector:4318\"",
        ),
    ] {
        let mut l = Routerd::launch(&json!({"routes": []})).arg(flag).arg(value);
        if flag == "--trace-sample-ratio" {
            l = l.arg("--otlp-endpoint").arg("http://127.0.0.1:9/v1/traces");
        }
        let out = l.run_to_exit(Duration::from_secs(20)).await;
        let text = format!("{}{}", out.stdout, out.stderr);
        assert!(!out.started, "{flag} {value}: {text}");
        assert!(
            out.status.is_some_and(|s| !s.success()),
            "{flag} {value}: {text}"
        );
        assert!(text.contains(expect), "{flag} {value}: {text}");
    }
}
