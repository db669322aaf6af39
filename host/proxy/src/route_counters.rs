//! The series of what routes do after choosing, read from the table being served when
//! `/metrics` is scraped (so a request pays nothing for them beyond the atomics it bumps):
//! requests, failures, ejections, requests in flight, whether each is ejected or down, per
//! endpoint; retries by reason, retries the budget refused, rate-limited requests and keys,
//! and mirrored copies by outcome, per route. Counts kept by a route start over when the route
//! changes.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use routerd_plugins::Plugin;
use routerd_routing::endpoints::{EndpointState, Health, now_ms};
use routerd_routing::{PublishedTable, RouteTable};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RetryLabels {
    route: String,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MirrorLabels {
    route: String,
    outcome: &'static str,
}

/// An endpoint series: name, help, reader, whether it is a counter (else a gauge).
type Series = (
    &'static str,
    &'static str,
    fn(&EndpointState, u64) -> u64,
    bool,
);

const SERIES: [Series; 6] = [
    (
        "routerd_endpoint_requests",
        "Requests sent to an endpoint (retries included)",
        |e, _| e.requests(),
        true,
    ),
    (
        "routerd_endpoint_failures",
        "Requests to an endpoint that failed (connect error, reset, timeout; 5xx when its route counts them)",
        |e, _| e.failures.load(Ordering::Relaxed),
        true,
    ),
    (
        "routerd_endpoint_ejections",
        "Times an endpoint was ejected for failing in a row",
        |e, _| e.ejected_total.load(Ordering::Relaxed),
        true,
    ),
    (
        "routerd_endpoint_ejected",
        "1 while an endpoint is ejected",
        |e, now| u64::from(e.ejected_for(now).is_some()),
        false,
    ),
    (
        "routerd_endpoint_down",
        "1 while the active health check finds an endpoint down",
        |e, _| u64::from(e.health() == Health::Down),
        false,
    ),
    (
        "routerd_endpoint_outstanding",
        "Requests in flight to an endpoint",
        |e, _| u64::from(e.outstanding()),
        false,
    ),
];

/// The endpoints of the table `published` serves at each scrape.
pub struct RouteCounters(pub Arc<PublishedTable<Plugin>>);

impl std::fmt::Debug for RouteCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RouteCounters")
    }
}

impl Collector for RouteCounters {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let table = self.0.current();
        let now = now_ms();
        // Each endpoint once, however many routes name it.
        let mut seen = HashSet::new();
        let endpoints: Vec<&Arc<EndpointState>> = table
            .routes()
            .flat_map(|r| r.backends.iter().flat_map(|b| b.endpoints.iter()))
            .map(|e| &e.state)
            .filter(|s| seen.insert(s.key.clone()))
            .collect();
        for (name, help, read, counter) in SERIES {
            let kind = if counter {
                ConstCounter::new(0u64).metric_type()
            } else {
                ConstGauge::new(0i64).metric_type()
            };
            let mut family = encoder.encode_descriptor(name, help, None, kind)?;
            for e in &endpoints {
                let labels = EndpointLabels {
                    endpoint: e.key.to_string(),
                };
                let value = read(e, now);
                if counter {
                    ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
                } else {
                    ConstGauge::new(value as i64).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        let with_retries: Vec<_> = table
            .routes()
            .filter_map(|r| Some((r.name.clone(), r.backends.as_ref()?)))
            .filter(|(_, b)| b.retry.is_some())
            .collect();
        let counter = ConstCounter::new(0u64).metric_type();
        let mut family = encoder.encode_descriptor(
            "routerd_retries",
            "Retries of failed requests, by route and reason (connect, reset, timeout, 502, 503, 504); counted from the route's last change",
            None,
            counter,
        )?;
        for (route, b) in &with_retries {
            for (reason, n) in b.retries() {
                let labels = RetryLabels {
                    route: route.to_string(),
                    reason,
                };
                ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "routerd_retry_budget_exhausted",
            "Retries not made because the route's retry budget was used up",
            None,
            counter,
        )?;
        for (route, b) in &with_retries {
            let labels = RouteLabels {
                route: route.to_string(),
            };
            ConstCounter::new(b.budget_exhausted()).encode(family.encode_family(&labels)?)?;
        }
        encode_limits_and_mirrors(&mut encoder, &table)
    }
}

/// `routerd_rate_limited_requests`, `routerd_rate_limit_keys` and `routerd_mirror_requests`.
fn encode_limits_and_mirrors(
    encoder: &mut DescriptorEncoder,
    table: &RouteTable<Plugin>,
) -> Result<(), std::fmt::Error> {
    let counter = ConstCounter::new(0u64).metric_type();
    let limited: Vec<_> = table
        .routes()
        .filter_map(|r| Some((r.name.to_string(), r.rate_limit.as_ref()?)))
        .collect();
    let mut family = encoder.encode_descriptor(
        "routerd_rate_limited_requests",
        "Requests answered 429 by the route's rate limit",
        None,
        counter,
    )?;
    for (route, l) in &limited {
        let labels = RouteLabels {
            route: route.clone(),
        };
        ConstCounter::new(l.limited.load(Ordering::Relaxed))
            .encode(family.encode_family(&labels)?)?;
    }
    let mut family = encoder.encode_descriptor(
        "routerd_rate_limit_keys",
        "Keys (clients) a route's rate limit holds a bucket for",
        None,
        ConstGauge::new(0i64).metric_type(),
    )?;
    for (route, l) in &limited {
        let labels = RouteLabels {
            route: route.clone(),
        };
        ConstGauge::new(l.keys() as i64).encode(family.encode_family(&labels)?)?;
    }
    let mut family = encoder.encode_descriptor(
        "routerd_mirror_requests",
        "Copies of requests for a route's mirror, by outcome: sent, dropped (queue full, or a body too large to copy), failed (at the mirror)",
        None,
        counter,
    )?;
    for r in table.routes() {
        let Some(m) = &r.mirror else { continue };
        for (outcome, n) in [
            ("sent", m.sent.load(Ordering::Relaxed)),
            ("dropped", m.dropped.load(Ordering::Relaxed)),
            ("failed", m.failed.load(Ordering::Relaxed)),
        ] {
            let labels = MirrorLabels {
                route: r.name.to_string(),
                outcome,
            };
            ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
        }
    }
    Ok(())
}
