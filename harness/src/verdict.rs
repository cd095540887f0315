//! The verdict: each threshold judged against the summary. A pure function
//! of its inputs — no I/O, no clock — so the same summary always gets the
//! same verdict, and a test can judge a recorded run.
//!
//! A threshold over no data fails: a run where nothing was measured must not
//! pass by default (the history's "silently ran nothing").

use serde::{Deserialize, Serialize};

use hdrhistogram::Histogram;

use crate::metrics::browser::PageSummary;
use crate::metrics::phases::{Phase, Recovery};
use crate::metrics::summary::{EndpointSummary, RunSummary};
use crate::suite::metric::Metric;
use crate::suite::plan::ThresholdPlan;
use crate::suite::threshold::{Aggregate, Selector, Unit};

/// How a threshold fared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ThresholdResult {
    /// As written: `http.duration{name:/dashboard/}: p(95) < 200ms`.
    pub source: String,
    pub metric: String,
    pub passed: bool,
    /// The observed value in the metric's base unit (ms, fraction, count), if any data.
    pub observed: Option<f64>,
    /// The observed value for people: `312.4ms`, `99.50%`, `3`.
    pub observed_text: String,
    /// Why it failed, and by how much.
    pub detail: String,
    pub abort_on_fail: bool,
    /// Likely causes, from what the probes saw (filled by the diagnosis layer).
    #[serde(default)]
    pub diagnosis: Vec<String>,
}

/// Judges every threshold.
pub fn evaluate(summary: &RunSummary, thresholds: &[ThresholdPlan]) -> Vec<ThresholdResult> {
    thresholds
        .iter()
        .map(|threshold| judge(summary, threshold))
        .collect()
}

/// Whether every threshold held.
pub fn all_passed(results: &[ThresholdResult]) -> bool {
    results.iter().all(|r| r.passed)
}

/// How a metric's values read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Millis,
    Fraction,
    Count,
    PerSecond,
    Plain,
}

fn judge(summary: &RunSummary, threshold: &ThresholdPlan) -> ThresholdResult {
    let (observed, kind, context) =
        observe(summary, &threshold.selector, threshold.expression.aggregate);
    let limit = threshold.expression.limit;
    let limit_base = limit.base();
    let passed =
        observed.is_some_and(|value| threshold.expression.comparison.holds(value, limit_base));
    let observed_text = match observed {
        Some(value) => format_value(value, kind),
        None => "no data".to_owned(),
    };
    let detail = match observed {
        // The run's own verdict line: nothing succeeded, and why.
        Some(value)
            if threshold.selector.metric == Metric::HttpSucceeded && value == 0.0 && !passed =>
        {
            context.unwrap_or_default()
        }
        // Measured, but not enough to judge: the reason says it all.
        None if context
            .as_deref()
            .is_some_and(|c| c.starts_with("none of") || c.starts_with("not enough data")) =>
        {
            format!(
                "no data for `{}`: {}",
                threshold.selector,
                context.unwrap_or_default()
            )
        }
        None => format!(
            "nothing was measured for `{}`{}",
            threshold.selector,
            context.map(|c| format!(" ({c})")).unwrap_or_default()
        ),
        Some(_) if passed => context.unwrap_or_default(),
        Some(value) => {
            let limit_kind = if limit.unit == Unit::Percent {
                Kind::Fraction
            } else {
                kind
            };
            let difference = (value - limit_base).abs();
            let relation = if value > limit_base { "over" } else { "under" };
            let mut text = format!(
                "observed {}, {} {relation} the limit of {}",
                format_value(value, kind),
                format_value(difference, limit_kind),
                format_value(limit_base, limit_kind)
            );
            if let Some(context) = context {
                text.push_str(&format!(" ({context})"));
            }
            text
        }
    };
    ThresholdResult {
        source: threshold.source.clone(),
        metric: threshold.selector.metric.to_string(),
        passed,
        observed,
        observed_text,
        detail,
        abort_on_fail: threshold.abort_on_fail,
        diagnosis: Vec::new(),
    }
}

fn selected<'a>(summary: &'a RunSummary, selector: &Selector) -> Vec<&'a EndpointSummary> {
    summary
        .endpoints
        .iter()
        .filter(|e| {
            selector
                .filter("name")
                .is_none_or(|name| e.meta.name == name)
        })
        .filter(|e| {
            selector
                .filter("tag")
                .is_none_or(|tag| e.meta.tags.iter().any(|t| t == tag))
        })
        .filter(|e| {
            selector
                .filter("method")
                .is_none_or(|method| e.meta.method == method)
        })
        .collect()
}

/// The histogram of a browser metric on a page (`browser.lcp` → `lcp`):
/// the metric's name is the verdict's to read, not the summary's.
pub fn page_histogram<'a>(page: &'a PageSummary, metric: &Metric) -> Option<&'a Histogram<u64>> {
    Some(match metric {
        Metric::BrowserTtfb => &page.ttfb.0,
        Metric::BrowserDcl => &page.dcl.0,
        Metric::BrowserLoad => &page.load.0,
        Metric::BrowserLcp => &page.lcp.0,
        Metric::BrowserTbt => &page.tbt.0,
        Metric::BrowserRequests => &page.requests.0,
        Metric::BrowserBytes => &page.bytes.0,
        _ => return None,
    })
}

/// A browser metric over the selected pages (`{page:…}`, all without it).
fn observe_browser(
    summary: &RunSummary,
    selector: &Selector,
    aggregate: Aggregate,
) -> (Option<f64>, Kind, Option<String>) {
    let metric = &selector.metric;
    let Some(browser) = &summary.browser else {
        return (None, Kind::Millis, Some("no browser ran".into()));
    };
    let pages: Vec<_> = browser
        .pages
        .iter()
        .filter(|p| selector.filter("page").is_none_or(|page| p.page == page))
        .collect();
    let views: u64 = pages.iter().map(|p| p.views).sum();
    let failed: u64 = pages.iter().map(|p| p.failed).sum();
    if *metric == Metric::BrowserFailed {
        return match aggregate {
            Aggregate::Count => (
                Some(failed as f64),
                Kind::Count,
                Some(format!("of {views} page views")),
            ),
            _ if views == 0 => (None, Kind::Fraction, Some("no page views".into())),
            _ => (
                Some(failed as f64 / views as f64),
                Kind::Fraction,
                Some(format!("{failed} of {views} page views")),
            ),
        };
    }
    let mut combined = crate::metrics::new_histogram();
    combined.auto(true);
    for page in &pages {
        if let Some(histogram) = page_histogram(page, metric) {
            let _ = combined.add(histogram);
        }
    }
    let (kind, scale) = if metric.is_duration() {
        (Kind::Millis, 1000.0)
    } else {
        (Kind::Plain, 1.0)
    };
    if aggregate == Aggregate::Count {
        return (Some(combined.len() as f64), Kind::Count, None);
    }
    if combined.is_empty() {
        let why = if views == 0 {
            "no page views".to_owned()
        } else {
            format!("{views} page views, none measured it ({failed} failed)")
        };
        return (None, kind, Some(why));
    }
    if let Some(why) = too_few(aggregate, combined.len(), "page views") {
        return (None, kind, Some(why));
    }
    let value = match aggregate {
        Aggregate::Percentile(p) => combined.value_at_quantile(p / 100.0) as f64,
        Aggregate::Avg => combined.mean(),
        Aggregate::Min => combined.min() as f64,
        Aggregate::Med => combined.value_at_quantile(0.5) as f64,
        _ => combined.max() as f64,
    } / scale;
    (
        Some(value),
        kind,
        Some(format!("{} page views", combined.len())),
    )
}

/// The observed value, how it reads, and a note for the detail.
fn observe(
    summary: &RunSummary,
    selector: &Selector,
    aggregate: Aggregate,
) -> (Option<f64>, Kind, Option<String>) {
    let metric = &selector.metric;
    if let Some(phase) = selector
        .filter("phase")
        .and_then(|p| p.parse::<Phase>().ok())
    {
        return observe_phase(summary, selector, aggregate, phase);
    }
    match metric {
        Metric::BrowserTtfb
        | Metric::BrowserDcl
        | Metric::BrowserLoad
        | Metric::BrowserLcp
        | Metric::BrowserTbt
        | Metric::BrowserRequests
        | Metric::BrowserBytes
        | Metric::BrowserFailed => observe_browser(summary, selector, aggregate),
        Metric::HttpDuration | Metric::AuthDuration => {
            observe_duration(summary, selector, aggregate)
        }
        Metric::HttpFailed | Metric::HttpConflicts | Metric::HttpRequests => {
            observe_requests(summary, selector, aggregate)
        }
        Metric::HttpSucceeded => observe_succeeded(summary, selector, aggregate),
        Metric::Failures => observe_failures(summary, selector, aggregate),
        Metric::AuthSuccess => {
            // The whole run, warm-up included: see auth.duration.
            let attempts =
                summary.counters.login_attempts + summary.warm_up_counters.login_attempts;
            let successes =
                summary.counters.login_successes + summary.warm_up_counters.login_successes;
            match aggregate {
                Aggregate::Count => (
                    Some(successes as f64),
                    Kind::Count,
                    Some(format!("of {attempts} logins")),
                ),
                _ if attempts == 0 => (None, Kind::Fraction, Some("no login was attempted".into())),
                _ => (
                    Some(successes as f64 / attempts as f64),
                    Kind::Fraction,
                    Some(format!("{successes} of {attempts} logins")),
                ),
            }
        }
        Metric::Checks => {
            let (passed, failed) = (
                summary.counters.checks_passed,
                summary.counters.checks_failed,
            );
            let total = passed + failed;
            match aggregate {
                Aggregate::Count => (Some(total as f64), Kind::Count, None),
                _ if total == 0 => (None, Kind::Fraction, Some("no checks ran".into())),
                _ => (
                    Some(passed as f64 / total as f64),
                    Kind::Fraction,
                    Some(format!("{passed} of {total} checks")),
                ),
            }
        }
        Metric::QueriesPerRequest => {
            let name = selector.filter("name").unwrap_or_default();
            match summary.extra.get(&Metric::queries_per_request_key(name)) {
                Some(value) => (Some(*value), Kind::Plain, Some("measured alone".into())),
                None => (None, Kind::Plain, Some("not measured (the task needs values from another task, or pg_stat_statements is off)".into())),
            }
        }
        Metric::IterationsDropped => (
            Some(summary.counters.dropped_iterations as f64),
            Kind::Count,
            None,
        ),
        Metric::IterationsCompleted => {
            (Some(summary.counters.iterations as f64), Kind::Count, None)
        }
        Metric::HttpStalledSeconds => (
            Some(summary.stalls.stalled_seconds as f64),
            Kind::Count,
            Some("seconds with requests in flight and none completed".into()),
        ),
        Metric::HttpLongestStall => (
            Some(summary.stalls.longest_seconds as f64 * 1000.0),
            Kind::Millis,
            summary
                .stalls
                .longest_from_second
                .map(|from| format!("from second {from} of the run")),
        ),
        Metric::HttpInflightAge => (
            Some(summary.stalls.max_in_flight_age_ms),
            Kind::Millis,
            Some("the longest wait of a request still in flight".into()),
        ),
        Metric::RecoveryTime => {
            let recoveries = summary.recoveries();
            let slowest = recoveries.iter().max_by(|a, b| {
                // A fault never recovered from is the slowest of all.
                let key = |r: &Recovery| r.after_seconds.unwrap_or(f64::INFINITY);
                key(a).total_cmp(&key(b))
            });
            match slowest {
                None => (None, Kind::Millis, Some("the run had no fault".into())),
                Some(recovery) => (
                    recovery.after_seconds.map(|s| s * 1000.0),
                    Kind::Millis,
                    Some(recovery.line()),
                ),
            }
        }
        // Values later layers put in the summary under the metric's name.
        Metric::TasksExecuted | Metric::Extra(_) => match summary.extra.get(metric.as_str()) {
            Some(value) => (Some(*value), Kind::Plain, None),
            None => (None, Kind::Plain, Some("the run did not measure it".into())),
        },
    }
}

/// A latency: of the selected requests, or of the logins over the whole run.
fn observe_duration(
    summary: &RunSummary,
    selector: &Selector,
    aggregate: Aggregate,
) -> (Option<f64>, Kind, Option<String>) {
    let metric = &selector.metric;
    let endpoints = if *metric == Metric::AuthDuration {
        // Logins cluster where users start, often in the warm-up, so
        // auth metrics judge the whole run.
        let is_login = |e: &&EndpointSummary| e.meta.is_login();
        summary
            .endpoints
            .iter()
            .filter(is_login)
            .chain(summary.warm_up.iter().filter(is_login))
            .collect()
    } else {
        selected(summary, selector)
    };
    let combined = summary.combined(endpoints.into_iter());
    if aggregate == Aggregate::Count {
        return (Some(combined.requests as f64), Kind::Count, None);
    }
    if combined.requests == 0 {
        return (None, Kind::Millis, Some("no requests".into()));
    }
    // Latencies of requests that all failed (refused in no time,
    // say) are not the service's latency.
    if combined.failures == combined.requests {
        return (
            None,
            Kind::Millis,
            Some(format!(
                "none of {} requests succeeded ({})",
                combined.requests,
                failure_kinds_text(&combined)
            )),
        );
    }
    if let Some(why) = too_few(aggregate, combined.requests, "requests") {
        return (None, Kind::Millis, Some(why));
    }
    let histogram = &combined.histogram.0;
    let millis = |micros: u64| micros as f64 / 1000.0;
    let value = match aggregate {
        Aggregate::Percentile(p) => millis(histogram.value_at_quantile(p / 100.0)),
        Aggregate::Avg => histogram.mean() / 1000.0,
        Aggregate::Min => millis(histogram.min()),
        Aggregate::Max => millis(histogram.max()),
        Aggregate::Med => millis(histogram.value_at_quantile(0.5)),
        Aggregate::Rate | Aggregate::Count | Aggregate::Value => millis(histogram.max()),
    };
    (
        Some(value),
        Kind::Millis,
        Some(format!("{} requests", combined.requests)),
    )
}

/// A count or share of the selected requests: failed, conflicting, all.
fn observe_requests(
    summary: &RunSummary,
    selector: &Selector,
    aggregate: Aggregate,
) -> (Option<f64>, Kind, Option<String>) {
    let metric = &selector.metric;
    let combined = summary.combined(selected(summary, selector).into_iter());
    let part = match metric {
        Metric::HttpFailed => combined.failures,
        Metric::HttpConflicts => combined.conflicts,
        _ => combined.requests,
    };
    match aggregate {
        Aggregate::Count => (Some(part as f64), Kind::Count, None),
        Aggregate::Rate if *metric == Metric::HttpRequests => (
            Some(combined.requests_per_second),
            Kind::PerSecond,
            Some(format!("{} requests", combined.requests)),
        ),
        _ if combined.requests == 0 => (None, Kind::Fraction, Some("no requests".into())),
        _ => (
            Some(part as f64 / combined.requests as f64),
            Kind::Fraction,
            Some(format!("{part} of {} requests", combined.requests)),
        ),
    }
}

/// The task requests that succeeded: a login that works in front of tasks
/// that all fail is still a run where nothing worked.
fn observe_succeeded(
    summary: &RunSummary,
    selector: &Selector,
    aggregate: Aggregate,
) -> (Option<f64>, Kind, Option<String>) {
    // Task requests: a login that works in front of tasks that all
    // fail is still a run where nothing worked.
    let tasks: Vec<&EndpointSummary> = selected(summary, selector)
        .into_iter()
        .filter(|e| selector.filter("tag").is_some() || !e.meta.is_auth_flow())
        .collect();
    let combined = summary.combined(tasks.into_iter());
    let succeeded = combined.requests - combined.failures;
    let context = if combined.requests == 0 {
        "nothing succeeded: no request was sent".to_owned()
    } else if succeeded == 0 {
        format!(
            "nothing succeeded: {} requests, {}",
            thousands(combined.requests),
            failure_kinds_text(&combined)
        )
    } else {
        format!("{succeeded} of {} requests", combined.requests)
    };
    match aggregate {
        Aggregate::Count => (Some(succeeded as f64), Kind::Count, Some(context)),
        _ if combined.requests == 0 => (None, Kind::Fraction, Some(context)),
        _ => (
            Some(succeeded as f64 / combined.requests as f64),
            Kind::Fraction,
            Some(context),
        ),
    }
}

/// Failures of one kind (or every kind), counted or as a share.
fn observe_failures(
    summary: &RunSummary,
    selector: &Selector,
    aggregate: Aggregate,
) -> (Option<f64>, Kind, Option<String>) {
    let endpoints = selected(summary, selector);
    let requests: u64 = endpoints.iter().map(|e| e.requests).sum();
    let count: u64 = endpoints
        .iter()
        .flat_map(|e| e.failure_kinds.iter())
        .filter(|r| {
            selector
                .filter("kind")
                .is_none_or(|kind| r.kind.name() == kind)
        })
        .map(|r| r.count)
        .sum();
    match aggregate {
        Aggregate::Count => (
            Some(count as f64),
            Kind::Count,
            Some(format!("of {requests} requests")),
        ),
        _ if requests == 0 => (None, Kind::Fraction, Some("no requests".into())),
        _ => (
            Some(count as f64 / requests as f64),
            Kind::Fraction,
            Some(format!("{count} of {requests} requests")),
        ),
    }
}

/// A metric over the seconds of one phase of the run, from the series.
fn observe_phase(
    summary: &RunSummary,
    selector: &Selector,
    aggregate: Aggregate,
    phase: Phase,
) -> (Option<f64>, Kind, Option<String>) {
    let indices: Vec<usize> = selected(summary, selector)
        .iter()
        .filter_map(|chosen| {
            summary
                .endpoints
                .iter()
                .position(|e| std::ptr::eq(e, *chosen))
        })
        .collect();
    let window = summary.window(&indices, phase);
    let context = format!(
        "{} requests in the {} seconds of phase {phase}",
        window.requests, window.seconds
    );
    if window.seconds == 0 {
        return (
            None,
            Kind::Plain,
            Some(format!("no second of the run was in phase {phase}")),
        );
    }
    match &selector.metric {
        Metric::HttpDuration => {
            if aggregate == Aggregate::Count {
                return (Some(window.requests as f64), Kind::Count, Some(context));
            }
            if window.latency.is_empty() {
                return (None, Kind::Millis, Some(context));
            }
            if let Some(why) = too_few(aggregate, window.latency.len(), "requests") {
                return (None, Kind::Millis, Some(format!("{why}; {context}")));
            }
            let histogram = &window.latency;
            let millis = |micros: u64| micros as f64 / 1000.0;
            let value = match aggregate {
                Aggregate::Percentile(p) => millis(histogram.value_at_quantile(p / 100.0)),
                Aggregate::Avg => histogram.mean() / 1000.0,
                Aggregate::Min => millis(histogram.min()),
                Aggregate::Med => millis(histogram.value_at_quantile(0.5)),
                _ => millis(histogram.max()),
            };
            (Some(value), Kind::Millis, Some(context))
        }
        Metric::HttpRequests => match aggregate {
            Aggregate::Rate => (
                Some(window.requests as f64 / window.seconds as f64),
                Kind::PerSecond,
                Some(context),
            ),
            _ => (Some(window.requests as f64), Kind::Count, Some(context)),
        },
        _ => match aggregate {
            Aggregate::Count => (Some(window.failures as f64), Kind::Count, Some(context)),
            _ if window.requests == 0 => (None, Kind::Fraction, Some(context)),
            _ => (
                Some(window.failures as f64 / window.requests as f64),
                Kind::Fraction,
                Some(format!("{} failed of {context}", window.failures)),
            ),
        },
    }
}

/// The fewest values an aggregate can be read from: a percentile needs at
/// least one value above it (`p(99)` 100, `p(95)` 20, the median 2), or it
/// is only the maximum under another name.
pub fn values_needed(aggregate: Aggregate) -> u64 {
    match aggregate {
        Aggregate::Percentile(p) if p < 100.0 => {
            // The epsilon keeps 1 / (1 - 0.99) = 100.000…01 at 100.
            (1.0 / (1.0 - p / 100.0) - 1e-9).ceil().max(1.0) as u64
        }
        Aggregate::Med => 2,
        _ => 1,
    }
}

/// Why `measured` values are too few for the aggregate, if they are.
fn too_few(aggregate: Aggregate, measured: u64, what: &str) -> Option<String> {
    let needed = values_needed(aggregate);
    (measured < needed).then(|| {
        let name = match aggregate {
            Aggregate::Percentile(p) => format!("p({p})"),
            _ => "the median".to_owned(),
        };
        format!(
            "not enough data: {name} needs at least {needed} {what}, the run measured {measured}"
        )
    })
}

/// `all connection-refused`, or `120 connection-refused, 3 timeout`.
fn failure_kinds_text(combined: &EndpointSummary) -> String {
    match combined.failure_kinds.as_slice() {
        [] => "none recorded a failure kind".to_owned(),
        [only] => format!("all {}", only.kind.name()),
        kinds => kinds
            .iter()
            .map(|k| format!("{} {}", thousands(k.count), k.kind.name()))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// `153,492`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn format_value(value: f64, kind: Kind) -> String {
    match kind {
        Kind::Millis if value >= 10_000.0 => format!("{:.2}s", value / 1000.0),
        Kind::Millis => format!("{value:.1}ms"),
        Kind::Fraction => format!("{:.2}%", value * 100.0),
        Kind::Count => format!("{value:.0}"),
        Kind::PerSecond => format!("{value:.1}/s"),
        Kind::Plain => {
            if value.fract() == 0.0 && value.abs() < 1e15 {
                format!("{value:.0}")
            } else {
                format!("{value:.3}")
            }
        }
    }
}
