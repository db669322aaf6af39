//! Dry runs in the admin API: `?dry_run=true` on a route change plans it without making it,
//! replays the request sample through the planned table beside the served one, and answers
//! what would move (`routerd_control::dry_run` words the report).

use std::sync::Arc;

use http::StatusCode;

use super::requests::{bad_body, query_param};
use super::{Admin, Reply, blocking, json};
use routerd_control::dry_run::replay;
use routerd_control::routeset::ProposedChange;

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

impl Admin {
    /// Plans `change` (refused as the change itself would be) and answers the replay.
    pub(crate) async fn dry_run(&self, change: ProposedChange) -> Reply {
        let served = self.routes.table();
        let routes = self.routes.clone();
        let plan = blocking(move || routes.plan(change)).await?;
        let heads = self.sample.as_ref().map(|s| s.heads()).unwrap_or_default();
        let sample = self.sample.as_deref();
        let report = replay(
            &served,
            plan,
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
