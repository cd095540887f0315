//! The harness's own hot paths, which sit between the target and the
//! numbers it reports: recording a latency, merging workers' histograms,
//! evaluating thresholds, extracting Django's CSRF token from a login page,
//! and rendering the reports of a one-minute run.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use harness::engine::vu::extract_hidden_field;
use harness::metrics::new_histogram;
use harness::report::RunReport;
use harness::suite::{Plan, PlanOptions};

/// Latencies spread like a loaded service's: most fast, a long tail.
fn latencies(n: u64) -> Vec<u64> {
    (0..n)
        .map(|i| {
            let x = (i.wrapping_mul(2_654_435_761) % 10_000) as f64 / 10_000.0;
            (1_000.0 + 2_000_000.0 * x.powi(6)) as u64
        })
        .collect()
}

fn histograms(c: &mut Criterion) {
    let values = latencies(10_000);
    let mut group = c.benchmark_group("harness/histogram");
    group.throughput(Throughput::Elements(values.len() as u64));
    group.bench_function("record_10k", |b| {
        b.iter_batched_ref(
            new_histogram,
            |histogram| {
                for value in &values {
                    histogram.saturating_record(*value);
                }
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
    // What the aggregator does every second: one histogram per worker and endpoint.
    let worker = {
        let mut histogram = new_histogram();
        for value in &values {
            histogram.saturating_record(*value);
        }
        histogram
    };
    c.bench_function("harness/histogram/merge", |b| {
        b.iter_batched_ref(
            new_histogram,
            |total| total.add(black_box(&worker)).expect("same bounds"),
            BatchSize::SmallInput,
        )
    });
}

const SUITE: &str = r#"
[suite]
name = "bench"
[load]
users = 20
duration = "60s"
[[task]]
name = "/detail_project/[id]/page-0/"
get = "/detail_project/1/page-0/"
[[task]]
name = "/detail_project/[id]/page-1/"
get = "/detail_project/1/page-1/"
[thresholds]
"http.duration{name:/detail_project/[id]/page-0/}" = ["p(95) < 200ms", "p(99) < 500ms"]
"http.duration{name:/detail_project/[id]/page-1/}" = "p(95) < 200ms"
"http.duration" = ["p(99) < 2s", "max < 100s", "avg < 300ms"]
"http.failed" = "rate < 1%"
"http.requests" = "count > 100"
"#;

fn report() -> RunReport {
    let plan =
        Plan::from_source(SUITE, "bench.toml", &PlanOptions::default()).expect("a valid suite");
    let summary = benches::recorded_summary(12, 61, 50);
    let thresholds = harness::verdict::evaluate(&summary, &plan.thresholds);
    RunReport::new(summary, thresholds)
}

fn thresholds(c: &mut Criterion) {
    let plan =
        Plan::from_source(SUITE, "bench.toml", &PlanOptions::default()).expect("a valid suite");
    let summary = benches::recorded_summary(12, 61, 50);
    c.bench_function("harness/thresholds/evaluate", |b| {
        b.iter(|| harness::verdict::evaluate(black_box(&summary), black_box(&plan.thresholds)))
    });
}

/// A Django login page of the history's size, the token near its end.
fn login_page() -> String {
    let mut page = String::from(
        "<!DOCTYPE html><html lang=\"id\"><head><meta charset=\"utf-8\"><title>Masuk — AHSP</title>\
         <link rel=\"stylesheet\" href=\"/static/css/app.css\"></head><body><nav class=\"navbar\">",
    );
    for i in 0..60 {
        page.push_str(&format!(
            "<li class=\"nav-item\"><a class=\"nav-link\" href=\"/menu/{i}/\">Menu {i}</a></li>"
        ));
    }
    page.push_str(
        "</nav><main><form method=\"post\" action=\"/accounts/login/\">\
         <input type=\"hidden\" name=\"csrfmiddlewaretoken\" value=\"Xq3kP9vL2mN8rT5wY7zA1bC4dE6fG0hJ2kL4mN6pQ8rS0tU2vW4xY6zA8bC0dE2f\">\
         <input type=\"text\" name=\"login\" autofocus><input type=\"password\" name=\"password\">\
         <button type=\"submit\">Masuk</button></form></main></body></html>",
    );
    page
}

fn csrf(c: &mut Criterion) {
    let page = login_page();
    c.bench_function("harness/csrf_extraction", |b| {
        b.iter(|| extract_hidden_field(black_box(&page), "csrfmiddlewaretoken").expect("a token"))
    });
}

fn reports(c: &mut Criterion) {
    let report = report();
    let mut group = c.benchmark_group("harness/report");
    group.bench_function("terminal", |b| {
        b.iter(|| harness::report::terminal::render(black_box(&report)))
    });
    group.bench_function("markdown", |b| {
        b.iter(|| harness::report::markdown::render(black_box(&report)))
    });
    group.bench_function("html", |b| {
        b.iter(|| harness::report::html::render(black_box(&report)))
    });
    group.bench_function("json", |b| {
        b.iter(|| serde_json::to_vec(black_box(&report)).expect("serializable"))
    });
    group.finish();
}

criterion_group!(benches, histograms, thresholds, csrf, reports);
criterion_main!(benches);
