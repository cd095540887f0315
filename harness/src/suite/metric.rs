//! Metric names, typed: what a threshold's selector measures. The engine's
//! metrics each have a variant; the named values later layers add to the
//! summary (probe peaks, integrity, correctness, coverage) are `Extra`.
//! Metrics read and print as the names suite files and reports use, so
//! serialized output keeps its strings.

use std::convert::Infallible;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A metric a threshold may judge.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    /// SQL statements per request of one task, measured alone before the load.
    QueriesPerRequest,
    HttpDuration,
    HttpFailed,
    /// Requests of tasks that succeeded: a run where none did never passes.
    HttpSucceeded,
    HttpRequests,
    HttpConflicts,
    AuthSuccess,
    AuthDuration,
    /// Failures by kind (`failures{kind:timeout}`).
    Failures,
    Checks,
    IterationsDropped,
    IterationsCompleted,
    /// Requests of tasks, logins aside: the verdict every run gets.
    TasksExecuted,
    /// Seconds with requests in flight and none completed.
    HttpStalledSeconds,
    /// The longest run of such seconds.
    HttpLongestStall,
    /// The longest any request was seen waiting, cut at the end included.
    HttpInflightAge,
    /// The longest time from the end of a fault until throughput and error
    /// rate were back in the band they had before it.
    RecoveryTime,
    /// Of real browsers' page views (`{page:…}`): time to the document's
    /// first byte, DOMContentLoaded, the load event, Largest Contentful
    /// Paint, total blocking time (each long task's time beyond 50 ms) …
    BrowserTtfb,
    BrowserDcl,
    BrowserLoad,
    BrowserLcp,
    BrowserTbt,
    /// … the requests a page view made and the bytes they moved …
    BrowserRequests,
    BrowserBytes,
    /// … and the page views that failed (not ready in time, an error page).
    BrowserFailed,
    /// A named value of the summary's `extra` (`pgbouncer.cl_waiting.max`,
    /// `integrity.lost`…). Never holds the name of another variant: build
    /// it with `parse`.
    Extra(String),
}

impl Metric {
    /// Metrics thresholds may use over requests, checks and logins.
    pub const BUILTIN: [Metric; 10] = [
        Metric::QueriesPerRequest,
        Metric::HttpDuration,
        Metric::HttpFailed,
        Metric::HttpSucceeded,
        Metric::HttpRequests,
        Metric::HttpConflicts,
        Metric::AuthSuccess,
        Metric::AuthDuration,
        Metric::Failures,
        Metric::Checks,
    ];

    /// Metrics of the browsers' page views.
    pub const BROWSER: [Metric; 8] = [
        Metric::BrowserTtfb,
        Metric::BrowserDcl,
        Metric::BrowserLoad,
        Metric::BrowserLcp,
        Metric::BrowserTbt,
        Metric::BrowserRequests,
        Metric::BrowserBytes,
        Metric::BrowserFailed,
    ];

    /// The browser metrics that are times.
    pub const BROWSER_TIMES: [Metric; 5] = [
        Metric::BrowserTtfb,
        Metric::BrowserDcl,
        Metric::BrowserLoad,
        Metric::BrowserLcp,
        Metric::BrowserTbt,
    ];

    /// Metrics of the engine that are single values.
    pub const ENGINE_VALUES: [Metric; 6] = [
        Metric::IterationsDropped,
        Metric::IterationsCompleted,
        Metric::HttpStalledSeconds,
        Metric::HttpLongestStall,
        Metric::HttpInflightAge,
        Metric::RecoveryTime,
    ];

    pub fn as_str(&self) -> &str {
        match self {
            Metric::QueriesPerRequest => "queries_per_request",
            Metric::HttpDuration => "http.duration",
            Metric::HttpFailed => "http.failed",
            Metric::HttpSucceeded => "http.succeeded",
            Metric::HttpRequests => "http.requests",
            Metric::HttpConflicts => "http.conflicts",
            Metric::AuthSuccess => "auth.success",
            Metric::AuthDuration => "auth.duration",
            Metric::Failures => "failures",
            Metric::Checks => "checks",
            Metric::IterationsDropped => "iterations.dropped",
            Metric::IterationsCompleted => "iterations.completed",
            Metric::TasksExecuted => "tasks.executed",
            Metric::HttpStalledSeconds => "http.stalled-seconds",
            Metric::HttpLongestStall => "http.longest-stall",
            Metric::HttpInflightAge => "http.inflight-age",
            Metric::RecoveryTime => "recovery.time",
            Metric::BrowserTtfb => "browser.ttfb",
            Metric::BrowserDcl => "browser.dcl",
            Metric::BrowserLoad => "browser.load",
            Metric::BrowserLcp => "browser.lcp",
            Metric::BrowserTbt => "browser.tbt",
            Metric::BrowserRequests => "browser.requests",
            Metric::BrowserBytes => "browser.bytes",
            Metric::BrowserFailed => "browser.failed",
            Metric::Extra(name) => name,
        }
    }

    /// Whether it is a latency, judged by percentiles of a histogram.
    pub fn is_duration(&self) -> bool {
        matches!(self, Metric::HttpDuration | Metric::AuthDuration)
            || Metric::BROWSER_TIMES.contains(self)
    }

    /// Whether it is measured by the `[[browser]]` users.
    pub fn is_browser(&self) -> bool {
        Metric::BROWSER.contains(self)
    }

    /// The aggregates a threshold may compute from it (`p(N)` for any percentile).
    pub fn aggregates(&self) -> &'static [&'static str] {
        match self {
            Metric::HttpDuration
            | Metric::AuthDuration
            | Metric::BrowserTtfb
            | Metric::BrowserDcl
            | Metric::BrowserLoad
            | Metric::BrowserLcp
            | Metric::BrowserTbt
            | Metric::BrowserRequests
            | Metric::BrowserBytes => &["p(N)", "avg", "min", "max", "med", "count"],
            Metric::BrowserFailed => &["rate", "count"],
            Metric::HttpFailed
            | Metric::HttpSucceeded
            | Metric::AuthSuccess
            | Metric::Checks
            | Metric::Failures
            | Metric::HttpConflicts => &["rate", "count"],
            Metric::HttpRequests => &["count", "rate"],
            Metric::HttpLongestStall | Metric::HttpInflightAge | Metric::RecoveryTime => {
                &["max", "value"]
            }
            Metric::QueriesPerRequest
            | Metric::HttpStalledSeconds
            | Metric::IterationsDropped
            | Metric::IterationsCompleted
            | Metric::TasksExecuted
            | Metric::Extra(_) => &["value"],
        }
    }

    /// The key of the summary's `extra` holding `queries_per_request` of a task.
    pub fn queries_per_request_key(task: &str) -> String {
        format!("{}:{task}", Metric::QueriesPerRequest)
    }
}

impl std::str::FromStr for Metric {
    type Err = Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        // Every metric with a name of its own: thresholds' metrics, the
        // engine's single values, and the verdict every run gets.
        Ok(Metric::BUILTIN
            .into_iter()
            .chain(Metric::BROWSER)
            .chain(Metric::ENGINE_VALUES)
            .chain([Metric::TasksExecuted])
            .find(|metric| metric.as_str() == text)
            .unwrap_or_else(|| Metric::Extra(text.to_owned())))
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Metric {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Metric {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(text
            .parse()
            .unwrap_or_else(|never: Infallible| match never {}))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[track_caller]
    fn check(text: &str, expect: Metric) {
        let metric: Metric = text.parse().unwrap();
        assert_eq!(metric, expect);
        assert_eq!(metric.to_string(), text);
        assert_eq!(
            serde_json::to_string(&metric).unwrap(),
            format!("\"{text}\"")
        );
        let back: Metric = serde_json::from_str(&format!("\"{text}\"")).unwrap();
        assert_eq!(back, expect);
    }

    #[test]
    fn metrics_read_and_print_as_suite_files_write_them() {
        check("queries_per_request", Metric::QueriesPerRequest);
        check("http.duration", Metric::HttpDuration);
        check("http.failed", Metric::HttpFailed);
        check("http.requests", Metric::HttpRequests);
        check("http.conflicts", Metric::HttpConflicts);
        check("auth.success", Metric::AuthSuccess);
        check("auth.duration", Metric::AuthDuration);
        check("failures", Metric::Failures);
        check("checks", Metric::Checks);
        check("iterations.dropped", Metric::IterationsDropped);
        check("iterations.completed", Metric::IterationsCompleted);
        check("tasks.executed", Metric::TasksExecuted);
        check(
            "pgbouncer.cl_waiting.max",
            Metric::Extra("pgbouncer.cl_waiting.max".into()),
        );
    }

    #[test]
    fn every_named_metric_parses_back_to_itself_and_no_name_is_taken_twice() {
        let named: Vec<Metric> = Metric::BUILTIN
            .into_iter()
            .chain(Metric::BROWSER)
            .chain(Metric::ENGINE_VALUES)
            .chain([Metric::TasksExecuted])
            .collect();
        for metric in &named {
            assert_eq!(&metric.as_str().parse::<Metric>().unwrap(), metric);
        }
        let mut names: Vec<&str> = named.iter().map(Metric::as_str).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), named.len());
        check("http.longest-stall", Metric::HttpLongestStall);
        check("http.stalled-seconds", Metric::HttpStalledSeconds);
        check("http.inflight-age", Metric::HttpInflightAge);
        check("browser.lcp", Metric::BrowserLcp);
        check("browser.failed", Metric::BrowserFailed);
    }

    #[test]
    fn queries_per_request_keys_name_the_task() {
        assert_eq!(
            Metric::queries_per_request_key("/dashboard/"),
            "queries_per_request:/dashboard/"
        );
    }

    proptest! {
        #[test]
        fn any_name_round_trips(name in "[a-z_.:]{1,24}") {
            let metric: Metric = name.parse().unwrap();
            prop_assert_eq!(metric.to_string(), name.clone());
            let again: Metric = metric.to_string().parse().unwrap();
            prop_assert_eq!(again, metric);
        }
    }
}
