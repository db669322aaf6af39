//! What each guest language costs: the same `lang` plugin (see `plugins/lang-rust`) built in
//! Rust, JavaScript (componentize-js and QuickJS), Python, C, Go and WAT. For each: component
//! size, cold compile (in this process), loading the cached compilation, the first
//! instantiation, resident memory per loaded copy with one warm instance, and a warm predicate call on a
//! 12-header request (median of 7 batches), with a native header comparison as the reference.
//!
//! Build the guests first: `bash plugins/build.sh && bash plugins/lang/build.sh`, then
//! `cargo bench -p routerd --bench languages` (`LANGS="js python"` for some of them; `BATCHES=N`
//! for longer runs, e.g. under a profiler).

#![allow(missing_docs)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use routerd::plugins::{PluginEngine, PluginRegistry, PluginSettings, PoolLimits};

mod common;
use common::request;
use routerd::routing::ExternalPredicate;

const LANGUAGES: &[&str] = &["rust", "js", "quickjs", "python", "c", "go", "wat"];
const BATCH: u32 = 2_000;
const BATCHES: usize = 7;
const WARM_INSTANCES: usize = 16;

fn component(lang: &str) -> Vec<u8> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let path = if lang == "rust" {
        root.join("plugins/dist/lang-rust.wasm")
    } else {
        root.join(format!("plugins/lang/dist/lang-{lang}.wasm"))
    };
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run `bash plugins/build.sh && bash plugins/lang/build.sh` first)",
            path.display()
        )
    })
}

/// Resident set size of this process, in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let req = request();
    let args = vec!["x-tier".to_owned(), "gold".to_owned()];

    let native = median(
        (0..BATCHES)
            .map(|_| {
                let started = Instant::now();
                for _ in 0..BATCH * 10 {
                    let r = std::hint::black_box(&req);
                    std::hint::black_box(
                        r.parts
                            .headers
                            .get(args[0].as_str())
                            .is_some_and(|v| v.as_bytes() == args[1].as_bytes()),
                    );
                }
                started.elapsed().as_nanos() as f64 / f64::from(BATCH * 10)
            })
            .collect(),
    );
    println!("native header comparison: {native:.0} ns");
    println!(
        "{:<8} {:>10} {:>12} {:>11} {:>12} {:>14} {:>10} {:>8}",
        "language",
        "size",
        "cold compile",
        "cached load",
        "instantiate",
        "RSS/copy",
        "warm call",
        "x native"
    );
    let only = std::env::var("LANGS").unwrap_or_default();
    let batches = std::env::var("BATCHES")
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(BATCHES);
    for lang in LANGUAGES
        .iter()
        .filter(|l| only.is_empty() || only.split_whitespace().any(|o| o == **l))
    {
        let bytes = component(lang);
        let cache =
            std::env::temp_dir().join(format!("routerd-bench-lang-{}-{lang}", std::process::id()));
        let _ = std::fs::remove_dir_all(&cache);
        let cold = {
            let engine = PluginEngine::new(&PoolLimits::default(), Some(&cache))
                .unwrap_or_else(|e| panic!("{e}"));
            let registry = PluginRegistry::new(engine, &std::env::temp_dir());
            let started = Instant::now();
            let p = registry
                .load_bytes("lang", &bytes, PluginSettings::default())
                .unwrap_or_else(|e| panic!("{lang}: {e}"));
            assert!(!p.from_cache);
            (started.elapsed(), p.compile_time)
        };
        let engine = PluginEngine::new(&PoolLimits::default(), Some(&cache))
            .unwrap_or_else(|e| panic!("{e}"));
        let registry = PluginRegistry::new(engine, &std::env::temp_dir());
        let plugin = registry
            .load_bytes("lang", &bytes, PluginSettings::default())
            .unwrap_or_else(|e| panic!("{lang}: {e}"));
        assert!(plugin.from_cache, "{lang}: the second load hits the cache");
        // Resident memory per warm instance: load WARM_INSTANCES more copies (from the cache),
        // each with one warm instance that has answered a call.
        let before = rss_kib();
        let copies: Vec<_> = (0..WARM_INSTANCES)
            .map(|i| {
                registry
                    .load_bytes(&format!("copy{i}"), &bytes, PluginSettings::default())
                    .unwrap_or_else(|e| panic!("{lang}: {e}"))
            })
            .collect();
        let prepare = |p: &routerd::plugins::Plugin, args: &[String]| {
            p.prepare_predicate(args)
                .unwrap_or_else(|e| panic!("{lang}: {e}"))
        };
        rt.block_on(async {
            for copy in &copies {
                let args = prepare(copy, &args);
                assert!(matches!(copy.matches(req.clone(), &args).await, Ok(true)));
            }
        });
        let per_instance = (rss_kib().saturating_sub(before)) as f64 / WARM_INSTANCES as f64;
        let args = prepare(&plugin, &args);
        let miss = prepare(&plugin, &["x-tier".to_owned(), "silver".to_owned()]);
        let warm = rt.block_on(async {
            assert!(matches!(plugin.matches(req.clone(), &args).await, Ok(true)));
            assert!(matches!(
                plugin.matches(req.clone(), &miss).await,
                Ok(false)
            ));
            let mut times = Vec::new();
            for _ in 0..batches {
                let started = Instant::now();
                for _ in 0..BATCH {
                    let _ = std::hint::black_box(plugin.matches(req.clone(), &args).await);
                }
                times.push(started.elapsed().as_nanos() as f64 / f64::from(BATCH));
            }
            median(times)
        });
        println!(
            "{:<8} {:>8} KB {:>9} ms {:>8} ms {:>9} ms {:>10.0} KiB {:>7.2} µs {:>7.1}x",
            lang,
            bytes.len() / 1000,
            ms(cold.1),
            ms(plugin.compile_time),
            ms(plugin.instantiate_time),
            per_instance,
            warm / 1000.0,
            warm / native
        );
        let _ = cold.0;
        let _ = std::fs::remove_dir_all(&cache);
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}
