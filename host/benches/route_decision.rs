//! The route decision (index lookup + built-in matchers) over a large generated table, next to
//! raw `matchit` holding the same patterns and looking up the same paths; the path tree alone
//! against matchit on matchit's own benchmark (the GitHub API's 130 routes, the four lookups it
//! times); and the table build.
//!
//! Run: `cargo bench -p routerd --bench route_decision`

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, Method};
use routerd::config::{ConfigFile, MatcherSpec, RouteRule};
use routerd::routing::pattern::parse_pattern;
use routerd::routing::tree::{Candidates, PathIndexBuilder};
use routerd::routing::{Decision, NoExternal, RequestView, RouteTable};

/// `n` routes shaped like a REST API: static, one-param, two-param and catch-all patterns, and a
/// method matcher on some; with one request path per route.
fn generate(n: usize) -> (Vec<(String, String)>, ConfigFile) {
    let mut patterns = Vec::with_capacity(n);
    for i in 0..n {
        let (pattern, path) = match i % 4 {
            0 => (format!("/api/v1/res{i}"), format!("/api/v1/res{i}")),
            1 => (
                format!("/api/v1/res{i}/{{id}}"),
                format!("/api/v1/res{i}/42"),
            ),
            2 => (
                format!("/api/v2/res{i}/{{id}}/items/{{item}}"),
                format!("/api/v2/res{i}/7/items/9"),
            ),
            _ => (
                format!("/static/res{i}/{{*file}}"),
                format!("/static/res{i}/css/site.css"),
            ),
        };
        patterns.push((pattern, path));
    }
    let routes = patterns
        .iter()
        .enumerate()
        .map(|(i, (pattern, _))| {
            let mut matchers = vec![MatcherSpec {
                condition: "path".into(),
                field: None,
                pattern: Some(pattern.clone()),
                is_regex: false,
                plugin: None,
                args: vec![],
            }];
            if i % 2 == 0 {
                matchers.push(MatcherSpec {
                    condition: "method".into(),
                    field: None,
                    pattern: Some("GET|HEAD".into()),
                    is_regex: false,
                    plugin: None,
                    args: vec![],
                });
            }
            serde_json::from_value::<RouteRule>(serde_json::json!({
                "name": format!("r{i}"),
                "target_url": "http://127.0.0.1:1",
            }))
            .map(|mut r| {
                r.matchers = matchers;
                std::sync::Arc::new(r)
            })
            .unwrap_or_else(|e| panic!("{e}"))
        })
        .collect();
    (
        patterns,
        ConfigFile {
            routes,
            ..ConfigFile::default()
        },
    )
}

fn bench(c: &mut Criterion) {
    let (patterns, config) = generate(10_000);
    let table = RouteTable::<NoExternal>::build(&config).unwrap_or_else(|e| panic!("{e}"));
    let mut raw = matchit::Router::new();
    for (i, (p, _)) in patterns.iter().enumerate() {
        raw.insert(p.as_str(), i).unwrap_or_else(|e| panic!("{e}"));
    }
    // A sample of 1,000 paths, spread over the table.
    let paths: Vec<&str> = patterns
        .iter()
        .step_by(10)
        .map(|(_, p)| p.as_str())
        .collect();
    let headers = HeaderMap::new();
    // The bench measures real decisions: every sampled path must reach its own route.
    for (i, (_, path)) in patterns.iter().enumerate().step_by(10) {
        let view = RequestView {
            method: &Method::GET,
            path,
            query: None,
            host: None,
            headers: &headers,
            remote: IpAddr::V4(Ipv4Addr::LOCALHOST),
            body: None,
            shared: None,
        };
        match table.decide(&view, &Default::default()) {
            Decision::Route(id) => assert_eq!(&*table.route(id).name, format!("r{i}")),
            other => panic!("{path}: {other:?}"),
        }
    }

    let mut g = c.benchmark_group("decision_10k_routes_1k_paths");
    let done = routerd::routing::PredicateResults::default();
    g.bench_function("routerd_decide", |b| {
        b.iter(|| {
            for path in &paths {
                let view = RequestView {
                    method: &Method::GET,
                    path,
                    query: None,
                    host: Some("example.com"),
                    headers: &headers,
                    remote: IpAddr::V4(Ipv4Addr::LOCALHOST),
                    body: None,
                    shared: None,
                };
                let d = table.decide(black_box(&view), &done);
                debug_assert!(matches!(d, Decision::Route(_)));
                black_box(d);
            }
        })
    });
    g.bench_function("matchit_at", |b| {
        b.iter(|| {
            for path in &paths {
                black_box(raw.at(black_box(path)).ok());
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("build");
    g.sample_size(10);
    g.bench_function("routerd_table_10k", |b| {
        b.iter(|| RouteTable::<NoExternal>::build(black_box(&config)))
    });
    // The same shape at a tenth and at ten times the size.
    for (name, n) in [("routerd_table_1k", 1_000), ("routerd_table_100k", 100_000)] {
        let (_, config) = generate(n);
        g.bench_function(name, |b| {
            b.iter(|| RouteTable::<NoExternal>::build(black_box(&config)))
        });
    }
    g.bench_function("matchit_insert_10k", |b| {
        b.iter(|| {
            let mut r = matchit::Router::new();
            for (i, (p, _)) in patterns.iter().enumerate() {
                let _ = r.insert(p.as_str(), i);
            }
            r
        })
    });
    g.finish();
}

/// The lookups matchit's own benchmark times.
const GITHUB_LOOKUPS: [&str; 4] = [
    "/user/repos",
    "/repos/rust-lang/rust/stargazers",
    "/orgs/rust-lang/public_members/nikomatsakis",
    "/repos/rust-lang/rust/releases/1.51.0",
];

/// Our path tree on matchit's home ground. The tree yields every matching route (here always
/// one); matchit yields the one it prefers with its parameters.
fn github(c: &mut Criterion) {
    let routes: Vec<&str> = include_str!("common/github_routes.txt")
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(routes.len(), 130);
    let mut builder = PathIndexBuilder::new();
    let mut raw = matchit::Router::new();
    for (i, route) in routes.iter().enumerate() {
        let pattern = parse_pattern(route).unwrap_or_else(|e| panic!("{route}: {e}"));
        builder.insert_pattern(&pattern.segments, i as u32);
        raw.insert(*route, i as u32)
            .unwrap_or_else(|e| panic!("{route}: {e}"));
    }
    let index = builder.build();
    // Both find the same route for every lookup.
    for path in GITHUB_LOOKUPS {
        let mut out = Candidates::new();
        index.candidates(path, &mut out);
        let expected = raw.at(path).map(|m| *m.value).ok();
        assert_eq!(out.first().copied(), expected, "{path}");
        assert_eq!(out.len(), 1, "{path}");
    }
    let mut g = c.benchmark_group("github_130_routes_4_lookups");
    g.bench_function("routerd_tree", |b| {
        let mut out = Candidates::new();
        b.iter(|| {
            for path in black_box(GITHUB_LOOKUPS) {
                out.clear();
                index.candidates(path, &mut out);
                black_box(&out);
            }
        })
    });
    g.bench_function("matchit_at", |b| {
        b.iter(|| {
            for path in black_box(GITHUB_LOOKUPS) {
                black_box(raw.at(path).ok());
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench, github);
criterion_main!(benches);
