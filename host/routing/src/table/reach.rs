//! Routes no request can reach: each shadowed by a route that precedes it in decision order
//! and matches every request it matches. The check is conservative: a route is reported only
//! when its shadow's path covers its path segment by segment, the shadow allows every method it
//! allows, asks nothing of media types that it does not ask, and each of the shadow's other
//! matchers and plugin predicates is one of its own, written the same. A regex path is compared
//! by its text only. So a report is always true; a shadow the check cannot prove is not
//! reported.

use super::RouteTable;
use crate::external::External;
use crate::matchers::PathMatch;
use crate::pattern::Segment;
use crate::route::Route;
use crate::tree::Candidates;

/// A segment no literal of a real route holds, standing for a parameter when a pattern is
/// spelled as a path: only parameters and catch-alls match it.
const ANY_SEGMENT: &str = "\u{0}";

impl<X: External> RouteTable<X> {
    /// Each route no request can reach, with the first route that shadows it (by rank).
    pub fn shadowed(&self) -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        let mut cands = Candidates::new();
        let mut spelled = String::new();
        for (rank, route) in self.routes.iter().enumerate() {
            let rank = rank as u32;
            if self.default_route == Some(rank) {
                continue;
            }
            cands.clear();
            if spell(&route.path, &mut spelled) {
                self.candidates(&spelled, &mut cands);
            }
            cands.extend(self.unindexed.iter().copied());
            cands.sort_unstable();
            let by = cands
                .iter()
                .copied()
                .take_while(|&a| a < rank)
                .find(|&a| covers(&self.routes[a as usize], route));
            if let Some(by) = by {
                out.push((rank, by));
            }
        }
        out
    }
}

/// Spells an indexed path as one path it matches, parameters as [`ANY_SEGMENT`]; false for a
/// path the index does not hold.
fn spell(path: &PathMatch, out: &mut String) -> bool {
    out.clear();
    match path {
        PathMatch::Pattern(p) => {
            for seg in &p.segments {
                out.push('/');
                out.push_str(match seg {
                    Segment::Literal(s) => s,
                    Segment::Param(_) | Segment::CatchAll(_) => ANY_SEGMENT,
                });
            }
            true
        }
        PathMatch::Prefix(segments) => {
            for seg in segments {
                out.push('/');
                out.push_str(seg);
            }
            if segments.is_empty() {
                out.push('/');
            }
            true
        }
        PathMatch::Regex(_) | PathMatch::Any => false,
    }
}

/// Whether `a` matches every request `b` matches.
fn covers<X: External>(a: &Route<X>, b: &Route<X>) -> bool {
    path_covers(&a.path, &b.path)
        && match (&a.methods, &b.methods) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(am), Some(bm)) => bm.0.iter().all(|m| am.contains(m)),
        }
        && (a.rule.consumes.is_empty() || a.rule.consumes == b.rule.consumes)
        && (a.rule.produces.is_empty() || a.rule.produces == b.rule.produces)
        && a.matchers
            .iter()
            .map(|(i, _)| *i)
            .chain(a.predicates.iter().map(|(i, _)| *i))
            .all(|i| {
                a.rule
                    .matchers
                    .get(i)
                    .is_some_and(|spec| b.rule.matchers.contains(spec))
            })
}

/// Whether every path `b` matches, `a` matches.
fn path_covers(a: &PathMatch, b: &PathMatch) -> bool {
    match (a, b) {
        (PathMatch::Any, _) => true,
        (_, PathMatch::Any) => false,
        (PathMatch::Regex(ra), PathMatch::Regex(rb)) => ra.as_str() == rb.as_str(),
        (PathMatch::Regex(_), _) | (_, PathMatch::Regex(_)) => false,
        (PathMatch::Prefix(pa), PathMatch::Prefix(pb)) => pb.starts_with(pa),
        (PathMatch::Prefix(pa), PathMatch::Pattern(pb)) => {
            pb.segments.len() >= pa.len()
                && pa
                    .iter()
                    .zip(&pb.segments)
                    .all(|(x, y)| matches!(y, Segment::Literal(l) if l == x))
        }
        (PathMatch::Pattern(_), PathMatch::Prefix(_)) => false,
        (PathMatch::Pattern(pa), PathMatch::Pattern(pb)) => {
            segments_cover(&pa.segments, &pb.segments)
        }
    }
}

fn segments_cover(a: &[Segment], b: &[Segment]) -> bool {
    for (i, seg) in a.iter().enumerate() {
        match seg {
            // The rest of the path, one character or more: `b`'s rest from here must not be
            // empty, which it is only as a lone trailing slash.
            Segment::CatchAll(_) => {
                return i < b.len() && !(b.len() == i + 1 && b[i] == Segment::Literal("".into()));
            }
            Segment::Param(_) => match b.get(i) {
                Some(Segment::Param(_)) => {}
                Some(Segment::Literal(l)) if !l.is_empty() => {}
                _ => return false,
            },
            Segment::Literal(l) => match b.get(i) {
                Some(Segment::Literal(m)) if m == l => {}
                _ => return false,
            },
        }
    }
    a.len() == b.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigFile;
    use crate::external::NoExternal;

    fn shadows(doc: serde_json::Value) -> Vec<(String, String)> {
        let config: ConfigFile =
            serde_json::from_value(doc).unwrap_or_else(|e| panic!("document: {e}"));
        let table: RouteTable<NoExternal> =
            RouteTable::build(&config).unwrap_or_else(|e| panic!("build: {e}"));
        table
            .shadowed()
            .into_iter()
            .map(|(b, a)| {
                (
                    table.route(b).name.to_string(),
                    table.route(a).name.to_string(),
                )
            })
            .collect()
    }

    fn route(name: &str, priority: i64, matchers: serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "name": name, "priority": priority, "matchers": matchers,
            "target_url": "http://127.0.0.1:9"
        })
    }

    #[test]
    fn a_route_behind_a_wider_one_is_shadowed() {
        let found = shadows(serde_json::json!({"routes": [
            route("wide", 10, serde_json::json!([{"condition": "path_prefix", "pattern": "/api"}])),
            route("narrow", 0, serde_json::json!([
                {"condition": "path", "pattern": "/api/{id}"},
                {"condition": "method", "pattern": "GET"},
            ])),
            route("other", 0, serde_json::json!([{"condition": "path", "pattern": "/web"}])),
        ]}));
        assert_eq!(found, [("narrow".to_owned(), "wide".to_owned())]);
    }

    #[test]
    fn a_narrower_route_first_shadows_nothing() {
        let found = shadows(serde_json::json!({"routes": [
            route("tier", 10, serde_json::json!([
                {"condition": "path_prefix", "pattern": "/api"},
                {"condition": "header", "field": "x-tier", "pattern": "gold"},
            ])),
            route("get", 5, serde_json::json!([
                {"condition": "path", "pattern": "/api/{id}"},
                {"condition": "method", "pattern": "GET"},
            ])),
            route("any", 0, serde_json::json!([{"condition": "path", "pattern": "/api/{id}"}])),
        ]}));
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn same_matchers_and_a_catch_all_shadow() {
        let found = shadows(serde_json::json!({"routes": [
            route("files", 10, serde_json::json!([
                {"condition": "path", "pattern": "/files/{*rest}"},
                {"condition": "header", "field": "x-tier", "pattern": "gold"},
            ])),
            route("one", 0, serde_json::json!([
                {"condition": "path", "pattern": "/files/a/{id}"},
                {"condition": "header", "field": "x-tier", "pattern": "gold"},
                {"condition": "method", "pattern": "GET"},
            ])),
            route("slash", 0, serde_json::json!([
                {"condition": "path", "pattern": "/files/"},
                {"condition": "header", "field": "x-tier", "pattern": "gold"},
            ])),
        ]}));
        assert_eq!(found, [("one".to_owned(), "files".to_owned())]);
    }
}
