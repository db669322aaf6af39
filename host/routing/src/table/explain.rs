//! Explaining a decision (the admin API's `match`): every candidate route considered, in
//! decision order, with the matcher that failed.

use super::predicates::PredicateOverloaded;
use super::{Decision, RouteTable};
use crate::external::External;
use crate::matchers::PathMatch;
use crate::media;
use crate::request::RequestView;
use crate::route::Route;
use crate::tree::Candidates;

/// One candidate route in an [`Explanation`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct CandidateResult {
    /// The route's name.
    pub route: String,
    /// `matched` or `failed`.
    pub result: &'static str,
    /// The first matcher that failed, e.g. `matchers[1] (header x-tier)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
}

/// Why a request gets the answer it gets: the decision, and every candidate route considered
/// on the way in decision order, with the matcher that failed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Explanation {
    /// `route`, `need_body`, `default_url`, `redirect`, `method_not_allowed`, `options`,
    /// `unsupported_media_type`, `not_acceptable`, `not_found` or `overloaded` (the detail
    /// names the plugin routerd had no capacity to run).
    pub decision: &'static str,
    /// The chosen route, for `route`.
    pub route: Option<String>,
    /// The redirect target or the `Allow` list, where there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The candidates, in the order they were considered.
    pub candidates: Vec<CandidateResult>,
}

impl<X: External> RouteTable<X> {
    /// Explains the decision for `req` (the admin API's `match`). Plugin predicates run.
    pub async fn explain(&self, req: &RequestView<'_>) -> Explanation {
        let mut cands = Candidates::new();
        self.index.candidates(req.path, &mut cands);
        let mut ids: Vec<u32> = cands
            .into_iter()
            .chain(self.unindexed.iter().copied())
            .collect();
        ids.sort_unstable();
        let mut candidates = Vec::new();
        for id in ids {
            let route = &self.routes[id as usize];
            let failed = self.first_failure(id, route, req).await;
            let matched = failed.is_none();
            candidates.push(CandidateResult {
                route: route.name.to_string(),
                result: if matched { "matched" } else { "failed" },
                failed,
            });
            if matched {
                break;
            }
        }
        let (decision, route, detail) = match self.decide_with_predicates(req).await {
            Decision::Route(id) => ("route", Some(self.route(id).name.to_string()), None),
            Decision::NeedBody | Decision::NeedPredicates { .. } => ("need_body", None, None),
            Decision::DefaultUrl => ("default_url", None, None),
            Decision::Redirect(status, location) => (
                "redirect",
                None,
                Some(format!("{} {location}", status.as_u16())),
            ),
            Decision::MethodNotAllowed(allow) => ("method_not_allowed", None, Some(allow)),
            Decision::Options(allow) => ("options", None, Some(allow)),
            Decision::UnsupportedMediaType(types) => ("unsupported_media_type", None, Some(types)),
            Decision::NotAcceptable(types) => ("not_acceptable", None, Some(types)),
            Decision::NotFound => ("not_found", None, None),
            Decision::Overloaded { route, plugin } => (
                "overloaded",
                Some(self.route(route).name.to_string()),
                Some(plugin),
            ),
        };
        Explanation {
            decision,
            route,
            detail,
            candidates,
        }
    }

    async fn first_failure(
        &self,
        id: u32,
        route: &Route<X>,
        req: &RequestView<'_>,
    ) -> Option<String> {
        let describe = |i: usize| {
            let spec = &route.rule.matchers[i];
            let what = match (&spec.field, &spec.plugin) {
                (Some(f), _) => format!("{} {f}", spec.condition),
                (None, Some(p)) => format!("plugin {p}"),
                _ => spec.condition.clone(),
            };
            format!("matchers[{i}] ({what})")
        };
        let index_of = |conditions: &[&str]| {
            route
                .rule
                .matchers
                .iter()
                .position(|m| conditions.contains(&m.condition.as_str()))
                .unwrap_or(0)
        };
        if let PathMatch::Regex(re) = &route.path
            && !re.is_match(req.path)
        {
            return Some(describe(index_of(&["path"])));
        }
        if route
            .methods
            .as_ref()
            .is_some_and(|m| !m.contains(req.method))
        {
            return Some(describe(index_of(&["method"])));
        }
        for (i, m) in &route.matchers {
            if m.needs_body() && req.body.is_none() {
                return Some(format!("{} (no body given)", describe(*i)));
            }
            if !m.matches(req) {
                return Some(describe(*i));
            }
        }
        if !media::consumes_ok(&route.consumes, req.headers) {
            return Some("consumes (the request body's Content-Type)".into());
        }
        if !media::produces_ok(&route.produces, req.headers) {
            return Some("produces (the request's Accept)".into());
        }
        match self.first_failed_predicate(id, route, req, req.path).await {
            Ok(failed) => failed.map(describe),
            Err(PredicateOverloaded { index, .. }) => Some(format!(
                "{} (could not run: routerd is overloaded)",
                describe(index)
            )),
        }
    }
}
