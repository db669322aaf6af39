//! The plugin endpoints: upload (validated and compiled before it replaces anything, then
//! written to the plugins directory), list and show with counters, unload.

use std::sync::atomic::Ordering;

use http::StatusCode;

use super::ApiError;
use routerd_control::routeset::{RouteSet, RouteView, store_error};
use routerd_control::store::PluginManifest;
use routerd_plugins::registry::{InstallError, valid_name};
use routerd_plugins::services::OutboundOutcome;
use routerd_plugins::{Phase, Plugin, PluginError};

/// The routes (from one listing) that use plugin `name`.
fn used_by(listing: &[RouteView], name: &str) -> Vec<String> {
    listing
        .iter()
        .filter(|r| {
            r.rule
                .matchers
                .iter()
                .any(|m| m.plugin.as_deref() == Some(name))
                || r.rule
                    .filters
                    .iter()
                    .any(|f| f.plugin.as_deref() == Some(name))
        })
        .map(|r| r.rule.name.clone())
        .collect()
}

fn describe(listing: &[RouteView], p: &Plugin) -> serde_json::Value {
    let loaded_at = p
        .loaded_at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    serde_json::json!({
        "name": &*p.name,
        "kind": p.kind.as_str(),
        "sha256": p.sha256,
        "size": p.size,
        "loaded_at_unix": loaded_at,
        "compiled_from_cache": p.from_cache,
        "engine": p.engine_kind.as_str(),
        "contract": p.contract(),
        "languages": p.producers.languages,
        "built_with": p.producers.tools,
        "settings": p.settings,
        "used_by": used_by(listing, &p.name),
        "compile_ms": p.compile_time.as_secs_f64() * 1000.0,
        "instantiate_ms": p.instantiate_time.as_secs_f64() * 1000.0,
        "calls": p.stats.total_calls(),
        "calls_by_phase": Phase::ALL
            .iter()
            .map(|ph| (ph.as_str(), p.stats.calls_in(*ph)))
            .collect::<std::collections::BTreeMap<_, _>>(),
        "traps": p.stats.traps.load(Ordering::Relaxed),
        "deadline_hits": p.stats.deadline_hits.load(Ordering::Relaxed),
        "memory_cap_hits": p.stats.memory_cap_hits.load(Ordering::Relaxed),
        "rejected_results": p.stats.bad_results.load(Ordering::Relaxed),
        "overloaded": p.stats.overloaded.load(Ordering::Relaxed),
        "short_circuited": p.stats.short_circuited.load(Ordering::Relaxed),
        "breaker_opened": p.stats.breaker_opened.load(Ordering::Relaxed),
        "breaker_open": p.breaker_open(),
        "max_concurrent": p.concurrency(),
        "idle_instances": p.idle_instances(),
        "store": {
            "keys": p.store().keys(),
            "bytes": p.store().bytes(),
            "refused_full": p.store().refused_full(),
        },
        "http_requests": OutboundOutcome::ALL
            .iter()
            .map(|o| (o.as_str(), p.outbound().count(*o)))
            .collect::<std::collections::BTreeMap<_, _>>(),
    })
}

/// `GET /api/v1/plugins`.
pub fn list(routes: &RouteSet) -> serde_json::Value {
    // One route listing for all plugins, not one per plugin.
    let listing = routes.list();
    let plugins: Vec<_> = routes
        .plugins()
        .list()
        .iter()
        .map(|p| describe(&listing, p))
        .collect();
    serde_json::json!({ "plugins": plugins })
}

/// `GET /api/v1/plugins/{name}`.
pub fn get(routes: &RouteSet, name: &str) -> Result<serde_json::Value, ApiError> {
    let p = routes.plugins().get(name).ok_or_else(|| not_found(name))?;
    Ok(describe(&routes.list(), &p))
}

fn not_found(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "plugin_not_found",
        format!("no plugin named {name:?}"),
    )
}

/// `POST /api/v1/plugins?name=NAME`.
pub fn upload(routes: &RouteSet, name: &str, bytes: &[u8]) -> Result<serde_json::Value, ApiError> {
    if !valid_name(name) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_plugin_name",
            format!("plugin name {name:?} must be 1-128 letters, digits, '-' or '_'"),
        ));
    }
    // With a shared store the bytes go there first: if it is unreachable, nothing changes.
    let store = routes.store();
    let sha256 = {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(bytes))
    };
    let chunks = match store {
        Some(s) => s.stage_plugin(&sha256, bytes).map_err(store_error)?,
        None => 0,
    };
    let plugin = routes.plugins().install(name, bytes).map_err(|e| match e {
        InstallError::Load(PluginError::InvalidName(_)) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_plugin_name",
            e.to_string(),
        ),
        InstallError::Load(PluginError::Settings(..)) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_plugin_settings",
            e.to_string(),
        ),
        InstallError::Load(_) => {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_plugin", e.to_string())
        }
        InstallError::Write { .. } => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "store_failed",
            e.to_string(),
        ),
    })?;
    if let Some(s) = store {
        let manifest = PluginManifest {
            sha256,
            size: bytes.len(),
            chunks,
            settings: routes.plugins().settings_document(name).ok().flatten(),
        };
        s.publish_plugin(name, &manifest).map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                format!("plugin {name:?} is loaded on this instance but was not shared with the others ({e}); upload it again"),
            )
        })?;
    }
    Ok(describe(&routes.list(), &plugin))
}

/// `DELETE /api/v1/plugins/{name}[?force=true]`.
pub fn unload(routes: &RouteSet, name: &str, force: bool) -> Result<(), ApiError> {
    let registry = routes.plugins();
    if registry.get(name).is_none() {
        return Err(not_found(name));
    }
    let users = used_by(&routes.list(), name);
    if !users.is_empty() && !force {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "plugin_in_use",
            format!(
                "plugin {name:?} is used by routes {}; add ?force=true to unload it anyway (they will be excluded)",
                users.join(", ")
            ),
        ));
    }
    if let Some(s) = routes.store() {
        s.withdraw_plugin(name).map_err(store_error)?;
    }
    let path = registry.dir().join(format!("{name}.wasm"));
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store_failed",
                format!("cannot remove {}: {e}", path.display()),
            ));
        }
    }
    registry.unload(name);
    Ok(())
}
