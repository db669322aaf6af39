//! Explaining a decision (the admin API's `match`): every candidate route considered, in
//! decision order, with the part of its rule that failed. The facts only: the admin API words
//! them.

use super::predicates::PredicateOverloaded;
use super::{Decision, RouteTable};
use crate::external::External;
use crate::matchers::PathMatch;
use crate::media;
use crate::request::RequestView;
use crate::route::Route;
use crate::tree::Candidates;

/// One candidate route in an [`Explanation`]: its id, and why it failed (`None`: it matched).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The route's id in the table.
    pub route: u32,
    /// The first part of its rule that failed.
    pub failed: Option<Failure>,
}

/// The first part of a route's rule that failed a request. Matcher indexes are into the rule's
/// `matchers`, so whoever shows it can name the matcher as the user wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// This matcher did not match.
    Matcher(usize),
    /// This matcher reads the body, and none was given.
    NoBody(usize),
    /// The request body's `Content-Type` is none of the route's `consumes`.
    Consumes,
    /// The request's `Accept` allows none of the route's `produces`.
    Produces,
    /// This plugin predicate could not run: routerd had no capacity for the call.
    Overloaded(usize),
}

/// Why a request gets the answer it gets: the decision, and every candidate route considered
/// on the way, in decision order, with the part of its rule that failed.
#[derive(Debug)]
pub struct Explanation {
    /// The decision.
    pub decision: Decision,
    /// The candidates, in the order they were considered.
    pub candidates: Vec<Candidate>,
}

impl<X: External> RouteTable<X> {
    /// Explains the decision for `req` (the admin API's `match`). Plugin predicates run.
    pub async fn explain(&self, req: &RequestView<'_>) -> Explanation {
        let mut cands = Candidates::new();
        self.candidates(req.path, &mut cands);
        let mut ids: Vec<u32> = cands
            .into_iter()
            .chain(self.unindexed.iter().copied())
            .collect();
        ids.sort_unstable();
        let mut candidates = Vec::new();
        for id in ids {
            let failed = self.first_failure(id, &self.routes[id as usize], req).await;
            let matched = failed.is_none();
            candidates.push(Candidate { route: id, failed });
            if matched {
                break;
            }
        }
        Explanation {
            decision: self.decide_with_predicates(req).await,
            candidates,
        }
    }

    async fn first_failure(
        &self,
        id: u32,
        route: &Route<X>,
        req: &RequestView<'_>,
    ) -> Option<Failure> {
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
            return Some(Failure::Matcher(index_of(&["path"])));
        }
        if route
            .methods
            .as_ref()
            .is_some_and(|m| !m.contains(req.method))
        {
            return Some(Failure::Matcher(index_of(&["method"])));
        }
        for (i, m) in &route.matchers {
            if m.needs_body() && req.body.is_none() {
                return Some(Failure::NoBody(*i));
            }
            if !m.matches(req) {
                return Some(Failure::Matcher(*i));
            }
        }
        if !media::consumes_ok(&route.consumes, req.headers) {
            return Some(Failure::Consumes);
        }
        if !media::produces_ok(&route.produces, req.headers) {
            return Some(Failure::Produces);
        }
        match self.first_failed_predicate(id, route, req, req.path).await {
            Ok(failed) => failed.map(Failure::Matcher),
            Err(PredicateOverloaded { index, .. }) => Some(Failure::Overloaded(index)),
        }
    }
}
