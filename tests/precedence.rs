//! The compiled route table against a naive reference of the precedence rule in docs/routes.md
//! ("Which route wins"): random route tables and requests go through both, and the two never
//! differ. proptest keeps the seeds of failures it finds in
//! `tests/properties.proptest-regressions` and replays them first.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::Config;
use routerd::config::ConfigFile;
use routerd::routing::{Decision, NoExternal, PredicateResults, RouteTable, SharedHead};
use serde_json::{Value, json};

#[derive(Debug, Clone)]
enum Elem {
    Lit(&'static str),
    Param,
    CatchAll,
}

#[derive(Debug, Clone)]
enum PathRule {
    Pattern(Vec<Elem>),
    Prefix(Vec<&'static str>),
    None,
}

#[derive(Debug, Clone)]
struct RefRoute {
    name: String,
    path: PathRule,
    header: Option<&'static str>,
    method: Option<&'static str>,
    priority: u32,
}

#[derive(Debug, Clone)]
struct RefRequest {
    segments: Vec<&'static str>,
    header: Option<&'static str>,
    method: &'static str,
}

impl RefRequest {
    fn path(&self) -> String {
        format!("/{}", self.segments.join("/"))
    }
}

/// Specificity of one position: a literal beats a parameter, which beats the end of a pattern
/// (only ever compared with a catch-all), which beats a catch-all.
const LIT: u8 = 0;
const PARAM: u8 = 1;
const END: u8 = 2;
const CATCH: u8 = 3;

/// The key of a matching path rule (lower is more specific), or `None` when it does not match.
fn path_key(rule: &PathRule, segs: &[&str]) -> Option<Vec<u8>> {
    match rule {
        PathRule::None => Some(Vec::new()),
        PathRule::Prefix(lits) => {
            (segs.len() >= lits.len() && segs.iter().zip(lits).all(|(s, l)| s == l)).then(|| {
                let mut k = vec![LIT; lits.len()];
                k.push(CATCH);
                k
            })
        }
        PathRule::Pattern(elems) => {
            let mut key = Vec::new();
            for (i, e) in elems.iter().enumerate() {
                match e {
                    Elem::Lit(l) => {
                        if segs.get(i) != Some(l) {
                            return None;
                        }
                        key.push(LIT);
                    }
                    Elem::Param => {
                        if segs.get(i).is_none_or(|s| s.is_empty()) {
                            return None;
                        }
                        key.push(PARAM);
                    }
                    Elem::CatchAll => {
                        // One or more characters.
                        if segs.len() <= i || segs[i..].join("/").is_empty() {
                            return None;
                        }
                        key.push(CATCH);
                        return Some(key);
                    }
                }
            }
            (segs.len() == elems.len()).then(|| {
                key.push(END);
                key
            })
        }
    }
}

fn matcher_count(r: &RefRoute) -> usize {
    usize::from(!matches!(r.path, PathRule::None))
        + usize::from(r.header.is_some())
        + usize::from(r.method.is_some())
}

/// The rule in docs/routes.md, applied by brute force.
fn reference_winner<'a>(routes: &'a [RefRoute], req: &RefRequest) -> Option<&'a str> {
    routes
        .iter()
        .filter(|r| r.header.is_none_or(|h| req.header == Some(h)))
        .filter(|r| r.method.is_none_or(|m| m == req.method))
        .filter_map(|r| path_key(&r.path, &req.segments).map(|k| (r, k)))
        .min_by(|(a, ka), (b, kb)| {
            b.priority
                .cmp(&a.priority)
                // Any radix pattern beats no path matcher.
                .then_with(|| {
                    matches!(a.path, PathRule::None).cmp(&matches!(b.path, PathRule::None))
                })
                .then_with(|| ka.cmp(kb))
                .then_with(|| matcher_count(b).cmp(&matcher_count(a)))
                .then_with(|| a.name.as_bytes().cmp(b.name.as_bytes()))
        })
        .map(|(r, _)| r.name.as_str())
}

fn to_rule(r: &RefRoute) -> Value {
    let mut matchers = Vec::new();
    match &r.path {
        PathRule::Pattern(elems) => {
            let mut p = String::new();
            for (i, e) in elems.iter().enumerate() {
                p.push('/');
                match e {
                    Elem::Lit(l) => p.push_str(l),
                    Elem::Param => p.push_str(&format!("{{p{i}}}")),
                    Elem::CatchAll => p.push_str("{*rest}"),
                }
            }
            if p.is_empty() {
                p.push('/');
            }
            matchers.push(json!({"condition": "path", "pattern": p}));
        }
        PathRule::Prefix(lits) => {
            matchers.push(
                json!({"condition": "path_prefix", "pattern": format!("/{}", lits.join("/"))}),
            );
        }
        PathRule::None => {}
    }
    if let Some(h) = r.header {
        matchers.push(json!({"condition": "header", "field": "x-h", "pattern": h}));
    }
    if let Some(m) = r.method {
        matchers.push(json!({"condition": "method", "pattern": m}));
    }
    json!({
        "name": r.name, "matchers": matchers, "priority": r.priority,
        "filters": [{"name": "respond", "args": ["200", r.name]}],
    })
}

fn lit() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("a"), Just("b")]
}

fn path_rule() -> impl Strategy<Value = PathRule> {
    let elem = prop_oneof![3 => lit().prop_map(Elem::Lit), 2 => Just(Elem::Param)];
    prop_oneof![
        4 => (proptest::collection::vec(elem, 0..3), any::<bool>()).prop_map(|(mut e, catch)| {
            if catch {
                e.push(Elem::CatchAll);
            }
            if e.is_empty() {
                // `/`: one empty literal segment.
                e.push(Elem::Lit(""));
            }
            PathRule::Pattern(e)
        }),
        2 => proptest::collection::vec(lit(), 1..3).prop_map(PathRule::Prefix),
        1 => Just(PathRule::None),
    ]
}

fn table() -> impl Strategy<Value = Vec<RefRoute>> {
    proptest::collection::vec(
        (
            path_rule(),
            proptest::option::of(prop_oneof![Just("1"), Just("2")]),
            proptest::option::of(prop_oneof![Just("GET"), Just("POST")]),
            0u32..3,
        ),
        1..8,
    )
    .prop_map(|rs| {
        rs.into_iter()
            .enumerate()
            .map(|(i, (path, header, mut method, priority))| {
                // A route needs a matcher.
                if matches!(path, PathRule::None) && header.is_none() && method.is_none() {
                    method = Some("GET");
                }
                RefRoute {
                    // Names out of creation order, so the name tie-break is exercised.
                    name: format!("r{}", (i * 7) % 10),
                    path,
                    header,
                    method,
                    priority,
                }
            })
            .collect::<Vec<_>>()
    })
    .prop_filter("unique names", |rs| {
        let mut names: Vec<&str> = rs.iter().map(|r| r.name.as_str()).collect();
        names.sort_unstable();
        names.windows(2).all(|w| w[0] != w[1])
    })
}

fn request() -> impl Strategy<Value = RefRequest> {
    (
        proptest::collection::vec(prop_oneof![Just("a"), Just("b"), Just("c")], 0..4),
        proptest::option::of(prop_oneof![Just("1"), Just("2")]),
        prop_oneof![Just("GET"), Just("POST")],
    )
        .prop_map(|(segments, header, method)| RefRequest {
            // `/` is one empty segment, as in the patterns.
            segments: if segments.is_empty() {
                vec![""]
            } else {
                segments
            },
            header,
            method,
        })
}

fn decide(table: &RouteTable<NoExternal>, req: &RefRequest) -> Option<String> {
    let mut b = http::Request::builder()
        .method(req.method)
        .uri(req.path())
        .header("host", "t");
    if let Some(h) = req.header {
        b = b.header("x-h", h);
    }
    let (parts, ()) = b.body(()).unwrap().into_parts();
    let head = SharedHead {
        parts: Arc::new(parts),
        remote: SocketAddr::from(([127, 0, 0, 1], 1)),
        scheme: "http",
    };
    match table.decide(&head.view(None), &PredicateResults::default()) {
        Decision::Route(id) => Some(table.route(id).name.to_string()),
        _ => None,
    }
}

proptest! {
    #![proptest_config(Config {
        cases: 512,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../tests/properties.proptest-regressions"
            )),
        )),
        ..Config::default()
    })]

    #[test]
    fn the_table_agrees_with_the_reference_precedence(
        routes in table(),
        requests in proptest::collection::vec(request(), 1..12),
    ) {
        let doc: ConfigFile = serde_json::from_value(
            json!({"routes": routes.iter().map(to_rule).collect::<Vec<_>>()}),
        )
        .unwrap();
        let table = RouteTable::<NoExternal>::build(&doc).unwrap_or_else(|e| panic!("{e}"));
        for req in &requests {
            let want = reference_winner(&routes, req).map(str::to_owned);
            let got = decide(&table, req);
            prop_assert_eq!(
                &got, &want,
                "{} {} x-h={:?}\nroutes: {}",
                req.method, req.path(), req.header,
                serde_json::to_string(&doc.routes).unwrap()
            );
        }
    }
}
