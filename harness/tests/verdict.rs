//! A verdict on nothing never passes: a run where every request failed, a
//! percentile over fewer requests than it needs, a browser page with too
//! few views. Judged on recorded summaries, as the verdict is a pure
//! function of them.

use harness::metrics::summary::{EndpointMeta, RunHeader, TaskSelection};
use harness::metrics::{Aggregator, FailureKind, Outcome, Recorder, RunSummary};
use harness::suite::threshold::{Aggregate, Expression};
use harness::suite::{Plan, PlanOptions};
use harness::verdict::{ThresholdResult, evaluate, values_needed};

/// One endpoint, `requests` requests of 10 ms, each failing with `failure` when given.
fn summary(requests: u64, failure: Option<&FailureKind>) -> RunSummary {
    let metas = vec![EndpointMeta {
        name: "/".into(),
        method: "GET".into(),
        tags: Vec::new(),
    }];
    let mut recorder = Recorder::new(metas.len());
    let mut aggregator = Aggregator::new(metas.len(), 0);
    recorder.set_phase(harness::metrics::Phase::Measured);
    for i in 0..requests {
        let outcome = match failure {
            Some(kind) => Outcome::Failure {
                kind,
                message: "GET /: refused",
            },
            None => Outcome::Success,
        };
        recorder.record(0, 10_000, 100, outcome, i);
    }
    recorder.counters().iterations += requests;
    aggregator.add(
        0,
        harness::metrics::Gauges::default(),
        &recorder.take_interval(),
    );
    aggregator.finish();
    let header = RunHeader {
        suite: "t".into(),
        profile: "base".into(),
        target: "http://127.0.0.1:1".into(),
        started_at: "2026-12-06T08:00:00Z".into(),
        warm_up_seconds: 0.0,
        measured_seconds: 1.0,
        max_users: 1,
        selection: TaskSelection::default(),
    };
    RunSummary::build(
        header,
        &metas,
        aggregator.warm_up(),
        aggregator.measured(),
        aggregator.series().to_vec(),
    )
}

fn judge(summary: &RunSummary, thresholds: &str) -> Vec<ThresholdResult> {
    let suite = format!(
        "[suite]\nname = \"t\"\n[load]\nusers = 1\nduration = \"1s\"\n[[task]]\nname = \"/\"\nget = \"/\"\n[thresholds]\n{thresholds}\n"
    );
    let plan = Plan::from_source(&suite, "t.toml", &PlanOptions::default()).unwrap();
    evaluate(summary, &plan.thresholds)
}

fn result<'a>(results: &'a [ThresholdResult], source: &str) -> &'a ThresholdResult {
    results
        .iter()
        .find(|r| r.source == source)
        .unwrap_or_else(|| panic!("no `{source}` in {results:#?}"))
}

#[test]
fn a_run_where_nothing_succeeded_fails_with_its_own_line() {
    let refused = FailureKind::ConnectionRefused;
    let dead = summary(153_492, Some(&refused));
    let results = judge(&dead, "\"http.duration\" = \"p(95) < 1000m\"");
    let succeeded = result(&results, "http.succeeded: count > 0");
    assert!(!succeeded.passed);
    assert_eq!(
        succeeded.detail,
        "nothing succeeded: 153,492 requests, all connection-refused"
    );
    assert!(!result(&results, "http.failed: rate < 1%").passed);
    // A latency over requests that all failed is no latency of the service.
    let latency = result(&results, "http.duration: p(95) < 1000m");
    assert!(!latency.passed && latency.observed.is_none(), "{latency:?}");
    assert!(
        latency
            .detail
            .contains("none of 153492 requests succeeded (all connection-refused)"),
        "{}",
        latency.detail
    );
    // The same thresholds on a live target hold.
    let alive = summary(500, None);
    let results = judge(&alive, "\"http.duration\" = \"p(95) < 1000m\"");
    assert!(results.iter().all(|r| r.passed), "{results:#?}");
}

#[test]
fn a_percentile_needs_a_value_above_it() {
    for (aggregate, needed) in [
        ("p(99)", 100),
        ("p(95)", 20),
        ("p(90)", 10),
        ("p(50)", 2),
        ("p(99.9)", 1000),
        ("p(100)", 1),
        ("med", 2),
        ("max", 1),
    ] {
        let expression: Expression = format!("{aggregate} < 1s").parse().unwrap();
        assert_eq!(values_needed(expression.aggregate), needed, "{aggregate}");
    }
    assert_eq!(values_needed(Aggregate::Avg), 1);
    let few = summary(19, None);
    let results = judge(&few, "\"http.duration\" = [\"p(95) < 1s\", \"p(90) < 1s\"]");
    let p95 = result(&results, "http.duration: p(95) < 1s");
    assert!(!p95.passed, "{p95:?}");
    assert!(
        p95.detail
            .contains("not enough data: p(95) needs at least 20 requests, the run measured 19"),
        "{}",
        p95.detail
    );
    assert!(result(&results, "http.duration: p(90) < 1s").passed);
    let enough = summary(20, None);
    assert!(
        result(
            &judge(&enough, "\"http.duration\" = \"p(95) < 1s\""),
            "http.duration: p(95) < 1s"
        )
        .passed
    );
}
