//! The plugin runtime as routing sees it: a loaded [`Plugin`] is an [`ExternalPredicate`] and an
//! [`ExternalFilter`], and the [`PluginRegistry`] is the [`PluginSource`] routes are compiled
//! against. The WIT types a call answers with are turned into routing's plain types here.

use std::sync::Arc;

use super::plugin::{CallFailure, Plugin};
use super::registry::PluginRegistry;
use super::state;
use crate::routing::{
    CallFailed, ExternalFilter, ExternalPredicate, ExternalRequest, FailurePolicy, HeaderOp,
    Lookup, Pending, PluginSource, Reply, RequestAction, RequestEdits, ResponseEdits, ResponseHead,
};

fn failed(f: CallFailure) -> CallFailed {
    CallFailed {
        kind: f.kind(),
        reason: f.to_string(),
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

    fn validate(&self, args: &[String]) -> Result<(), String> {
        self.validate_predicate(args)
    }

    fn matches<'a>(
        &'a self,
        request: ExternalRequest,
        args: &'a [String],
    ) -> Pending<'a, Result<bool, CallFailed>> {
        Box::pin(async move { Plugin::matches(self, request, args).await.map_err(failed) })
    }
}

impl ExternalFilter for Plugin {
    fn name(&self) -> &str {
        &self.name
    }

    fn failure_policy(&self) -> FailurePolicy {
        self.settings.failure
    }

    fn validate(&self, args: &[String]) -> Result<(), String> {
        self.validate_filter(args)
    }

    fn on_request<'a>(
        &'a self,
        request: ExternalRequest,
        args: &'a [String],
    ) -> Pending<'a, Result<RequestAction, CallFailed>> {
        Box::pin(async move {
            Plugin::on_request(self, request, args)
                .await
                .map(action)
                .map_err(failed)
        })
    }

    fn on_response<'a>(
        &'a self,
        request: ExternalRequest,
        response: ResponseHead,
        args: &'a [String],
    ) -> Pending<'a, (Result<ResponseEdits, CallFailed>, ResponseHead)> {
        Box::pin(async move {
            let (result, response) = Plugin::on_response(self, request, response, args).await;
            (result.map(response_edits).map_err(failed), response)
        })
    }
}

impl PluginSource for PluginRegistry {
    fn predicate(&self, name: &str) -> Lookup<Arc<dyn ExternalPredicate>> {
        match self.get(name) {
            None => Lookup::Missing,
            Some(p) if !p.kind.predicate => Lookup::WrongKind,
            Some(p) => Lookup::Found(p),
        }
    }

    fn filter(&self, name: &str) -> Lookup<Arc<dyn ExternalFilter>> {
        match self.get(name) {
            None => Lookup::Missing,
            Some(p) if !p.kind.filter => Lookup::WrongKind,
            Some(p) => Lookup::Found(p),
        }
    }
}
