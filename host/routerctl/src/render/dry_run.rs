//! The answer of a dry run (`--dry-run`): what the change is, how many recently sampled
//! requests it would move and where (a few examples each), the routes sampled requests would no
//! longer reach, and the routes it leaves unreachable.

use std::fmt::Write as _;

use serde_json::Value;

use super::{names, table, text};

/// Where a group of requests goes: `route (target)`.
fn place(v: Option<&Value>) -> String {
    let route = text(v.and_then(|v| v.get("route")));
    match v.and_then(|v| v.get("target")).and_then(Value::as_str) {
        Some(target) => format!("{route} ({target})"),
        None => route,
    }
}

fn example(e: &Value) -> String {
    let mut line = format!(
        "{} {}{}",
        text(e.get("method")),
        e.get("host").and_then(Value::as_str).unwrap_or(""),
        text(e.get("path"))
    );
    if let Some(q) = e.get("query").and_then(Value::as_str) {
        let _ = write!(line, "?{q}");
    }
    line
}

/// The human form of a dry run's report.
pub fn dry_run(doc: &Value) -> String {
    let mut out = String::from("dry run: nothing was changed\n");
    let change = doc.get("change");
    let _ = writeln!(
        out,
        "change: created {} · updated {} · deleted {}",
        names(change.and_then(|c| c.get("created"))),
        names(change.and_then(|c| c.get("updated"))),
        names(change.and_then(|c| c.get("deleted")))
    );
    let count = |key: &str| doc.get(key).and_then(Value::as_u64).unwrap_or(0);
    match doc.get("sample") {
        None | Some(Value::Null) => {
            out.push_str("no request sample (routerd runs with --sample-every 0)\n");
        }
        Some(_) => {
            let _ = writeln!(
                out,
                "replayed {} sampled requests: {} would move",
                count("replayed"),
                count("moved")
            );
        }
    }
    let groups = doc.get("groups").and_then(Value::as_array);
    for g in groups.into_iter().flatten() {
        let _ = writeln!(
            out,
            "  {:>6}  {} → {}",
            text(g.get("count")),
            place(g.get("from")),
            place(g.get("to"))
        );
        for e in g
            .get("examples")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let _ = writeln!(out, "          e.g. {}", example(e));
        }
    }
    let listed = |key: &str| {
        doc.get(key)
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
    };
    if listed("no_longer_reached") {
        let _ = writeln!(
            out,
            "no longer reached by any sampled request: {}",
            names(doc.get("no_longer_reached"))
        );
    }
    if listed("unreachable") {
        out.push_str("unreachable routes (a route before them matches all they match):\n");
        let rows: Vec<Vec<String>> = doc
            .get("unreachable")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|u| {
                let new = u.get("new").and_then(Value::as_bool).unwrap_or(false);
                vec![
                    text(u.get("route")),
                    text(u.get("shadowed_by")),
                    if new { "this change" } else { "already" }.to_owned(),
                ]
            })
            .collect();
        out.push_str(&table(&["ROUTE", "SHADOWED BY", "SINCE"], &rows));
    }
    if count("uncertain") > 0 {
        let _ = writeln!(
            out,
            "{} sampled requests carry sealed secrets a regex matcher reads: their replay may differ",
            count("uncertain")
        );
    }
    out
}
