//! Prometheus metrics: requests by route and status class, latency histograms by route, the
//! table version, and the plugins' counters (calls by phase, traps, deadline and memory-cap
//! hits, refused results, overload and circuit-breaker refusals; read from the plugins at
//! scrape time).
//!
//! Label sets stay bounded: statuses are counted by class (`2xx`), and a route's series go
//! when the route leaves the table, so churning route names cannot grow `/metrics` forever.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::plugins::{Phase, PluginRegistry};
use crate::proxy::upgrade::UpgradeStats;

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

/// One route's request series.
struct RouteSeries {
    by_class: [Counter; 5],
    latency: Histogram,
}

/// Request series by route name (`default_url` and `none` included).
type RequestSeries = Arc<RwLock<HashMap<Arc<str>, RouteSeries>>>;

/// Names that are not routes but answer requests.
const PSEUDO_ROUTES: [&str; 2] = ["default_url", "none"];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    plugin: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    plugin: String,
    phase: &'static str,
}

/// The metrics of one routerd.
pub struct Metrics {
    registry: Registry,
    requests: RequestSeries,
    table_version: Gauge<i64, AtomicI64>,
    access_log_dropped: Counter,
    upgrades: UpgradeStats,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn latency_histogram() -> Histogram {
    // 100 µs .. ~13 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

impl Metrics {
    /// Metrics that also report `plugins`' counters.
    pub fn new(plugins: Arc<PluginRegistry>) -> Arc<Self> {
        let mut registry = Registry::default();
        let requests = RequestSeries::default();
        let table_version = Gauge::<i64, AtomicI64>::default();
        registry.register_collector(Box::new(RequestCounters(requests.clone())));
        registry.register(
            "routerd_table_version",
            "Generation of the route table being served",
            table_version.clone(),
        );
        registry.register_collector(Box::new(PluginCounters(plugins)));
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
        Arc::new(Metrics {
            registry,
            requests,
            table_version,
            access_log_dropped,
            upgrades,
        })
    }

    /// The counters of upgraded connections, for the proxy to update.
    pub fn upgrades(&self) -> UpgradeStats {
        self.upgrades.clone()
    }

    /// The counter of dropped access-log lines, for the access log to increment.
    pub fn access_log_dropped(&self) -> Counter {
        self.access_log_dropped.clone()
    }

    /// Counts one answered request. `route` is the route's name, `default_url`, or `none`.
    pub fn request(&self, route: &str, status: u16, took: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        let record = |s: &RouteSeries| {
            s.by_class[class].inc();
            s.latency.observe(took.as_secs_f64());
        };
        {
            let series = self.requests.read().unwrap_or_else(|p| p.into_inner());
            if let Some(s) = series.get(route) {
                record(s);
                return;
            }
        }
        let mut series = self.requests.write().unwrap_or_else(|p| p.into_inner());
        record(series.entry(route.into()).or_insert_with(|| RouteSeries {
            by_class: Default::default(),
            latency: latency_histogram(),
        }));
    }

    /// Records a new table generation whose routes are `routes`: series of routes no longer
    /// in it are dropped.
    pub fn table_swapped<'a>(&self, version: u64, routes: impl IntoIterator<Item = &'a str>) {
        self.table_version
            .set(i64::try_from(version).unwrap_or(i64::MAX));
        let keep: std::collections::HashSet<&str> =
            routes.into_iter().chain(PSEUDO_ROUTES).collect();
        self.requests
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|name, _| keep.contains(&**name));
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

struct RequestCounters(RequestSeries);

impl std::fmt::Debug for RequestCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RequestCounters")
    }
}

impl Collector for RequestCounters {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let series = self.0.read().unwrap_or_else(|p| p.into_inner());
        let mut names: Vec<&Arc<str>> = series.keys().collect();
        names.sort();
        let mut family = encoder.encode_descriptor(
            "routerd_requests",
            "Requests answered, by route and status class",
            None,
            ConstCounter::new(0u64).metric_type(),
        )?;
        for name in &names {
            for (class, counter) in CLASSES.iter().zip(&series[*name].by_class) {
                let labels = RequestLabels {
                    route: name.to_string(),
                    status: class,
                };
                ConstCounter::new(counter.get()).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "routerd_request_duration_seconds",
            "Time to the response head, by route",
            None,
            latency_histogram().metric_type(),
        )?;
        for name in &names {
            series[*name]
                .latency
                .encode(family.encode_family(&RouteLabels {
                    route: name.to_string(),
                })?)?;
        }
        Ok(())
    }
}

struct PluginCounters(Arc<PluginRegistry>);

impl std::fmt::Debug for PluginCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PluginCounters")
    }
}

impl Collector for PluginCounters {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let plugins = self.0.list();
        let mut family = encoder.encode_descriptor(
            "routerd_plugin_calls",
            "Plugin calls (run or refused), by phase: validate, predicate, request, response",
            None,
            ConstCounter::new(0u64).metric_type(),
        )?;
        for p in &plugins {
            for phase in Phase::ALL {
                let labels = PhaseLabels {
                    plugin: p.name.to_string(),
                    phase: phase.as_str(),
                };
                ConstCounter::new(p.stats.calls_in(phase))
                    .encode(family.encode_family(&labels)?)?;
            }
        }
        type Read = fn(&crate::plugins::PluginStats) -> u64;
        let series: [(&str, &str, Read); 7] = [
            ("routerd_plugin_traps", "Plugin calls that trapped", |s| {
                s.traps.load(Ordering::Relaxed)
            }),
            (
                "routerd_plugin_deadline_hits",
                "Plugin calls stopped at the deadline",
                |s| s.deadline_hits.load(Ordering::Relaxed),
            ),
            (
                "routerd_plugin_memory_cap_hits",
                "Plugin calls that hit the memory cap",
                |s| s.memory_cap_hits.load(Ordering::Relaxed),
            ),
            (
                "routerd_plugin_rejected_results",
                "Plugin results refused (too many or too large headers, too large a body)",
                |s| s.bad_results.load(Ordering::Relaxed),
            ),
            (
                "routerd_plugin_overloaded",
                "Plugin calls refused because the plugin's concurrency cap stayed full",
                |s| s.overloaded.load(Ordering::Relaxed),
            ),
            (
                "routerd_plugin_short_circuited",
                "Plugin calls refused at once because its circuit breaker was open",
                |s| s.short_circuited.load(Ordering::Relaxed),
            ),
            (
                "routerd_plugin_breaker_opened",
                "Times a plugin's circuit breaker opened",
                |s| s.breaker_opened.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, read) in series {
            let mut family = encoder.encode_descriptor(
                name,
                help,
                None,
                ConstCounter::new(0u64).metric_type(),
            )?;
            for p in &plugins {
                let labels = PluginLabels {
                    plugin: p.name.to_string(),
                };
                ConstCounter::new(read(&p.stats)).encode(family.encode_family(&labels)?)?;
            }
        }
        type Gauge = fn(&crate::plugins::Plugin) -> i64;
        let gauges: [(&str, &str, Gauge); 2] = [
            (
                "routerd_plugin_breaker_open",
                "1 while a plugin's circuit breaker is open",
                |p| i64::from(p.breaker_open()),
            ),
            (
                "routerd_plugin_idle_instances",
                "Warm instances a plugin keeps idle",
                |p| p.idle_instances() as i64,
            ),
        ];
        for (name, help, read) in gauges {
            let mut family = encoder.encode_descriptor(
                name,
                help,
                None,
                prometheus_client::metrics::gauge::ConstGauge::new(0i64).metric_type(),
            )?;
            for p in &plugins {
                let labels = PluginLabels {
                    plugin: p.name.to_string(),
                };
                prometheus_client::metrics::gauge::ConstGauge::new(read(p))
                    .encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
