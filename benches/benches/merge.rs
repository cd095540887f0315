//! `perf merge` at scale: 16 shards × 10 minutes of per-second histograms
//! (8 endpoints, 50 requests per endpoint, shard and second: 6,400
//! requests a second in all), added into one run. Criterion times the
//! merge; its peak memory, the process's high-water mark reset just before
//! one merge (`/proc/self/clear_refs`, Linux), is printed beside it.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use harness::metrics::kept::KeptSecond;
use harness::metrics::summary::{EndpointMeta, TaskSelection};
use harness::metrics::{Gauges, Interval, Phase};
use harness::run::merge::merge_summary;
use harness::run::shard::ShardResult;
use harness::suite::plan::Shard;

const SHARDS: u32 = 16;
const SECONDS: u64 = 600;
const ENDPOINTS: usize = 8;
const REQUESTS: u64 = 50;

fn endpoints() -> Vec<EndpointMeta> {
    (0..ENDPOINTS)
        .map(|i| EndpointMeta {
            name: format!("/endpoint/{i}/"),
            method: "GET".to_owned(),
            tags: Vec::new(),
        })
        .collect()
}

/// One shard's ten minutes, latencies from a fixed generator (a long tail).
fn shard(index: u32) -> ShardResult {
    let mut state = u64::from(index) + 1;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let seconds = (0..SECONDS)
        .map(|second| {
            let mut interval = Interval::new(Phase::Measured, ENDPOINTS);
            for stats in &mut interval.endpoints {
                for _ in 0..REQUESTS {
                    stats
                        .latency
                        .saturating_record((2_000.0 + 400_000.0 * next().powi(8)) as u64);
                }
                stats.requests = REQUESTS;
                stats.bytes = REQUESTS * 4_096;
            }
            let gauges = Gauges {
                users: 25,
                in_flight: 3,
                oldest_in_flight_ms: 40,
            };
            KeptSecond::pack(second, gauges, &interval)
        })
        .collect();
    ShardResult {
        schema: harness::run::shard::SCHEMA.to_owned(),
        harness_version: "bench".to_owned(),
        shard: Shard {
            index,
            count: SHARDS,
        },
        plan_id: "bench".to_owned(),
        run_id: Some("bench".to_owned()),
        start: harness::run::shard::StartedBy::Barrier,
        suite: "bench".to_owned(),
        profile: "base".to_owned(),
        suite_path: "bench.toml".to_owned(),
        include_tags: Vec::new(),
        exclude_tags: Vec::new(),
        target: "http://127.0.0.1:8000".to_owned(),
        start_at_unix_ms: Some(1_796_212_800_000),
        late_ms: u64::from(index) * 37,
        aborted: false,
        started_at: "2026-12-02T12:00:00Z".to_owned(),
        started_unix_ms: 1_796_212_800_000 + u64::from(index) * 37,
        warm_up_seconds: 0.0,
        measured_seconds: SECONDS as f64,
        max_users: 25,
        selection: TaskSelection::default(),
        endpoints: endpoints(),
        seconds,
        probes: None,
        notes: Vec::new(),
        integrity_before: Vec::new(),
        writes: Vec::new(),
    }
}

/// Kilobytes of a `/proc/self/status` field.
fn status_kb(field: &str) -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix(field))?
        .trim()
        .trim_end_matches(" kB")
        .parse()
        .ok()
}

fn merge(c: &mut Criterion) {
    let shards: Vec<ShardResult> = (0..SHARDS).map(shard).collect();
    let endpoints = endpoints();
    let packed: usize = shards
        .iter()
        .map(|s| serde_json::to_vec(s).map_or(0, |json| json.len()))
        .sum();
    // Peak memory of one merge beyond what the process held before it.
    if std::fs::write("/proc/self/clear_refs", "5").is_ok()
        && let Some(before) = status_kb("VmRSS:")
    {
        let summary = merge_summary(&shards, &endpoints);
        if let Some(peak) = status_kb("VmHWM:") {
            eprintln!(
                "harness/merge/16_shards_x_600s: {} requests merged; shards' files {:.1} MB; \
                 peak memory of the merge {:.1} MB beyond the {:.1} MB held before it",
                summary.total.requests,
                packed as f64 / 1e6,
                peak.saturating_sub(before) as f64 / 1024.0,
                before as f64 / 1024.0
            );
        }
    }
    let mut group = c.benchmark_group("harness/merge");
    group.sample_size(10);
    group.bench_function("16_shards_x_600s", |b| {
        b.iter(|| merge_summary(black_box(&shards), &endpoints))
    });
    group.finish();
}

criterion_group!(benches, merge);
criterion_main!(benches);
