//! Prometheus metrics: requests by route and status class, latency histograms by route, the
//! table version, upgraded connections, and the requests routerd answered 503 itself. Other
//! parts register their own collectors (the plugin runtime's counters are read from the
//! plugins at scrape time), so the request path's metrics know nothing of them.
//!
//! Requests are counted per thread (each worker writes only its own shard, so counting
//! costs no cross-core traffic) and summed when `/metrics` is read.
//!
//! Label sets stay bounded: statuses are counted by class (`2xx`), and a route's series go
//! when the route leaves the table, so churning route names cannot grow `/metrics` forever.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rustc_hash::FxHashMap;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Counters of upgraded connections, shown in `/metrics` (clones share the values).
#[derive(Debug, Default, Clone)]
pub struct UpgradeStats {
    /// Tunnels opened.
    pub opened: Counter,
    /// Tunnels open now.
    pub active: Gauge,
    /// Tunnels closed because they were idle too long.
    pub idle_closed: Counter,
}

/// Counters of exported spans, shown in `/metrics` (clones share the values).
#[derive(Debug, Default, Clone)]
pub struct TraceStats {
    /// Spans that ended (handed to the export queue).
    pub ended: Counter,
    /// Spans the collector took.
    pub exported: Counter,
    /// Spans in exports that failed (the collector down, refusing, or too slow).
    pub failed: Counter,
}

/// Upper bounds of the latency buckets: 100 µs doubling up to ~13 s, then +Inf.
const BUCKETS: usize = 18;
const FIRST_BOUND_NANOS: u64 = 100_000;

/// The bucket a latency falls in: the first whose upper bound (`100 µs * 2^i`) is not below
/// it, or `BUCKETS` (+Inf).
fn bucket_of(took: Duration) -> usize {
    let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
    // The smallest i with FIRST_BOUND_NANOS << i >= nanos is ceil(log2(ceil(nanos / first))).
    let ratio = nanos.div_ceil(FIRST_BOUND_NANOS);
    if ratio <= 1 {
        return 0;
    }
    ((u64::BITS - (ratio - 1).leading_zeros()) as usize).min(BUCKETS)
}

/// The upper bound of latency bucket `i` in seconds (+Inf for the last).
pub fn bucket_bound(i: usize) -> f64 {
    if i >= BUCKETS {
        f64::INFINITY
    } else {
        (FIRST_BOUND_NANOS << i) as f64 / 1e9
    }
}

/// How many latency buckets a histogram has, +Inf included.
pub const LATENCY_BUCKETS: usize = BUCKETS + 1;

/// One route's requests since its series began, by latency bucket (not cumulative).
#[derive(Debug, Clone)]
pub struct RouteTotals {
    /// The route's name, `default_url` or `none`.
    pub route: Arc<str>,
    /// Requests per latency bucket; the sum is every request answered.
    pub buckets: [u64; LATENCY_BUCKETS],
}

/// One route's request series, as one thread counted them (or merged for a scrape).
#[derive(Default, Clone)]
struct RouteSeries {
    by_class: [u64; 5],
    /// Per bucket, not cumulative; the last is +Inf.
    buckets: [u64; BUCKETS + 1],
    sum_seconds: f64,
}

impl RouteSeries {
    fn add(&mut self, other: &RouteSeries) {
        for (a, b) in self.by_class.iter_mut().zip(&other.by_class) {
            *a += b;
        }
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.sum_seconds += other.sum_seconds;
    }
}

/// The request series one thread recorded. Only that thread writes them, so its lock is
/// uncontended on the request path and the counters' cache lines stay on its core; a scrape
/// or a table swap takes each shard's lock in turn.
#[derive(Default)]
struct Shard(Mutex<FxHashMap<Arc<str>, RouteSeries>>);

/// Every thread's shard of the request series (`default_url` and `none` included). Made by
/// [`RequestSeries::new`] only: each set needs an id of its own.
struct RequestSeries {
    /// Tells this set's shards apart from another `Metrics`' in the threads' lists.
    id: u64,
    shards: Mutex<Vec<Arc<Shard>>>,
}

thread_local! {
    /// This thread's shard of each live `Metrics` it has recorded into (one, outside tests).
    static SHARDS: RefCell<Vec<(u64, Arc<Shard>)>> = const { RefCell::new(Vec::new()) };
}

impl RequestSeries {
    fn new() -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        RequestSeries {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            shards: Mutex::default(),
        }
    }

    /// Runs `f` on this thread's shard, made and registered on first use.
    fn with_local<R>(&self, f: impl FnOnce(&Shard) -> R) -> R {
        SHARDS.with(|cell| {
            let mut shards = cell.borrow_mut();
            if let Some((_, shard)) = shards.iter().find(|(id, _)| *id == self.id) {
                return f(shard);
            }
            let shard = Arc::new(Shard::default());
            lock(&self.shards).push(shard.clone());
            let r = f(&shard);
            shards.push((self.id, shard));
            r
        })
    }

    /// Every route's series, summed over the threads, by name.
    fn merged(&self) -> BTreeMap<Arc<str>, RouteSeries> {
        let shards: Vec<Arc<Shard>> = lock(&self.shards).clone();
        let mut all: BTreeMap<Arc<str>, RouteSeries> = BTreeMap::new();
        let mut copy: Vec<(Arc<str>, RouteSeries)> = Vec::new();
        for shard in shards {
            // A worker counting a request takes this lock: hold it only for a flat copy, and
            // sort the copy into the merge after letting go.
            copy.extend(lock(&shard.0).iter().map(|(n, s)| (n.clone(), s.clone())));
            for (name, s) in copy.drain(..) {
                match all.get_mut(&name) {
                    Some(sum) => sum.add(&s),
                    None => {
                        all.insert(name, s);
                    }
                }
            }
        }
        all
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Names that are not routes but answer requests.
const PSEUDO_ROUTES: [&str; 2] = ["default_url", "none"];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OverloadLabels {
    route: String,
    plugin: String,
    phase: &'static str,
}

/// The metrics of one routerd.
pub struct Metrics {
    registry: Registry,
    requests: Arc<RequestSeries>,
    table_version: Gauge<i64, AtomicI64>,
    access_log_dropped: Counter,
    upgrades: UpgradeStats,
    traces: TraceStats,
    overloaded: Family<OverloadLabels, Counter>,
    no_endpoint: Family<RouteLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// The request path's metrics, and `collectors` (other parts' series, read at scrape time).
    pub fn new(collectors: Vec<Box<dyn Collector>>) -> Arc<Self> {
        let mut registry = Registry::default();
        let requests = Arc::new(RequestSeries::new());
        let table_version = Gauge::<i64, AtomicI64>::default();
        registry.register_collector(Box::new(RequestCounters(requests.clone())));
        registry.register(
            "routerd_table_version",
            "Generation of the route table being served",
            table_version.clone(),
        );
        for collector in collectors {
            registry.register_collector(collector);
        }
        let access_log_dropped = Counter::default();
        registry.register(
            "routerd_access_log_dropped",
            "Access log lines dropped because the writer fell behind",
            access_log_dropped.clone(),
        );
        let upgrades = UpgradeStats::default();
        registry.register(
            "routerd_upgrades",
            "Upgraded connections (WebSocket, ...) opened",
            upgrades.opened.clone(),
        );
        registry.register(
            "routerd_upgrades_active",
            "Upgraded connections open now",
            upgrades.active.clone(),
        );
        registry.register(
            "routerd_upgrades_idle_closed",
            "Upgraded connections closed after the idle timeout",
            upgrades.idle_closed.clone(),
        );
        let traces = TraceStats::default();
        registry.register(
            "routerd_trace_spans_ended",
            "Spans recorded and queued for export (--otlp-endpoint); past the queue's bound (OTEL_BSP_MAX_QUEUE_SIZE, 2048) they are dropped: ended minus exported minus failed",
            traces.ended.clone(),
        );
        registry.register(
            "routerd_trace_spans_exported",
            "Spans the OTLP collector took",
            traces.exported.clone(),
        );
        registry.register(
            "routerd_trace_spans_failed",
            "Spans in exports that failed (the collector down, refusing them or too slow)",
            traces.failed.clone(),
        );
        let overloaded = Family::<OverloadLabels, Counter>::default();
        registry.register(
            "routerd_overloaded_requests",
            "Requests routerd answered 503 itself because it had no capacity to run a plugin call (no instance or concurrency slot within queue_ms)",
            overloaded.clone(),
        );
        let no_endpoint = Family::<RouteLabels, Counter>::default();
        registry.register(
            "routerd_no_endpoint_requests",
            "Requests routerd answered 503 itself because none of the route's endpoints could take them (down, ejected, or already tried)",
            no_endpoint.clone(),
        );
        Arc::new(Metrics {
            registry,
            requests,
            table_version,
            access_log_dropped,
            upgrades,
            traces,
            overloaded,
            no_endpoint,
        })
    }

    /// The counters of upgraded connections, for the proxy to update.
    pub fn upgrades(&self) -> UpgradeStats {
        self.upgrades.clone()
    }

    /// The counters of exported spans, for the export to increment.
    pub fn traces(&self) -> TraceStats {
        self.traces.clone()
    }

    /// The counter of dropped access-log lines, for the access log to increment.
    pub fn access_log_dropped(&self) -> Counter {
        self.access_log_dropped.clone()
    }

    /// Counts one answered request. `route` is the route's name, `default_url`, or `none`.
    pub fn request(&self, route: &Arc<str>, status: u16, took: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        let bucket = bucket_of(took);
        self.requests.with_local(|shard| {
            let mut series = lock(&shard.0);
            let s = match series.get_mut(&**route) {
                Some(s) => s,
                None => series.entry(route.clone()).or_default(),
            };
            s.by_class[class] += 1;
            s.buckets[bucket] += 1;
            s.sum_seconds += took.as_secs_f64();
        });
    }

    /// Counts a request answered 503 because `plugin`'s call in `phase` (`predicate`,
    /// `request`, `response`) could not run.
    pub fn overloaded(&self, route: &str, plugin: &str, phase: &'static str) {
        self.overloaded
            .get_or_create(&OverloadLabels {
                route: route.to_owned(),
                plugin: plugin.to_owned(),
                phase,
            })
            .inc();
    }

    /// Counts a request answered 503 because no endpoint of `route` could take it.
    pub fn no_endpoint(&self, route: &str) {
        self.no_endpoint
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
            })
            .inc();
    }

    /// Records a new table generation, in which `served(name)` says whether a route is: series
    /// of routes no longer in it are dropped. Asked per series (routes that had traffic), not
    /// per route: a change to a table of 100,000 routes does not list them all.
    pub fn table_swapped(&self, version: u64, served: impl Fn(&str) -> bool) {
        self.table_version
            .set(i64::try_from(version).unwrap_or(i64::MAX));
        for shard in lock(&self.requests.shards).iter() {
            lock(&shard.0).retain(|name, _| PSEUDO_ROUTES.contains(&&**name) || served(name));
        }
    }

    /// Every route's requests so far, summed over the threads: for the live view, which
    /// samples them and keeps the differences.
    pub fn route_totals(&self) -> Vec<RouteTotals> {
        self.requests
            .merged()
            .into_iter()
            .map(|(route, s)| RouteTotals {
                route,
                buckets: s.buckets,
            })
            .collect()
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

struct RequestCounters(Arc<RequestSeries>);

impl std::fmt::Debug for RequestCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RequestCounters")
    }
}

impl Collector for RequestCounters {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let series = self.0.merged();
        let mut family = encoder.encode_descriptor(
            "routerd_requests",
            "Requests answered, by route and status class",
            None,
            ConstCounter::new(0u64).metric_type(),
        )?;
        for (name, s) in &series {
            for (class, count) in CLASSES.iter().zip(&s.by_class) {
                let labels = RequestLabels {
                    route: name.to_string(),
                    status: class,
                };
                ConstCounter::new(*count).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "routerd_request_duration_seconds",
            "Time to the response head, by route",
            None,
            MetricType::Histogram,
        )?;
        for (name, s) in &series {
            let buckets: Vec<(f64, u64)> = s
                .buckets
                .iter()
                .enumerate()
                .map(|(i, n)| (bucket_bound(i), *n))
                .collect();
            family
                .encode_family(&RouteLabels {
                    route: name.to_string(),
                })?
                .encode_histogram::<NoLabelSet>(
                    s.sum_seconds,
                    s.buckets.iter().sum(),
                    &buckets,
                    None,
                )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> Arc<Metrics> {
        Metrics::new(Vec::new())
    }

    #[test]
    fn a_latency_falls_in_the_first_bucket_whose_bound_holds_it() {
        let us = Duration::from_micros;
        assert_eq!(bucket_of(Duration::ZERO), 0);
        assert_eq!(bucket_of(us(100)), 0);
        assert_eq!(bucket_of(us(100) + Duration::from_nanos(1)), 1);
        assert_eq!(bucket_of(us(200)), 1);
        assert_eq!(bucket_of(us(201)), 2);
        assert_eq!(bucket_of(us(400)), 2);
        assert_eq!(bucket_of(Duration::from_millis(1)), 4); // 0.8 ms < 1 ms <= 1.6 ms
        let last = Duration::from_nanos(FIRST_BOUND_NANOS << (BUCKETS - 1));
        assert_eq!(bucket_of(last), BUCKETS - 1);
        assert_eq!(bucket_of(last + Duration::from_nanos(1)), BUCKETS);
        assert_eq!(bucket_of(Duration::from_secs(3600)), BUCKETS);
        for i in 0..BUCKETS {
            let bound = Duration::from_secs_f64(bucket_bound(i));
            assert_eq!(bucket_of(bound), i, "bound {i}");
        }
    }

    fn sample(text: &str, line_start: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
    }

    #[test]
    fn requests_counted_on_several_threads_are_summed_in_the_exposition() {
        let metrics = metrics();
        let route: Arc<str> = "api".into();
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    for _ in 0..10 {
                        metrics.request(&route, 200, Duration::from_micros(150));
                    }
                    metrics.request(&route, 503, Duration::from_millis(20));
                });
            }
        });
        metrics.request(&"none".into(), 404, Duration::from_micros(50));
        let text = metrics.render();
        assert_eq!(
            sample(&text, r#"routerd_requests_total{route="api",status="2xx"}"#),
            Some(30.0),
            "{text}"
        );
        assert_eq!(
            sample(&text, r#"routerd_requests_total{route="api",status="5xx"}"#),
            Some(3.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"routerd_requests_total{route="none",status="4xx"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"routerd_request_duration_seconds_count{route="api"}"#
            ),
            Some(33.0)
        );
        // Cumulative buckets: 150 µs is above 100 µs and within 200 µs; 20 ms within 25.6 ms.
        let bucket = |le: &str| {
            sample(
                &text,
                &format!(r#"routerd_request_duration_seconds_bucket{{le="{le}",route="api"}}"#),
            )
        };
        assert_eq!(bucket("0.0001"), Some(0.0), "{text}");
        assert_eq!(bucket("0.0002"), Some(30.0));
        assert_eq!(bucket("0.0128"), Some(30.0));
        assert_eq!(bucket("0.0256"), Some(33.0));
        assert_eq!(bucket("+Inf"), Some(33.0));
        let sum = sample(
            &text,
            r#"routerd_request_duration_seconds_sum{route="api"}"#,
        );
        assert!(sum.is_some_and(|s| (s - 0.0645).abs() < 1e-9), "{sum:?}");
    }

    #[test]
    fn a_route_that_leaves_the_table_loses_its_series_on_every_thread() {
        let metrics = metrics();
        let (gone, kept): (Arc<str>, Arc<str>) = ("gone".into(), "kept".into());
        std::thread::scope(|s| {
            s.spawn(|| metrics.request(&gone, 200, Duration::from_micros(10)));
        });
        metrics.request(&gone, 200, Duration::from_micros(10));
        metrics.request(&kept, 200, Duration::from_micros(10));
        metrics.table_swapped(2, |name| name == "kept");
        let text = metrics.render();
        assert!(!text.contains(r#"route="gone""#), "{text}");
        assert!(text.contains(r#"route="kept""#), "{text}");
        assert!(text.contains("routerd_table_version 2"), "{text}");
        // Counted again after it comes back: a fresh series.
        metrics.request(&gone, 200, Duration::from_micros(10));
        assert_eq!(
            sample(
                &metrics.render(),
                r#"routerd_requests_total{route="gone",status="2xx"}"#
            ),
            Some(1.0)
        );
    }
}
