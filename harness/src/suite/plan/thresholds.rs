//! `[thresholds]`: selectors (a metric and filters) with k6-style
//! expressions, each checked against the metrics, the endpoints, the tags
//! and the failure kinds the run can produce.

use std::collections::BTreeSet;
use std::ops::Range;

use serde::Serialize;
use toml::Spanned;

use super::PlanOptions;
use super::checker::Checker;
use super::tags::unknown_tag;
use crate::metrics::phases::Phase;
use crate::metrics::summary::{AUTH_TAG, EndpointMeta, TaskSelection};
use crate::suite::SuiteFile;
use crate::suite::metric::Metric;
use crate::suite::threshold::{Aggregate, Comparison, Expression, FILTER_KEYS, Selector};

/// One threshold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThresholdPlan {
    pub selector: Selector,
    pub expression: Expression,
    /// As written: `http.duration{name:/dashboard/}: p(95) < 200ms`.
    pub source: String,
    pub abort_on_fail: bool,
}

/// Failure kinds the engine itself reports (besides `http-NNN` and the auth markers).
pub const BUILTIN_FAILURE_KINDS: [&str; 8] = [
    "connection-refused",
    "connection-reset",
    "timeout",
    "check-failed",
    "login-page-returned",
    "csrf-rejected",
    "transport",
    "interrupted",
];

/// Every threshold of the file, checked; a threshold on a task the tags
/// left out is skipped and noted in the selection.
pub(super) fn check_thresholds(
    checker: &mut Checker<'_>,
    file: &SuiteFile,
    endpoints: &[EndpointMeta],
    known_tags: &BTreeSet<String>,
    selection: &mut TaskSelection,
    options: &PlanOptions,
) -> Vec<ThresholdPlan> {
    let mut failure_kinds: BTreeSet<String> = BUILTIN_FAILURE_KINDS
        .iter()
        .map(|s| s.to_string())
        .collect();
    if let Some(auth) = &file.auth {
        failure_kinds.extend(auth.failure_kinds.keys().cloned());
    }
    let mut thresholds = Vec::new();
    for (key, value) in &file.thresholds {
        let selector = match key.get_ref().parse::<Selector>() {
            Ok(selector) => selector,
            Err(error) => {
                let span = checker.inside(&key.span(), key.get_ref(), error.offset);
                checker.at(span, error.message);
                continue;
            }
        };
        if let Some(name) = selector.filter("name")
            && !endpoints.iter().any(|e| e.name == name)
            && selection.excluded.iter().any(|(task, _)| task == name)
        {
            selection
                .skipped_thresholds
                .push(format!("{} (its task is excluded)", key.get_ref()));
            continue;
        }
        let known = Known {
            browser_pages: &file
                .browsers
                .iter()
                .flat_map(|b| {
                    b.pages
                        .iter()
                        .map(|p| p.name.clone().unwrap_or_else(|| p.path.get_ref().clone()))
                })
                .collect(),
            endpoints,
            tags: known_tags,
            failure_kinds: &failure_kinds,
            options,
            has_faults: !file.faults.is_empty(),
        };
        let metric_ok = check_selector(checker, key, &selector, &known);
        for expression_text in &value.get_ref().expressions {
            let span = if expression_text.span().is_empty() {
                value.span()
            } else {
                expression_text.span()
            };
            match expression_text.get_ref().parse::<Expression>() {
                Ok(expression) => {
                    if metric_ok && check_aggregate(checker, span.clone(), &selector, &expression) {
                        check_can_fail_and_hold(checker, span.clone(), &selector, &expression);
                    }
                    thresholds.push(ThresholdPlan {
                        source: format!("{}: {}", selector, expression),
                        selector: selector.clone(),
                        expression,
                        abort_on_fail: value.get_ref().abort_on_fail,
                    });
                }
                Err(error) => {
                    let at = checker.inside(&span, expression_text.get_ref(), error.offset);
                    checker.at(
                        at,
                        format!(
                            "in threshold `{}`: {}",
                            expression_text.get_ref(),
                            error.message
                        ),
                    );
                }
            }
        }
    }
    for (key, expression) in &crate::suite::defaults::Defaults::embedded().thresholds {
        if file.thresholds.keys().any(|k| k.get_ref() == key) {
            continue;
        }
        let selector: Selector = key
            .parse()
            .expect("defaults.toml is checked by a unit test");
        let expression: Expression = expression
            .parse()
            .expect("defaults.toml is checked by a unit test");
        thresholds.push(ThresholdPlan {
            source: format!("{selector}: {expression}"),
            selector,
            expression,
            abort_on_fail: false,
        });
    }
    thresholds
}

/// What a selector may name in this suite.
struct Known<'a> {
    /// The `[[browser]]` pages' names.
    browser_pages: &'a BTreeSet<String>,
    endpoints: &'a [EndpointMeta],
    tags: &'a BTreeSet<String>,
    failure_kinds: &'a BTreeSet<String>,
    options: &'a PlanOptions,
    has_faults: bool,
}

/// Whether the selector's metric exists and its filters fit it.
fn check_selector(
    checker: &mut Checker<'_>,
    key: &Spanned<String>,
    selector: &Selector,
    known: &Known<'_>,
) -> bool {
    let Known {
        browser_pages,
        endpoints,
        tags: known_tags,
        failure_kinds,
        options,
        has_faults,
    } = *known;
    let metric = &selector.metric;
    let is_value =
        Metric::ENGINE_VALUES.contains(metric) || options.extra_metrics.contains(metric.as_str());
    if !Metric::BUILTIN.contains(metric) && !metric.is_browser() && !is_value {
        let mut all: Vec<&str> = Metric::BUILTIN
            .iter()
            .chain(Metric::BROWSER.iter())
            .chain(Metric::ENGINE_VALUES.iter())
            .map(Metric::as_str)
            .collect();
        all.extend(options.extra_metrics.iter().map(String::as_str));
        checker
            .at(key.span(), format!("unknown metric `{metric}`"))
            .hint = Some(format!("metrics: {}", all.join(", ")));
        return false;
    }
    let mut ok = true;
    if metric.is_browser() && browser_pages.is_empty() {
        checker
            .at(
                key.span(),
                format!("`{metric}` is measured by [[browser]] users; the suite has none"),
            )
            .hint = Some("add a [[browser]] with a [[browser.page]]".into());
        ok = false;
    }
    if *metric == Metric::QueriesPerRequest && selector.filter("name").is_none() {
        checker.at(
            key.span(),
            "queries_per_request names its task: queries_per_request(\"/dashboard/\")",
        );
        ok = false;
    }
    if *metric == Metric::RecoveryTime && !has_faults {
        checker
            .at(
                key.span(),
                "recovery.time is measured after a [[fault]]; the suite has none",
            )
            .hint = Some("add a [[fault]] that ends (pause, restart or a network fault)".into());
        ok = false;
    }
    for (filter, value) in &selector.filters {
        let offset = key.get_ref().find(&format!("{filter}:")).unwrap_or(0);
        let span = checker.inside(&key.span(), key.get_ref(), offset);
        let span = span.start..span.start + filter.len() + 1 + value.len();
        match filter.as_str() {
            "name" if !endpoints.iter().any(|e| &e.name == value) => {
                let names: Vec<&str> = endpoints.iter().map(|e| e.name.as_str()).collect();
                checker.at(span, format!("no task is named `{value}`")).hint =
                    Some(format!("task names: {}", names.join(", ")));
                ok = false;
            }
            "tag" if !known_tags.contains(value) && value != AUTH_TAG => {
                unknown_tag(checker, Some(span), value, known_tags);
                ok = false;
            }
            "kind" if !failure_kinds.contains(value) && !is_status_kind(value) => {
                checker
                    .at(span, format!("unknown failure kind `{value}`"))
                    .hint = Some(format!(
                    "kinds: {}, http-NNN, and the auth failure-kinds",
                    failure_kinds.iter().cloned().collect::<Vec<_>>().join(", ")
                ));
                ok = false;
            }
            "kind" if *metric != Metric::Failures => {
                checker.at(span, "the `kind` filter applies to the `failures` metric");
                ok = false;
            }
            "phase" if value.parse::<Phase>().is_err() => {
                checker.at(span, format!("unknown phase `{value}`")).hint =
                    Some(format!("phases: {}", Phase::NAMES.join(", ")));
                ok = false;
            }
            "phase" if !has_faults => {
                checker
                    .at(
                        span,
                        "a phase is a window around the suite's faults; it has none",
                    )
                    .hint = Some("add a [[fault]], or drop the phase".into());
                ok = false;
            }
            "phase"
                if !matches!(
                    metric,
                    Metric::HttpDuration | Metric::HttpFailed | Metric::HttpRequests
                ) =>
            {
                checker.at(
                    span,
                    "the `phase` filter applies to http.duration, http.failed and http.requests",
                );
                ok = false;
            }
            "page" if !metric.is_browser() => {
                checker.at(span, "the `page` filter applies to the browser.* metrics");
                ok = false;
            }
            "page" if !browser_pages.contains(value) => {
                checker
                    .at(span, format!("no [[browser.page]] is named `{value}`"))
                    .hint = Some(format!(
                    "pages: {}",
                    browser_pages.iter().cloned().collect::<Vec<_>>().join(", ")
                ));
                ok = false;
            }
            "name" | "tag" | "method" | "kind" | "phase" if metric.is_browser() => {
                checker.at(
                    span,
                    format!("`{metric}` is selected by `page`, not `{filter}`"),
                );
                ok = false;
            }
            "method" if !matches!(value.as_str(), "GET" | "POST" | "PUT" | "PATCH" | "DELETE") => {
                checker.at(span, format!("`{value}` is not an HTTP method"));
                ok = false;
            }
            other if !FILTER_KEYS.contains(&other) => {
                checker.at(
                    span,
                    format!(
                        "unknown filter `{other}` (use name, tag, method, kind, phase or page)"
                    ),
                );
                ok = false;
            }
            _ => {}
        }
    }
    if is_value && !selector.filters.is_empty() {
        checker.at(key.span(), format!("`{metric}` takes no filters"));
        ok = false;
    }
    ok
}

/// `http-NNN`: a failure kind named by its status.
fn is_status_kind(kind: &str) -> bool {
    kind.strip_prefix("http-")
        .is_some_and(|code| code.len() == 3 && code.chars().all(|c| c.is_ascii_digit()))
}

/// Whether the expression computes something the metric has.
fn check_aggregate(
    checker: &mut Checker<'_>,
    span: Range<usize>,
    selector: &Selector,
    expression: &Expression,
) -> bool {
    let metric = &selector.metric;
    let allowed = metric.aggregates();
    let name = match expression.aggregate {
        Aggregate::Percentile(_) => "p(N)",
        Aggregate::Avg => "avg",
        Aggregate::Min => "min",
        Aggregate::Max => "max",
        Aggregate::Med => "med",
        Aggregate::Rate => "rate",
        Aggregate::Count => "count",
        Aggregate::Value => "value",
    };
    let value_like =
        allowed == ["value"] && matches!(expression.aggregate, Aggregate::Max | Aggregate::Count);
    if !allowed.contains(&name) && !value_like {
        checker.at(span, format!("`{metric}` has no `{name}`")).hint =
            Some(format!("use {}", allowed.join(", ")));
        return false;
    }
    true
}

/// The values an aggregate of a metric can take, where the metric says:
/// fractions from 0 to 1, counts and times from 0 up. `None` for named
/// values whose range only the layer that measures them knows.
fn possible_values(metric: &Metric, aggregate: Aggregate) -> Option<(f64, f64)> {
    match aggregate {
        Aggregate::Rate if *metric == Metric::HttpRequests => Some((0.0, f64::INFINITY)),
        Aggregate::Rate => Some((0.0, 1.0)),
        Aggregate::Count => Some((0.0, f64::INFINITY)),
        _ if metric.is_duration()
            || metric.is_browser()
            || matches!(
                metric,
                Metric::HttpLongestStall
                    | Metric::HttpInflightAge
                    | Metric::RecoveryTime
                    | Metric::HttpStalledSeconds
                    | Metric::IterationsDropped
                    | Metric::IterationsCompleted
                    | Metric::QueriesPerRequest
            ) =>
        {
            Some((0.0, f64::INFINITY))
        }
        _ => None,
    }
}

/// A threshold every possible value satisfies cannot fail, and one that
/// none satisfies cannot hold: both are refused (`rate < 200%`,
/// `rate >= 0%`, `count >= 0`, `rate > 100%`).
fn check_can_fail_and_hold(
    checker: &mut Checker<'_>,
    span: Range<usize>,
    selector: &Selector,
    expression: &Expression,
) {
    let metric = &selector.metric;
    let Some((low, high)) = possible_values(metric, expression.aggregate) else {
        return;
    };
    let limit = expression.limit.base();
    if high == 1.0 && !(0.0..=1.0).contains(&limit) {
        checker
            .at(
                span,
                format!(
                    "a rate is between 0% and 100%; `{expression}` compares it with {}",
                    percent(limit)
                ),
            )
            .hint = Some("write the rate as a percentage, e.g. `rate < 1%`".into());
        return;
    }
    let (always, never) = match expression.comparison {
        Comparison::Less => (limit > high, limit <= low),
        Comparison::LessOrEqual => (limit >= high, limit < low),
        Comparison::Greater => (limit < low, limit >= high),
        Comparison::GreaterOrEqual => (limit <= low, limit > high),
        Comparison::Equal => (low == high && limit == low, limit < low || limit > high),
        Comparison::NotEqual => (limit < low || limit > high, low == high && limit == low),
    };
    let range = if high == 1.0 {
        "0% to 100%".to_owned()
    } else {
        "0 and up".to_owned()
    };
    if always {
        checker
            .at(
                span,
                format!("`{metric}: {expression}` holds for every possible value ({range}): it can never fail"),
            )
            .hint = Some("bound it where a broken run would cross it".into());
    } else if never {
        checker
            .at(
                span,
                format!("`{metric}: {expression}` holds for no possible value ({range}): it can never pass"),
            )
            .hint = Some("check the comparison's direction".into());
    }
}

fn percent(fraction: f64) -> String {
    format!("{}%", (fraction * 100.0 * 1000.0).round() / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::plan::Plan;

    const SUITE: &str = r#"
[suite]
name = "t"
[auth]
login-url = "/login/"
success = { status = 302, location = "/" }
failure-kinds = { rate-limited = "Too many" }
users = { from = "catalog" }
[load]
users = 1
duration = "1s"
[[task]]
name = "/a/"
tags = ["page"]
get = "/a/"
[[task]]
name = "/slow/"
tags = ["slow"]
get = "/slow/"
[thresholds]
"#;

    #[track_caller]
    fn check(thresholds: &str, options: &PlanOptions, expect: &str) -> Option<Plan> {
        let source = format!("{SUITE}{thresholds}\n");
        super::super::check_plan(&source, options, expect, |plan| {
            // The default thresholds every plan gets have a test of their own.
            let got: Vec<&str> = plan
                .thresholds
                .iter()
                .map(|t| t.source.as_str())
                .filter(|source| !DEFAULTS.contains(source))
                .collect();
            got.join(", ")
        })
    }

    #[test]
    fn phases_and_recovery_need_a_fault() {
        let none = PlanOptions::default();
        let fault = "\n[[fault]]\nservice = \"redis\"\naction = \"pause\"\nat = \"0s\"\nduration = \"500ms\"";
        check(
            &format!(
                "\"http.failed{{phase:fault}}\" = \"rate < 50%\"\n\"http.duration{{phase:after-fault}}\" = \"p(95) < 1s\"\n\"recovery.time\" = \"max < 10s\"{fault}"
            ),
            &none,
            "http.failed{phase:fault}: rate < 50%, http.duration{phase:after-fault}: p(95) < 1s, recovery.time: max < 10s",
        );
        check(
            "\"recovery.time\" = \"max < 10s\"",
            &none,
            "21:1 recovery.time is measured after a [[fault]]; the suite has none",
        );
        check(
            "\"http.failed{phase:fault}\" = \"rate < 50%\"",
            &none,
            "21:14 a phase is a window around the suite's faults; it has none",
        );
        check(
            &format!("\"http.failed{{phase:during}}\" = \"rate < 50%\"{fault}"),
            &none,
            "21:14 unknown phase `during`",
        );
        check(
            &format!("\"checks{{phase:fault}}\" = \"rate > 99%\"{fault}"),
            &none,
            "21:9 the `phase` filter applies to http.duration, http.failed and http.requests",
        );
    }

    #[test]
    fn thresholds_name_metrics_filters_and_kinds_that_exist() {
        let none = PlanOptions::default();
        check(
            "\"http.duration{name:/a/,tag:auth}\" = [\"p(95) < 200ms\", \"max < 1s\"]\n\"failures{kind:rate-limited}\" = \"count == 0\"\n\"failures{kind:http-503}\" = \"rate < 1%\"\n\"auth.success\" = \"rate > 99%\"\n'queries_per_request(\"/a/\")' = \"<= 5\"",
            &none,
            "http.duration{name:/a/,tag:auth}: p(95) < 200ms, http.duration{name:/a/,tag:auth}: max < 1s, failures{kind:rate-limited}: count == 0, failures{kind:http-503}: rate < 1%, auth.success: rate > 99%, queries_per_request{name:/a/}: value <= 5",
        );
        check(
            "\"http.latency\" = \"p(95) < 1s\"",
            &none,
            "21:1 unknown metric `http.latency`",
        );
        check(
            "\"http.duration{tag:fast}\" = \"p(95) < 1s\"",
            &none,
            "21:16 unknown tag `fast`",
        );
        check(
            "\"http.failed{kind:timeout}\" = \"rate < 1%\"",
            &none,
            "21:14 the `kind` filter applies to the `failures` metric",
        );
        check(
            "\"failures{kind:boom}\" = \"count == 0\"",
            &none,
            "21:11 unknown failure kind `boom`",
        );
        check(
            "\"queries_per_request\" = \"<= 5\"",
            &none,
            "21:1 queries_per_request names its task: queries_per_request(\"/dashboard/\")",
        );
    }

    const STALL_DEFAULT: &str = "http.longest-stall: max < 5s";
    const SUCCEEDED_DEFAULT: &str = "http.succeeded: count > 0";
    const FAILED_DEFAULT: &str = "http.failed: rate < 1%";
    const DEFAULTS: [&str; 3] = [STALL_DEFAULT, SUCCEEDED_DEFAULT, FAILED_DEFAULT];

    /// Every threshold a suite with `thresholds` gets, defaults included.
    fn sources(thresholds: &str) -> Vec<String> {
        let source = format!("{SUITE}{thresholds}\n");
        Plan::from_source(&source, "t.toml", &PlanOptions::default())
            .unwrap()
            .thresholds
            .iter()
            .map(|t| t.source.clone())
            .collect()
    }

    #[test]
    fn every_suite_fails_on_a_dead_target_unless_it_says_otherwise() {
        assert_eq!(sources(""), DEFAULTS);
        assert_eq!(
            sources("\"http.failed\" = \"rate < 5%\""),
            ["http.failed: rate < 5%", STALL_DEFAULT, SUCCEEDED_DEFAULT]
        );
        // The documented opt-out for a suite that tests refusals.
        assert_eq!(
            sources("\"http.succeeded\" = []\n\"http.failed\" = []"),
            [STALL_DEFAULT]
        );
    }

    #[test]
    fn thresholds_that_cannot_fail_or_cannot_hold_are_refused() {
        let none = PlanOptions::default();
        check(
            "\"http.failed\" = \"rate < 200%\"",
            &none,
            "21:17 a rate is between 0% and 100%; `rate < 200%` compares it with 200%",
        );
        check(
            "\"http.failed\" = \"rate >= 0%\"",
            &none,
            "21:17 `http.failed: rate >= 0%` holds for every possible value (0% to 100%): it can never fail",
        );
        check(
            "\"checks\" = \"rate <= 100%\"",
            &none,
            "21:12 `checks: rate <= 100%` holds for every possible value (0% to 100%): it can never fail",
        );
        check(
            "\"auth.success\" = \"rate > 100%\"",
            &none,
            "21:18 `auth.success: rate > 100%` holds for no possible value (0% to 100%): it can never pass",
        );
        check(
            "\"http.requests\" = \"count >= 0\"",
            &none,
            "21:19 `http.requests: count >= 0` holds for every possible value (0 and up): it can never fail",
        );
        check(
            "\"http.duration\" = \"p(95) < 0ms\"",
            &none,
            "21:19 `http.duration: p(95) < 0ms` holds for no possible value (0 and up): it can never pass",
        );
        check(
            "\"http.failed\" = \"rate == 0\"\n\"http.duration\" = \"p(95) > 0ms\"\n\"http.requests\" = \"rate > 1000\"",
            &none,
            "http.failed: rate == 0, http.duration: p(95) > 0ms, http.requests: rate > 1000",
        );
    }

    #[test]
    fn every_suite_fails_on_a_stall_unless_it_says_otherwise() {
        assert_eq!(sources("")[0], STALL_DEFAULT);
        assert_eq!(
            sources("\"http.longest-stall\" = \"max < 30s\"")[0],
            "http.longest-stall: max < 30s"
        );
        assert!(!sources("\"http.longest-stall\" = []").contains(&STALL_DEFAULT.to_owned()));
    }

    #[test]
    fn aggregates_fit_their_metric() {
        let none = PlanOptions::default();
        check(
            "\"http.failed\" = \"p(95) < 1s\"",
            &none,
            "21:17 `http.failed` has no `p(N)`",
        );
        check(
            "\"http.duration\" = \"rate > 99%\"",
            &none,
            "21:19 `http.duration` has no `rate`",
        );
    }

    #[test]
    fn extra_metrics_are_single_values_without_filters() {
        let options = PlanOptions {
            extra_metrics: ["pgbouncer.cl_waiting.max".to_owned()].into(),
            ..PlanOptions::default()
        };
        let plan = check(
            "\"pgbouncer.cl_waiting.max\" = \"max == 0\"",
            &options,
            "pgbouncer.cl_waiting.max: max == 0",
        )
        .unwrap();
        assert_eq!(
            plan.thresholds[0].selector.metric,
            Metric::Extra("pgbouncer.cl_waiting.max".into())
        );
        check(
            "\"pgbouncer.cl_waiting.max{name:/a/}\" = \"max == 0\"",
            &options,
            "21:1 `pgbouncer.cl_waiting.max` takes no filters",
        );
    }

    #[test]
    fn a_threshold_on_an_excluded_task_is_skipped_and_noted() {
        let options = PlanOptions {
            exclude_tags: vec!["slow".into()],
            ..PlanOptions::default()
        };
        let plan = check(
            "\"http.duration{name:/slow/}\" = \"p(95) < 1s\"\n\"http.duration{name:/a/}\" = \"p(95) < 1s\"",
            &options,
            "http.duration{name:/a/}: p(95) < 1s",
        )
        .unwrap();
        assert_eq!(
            plan.selection.skipped_thresholds,
            ["http.duration{name:/slow/} (its task is excluded)"]
        );
    }
}
