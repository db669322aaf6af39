//! Black-box tests of the plugins directory: a real `routerd`
//! process under steady load while plugins are replaced, deleted, restored, garbled or
//! half-written. Plugins are built from `plugins/`.
#![allow(clippy::unwrap_used)]

mod harness;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use harness::*;
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// The plugins directory
// ---------------------------------------------------------------------------------------------

/// Route A needs `sel(x-tier, gold)`; route B has the same path and no plugin.
fn selector_config() -> Value {
    config(vec![
        Route::respond("A")
            .m(path("/t"))
            .m(plugin_pred("sel", &["x-tier", "gold"])),
        Route::respond("B").m(path("/t")),
    ])
}

const LOAD_TASKS: usize = 4;
const LOAD_MAX_REQUESTS_PER_TASK: usize = 800;
const LOAD_MAX_TIME: Duration = Duration::from_secs(15);

/// What one load task saw.
#[derive(Default)]
struct LoadStats {
    requests: usize,
    a_without_header: usize,
    b_with_header: usize,
    failures: Vec<String>,
}

/// Sends `GET /t` (every other one with `x-tier: gold`) until told to stop, at most
/// [`LOAD_MAX_REQUESTS_PER_TASK`] requests and [`LOAD_MAX_TIME`]. Anything but 200 A or B is a
/// failure.
async fn load_task(
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    started: Instant,
    task: usize,
) -> LoadStats {
    let mut stats = LoadStats::default();
    for i in 0..LOAD_MAX_REQUESTS_PER_TASK {
        if stop.load(Ordering::SeqCst) || started.elapsed() >= LOAD_MAX_TIME {
            break;
        }
        let gold = (i + task).is_multiple_of(2);
        let headers: &[(&str, &str)] = if gold { &[("x-tier", "gold")] } else { &[] };
        let at = started.elapsed();
        stats.requests += 1;
        match request_to(addr, "GET", "/t", headers, Bytes::new()).await {
            Ok(r) if r.status == 200 && (r.text() == "A" || r.text() == "B") => {
                if !gold && r.text() == "A" {
                    stats.a_without_header += 1;
                }
                if gold && r.text() == "B" {
                    stats.b_with_header += 1;
                }
            }
            Ok(r) => stats.failures.push(format!(
                "load task {task} at {at:?} (gold: {gold}): {}",
                r.describe()
            )),
            Err(e) => stats.failures.push(format!(
                "load task {task} at {at:?} (gold: {gold}): transport error: {e}"
            )),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stats
}

/// Polls `GET /t` (with `x-tier: gold` if `gold`) every 10 ms until it answers `want`; returns
/// how long that took, or `None` after `timeout`. Answers other than 200 A or B go to `failures`.
async fn poll_until(
    rd: &Routerd,
    gold: bool,
    want: &str,
    timeout: Duration,
    failures: &mut Vec<String>,
) -> Option<Duration> {
    let started = Instant::now();
    let headers: &[(&str, &str)] = if gold { &[("x-tier", "gold")] } else { &[] };
    while started.elapsed() < timeout {
        match rd.try_request("GET", "/t", headers, Bytes::new()).await {
            Ok(r) if r.status == 200 && r.text() == want => return Some(started.elapsed()),
            Ok(r) if r.status == 200 && (r.text() == "A" || r.text() == "B") => {}
            Ok(r) => failures.push(format!("poll (gold: {gold}): {}", r.describe())),
            Err(e) => failures.push(format!("poll (gold: {gold}): transport error: {e}")),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_directory_changes_apply_under_load_without_failed_requests() {
    let header_eq = std::fs::read(dist_plugin("header-eq")).unwrap();
    let noop = std::fs::read(dist_plugin("noop-predicate")).unwrap();
    let plugins = TempDir::new("plugins");
    let sel = plugins.path().join("sel.wasm");
    install_file(&sel, &header_eq);
    let rd = Routerd::launch(&selector_config())
        .plugins_dir(plugins.path())
        .warm_cache()
        .start()
        .await;
    let mut failures = run_probes(
        &rd,
        "start",
        &[
            probe("GET", "/t").header("x-tier", "gold").route("A"),
            probe("GET", "/t").route("B"),
        ],
    )
    .await;
    // Checks on what routerd logs (the traffic checks are in `failures`).
    let mut problems: Vec<String> = Vec::new();

    let stop = Arc::new(AtomicBool::new(false));
    let load_started = Instant::now();
    let tasks: Vec<_> = (0..LOAD_TASKS)
        .map(|task| tokio::spawn(load_task(rd.proxy, stop.clone(), load_started, task)))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // 1. Replace sel by noop-predicate (temp file + rename): requests without the header now
    //    reach A.
    let mark = rd.log_count();
    install_file(&sel, &noop);
    let replaced = poll_until(&rd, false, "A", RELOAD_TIMEOUT, &mut failures).await;
    println!("replace sel.wasm -> A for requests without the header after {replaced:?}");
    match replaced {
        Some(t) if t > Duration::from_secs(2) => {
            println!("  (slower than the 2 s target)");
        }
        Some(_) => {}
        None => problems.push(format!(
            "replacing sel.wasm by noop-predicate was not applied within {RELOAD_TIMEOUT:?}"
        )),
    }
    if !rd
        .log_records_since(mark)
        .iter()
        .any(|l| is_loaded_line(l, "sel"))
    {
        problems.push("no `plugin loaded plugin=\"sel\"` line after the replace".into());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 2. Delete sel: route A is excluded, everything goes to B.
    let mark = rd.log_count();
    std::fs::remove_file(&sel).unwrap();
    let deleted = poll_until(&rd, true, "B", RELOAD_TIMEOUT, &mut failures).await;
    println!("delete sel.wasm -> B for requests with the header after {deleted:?}");
    if deleted.is_none() {
        problems.push(format!(
            "deleting sel.wasm did not exclude route A within {RELOAD_TIMEOUT:?}"
        ));
    }
    if rd
        .wait_for_log(mark, Duration::from_secs(2), |l| {
            l.contains("plugin unloaded") && log_field(l, "plugin").as_deref() == Some("sel")
        })
        .await
        .is_none()
    {
        problems.push("no `plugin unloaded plugin=\"sel\"` line after the delete".into());
    }
    if rd
        .wait_for_log(mark, Duration::from_secs(2), |l| {
            l.contains("route excluded")
                && log_field(l, "route").as_deref() == Some("A")
                && l.contains("sel")
        })
        .await
        .is_none()
    {
        problems.push(format!(
            "no `route excluded` line for route A after deleting sel.wasm; log records since: {:?}",
            rd.log_records_since(mark)
        ));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 3. Restore header-eq as sel: A needs the header again.
    let mark = rd.log_count();
    install_file(&sel, &header_eq);
    let restored = poll_until(&rd, true, "A", RELOAD_TIMEOUT, &mut failures).await;
    println!("restore sel.wasm -> A for requests with the header after {restored:?}");
    if restored.is_none() {
        problems.push(format!(
            "restoring sel.wasm did not bring route A back within {RELOAD_TIMEOUT:?}"
        ));
    }
    failures.extend(
        run_probes(
            &rd,
            "restored",
            &[
                probe("GET", "/t").header("x-tier", "gold").route("A"),
                probe("GET", "/t").route("B"),
            ],
        )
        .await,
    );
    if !rd
        .log_records_since(mark)
        .iter()
        .any(|l| is_loaded_line(l, "sel"))
    {
        problems.push("no `plugin loaded plugin=\"sel\"` line after the restore".into());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    stop.store(true, Ordering::SeqCst);
    let mut total = LoadStats::default();
    for task in tasks {
        let stats = task.await.expect("load task panicked");
        total.requests += stats.requests;
        total.a_without_header += stats.a_without_header;
        total.b_with_header += stats.b_with_header;
        total.failures.extend(stats.failures);
    }
    println!(
        "load: {} requests in {:?} over {LOAD_TASKS} tasks, {} failed; {} without the header \
         reached A (noop phase), {} with it reached B (excluded phase)",
        total.requests,
        load_started.elapsed(),
        total.failures.len(),
        total.a_without_header,
        total.b_with_header
    );
    failures.extend(total.failures);
    if total.requests < 100 {
        problems.push(format!(
            "the load loop sent only {} requests",
            total.requests
        ));
    }
    if total.a_without_header == 0 {
        problems.push("the load never saw the noop-predicate version (A without header)".into());
    }
    if total.b_with_header == 0 {
        problems.push("the load never saw route A excluded (B with the header)".into());
    }
    failures.extend(problems);
    assert_no_failures(&failures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_half_written_plugins_do_not_disturb_serving() {
    let header_eq = std::fs::read(dist_plugin("header-eq")).unwrap();
    let noop = std::fs::read(dist_plugin("noop-predicate")).unwrap();
    let plugins = TempDir::new("plugins");
    let sel = plugins.path().join("sel.wasm");
    install_file(&sel, &header_eq);
    let rd = Routerd::launch(&selector_config())
        .plugins_dir(plugins.path())
        .warm_cache()
        .start()
        .await;
    let old_version = [
        probe("GET", "/t").header("x-tier", "gold").route("A"),
        probe("GET", "/t").route("B"),
    ];
    let mut failures = run_probes(&rd, "start", &old_version).await;

    // A garbage file is logged and changes nothing.
    let mark = rd.log_count();
    std::fs::write(
        plugins.path().join("junk.wasm"),
        b"this is not a WebAssembly component",
    )
    .unwrap();
    let junk_line = rd
        .wait_for_log(mark, RELOAD_TIMEOUT, |l| {
            l.contains("plugin not loaded") && l.contains("junk")
        })
        .await;
    println!("junk.wasm: {junk_line:?}");
    if junk_line.is_none() {
        failures.push("no `plugin not loaded` line for junk.wasm".into());
    }
    failures.extend(run_probes(&rd, "after junk.wasm", &old_version).await);

    // Half of noop-predicate written over sel.wasm (in place, not renamed): the load fails and
    // the old version keeps serving.
    let half = noop.len() / 2;
    let mark = rd.log_count();
    let mut file = std::fs::File::create(&sel).unwrap();
    file.write_all(&noop[..half]).unwrap();
    file.sync_all().unwrap();
    let partial_line = rd
        .wait_for_log(mark, RELOAD_TIMEOUT, |l| {
            l.contains("plugin not loaded") && log_field(l, "plugin").as_deref() == Some("sel")
        })
        .await;
    println!("half-written sel.wasm: {partial_line:?}");
    match &partial_line {
        Some(line) if line.contains("previous version keeps serving") => {}
        other => failures.push(format!(
            "expected `plugin not loaded ... the previous version keeps serving` for the \
             half-written sel.wasm, got {other:?}"
        )),
    }
    for round in 1..=5 {
        failures
            .extend(run_probes(&rd, &format!("half-written, round {round}"), &old_version).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Completing the write loads the new version.
    let mark = rd.log_count();
    file.write_all(&noop[half..]).unwrap();
    file.sync_all().unwrap();
    drop(file);
    let loaded = poll_until(&rd, false, "A", RELOAD_TIMEOUT, &mut failures).await;
    println!("completed sel.wasm -> noop-predicate serving after {loaded:?}");
    if loaded.is_none() {
        failures.push(format!(
            "the completed noop-predicate was not serving within {RELOAD_TIMEOUT:?}"
        ));
    }
    if !rd
        .log_records_since(mark)
        .iter()
        .any(|l| is_loaded_line(l, "sel"))
    {
        failures.push("no `plugin loaded plugin=\"sel\"` line after completing the write".into());
    }
    assert_no_failures(&failures);
}
