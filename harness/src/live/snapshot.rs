//! What one second of a run says, as flat named series with labels: the
//! same figures whoever reads them (Prometheus remote write, the live page).
//! Built from a [`RunSummary`] of the run so far, so the last snapshot, made
//! from the run's own summary, states exactly what `result.json` states.

use serde::Serialize;

use crate::metrics::RunSummary;
use crate::metrics::summary::{LOCUST_QUANTILES, SecondPoint};
use crate::probe::ProbeSample;
use crate::verdict::ThresholdResult;

/// The name every latency quantile of the whole traffic is reported under,
/// as the reports name it.
pub const AGGREGATED: &str = "Aggregated";

/// Every series the harness writes but the probes' (see [`probe_series`]),
/// with what it means: the Grafana dashboard's queries are checked
/// against this list.
pub const SERIES: [(&str, &str); 20] = [
    (
        "ahsp_perf_requests_total",
        "requests completed since the load began, by endpoint (warm-up included)",
    ),
    (
        "ahsp_perf_failures_total",
        "failed requests since the load began, by endpoint",
    ),
    (
        "ahsp_perf_failures_by_kind_total",
        "failed requests by endpoint and kind (http-500, timeout, …)",
    ),
    (
        "ahsp_perf_latency_seconds",
        "this second's latency quantiles (0.5, 0.95, 0.99, 1) by endpoint",
    ),
    (
        "ahsp_perf_run_latency_seconds",
        "the measured phase's latency quantiles so far, as the report states them",
    ),
    ("ahsp_perf_users", "virtual users at the end of the second"),
    ("ahsp_perf_in_flight", "requests sent and not yet answered"),
    (
        "ahsp_perf_oldest_in_flight_seconds",
        "how long the oldest request in flight has waited",
    ),
    (
        "ahsp_perf_stalled",
        "1 when requests were in flight and none completed this second",
    ),
    ("ahsp_perf_warm_up", "1 during the warm-up"),
    (
        "ahsp_perf_iterations_total",
        "task iterations since the load began",
    ),
    (
        "ahsp_perf_dropped_iterations_total",
        "arrivals an open executor could not start",
    ),
    (
        "ahsp_perf_checks_failed_total",
        "response checks that failed",
    ),
    ("ahsp_perf_logins_total", "login attempts"),
    (
        "ahsp_perf_login_failures_total",
        "login attempts that did not log in",
    ),
    (
        "ahsp_perf_threshold_passing",
        "1 while a threshold holds on the run so far, 0 when it is broken",
    ),
    (
        "ahsp_perf_browser_views_total",
        "measured page views in real browsers, by page (failed ones included)",
    ),
    (
        "ahsp_perf_browser_failed_views_total",
        "page views that failed, by page",
    ),
    (
        "ahsp_perf_browser_timing_seconds",
        "the measured views' quantiles so far (0.5, 0.95, 0.99, 1) by page and timing (ttfb, dcl, load, lcp, tbt)",
    ),
    (
        "ahsp_perf_browser_users_stopped",
        "browser users that stopped before the load ended",
    ),
];

/// The quantiles written per endpoint, and where each sits in a second's
/// Locust percentile columns.
const QUANTILES: [(f64, &str); 4] = [(0.5, "0.5"), (0.95, "0.95"), (0.99, "0.99"), (1.0, "1")];

/// One value of one series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    pub name: String,
    /// Labels of this series alone; the run's own are added by the sink.
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

/// What the run said at one instant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    /// When, in milliseconds since the Unix epoch.
    pub at_unix_ms: i64,
    /// Seconds since the load began.
    pub elapsed_seconds: f64,
    pub points: Vec<Point>,
}

impl Snapshot {
    /// The run so far: `summary` (its phases' totals), the last complete
    /// second, the probes' last sample and the thresholds judged so far.
    pub fn of(
        summary: &RunSummary,
        last: Option<&SecondPoint>,
        probe: Option<&ProbeSample>,
        thresholds: &[ThresholdResult],
        at_unix_ms: i64,
        elapsed_seconds: f64,
    ) -> Snapshot {
        let mut points = Vec::new();
        let mut push = |name: &str, labels: Vec<(&'static str, String)>, value: f64| {
            points.push(Point {
                name: name.to_owned(),
                labels,
                value,
            });
        };
        for (measured, warm_up) in summary.endpoints.iter().zip(&summary.warm_up) {
            let endpoint = || vec![("endpoint", measured.meta.name.clone())];
            push(
                "ahsp_perf_requests_total",
                endpoint(),
                (measured.requests + warm_up.requests) as f64,
            );
            push(
                "ahsp_perf_failures_total",
                endpoint(),
                (measured.failures + warm_up.failures) as f64,
            );
            let mut kinds: Vec<(String, u64)> = Vec::new();
            for record in measured.failure_kinds.iter().chain(&warm_up.failure_kinds) {
                let name = record.kind.name();
                match kinds.iter_mut().find(|(kind, _)| *kind == name) {
                    Some((_, count)) => *count += record.count,
                    None => kinds.push((name, record.count)),
                }
            }
            for (kind, count) in kinds {
                let mut labels = endpoint();
                labels.push(("kind", kind));
                push("ahsp_perf_failures_by_kind_total", labels, count as f64);
            }
        }
        for endpoint in summary.endpoints.iter().chain([&summary.total]) {
            if endpoint.requests == 0 {
                continue;
            }
            let latency = &endpoint.latency_ms;
            for ((_, quantile), ms) in
                QUANTILES
                    .iter()
                    .zip([latency.p50, latency.p95, latency.p99, latency.max])
            {
                push(
                    "ahsp_perf_run_latency_seconds",
                    vec![
                        ("endpoint", endpoint.meta.name.clone()),
                        ("quantile", (*quantile).to_owned()),
                    ],
                    ms / 1000.0,
                );
            }
        }
        if let Some(second) = last {
            second_points(&mut push, summary, second);
        }
        let counters = {
            let mut counters = summary.counters.clone();
            counters.merge(&summary.warm_up_counters);
            counters
        };
        push(
            "ahsp_perf_iterations_total",
            vec![],
            counters.iterations as f64,
        );
        push(
            "ahsp_perf_dropped_iterations_total",
            vec![],
            counters.dropped_iterations as f64,
        );
        push(
            "ahsp_perf_checks_failed_total",
            vec![],
            counters.checks_failed as f64,
        );
        push(
            "ahsp_perf_logins_total",
            vec![],
            counters.login_attempts as f64,
        );
        push(
            "ahsp_perf_login_failures_total",
            vec![],
            counters
                .login_attempts
                .saturating_sub(counters.login_successes) as f64,
        );
        for threshold in thresholds.iter().filter(|t| t.observed.is_some()) {
            push(
                "ahsp_perf_threshold_passing",
                vec![("threshold", threshold.source.clone())],
                if threshold.passed { 1.0 } else { 0.0 },
            );
        }
        if let Some(browser) = &summary.browser {
            browser_points(&mut push, browser);
        }
        if let Some(probe) = probe {
            probe_points(&mut push, probe);
        }
        Snapshot {
            at_unix_ms,
            elapsed_seconds,
            points,
        }
    }

    /// The value of a series with these labels, if the snapshot has it.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.points
            .iter()
            .find(|p| {
                p.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| p.labels.iter().any(|(pk, pv)| pk == k && pv == v))
            })
            .map(|p| p.value)
    }
}

/// The last second's own figures: users, requests in flight, and its
/// latency quantiles by endpoint and over all.
fn second_points(
    push: &mut impl FnMut(&str, Vec<(&'static str, String)>, f64),
    summary: &RunSummary,
    second: &SecondPoint,
) {
    push("ahsp_perf_users", vec![], second.users as f64);
    push("ahsp_perf_in_flight", vec![], second.in_flight as f64);
    push(
        "ahsp_perf_oldest_in_flight_seconds",
        vec![],
        second.oldest_in_flight_ms / 1000.0,
    );
    push(
        "ahsp_perf_stalled",
        vec![],
        f64::from(u8::from(second.stalled)),
    );
    push(
        "ahsp_perf_warm_up",
        vec![],
        f64::from(u8::from(second.warm_up)),
    );
    for (meta, figures) in summary.endpoints.iter().zip(&second.endpoints) {
        if figures.requests == 0 {
            continue;
        }
        let values = [
            figures.p50_ms,
            figures.p95_ms,
            figures.p99_ms,
            figures.max_ms,
        ];
        for ((_, quantile), ms) in QUANTILES.iter().zip(values) {
            push(
                "ahsp_perf_latency_seconds",
                vec![
                    ("endpoint", meta.meta.name.clone()),
                    ("quantile", (*quantile).to_owned()),
                ],
                ms / 1000.0,
            );
        }
    }
    if second.requests > 0 {
        for (quantile, label) in QUANTILES {
            let at = LOCUST_QUANTILES.iter().position(|q| *q == quantile);
            if let Some(ms) = at.and_then(|i| second.percentiles_ms.get(i)) {
                push(
                    "ahsp_perf_latency_seconds",
                    vec![
                        ("endpoint", AGGREGATED.to_owned()),
                        ("quantile", label.to_owned()),
                    ],
                    ms / 1000.0,
                );
            }
        }
    }
}

/// The browsers' page views so far: counts, and each timing's quantiles.
fn browser_points(
    push: &mut impl FnMut(&str, Vec<(&'static str, String)>, f64),
    browser: &crate::metrics::browser::BrowserSummary,
) {
    push(
        "ahsp_perf_browser_users_stopped",
        vec![],
        browser.stopped.len() as f64,
    );
    for page in &browser.pages {
        let named = || vec![("page", page.page.clone())];
        push("ahsp_perf_browser_views_total", named(), page.views as f64);
        push(
            "ahsp_perf_browser_failed_views_total",
            named(),
            page.failed as f64,
        );
        let timings = [
            ("ttfb", &page.ttfb),
            ("dcl", &page.dcl),
            ("load", &page.load),
            ("lcp", &page.lcp),
            ("tbt", &page.tbt),
        ];
        for (timing, histogram) in timings {
            if histogram.0.is_empty() {
                continue;
            }
            for (quantile, label) in QUANTILES {
                let mut labels = named();
                labels.push(("timing", timing.to_owned()));
                labels.push(("quantile", label.to_owned()));
                let micros = histogram.0.value_at_quantile(quantile);
                push(
                    "ahsp_perf_browser_timing_seconds",
                    labels,
                    micros as f64 / 1e6,
                );
            }
        }
    }
}

/// The probes' numbers, each field its own series: `ahsp_perf_pgbouncer_cl_waiting`,
/// and per service tree `ahsp_perf_service_cpu_percent{service="app"}`.
fn probe_points(
    push: &mut impl FnMut(&str, Vec<(&'static str, String)>, f64),
    probe: &ProbeSample,
) {
    let parts = [
        (
            "pgbouncer",
            probe.pgbouncer.as_ref().map(serde_json::to_value),
        ),
        (
            "postgres",
            probe.postgres.as_ref().map(serde_json::to_value),
        ),
        ("redis", probe.redis.as_ref().map(serde_json::to_value)),
    ];
    for (service, value) in parts {
        if let Some(Ok(serde_json::Value::Object(fields))) = value {
            for (field, value) in fields {
                if let Some(number) = numeric(&value) {
                    push(&format!("ahsp_perf_{service}_{field}"), vec![], number);
                }
            }
        }
    }
    for service in &probe.services {
        if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(service) {
            for (field, value) in fields {
                if let Some(number) = numeric(&value) {
                    push(
                        &format!("ahsp_perf_service_{field}"),
                        vec![("service", service.name.clone())],
                        number,
                    );
                }
            }
        }
    }
}

fn numeric(value: &serde_json::Value) -> Option<f64> {
    match value {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::Bool(b) => Some(f64::from(u8::from(*b))),
        _ => None,
    }
}

/// The names of the probes' series, as [`Snapshot::of`] writes them.
pub fn probe_series() -> Vec<String> {
    let probe = ProbeSample {
        second: 0,
        pgbouncer: Some(Default::default()),
        postgres: Some(Default::default()),
        redis: Some(Default::default()),
        services: vec![Default::default()],
    };
    let mut names: Vec<String> = Vec::new();
    probe_points(&mut |name: &str, _, _| names.push(name.to_owned()), &probe);
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::summary::RunHeader;
    use crate::metrics::{EndpointStats, Interval, Phase};

    fn summary() -> RunSummary {
        let metas = vec![
            crate::metrics::summary::EndpointMeta {
                name: "/".into(),
                method: "GET".into(),
                tags: vec![],
            },
            crate::metrics::summary::EndpointMeta {
                name: "/slow".into(),
                method: "GET".into(),
                tags: vec![],
            },
        ];
        let mut measured = Interval::new(Phase::Measured, 2);
        let mut warm_up = Interval::new(Phase::WarmUp, 2);
        let mut stats = EndpointStats::new();
        for ms in 1..=100u64 {
            stats.latency.record(ms * 1000).expect("in range");
        }
        stats.requests = 100;
        stats.failures = 2;
        stats.failure_kinds.push(crate::metrics::FailureRecord {
            kind: crate::metrics::FailureKind::Status(500),
            count: 2,
            first_seen_ms: 0,
            last_seen_ms: 0,
            sample: String::new(),
            trace_id: None,
        });
        measured.endpoints[0] = stats;
        warm_up.endpoints[0].requests = 5;
        RunSummary::build(
            RunHeader::default(),
            &metas,
            &warm_up,
            &measured,
            Vec::new(),
        )
    }

    #[test]
    fn counts_include_the_warm_up_and_quantiles_are_the_reports() {
        let summary = summary();
        let snapshot = Snapshot::of(&summary, None, None, &[], 1_000, 1.0);
        assert_eq!(
            snapshot.value("ahsp_perf_requests_total", &[("endpoint", "/")]),
            Some(105.0)
        );
        assert_eq!(
            snapshot.value("ahsp_perf_requests_total", &[("endpoint", "/slow")]),
            Some(0.0)
        );
        assert_eq!(
            snapshot.value(
                "ahsp_perf_failures_by_kind_total",
                &[("endpoint", "/"), ("kind", "http-500")]
            ),
            Some(2.0)
        );
        let p95 = snapshot
            .value(
                "ahsp_perf_run_latency_seconds",
                &[("endpoint", "/"), ("quantile", "0.95")],
            )
            .expect("written");
        assert_eq!(p95 * 1000.0, summary.endpoints[0].latency_ms.p95);
        assert_eq!(
            snapshot.value(
                "ahsp_perf_run_latency_seconds",
                &[("endpoint", AGGREGATED), ("quantile", "0.95")]
            ),
            Some(p95)
        );
        // An endpoint without a request has no quantile, not a zero.
        assert_eq!(
            snapshot.value("ahsp_perf_run_latency_seconds", &[("endpoint", "/slow")]),
            None
        );
    }

    #[test]
    fn every_series_written_is_named_in_the_lists() {
        let summary = summary();
        let second = SecondPoint {
            second: 3,
            warm_up: false,
            users: 4,
            requests: 1,
            failures: 0,
            percentiles_ms: vec![1.0; LOCUST_QUANTILES.len()],
            totals: Default::default(),
            endpoints: vec![
                crate::metrics::summary::EndpointSecond {
                    requests: 1,
                    ..Default::default()
                },
                Default::default(),
            ],
            in_flight: 2,
            oldest_in_flight_ms: 30.0,
            stalled: false,
        };
        let probe = ProbeSample {
            pgbouncer: Some(Default::default()),
            services: vec![crate::probe::ServiceSample {
                name: "app".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let threshold = ThresholdResult {
            source: "p(95) < 1s".into(),
            metric: "http.duration".into(),
            passed: true,
            observed: Some(1.0),
            observed_text: "1ms".into(),
            detail: String::new(),
            abort_on_fail: false,
            diagnosis: Vec::new(),
        };
        let snapshot = Snapshot::of(&summary, Some(&second), Some(&probe), &[threshold], 0, 0.0);
        let probes = probe_series();
        for point in &snapshot.points {
            assert!(
                SERIES.iter().any(|(name, _)| *name == point.name) || probes.contains(&point.name),
                "{} is in no list",
                point.name
            );
        }
        assert!(probes.contains(&"ahsp_perf_pgbouncer_cl_waiting".to_owned()));
        assert_eq!(
            snapshot.value("ahsp_perf_service_running", &[("service", "app")]),
            Some(0.0)
        );
        assert_eq!(
            snapshot.value(
                "ahsp_perf_threshold_passing",
                &[("threshold", "p(95) < 1s")]
            ),
            Some(1.0)
        );
    }

    /// What the browsers measured so far (read from their recorder, which
    /// they keep recording into) is in each second's series.
    #[test]
    fn the_browsers_views_so_far_are_series_of_their_own() {
        use crate::browser::{BrowserWatch, ViewOutcome, ViewTimings};
        use std::time::{Duration, Instant};
        let watch = BrowserWatch::new(&["home".to_owned()], 2, Instant::now(), Duration::ZERO);
        let view = |outcome| {
            watch
                .recorder()
                .lock()
                .expect("not poisoned")
                .view(0, Instant::now(), outcome);
        };
        for lcp_ms in [100.0, 200.0, 300.0] {
            view(ViewOutcome::Measured(ViewTimings {
                ttfb_ms: 10.0,
                lcp_ms,
                ..Default::default()
            }));
        }
        view(ViewOutcome::Failed {
            reason: "not ready in 10s".into(),
            timings: None,
        });
        let mut summary = summary();
        summary.browser = Some(watch.so_far());
        let snapshot = Snapshot::of(&summary, None, None, &[], 0, 0.0);
        let home = [("page", "home")];
        assert_eq!(
            snapshot.value("ahsp_perf_browser_views_total", &home),
            Some(4.0)
        );
        assert_eq!(
            snapshot.value("ahsp_perf_browser_failed_views_total", &home),
            Some(1.0)
        );
        let lcp = |quantile| {
            snapshot
                .value(
                    "ahsp_perf_browser_timing_seconds",
                    &[("page", "home"), ("timing", "lcp"), ("quantile", quantile)],
                )
                .expect("written")
        };
        assert!((lcp("0.5") - 0.2).abs() < 0.001, "{}", lcp("0.5"));
        assert!((lcp("1") - 0.3).abs() < 0.001, "{}", lcp("1"));
        for point in &snapshot.points {
            assert!(
                SERIES.iter().any(|(name, _)| *name == point.name),
                "{} is in no list",
                point.name
            );
        }
        // Reading it so far takes nothing from the run's own figures.
        let ended = watch.finish("Chromium".into());
        assert_eq!((ended.pages[0].views, ended.pages[0].failed), (4, 1));
    }
}
