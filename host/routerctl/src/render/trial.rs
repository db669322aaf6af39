//! A plugin's trial version in `plugin info`: a shadow's agreement per route with examples of
//! where it differs, or a canary's calls and failures beside the live version's, and why it
//! was rolled back.

use std::fmt::Write as _;

use serde_json::Value;

use super::{table, text};

fn count(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// The human form of a plugin document's `trial`; empty when there is none.
pub fn trial(doc: &Value) -> String {
    let Some(t) = doc.get("trial").filter(|t| t.is_object()) else {
        return String::new();
    };
    let sha: String = text(t.get("sha256")).chars().take(12).collect();
    let mut out = format!("\ntrial version: {} (sha256 {sha})\n", text(t.get("mode")));
    let _ = writeln!(
        out,
        "  its calls {} · traps {} · deadline hits {} · memory cap hits {}",
        count(t, "calls"),
        count(t, "traps"),
        count(t, "deadline_hits"),
        count(t, "memory_cap_hits")
    );
    if text(t.get("mode")).starts_with("canary") {
        let _ = writeln!(
            out,
            "  canary answered {} calls, {} failed; the live version {} calls, {} failed",
            count(t, "trial_calls"),
            count(t, "trial_failures"),
            count(t, "live_calls"),
            count(t, "live_failures")
        );
    }
    if let Some(why) = t.get("rolled_back").and_then(Value::as_str) {
        let _ = writeln!(out, "  ROLLED BACK: {why}");
    }
    if let Some(routes) = t.get("routes").and_then(Value::as_object) {
        out.push_str(&routes_section(routes));
    }
    let dropped = count(t, "dropped");
    if dropped > 0 {
        let _ = writeln!(
            out,
            "  {dropped} calls not shadowed: the shadow's queue was full"
        );
    }
    let skipped = count(t, "over_budget");
    if skipped > 0 {
        let _ = writeln!(
            out,
            "  {skipped} calls not shadowed: the shadow had spent its CPU budget"
        );
    }
    out
}

/// A shadow's comparisons per route, then the divergent examples.
fn routes_section(routes: &serde_json::Map<String, Value>) -> String {
    let mut out = String::new();
    if routes.is_empty() {
        return out;
    }
    let rows: Vec<Vec<String>> = routes
        .iter()
        .map(|(name, c)| {
            vec![
                name.clone(),
                count(c, "agreed").to_string(),
                count(c, "diverged").to_string(),
                count(c, "trial_failed").to_string(),
                count(c, "refused_args").to_string(),
            ]
        })
        .collect();
    for line in table(
        &[
            "ROUTE",
            "AGREED",
            "DIVERGED",
            "TRIAL FAILED",
            "REFUSED ARGS",
        ],
        &rows,
    )
    .lines()
    {
        let _ = writeln!(out, "  {line}");
    }
    for (name, c) in routes {
        for e in c
            .get("examples")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let query = e
                .get("query")
                .and_then(Value::as_str)
                .map(|q| format!("?{q}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {name}: {} {}{}{query}: live {}, trial {}",
                text(e.get("method")),
                e.get("host").and_then(Value::as_str).unwrap_or(""),
                text(e.get("path")),
                text(e.get("live")),
                text(e.get("trial"))
            );
        }
    }
    out
}
