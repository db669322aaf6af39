//! The plugin runtime as routing sees it: a loaded [`Plugin`] is an [`ExternalPredicate`] and an
//! [`ExternalFilter`], and the [`PluginRegistry`] is the [`PluginSource`] routes are compiled
//! against. The WIT types a call answers with are turned into routing's plain types here.

use std::sync::Arc;

use super::contract as state;
use super::plugin::{CallFailure, Plugin};
use super::registry::PluginRegistry;
use routerd_routing::{
    CallFailed, ExternalFilter, ExternalPredicate, ExternalRequest, FailurePolicy, HeaderOp,
    Lookup, PluginSource, Prepared, Reply, RequestAction, RequestEdits, ResponseEdits,
    ResponseHead,
};

fn failed(f: CallFailure) -> CallFailed {
    CallFailed {
        kind: f.kind(),
        reason: f.to_string(),
        overloaded: matches!(f, CallFailure::Overloaded(_)),
    }
}

fn header_ops(ops: Vec<state::HeaderOp>) -> Vec<HeaderOp> {
    ops.into_iter()
        .map(|op| match op {
            state::HeaderOp::Set((k, v)) => HeaderOp::Set(k, v),
            state::HeaderOp::Append((k, v)) => HeaderOp::Append(k, v),
            state::HeaderOp::Remove(k) => HeaderOp::Remove(k),
        })
        .collect()
}

fn action(a: state::RequestAction) -> RequestAction {
    match a {
        state::RequestAction::Proceed(e) => RequestAction::Proceed(RequestEdits {
            headers: header_ops(e.headers),
            path: e.path,
            query: e.query,
        }),
        state::RequestAction::Respond(r) => RequestAction::Respond(Reply {
            status: r.status,
            headers: r.headers,
            body: r.body,
        }),
    }
}

fn response_edits(e: state::ResponseEdits) -> ResponseEdits {
    ResponseEdits {
        status: e.status,
        headers: header_ops(e.headers),
    }
}

impl ExternalPredicate for Plugin {
    fn name(&self) -> &str {
        &self.name
    }

    fn failure_policy(&self) -> FailurePolicy {
        self.settings.failure
    }

    fn prepare(&self, args: &[String]) -> Result<Prepared, String> {
        self.prepare_predicate(args)
    }

    async fn matches(&self, request: ExternalRequest, args: &Prepared) -> Result<bool, CallFailed> {
        self.run_predicate(request, args).await.map_err(failed)
    }
}

impl ExternalFilter for Plugin {
    fn name(&self) -> &str {
        &self.name
    }

    fn failure_policy(&self) -> FailurePolicy {
        self.settings.failure
    }

    fn prepare(&self, args: &[String]) -> Result<Prepared, String> {
        self.prepare_filter(args)
    }

    async fn on_request(
        &self,
        request: ExternalRequest,
        args: &Prepared,
    ) -> Result<RequestAction, CallFailed> {
        self.run_request_phase(request, args)
            .await
            .map(action)
            .map_err(failed)
    }

    async fn on_response(
        &self,
        request: ExternalRequest,
        response: ResponseHead,
        args: &Prepared,
    ) -> (Result<ResponseEdits, CallFailed>, ResponseHead) {
        let (result, response) = self.run_response_phase(request, response, args).await;
        (result.map(response_edits).map_err(failed), response)
    }
}

impl PluginSource<Plugin> for PluginRegistry {
    fn predicate(&self, name: &str) -> Lookup<Arc<Plugin>> {
        match self.get(name) {
            None => Lookup::Missing,
            Some(p) if !p.kind.predicate => Lookup::WrongKind,
            Some(p) => Lookup::Found(p),
        }
    }

    fn filter(&self, name: &str) -> Lookup<Arc<Plugin>> {
        match self.get(name) {
            None => Lookup::Missing,
            Some(p) if !p.kind.filter => Lookup::WrongKind,
            Some(p) => Lookup::Found(p),
        }
    }
}
