//! Human output: aligned tables, key/value views, one-line summaries of matchers and filters,
//! and the explain tree of `routerctl match`. Everything here is pure (JSON in, text out) and
//! tolerant of missing fields: a missing value prints as `-`.

use std::fmt::Write as _;

use serde_json::Value;

/// The widest MATCHERS cell in `route list`; `route get` shows them all.
const MATCHERS_WIDTH: usize = 60;

/// Columns separated by two spaces, each as wide as its widest cell; no trailing spaces.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            let pad = width.saturating_sub(cell.chars().count());
            line.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A scalar as text: strings bare, `null`/missing as `-`, anything else as compact JSON.
pub fn text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// The name in a list entry: a string, or an object's `name`.
pub fn name_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => str_field(other, "name").map_or_else(|| other.to_string(), str::to_owned),
    }
}

/// A comma-separated list of names, or `-`.
fn names(v: Option<&Value>) -> String {
    match v.and_then(Value::as_array) {
        Some(items) if !items.is_empty() => {
            items.iter().map(name_of).collect::<Vec<_>>().join(", ")
        }
        _ => "-".to_owned(),
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut cut: String = s.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

fn args(v: Option<&Value>) -> String {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// One matcher on one line: `path=/users/{id}`, `header[X-Tier]~^gold$`, `plugin:beta("on")`.
/// `=` is an exact match (or a radix pattern), `~` a regex.
pub fn matcher(m: &Value) -> String {
    let condition = str_field(m, "condition").unwrap_or("?");
    if condition == "plugin" {
        let name = str_field(m, "plugin").unwrap_or("?");
        return format!("plugin:{name}({})", args(m.get("args")));
    }
    let field = str_field(m, "field").map_or_else(String::new, |f| format!("[{f}]"));
    let regex =
        condition == "body_regex" || m.get("is_regex").and_then(Value::as_bool) == Some(true);
    let op = if regex { '~' } else { '=' };
    format!("{condition}{field}{op}{}", text(m.get("pattern")))
}

/// One filter on one line: `set_request_header("X-User", "{id}")`, `plugin:api-key()`.
pub fn filter(f: &Value) -> String {
    match (str_field(f, "plugin"), str_field(f, "name")) {
        (Some(plugin), _) => format!("plugin:{plugin}({})", args(f.get("args"))),
        (None, Some(name)) => format!("{name}({})", args(f.get("args"))),
        (None, None) => f.to_string(),
    }
}

/// What a route sends requests to: its `target_url`, its first target and how many more (with
/// the balance policy), else its `respond`/`redirect` filter.
fn target(route: &Value) -> String {
    if let Some(url) = str_field(route, "target_url") {
        return url.to_owned();
    }
    if let Some(targets) = route.get("targets").and_then(Value::as_array)
        && let Some(first) = targets.first()
    {
        let policy = route
            .get("balance")
            .and_then(|b| str_field(b, "policy"))
            .unwrap_or("round_robin");
        let url = text(first.get("url"));
        return match targets.len() {
            1 => url,
            n => format!("{url} +{} ({policy})", n - 1),
        };
    }
    let filters = route.get("filters").and_then(Value::as_array);
    let answer = filters.into_iter().flatten().find(|f| {
        matches!(str_field(f, "name"), Some("respond" | "redirect")) && f.get("plugin").is_none()
    });
    match answer {
        Some(f) => {
            let a = f.get("args").and_then(Value::as_array);
            let status = a.and_then(|a| a.first());
            let mut s = format!("{} {}", str_field(f, "name").unwrap_or("?"), text(status));
            if str_field(f, "name") == Some("redirect") {
                let _ = write!(s, " {}", text(a.and_then(|a| a.get(1))));
            }
            s
        }
        None => "-".to_owned(),
    }
}

fn matchers_summary(route: &Value) -> String {
    let list: Vec<String> = route
        .get("matchers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(matcher)
        .collect();
    let summary = if route.get("default_rule").and_then(Value::as_bool) == Some(true) {
        "(default rule)".to_owned()
    } else if list.is_empty() {
        "-".to_owned()
    } else {
        list.join(", ")
    };
    truncate(&summary, MATCHERS_WIDTH)
}

fn status(route: &Value) -> String {
    match str_field(route, "status") {
        Some(s) => s.to_owned(),
        None if route.get("enabled").and_then(Value::as_bool) == Some(false) => "disabled".into(),
        None => "-".to_owned(),
    }
}

/// `route list`: NAME, SOURCE, STATUS, PRIORITY, VERSION, TARGET, MATCHERS.
pub fn routes_table(routes: &[Value]) -> String {
    let rows: Vec<Vec<String>> = routes
        .iter()
        .map(|r| {
            vec![
                text(r.get("name")),
                text(r.get("source")),
                status(r),
                r.get("priority")
                    .map_or_else(|| "0".to_owned(), |p| text(Some(p))),
                text(r.get("version")),
                target(r),
                matchers_summary(r),
            ]
        })
        .collect();
    let headers = [
        "NAME", "SOURCE", "STATUS", "PRIORITY", "VERSION", "TARGET", "MATCHERS",
    ];
    table(&headers, &rows)
}

/// `key: value` lines, aligned, keys in `order` first and then the rest alphabetically.
/// `matchers` and `filters` get one summary line per entry; other lists of objects one compact
/// JSON line per entry; lists of scalars are joined with `, `.
pub fn details(doc: &Value, order: &[&str]) -> String {
    let Some(obj) = doc.as_object() else {
        return format!("{doc}\n");
    };
    let mut keys: Vec<&str> = order
        .iter()
        .copied()
        .filter(|k| obj.contains_key(*k))
        .collect();
    let mut rest: Vec<&str> = obj
        .keys()
        .map(String::as_str)
        .filter(|k| !order.contains(k))
        .collect();
    rest.sort_unstable();
    keys.extend(rest);
    let width = keys.iter().map(|k| k.chars().count()).max().unwrap_or(0) + 1;
    let mut out = String::new();
    for key in keys {
        let value = &obj[key];
        let label = format!("{key}:");
        let items = value.as_array().filter(|a| a.iter().any(Value::is_object));
        if let Some(items) = items {
            let _ = writeln!(out, "{label}");
            for item in items {
                let line = match key {
                    "matchers" => matcher(item),
                    "filters" => filter(item),
                    _ => item.to_string(),
                };
                let _ = writeln!(out, "  - {line}");
            }
            continue;
        }
        let shown = match value {
            Value::Array(a) if a.is_empty() => "-".to_owned(),
            Value::Array(_) => names(Some(value)),
            other => text(Some(other)),
        };
        let _ = writeln!(out, "{label:<width$} {shown}");
    }
    out
}

/// The fields of a stored route, in reading order, for `route get`.
pub const ROUTE_ORDER: &[&str] = &[
    "name",
    "source",
    "status",
    "reason",
    "version",
    "enabled",
    "system",
    "default_rule",
    "priority",
    "target_url",
    "targets",
    "balance",
    "outlier",
    "retries",
    "strip_prefix",
    "timeout_ms",
    "matchers",
    "filters",
];

/// The fields of a plugin, in reading order, for `plugin info`.
pub const PLUGIN_ORDER: &[&str] = &[
    "name",
    "kind",
    "sha256",
    "size",
    "loaded_at_unix",
    "compiled_from_cache",
    "settings",
    "used_by",
    "calls",
    "traps",
    "deadline_hits",
    "memory_cap_hits",
    "rejected_results",
];

/// Bytes as `512 B`, `12.3 KiB`, `4.0 MiB`.
pub fn size(bytes: Option<&Value>) -> String {
    let Some(n) = bytes.and_then(Value::as_u64) else {
        return text(bytes);
    };
    let f = n as f64;
    if n < 1024 {
        format!("{n} B")
    } else if n < 1024 * 1024 {
        format!("{:.1} KiB", f / 1024.0)
    } else {
        format!("{:.1} MiB", f / (1024.0 * 1024.0))
    }
}

/// `plugin list`: NAME, KIND, SHA256 (12 characters), SIZE, USED BY, CALLS, TRAPS, DEADLINE HITS.
pub fn plugins_table(plugins: &[Value]) -> String {
    let rows: Vec<Vec<String>> = plugins
        .iter()
        .map(|p| {
            vec![
                text(p.get("name")),
                text(p.get("kind")),
                text(p.get("sha256")).chars().take(12).collect(),
                size(p.get("size")),
                names(p.get("used_by")),
                text(p.get("calls")),
                text(p.get("traps")),
                text(p.get("deadline_hits")),
            ]
        })
        .collect();
    let headers = [
        "NAME",
        "KIND",
        "SHA256",
        "SIZE",
        "USED BY",
        "CALLS",
        "TRAPS",
        "DEADLINE HITS",
    ];
    table(&headers, &rows)
}

/// Seconds as `42s`, `5m 3s`, `2h 5m`, `3d 4h`.
pub fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// The first of `keys` present (and not null) in `v`.
fn first<'a>(v: &'a Value, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().find_map(|k| v.get(*k).filter(|x| !x.is_null()))
}

/// A `since` timestamp as Unix seconds: a number of seconds, or of milliseconds when it is too
/// large to be seconds.
fn unix_secs(v: &Value) -> Option<u64> {
    let n = v
        .as_u64()
        .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))?;
    Some(if n > 100_000_000_000 { n / 1000 } else { n })
}

/// `routerctl cluster`: one row per live instance.
pub fn cluster_table(doc: &Value, now_unix: u64) -> String {
    let entries = doc
        .get("instances")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            let up = e
                .get("started_unix")
                .and_then(Value::as_u64)
                .map_or_else(|| "-".to_owned(), |t| duration(now_unix.saturating_sub(t)));
            vec![
                text(e.get("id")),
                text(e.get("admin")),
                text(e.get("listen")),
                text(e.get("revision")),
                text(e.get("table_version")),
                up,
            ]
        })
        .collect();
    let mut out = format!("store: {}\n", text(doc.get("store")));
    out.push_str(&table(
        &["INSTANCE", "ADMIN", "LISTEN", "REVISION", "TABLE", "UP"],
        &rows,
    ));
    out
}

/// `health`: ROUTE, BACKEND, STATUS, LATENCY, UPTIME, one line per entry of the answer's
/// `routes` (`{"route", "target", "status", "latency_ms", "since"}`). UPTIME is the time since
/// `since` (the last change of status) for a backend that is up; a `since` that is not a number
/// is shown as it is.
pub fn health_table(doc: &Value, now_unix: u64) -> String {
    let entries = doc
        .get("routes")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let mut rows: Vec<Vec<String>> = Vec::new();
    for e in entries {
        let status = text(e.get("status"));
        let latency = |e: &Value| match e.get("latency_ms").and_then(Value::as_f64) {
            Some(ms) => format!("{ms:.2} ms"),
            None => text(e.get("latency_ms")),
        };
        let uptime = match (status.as_str(), e.get("since")) {
            ("up", Some(since)) if !since.is_null() => unix_secs(since).map_or_else(
                || text(Some(since)),
                |t| duration(now_unix.saturating_sub(t)),
            ),
            _ => "-".to_owned(),
        };
        let endpoints = e
            .get("endpoints")
            .and_then(Value::as_array)
            .filter(|list| list.len() > 1);
        let Some(endpoints) = endpoints else {
            rows.push(vec![
                text(e.get("route")),
                text(first(e, &["target", "backend", "target_url"])),
                status,
                latency(e),
                uptime,
            ]);
            continue;
        };
        // A route over several endpoints: its own line, then one per endpoint.
        rows.push(vec![
            text(e.get("route")),
            format!("{} endpoints", endpoints.len()),
            status,
            "-".to_owned(),
            uptime,
        ]);
        for ep in endpoints {
            let mut state = text(ep.get("status"));
            if let Some(ms) = ep.get("ejected_ms").and_then(Value::as_u64) {
                state = format!("ejected ({})", duration(ms.div_ceil(1000)));
            }
            rows.push(vec![
                String::new(),
                format!("  {}", text(ep.get("target"))),
                state,
                latency(ep),
                "-".to_owned(),
            ]);
        }
    }
    table(&["ROUTE", "BACKEND", "STATUS", "LATENCY", "UPTIME"], &rows)
}

/// The explain tree of `routerctl match`: `→ route NAME` (or `→ DECISION[: DETAIL]`), then one
/// line per candidate in the order they were considered, the last one with `└─`.
pub fn explain(doc: &Value) -> String {
    let decision = str_field(doc, "decision").unwrap_or("unknown");
    let mut out = match (decision, str_field(doc, "route")) {
        ("route", Some(route)) => format!("→ route {route}"),
        (decision, Some(route)) => format!("→ {decision} (route {route})"),
        (decision, None) => format!("→ {decision}"),
    };
    // The redirect's target, or the `Allow` list of a 405.
    if let Some(detail) = str_field(doc, "detail") {
        let _ = write!(out, ": {detail}");
    }
    out.push('\n');
    let candidates = doc
        .get("candidates")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    if candidates.is_empty() {
        out.push_str("└─ (no candidate routes)\n");
    }
    for (i, c) in candidates.iter().enumerate() {
        let branch = if i + 1 == candidates.len() {
            "└─"
        } else {
            "├─"
        };
        let name = text(first(c, &["route", "name"]));
        let outcome = match (str_field(c, "result"), str_field(c, "failed")) {
            (Some("failed"), Some(at)) => format!("failed at {at}"),
            (Some(result), _) => result.to_owned(),
            (None, Some(at)) => format!("failed at {at}"),
            (None, None) => "-".to_owned(),
        };
        let _ = writeln!(out, "{branch} {name}: {outcome}");
    }
    if let Some(b) = doc.get("backends") {
        let balance = text(b.get("balance"));
        match str_field(b, "chosen") {
            Some(chosen) => {
                let _ = writeln!(out, "backends ({balance}): this request goes to {chosen}");
            }
            None => {
                let _ = writeln!(out, "backends ({balance}):");
            }
        }
        for e in b
            .get("endpoints")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let _ = writeln!(
                out,
                "  {} weight {}: {}",
                text(e.get("endpoint")),
                text(e.get("weight")),
                text(e.get("state"))
            );
        }
    }
    out
}

/// The answer of `route apply`: one line each for created, updated and deleted routes.
pub fn apply_summary(doc: &Value) -> String {
    let mut out = String::new();
    for key in ["created", "updated", "deleted"] {
        let count = doc.get(key).and_then(Value::as_array).map_or(0, Vec::len);
        let _ = writeln!(out, "{key} ({count}): {}", names(doc.get(key)));
    }
    out
}

mod dry_run;
mod trial;
pub use dry_run::dry_run;
pub use trial::trial;

#[cfg(test)]
mod tests;
