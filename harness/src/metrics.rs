//! Measurement: each load worker records into its own [`Recorder`] (HDR
//! histograms per endpoint, counters, failures by kind) without allocating,
//! sending a message or storing a sample per request. Once a second a worker
//! hands its interval over ([`Recorder::take_interval`]); the [`Aggregator`]
//! merges intervals into totals and a per-second time series, and finally
//! into a [`RunSummary`].
//!
//! Architecture invariant: this module does no I/O.

pub mod browser;
pub mod histogram;
pub mod kept;
pub mod phases;
pub mod summary;

use std::sync::Arc;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

pub use self::summary::{EndpointSummary, FailureSummary, RunSummary, SecondPoint};

/// Latencies are recorded in microseconds, from 1 µs to 1 h, at 3 significant digits.
pub const LOWEST_MICROS: u64 = 1;
pub const HIGHEST_MICROS: u64 = 3_600_000_000;
pub const SIGNIFICANT_DIGITS: u8 = 3;

/// An empty latency histogram with the project's bounds.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(LOWEST_MICROS, HIGHEST_MICROS, SIGNIFICANT_DIGITS)
        .expect("valid bounds")
}

/// Index of an endpoint in the plan's endpoint table.
pub type EndpointId = usize;

/// Whether a request belongs to the warm-up (reported apart, kept out of the
/// verdict) or to the measured part of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    WarmUp,
    Measured,
}

/// Why a request failed.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "detail")]
pub enum FailureKind {
    /// An unexpected HTTP status.
    Status(u16),
    ConnectionRefused,
    ConnectionReset,
    /// No complete answer within the client timeout.
    Timeout,
    /// The status was expected but a content check failed.
    CheckFailed,
    /// The login page came back where a logged-in page was expected (or a
    /// login attempt answered 200 with the form again).
    LoginPageReturned,
    /// CSRF token rejected (403 on a form or API write).
    CsrfRejected,
    /// A failure marker the suite names (e.g. `rate-limited`).
    Named(Arc<str>),
    /// Any other transport error.
    Transport,
    /// Still in flight when the run ended (or its graceful stop ran out):
    /// its latency is the time it had waited, a lower bound.
    Interrupted,
}

impl FailureKind {
    /// The kind's stable name, as thresholds and reports use it.
    pub fn name(&self) -> String {
        match self {
            FailureKind::Status(code) => format!("http-{code}"),
            FailureKind::ConnectionRefused => "connection-refused".into(),
            FailureKind::ConnectionReset => "connection-reset".into(),
            FailureKind::Timeout => "timeout".into(),
            FailureKind::CheckFailed => "check-failed".into(),
            FailureKind::LoginPageReturned => "login-page-returned".into(),
            FailureKind::CsrfRejected => "csrf-rejected".into(),
            FailureKind::Named(name) => name.to_string(),
            FailureKind::Transport => "transport".into(),
            FailureKind::Interrupted => "interrupted".into(),
        }
    }
}

/// One kind of failure on one endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FailureRecord {
    pub kind: FailureKind,
    pub count: u64,
    /// Milliseconds since the start of the run.
    pub first_seen_ms: u64,
    pub last_seen_ms: u64,
    /// The first occurrence's message.
    pub sample: String,
    /// The W3C trace id the first occurrence carried (`[target]
    /// trace-context`), to find it in the application's traces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// What one endpoint saw during an interval (or a whole phase).
#[derive(Debug, Clone)]
pub struct EndpointStats {
    /// Every completed request, successful or not (as Locust counts them).
    pub latency: Histogram<u64>,
    pub requests: u64,
    pub failures: u64,
    pub bytes: u64,
    /// Requests answered with an expected conflict status (e.g. 409 on a
    /// write): neither success of the write nor failure of the service.
    pub conflicts: u64,
    pub failure_kinds: Vec<FailureRecord>,
    /// The slowest requests that carried a trace id, slowest first, at most
    /// [`SLOWEST_KEPT`] (empty without `[target] trace-context`).
    pub slowest: Vec<SlowRequest>,
}

/// How many of an endpoint's slowest traced requests are kept.
pub const SLOWEST_KEPT: usize = 5;

/// One slow request and the trace id it carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SlowRequest {
    pub micros: u64,
    pub trace_id: u128,
    /// Milliseconds since the run began.
    pub at_ms: u64,
}

/// The 32 lower-case hex digits of a W3C trace id.
pub fn trace_hex(trace_id: u128) -> String {
    format!("{trace_id:032x}")
}

fn keep_slowest(slowest: &mut Vec<SlowRequest>, request: SlowRequest) {
    if slowest.len() == SLOWEST_KEPT && slowest.last().is_some_and(|s| s.micros >= request.micros) {
        return;
    }
    let at = slowest.partition_point(|s| s.micros >= request.micros);
    slowest.insert(at, request);
    slowest.truncate(SLOWEST_KEPT);
}

impl EndpointStats {
    pub fn new() -> EndpointStats {
        EndpointStats {
            latency: new_histogram(),
            requests: 0,
            failures: 0,
            bytes: 0,
            conflicts: 0,
            failure_kinds: Vec::new(),
            slowest: Vec::new(),
        }
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &EndpointStats) {
        self.latency.add(&other.latency).expect("same bounds");
        self.requests += other.requests;
        self.failures += other.failures;
        self.bytes += other.bytes;
        self.conflicts += other.conflicts;
        for record in &other.failure_kinds {
            merge_failure(&mut self.failure_kinds, record);
        }
        for request in &other.slowest {
            keep_slowest(&mut self.slowest, *request);
        }
    }

    fn reset(&mut self) {
        self.latency.reset();
        self.requests = 0;
        self.failures = 0;
        self.bytes = 0;
        self.conflicts = 0;
        self.failure_kinds.clear();
        self.slowest.clear();
    }
}

impl Default for EndpointStats {
    fn default() -> Self {
        EndpointStats::new()
    }
}

fn merge_failure(into: &mut Vec<FailureRecord>, record: &FailureRecord) {
    match into.iter_mut().find(|r| r.kind == record.kind) {
        Some(existing) => {
            if record.first_seen_ms < existing.first_seen_ms {
                existing.first_seen_ms = record.first_seen_ms;
                existing.sample.clone_from(&record.sample);
                existing.trace_id.clone_from(&record.trace_id);
            }
            existing.last_seen_ms = existing.last_seen_ms.max(record.last_seen_ms);
            existing.count += record.count;
        }
        None => into.push(record.clone()),
    }
}

/// Counters that are not per endpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Counters {
    pub login_attempts: u64,
    pub login_successes: u64,
    pub iterations: u64,
    pub dropped_iterations: u64,
    pub checks_passed: u64,
    pub checks_failed: u64,
    /// Iterations cut off by the end of the run's graceful stop.
    pub interrupted: u64,
    /// Requests still in flight when they were cut off (failures of kind
    /// `interrupted` or `timeout`), and the longest any of them had waited.
    #[serde(default)]
    pub interrupted_requests: u64,
    #[serde(default)]
    pub interrupted_longest_ms: u64,
    /// Tasks not sent because a template variable had no value.
    pub skipped: u64,
}

impl Counters {
    pub fn merge(&mut self, other: &Counters) {
        self.login_attempts += other.login_attempts;
        self.login_successes += other.login_successes;
        self.iterations += other.iterations;
        self.dropped_iterations += other.dropped_iterations;
        self.checks_passed += other.checks_passed;
        self.checks_failed += other.checks_failed;
        self.interrupted += other.interrupted;
        self.interrupted_requests += other.interrupted_requests;
        self.interrupted_longest_ms = self
            .interrupted_longest_ms
            .max(other.interrupted_longest_ms);
        self.skipped += other.skipped;
    }
}

/// A worker's measurements for one interval, per phase.
#[derive(Debug, Clone)]
pub struct Interval {
    pub phase: Phase,
    pub endpoints: Vec<EndpointStats>,
    pub counters: Counters,
}

impl Interval {
    pub fn new(phase: Phase, n_endpoints: usize) -> Interval {
        Interval {
            phase,
            endpoints: (0..n_endpoints).map(|_| EndpointStats::new()).collect(),
            counters: Counters::default(),
        }
    }

    pub fn merge(&mut self, other: &Interval) {
        for (mine, theirs) in self.endpoints.iter_mut().zip(&other.endpoints) {
            mine.merge(theirs);
        }
        self.counters.merge(&other.counters);
    }

    fn reset(&mut self) {
        for endpoint in &mut self.endpoints {
            endpoint.reset();
        }
        self.counters = Counters::default();
    }
}

/// The outcome of one request, as the engine reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome<'a> {
    Success,
    /// An expected conflict (e.g. 409 on a write with a stale version).
    Conflict,
    Failure {
        kind: &'a FailureKind,
        message: &'a str,
    },
}

/// What a worker's virtual users were doing at the end of a second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gauges {
    pub users: u64,
    /// Requests sent and not yet answered.
    pub in_flight: u64,
    /// How long the oldest of them had waited, in milliseconds.
    pub oldest_in_flight_ms: u64,
}

impl Gauges {
    /// Several workers' gauges of one second together.
    pub fn add(&mut self, other: &Gauges) {
        self.users += other.users;
        self.in_flight += other.in_flight;
        self.oldest_in_flight_ms = self.oldest_in_flight_ms.max(other.oldest_in_flight_ms);
    }
}

/// A request the recorder knows is in flight, by its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlightId(usize);

/// One worker's recorder. Recording a request costs a histogram increment
/// and a few counter updates; only the first failure of a kind on an endpoint
/// in an interval allocates (its sample message). Requests in flight are
/// slots of a table reused as they land, so they cost no allocation either
/// once the table has grown to the worker's concurrency.
#[derive(Debug)]
pub struct Recorder {
    current: Interval,
    /// A spare interval, swapped in by [`Recorder::take_interval`].
    spare: Option<Interval>,
    /// When each request in flight was sent; `None` for a free slot.
    in_flight: Vec<Option<std::time::Instant>>,
    free_slots: Vec<usize>,
    /// The trace id of the request [`Recorder::record`] records next.
    trace: Option<u128>,
}

impl Recorder {
    pub fn new(n_endpoints: usize) -> Recorder {
        Recorder {
            current: Interval::new(Phase::WarmUp, n_endpoints),
            spare: None,
            in_flight: Vec::new(),
            free_slots: Vec::new(),
            trace: None,
        }
    }

    /// The next request recorded carried this trace id: it is kept if the
    /// request is among its endpoint's slowest, or its kind's first failure.
    pub fn traced(&mut self, trace_id: u128) -> &mut Recorder {
        self.trace = Some(trace_id);
        self
    }

    /// Notes a request sent at `started`; [`Recorder::land`] it when it ends.
    pub fn take_off(&mut self, started: std::time::Instant) -> FlightId {
        match self.free_slots.pop() {
            Some(slot) => {
                self.in_flight[slot] = Some(started);
                FlightId(slot)
            }
            None => {
                self.in_flight.push(Some(started));
                FlightId(self.in_flight.len() - 1)
            }
        }
    }

    /// The request is no longer in flight (answered, failed or cut).
    pub fn land(&mut self, flight: FlightId) {
        if let Some(slot) = self.in_flight.get_mut(flight.0)
            && slot.take().is_some()
        {
            self.free_slots.push(flight.0);
        }
    }

    /// How many requests are in flight at `now`, and the oldest one's wait.
    pub fn in_flight_at(&self, now: std::time::Instant) -> (u64, std::time::Duration) {
        let mut count = 0;
        let mut oldest = std::time::Duration::ZERO;
        for started in self.in_flight.iter().flatten() {
            count += 1;
            oldest = oldest.max(now.saturating_duration_since(*started));
        }
        (count, oldest)
    }

    pub fn set_phase(&mut self, phase: Phase) {
        self.current.phase = phase;
    }

    pub fn phase(&self) -> Phase {
        self.current.phase
    }

    /// Records a completed request. `at_ms` is the time since the run began.
    pub fn record(
        &mut self,
        endpoint: EndpointId,
        latency_micros: u64,
        bytes: u64,
        outcome: Outcome<'_>,
        at_ms: u64,
    ) {
        let stats = &mut self.current.endpoints[endpoint];
        let trace = self.trace.take();
        if let Some(trace_id) = trace {
            keep_slowest(
                &mut stats.slowest,
                SlowRequest {
                    micros: latency_micros,
                    trace_id,
                    at_ms,
                },
            );
        }
        stats
            .latency
            .saturating_record(latency_micros.max(LOWEST_MICROS));
        stats.requests += 1;
        stats.bytes += bytes;
        match outcome {
            Outcome::Success => {}
            Outcome::Conflict => stats.conflicts += 1,
            Outcome::Failure { kind, message } => {
                stats.failures += 1;
                match stats.failure_kinds.iter_mut().find(|r| &r.kind == kind) {
                    Some(record) => {
                        record.count += 1;
                        record.last_seen_ms = at_ms;
                    }
                    None => stats.failure_kinds.push(FailureRecord {
                        kind: kind.clone(),
                        count: 1,
                        first_seen_ms: at_ms,
                        last_seen_ms: at_ms,
                        sample: message.chars().take(300).collect(),
                        trace_id: trace.map(trace_hex),
                    }),
                }
            }
        }
    }

    pub fn counters(&mut self) -> &mut Counters {
        &mut self.current.counters
    }

    /// Hands over the interval recorded so far and starts a fresh one,
    /// reusing a returned interval's memory where possible.
    pub fn take_interval(&mut self) -> Interval {
        let n = self.current.endpoints.len();
        let phase = self.current.phase;
        let mut fresh = self.spare.take().unwrap_or_else(|| Interval::new(phase, n));
        fresh.reset();
        fresh.phase = phase;
        std::mem::replace(&mut self.current, fresh)
    }

    /// Gives an interval's memory back for reuse.
    pub fn recycle(&mut self, interval: Interval) {
        self.spare = Some(interval);
    }
}

/// Merges workers' intervals into phase totals and a per-second series.
/// A second is reduced to a [`SecondPoint`] as soon as every worker has
/// reported it, so memory does not grow with the length of the run.
#[derive(Debug)]
pub struct Aggregator {
    n_endpoints: usize,
    workers: usize,
    warm_up: Interval,
    measured: Interval,
    pending: std::collections::BTreeMap<usize, SecondAccumulator>,
    points: Vec<SecondPoint>,
    /// Everything so far, all endpoints together, for cumulative columns.
    running: EndpointStats,
    /// Each second whole, when asked ([`Aggregator::keep_seconds`]).
    kept: Option<Vec<kept::KeptSecond>>,
}

#[derive(Debug)]
struct SecondAccumulator {
    interval: Interval,
    gauges: Gauges,
    workers_reported: usize,
}

impl Aggregator {
    pub fn new(n_endpoints: usize, workers: usize) -> Aggregator {
        Aggregator {
            n_endpoints,
            workers: workers.max(1),
            warm_up: Interval::new(Phase::WarmUp, n_endpoints),
            measured: Interval::new(Phase::Measured, n_endpoints),
            pending: std::collections::BTreeMap::new(),
            points: Vec::new(),
            running: EndpointStats::new(),
            kept: None,
        }
    }

    /// Keeps every second whole (packed), for a merge with other
    /// generators' ([`Aggregator::take_kept`]).
    pub fn keep_seconds(&mut self) {
        self.kept.get_or_insert_with(Vec::new);
    }

    /// The seconds kept so far, still kept.
    pub fn kept(&self) -> &[kept::KeptSecond] {
        self.kept.as_deref().unwrap_or_default()
    }

    /// The seconds kept so far.
    pub fn take_kept(&mut self) -> Vec<kept::KeptSecond> {
        self.kept.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Adds a worker's interval for second `second` of the run, with what
    /// its users were doing at its end. Returns how many seconds are complete.
    pub fn add(&mut self, second: usize, gauges: Gauges, interval: &Interval) -> usize {
        match interval.phase {
            Phase::WarmUp => self.warm_up.merge(interval),
            Phase::Measured => self.measured.merge(interval),
        }
        let n_endpoints = self.n_endpoints;
        let slot = self
            .pending
            .entry(second)
            .or_insert_with(|| SecondAccumulator {
                interval: Interval::new(interval.phase, n_endpoints),
                gauges: Gauges::default(),
                workers_reported: 0,
            });
        slot.interval.merge(interval);
        slot.interval.phase = interval.phase;
        slot.gauges.add(&gauges);
        slot.workers_reported += 1;
        while let Some(entry) = self.pending.first_entry() {
            if entry.get().workers_reported < self.workers {
                break;
            }
            let (second, slot) = entry.remove_entry();
            self.finalize(second, slot);
        }
        self.points.len()
    }

    fn finalize(&mut self, second: usize, slot: SecondAccumulator) {
        // Seconds without any report (none can be skipped by a worker, but
        // a late final interval may jump ahead) keep the series dense.
        while self.points.len() < second {
            let empty = Interval::new(slot.interval.phase, self.n_endpoints);
            let point = SecondPoint::from_interval(
                self.points.len() as u64,
                Gauges::default(),
                &empty,
                &self.running,
            );
            self.points.push(point);
        }
        for stats in &slot.interval.endpoints {
            self.running.merge(stats);
        }
        if let Some(kept) = &mut self.kept {
            kept.push(kept::KeptSecond::pack(
                second as u64,
                slot.gauges,
                &slot.interval,
            ));
        }
        let point =
            SecondPoint::from_interval(second as u64, slot.gauges, &slot.interval, &self.running);
        self.points.push(point);
    }

    /// Finalises seconds some worker never reported (the run's last one).
    pub fn finish(&mut self) {
        while let Some((second, slot)) = self.pending.pop_first() {
            self.finalize(second, slot);
        }
    }

    pub fn warm_up(&self) -> &Interval {
        &self.warm_up
    }

    pub fn measured(&self) -> &Interval {
        &self.measured
    }

    /// The per-second series so far.
    pub fn series(&self) -> &[SecondPoint] {
        &self.points
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn histogram_of(values: &[u64]) -> Histogram<u64> {
        let mut h = new_histogram();
        for v in values {
            h.saturating_record((*v).max(1));
        }
        h
    }

    fn merged(parts: &[&Histogram<u64>]) -> Histogram<u64> {
        let mut h = new_histogram();
        for part in parts {
            h.add(*part).unwrap();
        }
        h
    }

    fn same(a: &Histogram<u64>, b: &Histogram<u64>) -> bool {
        a.len() == b.len()
            && a.iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .eq(b
                    .iter_recorded()
                    .map(|v| (v.value_iterated_to(), v.count_at_value())))
    }

    proptest! {
        #[test]
        fn histogram_merge_is_associative_and_commutative(
            a in prop::collection::vec(1u64..10_000_000, 0..50),
            b in prop::collection::vec(1u64..10_000_000, 0..50),
            c in prop::collection::vec(1u64..10_000_000, 0..50),
        ) {
            let (a, b, c) = (histogram_of(&a), histogram_of(&b), histogram_of(&c));
            let left = merged(&[&merged(&[&a, &b]), &c]);
            let right = merged(&[&a, &merged(&[&b, &c])]);
            let swapped = merged(&[&c, &b, &a]);
            prop_assert!(same(&left, &right));
            prop_assert!(same(&left, &swapped));
        }
    }

    #[test]
    fn traced_requests_keep_the_slowest_few_and_the_first_failures_trace() {
        let mut recorder = Recorder::new(1);
        recorder.set_phase(Phase::Measured);
        for (micros, trace) in [(5_000, 1u128), (9_000, 2), (1_000, 3), (7_000, 4)] {
            recorder
                .traced(trace)
                .record(0, micros, 0, Outcome::Success, 1);
        }
        // Not traced: never among the slowest, however slow.
        recorder.record(0, 90_000, 0, Outcome::Success, 1);
        let kind = FailureKind::Status(502);
        for trace in [7u128, 8] {
            recorder.traced(trace).record(
                0,
                8_000,
                0,
                Outcome::Failure {
                    kind: &kind,
                    message: "bad gateway",
                },
                2,
            );
        }
        let mut other = Recorder::new(1);
        other.set_phase(Phase::Measured);
        other.traced(9).record(0, 20_000, 0, Outcome::Success, 3);
        let mut merged = recorder.take_interval();
        merged.merge(&other.take_interval());
        let stats = &merged.endpoints[0];
        let kept: Vec<(u64, u128)> = stats
            .slowest
            .iter()
            .map(|s| (s.micros, s.trace_id))
            .collect();
        assert_eq!(
            kept,
            [(20_000, 9), (9_000, 2), (8_000, 7), (8_000, 8), (7_000, 4)]
        );
        assert_eq!(
            stats.failure_kinds[0].trace_id.as_deref(),
            Some("00000000000000000000000000000007")
        );
    }

    #[test]
    fn recorder_counts_failures_by_kind_and_keeps_the_first_message() {
        let mut recorder = Recorder::new(2);
        recorder.set_phase(Phase::Measured);
        let kind = FailureKind::Status(500);
        recorder.record(0, 1_000, 10, Outcome::Success, 5);
        recorder.record(
            0,
            2_000,
            10,
            Outcome::Failure {
                kind: &kind,
                message: "first",
            },
            7,
        );
        recorder.record(
            0,
            3_000,
            10,
            Outcome::Failure {
                kind: &kind,
                message: "second",
            },
            9,
        );
        recorder.record(1, 3_000, 10, Outcome::Conflict, 9);
        let interval = recorder.take_interval();
        assert_eq!(interval.endpoints[0].requests, 3);
        assert_eq!(interval.endpoints[0].failures, 2);
        assert_eq!(interval.endpoints[1].conflicts, 1);
        let record = &interval.endpoints[0].failure_kinds[0];
        assert_eq!(
            (
                record.count,
                record.first_seen_ms,
                record.last_seen_ms,
                record.sample.as_str()
            ),
            (2, 7, 9, "first")
        );
        let next = recorder.take_interval();
        assert_eq!(next.endpoints[0].requests, 0);
        assert_eq!(next.phase, Phase::Measured);
    }
}
