//! The plugin endpoints: upload (validated and compiled before it replaces anything, then
//! written to the plugins directory), list and show with counters, unload; and trial versions
//! (shadow or canary) beside a live one, promoted or discarded.

use std::sync::atomic::Ordering;

use http::StatusCode;

use super::ApiError;
use routerd_control::routeset::{RouteSet, RouteView, store_error};
use routerd_control::store::{PluginManifest, TrialManifest};
use routerd_plugins::registry::{InstallError, valid_name};
use routerd_plugins::services::OutboundOutcome;
use routerd_plugins::trial::{DEFAULT_SHADOW_BUDGET, Sticky, TrialMode};
use routerd_plugins::{Phase, Plugin, PluginError};

/// The routes (from one listing) that use plugin `name`.
fn used_by(listing: &[RouteView], name: &str) -> Vec<String> {
    listing
        .iter()
        .filter(|r| r.rule.uses_plugin(name))
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
        "trial": p.trial().map(|t| trial_doc(&t)),
    })
}

/// A trial version: what it has seen, and its own counters.
fn trial_doc(t: &routerd_plugins::trial::Trial) -> serde_json::Value {
    let mut doc = serde_json::to_value(t.report()).unwrap_or_default();
    let s = &t.plugin.stats;
    doc["calls"] = s.total_calls().into();
    doc["traps"] = s.traps.load(Ordering::Relaxed).into();
    doc["deadline_hits"] = s.deadline_hits.load(Ordering::Relaxed).into();
    doc["memory_cap_hits"] = s.memory_cap_hits.load(Ordering::Relaxed).into();
    doc["rejected_results"] = s.bad_results.load(Ordering::Relaxed).into();
    doc
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

/// `POST /api/v1/plugins?name=NAME&shadow=true` (or `&canary=...`): loads a trial version
/// beside the live one.
pub fn try_version(
    routes: &RouteSet,
    name: &str,
    bytes: &[u8],
    mode: TrialMode,
) -> Result<serde_json::Value, ApiError> {
    let registry = routes.plugins();
    if registry.get(name).is_none() {
        return Err(not_found(name));
    }
    let args = routes.plugin_args(name);
    let trial = registry
        .try_version(name, bytes, mode.clone(), &args)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_plugin", e.to_string()))?;
    // With a shared store, every instance loads it too; if the store cannot take it, this
    // instance does not keep it either.
    if let Some(store) = routes.store() {
        let shared = store
            .stage_plugin(&trial.plugin.sha256, bytes)
            .and_then(|chunks| {
                let plugin = PluginManifest {
                    sha256: trial.plugin.sha256.clone(),
                    size: bytes.len(),
                    chunks,
                    settings: None,
                };
                store.publish_trial(name, &TrialManifest::new(plugin, &mode))
            });
        if let Err(e) = shared {
            registry.discard_trial(name);
            return Err(store_error(e).into());
        }
    }
    get(routes, name)
}

/// `POST /api/v1/plugins/{name}/promote`: the trial version becomes the live one, installed
/// as an upload is (written to the plugins directory, shared through the store).
pub fn promote(routes: &RouteSet, name: &str) -> Result<serde_json::Value, ApiError> {
    let live = routes.plugins().get(name).ok_or_else(|| not_found(name))?;
    let trial = live.trial().ok_or_else(|| no_trial(name))?;
    let doc = upload(routes, name, &trial.bytes)?;
    // Only the trial that was promoted ends: one loaded meanwhile stays.
    if let Some(now) = routes.plugins().get(name)
        && now
            .trial()
            .is_some_and(|t| std::sync::Arc::ptr_eq(&t, &trial))
    {
        now.set_trial(None);
    }
    if let Some(store) = routes.store() {
        store.withdraw_trial(name).map_err(store_error)?;
    }
    tracing::info!(plugin = name, sha256 = %trial.plugin.sha256, "trial version promoted");
    let mut doc = doc;
    doc["trial"] = serde_json::Value::Null;
    Ok(doc)
}

/// `POST /api/v1/plugins/{name}/discard`: the trial version is dropped.
pub fn discard(routes: &RouteSet, name: &str) -> Result<(), ApiError> {
    let live = routes.plugins().get(name).ok_or_else(|| not_found(name))?;
    if live.trial().is_none() {
        return Err(no_trial(name));
    }
    if let Some(store) = routes.store() {
        store.withdraw_trial(name).map_err(store_error)?;
    }
    // With a shared store, this instance's own follower may have ended it already.
    routes.plugins().discard_trial(name);
    Ok(())
}

fn no_trial(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "trial_not_found",
        format!("plugin {name:?} has no shadow or canary version"),
    )
}

/// The trial a plugin upload asks for: `shadow=true` (with `budget=PERCENT` of one core,
/// default 5), or `canary=5%` (or `5`) with `sticky=client|header:NAME` and `margin=POINTS`
/// (default 5); `None` for a plain upload.
pub fn trial_mode(query: Option<&str>) -> Result<Option<TrialMode>, ApiError> {
    let param = |key: &str| super::requests::query_param(query, key).map(|v| v.into_owned());
    let bad = |m: String| super::requests::bad_body(m);
    let shadow = matches!(param("shadow").as_deref(), Some("true" | "1" | ""));
    let Some(share) = param("canary") else {
        for key in ["sticky", "margin"] {
            if param(key).is_some() {
                return Err(bad(format!("{key} goes with canary=PERCENT")));
            }
        }
        let budget = match param("budget") {
            None => DEFAULT_SHADOW_BUDGET,
            Some(b) => {
                b.trim_end_matches('%')
                    .parse::<f64>()
                    .ok()
                    .filter(|p| *p > 0.0 && *p <= 100.0)
                    .ok_or_else(|| bad(format!("budget={b} is not a percentage in (0, 100]")))?
                    / 100.0
            }
        };
        if !shadow && param("budget").is_some() {
            return Err(bad("budget goes with shadow=true".into()));
        }
        return Ok(shadow.then_some(TrialMode::Shadow { budget }));
    };
    if shadow {
        return Err(bad("shadow and canary exclude each other: pick one".into()));
    }
    let percent: f64 = share
        .trim_end_matches('%')
        .parse()
        .ok()
        .filter(|p: &f64| *p > 0.0 && *p <= 100.0)
        .ok_or_else(|| bad(format!("canary={share} is not a percentage in (0, 100]")))?;
    let sticky = match param("sticky").as_deref() {
        None | Some("none") => Sticky::No,
        Some("client") => Sticky::ClientAddr,
        Some(other) => match other.strip_prefix("header:") {
            Some(h) => Sticky::Header(
                http::HeaderName::from_bytes(h.as_bytes())
                    .map_err(|_| bad(format!("sticky={other}: {h:?} is not a header name")))?,
            ),
            None => {
                return Err(bad(format!(
                    "sticky={other} is none of client, header:NAME, none"
                )));
            }
        },
    };
    let margin = match param("margin") {
        None => 5.0,
        Some(m) => m
            .parse::<f64>()
            .ok()
            .filter(|m| (0.0..=100.0).contains(m))
            .ok_or_else(|| bad(format!("margin={m} is not a number of points in [0, 100]")))?,
    };
    Ok(Some(TrialMode::Canary {
        per_mille: (percent * 10.0).round().max(1.0) as u32,
        sticky,
        margin: margin / 100.0,
    }))
}

/// The trial versions' counts summed over the instances that report them (each instance's
/// record says its own), with the instances that rolled a canary back.
pub fn cluster_trials(instances: &[serde_json::Value]) -> serde_json::Value {
    const SUMMED: [&str; 7] = [
        "agreed",
        "diverged",
        "trial_failed",
        "live_calls",
        "live_failures",
        "trial_calls",
        "trial_failures",
    ];
    let mut out = serde_json::Map::new();
    for instance in instances {
        let Some(trials) = instance.get("trials").and_then(|t| t.as_object()) else {
            continue;
        };
        for (name, t) in trials {
            let sum = out.entry(name.clone()).or_insert_with(|| {
                serde_json::json!({"mode": t.get("mode"), "sha256": t.get("sha256"),
                                   "instances": [], "rolled_back_on": []})
            });
            for key in SUMMED {
                let add = t.get(key).and_then(serde_json::Value::as_u64).unwrap_or(0);
                let now = sum
                    .get(key)
                    .and_then(serde_json::Value::as_u64)
                    .unwrap_or(0);
                sum[key] = (now + add).into();
            }
            let id = instance.get("id").cloned().unwrap_or_default();
            if let Some(list) = sum["instances"].as_array_mut() {
                list.push(id.clone());
            }
            if t.get("rolled_back").and_then(serde_json::Value::as_bool) == Some(true)
                && let Some(list) = sum["rolled_back_on"].as_array_mut()
            {
                list.push(id);
            }
        }
    }
    serde_json::Value::Object(out)
}
