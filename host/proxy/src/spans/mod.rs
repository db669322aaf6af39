//! Request tracing: the W3C trace context read from a request (a new trace when it has none)
//! and written onto each backend request, and spans for the request, its route decision, each
//! plugin call and each backend try, exported over OTLP (`export`).
//!
//! Without an endpoint there is no [`Tracing`] and a request pays a branch per phase; trace
//! headers then pass through untouched, like any other header. With one, every request gets a
//! trace context (so the backend's spans join the caller's trace), and only a sampled request
//! records spans: an unsampled one costs the header parse and write, no span.

mod export;

pub use export::{TraceExport, TracingError, TracingOptions};

use std::time::SystemTime;

use http::{HeaderMap, StatusCode};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, Span};
use routerd_base::Peer;
use routerd_plugins::Phase;
use routerd_plugins::journal::{CallRecord, Journal};

/// What records spans: the tracer of the export pipeline.
pub struct Tracing {
    tracer: SdkTracer,
}

impl Tracing {
    fn new(tracer: SdkTracer) -> Tracing {
        Tracing { tracer }
    }

    /// A request's span, the child of its caller's when the headers carry a trace context.
    pub(crate) fn begin<B>(&self, req: &http::Request<B>, peer: &Peer) -> Box<RequestSpan> {
        let parent = TraceContextPropagator::new().extract(&HeaderExtractor(req.headers()));
        let span = self
            .tracer
            .span_builder(method_name(req.method()))
            .with_kind(SpanKind::Server)
            .start_with_context(&self.tracer, &parent);
        let sampled = span.span_context().is_sampled();
        let cx = parent.with_span(span);
        if sampled {
            cx.span().set_attributes([
                KeyValue::new("http.request.method", method_name(req.method())),
                KeyValue::new("url.path", req.uri().path().to_owned()),
                KeyValue::new("url.scheme", peer.scheme()),
                KeyValue::new("client.address", peer.addr.ip().to_string()),
            ]);
        }
        Box::new(RequestSpan {
            tracer: self.tracer.clone(),
            cx,
            journal: sampled.then(Journal::default),
            decision_start: None,
            method: req.method().clone(),
        })
    }
}

/// A method's name without an allocation for the standard ones.
fn method_name(method: &http::Method) -> std::borrow::Cow<'static, str> {
    use http::Method;
    let name = match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => return method.to_string().into(),
    };
    name.into()
}

/// Writes `cx`'s trace context onto `headers`; an empty `tracestate` is left out (the
/// propagator writes one even when the caller sent none).
fn inject(cx: &Context, headers: &mut HeaderMap) {
    TraceContextPropagator::new().inject_context(cx, &mut HeaderInjector(headers));
    if let http::header::Entry::Occupied(e) = headers.entry("tracestate")
        && e.get().is_empty()
    {
        e.remove();
    }
}

/// One request's span, and what its child spans need.
pub(crate) struct RequestSpan {
    tracer: SdkTracer,
    /// The request span, in its caller's context.
    cx: Context,
    /// The plugin calls made so far (sampled requests only).
    journal: Option<Journal>,
    /// When the route decision began (sampled requests only).
    decision_start: Option<SystemTime>,
    /// The request's method, for the span's name.
    method: http::Method,
}

impl RequestSpan {
    /// The journal the request's plugin calls go to, when it is sampled.
    pub(crate) fn journal(&self) -> Option<Journal> {
        self.journal.clone()
    }

    fn sampled(&self) -> bool {
        self.journal.is_some()
    }

    /// The route decision begins.
    pub(crate) fn deciding(&mut self) {
        if self.sampled() {
            self.decision_start = Some(SystemTime::now());
        }
    }

    /// The route decision ended with `outcome` (a route's name, `default_url`, or routerd's
    /// answer); its span gets the plugin predicates called on the way as children.
    pub(crate) fn decided(&mut self, outcome: &str) {
        let Some(start) = self.decision_start.take() else {
            return;
        };
        let mut span = self
            .tracer
            .span_builder("route")
            .with_start_time(start)
            .with_attributes([KeyValue::new("routerd.decision", outcome.to_owned())])
            .start_with_context(&self.tracer, &self.cx);
        let decision = self
            .cx
            .with_remote_span_context(span.span_context().clone());
        self.plugin_spans(&decision);
        span.end();
    }

    /// A span for each plugin call recorded since the last, children of `parent`.
    fn plugin_spans(&self, parent: &Context) {
        let Some(journal) = &self.journal else {
            return;
        };
        let calls: Vec<CallRecord> = match journal.lock() {
            Ok(mut calls) => std::mem::take(&mut *calls),
            Err(_) => return,
        };
        for call in calls {
            let phase = match call.phase {
                Phase::Predicate => "predicate",
                Phase::Request => "request",
                Phase::Response => "response",
                Phase::Validate => "validate",
            };
            let mut span = self
                .tracer
                .span_builder(format!("plugin {}", call.plugin))
                .with_start_time(call.start)
                .with_attributes([
                    KeyValue::new("routerd.plugin", call.plugin.to_string()),
                    KeyValue::new("routerd.plugin.phase", phase),
                    KeyValue::new("routerd.plugin.outcome", call.outcome),
                ])
                .start_with_context(&self.tracer, parent);
            if call.outcome != "ok" {
                span.set_status(Status::error(call.outcome));
            }
            span.end_with_timestamp(call.start + call.elapsed);
        }
    }

    /// A backend try begins: its span (when sampled), and the trace context written onto
    /// the backend request's `headers`, naming that span (or the request's) as the parent.
    pub(crate) fn backend(
        &self,
        method: &http::Method,
        uri: &http::Uri,
        target: &http::uri::Authority,
        headers: &mut HeaderMap,
    ) -> BackendSpan {
        if !self.sampled() {
            inject(&self.cx, headers);
            return BackendSpan(None);
        }
        let span = self
            .tracer
            .span_builder(method_name(method))
            .with_kind(SpanKind::Client)
            .with_attributes([
                KeyValue::new("http.request.method", method_name(method)),
                KeyValue::new("server.address", target.host().to_owned()),
                KeyValue::new("server.port", i64::from(target.port_u16().unwrap_or(0))),
                KeyValue::new("url.path", uri.path().to_owned()),
            ])
            .start_with_context(&self.tracer, &self.cx);
        let cx = self
            .cx
            .with_remote_span_context(span.span_context().clone());
        inject(&cx, headers);
        BackendSpan(Some(Box::new(span)))
    }

    /// The request is answered with `status` by `route`: the plugin filters' spans, then the
    /// request's own span ends.
    pub(crate) fn finish(self, status: StatusCode, route: &str) {
        if !self.sampled() {
            return;
        }
        self.plugin_spans(&self.cx);
        let span = self.cx.span();
        span.update_name(format!("{} {route}", self.method));
        span.set_attributes([
            KeyValue::new("http.response.status_code", i64::from(status.as_u16())),
            KeyValue::new("routerd.route", route.to_owned()),
        ]);
        if status.is_server_error() {
            span.set_status(Status::error(status.as_str().to_owned()));
        }
        span.end();
    }
}

impl std::fmt::Debug for RequestSpan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let span = self.cx.span();
        f.debug_struct("RequestSpan")
            .field("context", span.span_context())
            .finish()
    }
}

/// A backend try's span, ended with its outcome.
pub(crate) struct BackendSpan(Option<Box<Span>>);

impl BackendSpan {
    /// The try ended: with the backend's status, or with what failed.
    pub(crate) fn end(self, outcome: Result<StatusCode, &'static str>) {
        let Some(mut span) = self.0 else {
            return;
        };
        match outcome {
            Ok(status) => {
                span.set_attribute(KeyValue::new(
                    "http.response.status_code",
                    i64::from(status.as_u16()),
                ));
                if status.is_client_error() || status.is_server_error() {
                    span.set_status(Status::error(status.as_str().to_owned()));
                }
            }
            Err(kind) => {
                span.set_attribute(KeyValue::new("error.type", kind));
                span.set_status(Status::error(kind));
            }
        }
        span.end();
    }
}
