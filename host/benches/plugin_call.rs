//! One plugin predicate call: a Rust guest reading one header of a 12-header request, through
//! a warm (reused) instance and through a fresh instance per call, next to the same predicate
//! written natively; plus a guest that reads nothing (the fixed cost of a call), a guest that
//! copies all twelve headers across (what passing the request as a record would cost), and the
//! warm call on an engine without epoch deadlines (what the deadline costs). Every call goes
//! through routing's `ExternalPredicate` trait, as the route table makes it.
//!
//! Build the guests first: `bash plugins/build.sh`, then
//! `cargo bench -p routerd --bench plugin_call`.

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};

mod common;
use common::request;
use routerd::plugins::{InstanceMode, PluginEngine, PluginRegistry, PluginSettings, PoolLimits};
use routerd::routing::ExternalPredicate;

fn dist(name: &str) -> Vec<u8> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../plugins/dist/{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run `bash plugins/build.sh` first)",
            path.display()
        )
    })
}

fn bench(c: &mut Criterion) {
    let engine = PluginEngine::new(&PoolLimits::default(), None).unwrap_or_else(|e| panic!("{e}"));
    let dir = std::env::temp_dir();
    let registry = PluginRegistry::new(engine, &dir);
    let warm_settings = PluginSettings::default();
    let fresh_settings = PluginSettings {
        mode: InstanceMode::Fresh,
        ..PluginSettings::default()
    };
    let header_eq = dist("header-eq");
    let warm = registry
        .load_bytes("header-eq", &header_eq, warm_settings.clone())
        .unwrap_or_else(|e| panic!("{e}"));
    let fresh = registry
        .load_bytes("header-eq-fresh", &header_eq, fresh_settings)
        .unwrap_or_else(|e| panic!("{e}"));
    let noop = registry
        .load_bytes(
            "noop-predicate",
            &dist("noop-predicate"),
            warm_settings.clone(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let copyall = registry
        .load_bytes(
            "header-eq-copyall",
            &dist("header-eq-copyall"),
            warm_settings.clone(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let undeadlined = PluginRegistry::new(
        PluginEngine::without_deadlines(&PoolLimits::default()).unwrap_or_else(|e| panic!("{e}")),
        &dir,
    )
    .load_bytes("header-eq", &header_eq, warm_settings)
    .unwrap_or_else(|e| panic!("{e}"));
    let req = request();
    let args = vec!["x-tier".to_owned(), "gold".to_owned()];
    // Calls are futures; a current-thread runtime drives them, as a request worker would.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    // The bench measures real answers.
    let miss = vec!["x-tier".to_owned(), "silver".to_owned()];
    // Each plugin prepares the route args once, as a route load does.
    let prepare = |p: &routerd::plugins::Plugin, args: &[String]| {
        p.prepare_predicate(args).unwrap_or_else(|e| panic!("{e}"))
    };
    let (warm_args, warm_miss) = (prepare(&warm, &args), prepare(&warm, &miss));
    let fresh_args = prepare(&fresh, &args);
    let (copyall_args, copyall_miss) = (prepare(&copyall, &args), prepare(&copyall, &miss));
    let undeadlined_args = prepare(&undeadlined, &args);
    let noop_args = prepare(&noop, &[]);
    rt.block_on(async {
        assert!(matches!(
            warm.matches(req.clone(), &warm_args).await,
            Ok(true)
        ));
        assert!(matches!(
            fresh.matches(req.clone(), &fresh_args).await,
            Ok(true)
        ));
        assert!(matches!(
            warm.matches(req.clone(), &warm_miss).await,
            Ok(false)
        ));
        assert!(matches!(
            copyall.matches(req.clone(), &copyall_args).await,
            Ok(true)
        ));
        assert!(matches!(
            copyall.matches(req.clone(), &copyall_miss).await,
            Ok(false)
        ));
        assert!(matches!(
            undeadlined.matches(req.clone(), &undeadlined_args).await,
            Ok(true)
        ));
    });

    let mut g = c.benchmark_group("predicate_call_12_headers");
    g.bench_function("native", |b| {
        b.iter(|| {
            let r = black_box(&req);
            r.parts
                .headers
                .get(args[0].as_str())
                .is_some_and(|v| v.as_bytes() == args[1].as_bytes())
        })
    });
    g.bench_function("wasm_warm_instance", |b| {
        b.to_async(&rt)
            .iter(|| warm.matches(black_box(req.clone()), &warm_args))
    });
    g.bench_function("wasm_warm_noop", |b| {
        b.to_async(&rt)
            .iter(|| noop.matches(black_box(req.clone()), &noop_args))
    });
    g.bench_function("wasm_warm_copy_all_headers", |b| {
        b.to_async(&rt)
            .iter(|| copyall.matches(black_box(req.clone()), &copyall_args))
    });
    g.bench_function("wasm_warm_no_deadline", |b| {
        b.to_async(&rt)
            .iter(|| undeadlined.matches(black_box(req.clone()), &undeadlined_args))
    });
    g.bench_function("wasm_fresh_instance", |b| {
        b.to_async(&rt)
            .iter(|| fresh.matches(black_box(req.clone()), &fresh_args))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
