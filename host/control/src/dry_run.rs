//! Dry runs: what a planned change would do to real traffic. Every request head in the sample
//! is decided by the table being served and by the table the change would serve (plugin
//! predicates included, under their deadlines, on the control runtime), and the answer groups
//! the requests whose outcome moves, by where they went and where they would go, with a few
//! examples each. It also names the routes that sampled requests reach now and would not reach
//! any more, and the routes of the new table that no request can reach at all.
//!
//! Sealed secrets are replayed as well as they can be: a sealed value equal to the sealed form
//! of some exact `header` or `cookie` matcher's value is replayed as that value, so equality
//! matchers decide as they did live. A head whose sealed value meets a regex matcher on the same
//! header or cookie cannot be replayed faithfully and is counted as `uncertain`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use http::header::COOKIE;
use http::{HeaderName, HeaderValue};
use serde::Serialize;

use crate::routeset::ApplySummary;
use routerd_plugins::Plugin;
use routerd_proxy::sample::{SEALED_PREFIX, SampleStats, SampledHead, Seal};
use routerd_routing::matchers::{Matcher, ValueMatch};
use routerd_routing::{Decision, RouteTable, SharedHead};

/// Examples kept per group of moved requests.
const EXAMPLES: usize = 3;
/// Heads replayed between yields to the control runtime.
const YIELD_EVERY: usize = 256;

/// Where a request goes: a route and its target, or routerd's own answer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Outcome {
    /// The route, or routerd's answer in parentheses: `(404)`, `(405)`, `(406)`, `(415)`,
    /// `(redirect)`, `(options)`, `(default_url)`, `(503 overloaded)`, `(body not sampled)`.
    pub route: String,
    /// The route's backend(s), when it has any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// A request in an example: what identifies it, never its headers.
#[derive(Debug, Serialize)]
pub struct Example {
    /// The method.
    pub method: String,
    /// The host, when it had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The path.
    pub path: String,
    /// The query, when it had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// When it was seen (ms since the Unix epoch).
    pub seen_unix_ms: u64,
}

/// Sampled requests whose outcome would move from one place to another.
#[derive(Debug, Serialize)]
pub struct MovedGroup {
    /// Where they go now.
    pub from: Outcome,
    /// Where they would go.
    pub to: Outcome,
    /// How many.
    pub count: usize,
    /// A few of them.
    pub examples: Vec<Example>,
}

/// A route no request can reach.
#[derive(Debug, Serialize)]
pub struct Unreachable {
    /// The route.
    pub route: String,
    /// The route before it that matches every request it matches.
    pub shadowed_by: String,
    /// Whether the change makes it so (false: it is unreachable in the table served now too).
    pub new: bool,
}

/// Sampled requests that reach a route the change updates, without moving.
#[derive(Debug, Serialize)]
pub struct Reaching {
    /// The route.
    pub route: String,
    /// How many.
    pub count: usize,
}

/// The answer to a dry run.
#[derive(Debug, Serialize)]
pub struct DryRunReport {
    /// Always true: nothing was changed.
    pub dry_run: bool,
    /// The routes the change would create, update and delete.
    pub change: ApplySummary,
    /// The sample replayed (`null` when sampling is off: nothing could be replayed).
    pub sample: Option<SampleStats>,
    /// Sampled requests replayed.
    pub replayed: usize,
    /// Of them, those whose outcome would move.
    pub moved: usize,
    /// The moved requests, grouped, most first.
    pub groups: Vec<MovedGroup>,
    /// Routes that sampled requests reach now and would not reach any more (routes the change
    /// deletes are not listed: their requests are in `groups`).
    pub no_longer_reached: Vec<String>,
    /// Sampled requests that reach an updated route and stay on it.
    pub reaching_updated: Vec<Reaching>,
    /// Routes of the new table no request can reach.
    pub unreachable: Vec<Unreachable>,
    /// Heads whose sealed secrets met a regex matcher: their replay may differ from live.
    pub uncertain: usize,
    /// How long the replay took, in milliseconds.
    pub took_ms: u64,
}

/// Replays `heads` through `served` (the table being served) and `table` (the one a plan
/// would serve), both built with plugin replicas ([`RouteSet::replay_tables`]).
///
/// [`RouteSet::replay_tables`]: crate::routeset::RouteSet::replay_tables
pub async fn replay(
    (served, table): (&RouteTable<Plugin>, &RouteTable<Plugin>),
    summary: ApplySummary,
    heads: &[Arc<SampledHead>],
    seal: Option<&Seal>,
    sample: Option<SampleStats>,
) -> DryRunReport {
    let started = Instant::now();
    let unsealing = seal.map(|s| Unsealing::new(s, &[served, table]));
    let mut groups: BTreeMap<(Outcome, Outcome), MovedGroup> = BTreeMap::new();
    let mut reached_before: HashMap<String, usize> = HashMap::new();
    let mut reached_after: HashSet<String> = HashSet::new();
    let mut reaching_updated: BTreeMap<String, usize> = BTreeMap::new();
    let (mut moved, mut uncertain) = (0, 0);
    for (i, sampled) in heads.iter().enumerate() {
        if i % YIELD_EVERY == YIELD_EVERY - 1 {
            tokio::task::yield_now().await;
        }
        let (head, doubtful) = match &unsealing {
            Some(u) => u.head(&sampled.head),
            None => (sampled.head.clone(), false),
        };
        uncertain += usize::from(doubtful);
        let body = sampled.buffered();
        let view = head.view(body.as_ref());
        let before = outcome(served, served.decide_with_predicates(&view).await);
        let after = outcome(table, table.decide_with_predicates(&view).await);
        *reached_before.entry(before.route.clone()).or_default() += 1;
        reached_after.insert(after.route.clone());
        if before == after {
            if summary.updated.contains(&after.route) {
                *reaching_updated.entry(after.route).or_default() += 1;
            }
            continue;
        }
        moved += 1;
        let group = groups
            .entry((before.clone(), after.clone()))
            .or_insert_with(|| MovedGroup {
                from: before,
                to: after,
                count: 0,
                examples: Vec::new(),
            });
        group.count += 1;
        if group.examples.len() < EXAMPLES {
            group.examples.push(example(sampled));
        }
    }
    let kept: HashSet<&str> = table.routes().map(|r| &*r.name).collect();
    let mut no_longer_reached: Vec<String> = reached_before
        .into_keys()
        .filter(|r| !reached_after.contains(r) && kept.contains(r.as_str()))
        .collect();
    no_longer_reached.sort();
    let mut groups: Vec<MovedGroup> = groups.into_values().collect();
    groups.sort_by_key(|g| std::cmp::Reverse(g.count));
    DryRunReport {
        dry_run: true,
        change: summary,
        sample,
        replayed: heads.len(),
        moved,
        groups,
        no_longer_reached,
        reaching_updated: reaching_updated
            .into_iter()
            .map(|(route, count)| Reaching { route, count })
            .collect(),
        unreachable: unreachable(served, table),
        uncertain,
        took_ms: started.elapsed().as_millis() as u64,
    }
}

/// The new table's unreachable routes, each marked new unless the served table has it too.
fn unreachable(served: &RouteTable<Plugin>, table: &RouteTable<Plugin>) -> Vec<Unreachable> {
    let named = |t: &RouteTable<Plugin>, (route, by): (u32, u32)| {
        (
            t.route(route).name.to_string(),
            t.route(by).name.to_string(),
        )
    };
    let before: HashSet<String> = served
        .shadowed()
        .into_iter()
        .map(|pair| named(served, pair).0)
        .collect();
    table
        .shadowed()
        .into_iter()
        .map(|pair| {
            let (route, shadowed_by) = named(table, pair);
            Unreachable {
                new: !before.contains(&route),
                route,
                shadowed_by,
            }
        })
        .collect()
}

/// Where a decision sends a request.
fn outcome(table: &RouteTable<Plugin>, decision: Decision) -> Outcome {
    let answer = |text: &str| Outcome {
        route: text.to_owned(),
        target: None,
    };
    match decision {
        Decision::Route(id) => {
            let rule = &table.route(id).rule;
            let target = match &rule.target_url {
                Some(url) => Some(url.clone()),
                None if !rule.targets.is_empty() => Some(
                    rule.targets
                        .iter()
                        .map(|t| t.url.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
                None => None,
            };
            Outcome {
                route: rule.name.clone(),
                target,
            }
        }
        Decision::DefaultUrl => Outcome {
            route: "(default_url)".to_owned(),
            target: table
                .default_url()
                .map(|t| format!("{}://{}{}", t.scheme, t.authority, t.base_path)),
        },
        Decision::NeedBody => answer("(body not sampled)"),
        Decision::NeedPredicates { .. } => answer("(predicates not run)"),
        Decision::Redirect(..) => answer("(redirect)"),
        Decision::MethodNotAllowed(_) => answer("(405)"),
        Decision::Options(_) => answer("(options)"),
        Decision::UnsupportedMediaType(_) => answer("(415)"),
        Decision::NotAcceptable(_) => answer("(406)"),
        Decision::NotFound => answer("(404)"),
        Decision::Overloaded { .. } => answer("(503 overloaded)"),
    }
}

fn example(sampled: &SampledHead) -> Example {
    let parts = &sampled.head.parts;
    Example {
        method: parts.method.to_string(),
        host: routerd_routing::request_host(&parts.uri, &parts.headers).map(str::to_owned),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        seen_unix_ms: sampled.unix_ms,
    }
}

/// Sealed values the two tables' exact matchers compare against, in clear, and the headers
/// and cookies that some regex matcher reads.
struct Unsealing<'a> {
    seal: &'a Seal,
    clear: HashMap<String, String>,
    regex_headers: HashSet<HeaderName>,
    regex_cookies: HashSet<String>,
}

impl<'a> Unsealing<'a> {
    fn new(seal: &'a Seal, tables: &[&RouteTable<Plugin>]) -> Self {
        let mut u = Unsealing {
            seal,
            clear: HashMap::new(),
            regex_headers: HashSet::new(),
            regex_cookies: HashSet::new(),
        };
        for route in tables.iter().flat_map(|t| t.routes()) {
            for (_, m) in &route.matchers {
                match m {
                    Matcher::Header(name, value) if seal.covers(name) => match value {
                        ValueMatch::Exact(v) => u.learn(v),
                        ValueMatch::Regex(_) => {
                            u.regex_headers.insert(name.clone());
                        }
                    },
                    Matcher::Cookie(name, value) if seal.covers(&COOKIE) => match value {
                        ValueMatch::Exact(v) => u.learn(v),
                        ValueMatch::Regex(_) => {
                            u.regex_cookies.insert(name.to_string());
                        }
                    },
                    _ => {}
                }
            }
        }
        u
    }

    fn learn(&mut self, value: &str) {
        self.clear
            .insert(self.seal.seal(value.as_bytes()), value.to_owned());
    }

    /// The head to replay: sealed values an exact matcher knows put back in clear; and
    /// whether a sealed value is left where a regex matcher reads it.
    fn head(&self, sampled: &SharedHead) -> (SharedHead, bool) {
        let mut parts = (*sampled.parts).clone();
        let mut doubtful = false;
        for (name, value) in parts.headers.iter_mut() {
            if !self.seal.covers(name) {
                continue;
            }
            let Ok(text) = value.to_str() else { continue };
            let replayed = if *name == COOKIE {
                let pairs: Vec<String> = text
                    .split(';')
                    .map(|pair| match pair.split_once('=') {
                        Some((k, v)) => {
                            let (k, v) = (k.trim(), v.trim());
                            match self.clear.get(v) {
                                Some(clear) => format!("{k}={clear}"),
                                None => {
                                    doubtful |= self.regex_cookies.contains(k)
                                        && v.starts_with(SEALED_PREFIX);
                                    format!("{k}={v}")
                                }
                            }
                        }
                        None => pair.trim().to_owned(),
                    })
                    .collect();
                pairs.join("; ")
            } else {
                match self.clear.get(text) {
                    Some(clear) => clear.clone(),
                    None => {
                        doubtful |= self.regex_headers.contains(name);
                        continue;
                    }
                }
            };
            if let Ok(v) = HeaderValue::from_str(&replayed) {
                *value = v;
            }
        }
        let head = SharedHead {
            parts: Arc::new(parts),
            remote: sampled.remote,
            scheme: sampled.scheme,
        };
        (head, doubtful)
    }
}
