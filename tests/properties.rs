//! Property tests and bounded fuzzing of routerd's parsers and its routing decision.
//!
//! - The route document parser and validator, the path pattern parser and the admin API's JSON
//!   bodies take arbitrary input (random bytes, and random JSON built from the fields they
//!   know) without panicking, and every refusal names a field and a reason.
//! - Random route tables and requests go through the compiled table and through a naive
//!   reference of the precedence rule in docs/routes.md ("Which route wins"); the two never differ.
//!
//! Each target first runs every file in `tests/corpus/<target>/` (inputs worth keeping: edge
//! cases and past failures), then a bounded number of random cases. proptest keeps the seeds of
//! failures it finds in `tests/properties.proptest-regressions` and replays them first.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::Config;
use routerd::config::{self, ConfigFile, RouteSetError};
use routerd::routing::pattern::{parse_pattern, parse_prefix};
use routerd::routing::{Decision, NoExternal, PredicateResults, RouteTable, SharedHead};
use serde_json::{Value, json};

/// Random cases per target: seconds in a debug build, not minutes.
const CASES: u32 = 256;

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "corpus {} is empty", dir.display());
    files
        .into_iter()
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect()
}

fn check_errors(e: &RouteSetError, input: &str) {
    assert!(!e.0.is_empty(), "an empty error list for {input}");
    for err in &e.0 {
        assert!(
            !err.field.is_empty() && !err.reason.is_empty(),
            "an error without a field or reason: {err:?} for {input}"
        );
    }
}

/// The config target: parse, then validate and compile.
fn config_target(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    match config::parse(text, "fuzz") {
        Ok(doc) => {
            if let Err(e) = RouteTable::<NoExternal>::build(&doc) {
                check_errors(&e, text);
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

fn pattern_target(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    if let Err(e) = parse_pattern(&text) {
        assert!(!e.is_empty(), "an empty reason for {text:?}");
    }
    if let Err(e) = parse_prefix(&text) {
        assert!(!e.is_empty(), "an empty reason for {text:?}");
    }
}

fn admin_route_target(bytes: &[u8]) {
    match routerd::admin::parse_rule(bytes) {
        Ok(rule) => {
            let doc = ConfigFile {
                routes: vec![rule.into()],
                ..ConfigFile::default()
            };
            if let Err(e) = RouteTable::<NoExternal>::build(&doc) {
                check_errors(&e, &String::from_utf8_lossy(bytes));
            }
        }
        Err(e) => assert!(e.status.is_client_error() && !e.message.is_empty(), "{e}"),
    }
}

fn admin_apply_target(bytes: &[u8]) {
    match routerd::admin::parse_apply(bytes) {
        Ok(doc) => {
            if let Err(e) = RouteTable::<NoExternal>::build(&doc) {
                check_errors(&e, &String::from_utf8_lossy(bytes));
            }
        }
        Err(e) => assert!(e.status.is_client_error() && !e.message.is_empty(), "{e}"),
    }
}

fn admin_match_target(bytes: &[u8]) {
    match routerd::admin::parse_match(bytes) {
        Ok((head, body)) => {
            // The decoded probe goes through a real table.
            let table = RouteTable::<NoExternal>::build(
                &config::parse(config::EMBEDDED_DEFAULT, "embedded").unwrap(),
            )
            .unwrap();
            let _ = table.decide(&head.view(body.as_ref()), &PredicateResults::default());
        }
        Err(e) => assert!(e.status.is_client_error() && !e.message.is_empty(), "{e}"),
    }
}

/// Runs the corpus, then random bytes, then random JSON documents, through `target`.
fn fuzz(name: &str, target: fn(&[u8]), json: BoxedStrategy<Value>) {
    for (file, bytes) in corpus(name) {
        let outcome = std::panic::catch_unwind(|| target(&bytes));
        assert!(outcome.is_ok(), "{name}: corpus file {file} panicked");
    }
    let mut runner = proptest::test_runner::TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&proptest::collection::vec(any::<u8>(), 0..256), |bytes| {
            target(&bytes);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{name} (bytes): {e}"));
    runner
        .run(&json, |doc| {
            target(doc.to_string().as_bytes());
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{name} (json): {e}"));
}

/// Strings that the parsers care about, and some that they should not.
fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("/".to_owned()),
        Just("/a/{id}".to_owned()),
        Just("/a/{*rest}".to_owned()),
        Just("/{*x}/b".to_owned()),
        Just(":id".to_owned()),
        Just("GET|POST".to_owned()),
        Just("http://127.0.0.1:1".to_owned()),
        Just("([".to_owned()),
        Just("10.0.0.0/8".to_owned()),
        "[a-z/{}*:.|()\\[\\]-]{0,12}",
        any::<String>(),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (0u64..2000).prop_map(Value::from),
        token().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map(token(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn matcher() -> impl Strategy<Value = Value> {
    (
        prop_oneof![
            Just("path"),
            Just("path_prefix"),
            Just("host"),
            Just("method"),
            Just("header"),
            Just("query_param"),
            Just("cookie"),
            Just("body_field"),
            Just("body_regex"),
            Just("remote_addr"),
            Just("plugin"),
            Just("phase_of_moon"),
        ],
        proptest::option::of(token()),
        token(),
        any::<bool>(),
    )
        .prop_map(|(condition, field, pattern, is_regex)| {
            let mut m = json!({"condition": condition, "pattern": pattern, "is_regex": is_regex});
            if let Some(f) = field {
                m["field"] = json!(f);
            }
            m
        })
}

fn route_json() -> impl Strategy<Value = Value> {
    (
        "[a-z0-9_ -]{0,6}",
        proptest::option::of(token()),
        proptest::collection::vec(matcher(), 0..4),
        0u32..1200,
        any::<bool>(),
        proptest::collection::vec(
            (
                prop_oneof![
                    Just("respond"),
                    Just("redirect"),
                    Just("set_path"),
                    Just("set_request_header"),
                    Just("teleport"),
                ],
                proptest::collection::vec(token(), 0..4),
            ),
            0..3,
        ),
        json_value(),
    )
        .prop_map(
            |(name, target, matchers, priority, default_rule, filters, extra)| {
                let filters: Vec<Value> = filters
                    .into_iter()
                    .map(|(n, args)| json!({"name": n, "args": args}))
                    .collect();
                let mut r = json!({
                    "name": name, "matchers": matchers, "priority": priority,
                    "default_rule": default_rule, "filters": filters,
                });
                if let Some(t) = target {
                    r["target_url"] = json!(t);
                }
                // Sometimes an unknown or mistyped field.
                if let Value::Object(extra) = extra
                    && let Some((k, v)) = extra.into_iter().next()
                {
                    r[k] = v;
                }
                r
            },
        )
}

fn document_json() -> impl Strategy<Value = Value> {
    (
        proptest::collection::vec(route_json(), 0..5),
        proptest::option::of(token()),
        proptest::option::of(any::<u64>()),
    )
        .prop_map(|(routes, default_url, max_body)| {
            let mut d = json!({ "routes": routes });
            if let Some(u) = default_url {
                d["default_url"] = json!(u);
            }
            if let Some(m) = max_body {
                d["max_body_bytes"] = json!(m);
            }
            d
        })
}

fn match_json() -> impl Strategy<Value = Value> {
    (
        token(),
        token(),
        proptest::option::of(token()),
        proptest::collection::btree_map("[a-zA-Z-]{0,6}", token(), 0..3),
        proptest::option::of(token()),
        proptest::option::of(token()),
    )
        .prop_map(|(method, path, host, headers, body, remote)| {
            let mut m = json!({"method": method, "path": path, "headers": headers});
            if let Some(h) = host {
                m["host"] = json!(h);
            }
            if let Some(b) = body {
                m["body"] = json!(b);
            }
            if let Some(r) = remote {
                m["remote_addr"] = json!(r);
            }
            m
        })
}

#[test]
fn route_documents_never_panic_and_errors_name_a_field() {
    fuzz("config", config_target, document_json().boxed());
}

#[test]
fn path_patterns_never_panic() {
    fuzz(
        "pattern",
        pattern_target,
        token().prop_map(Value::from).boxed(),
    );
}

#[test]
fn admin_route_bodies_never_panic() {
    fuzz("admin-route", admin_route_target, route_json().boxed());
}

#[test]
fn admin_apply_bodies_never_panic() {
    fuzz("admin-apply", admin_apply_target, document_json().boxed());
}

#[test]
fn admin_match_bodies_never_panic() {
    fuzz("admin-match", admin_match_target, match_json().boxed());
}

// ---------------------------------------------------------------------------------------------
// The compiled table against a naive reference of the precedence rule
// ---------------------------------------------------------------------------------------------

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
