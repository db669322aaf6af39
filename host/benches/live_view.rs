//! What the dashboard's live view costs: one sample of the request counters (every 2 s, off
//! the request path; measured with one request per route before it, so `requests` is listed
//! alone to subtract) and the `GET /api/v1/live` documents the pages ask for (everything, the
//! routes table's summary, the live page's 8 busiest), with 100, 1,000 and 10,000 routes that
//! all had traffic, over a full 5-minute window (150 samples).
//!
//! `cargo bench -p routerd --bench live_view`

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use routerd::live::{LiveQuery, LiveView};
use routerd::metrics::Metrics;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("live_view");
    for routes in [100usize, 1_000, 10_000] {
        let metrics = Metrics::new(Vec::new());
        let names: Vec<Arc<str>> = (0..routes)
            .map(|i| Arc::from(format!("route-{i}")))
            .collect();
        let traffic = |round: u64| {
            for (i, name) in names.iter().enumerate() {
                let took = Duration::from_micros(150 + (i as u64 * 37 + round) % 5_000);
                metrics.request(name, 200, took);
            }
        };
        let view = LiveView::new(metrics.clone());
        for round in 0..151 {
            traffic(round);
            view.sample();
        }
        group.bench_with_input(BenchmarkId::new("requests", routes), &routes, |b, _| {
            b.iter(|| traffic(7))
        });
        group.bench_with_input(
            BenchmarkId::new("requests+sample", routes),
            &routes,
            |b, _| {
                b.iter(|| {
                    traffic(7);
                    view.sample();
                })
            },
        );
        let all = LiveQuery::default();
        group.bench_with_input(BenchmarkId::new("document", routes), &routes, |b, _| {
            b.iter(|| black_box(view.doc(&all)))
        });
        let summary = LiveQuery {
            summary: true,
            ..LiveQuery::default()
        };
        group.bench_with_input(BenchmarkId::new("summary", routes), &routes, |b, _| {
            b.iter(|| black_box(view.doc(&summary)))
        });
        let top = LiveQuery {
            top: Some(8),
            ..LiveQuery::default()
        };
        group.bench_with_input(BenchmarkId::new("top8", routes), &routes, |b, _| {
            b.iter(|| black_box(view.doc(&top)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
