//! The live view: requests per second and p99 latency by route over the last five minutes,
//! sampled from the request metrics every two seconds, for the dashboard's charts and its
//! routes table. A sample keeps only the routes that had traffic in it, so a large idle table
//! costs nothing here, and nothing is added to the request path: the sampler reads the same
//! per-thread counters a Prometheus scrape reads.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use routerd_proxy::metrics::{LATENCY_BUCKETS, Metrics, RouteTotals, bucket_bound};

/// How often the counters are sampled.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(2);
/// How far back the view goes.
pub const WINDOW: Duration = Duration::from_secs(300);
/// How far back the routes table's summary goes.
const SUMMARY_WINDOW: Duration = Duration::from_secs(60);

/// Requests per latency bucket in one sample (differences fit easily in 32 bits).
type Deltas = [u32; LATENCY_BUCKETS];

struct Sample {
    unix_ms: u64,
    /// Seconds since the sample before.
    secs: f64,
    /// The routes that had traffic, with their requests by latency bucket, sorted by name.
    routes: Vec<(Arc<str>, Deltas)>,
}

impl Sample {
    fn get(&self, route: &str) -> Option<&Deltas> {
        self.routes
            .binary_search_by(|(name, _)| (**name).cmp(route))
            .ok()
            .map(|i| &self.routes[i].1)
    }
}

/// The samples, and running aggregates over them kept as samples come and go, so answering
/// costs in proportion to the routes asked for, not to routes times samples.
#[derive(Default)]
struct Ring {
    /// Each route's totals at the last sample.
    last: HashMap<Arc<str>, [u64; LATENCY_BUCKETS]>,
    last_at: Option<Instant>,
    samples: VecDeque<Sample>,
    /// Each route with traffic in the window: in how many samples.
    seen: HashMap<Arc<str>, usize>,
    /// Each route's requests by latency bucket over the last minute's samples.
    minute: HashMap<Arc<str>, [u64; LATENCY_BUCKETS]>,
}

/// How many samples the window and the summary hold.
const WINDOW_SAMPLES: usize = (WINDOW.as_millis() / SAMPLE_INTERVAL.as_millis()) as usize;
const SUMMARY_SAMPLES: usize = (SUMMARY_WINDOW.as_millis() / SAMPLE_INTERVAL.as_millis()) as usize;

/// See the module docs.
pub struct LiveView {
    metrics: Arc<Metrics>,
    ring: Mutex<Ring>,
}

/// One route over the window, oldest first, one point per sample.
#[derive(Debug, Serialize, PartialEq)]
pub struct RouteSeries {
    /// Requests per second (empty for a summary).
    pub rps: Vec<f64>,
    /// The 99th percentile of the time to the response head, in milliseconds; `None` where
    /// the route had no traffic.
    pub p99_ms: Vec<Option<f64>>,
    /// Requests per second over the last minute.
    pub rps_1m: f64,
    /// p99 over the last minute.
    pub p99_ms_1m: Option<f64>,
}

/// Which routes `GET /api/v1/live` answers for, and how much of each.
#[derive(Debug, Default, Clone)]
pub struct LiveQuery {
    /// Only these routes (`route=NAME`, repeatable); all when empty.
    pub routes: Vec<String>,
    /// Only routes whose name contains this, ignoring ASCII case (`contains=TEXT`).
    pub contains: Option<String>,
    /// Only the `N` busiest over the last minute (`top=N`).
    pub top: Option<usize>,
    /// The last minute's figures only, no series (`summary=true`).
    pub summary: bool,
}

/// What `GET /api/v1/live` answers.
#[derive(Debug, Serialize)]
pub struct LiveDoc {
    /// Milliseconds between samples.
    pub interval_ms: u64,
    /// Seconds the view covers.
    pub window_s: u64,
    /// Each sample's time, Unix milliseconds, oldest first (empty for a summary).
    pub times: Vec<u64>,
    /// The routes asked for that had traffic in the window.
    pub routes: BTreeMap<String, RouteSeries>,
}

impl LiveView {
    /// A view over `metrics`, sampled every [`SAMPLE_INTERVAL`] by a task on the current
    /// runtime.
    pub fn start(metrics: Arc<Metrics>) -> Arc<Self> {
        let view = Arc::new(LiveView::new(metrics));
        let weak = Arc::downgrade(&view);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(SAMPLE_INTERVAL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(view) = weak.upgrade() else { return };
                view.sample();
            }
        });
        view
    }

    /// A view that samples only when told to.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        LiveView {
            metrics,
            ring: Mutex::default(),
        }
    }

    /// Takes a sample now.
    pub fn sample(&self) {
        let totals = self.metrics.route_totals();
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        ring.record(totals, Instant::now(), unix_ms());
    }

    /// The window as the dashboard reads it, narrowed by `query`.
    pub fn doc(&self, query: &LiveQuery) -> LiveDoc {
        let ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        ring.doc(query)
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Ring {
    fn record(&mut self, totals: Vec<RouteTotals>, now: Instant, unix_ms: u64) {
        let mut next = HashMap::with_capacity(totals.len());
        let mut routes = Vec::new();
        for t in totals {
            let before = self.last.get(&t.route);
            // A series that went backwards was dropped and begun again (its route left the
            // table and came back): everything in it is new.
            let restarted =
                before.is_some_and(|b| b.iter().sum::<u64>() > t.buckets.iter().sum::<u64>());
            let mut deltas = [0u32; LATENCY_BUCKETS];
            let mut any = false;
            for (i, d) in deltas.iter_mut().enumerate() {
                let prev = if restarted {
                    0
                } else {
                    before.map_or(0, |b| b[i])
                };
                let diff = t.buckets[i].saturating_sub(prev);
                *d = u32::try_from(diff).unwrap_or(u32::MAX);
                any |= diff > 0;
            }
            if any {
                routes.push((t.route.clone(), deltas));
            }
            next.insert(t.route, t.buckets);
        }
        // The metrics list routes by name already; sorting again costs nothing then.
        routes.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        self.last = next;
        let Some(last_at) = self.last_at.replace(now) else {
            // The first sample only sets the baseline: what came before it is not a rate.
            return;
        };
        let secs = now.duration_since(last_at).as_secs_f64().max(1e-3);
        for (name, deltas) in &routes {
            *self.seen.entry(name.clone()).or_default() += 1;
            let sum = self.minute.entry(name.clone()).or_default();
            for (a, d) in sum.iter_mut().zip(deltas) {
                *a += u64::from(*d);
            }
        }
        self.samples.push_back(Sample {
            unix_ms,
            secs,
            routes,
        });
        // The sample that has just left the last minute.
        if let Some(old) = self
            .samples
            .len()
            .checked_sub(SUMMARY_SAMPLES + 1)
            .and_then(|i| self.samples.get(i))
        {
            for (name, deltas) in &old.routes {
                if let Some(sum) = self.minute.get_mut(name) {
                    for (a, d) in sum.iter_mut().zip(deltas) {
                        *a = a.saturating_sub(u64::from(*d));
                    }
                    if sum.iter().all(|n| *n == 0) {
                        self.minute.remove(name);
                    }
                }
            }
        }
        while self.samples.len() > WINDOW_SAMPLES {
            let Some(old) = self.samples.pop_front() else {
                break;
            };
            for (name, _) in &old.routes {
                if let Some(count) = self.seen.get_mut(name) {
                    *count -= 1;
                    if *count == 0 {
                        self.seen.remove(name);
                    }
                }
            }
        }
    }

    fn doc(&self, query: &LiveQuery) -> LiveDoc {
        let n = self.samples.len();
        let summary_secs: f64 = self
            .samples
            .iter()
            .skip(n.saturating_sub(SUMMARY_SAMPLES))
            .map(|s| s.secs)
            .sum();
        const NONE: [u64; LATENCY_BUCKETS] = [0; LATENCY_BUCKETS];
        let minute = |name: &str| self.minute.get(name).unwrap_or(&NONE);
        let rps_1m = |name: &str| minute(name).iter().sum::<u64>() as f64 / summary_secs.max(1e-3);
        let needle = query.contains.as_ref().map(|c| c.to_ascii_lowercase());
        // The routes are chosen before any series is built, so a narrow question about a
        // large table stays cheap.
        let mut chosen: Vec<&str> = self
            .seen
            .keys()
            .map(|name| &**name)
            .filter(|name| query.routes.is_empty() || query.routes.iter().any(|r| r == name))
            .filter(|name| {
                needle
                    .as_ref()
                    .is_none_or(|c| name.to_ascii_lowercase().contains(c.as_str()))
            })
            .collect();
        if let Some(top) = query.top {
            let mut ranked: Vec<(f64, &str)> =
                chosen.iter().map(|name| (rps_1m(name), *name)).collect();
            ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
            chosen = ranked.into_iter().take(top).map(|(_, name)| name).collect();
        }
        let mut routes: BTreeMap<String, RouteSeries> = chosen
            .iter()
            .map(|name| {
                let series = RouteSeries {
                    rps: Vec::new(),
                    p99_ms: Vec::new(),
                    rps_1m: rps_1m(name),
                    p99_ms_1m: quantile_ms(minute(name).iter().copied(), 0.99),
                };
                ((*name).to_owned(), series)
            })
            .collect();
        if !query.summary {
            let point = |deltas: &Deltas, secs: f64| {
                let count: u64 = deltas.iter().map(|d| u64::from(*d)).sum();
                let p99 = quantile_ms(deltas.iter().map(|d| u64::from(*d)), 0.99);
                (count as f64 / secs, p99)
            };
            for (name, series) in routes.iter_mut() {
                series.rps = vec![0.0; n];
                series.p99_ms = vec![None; n];
                if chosen.len() <= 64 {
                    // A few routes: look each up in each sample.
                    for (i, sample) in self.samples.iter().enumerate() {
                        if let Some(deltas) = sample.get(name) {
                            (series.rps[i], series.p99_ms[i]) = point(deltas, sample.secs);
                        }
                    }
                }
            }
            if chosen.len() > 64 {
                // Many: walk each sample once instead.
                for (i, sample) in self.samples.iter().enumerate() {
                    for (name, deltas) in &sample.routes {
                        if let Some(series) = routes.get_mut(&**name) {
                            (series.rps[i], series.p99_ms[i]) = point(deltas, sample.secs);
                        }
                    }
                }
            }
        }
        LiveDoc {
            interval_ms: u64::try_from(SAMPLE_INTERVAL.as_millis()).unwrap_or(u64::MAX),
            window_s: WINDOW.as_secs(),
            times: if query.summary {
                Vec::new()
            } else {
                self.samples.iter().map(|s| s.unix_ms).collect()
            },
            routes,
        }
    }
}

/// The `q` quantile of a latency histogram (requests per bucket, not cumulative), in
/// milliseconds, interpolated linearly inside its bucket as Prometheus's
/// `histogram_quantile` does; a quantile in the +Inf bucket is reported as the largest finite
/// bound. `None` for an empty histogram.
fn quantile_ms(buckets: impl Iterator<Item = u64> + Clone, q: f64) -> Option<f64> {
    let total: u64 = buckets.clone().sum();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut below = 0u64;
    for (i, count) in buckets.enumerate() {
        if count > 0 && (below + count) as f64 >= rank {
            let upper = bucket_bound(i);
            let lower = if i == 0 { 0.0 } else { bucket_bound(i - 1) };
            if upper.is_infinite() {
                return Some(lower * 1000.0);
            }
            let into = (rank - below as f64) / count as f64;
            return Some((lower + (upper - lower) * into) * 1000.0);
        }
        below += count;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(route: &str, buckets: &[(usize, u64)]) -> RouteTotals {
        let mut b = [0u64; LATENCY_BUCKETS];
        for (i, n) in buckets {
            b[*i] = *n;
        }
        RouteTotals {
            route: Arc::from(route),
            buckets: b,
        }
    }

    #[test]
    fn quantile_interpolates_inside_the_bucket() {
        // 100 requests in bucket 1 (100-200 µs): p99 is 99% of the way through it.
        let mut b = [0u64; LATENCY_BUCKETS];
        b[1] = 100;
        let p99 = quantile_ms(b.iter().copied(), 0.99).unwrap_or_default();
        assert!((p99 - 0.199).abs() < 1e-9, "{p99}");
        // One slow request in 100 does not move p99 out of the fast bucket; two do.
        b[1] = 99;
        b[5] = 1;
        let p99 = quantile_ms(b.iter().copied(), 0.99).unwrap_or_default();
        assert!(p99 <= 0.2, "{p99}");
        b[1] = 98;
        b[5] = 2;
        let p99 = quantile_ms(b.iter().copied(), 0.99).unwrap_or_default();
        assert!(p99 > 1.6 && p99 <= 3.2, "{p99}");
        assert_eq!(quantile_ms([0u64; 3].iter().copied(), 0.99), None);
        // All in +Inf: the largest finite bound.
        let mut b = [0u64; LATENCY_BUCKETS];
        b[LATENCY_BUCKETS - 1] = 3;
        let top = bucket_bound(LATENCY_BUCKETS - 2) * 1000.0;
        assert_eq!(quantile_ms(b.iter().copied(), 0.99), Some(top));
    }

    #[test]
    fn samples_hold_differences_per_second_and_only_busy_routes() {
        let mut ring = Ring::default();
        let t0 = Instant::now();
        ring.record(
            vec![totals("a", &[(0, 10)]), totals("b", &[(0, 5)])],
            t0,
            1000,
        );
        assert!(
            ring.samples.is_empty(),
            "the first sample is only a baseline"
        );
        let t1 = t0 + Duration::from_secs(2);
        ring.record(
            vec![totals("a", &[(0, 30)]), totals("b", &[(0, 5)])],
            t1,
            3000,
        );
        let doc = ring.doc(&LiveQuery::default());
        assert_eq!(doc.times, vec![3000]);
        let a = &doc.routes["a"];
        assert!((a.rps[0] - 10.0).abs() < 1e-9, "{:?}", a.rps);
        assert!(a.p99_ms[0].is_some_and(|p| p > 0.0 && p <= 0.1));
        assert!((a.rps_1m - 10.0).abs() < 1e-9);
        assert!(
            !doc.routes.contains_key("b"),
            "b had no traffic in the window"
        );
    }

    #[test]
    fn a_series_that_restarts_counts_from_zero() {
        let mut ring = Ring::default();
        let t0 = Instant::now();
        ring.record(vec![totals("a", &[(0, 100)])], t0, 0);
        // The route left the table (series dropped) and came back with 4 requests.
        ring.record(
            vec![totals("a", &[(0, 4)])],
            t0 + Duration::from_secs(2),
            2000,
        );
        let doc = ring.doc(&LiveQuery::default());
        assert!((doc.routes["a"].rps[0] - 2.0).abs() < 1e-9);
    }

    #[test]
    fn the_window_keeps_five_minutes() {
        let mut ring = Ring::default();
        let t0 = Instant::now();
        for i in 0..400u64 {
            ring.record(
                vec![totals("a", &[(0, i)])],
                t0 + SAMPLE_INTERVAL * u32::try_from(i).unwrap_or(0),
                i,
            );
        }
        let doc = ring.doc(&LiveQuery::default());
        assert_eq!(doc.times.len(), 150);
        assert_eq!(doc.routes["a"].rps.len(), 150);
        // Points without traffic are zero, not missing, so every series lines up with `times`.
        assert_eq!(doc.times.first(), Some(&250));
    }

    #[test]
    fn the_running_aggregates_match_the_samples_as_they_come_and_go() {
        let mut ring = Ring::default();
        let t0 = Instant::now();
        let mut cumulative = [0u64; 3];
        for i in 0..400u64 {
            // Route r is busy in rounds where (i / 37 + r) is even: routes come and go.
            let names = ["a", "b", "c"];
            for (r, c) in cumulative.iter_mut().enumerate() {
                if (i / 37 + r as u64).is_multiple_of(2) {
                    *c += 1 + (i * 7 + r as u64) % 5;
                }
            }
            let totals = names
                .iter()
                .zip(cumulative)
                .map(|(n, c)| totals(n, &[(0, c)]))
                .collect();
            ring.record(
                totals,
                t0 + SAMPLE_INTERVAL * u32::try_from(i).unwrap_or(0),
                i,
            );
            // Against a count made from the samples themselves.
            for name in names {
                let in_window = ring
                    .samples
                    .iter()
                    .filter(|s| s.get(name).is_some())
                    .count();
                assert_eq!(
                    ring.seen.get(name).copied().unwrap_or(0),
                    in_window,
                    "{i} {name}"
                );
                let minute: u64 = ring
                    .samples
                    .iter()
                    .rev()
                    .take(SUMMARY_SAMPLES)
                    .filter_map(|s| s.get(name))
                    .map(|d| d.iter().map(|x| u64::from(*x)).sum::<u64>())
                    .sum();
                let kept: u64 = ring.minute.get(name).map_or(0, |m| m.iter().sum());
                assert_eq!(kept, minute, "{i} {name}");
            }
        }
    }

    #[test]
    fn a_query_narrows_the_routes_before_series_are_built() {
        let mut ring = Ring::default();
        let t0 = Instant::now();
        let busy = |a: u64, b: u64, c: u64| {
            vec![
                totals("api-a", &[(0, a)]),
                totals("api-b", &[(0, b)]),
                totals("web", &[(0, c)]),
            ]
        };
        ring.record(busy(0, 0, 0), t0, 0);
        ring.record(busy(10, 40, 20), t0 + Duration::from_secs(2), 2000);
        let names = |q: LiveQuery| ring.doc(&q).routes.into_keys().collect::<Vec<_>>();
        let top = LiveQuery {
            top: Some(2),
            ..LiveQuery::default()
        };
        assert_eq!(names(top), ["api-b", "web"]);
        let api = LiveQuery {
            contains: Some("API".into()),
            top: Some(1),
            ..LiveQuery::default()
        };
        assert_eq!(names(api), ["api-b"]);
        let one = LiveQuery {
            routes: vec!["web".into()],
            ..LiveQuery::default()
        };
        let doc = ring.doc(&one);
        assert_eq!(doc.routes["web"].rps, [10.0]);
        let summary = ring.doc(&LiveQuery {
            summary: true,
            ..LiveQuery::default()
        });
        assert!(summary.times.is_empty() && summary.routes["api-a"].rps.is_empty());
        assert!((summary.routes["api-a"].rps_1m - 5.0).abs() < 1e-9);
    }
}
