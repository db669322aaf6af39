//! Black-box tests of dry runs: a real `routerd` process keeping a sample of every request head
//! (`--sample-every 1`), real echo backends on 127.0.0.1, known traffic, then route changes
//! asked as dry runs through the admin API and `routerctl --dry-run`. A dry run reports exactly
//! the sampled requests a change moves, where from and where to; names the routes it leaves
//! unreachable; changes nothing served; and never shows a sampled secret.
#![allow(clippy::unwrap_used)]

mod admin_common;
mod harness;

use std::collections::BTreeSet;

use admin_common::*;
use harness::*;
use serde_json::{Value, json};

const SECRET_COOKIE: &str = "s3cret-cookie-value";
const SECRET_TOKEN: &str = "Bearer top-secret-token";

/// The routes the tests start from: `users` and `orders` on backend `a`, `web` on `b`, and
/// `vip` (orders with the right session cookie, before `orders`) on `a`.
fn routes(a: &str, b: &str) -> Value {
    json!({"routes": [
        {"name": "users", "target_url": a,
         "matchers": [{"condition": "path", "pattern": "/api/users/{id}"}]},
        {"name": "orders", "target_url": a,
         "matchers": [{"condition": "path_prefix", "pattern": "/api/orders"}]},
        {"name": "vip", "target_url": a, "priority": 5,
         "matchers": [{"condition": "path_prefix", "pattern": "/api/orders"},
                      {"condition": "cookie", "field": "session", "pattern": SECRET_COOKIE}]},
        {"name": "web", "target_url": b,
         "matchers": [{"condition": "path_prefix", "pattern": "/web"}]},
    ]})
}

/// Known traffic: 4 users, 3 orders, 1 vip (with a secret token too), 2 web, 1 miss.
async fn traffic(rd: &Routerd) {
    for i in 1..=4 {
        let resp = rd.get(&format!("/api/users/{i}")).await;
        assert_eq!(resp.backend().as_deref(), Some("a"), "{}", resp.describe());
    }
    for p in ["/api/orders/1", "/api/orders/2?full=1", "/api/orders"] {
        assert_eq!(rd.get(p).await.backend().as_deref(), Some("a"));
    }
    let cookie = format!("theme=dark; session={SECRET_COOKIE}");
    let vip = rd
        .request(
            "GET",
            "/api/orders/9",
            &[("cookie", &cookie), ("authorization", SECRET_TOKEN)],
            "",
        )
        .await;
    assert_eq!(vip.backend().as_deref(), Some("a"));
    for p in ["/web/", "/web/index.html"] {
        assert_eq!(rd.get(p).await.backend().as_deref(), Some("b"));
    }
    assert_eq!(rd.get("/missing").await.status, 404);
}

/// A routerd keeping every request head, with [`routes`] applied and [`traffic`] sent.
async fn sampled_with_traffic(a: &Backend, b: &Backend) -> Routerd {
    let rd = Routerd::launch(&config(vec![]))
        .arg("--sample-every")
        .arg("1")
        .start()
        .await;
    let applied = rd
        .admin_json(
            "POST",
            &format!("{ROUTES}/apply"),
            Some(&routes(&a.url(), &b.url())),
        )
        .await;
    assert_status(&applied, 200, "apply");
    traffic(&rd).await;
    rd
}

/// A dry run through the admin API; its report.
async fn dry_run(rd: &Routerd, method: &str, path: &str, body: Option<&Value>) -> Value {
    let sep = if path.contains('?') { '&' } else { '?' };
    let resp = rd
        .admin_json(method, &format!("{path}{sep}dry_run=true"), body)
        .await;
    let report = assert_status(&resp, 200, &format!("dry run {method} {path}"));
    assert_eq!(report["dry_run"], true);
    let text = report.to_string();
    for secret in [SECRET_COOKIE, "top-secret-token"] {
        assert!(!text.contains(secret), "a secret in the report: {text}");
    }
    report
}

/// The report's groups as `(from route, from target, to route, to target, count)`.
fn groups(report: &Value) -> Vec<(String, String, String, String, u64)> {
    let s = |v: &Value| v.as_str().unwrap_or("").to_owned();
    report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                s(&g["from"]["route"]),
                s(&g["from"]["target"]),
                s(&g["to"]["route"]),
                s(&g["to"]["target"]),
                g["count"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn example_paths(report: &Value) -> BTreeSet<String> {
    report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["examples"].as_array().unwrap().iter())
        .map(|e| e["path"].as_str().unwrap().to_owned())
        .collect()
}

fn names(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_runs_report_what_moves_and_change_nothing() {
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    let rd = sampled_with_traffic(&a, &b).await;

    // Orders to another backend: exactly the three plain orders requests move; the vip one
    // (sealed cookie, equal to vip's matcher) stays on vip.
    let mut orders = to_backend("orders", "/x", &c.url());
    orders["matchers"] = json!([{"condition": "path_prefix", "pattern": "/api/orders"}]);
    let report = dry_run(&rd, "PUT", &route_url("orders"), Some(&orders)).await;
    assert_eq!(report["replayed"], 11, "{report}");
    assert_eq!(report["moved"], 3, "{report}");
    assert_eq!(
        groups(&report),
        [("orders".into(), a.url(), "orders".into(), c.url(), 3)]
    );
    assert_eq!(
        example_paths(&report),
        BTreeSet::from([
            "/api/orders".to_owned(),
            "/api/orders/1".into(),
            "/api/orders/2".into()
        ])
    );
    assert_eq!(report["change"]["updated"], json!(["orders"]));
    assert_eq!(report["uncertain"], 0);

    // Nothing served changed.
    let before = a.requests();
    assert_eq!(
        rd.get("/api/orders/5").await.backend().as_deref(),
        Some("a")
    );
    assert_eq!(a.requests(), before + 1);
    let stored = assert_status(&get_route(&rd, "orders").await, 200, "GET orders");
    assert_eq!(stored["target_url"], a.url());

    // The vip route to another backend: its one request moves. It matched live on a sealed
    // cookie: the replay must compare the sealed value, or it would report nothing.
    let mut vip = routes(&a.url(), &b.url())["routes"][2].clone();
    vip["target_url"] = json!(c.url());
    let report = dry_run(&rd, "PUT", &route_url("vip"), Some(&vip)).await;
    assert_eq!(
        groups(&report),
        [("vip".into(), a.url(), "vip".into(), c.url(), 1)]
    );

    // A wide route before the others: every /api request moves to it (the 8 of `traffic` and
    // the orders request above), and the routes it covers are named unreachable, by this
    // change.
    let catch = json!({"name": "catch", "target_url": b.url(), "priority": 10,
                       "matchers": [{"condition": "path_prefix", "pattern": "/api"}]});
    let report = dry_run(&rd, "POST", ROUTES, Some(&catch)).await;
    assert_eq!(report["replayed"], 12, "{report}");
    assert_eq!(report["moved"], 9, "{report}");
    let unreachable: BTreeSet<(String, String, bool)> = report["unreachable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["route"].as_str().unwrap().to_owned(),
                u["shadowed_by"].as_str().unwrap().to_owned(),
                u["new"].as_bool().unwrap(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String, bool)> = ["orders", "users", "vip"]
        .into_iter()
        .map(|r| (r.to_owned(), "catch".to_owned(), true))
        .collect();
    assert_eq!(unreachable, expected, "{report}");
    assert_eq!(
        names(&report["no_longer_reached"]),
        BTreeSet::from(["orders".into(), "users".into(), "vip".into()])
    );
    assert_eq!(
        get_route(&rd, "catch").await.status,
        404,
        "the dry run created it"
    );

    // Deleting web: its two requests would get 404.
    let report = dry_run(&rd, "DELETE", &route_url("web"), None).await;
    assert_eq!(
        groups(&report),
        [("web".into(), b.url(), "(404)".into(), String::new(), 2)]
    );
    assert_eq!(rd.get("/web/x").await.backend().as_deref(), Some("b"));

    // Applying the same document moves nothing.
    let report = dry_run(
        &rd,
        "POST",
        &format!("{ROUTES}/apply"),
        Some(&routes(&a.url(), &b.url())),
    )
    .await;
    assert_eq!(report["moved"], 0, "{report}");

    // A change that would be refused is refused the same way as a dry run.
    let bad = json!({"name": "bad", "target_url": "ftp://x",
                     "matchers": [{"condition": "path", "pattern": "/bad"}]});
    let resp = rd
        .admin_json("POST", &format!("{ROUTES}?dry_run=true"), Some(&bad))
        .await;
    assert_eq!(resp.status, 400, "{}", resp.describe());
    assert!(resp.text().contains("target_url"), "{}", resp.describe());

    let logs = rd.logs().join("\n");
    for secret in [SECRET_COOKIE, "top-secret-token"] {
        assert!(!logs.contains(secret), "a secret in the logs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routerctl_dry_run_prints_the_moves() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let rd = sampled_with_traffic(&a, &b).await;

    let out = run_ctl(&rd, &["route", "delete", "web", "--dry-run"]).await;
    assert!(out.0, "routerctl failed: {}", out.2);
    let stdout = out.1;
    assert!(
        stdout.starts_with("dry run: nothing was changed\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("      2  web ({}) → (404)", b.url())),
        "{stdout}"
    );
    assert!(stdout.contains("e.g. GET 127.0.0.1"), "{stdout}");
    assert_eq!(rd.get("/web/x").await.backend().as_deref(), Some("b"));

    let out = run_ctl(&rd, &["route", "disable", "users", "--dry-run"]).await;
    assert!(out.0, "routerctl failed: {}", out.2);
    assert!(out.1.contains("      4  users ("), "{}", out.1);
    assert_eq!(
        rd.get("/api/users/1").await.backend().as_deref(),
        Some("a"),
        "disable --dry-run disabled the route"
    );

    let out = run_ctl(&rd, &["route", "list", "--dry-run"]).await;
    assert!(
        !out.0 && out.2.contains("--dry-run goes with a route change"),
        "{}",
        out.2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_sample_a_dry_run_still_finds_unreachable_routes() {
    let rd = Routerd::launch(&config(vec![]))
        .arg("--sample-every")
        .arg("0")
        .start()
        .await;
    assert_status(
        &rd.admin_json("POST", ROUTES, Some(&answer("first", "/same", "1")))
            .await,
        201,
        "create",
    );
    assert_eq!(rd.get("/same").await.status, 200);
    let second = answer("second", "/same", "2");
    let report = dry_run(&rd, "POST", ROUTES, Some(&second)).await;
    assert_eq!(report["sample"], Value::Null);
    assert_eq!(report["replayed"], 0);
    assert_eq!(
        report["unreachable"],
        json!([{"route": "second", "shadowed_by": "first", "new": true}])
    );
}

/// `routerctl --admin URL args...`: (success, stdout, stderr).
async fn run_ctl(rd: &Routerd, args: &[&str]) -> (bool, String, String) {
    let mut cmd = tokio::process::Command::new(routerctl_bin());
    cmd.arg("--admin")
        .arg(rd.admin_url())
        .args(args)
        .env_remove("ROUTERCTL_ADMIN")
        .env_remove("ROUTERCTL_TOKEN_FILE")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(std::time::Duration::from_secs(30), cmd.output())
        .await
        .expect("routerctl did not finish in time")
        .expect("run routerctl");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
