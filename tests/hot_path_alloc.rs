//! The hot path allocates nothing: a route decision (index lookup + built-in matchers) for a
//! static path, or one with parameters, makes no heap allocation once warm (the regex crate
//! sets up per-thread scratch space on its first search). Counted with a global
//! allocator that tallies allocations made on the current thread while counting is on.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr};

use http::{HeaderMap, HeaderValue, Method};
use routerd::config::parse;
use routerd::routing::{Decision, RequestView, RouteTable};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: defers every operation to the system allocator unchanged; the bookkeeping only touches
// const-initialised thread-locals, which never allocate.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.with(|a| a.set(a.get() + 1));
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.with(|a| a.set(a.get() + 1));
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> usize {
    ALLOCATIONS.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn route_decision_allocates_nothing() {
    let config = parse(
        r#"{"routes": [
            {"name": "users-new", "target_url": "http://127.0.0.1:1", "matchers": [
                {"condition": "path", "pattern": "/users/new"},
                {"condition": "header", "field": "x-beta", "pattern": "1"}]},
            {"name": "user", "target_url": "http://127.0.0.1:1", "matchers": [
                {"condition": "path", "pattern": "/users/{id}"},
                {"condition": "method", "pattern": "GET|HEAD"}]},
            {"name": "health", "target_url": "http://127.0.0.1:1", "matchers": [
                {"condition": "path", "pattern": "/healthz"},
                {"condition": "host", "pattern": "*.example.com"},
                {"condition": "query_param", "field": "v", "pattern": "2"},
                {"condition": "cookie", "field": "s", "pattern": "^a", "is_regex": true},
                {"condition": "remote_addr", "pattern": "127.0.0.0/8"}]},
            {"name": "static", "target_url": "http://127.0.0.1:1", "matchers": [
                {"condition": "path_prefix", "pattern": "/static"}]},
            {"name": "files", "target_url": "http://127.0.0.1:1", "matchers": [
                {"condition": "path", "pattern": "/static/{*file}"}]}
        ]}"#,
        "test",
    )
    .expect("valid config");
    let table = RouteTable::build(&config).expect("valid routes");
    let mut headers = HeaderMap::new();
    headers.insert("cookie", HeaderValue::from_static("s=abc; t=1"));
    let cases = [
        ("/healthz", Some("v=2"), "health"),
        ("/users/new", None, "user"), // falls through: no x-beta header
        ("/users/42", None, "user"),
        ("/static/css/site.css", None, "files"),
        ("/static", None, "static"),
    ];
    for (path, query, want) in cases {
        let view = RequestView {
            method: &Method::GET,
            path,
            query,
            host: Some("api.example.com"),
            headers: &headers,
            remote: IpAddr::V4(Ipv4Addr::LOCALHOST),
            body: None,
            shared: None,
        };
        // The first regex search on a thread sets up its scratch space; measure steady state.
        let done = routerd::routing::PredicateResults::default();
        let _ = table.decide(&view, &done);
        let mut decision = Decision::NotFound;
        let n = allocations_during(|| decision = table.decide(&view, &done));
        match decision {
            Decision::Route(id) => assert_eq!(&*table.route(id).name, want, "{path}"),
            other => panic!("{path}: {other:?}"),
        }
        assert_eq!(n, 0, "{path}: the decision allocated {n} times");
    }
}
