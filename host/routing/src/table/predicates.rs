//! Running a route's plugin predicates as the decision reaches it: each plugin's failure
//! policy applied to what the plugin did, and a call routerd had no capacity to run recorded as
//! such, so it stops the decision ([`Decision::Overloaded`]) instead of passing for a no-match.

use super::{Decision, PredicateResults, RouteTable, toggle_trailing_slash};
use crate::external::External;
use crate::external::{ExternalRequest, FailurePolicy};
use crate::request::RequestView;
use crate::route::Route;

impl<X: External> RouteTable<X> {
    /// Runs route `route`'s plugin predicates for `req` (against the toggled path when
    /// `toggled`), applying each plugin's failure policy, and records the outcome in `done` for
    /// the next [`RouteTable::decide`].
    pub async fn run_predicates(
        &self,
        route: u32,
        toggled: bool,
        req: &RequestView<'_>,
        done: &mut PredicateResults,
    ) {
        let path = if toggled {
            toggle_trailing_slash(req.path).unwrap_or_else(|| req.path.to_owned())
        } else {
            req.path.to_owned()
        };
        let (failed, overloaded) = match self
            .first_failed_predicate(route, self.route(route), req, &path)
            .await
        {
            Ok(failed) => (failed, None),
            Err(PredicateOverloaded { index, plugin }) => (Some(index), Some((route, plugin))),
        };
        done.done.push((route, toggled, failed));
        if overloaded.is_some() {
            done.overloaded = overloaded;
        }
    }

    /// Decides, running plugin predicates as the decision reaches them (the body is not read:
    /// body matchers see `req.body`).
    pub async fn decide_with_predicates(&self, req: &RequestView<'_>) -> Decision {
        let mut done = PredicateResults::default();
        loop {
            match self.decide(req, &done) {
                Decision::NeedPredicates { route, toggled } => {
                    self.run_predicates(route, toggled, req, &mut done).await;
                }
                d => return d,
            }
        }
    }

    /// The rule index of the first plugin predicate that does not match (after each plugin's
    /// failure policy), if any; an error when one could not run for want of capacity.
    pub(super) async fn first_failed_predicate(
        &self,
        id: u32,
        route: &Route<X>,
        req: &RequestView<'_>,
        path: &str,
    ) -> Result<Option<usize>, PredicateOverloaded> {
        let Some((first, _)) = route.predicates.first() else {
            return Ok(None);
        };
        let Some(shared) = req.shared else {
            return Ok(Some(*first));
        };
        let params: Vec<(String, String)> = self
            .params(id, path)
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        for (index, call) in &route.predicates {
            let request = ExternalRequest {
                parts: shared.parts.clone(),
                remote: shared.remote,
                scheme: shared.scheme,
                path: (path != shared.parts.uri.path()).then(|| path.to_owned()),
                params: params.clone(),
            };
            match call.matches(request).await {
                Ok(true) => {}
                Ok(false) => return Ok(Some(*index)),
                Err(failure) if failure.overloaded => {
                    tracing::warn!(
                        plugin = call.name(),
                        route = &*route.name,
                        reason = %failure,
                        "plugin predicate could not run: routerd is overloaded; answering 503"
                    );
                    return Err(PredicateOverloaded {
                        index: *index,
                        plugin: call.name().to_owned(),
                    });
                }
                Err(failure) => {
                    let policy = call.failure_policy();
                    tracing::warn!(
                        plugin = call.name(),
                        route = &*route.name,
                        failure = failure.kind,
                        reason = %failure,
                        ?policy,
                        "plugin predicate failed"
                    );
                    if policy == FailurePolicy::FailClosed {
                        return Ok(Some(*index));
                    }
                }
            }
        }
        Ok(None)
    }
}

/// A plugin predicate that could not run for want of capacity.
pub(super) struct PredicateOverloaded {
    /// Its rule index.
    pub(super) index: usize,
    /// The plugin's name.
    plugin: String,
}
