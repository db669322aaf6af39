//! Black-box tests of changing routes through the admin API when others change them too: a real
//! `routerd` on 127.0.0.1. `If-Match` versions on PUT and DELETE, renames (the route and its
//! traffic move), stable and complete pagination, and concurrent writers that never overwrite
//! each other.
#![allow(clippy::unwrap_used)]

mod admin_common;
mod harness;

use std::collections::BTreeSet;
use std::sync::Arc;

use admin_common::*;
use harness::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_match_guards_put_and_delete() {
    let rd = Routerd::start_in_process(&config(vec![])).await;
    // version, source and status in a body are ignored.
    let mut body = answer("guarded", "/g", "v1");
    body["version"] = json!(999_999);
    body["source"] = json!("file");
    body["status"] = json!("disabled");
    let v1 = create(&rd, &body).await;
    assert_ne!(
        version(&v1),
        "999999",
        "the body's version was stored: {v1}"
    );

    let v1_tag = version(&v1);
    let put = |text: &str| answer("guarded", "/g", text);
    let resp = rd
        .admin_request(
            "PUT",
            &route_url("guarded"),
            &[("content-type", "application/json"), ("if-match", &v1_tag)],
            put("v2").to_string(),
        )
        .await;
    let v2 = assert_status(&resp, 200, "PUT with the current If-Match");
    let v2_tag = version(&v2);
    assert_ne!(v2_tag, v1_tag);
    assert_eq!(traffic(&rd, "/g").await, (200, "v2".to_owned()));

    // A stale version: 412, nothing changes.
    let resp = rd
        .admin_request(
            "PUT",
            &route_url("guarded"),
            &[("content-type", "application/json"), ("if-match", &v1_tag)],
            put("v3").to_string(),
        )
        .await;
    assert_error(&resp, 412, "version_mismatch", "PUT with a stale If-Match");
    let resp = rd
        .admin_request(
            "DELETE",
            &route_url("guarded"),
            &[("if-match", &v1_tag)],
            "",
        )
        .await;
    assert_error(
        &resp,
        412,
        "version_mismatch",
        "DELETE with a stale If-Match",
    );
    let now = assert_status(&get_route(&rd, "guarded").await, 200, "GET guarded");
    assert_eq!(version(&now), v2_tag);
    assert_eq!(traffic(&rd, "/g").await, (200, "v2".to_owned()));

    // Without If-Match the write is unconditional; with the current version DELETE works.
    let v3 = update(&rd, "guarded", &put("v3")).await;
    assert_ne!(version(&v3), v2_tag);
    let resp = rd
        .admin_request(
            "DELETE",
            &route_url("guarded"),
            &[("if-match", &v2_tag)],
            "",
        )
        .await;
    assert_error(
        &resp,
        412,
        "version_mismatch",
        "DELETE with the previous version",
    );
    let resp = rd
        .admin_request(
            "DELETE",
            &route_url("guarded"),
            &[("if-match", &version(&v3))],
            "",
        )
        .await;
    assert_eq!(
        resp.status,
        204,
        "DELETE with the current If-Match: {}",
        resp.describe()
    );
    assert_eq!(traffic(&rd, "/g").await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_moves_the_route_and_its_traffic() {
    let a = Backend::start("before").await;
    let b = Backend::start("after").await;
    let rd = Routerd::start_in_process(&config(vec![])).await;
    let old = create(&rd, &to_backend("old-name", "/r", &a.url())).await;
    create(&rd, &answer("other", "/other", "other")).await;
    assert_eq!(rd.get("/r").await.backend().as_deref(), Some("before"));

    let renamed = update(&rd, "old-name", &to_backend("new-name", "/r", &b.url())).await;
    assert_stored(&renamed, "new-name", "api", "active");
    assert_ne!(version(&renamed), version(&old));
    assert_error(
        &get_route(&rd, "old-name").await,
        404,
        "route_not_found",
        "GET the old name",
    );
    let got = assert_status(&get_route(&rd, "new-name").await, 200, "GET the new name");
    assert_eq!(got["target_url"], b.url());
    let resp = rd.get("/r").await;
    assert_eq!(
        resp.backend().as_deref(),
        Some("after"),
        "{}",
        resp.describe()
    );

    // Onto an existing name: 409, both unchanged.
    let resp = rd
        .admin_json(
            "PUT",
            &route_url("new-name"),
            Some(&to_backend("other", "/r", &a.url())),
        )
        .await;
    assert_error(&resp, 409, "route_conflict", "rename onto other");
    let names = route_names(&rd).await;
    assert_eq!(
        names,
        ["new-name", "other"].map(str::to_owned).into(),
        "routes after the refused rename"
    );
    assert_eq!(rd.get("/r").await.backend().as_deref(), Some("after"));
    assert_eq!(traffic(&rd, "/other").await, (200, "other".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_is_stable_and_complete() {
    let rd = Routerd::start_in_process(&config(vec![])).await;
    let mut created = BTreeSet::new();
    // Created out of name order.
    for i in [4, 1, 6, 0, 3, 5, 2] {
        let name = format!("page-{i}");
        create(&rd, &answer(&name, &format!("/p{i}"), &name)).await;
        created.insert(name);
    }

    let page = |offset: usize, limit: usize| {
        let rd = &rd;
        async move {
            let resp = rd
                .admin_get(&format!("{ROUTES}?offset={offset}&limit={limit}"))
                .await;
            let doc = assert_status(&resp, 200, &format!("page {offset}/{limit}"));
            assert_eq!(doc["total"], 7, "total on page {offset}: {doc}");
            assert_eq!(doc["offset"], offset, "offset echoed: {doc}");
            assert_eq!(doc["limit"], limit, "limit echoed: {doc}");
            doc["routes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["name"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };

    let mut listed = Vec::new();
    for (offset, len) in [(0, 3), (3, 3), (6, 1)] {
        let names = page(offset, 3).await;
        assert_eq!(names.len(), len, "page at {offset}: {names:?}");
        // The same page twice is the same.
        assert_eq!(page(offset, 3).await, names, "page at {offset} changed");
        listed.extend(names);
    }
    let unique: BTreeSet<String> = listed.iter().cloned().collect();
    assert_eq!(
        unique.len(),
        listed.len(),
        "duplicates across pages: {listed:?}"
    );
    assert_eq!(unique, created, "gaps across pages: {listed:?}");
    // The pages are slices of one order.
    assert_eq!(page(0, 7).await, listed);
    assert!(page(7, 3).await.is_empty());
    assert!(page(100, 3).await.is_empty());

    // Out of range or not numbers: 400 with an error body.
    for query in ["limit=0", "limit=1001", "limit=abc", "offset=-1"] {
        let resp = rd.admin_get(&format!("{ROUTES}?{query}")).await;
        let code = resp
            .try_json()
            .and_then(|d| d["error"].as_str().map(str::to_owned));
        assert!(
            resp.status == 400 && code.is_some(),
            "GET routes?{query}: expected 400 with an error code, got {}",
            resp.describe()
        );
    }
    let doc = assert_status(
        &rd.admin_get(&format!("{ROUTES}?limit=1000")).await,
        200,
        "limit=1000",
    );
    assert_eq!(doc["routes"].as_array().unwrap().len(), 7, "{doc}");

    // Defaults: offset 0, limit 50.
    let doc = assert_status(&rd.admin_get(ROUTES).await, 200, "GET routes");
    assert_eq!(doc["offset"], 0, "{doc}");
    assert_eq!(doc["limit"], 50, "{doc}");
    assert_eq!(doc["routes"].as_array().unwrap().len(), 7, "{doc}");

    // Deleting one closes the gap: still no duplicates or gaps.
    let resp = rd.admin_json("DELETE", &route_url("page-3"), None).await;
    assert_eq!(resp.status, 204, "{}", resp.describe());
    created.remove("page-3");
    let resp = rd.admin_get(&format!("{ROUTES}?offset=0&limit=1000")).await;
    let doc = assert_status(&resp, 200, "GET all");
    assert_eq!(doc["total"], 6);
    let names: BTreeSet<String> = doc["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, created);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_never_overwrite_each_other() {
    const WRITERS: usize = 8;
    let rd = Arc::new(Routerd::start_in_process(&config(vec![])).await);

    // The same name from several clients at once: exactly one is created.
    let mut posts = tokio::task::JoinSet::new();
    for i in 0..WRITERS {
        let rd = rd.clone();
        posts.spawn(async move {
            let body = answer("contended", "/contended", &format!("post-{i}"));
            (i, rd.admin_json("POST", ROUTES, Some(&body)).await)
        });
    }
    let mut created = Vec::new();
    while let Some(joined) = posts.join_next().await {
        let (i, resp) = joined.unwrap();
        if resp.status == 201 {
            created.push(i);
        } else {
            assert_error(
                &resp,
                409,
                "route_conflict",
                &format!("concurrent POST {i}"),
            );
        }
    }
    assert_eq!(created.len(), 1, "concurrent POSTs created {created:?}");
    let winner = format!("post-{}", created[0]);
    assert_eq!(traffic(&rd, "/contended").await, (200, winner));

    // Conditional updates from the same version: exactly one wins, the rest get 412.
    let current = assert_status(&get_route(&rd, "contended").await, 200, "GET contended");
    let tag = version(&current);
    let mut puts = tokio::task::JoinSet::new();
    for i in 0..WRITERS {
        let (rd, tag) = (rd.clone(), tag.clone());
        puts.spawn(async move {
            let body = answer("contended", "/contended", &format!("put-{i}")).to_string();
            let headers = [("content-type", "application/json"), ("if-match", &*tag)];
            (
                i,
                rd.admin_request("PUT", &route_url("contended"), &headers, body)
                    .await,
            )
        });
    }
    let mut updated = Vec::new();
    while let Some(joined) = puts.join_next().await {
        let (i, resp) = joined.unwrap();
        if resp.status == 200 {
            updated.push((i, resp.json()));
        } else {
            assert_error(
                &resp,
                412,
                "version_mismatch",
                &format!("concurrent PUT {i}"),
            );
        }
    }
    assert_eq!(
        updated.len(),
        1,
        "concurrent PUTs from one version all won: {updated:?}"
    );
    let (i, stored) = &updated[0];
    let now = assert_status(&get_route(&rd, "contended").await, 200, "GET contended");
    assert_eq!(version(&now), version(stored));
    assert_eq!(traffic(&rd, "/contended").await, (200, format!("put-{i}")));

    // Many different routes at once: every acknowledged one is there.
    let mut many = tokio::task::JoinSet::new();
    for i in 0..WRITERS * 4 {
        let rd = rd.clone();
        many.spawn(async move {
            let name = format!("parallel-{i}");
            let resp = rd
                .admin_json(
                    "POST",
                    ROUTES,
                    Some(&answer(&name, &format!("/parallel/{i}"), &name)),
                )
                .await;
            (name, resp)
        });
    }
    let mut versions = BTreeSet::new();
    while let Some(joined) = many.join_next().await {
        let (name, resp) = joined.unwrap();
        let doc = assert_status(&resp, 201, &format!("parallel POST {name}"));
        assert!(
            versions.insert(version(&doc)),
            "version {} handed out twice",
            doc["version"]
        );
    }
    let names = route_names(&rd).await;
    assert_eq!(names.len(), WRITERS * 4 + 1, "{names:?}");
    for i in 0..WRITERS * 4 {
        let name = format!("parallel-{i}");
        assert_eq!(traffic(&rd, &format!("/parallel/{i}")).await, (200, name));
    }
}
