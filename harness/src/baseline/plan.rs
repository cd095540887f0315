//! `perf plan-gate`: what a gate with N runs a side could detect, worked
//! out ahead of time from a saved baseline's runs. The baseline is compared
//! with itself to learn each figure's variance with one run a side (its
//! runs' spread, pooled requests and blocks of seconds, exactly as a gate
//! would measure them), and that variance is scaled to N runs a side.

use serde::Serialize;

use super::compare::{GateSettings, Pairing, Verdict, compare, reach};
use super::figures::RunFigures;
use super::statistics::{Metric, t_for, z_for};

/// One figure of one endpoint, planned.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedRow {
    pub endpoint: String,
    pub metric: Metric,
    /// The baseline's figure.
    pub value: f64,
    /// The smallest change N runs a side would catch `power` of the time
    /// (as `Row::resolution`); `None` when the figure cannot be judged yet.
    pub resolution: Option<f64>,
    /// Runs a side that would bring it within the threshold (or gather
    /// enough requests to judge it at all).
    pub runs_needed: Option<usize>,
    /// Why it cannot be judged, when it cannot.
    pub why: Option<String>,
}

/// The gate's reach with `runs` runs a side, from a baseline's runs of one suite.
pub fn plan(baseline: &[RunFigures], runs: usize, settings: &GateSettings) -> Vec<PlannedRow> {
    let itself = compare(
        "plan",
        "plan",
        baseline,
        baseline,
        settings,
        Pairing::Interleaved,
    );
    let runs = runs.max(1);
    // Student's t on the runs' degrees of freedom, as the gate will judge.
    let critical = if runs >= 2 {
        t_for(settings.confidence, 2.0 * (runs as f64 - 1.0))
    } else {
        z_for(settings.confidence)
    };
    itself
        .rows
        .into_iter()
        .map(|row| {
            let planned = row.per_run_variance.map(|per_run| {
                reach(
                    row.metric,
                    row.baseline.value,
                    critical,
                    per_run / runs as f64,
                    per_run,
                    settings,
                )
            });
            PlannedRow {
                endpoint: row.endpoint,
                metric: row.metric,
                value: row.baseline.value,
                resolution: planned.map(|(resolution, _)| resolution),
                runs_needed: match planned {
                    Some((_, needed)) => needed,
                    None => row.runs_needed,
                },
                why: (row.verdict == Verdict::NotEnoughData)
                    .then_some(row.why)
                    .flatten(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baseline::compare::tests::run_of;

    #[test]
    fn more_runs_a_side_plan_a_finer_gate() {
        // Runs that differ by about ±15 %: two a side cannot see 25 %.
        let baseline: Vec<_> = [20.0, 26.0, 17.0, 23.0]
            .iter()
            .enumerate()
            .map(|(i, ms)| run_of(*ms, 20, i as u64))
            .collect();
        let settings = GateSettings::default();
        let p95 = |runs| {
            plan(&baseline, runs, &settings)
                .into_iter()
                .find(|row| row.metric == Metric::P95)
                .unwrap()
        };
        let (two, eight) = (p95(2), p95(8));
        assert!(
            eight.resolution.unwrap() < two.resolution.unwrap(),
            "{two:?} {eight:?}"
        );
        assert!(eight.resolution.unwrap() >= settings.relative);
        assert!(two.runs_needed.unwrap() > 2, "{two:?}");
    }
}
