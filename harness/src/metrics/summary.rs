//! The summary of a run: what the verdict judges and every report writes.
//! It carries the full histograms in a mergeable, serialisable form, so
//! summaries from several machines or runs can be combined exactly.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::{Counters, EndpointStats, FailureRecord, Interval, browser, new_histogram};

/// What the plan says about an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct EndpointMeta {
    /// The grouping key, e.g. `/detail_project/[id]/rekap-rab/`.
    pub name: String,
    pub method: String,
    pub tags: Vec<String>,
}

/// The tag the plan gives the login flow's endpoints (the login form and the
/// login itself); thresholds may select them with `tag:auth`.
pub const AUTH_TAG: &str = "auth";

impl EndpointMeta {
    /// Whether it belongs to the login flow (the form or the login), not to a task.
    pub fn is_auth_flow(&self) -> bool {
        self.tags.iter().any(|t| t == AUTH_TAG)
    }

    /// Whether it is the login itself: the POST of the login flow.
    pub fn is_login(&self) -> bool {
        self.method == "POST" && self.is_auth_flow()
    }
}

pub use super::histogram::{HistogramData, PackedHistogram};

/// Latency figures in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Latency {
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p66: f64,
    pub p75: f64,
    pub p80: f64,
    pub p90: f64,
    pub p95: f64,
    pub p98: f64,
    pub p99: f64,
    pub p999: f64,
    pub p9999: f64,
    pub max: f64,
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

impl Latency {
    pub fn of(histogram: &Histogram<u64>) -> Latency {
        if histogram.is_empty() {
            return Latency::default();
        }
        let q = |quantile: f64| ms(histogram.value_at_quantile(quantile));
        Latency {
            min: ms(histogram.min()),
            mean: histogram.mean() / 1000.0,
            p50: q(0.50),
            p66: q(0.66),
            p75: q(0.75),
            p80: q(0.80),
            p90: q(0.90),
            p95: q(0.95),
            p98: q(0.98),
            p99: q(0.99),
            p999: q(0.999),
            p9999: q(0.9999),
            max: ms(histogram.max()),
        }
    }
}

/// One endpoint over a phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct EndpointSummary {
    #[serde(flatten)]
    pub meta: EndpointMeta,
    pub requests: u64,
    pub failures: u64,
    pub conflicts: u64,
    pub bytes: u64,
    pub requests_per_second: f64,
    pub failures_per_second: f64,
    pub latency_ms: Latency,
    pub failure_kinds: Vec<FailureRecord>,
    /// The slowest requests that carried a W3C trace id (`[target]
    /// trace-context`), slowest first: what to look up in the
    /// application's traces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slowest: Vec<TracedRequest>,
    /// Base64 of HdrHistogram's V2 compressed encoding, in microseconds.
    #[schemars(with = "String")]
    pub histogram: HistogramData,
}

/// A request and the trace id it carried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TracedRequest {
    pub latency_ms: f64,
    /// 32 hex digits, as in its `traceparent` header.
    pub trace_id: String,
    /// When it completed, in seconds since the load began.
    pub at_seconds: f64,
}

impl EndpointSummary {
    pub fn of(meta: EndpointMeta, stats: &EndpointStats, seconds: f64) -> EndpointSummary {
        let per_second = |n: u64| {
            if seconds > 0.0 {
                n as f64 / seconds
            } else {
                0.0
            }
        };
        let mut failure_kinds = stats.failure_kinds.clone();
        failure_kinds.sort_by(|a, b| b.count.cmp(&a.count).then(a.kind.cmp(&b.kind)));
        EndpointSummary {
            meta,
            requests: stats.requests,
            failures: stats.failures,
            conflicts: stats.conflicts,
            bytes: stats.bytes,
            requests_per_second: per_second(stats.requests),
            failures_per_second: per_second(stats.failures),
            latency_ms: Latency::of(&stats.latency),
            failure_kinds,
            slowest: stats
                .slowest
                .iter()
                .map(|slow| TracedRequest {
                    latency_ms: slow.micros as f64 / 1000.0,
                    trace_id: super::trace_hex(slow.trace_id),
                    at_seconds: slow.at_ms as f64 / 1000.0,
                })
                .collect(),
            histogram: HistogramData(stats.latency.clone()),
        }
    }

    /// Failures as a fraction of requests (0 when nothing ran).
    pub fn failure_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.failures as f64 / self.requests as f64
        }
    }

    pub fn average_bytes(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.bytes as f64 / self.requests as f64
        }
    }
}

/// One failure kind on one endpoint, for the failures table and Locust's
/// `_failures.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FailureSummary {
    pub endpoint: String,
    pub method: String,
    #[serde(flatten)]
    pub record: FailureRecord,
}

/// One endpoint during one second.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct EndpointSecond {
    pub requests: u64,
    pub failures: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// The second's latencies, for the gate's uncertainty estimates (kept
    /// in memory and in a run's `figures.json`, not in `result.json`).
    #[serde(skip)]
    #[schemars(skip)]
    pub histogram: Option<PackedHistogram>,
}

/// Equal when what `result.json` keeps is equal: the packed histogram is
/// the gate's working copy, not part of the result.
impl PartialEq for EndpointSecond {
    fn eq(&self, other: &Self) -> bool {
        let EndpointSecond {
            requests,
            failures,
            p50_ms,
            p95_ms,
            p99_ms,
            max_ms,
            histogram: _,
        } = self;
        (*requests, *failures, *p50_ms, *p95_ms, *p99_ms, *max_ms)
            == (
                other.requests,
                other.failures,
                other.p50_ms,
                other.p95_ms,
                other.p99_ms,
                other.max_ms,
            )
    }
}

/// Locust's percentile columns: 50, 66, 75, 80, 90, 95, 98, 99, 99.9, 99.99, 100.
pub const LOCUST_QUANTILES: [f64; 11] = [
    0.50, 0.66, 0.75, 0.80, 0.90, 0.95, 0.98, 0.99, 0.999, 0.9999, 1.0,
];

/// Everything up to the end of a second (Locust's "Total …" columns).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RunningTotals {
    pub requests: u64,
    pub failures: u64,
    pub median_ms: f64,
    pub mean_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    pub average_bytes: f64,
}

/// One second of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SecondPoint {
    pub second: u64,
    pub warm_up: bool,
    pub users: u64,
    pub requests: u64,
    pub failures: u64,
    /// All endpoints in this second, at [`LOCUST_QUANTILES`].
    pub percentiles_ms: Vec<f64>,
    pub totals: RunningTotals,
    /// In the order of [`RunSummary::endpoints`].
    pub endpoints: Vec<EndpointSecond>,
    /// Requests in flight at the end of the second.
    #[serde(default)]
    pub in_flight: u64,
    /// How long the oldest of them had waited.
    #[serde(default)]
    pub oldest_in_flight_ms: f64,
    /// Requests were in flight and none completed: users waited on a
    /// system that answered nothing.
    #[serde(default)]
    pub stalled: bool,
}

impl SecondPoint {
    pub(crate) fn from_interval(
        second: u64,
        gauges: super::Gauges,
        interval: &Interval,
        running: &EndpointStats,
    ) -> SecondPoint {
        let mut all = new_histogram();
        let mut endpoints = Vec::with_capacity(interval.endpoints.len());
        for stats in &interval.endpoints {
            all.add(&stats.latency).expect("same bounds");
            endpoints.push(EndpointSecond {
                requests: stats.requests,
                failures: stats.failures,
                p50_ms: quantile_ms(&stats.latency, 0.5),
                p95_ms: quantile_ms(&stats.latency, 0.95),
                p99_ms: quantile_ms(&stats.latency, 0.99),
                max_ms: if stats.latency.is_empty() {
                    0.0
                } else {
                    ms(stats.latency.max())
                },
                histogram: Some(PackedHistogram::pack(&stats.latency)),
            });
        }
        let latency = &running.latency;
        let requests = endpoints.iter().map(|e| e.requests).sum();
        SecondPoint {
            second,
            warm_up: interval.phase == super::Phase::WarmUp,
            users: gauges.users,
            in_flight: gauges.in_flight,
            oldest_in_flight_ms: gauges.oldest_in_flight_ms as f64,
            stalled: gauges.in_flight > 0 && requests == 0,
            requests,
            failures: endpoints.iter().map(|e| e.failures).sum(),
            percentiles_ms: LOCUST_QUANTILES
                .iter()
                .map(|q| quantile_ms(&all, *q))
                .collect(),
            totals: RunningTotals {
                requests: running.requests,
                failures: running.failures,
                median_ms: quantile_ms(latency, 0.5),
                mean_ms: if latency.is_empty() {
                    0.0
                } else {
                    latency.mean() / 1000.0
                },
                min_ms: if latency.is_empty() {
                    0.0
                } else {
                    ms(latency.min())
                },
                max_ms: if latency.is_empty() {
                    0.0
                } else {
                    ms(latency.max())
                },
                average_bytes: if running.requests == 0 {
                    0.0
                } else {
                    running.bytes as f64 / running.requests as f64
                },
            },
            endpoints,
        }
    }

    /// This second's p50, p95 and p99 over all endpoints.
    pub fn p50_ms(&self) -> f64 {
        self.percentiles_ms[0]
    }

    pub fn p95_ms(&self) -> f64 {
        self.percentiles_ms[5]
    }

    pub fn p99_ms(&self) -> f64 {
        self.percentiles_ms[7]
    }

    pub fn max_ms(&self) -> f64 {
        self.percentiles_ms[10]
    }
}

fn quantile_ms(histogram: &Histogram<u64>, quantile: f64) -> f64 {
    if histogram.is_empty() {
        0.0
    } else {
        ms(histogram.value_at_quantile(quantile))
    }
}

/// Which tasks ran and which the tag filters left out — what ran is reported.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TaskSelection {
    pub included: Vec<String>,
    /// Task name and why it was left out.
    pub excluded: Vec<(String, String)>,
    /// Thresholds not judged because their task was left out.
    #[serde(default)]
    pub skipped_thresholds: Vec<String>,
}

/// Everything measured in a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RunSummary {
    pub suite: String,
    pub profile: String,
    pub target: String,
    /// RFC 3339.
    pub started_at: String,
    pub warm_up_seconds: f64,
    /// The measured part of the run (after warm-up).
    pub measured_seconds: f64,
    pub max_users: u64,
    pub selection: TaskSelection,
    /// Measured phase, one per endpoint in plan order (endpoints that saw no
    /// request included, so a report shows what did not run).
    pub endpoints: Vec<EndpointSummary>,
    /// All endpoints together ("Aggregated" in Locust's files).
    pub total: EndpointSummary,
    pub counters: Counters,
    pub warm_up: Vec<EndpointSummary>,
    pub warm_up_counters: Counters,
    pub series: Vec<SecondPoint>,
    /// Seconds in which nothing completed while users waited, over the
    /// whole run (warm-up included: a hang is a hang).
    #[serde(default)]
    pub stalls: Stalls,
    /// The suite's faults as they happened, on the load's clock.
    #[serde(default)]
    pub faults: Vec<FaultWindow>,
    /// Extra named values (probe peaks, query budgets, integrity, coverage)
    /// that later layers add and thresholds may use.
    #[serde(default)]
    pub extra: BTreeMap<String, f64>,
    /// What the `[[browser]]` users measured, when the suite has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub browser: Option<browser::BrowserSummary>,
}

/// One fault of the suite as it happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FaultWindow {
    /// As reports name it: `restart pgbouncer at 3s`.
    pub fault: String,
    /// What it acted on (`pgbouncer`, `target`; for a network fault, the
    /// service at the end of the target's path) …
    pub subject: String,
    /// … and how: `kill`, `pause`, `restart`, `delay`, `bandwidth`,
    /// `reset`, `blackhole`.
    pub action: String,
    /// Seconds from the start of the load when it began …
    pub from_second: f64,
    /// … and when it ended; none for a kill, which lasts to the end.
    pub to_second: Option<f64>,
    /// Why it could not be carried out (or undone), if it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl FaultWindow {
    /// Whether it acted on the target's network path rather than a process.
    pub fn is_network(&self) -> bool {
        matches!(
            self.action.as_str(),
            "delay" | "bandwidth" | "reset" | "blackhole"
        )
    }

    /// `restart pgbouncer: 3.0s–4.2s`, for notes.
    pub fn line(&self) -> String {
        let to = self
            .to_second
            .map_or("end".to_owned(), |to| format!("{to:.1}s"));
        let mut line = format!("fault: {} ran {:.1}s–{to}", self.fault, self.from_second);
        if let Some(error) = &self.error {
            line.push_str(&format!(" (failed: {error})"));
        }
        line
    }
}

/// What the per-second series says about hangs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Stalls {
    /// Seconds with requests in flight and none completed.
    pub stalled_seconds: u64,
    /// The longest run of consecutive stalled seconds …
    pub longest_seconds: u64,
    /// … and the second of the run it began in.
    pub longest_from_second: Option<u64>,
    /// The longest wait of a request seen in flight, or cut at the end.
    pub max_in_flight_age_ms: f64,
}

impl Stalls {
    /// Reads the stalls off a per-second series; `cut_longest_ms` is the
    /// longest wait of a request cut when the run ended.
    pub fn of(series: &[SecondPoint], cut_longest_ms: u64) -> Stalls {
        let mut stalls = Stalls {
            max_in_flight_age_ms: cut_longest_ms as f64,
            ..Stalls::default()
        };
        let mut current: Option<(u64, u64)> = None;
        for point in series {
            stalls.max_in_flight_age_ms =
                stalls.max_in_flight_age_ms.max(point.oldest_in_flight_ms);
            if !point.stalled {
                current = None;
                continue;
            }
            stalls.stalled_seconds += 1;
            let (from, length) = match current {
                Some((from, length)) => (from, length + 1),
                None => (point.second, 1),
            };
            current = Some((from, length));
            if length > stalls.longest_seconds {
                stalls.longest_seconds = length;
                stalls.longest_from_second = Some(from);
            }
        }
        stalls
    }
}

impl RunSummary {
    /// Builds the summary from the aggregator's phase totals.
    pub fn build(
        header: RunHeader,
        metas: &[EndpointMeta],
        warm_up: &Interval,
        measured: &Interval,
        series: Vec<SecondPoint>,
    ) -> RunSummary {
        let endpoints: Vec<EndpointSummary> = metas
            .iter()
            .zip(&measured.endpoints)
            .map(|(meta, stats)| EndpointSummary::of(meta.clone(), stats, header.measured_seconds))
            .collect();
        let warm_up_endpoints = metas
            .iter()
            .zip(&warm_up.endpoints)
            .map(|(meta, stats)| EndpointSummary::of(meta.clone(), stats, header.warm_up_seconds))
            .collect();
        let mut all = EndpointStats::new();
        for stats in &measured.endpoints {
            all.merge(stats);
        }
        let total = EndpointSummary::of(
            EndpointMeta {
                name: "Aggregated".into(),
                method: String::new(),
                tags: Vec::new(),
            },
            &all,
            header.measured_seconds,
        );
        RunSummary {
            suite: header.suite,
            profile: header.profile,
            target: header.target,
            started_at: header.started_at,
            warm_up_seconds: header.warm_up_seconds,
            measured_seconds: header.measured_seconds,
            max_users: header.max_users,
            selection: header.selection,
            endpoints,
            total,
            counters: measured.counters.clone(),
            warm_up: warm_up_endpoints,
            warm_up_counters: warm_up.counters.clone(),
            stalls: Stalls::of(
                &series,
                measured
                    .counters
                    .interrupted_longest_ms
                    .max(warm_up.counters.interrupted_longest_ms),
            ),
            faults: Vec::new(),
            series,
            extra: BTreeMap::new(),
            browser: None,
        }
    }

    /// One line on requests cut off and stalls, for every report; `None`
    /// when nothing hung.
    pub fn hang_note(&self) -> Option<String> {
        let cut = self.counters.interrupted_requests + self.warm_up_counters.interrupted_requests;
        let longest_cut = self
            .counters
            .interrupted_longest_ms
            .max(self.warm_up_counters.interrupted_longest_ms);
        let mut parts = Vec::new();
        if cut > 0 {
            parts.push(format!(
                "{cut} request(s) still in flight were cut off when the run ended (the longest had waited {:.1}s; counted as failures, their waits as lower bounds)",
                longest_cut as f64 / 1000.0
            ));
        }
        if let Some(from) = self.stalls.longest_from_second {
            parts.push(format!(
                "nothing completed for {}s from second {from} while requests waited ({} stalled second(s) in all)",
                self.stalls.longest_seconds, self.stalls.stalled_seconds
            ));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    /// Every failure record of the measured phase, most frequent first.
    pub fn failures(&self) -> Vec<FailureSummary> {
        let mut all: Vec<FailureSummary> = self
            .endpoints
            .iter()
            .flat_map(|e| {
                e.failure_kinds.iter().map(|record| FailureSummary {
                    endpoint: e.meta.name.clone(),
                    method: e.meta.method.clone(),
                    record: record.clone(),
                })
            })
            .collect();
        all.sort_by(|a, b| {
            b.record
                .count
                .cmp(&a.record.count)
                .then(a.endpoint.cmp(&b.endpoint))
        });
        all
    }

    pub fn endpoint(&self, name: &str) -> Option<&EndpointSummary> {
        self.endpoints.iter().find(|e| e.meta.name == name)
    }

    /// Merges the named endpoints (e.g. all with a tag) into one.
    pub fn combined<'a>(
        &'a self,
        endpoints: impl Iterator<Item = &'a EndpointSummary>,
    ) -> EndpointSummary {
        let mut stats = EndpointStats::new();
        for endpoint in endpoints {
            stats
                .latency
                .add(&endpoint.histogram.0)
                .expect("same bounds");
            stats.requests += endpoint.requests;
            stats.failures += endpoint.failures;
            stats.conflicts += endpoint.conflicts;
            stats.bytes += endpoint.bytes;
            for record in &endpoint.failure_kinds {
                super::merge_failure(&mut stats.failure_kinds, record);
            }
        }
        EndpointSummary::of(
            EndpointMeta {
                name: "combined".into(),
                method: String::new(),
                tags: Vec::new(),
            },
            &stats,
            self.measured_seconds,
        )
    }
}

/// What a summary says about its run besides the measurements.
#[derive(Debug, Clone, Default)]
pub struct RunHeader {
    pub suite: String,
    pub profile: String,
    pub target: String,
    pub started_at: String,
    pub warm_up_seconds: f64,
    pub measured_seconds: f64,
    pub max_users: u64,
    pub selection: TaskSelection,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_login_flow_is_known_by_its_tag_and_the_login_by_its_post() {
        let meta = |method: &str, tags: &[&str]| EndpointMeta {
            name: "x".into(),
            method: method.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
        };
        let form = meta("GET", &["auth"]);
        let login = meta("POST", &["page", "auth"]);
        let task = meta("POST", &["api"]);
        assert!(form.is_auth_flow() && !form.is_login());
        assert!(login.is_auth_flow() && login.is_login());
        assert!(!task.is_auth_flow() && !task.is_login());
    }

    #[test]
    fn histograms_round_trip_through_json() {
        let mut histogram = new_histogram();
        for v in [1, 10, 100, 1_000, 123_456, 100_000_000] {
            histogram.record(v).unwrap();
        }
        let data = HistogramData(histogram);
        let json = serde_json::to_string(&data).unwrap();
        let back: HistogramData = serde_json::from_str(&json).unwrap();
        assert_eq!(back, data);
        assert_eq!(back.0.max(), data.0.max());
    }
}
