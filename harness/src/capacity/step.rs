//! One step judged on its own seconds: every threshold of the suite, each
//! with an interval from a bootstrap that resamples the step's seconds
//! (blocks of one second, as the gate's resamples blocks of seconds), so a
//! step holds or breaks on what its data can show, not on one lucky value.
//!
//! - **Holds**: the whole interval is on the right side of the limit.
//! - **Breaks**: the whole interval is on the wrong side.
//! - **Borderline**: the limit is inside the interval.
//! - **Unknown**: the step cannot measure it (too few requests beyond a
//!   quantile, a probe's or a browser's figure).
//!
//! Beside the thresholds, a step whose iterations could not start on time
//! (every user busy, `max-users` reached) did not carry the rate it was
//! offered: that breaks it too.

use rand::{Rng as _, SeedableRng as _};
use serde::{Deserialize, Serialize};

use crate::metrics::summary::{EndpointMeta, RunHeader, RunSummary};
use crate::metrics::{Counters, Interval, Phase};
use crate::suite::plan::ThresholdPlan;

/// Resamples of a step's seconds.
const RESAMPLES: usize = 200;
/// Iterations that may be dropped (not started within `max-lateness`)
/// before a step counts as not carrying its rate.
pub const MAX_DROPPED: f64 = 0.02;
/// The dropped-iterations row's source.
pub const DROPPED_SOURCE: &str = "iterations dropped: rate < 2% (the offered rate carried)";

/// What a threshold's interval says at a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Holds,
    Borderline,
    Breaks,
    Unknown,
}

/// One threshold at one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StepThreshold {
    pub source: String,
    /// On all the step's judged seconds, in the metric's base unit.
    pub observed: Option<f64>,
    pub observed_text: String,
    /// The interval's ends at the search's confidence.
    pub low: Option<f64>,
    pub high: Option<f64>,
    /// Whether the observed value holds.
    pub passed: bool,
    pub verdict: Verdict,
}

/// One endpoint at one step: the curve's points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StepEndpoint {
    pub name: String,
    pub requests: u64,
    pub requests_per_second: f64,
    pub error_rate: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
}

/// A step's judgement.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    pub thresholds: Vec<StepThreshold>,
    pub endpoints: Vec<StepEndpoint>,
    pub counters: Counters,
    /// Requests a second over the judged seconds, all endpoints.
    pub achieved: f64,
    /// Every measured threshold's observed value held, and the rate was carried.
    pub passed: bool,
    pub verdict: Verdict,
}

/// Judges the step's `seconds` against `thresholds`.
pub fn judge(
    seconds: &[Interval],
    endpoints: &[EndpointMeta],
    thresholds: &[ThresholdPlan],
    confidence: f64,
) -> Judged {
    let n = seconds.len();
    let summary_of = |interval: &Interval| {
        let header = RunHeader {
            measured_seconds: n as f64,
            ..RunHeader::default()
        };
        RunSummary::build(
            header,
            endpoints,
            &Interval::new(Phase::WarmUp, endpoints.len()),
            interval,
            Vec::new(),
        )
    };
    let merge = |picks: &mut dyn Iterator<Item = &Interval>| {
        let mut merged = Interval::new(Phase::Measured, endpoints.len());
        for second in picks {
            merged.merge(second);
        }
        merged
    };
    let whole = merge(&mut seconds.iter());
    let summary = summary_of(&whole);
    let point = crate::verdict::evaluate(&summary, thresholds);
    let observe = |interval: &Interval, summary: &RunSummary| {
        let mut values: Vec<Option<f64>> = crate::verdict::evaluate(summary, thresholds)
            .into_iter()
            .map(|r| r.observed)
            .collect();
        values.push(dropped_rate(&interval.counters));
        values
    };
    // Resampled: each threshold's value (and the dropped rate, last).
    let mut resampled: Vec<Vec<f64>> = vec![Vec::with_capacity(RESAMPLES); thresholds.len() + 1];
    if n > 0 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0xca9a_c17e);
        for _ in 0..RESAMPLES {
            let picks: Vec<usize> = (0..n).map(|_| rng.random_range(0..n)).collect();
            let merged = merge(&mut picks.iter().map(|i| &seconds[*i]));
            for (values, value) in resampled
                .iter_mut()
                .zip(observe(&merged, &summary_of(&merged)))
            {
                values.extend(value);
            }
        }
    }
    let tail = (1.0 - confidence) / 2.0;
    let bounds = |values: &mut Vec<f64>| -> (Option<f64>, Option<f64>) {
        if values.len() < RESAMPLES / 2 {
            return (None, None);
        }
        values.sort_by(f64::total_cmp);
        let at = |q: f64| values[((q * values.len() as f64) as usize).min(values.len() - 1)];
        (Some(at(tail)), Some(at(1.0 - tail)))
    };
    let mut rows: Vec<StepThreshold> = point
        .iter()
        .zip(thresholds)
        .zip(resampled.iter_mut())
        .map(|((result, threshold), values)| {
            let (low, high) = bounds(values);
            let holds = |v: f64| {
                threshold
                    .expression
                    .comparison
                    .holds(v, threshold.expression.limit.base())
            };
            let verdict = match (result.observed, low, high) {
                (None, _, _) => Verdict::Unknown,
                (Some(_), Some(low), Some(high)) => interval_verdict(holds(low), holds(high)),
                (Some(value), _, _) => interval_verdict(holds(value), holds(value)),
            };
            StepThreshold {
                source: result.source.clone(),
                observed: result.observed,
                observed_text: result.observed_text.clone(),
                low,
                high,
                passed: result.observed.is_none() || result.passed,
                verdict,
            }
        })
        .collect();
    rows.push(dropped_row(
        &whole.counters,
        bounds(resampled.last_mut().expect("the dropped rate's")),
    ));
    let passed = rows.iter().all(|r| r.passed);
    let verdict = if rows.iter().any(|r| r.verdict == Verdict::Breaks) {
        Verdict::Breaks
    } else if rows
        .iter()
        .all(|r| matches!(r.verdict, Verdict::Holds | Verdict::Unknown))
    {
        Verdict::Holds
    } else {
        Verdict::Borderline
    };
    let endpoints = summary
        .endpoints
        .iter()
        .filter(|e| e.requests > 0)
        .map(|e| StepEndpoint {
            name: e.meta.name.clone(),
            requests: e.requests,
            requests_per_second: e.requests_per_second,
            error_rate: e.failures as f64 / e.requests as f64,
            p50_ms: e.latency_ms.p50,
            p95_ms: e.latency_ms.p95,
            p99_ms: e.latency_ms.p99,
        })
        .collect();
    let requests: u64 = summary.endpoints.iter().map(|e| e.requests).sum();
    Judged {
        thresholds: rows,
        endpoints,
        counters: whole.counters.clone(),
        achieved: if n > 0 {
            requests as f64 / n as f64
        } else {
            0.0
        },
        passed,
        verdict,
    }
}

/// The kept-up row's source.
pub const KEPT_UP_SOURCE: &str = "iterations completed: within 10% of the offered rate";

/// Whether the target kept up with the offered rate over the judged
/// `seconds`: an overloaded step completes iterations at the target's
/// capacity, not at the rate offered, while its queue grows; a step too
/// short for that queue to push a latency over its limit is caught here.
/// Fails the step when over 10 % of the iterations due (and at least 3)
/// did not complete.
pub fn kept_up(judged: &mut Judged, offered: f64, seconds: usize) {
    if seconds == 0 {
        return;
    }
    let due = offered * seconds as f64;
    let completed = judged.counters.iterations as f64;
    let kept_up = due - completed <= (0.1 * due).max(3.0);
    judged.thresholds.push(StepThreshold {
        source: KEPT_UP_SOURCE.to_owned(),
        observed: Some(completed / seconds as f64),
        observed_text: format!(
            "{:.1}/s of {:.1}/s offered",
            completed / seconds as f64,
            offered
        ),
        low: None,
        high: None,
        passed: kept_up,
        verdict: if kept_up {
            Verdict::Holds
        } else {
            Verdict::Breaks
        },
    });
    if !kept_up {
        judged.passed = false;
        judged.verdict = Verdict::Breaks;
    }
}

/// The row that says whether the step carried its rate.
fn dropped_row(counters: &Counters, (low, high): (Option<f64>, Option<f64>)) -> StepThreshold {
    let dropped = dropped_rate(counters);
    let carried = |v: f64| v < MAX_DROPPED;
    StepThreshold {
        source: DROPPED_SOURCE.to_owned(),
        observed: dropped,
        observed_text: dropped.map_or("no iterations".to_owned(), |d| format!("{:.2}%", d * 100.0)),
        low,
        high,
        passed: dropped.is_none_or(carried),
        verdict: match (dropped, low, high) {
            (None, _, _) => Verdict::Unknown,
            (Some(_), Some(low), Some(high)) => interval_verdict(carried(low), carried(high)),
            (Some(d), _, _) => interval_verdict(carried(d), carried(d)),
        },
    }
}

fn interval_verdict(low_holds: bool, high_holds: bool) -> Verdict {
    match (low_holds, high_holds) {
        (true, true) => Verdict::Holds,
        (false, false) => Verdict::Breaks,
        _ => Verdict::Borderline,
    }
}

/// Iterations not started within `max-lateness`, of all that were due.
fn dropped_rate(counters: &Counters) -> Option<f64> {
    let due = counters.iterations + counters.dropped_iterations;
    (due > 0).then(|| counters.dropped_iterations as f64 / due as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Outcome, Recorder};
    use crate::suite::plan::{Plan, PlanOptions};

    fn thresholds(lines: &str) -> (Vec<ThresholdPlan>, Vec<EndpointMeta>) {
        let suite = format!(
            "[suite]\nname = \"s\"\n[target]\nurl = \"http://127.0.0.1:9\"\n[load]\nexecutor = \"constant-users\"\nusers = 1\nduration = \"5s\"\n[[task]]\nname = \"/\"\nget = \"/\"\n[thresholds]\n{lines}\n\"http.longest-stall\" = []\n\"http.succeeded\" = []\n\"http.failed\" = []\n"
        );
        let plan = Plan::from_source(&suite, "s.toml", &PlanOptions::default()).unwrap();
        (plan.thresholds, plan.endpoints)
    }

    /// Seconds of `per_second` requests each, latencies from `latency(second, i)` ms.
    fn seconds(
        n: usize,
        per_second: usize,
        latency: impl Fn(usize, usize) -> u64,
    ) -> Vec<Interval> {
        (0..n)
            .map(|s| {
                let mut recorder = Recorder::new(1);
                recorder.set_phase(Phase::Measured);
                for i in 0..per_second {
                    recorder.record(0, latency(s, i) * 1000, 100, Outcome::Success, 0);
                }
                recorder.counters().iterations += per_second as u64;
                recorder.take_interval()
            })
            .collect()
    }

    #[test]
    fn a_step_far_inside_holds_far_outside_breaks_and_near_is_borderline() {
        let (plans, endpoints) = thresholds("\"http.duration\" = \"p(95) < 100ms\"");
        let spread = |s: usize, i: usize| 20 + ((s * 7 + i * 13) % 60) as u64;
        let fast = judge(&seconds(8, 50, spread), &endpoints, &plans, 0.9);
        assert_eq!(fast.verdict, Verdict::Holds, "{:?}", fast.thresholds);
        assert!(fast.passed);
        assert_eq!(fast.achieved, 50.0);
        let slow = judge(
            &seconds(8, 50, |s, i| spread(s, i) + 200),
            &endpoints,
            &plans,
            0.9,
        );
        assert_eq!(slow.verdict, Verdict::Breaks);
        assert!(!slow.passed);
        // The tail near the limit: half the seconds have a slow twentieth,
        // so whether p95 is over depends on which seconds a resample draws.
        let near = judge(
            &seconds(8, 50, |s, i| if s % 2 == 0 && i >= 45 { 150 } else { 30 }),
            &endpoints,
            &plans,
            0.9,
        );
        assert_eq!(
            near.thresholds[0].verdict,
            Verdict::Borderline,
            "{:?}",
            near.thresholds[0]
        );
        let row = &fast.thresholds[0];
        assert!(
            row.low.unwrap() <= row.observed.unwrap() && row.observed.unwrap() <= row.high.unwrap()
        );
    }

    #[test]
    fn dropped_iterations_break_a_step_whatever_its_latency() {
        let (plans, endpoints) = thresholds("\"http.duration\" = \"p(95) < 100ms\"");
        let mut seconds = seconds(6, 20, |_, _| 10);
        for second in &mut seconds {
            second.counters.dropped_iterations = 10;
        }
        let mut judged = judge(&seconds, &endpoints, &plans, 0.9);
        assert_eq!(judged.verdict, Verdict::Breaks);
        assert!(!judged.passed);
        kept_up(&mut judged, 20.0, 6);
        let row = &judged.thresholds[judged.thresholds.len() - 2];
        assert_eq!(row.source, DROPPED_SOURCE);
        assert_eq!(row.observed_text, "33.33%");
    }

    #[test]
    fn a_step_that_completes_less_than_it_was_offered_breaks() {
        let (plans, endpoints) = thresholds("\"http.duration\" = \"p(95) < 100ms\"");
        // 20 a second completed, fast: it holds at 21 offered, not at 25.
        let seconds = seconds(6, 20, |_, _| 10);
        let mut near = judge(&seconds, &endpoints, &plans, 0.9);
        kept_up(&mut near, 21.0, 6);
        assert_eq!(near.verdict, Verdict::Holds);
        let mut over = judge(&seconds, &endpoints, &plans, 0.9);
        kept_up(&mut over, 25.0, 6);
        assert_eq!(over.verdict, Verdict::Breaks);
        assert!(!over.passed);
        assert_eq!(
            over.thresholds.last().unwrap().observed_text,
            "20.0/s of 25.0/s offered"
        );
        // A few iterations short at a low rate are counting, not a queue.
        let slow = seconds_at(6, 1);
        let mut low = judge(&slow, &endpoints, &plans, 0.9);
        kept_up(&mut low, 1.5, 6);
        assert!(low.passed);
    }

    fn seconds_at(n: usize, per_second: usize) -> Vec<Interval> {
        seconds(n, per_second, |_, _| 10)
    }
}
