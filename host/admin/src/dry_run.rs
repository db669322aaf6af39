//! Dry runs in the admin API: `?dry_run=true` on a route change plans it without making it,
//! replays the request sample through the planned table beside the served one, and answers
//! what would move (`routerd_control::dry_run` words the report).

use std::sync::Arc;

use http::StatusCode;

use super::requests::{bad_body, query_param};
use super::{Admin, ApiError, Reply, blocking, json};
use routerd_control::dry_run::replay;
use routerd_control::routeset::{Plan, ProposedChange};

/// Whether the query asks for a dry run (`dry_run=true` or `1`; `false`, `0` or absent: no).
pub(crate) fn requested(query: Option<&str>) -> Result<bool, super::ApiError> {
    match query_param(query, "dry_run").as_deref() {
        None | Some("false" | "0") => Ok(false),
        Some("true" | "1" | "") => Ok(true),
        Some(other) => Err(bad_body(format!(
            "dry_run={other} is neither true nor false"
        ))),
    }
}

/// A plugin change to plan.
pub(crate) enum PluginChange {
    /// Replace (or load) it with these bytes.
    Upload(String, bytes::Bytes),
    /// Unload it.
    Unload(String),
}

impl Admin {
    /// Plans `change` (refused as the change itself would be) and answers the replay.
    pub(crate) async fn dry_run(&self, change: ProposedChange) -> Reply {
        let routes = self.routes.clone();
        self.replayed(move || routes.plan(change)).await
    }

    /// Plans a plugin upload or unload (the new version compiled, not installed) and answers
    /// the replay.
    pub(crate) async fn plugin_dry_run(&self, change: PluginChange) -> Reply {
        let routes = self.routes.clone();
        self.replayed(move || match change {
            PluginChange::Upload(name, bytes) => {
                let candidate = routes.plugins().candidate(&name, &bytes).map_err(|e| {
                    ApiError::new(StatusCode::BAD_REQUEST, "invalid_plugin", e.to_string())
                })?;
                Ok(routes.plan_plugin(&name, Some(&candidate))?)
            }
            PluginChange::Unload(name) => {
                if routes.plugins().get(&name).is_none() {
                    return Err(ApiError::new(
                        StatusCode::NOT_FOUND,
                        "plugin_not_found",
                        format!("no plugin named {name:?}"),
                    ));
                }
                Ok(routes.plan_plugin(&name, None)?)
            }
        })
        .await
    }

    /// Runs `plan` off the runtime's threads, then replays the sample through its table.
    async fn replayed<E: Into<ApiError> + Send + 'static>(
        &self,
        plan: impl FnOnce() -> Result<Plan, E> + Send + 'static,
    ) -> Reply {
        let routes = self.routes.clone();
        // Planned (refused as the change would be), then both tables built again with plugin
        // replicas, so the replay changes nothing the live plugins count or keep.
        let (tables, summary) = blocking(move || {
            let plan = plan().map_err(Into::into)?;
            let tables = routes.replay_tables(&plan)?;
            Ok::<_, ApiError>((tables, plan.summary))
        })
        .await?;
        let heads = self.sample.as_ref().map(|s| s.heads()).unwrap_or_default();
        let sample = self.sample.as_deref();
        let report = replay(
            (&tables.0, &tables.1),
            summary,
            &heads,
            sample.map(|s| s.seal()),
            sample.map(|s| s.stats()),
        )
        .await;
        Ok(json(StatusCode::OK, &report))
    }
}

/// Shared so the proxy keeps adding while a dry run reads.
pub(crate) type Sample = Option<Arc<routerd_proxy::sample::HeadSample>>;
