//! Capacity: the highest arrival rate at which every threshold of a suite
//! holds, and what breaks first above it.
//!
//! One run, one stack, one target: the engine follows a [`Staircase`] of
//! constant-rate steps (open model, latency from the scheduled start), and
//! the [`Controller`], called once a second beside the engine, judges each
//! step on its own seconds when it ends ([`step::judge`]: every threshold
//! with an interval from resampling the step's seconds) and appends the
//! next one ([`search::Search`]: up by `growth` until a step fails, then
//! bisection). After the run, [`report`] turns the steps into the capacity
//! with its interval and names the cause at the first step that failed,
//! from the probes in that step's window ([`cause`]).

pub mod cause;
pub mod search;
pub mod step;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use self::search::{Ended, Next, Search};
use self::step::{StepEndpoint, StepThreshold, Verdict};
use crate::metrics::Aggregator;
use crate::metrics::summary::EndpointMeta;
use crate::suite::plan::{CapacityPlan, Stair, Staircase, ThresholdPlan};

/// One step of the search, judged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StepReport {
    /// The arrival rate offered, in iterations a second.
    pub rate: f64,
    /// Requests a second that completed over the judged seconds.
    pub achieved: f64,
    /// The step's seconds from the run's start: `[start, end)`, the first
    /// `settle` of them not judged.
    pub start_second: u64,
    pub end_second: u64,
    pub judged_from_second: u64,
    /// Every measured threshold's value held and the rate was carried.
    pub passed: bool,
    pub verdict: Verdict,
    pub iterations: u64,
    pub dropped_iterations: u64,
    pub thresholds: Vec<StepThreshold>,
    pub endpoints: Vec<StepEndpoint>,
    /// The step's failures by kind, most first.
    #[serde(default)]
    pub failures: Vec<(String, u64)>,
}

/// What a search left: its steps and why it ended.
#[derive(Debug, Clone, Default)]
pub struct Searched {
    pub steps: Vec<StepReport>,
    pub ended: Option<Ended>,
}

/// A capacity search's result, as `result.json` has it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CapacityReport {
    /// The highest rate that held below the lowest that failed, in
    /// iterations a second; `None` when no step held.
    pub rate: Option<f64>,
    /// Requests a second at that step (an iteration may send several).
    pub requests_per_second: Option<f64>,
    /// The interval around it: the highest step every threshold's interval
    /// held at, and the lowest step one broke at.
    pub low: Option<f64>,
    pub high: Option<f64>,
    pub ended: Ended,
    /// The thresholds that failed at the lowest failing step, and why.
    pub first_broken: Option<Broken>,
    pub steps: Vec<StepReport>,
    /// The latency thresholds, drawn as lines on the curve.
    #[serde(default)]
    pub slo_lines: Vec<SloLine>,
    /// The search's settings.
    pub growth: f64,
    pub resolution: f64,
    pub confidence: f64,
}

/// A latency threshold's limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SloLine {
    pub source: String,
    pub limit_ms: f64,
}

/// The lowest step that failed: what failed there, and the probes' cause.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Broken {
    pub rate: f64,
    /// Each failed threshold's source and observed value.
    pub thresholds: Vec<String>,
    pub causes: Vec<String>,
}

impl CapacityReport {
    /// "sustainable at 84 req/s [78–90]" and what gave first.
    pub fn line(&self) -> String {
        let rate = match self.rate {
            Some(rate) => format!(
                "capacity: sustainable at {} iterations/s{} [{}–{}]",
                number(rate),
                self.requests_per_second
                    .map(|r| format!(" ({} requests/s)", number(r)))
                    .unwrap_or_default(),
                self.low.map_or("?".to_owned(), number),
                self.high.map_or("?".to_owned(), number),
            ),
            None => "capacity: no step held".to_owned(),
        };
        format!(
            "{rate}; {} step(s), ended: {}",
            self.steps.len(),
            self.ended.text()
        )
    }
}

/// A rate for people: 3 significant digits.
pub fn number(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// Steers the search while the engine runs: called once a second with the
/// aggregator (which keeps each second whole for a steered run), it
/// judges a step when its last second is in and appends the next.
#[derive(Debug)]
pub struct Controller {
    plan: CapacityPlan,
    staircase: Staircase,
    search: Search,
    thresholds: Vec<ThresholdPlan>,
    endpoints: Vec<EndpointMeta>,
    current: Stair,
    /// The next step's rate, held back until the requests of the step
    /// before have drained (an overloaded step leaves a queue behind that
    /// would otherwise be charged to the next).
    pending: Option<(f64, Duration)>,
    searched: Arc<Mutex<Searched>>,
}

/// The longest the search waits for a queue to drain between steps.
const MAX_DRAIN: Duration = Duration::from_secs(30);

impl Controller {
    /// Puts the first step on the staircase. What the search finds is in
    /// `searched` as it goes.
    pub fn start(
        plan: &CapacityPlan,
        thresholds: &[ThresholdPlan],
        endpoints: &[EndpointMeta],
        searched: Arc<Mutex<Searched>>,
    ) -> Controller {
        let search = Search::new(plan);
        let current = Stair {
            start: Duration::ZERO,
            end: plan.step,
            rate: search.first(),
        };
        plan.staircase.push(current);
        Controller {
            plan: plan.clone(),
            staircase: plan.staircase.clone(),
            search,
            thresholds: thresholds.to_vec(),
            endpoints: endpoints.to_vec(),
            current,
            pending: None,
            searched,
        }
    }

    /// One more second is complete (`elapsed` of them). Never asks the
    /// engine to abort: the end of the search closes the staircase.
    pub fn second(&mut self, aggregator: &Aggregator, elapsed: Duration) -> bool {
        if self.searched.lock().expect("not poisoned").ended.is_some() {
            return false;
        }
        let staircase = self.staircase.clone();
        let now = move || staircase.elapsed().unwrap_or(elapsed);
        if let Some((rate, since)) = self.pending {
            let in_flight = aggregator.series().last().map_or(0, |p| p.in_flight);
            if in_flight > 0 && elapsed < since + MAX_DRAIN {
                return false;
            }
            self.pending = None;
            self.begin(rate, now());
            return false;
        }
        if elapsed < self.current.end {
            return false;
        }
        let report = self.judge(aggregator);
        let (rate, held) = (report.rate, report.passed);
        let room = now() + self.plan.step + Duration::from_secs(1) <= self.plan.max_time;
        let next = self.search.record(rate, held, room);
        let searched = Arc::clone(&self.searched);
        let mut searched = searched.lock().expect("not poisoned");
        searched.steps.push(report);
        match next {
            // After a step that held, the next starts at once; after one
            // that failed, once its queue has drained.
            Next::Step(rate) if held => self.begin(rate, now()),
            Next::Step(rate) => self.pending = Some((rate, elapsed)),
            Next::Done(ended) => {
                searched.ended = Some(ended);
                self.staircase.close();
            }
        }
        false
    }

    /// The next step, on the next whole second of the run's clock after `now`.
    fn begin(&mut self, rate: f64, now: Duration) {
        let start = Duration::from_secs((now.as_secs_f64() + 0.3).ceil() as u64);
        self.current = Stair {
            start,
            end: start + self.plan.step,
            rate,
        };
        self.staircase.push(self.current);
    }

    fn judge(&self, aggregator: &Aggregator) -> StepReport {
        let Stair { start, end, rate } = self.current;
        let from = (start + self.plan.settle).as_secs();
        let seconds: Vec<_> = aggregator
            .kept()
            .iter()
            .filter(|s| (from..end.as_secs()).contains(&s.second))
            .map(|s| s.unpack())
            .collect();
        let mut judged = step::judge(
            &seconds,
            &self.endpoints,
            &self.thresholds,
            self.plan.confidence,
        );
        step::kept_up(&mut judged, rate, seconds.len());
        let mut failures: std::collections::BTreeMap<String, u64> = Default::default();
        for second in &seconds {
            for stats in &second.endpoints {
                for record in &stats.failure_kinds {
                    *failures.entry(record.kind.name()).or_default() += record.count;
                }
            }
        }
        let mut failures: Vec<(String, u64)> = failures.into_iter().collect();
        failures.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
        StepReport {
            rate,
            achieved: judged.achieved,
            start_second: start.as_secs(),
            end_second: end.as_secs(),
            judged_from_second: from,
            passed: judged.passed,
            verdict: judged.verdict,
            iterations: judged.counters.iterations,
            dropped_iterations: judged.counters.dropped_iterations,
            thresholds: judged.thresholds,
            endpoints: judged.endpoints,
            failures,
        }
    }
}

/// The capacity and its interval from the steps; the cause at the lowest
/// failing step from `causes_at` (the probes in that step's window).
pub fn report(
    plan: &CapacityPlan,
    thresholds: &[ThresholdPlan],
    searched: Searched,
    causes_at: impl Fn(&StepReport) -> Vec<String>,
) -> CapacityReport {
    let Searched { steps, ended } = searched;
    let lowest_failed = steps
        .iter()
        .filter(|s| !s.passed)
        .min_by(|a, b| a.rate.total_cmp(&b.rate));
    let ceiling = lowest_failed.map_or(f64::INFINITY, |s| s.rate);
    let capacity = steps
        .iter()
        .filter(|s| s.passed && s.rate < ceiling)
        .max_by(|a, b| a.rate.total_cmp(&b.rate));
    let rate = capacity.map(|s| s.rate);
    // The interval: the highest step at or below the capacity where every
    // interval held, and the lowest where one broke outright.
    let low = steps
        .iter()
        .filter(|s| s.verdict == Verdict::Holds && rate.is_some_and(|r| s.rate <= r))
        .map(|s| s.rate)
        .reduce(f64::max);
    let high = steps
        .iter()
        .filter(|s| s.verdict == Verdict::Breaks)
        .map(|s| s.rate)
        .reduce(f64::min)
        .or(lowest_failed.map(|s| s.rate));
    let first_broken = lowest_failed.map(|step| Broken {
        rate: step.rate,
        thresholds: step
            .thresholds
            .iter()
            .filter(|t| !t.passed)
            .map(|t| format!("{} (observed {})", t.source, t.observed_text))
            .collect(),
        causes: causes_at(step),
    });
    CapacityReport {
        rate,
        requests_per_second: capacity.map(|s| s.achieved),
        low,
        high,
        ended: ended.unwrap_or(Ended::Stopped),
        first_broken,
        steps,
        slo_lines: thresholds
            .iter()
            .filter(|t| t.selector.metric.is_duration())
            .map(|t| SloLine {
                source: t.source.clone(),
                limit_ms: t.expression.limit.base(),
            })
            .collect(),
        growth: plan.growth,
        resolution: plan.resolution,
        confidence: plan.confidence,
    }
}
