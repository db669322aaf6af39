//! Prometheus metrics: requests by route and status, latency histograms by route, the table
//! version, and the plugins' counters (calls by phase, traps, deadline and memory-cap hits,
//! refused results, overload and circuit-breaker refusals; read from the plugins at scrape
//! time).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::plugins::{Phase, PluginRegistry};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    plugin: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    plugin: String,
    phase: &'static str,
}

type LatencyFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// The metrics of one routerd.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: LatencyFamily,
    table_version: Gauge<i64, AtomicI64>,
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
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: LatencyFamily = Family::new_with_constructor(latency_histogram);
        let table_version = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "routerd_requests",
            "Requests answered, by route and status",
            requests.clone(),
        );
        registry.register(
            "routerd_request_duration_seconds",
            "Time to the response head, by route",
            latency.clone(),
        );
        registry.register(
            "routerd_table_version",
            "Generation of the route table being served",
            table_version.clone(),
        );
        registry.register_collector(Box::new(PluginCounters(plugins)));
        Arc::new(Metrics {
            registry,
            requests,
            latency,
            table_version,
        })
    }

    /// Counts one answered request. `route` is the route's name, `default_url`, or `none`.
    pub fn request(&self, route: &str, status: u16, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// Records a new table generation.
    pub fn table_swapped(&self, version: u64) {
        self.table_version
            .set(i64::try_from(version).unwrap_or(i64::MAX));
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
