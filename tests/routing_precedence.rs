//! Black-box tests of route precedence: which route wins, table-driven, one real `routerd`
//! process per case and requests over real sockets on 127.0.0.1. (Each matcher condition is in
//! `routing.rs`; the answers when no route wins in `routing_answers.rs`.)
#![allow(clippy::unwrap_used)]

mod harness;

use harness::*;
use serde_json::json;

/// One precedence case: routes, then probes expecting route names.
struct Case {
    label: &'static str,
    routes: Vec<Route>,
    probes: Vec<Probe>,
}

fn case(label: &'static str, routes: Vec<Route>, probes: Vec<Probe>) -> Case {
    Case {
        label,
        routes,
        probes,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn precedence_table() {
    let r = Route::respond;
    let cases = vec![
        case(
            "priority beats path specificity",
            vec![
                r("lit").m(path("/a/b")),
                r("catch").m(path("/a/{*rest}")).priority(10),
            ],
            vec![probe("GET", "/a/b").route("catch")],
        ),
        case(
            "priority beats radix-over-regex",
            vec![
                r("lit").m(path("/r/x")),
                r("re").m(path_re("^/r/")).priority(1),
            ],
            vec![probe("GET", "/r/x").route("re")],
        ),
        case(
            "priority beats more matchers",
            vec![
                r("few").m(path("/m")).priority(5),
                r("many")
                    .m(path("/m"))
                    .m(header("X-A", "1"))
                    .m(method("GET")),
            ],
            vec![probe("GET", "/m").header("X-A", "1").route("few")],
        ),
        case(
            "literal beats param",
            vec![r("param").m(path("/u/{id}")), r("lit").m(path("/u/new"))],
            vec![
                probe("GET", "/u/new").route("lit"),
                probe("GET", "/u/7").route("param"),
            ],
        ),
        case(
            "param beats catch-all (matchit conflict)",
            vec![
                r("catch").m(path("/a/{*rest}")),
                r("param").m(path("/a/{id}")),
            ],
            vec![
                probe("GET", "/a/7").route("param"),
                probe("GET", "/a/7/8").route("catch"),
            ],
        ),
        case(
            "first differing segment decides",
            vec![
                r("param-first").m(path("/x/{p}/lit")),
                r("lit-first").m(path("/x/lit2/{q}")),
            ],
            vec![
                probe("GET", "/x/lit2/lit").route("lit-first"),
                probe("GET", "/x/other/lit").route("param-first"),
            ],
        ),
        case(
            "deeper literal catch-all beats shallower catch-all",
            vec![
                r("shallow").m(path("/a/{*rest}")),
                r("deep").m(path("/a/b/{*rest}")),
            ],
            vec![
                probe("GET", "/a/b/c").route("deep"),
                probe("GET", "/a/c/d").route("shallow"),
                // `/a/b/{*rest}` needs a non-empty rest
                probe("GET", "/a/b").route("shallow"),
            ],
        ),
        case(
            "exact beats prefix on the prefix itself",
            vec![r("pre").m(prefix("/a")), r("exact").m(path("/a"))],
            vec![
                probe("GET", "/a").route("exact"),
                probe("GET", "/a/x").route("pre"),
            ],
        ),
        case(
            "exact beats prefix (two segments)",
            vec![r("pre").m(prefix("/a/b")), r("exact").m(path("/a/b"))],
            vec![probe("GET", "/a/b").route("exact")],
        ),
        case(
            "prefix /a/b beats /a/{*rest}",
            vec![r("catch").m(path("/a/{*rest}")), r("pre").m(prefix("/a/b"))],
            vec![
                probe("GET", "/a/b/c").route("pre"),
                probe("GET", "/a/b").route("pre"),
                probe("GET", "/a/c").route("catch"),
            ],
        ),
        case(
            "prefix literal beats param at the same depth",
            vec![r("param").m(path("/a/{x}/c")), r("pre").m(prefix("/a/b"))],
            vec![
                probe("GET", "/a/b/c").route("pre"),
                probe("GET", "/a/z/c").route("param"),
            ],
        ),
        case(
            "param beats the catch-all of a shorter prefix",
            vec![r("pre").m(prefix("/a")), r("param").m(path("/a/{x}"))],
            vec![
                probe("GET", "/a/z").route("param"),
                probe("GET", "/a/z/y").route("pre"),
                probe("GET", "/a").route("pre"),
            ],
        ),
        case(
            "radix beats regex",
            vec![
                r("re").m(path_re("^/r/x$")),
                r("radix").m(path("/r/{*rest}")),
            ],
            vec![probe("GET", "/r/x").route("radix")],
        ),
        case(
            "regex beats no path matcher",
            vec![r("nopath").m(method("GET")), r("re").m(path_re("^/q"))],
            vec![
                probe("GET", "/q").route("re"),
                probe("GET", "/z").route("nopath"),
            ],
        ),
        case(
            "prefix beats no path matcher",
            vec![
                r("nopath").m(method("GET")).m(header("X-A", "1")),
                r("pre").m(prefix("/p")),
            ],
            vec![probe("GET", "/p/1").header("X-A", "1").route("pre")],
        ),
        case(
            "more matchers win on the same path",
            vec![
                r("one").m(path("/m")),
                r("two").m(path("/m")).m(header("X-A", "1")),
            ],
            vec![
                probe("GET", "/m").header("X-A", "1").route("two"),
                probe("GET", "/m").route("one"),
                probe("GET", "/m").header("X-A", "2").route("one"),
            ],
        ),
        case(
            "more specific path beats more matchers",
            vec![
                r("param-many")
                    .m(path("/a/{x}"))
                    .m(header("X-A", "1"))
                    .m(method("GET")),
                r("lit").m(path("/a/b")),
            ],
            vec![probe("GET", "/a/b").header("X-A", "1").route("lit")],
        ),
        case(
            "same pattern twice with different headers",
            vec![
                r("sa").m(path("/s/{id}")).m(header("X-T", "a")),
                r("sb").m(path("/s/{id}")).m(header("X-T", "b")),
            ],
            vec![
                probe("GET", "/s/1").header("X-T", "a").route("sa"),
                probe("GET", "/s/1").header("X-T", "b").route("sb"),
                probe("GET", "/s/1").status(404),
            ],
        ),
        case(
            "name byte order breaks ties",
            vec![
                r("b_route").m(path("/t")),
                r("a-route").m(path("/t")),
                r("alpha").m(path("/u")),
                r("Zulu").m(path("/u")),
            ],
            vec![
                probe("GET", "/t").route("a-route"),
                // byte order: uppercase sorts before lowercase
                probe("GET", "/u").route("Zulu"),
            ],
        ),
        case(
            "{name}, :name and *name spellings",
            vec![
                r("colon").m(path("/c/:id")),
                r("braces").m(path("/c/{id}/x")),
                r("star").m(path("/c/{id}/x/*rest")),
            ],
            vec![
                probe("GET", "/c/1").route("colon"),
                probe("GET", "/c/1/x").route("braces"),
                probe("GET", "/c/1/x/y/z").route("star"),
            ],
        ),
        case(
            "disabled routes never match",
            vec![
                r("off")
                    .m(path("/e"))
                    .priority(1000)
                    .set("enabled", json!(false)),
                r("on").m(path("/e")),
                r("off-only").m(path("/g")).set("enabled", json!(false)),
            ],
            vec![
                probe("GET", "/e").route("on"),
                probe("GET", "/g").status(404),
            ],
        ),
        case(
            "fall-through to the next matching pattern",
            vec![
                r("new").m(path("/users/new")).m(header("X-Admin", "1")),
                r("id").m(path("/users/{id}")),
            ],
            vec![
                probe("GET", "/users/new").route("id"),
                probe("GET", "/users/new")
                    .header("X-Admin", "1")
                    .route("new"),
                probe("GET", "/users/42").route("id"),
            ],
        ),
        case(
            "fall-through across several levels",
            vec![
                r("lit").m(path("/f/a/x")).m(header("X-L", "1")),
                r("param").m(path("/f/{a}/x")).m(header("X-P", "1")),
                r("catch").m(path("/f/{*rest}")),
                r("re").m(path_re("^/f/")).m(header("X-R", "1")),
            ],
            vec![
                probe("GET", "/f/a/x").header("X-L", "1").route("lit"),
                probe("GET", "/f/a/x").header("X-P", "1").route("param"),
                probe("GET", "/f/a/x").route("catch"),
                probe("GET", "/f/a/x")
                    .header("X-R", "1")
                    .header("X-L", "0")
                    .route("catch"),
            ],
        ),
        case(
            "fall-through from radix to regex to no-path",
            vec![
                r("radix").m(path("/n/{id}")).m(header("X-A", "1")),
                r("re").m(path_re("^/n/")).m(header("X-B", "1")),
                r("nopath").m(header("X-C", "1")),
            ],
            vec![
                probe("GET", "/n/1").header("X-A", "1").route("radix"),
                probe("GET", "/n/1").header("X-B", "1").route("re"),
                probe("GET", "/n/1").header("X-C", "1").route("nopath"),
                probe("GET", "/n/1").status(404),
            ],
        ),
        case(
            "different param names at the same position",
            vec![
                r("by-id").m(path("/users/{id}")),
                r("posts").m(path("/users/{user}/posts")),
                r("post").m(path("/users/{uid}/posts/{pid}")),
            ],
            vec![
                probe("GET", "/users/1").route("by-id"),
                probe("GET", "/users/1/posts").route("posts"),
                probe("GET", "/users/1/posts/2").route("post"),
            ],
        ),
    ];

    let mut failures = Vec::new();
    for c in cases {
        let cfg = config(c.routes);
        failures.extend(run_case(c.label, &cfg, &c.probes).await);
    }
    assert_no_failures(&failures);
}
