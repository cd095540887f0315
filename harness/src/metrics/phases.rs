//! Windows of a run around its faults, read from the per-second series:
//! the seconds before the first fault, the seconds a fault covered, and the
//! seconds after the last one ended; and how long the run took to recover
//! after each fault.
//!
//! **Recovery** is the time from the end of a fault to the start of the
//! first of three consecutive seconds (fewer if the run ends first, at
//! least one) whose completions and error rate are back in the band the
//! run had before its first fault:
//! - completions at least 80 % of the slowest second before the fault (the
//!   first second of the run, a ramp, left out when there are others);
//! - an error rate no higher than twice the rate before the fault, or one
//!   point above it, whichever is more.
//!
//! A fault that never ended (a kill), or a run that never came back within
//! the band, has no recovery time: a threshold on it fails.

use std::fmt;
use std::str::FromStr;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::summary::{RunSummary, SecondPoint};

/// A window a threshold may judge: `{phase:fault}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    BeforeFault,
    Fault,
    AfterFault,
}

impl Phase {
    pub const NAMES: [&'static str; 3] = ["before-fault", "fault", "after-fault"];
}

impl FromStr for Phase {
    type Err = String;

    fn from_str(text: &str) -> Result<Phase, String> {
        match text {
            "before-fault" => Ok(Phase::BeforeFault),
            "fault" => Ok(Phase::Fault),
            "after-fault" => Ok(Phase::AfterFault),
            other => Err(format!(
                "unknown phase `{other}` (use {})",
                Phase::NAMES.join(", ")
            )),
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::BeforeFault => "before-fault",
            Phase::Fault => "fault",
            Phase::AfterFault => "after-fault",
        })
    }
}

/// The selected endpoints' requests in a window.
#[derive(Debug, Clone)]
pub struct Window {
    pub seconds: usize,
    pub requests: u64,
    pub failures: u64,
    /// Latencies in microseconds, as the run's histograms.
    pub latency: Histogram<u64>,
}

/// How a run came back after one fault.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recovery {
    pub fault: String,
    /// From the end of the fault to the first second back in the band;
    /// none when the fault never ended or the run never came back.
    pub after_seconds: Option<f64>,
    /// The band: least completions a second, most error rate.
    pub min_completions: f64,
    pub max_error_rate: f64,
}

impl Recovery {
    /// One line for the notes.
    pub fn line(&self) -> String {
        let band = format!(
            "≥ {:.0} completions/s and ≤ {:.1} % errors, as before the first fault",
            self.min_completions,
            self.max_error_rate * 100.0
        );
        match self.after_seconds {
            Some(after) => format!("recovery after {}: {after:.1}s ({band})", self.fault),
            None => format!(
                "no recovery after {} by the end of the run ({band})",
                self.fault
            ),
        }
    }
}

/// Seconds needed in the band in a row.
const STABLE_SECONDS: usize = 3;

impl RunSummary {
    /// When the first fault began; none without faults.
    fn first_fault(&self) -> Option<f64> {
        self.faults
            .iter()
            .map(|f| f.from_second)
            .min_by(f64::total_cmp)
    }

    /// Whether a second falls in `phase`, the first fault having begun at `first`.
    fn in_phase(&self, point: &SecondPoint, phase: Phase, first: f64) -> bool {
        let (from, to) = (point.second as f64, point.second as f64 + 1.0);
        let end_of_run = f64::INFINITY;
        let during = self.faults.iter().any(|fault| {
            let until = fault.to_second.unwrap_or(end_of_run);
            from < until && to > fault.from_second
        });
        match phase {
            Phase::Fault => during,
            Phase::BeforeFault => to <= first && !point.warm_up,
            Phase::AfterFault => {
                let last_end = self
                    .faults
                    .iter()
                    .map(|f| f.to_second.unwrap_or(end_of_run))
                    .fold(0.0, f64::max);
                !during && from >= last_end
            }
        }
    }

    /// The requests of the endpoints at `indices` (in the order of
    /// [`RunSummary::endpoints`]) in the seconds of `phase`.
    pub fn window(&self, indices: &[usize], phase: Phase) -> Window {
        let mut window = Window {
            seconds: 0,
            requests: 0,
            failures: 0,
            latency: super::new_histogram(),
        };
        let Some(first) = self.first_fault() else {
            return window;
        };
        for point in self
            .series
            .iter()
            .filter(|p| self.in_phase(p, phase, first))
        {
            window.seconds += 1;
            for &index in indices {
                let Some(second) = point.endpoints.get(index) else {
                    continue;
                };
                window.requests += second.requests;
                window.failures += second.failures;
                if let Some(histogram) = &second.histogram {
                    window.latency.add(histogram.unpack()).expect("same bounds");
                }
            }
        }
        window
    }

    /// How the run came back after each fault.
    pub fn recoveries(&self) -> Vec<Recovery> {
        let Some(first) = self.first_fault() else {
            return Vec::new();
        };
        let before: Vec<&SecondPoint> = self
            .series
            .iter()
            .filter(|p| (p.second + 1) as f64 <= first)
            .collect();
        let steady = if before.len() > 1 {
            &before[1..]
        } else {
            &before[..]
        };
        let min_completions = 0.8
            * steady
                .iter()
                .map(|p| p.requests as f64)
                .fold(f64::INFINITY, f64::min);
        let min_completions = if min_completions.is_finite() {
            min_completions
        } else {
            0.0
        };
        let (requests, failures) = steady
            .iter()
            .fold((0u64, 0u64), |(r, f), p| (r + p.requests, f + p.failures));
        let error_rate = if requests == 0 {
            0.0
        } else {
            failures as f64 / requests as f64
        };
        let max_error_rate = (2.0 * error_rate).max(error_rate + 0.01);
        let in_band = |p: &SecondPoint| {
            p.requests as f64 >= min_completions
                && p.requests > 0
                && (p.failures as f64 / p.requests as f64) <= max_error_rate
        };
        self.faults
            .iter()
            .map(|fault| {
                let after_seconds = fault.to_second.and_then(|end| {
                    let after: Vec<&SecondPoint> = self
                        .series
                        .iter()
                        .filter(|p| p.second as f64 >= end.floor())
                        .collect();
                    (0..after.len()).find_map(|start| {
                        let run = &after[start..(start + STABLE_SECONDS).min(after.len())];
                        run.iter()
                            .all(|p| in_band(p))
                            .then(|| (after[start].second as f64 - end).max(0.0))
                    })
                });
                Recovery {
                    fault: fault.fault.clone(),
                    after_seconds,
                    min_completions,
                    max_error_rate,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::summary::{EndpointMeta, FaultWindow, RunHeader};
    use crate::metrics::{Aggregator, FailureKind, Gauges, Outcome, Phase as LoadPhase, Recorder};

    /// Twelve seconds of one endpoint: 50 good requests a second, but in
    /// seconds 4 and 5 (the fault, 4.0 s–6.0 s) five that fail, and in
    /// second 6 twenty that succeed while the run climbs back.
    fn run_with_fault(to_second: Option<f64>) -> RunSummary {
        let metas = vec![EndpointMeta {
            name: "/dashboard/".into(),
            method: "GET".into(),
            tags: Vec::new(),
        }];
        let mut recorder = Recorder::new(1);
        let mut aggregator = Aggregator::new(1, 1);
        let refused = FailureKind::Status(500);
        for second in 0..12u64 {
            recorder.set_phase(LoadPhase::Measured);
            let (count, fails, latency) = match second {
                4 | 5 => (5, true, 900_000),
                6 => (20, false, 40_000),
                _ => (50, false, 10_000),
            };
            for i in 0..count {
                let outcome = if fails {
                    Outcome::Failure {
                        kind: &refused,
                        message: "GET /dashboard/: 500",
                    }
                } else {
                    Outcome::Success
                };
                recorder.record(0, latency + i, 1_000, outcome, second * 1000 + i);
            }
            let interval = recorder.take_interval();
            aggregator.add(second as usize, Gauges::default(), &interval);
        }
        aggregator.finish();
        let header = RunHeader {
            suite: "faulty".into(),
            profile: "ci".into(),
            target: "http://127.0.0.1:1".into(),
            started_at: "2026-12-02T00:00:00Z".into(),
            warm_up_seconds: 0.0,
            measured_seconds: 12.0,
            max_users: 3,
            selection: Default::default(),
        };
        let mut summary = RunSummary::build(
            header,
            &metas,
            aggregator.warm_up(),
            aggregator.measured(),
            aggregator.series().to_vec(),
        );
        summary.faults = vec![FaultWindow {
            fault: "restart pgbouncer at 4s".into(),
            subject: "pgbouncer".into(),
            action: "restart".into(),
            from_second: 4.0,
            to_second,
            error: None,
        }];
        summary
    }

    #[test]
    fn phases_are_the_seconds_before_during_and_after_the_faults() {
        let summary = run_with_fault(Some(6.0));
        let before = summary.window(&[0], Phase::BeforeFault);
        let during = summary.window(&[0], Phase::Fault);
        let after = summary.window(&[0], Phase::AfterFault);
        assert_eq!(
            (before.seconds, before.requests, before.failures),
            (4, 200, 0)
        );
        assert_eq!(
            (during.seconds, during.requests, during.failures),
            (2, 10, 10)
        );
        assert_eq!((after.seconds, after.requests, after.failures), (6, 270, 0));
        assert!(during.latency.value_at_quantile(0.5) >= 900_000);
        assert!(after.latency.max() < 900_000);
    }

    #[test]
    fn recovery_is_timed_from_the_end_of_the_fault_to_the_band_it_left() {
        let recoveries = run_with_fault(Some(6.0)).recoveries();
        assert_eq!(recoveries.len(), 1);
        // Second 6 has 20 completions, under 80 % of 50: back from second 7.
        assert_eq!(recoveries[0].after_seconds, Some(1.0));
        assert_eq!(recoveries[0].min_completions, 40.0);
        assert_eq!(recoveries[0].max_error_rate, 0.01);
    }

    #[test]
    fn a_fault_that_never_ends_has_no_recovery_and_no_after_phase() {
        let summary = run_with_fault(None);
        assert_eq!(summary.recoveries()[0].after_seconds, None);
        assert_eq!(summary.window(&[0], Phase::AfterFault).seconds, 0);
        assert_eq!(summary.window(&[0], Phase::Fault).seconds, 8);
    }

    #[track_caller]
    fn judged(summary: &RunSummary, selector: &str, expression: &str) -> (bool, String) {
        let threshold = crate::suite::plan::ThresholdPlan {
            selector: selector.parse().unwrap(),
            expression: expression.parse().unwrap(),
            source: format!("{selector}: {expression}"),
            abort_on_fail: false,
        };
        let result = &crate::verdict::evaluate(summary, &[threshold])[0];
        (result.passed, result.observed_text.clone())
    }

    #[test]
    fn thresholds_judge_a_phase_and_the_recovery() {
        let summary = run_with_fault(Some(6.0));
        assert_eq!(
            judged(&summary, "http.failed{phase:fault}", "rate < 0.5"),
            (false, "100.00%".into())
        );
        assert_eq!(
            judged(&summary, "http.failed{phase:after-fault}", "rate == 0"),
            (true, "0.00%".into())
        );
        assert_eq!(
            judged(&summary, "http.requests{phase:before-fault}", "rate > 45"),
            (true, "50.0/s".into())
        );
        assert!(!judged(&summary, "http.duration{phase:fault}", "p(95) < 500ms").0);
        assert!(
            judged(
                &summary,
                "http.duration{phase:after-fault}",
                "p(95) < 500ms"
            )
            .0
        );
        assert_eq!(
            judged(&summary, "recovery.time", "max < 2s"),
            (true, "1000.0ms".into())
        );
        assert!(!judged(&summary, "recovery.time", "max < 500ms").0);
        let never = run_with_fault(None);
        assert_eq!(
            judged(&never, "recovery.time", "max < 60m"),
            (false, "no data".into())
        );
    }
}
