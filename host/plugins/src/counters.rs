//! The plugin runtime's counters as Prometheus series: calls by phase, traps, deadline and
//! memory-cap hits, refused results, overload and circuit-breaker refusals, store operations
//! and refusals, outbound requests by outcome, and gauges (an open breaker, idle instances, the
//! store's keys and bytes). Read from the loaded plugins when `/metrics` is scraped, so a
//! call pays nothing for them beyond its own atomic counters.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::services::{OutboundOutcome, StoreOp};
use crate::{Phase, Plugin, PluginRegistry};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    plugin: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    plugin: String,
    phase: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    plugin: String,
    op: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    plugin: String,
    outcome: &'static str,
}

/// A counter read from a plugin: name, help, reader.
type CounterSeries = (&'static str, &'static str, fn(&Plugin) -> u64);
/// A gauge read from a plugin: name, help, reader.
type GaugeSeries = (&'static str, &'static str, fn(&Plugin) -> i64);

const COUNTERS: [CounterSeries; 10] = [
    ("routerd_plugin_traps", "Plugin calls that trapped", |p| {
        p.stats.traps.load(Ordering::Relaxed)
    }),
    (
        "routerd_plugin_deadline_hits",
        "Plugin calls stopped at the deadline",
        |p| p.stats.deadline_hits.load(Ordering::Relaxed),
    ),
    (
        "routerd_plugin_memory_cap_hits",
        "Plugin calls that hit the memory cap",
        |p| p.stats.memory_cap_hits.load(Ordering::Relaxed),
    ),
    (
        "routerd_plugin_rejected_results",
        "Plugin results refused (too many or too large headers, too large a body)",
        |p| p.stats.bad_results.load(Ordering::Relaxed),
    ),
    (
        "routerd_plugin_overloaded",
        "Plugin calls refused because the plugin's concurrency cap stayed full",
        |p| p.stats.overloaded.load(Ordering::Relaxed),
    ),
    (
        "routerd_plugin_short_circuited",
        "Plugin calls refused at once because its circuit breaker was open",
        |p| p.stats.short_circuited.load(Ordering::Relaxed),
    ),
    (
        "routerd_plugin_breaker_opened",
        "Times a plugin's circuit breaker opened",
        |p| p.stats.breaker_opened.load(Ordering::Relaxed),
    ),
    (
        "routerd_plugin_store_refused",
        "Plugin store writes refused because the store was at its bound of keys or bytes",
        |p| p.store().refused_full(),
    ),
    (
        "routerd_plugin_http_too_large",
        "Plugin outbound responses cut at the plugin's http.max_response_bytes",
        |p| p.outbound().too_large.load(Ordering::Relaxed),
    ),
    (
        "routerd_plugin_http_wait_microseconds",
        "Time plugin outbound requests waited for their response heads, summed",
        |p| p.outbound().wait_micros.load(Ordering::Relaxed),
    ),
];

const GAUGES: [GaugeSeries; 4] = [
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
    (
        "routerd_plugin_store_keys",
        "Keys in a plugin's store (expired ones not yet removed included)",
        |p| p.store().keys() as i64,
    ),
    (
        "routerd_plugin_store_bytes",
        "Bytes of keys and values in a plugin's store",
        |p| p.store().bytes() as i64,
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
        encode_services(&mut encoder, &plugins)?;
        encode_trials(&mut encoder, &plugins)?;
        for (name, help, read) in COUNTERS {
            let metric_type = ConstCounter::new(0u64).metric_type();
            let mut family = encoder.encode_descriptor(name, help, None, metric_type)?;
            for p in &plugins {
                ConstCounter::new(read(p)).encode(family.encode_family(&labels(p))?)?;
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

/// `routerd_plugin_store_operations` by operation and `routerd_plugin_http_requests` by
/// outcome.
fn encode_services(
    encoder: &mut DescriptorEncoder,
    plugins: &[Arc<Plugin>],
) -> Result<(), std::fmt::Error> {
    let counter = ConstCounter::new(0u64).metric_type();
    let mut family = encoder.encode_descriptor(
        "routerd_plugin_store_operations",
        "Plugin store operations, by op: get, set, delete, increment",
        None,
        counter,
    )?;
    for p in plugins {
        for op in StoreOp::ALL {
            let labels = OpLabels {
                plugin: p.name.to_string(),
                op: op.as_str(),
            };
            ConstCounter::new(p.store().operations(op)).encode(family.encode_family(&labels)?)?;
        }
    }
    let mut family = encoder.encode_descriptor(
        "routerd_plugin_http_requests",
        "Plugin outbound HTTP requests, by outcome: answered, denied (not on http.allow), failed, timed_out",
        None,
        counter,
    )?;
    for p in plugins {
        for outcome in OutboundOutcome::ALL {
            let labels = OutcomeLabels {
                plugin: p.name.to_string(),
                outcome: outcome.as_str(),
            };
            ConstCounter::new(p.outbound().count(outcome))
                .encode(family.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TrialLabels {
    plugin: String,
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    plugin: String,
    version: &'static str,
}

/// A loaded trial version: its plugin's name, what it has seen, and the trial itself.
type TrialSeries = (String, crate::trial::TrialReport, Arc<crate::trial::Trial>);

/// The trial versions' series, for the plugins that have one: a shadow's comparisons by
/// result, a canary's calls and failures by version, the trial version's own traps and
/// deadline hits, shadow calls dropped, and whether a canary was rolled back.
fn encode_trials(
    encoder: &mut DescriptorEncoder,
    plugins: &[Arc<Plugin>],
) -> Result<(), std::fmt::Error> {
    let trials: Vec<TrialSeries> = plugins
        .iter()
        .filter_map(|p| p.trial().map(|t| (p.name.to_string(), t.report(), t)))
        .collect();
    encode_comparisons(encoder, &trials)?;
    encode_versions(encoder, &trials)?;
    encode_trial_plugins(encoder, &trials)
}

/// `routerd_plugin_trial_comparisons`, by plugin and result.
fn encode_comparisons(
    encoder: &mut DescriptorEncoder,
    trials: &[TrialSeries],
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(
        "routerd_plugin_trial_comparisons",
        "A shadow version's calls compared with the live version's answer, by result: agreed, diverged, trial_failed, refused_args",
        None,
        ConstCounter::new(0u64).metric_type(),
    )?;
    for (plugin, r, _) in trials {
        let total = r.total();
        for (result, n) in [
            ("agreed", total.agreed),
            ("diverged", total.diverged),
            ("trial_failed", total.trial_failed),
            ("refused_args", total.refused_args),
        ] {
            let labels = TrialLabels {
                plugin: plugin.clone(),
                result,
            };
            ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

/// A canary's calls and failures, by version (live, trial).
fn encode_versions(
    encoder: &mut DescriptorEncoder,
    trials: &[TrialSeries],
) -> Result<(), std::fmt::Error> {
    type Read = fn(&crate::trial::TrialReport) -> u64;
    let series: [(&str, &str, Read, Read); 2] = [
        (
            "routerd_plugin_trial_calls",
            "Calls answered during a canary, by version: live, trial",
            |r| r.live_calls,
            |r| r.trial_calls,
        ),
        (
            "routerd_plugin_trial_failures",
            "Calls that failed during a canary (traps, deadline, memory, refused results, open breaker), by version",
            |r| r.live_failures,
            |r| r.trial_failures,
        ),
    ];
    for (name, help, live, trial) in series {
        let counter = ConstCounter::new(0u64).metric_type();
        let mut family = encoder.encode_descriptor(name, help, None, counter)?;
        for (plugin, r, _) in trials {
            for (version, n) in [("live", live(r)), ("trial", trial(r))] {
                let labels = VersionLabels {
                    plugin: plugin.clone(),
                    version,
                };
                ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
            }
        }
    }
    Ok(())
}

/// The trial version's own traps and deadline hits, shadow calls dropped, and whether a
/// canary was rolled back, by plugin.
fn encode_trial_plugins(
    encoder: &mut DescriptorEncoder,
    trials: &[TrialSeries],
) -> Result<(), std::fmt::Error> {
    type Read = fn(&TrialSeries) -> u64;
    let counters: [(&str, &str, Read); 3] = [
        (
            "routerd_plugin_trial_traps",
            "Calls the trial version trapped in",
            |(_, _, t)| t.plugin.stats.traps.load(Ordering::Relaxed),
        ),
        (
            "routerd_plugin_trial_deadline_hits",
            "Calls of the trial version stopped at the deadline",
            |(_, _, t)| t.plugin.stats.deadline_hits.load(Ordering::Relaxed),
        ),
        (
            "routerd_plugin_trial_dropped",
            "Calls not shadowed because the shadow's queue was full",
            |(_, r, _)| r.dropped,
        ),
    ];
    for (name, help, read) in counters {
        let counter = ConstCounter::new(0u64).metric_type();
        let mut family = encoder.encode_descriptor(name, help, None, counter)?;
        for series in trials {
            let labels = PluginLabels {
                plugin: series.0.clone(),
            };
            ConstCounter::new(read(series)).encode(family.encode_family(&labels)?)?;
        }
    }
    let mut family = encoder.encode_descriptor(
        "routerd_plugin_trial_rolled_back",
        "1 when a plugin's canary was rolled back",
        None,
        ConstGauge::new(0i64).metric_type(),
    )?;
    for (plugin, r, _) in trials {
        let labels = PluginLabels {
            plugin: plugin.clone(),
        };
        ConstGauge::new(i64::from(r.rolled_back.is_some()))
            .encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

fn labels(p: &Plugin) -> PluginLabels {
    PluginLabels {
        plugin: p.name.to_string(),
    }
}
