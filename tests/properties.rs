//! Bounded fuzzing of routerd's parsers (the routing decision's properties are in
//! `precedence.rs`).
//!
//! - The route document parser and validator, the path pattern parser and the admin API's JSON
//!   bodies take arbitrary input (random bytes, and random JSON built from the fields they
//!   know) without panicking, and every refusal names a field and a reason.
//!
//! Each target first runs every file in `tests/corpus/<target>/` (inputs worth keeping: edge
//! cases and past failures), then a bounded number of random cases. proptest keeps the seeds of
//! failures it finds in `tests/properties.proptest-regressions` and replays them first.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::Config;
use routerd::config::{self, ConfigFile, RouteSetError};
use routerd::routing::pattern::{parse_pattern, parse_prefix};
use routerd::routing::{NoExternal, PredicateResults, RouteTable};
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
