//! The plugin runtime's counters as Prometheus series: calls by phase, traps, deadline and
//! memory-cap hits, refused results, overload and circuit-breaker refusals, and two gauges (an
//! open breaker, idle instances). Read from the loaded plugins when `/metrics` is scraped, so a
//! call pays nothing for them beyond its own atomic counters.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::{Phase, Plugin, PluginRegistry, PluginStats};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    plugin: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    plugin: String,
    phase: &'static str,
}

/// A counter read from a plugin's stats: name, help, reader.
type CounterSeries = (&'static str, &'static str, fn(&PluginStats) -> u64);
/// A gauge read from a plugin: name, help, reader.
type GaugeSeries = (&'static str, &'static str, fn(&Plugin) -> i64);

const COUNTERS: [CounterSeries; 7] = [
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

const GAUGES: [GaugeSeries; 2] = [
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

/// The loaded plugins' counters, for the metrics registry.
pub struct PluginCounters(Arc<PluginRegistry>);

impl PluginCounters {
    /// The counters of the plugins `registry` holds at each scrape.
    pub fn new(registry: Arc<PluginRegistry>) -> PluginCounters {
        PluginCounters(registry)
    }
}

impl std::fmt::Debug for PluginCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PluginCounters")
    }
}

impl Collector for PluginCounters {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let plugins = self.0.list();
        encode_calls(&mut encoder, &plugins)?;
        for (name, help, read) in COUNTERS {
            let metric_type = ConstCounter::new(0u64).metric_type();
            let mut family = encoder.encode_descriptor(name, help, None, metric_type)?;
            for p in &plugins {
                ConstCounter::new(read(&p.stats)).encode(family.encode_family(&labels(p))?)?;
            }
        }
        for (name, help, read) in GAUGES {
            let metric_type = ConstGauge::new(0i64).metric_type();
            let mut family = encoder.encode_descriptor(name, help, None, metric_type)?;
            for p in &plugins {
                ConstGauge::new(read(p)).encode(family.encode_family(&labels(p))?)?;
            }
        }
        Ok(())
    }
}

/// `routerd_plugin_calls`, by plugin and phase.
fn encode_calls(
    encoder: &mut DescriptorEncoder,
    plugins: &[Arc<Plugin>],
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(
        "routerd_plugin_calls",
        "Plugin calls (run or refused), by phase: validate, predicate, request, response",
        None,
        ConstCounter::new(0u64).metric_type(),
    )?;
    for p in plugins {
        for phase in Phase::ALL {
            let labels = PhaseLabels {
                plugin: p.name.to_string(),
                phase: phase.as_str(),
            };
            ConstCounter::new(p.stats.calls_in(phase)).encode(family.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

fn labels(p: &Plugin) -> PluginLabels {
    PluginLabels {
        plugin: p.name.to_string(),
    }
}
