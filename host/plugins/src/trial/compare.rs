//! What a shadow's calls are compared by (a predicate's boolean, a filter's request-phase
//! action, or how the call failed), the counts per route, and a few examples of each
//! divergence. An example names the request by method, host, path and query, never a header.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;

use crate::contract::{RequestAction, ResponseEdits};
use crate::plugin::CallFailure;
use routerd_routing::{ExternalRequest, ResponseHead, request_host};

/// Divergent examples kept per route.
const EXAMPLES: usize = 5;

/// What one version answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    /// A predicate's answer.
    Matched(bool),
    /// A filter's request-phase action or response-phase edits, as text (the contract's
    /// types compare by it).
    Action(String),
    /// The call failed, this way.
    Failed(&'static str),
}

/// A phase's answer, as a trial compares it and counts its failures.
pub(crate) trait Answer {
    /// How the call failed, if it did.
    fn failure(&self) -> Option<&CallFailure>;
    /// What is compared with the other version's answer.
    fn verdict(&self) -> Verdict;
}

fn verdict_of<T: std::fmt::Debug>(
    result: &Result<T, CallFailure>,
    ok: fn(&T) -> Verdict,
) -> Verdict {
    match result {
        Ok(v) => ok(v),
        Err(f) => Verdict::Failed(f.kind()),
    }
}

impl Answer for Result<bool, CallFailure> {
    fn failure(&self) -> Option<&CallFailure> {
        self.as_ref().err()
    }

    fn verdict(&self) -> Verdict {
        verdict_of(self, |m| Verdict::Matched(*m))
    }
}

impl Answer for Result<RequestAction, CallFailure> {
    fn failure(&self) -> Option<&CallFailure> {
        self.as_ref().err()
    }

    fn verdict(&self) -> Verdict {
        verdict_of(self, |a| Verdict::Action(format!("{a:?}")))
    }
}

/// A response phase's edits, with the response head handed back.
impl Answer for (Result<ResponseEdits, CallFailure>, ResponseHead) {
    fn failure(&self) -> Option<&CallFailure> {
        self.0.as_ref().err()
    }

    fn verdict(&self) -> Verdict {
        verdict_of(&self.0, |e| Verdict::Action(format!("{e:?}")))
    }
}

impl Verdict {
    fn text(&self) -> String {
        match self {
            Verdict::Matched(m) => m.to_string(),
            Verdict::Action(a) => a.clone(),
            Verdict::Failed(kind) => format!("failed: {kind}"),
        }
    }
}

/// A request in an example.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Example {
    method: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    query: Option<String>,
}

impl Example {
    pub(super) fn of(request: &ExternalRequest) -> Example {
        let parts = &request.parts;
        Example {
            method: parts.method.to_string(),
            host: request_host(&parts.uri, &parts.headers).map(str::to_owned),
            path: request
                .path
                .clone()
                .unwrap_or_else(|| parts.uri.path().to_owned()),
            query: parts.uri.query().map(str::to_owned),
        }
    }
}

/// A call where the two versions answered differently.
#[derive(Debug, Clone, Serialize)]
pub struct Divergence {
    /// The request.
    #[serde(flatten)]
    request: Example,
    /// The live version's answer.
    pub live: String,
    /// The trial version's answer.
    pub trial: String,
}

/// One route's comparisons.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RouteComparison {
    /// Calls both answered alike.
    pub agreed: u64,
    /// Calls they answered differently (a failure on one side only counts here).
    pub diverged: u64,
    /// Calls the trial version failed (trap, deadline, memory, refused result).
    pub trial_failed: u64,
    /// Calls the trial version could not take: it refused the route's args.
    pub refused_args: u64,
    /// A few divergent calls.
    pub examples: Vec<Divergence>,
}

/// Comparisons per route.
#[derive(Default)]
pub(super) struct Comparisons(Mutex<BTreeMap<Arc<str>, RouteComparison>>);

impl Comparisons {
    pub(super) fn record(&self, route: &Arc<str>, live: &Verdict, trial: &Verdict, ex: Example) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let c = map.entry(route.clone()).or_default();
        if matches!(trial, Verdict::Failed(_)) {
            c.trial_failed += 1;
        }
        if live == trial {
            c.agreed += 1;
            return;
        }
        c.diverged += 1;
        if c.examples.len() < EXAMPLES {
            c.examples.push(Divergence {
                request: ex,
                live: live.text(),
                trial: trial.text(),
            });
        }
    }

    pub(super) fn refused(&self, route: &Arc<str>) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry(route.clone()).or_default().refused_args += 1;
    }

    pub(super) fn snapshot(&self) -> BTreeMap<String, RouteComparison> {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }
}

impl TrialReport {
    /// The comparisons summed over every route (without examples).
    pub fn total(&self) -> RouteComparison {
        let mut t = RouteComparison::default();
        for c in self.routes.values() {
            t.agreed += c.agreed;
            t.diverged += c.diverged;
            t.trial_failed += c.trial_failed;
            t.refused_args += c.refused_args;
        }
        t
    }
}

/// What a trial has seen, for the admin API.
#[derive(Debug, Serialize)]
pub struct TrialReport {
    /// `shadow` or `canary N%`.
    pub mode: String,
    /// The trial version's sha256.
    pub sha256: String,
    /// When it was loaded.
    pub started_unix: u64,
    /// Shadow comparisons by route.
    pub routes: BTreeMap<String, RouteComparison>,
    /// Shadow calls dropped because the shadow's queue was full.
    pub dropped: u64,
    /// Shadow calls skipped because the shadow had spent its CPU budget for the second.
    pub over_budget: u64,
    /// Time the shadow spent in its calls, in milliseconds.
    pub shadow_calls_ms: f64,
    /// Calls the live version answered during a canary, and its failures.
    pub live_calls: u64,
    /// The live version's failures during a canary.
    pub live_failures: u64,
    /// Calls the canary answered.
    pub trial_calls: u64,
    /// The canary's failures.
    pub trial_failures: u64,
    /// Why the canary was rolled back, when it was.
    pub rolled_back: Option<String>,
}
