//! A capacity search (`[capacity]`, or `perf --capacity` on any suite):
//! its settings checked, and the suite's load replaced by an open-model
//! arrival rate that the search steers step by step while the run runs.

use std::time::Duration;

use serde::Serialize;

use super::checker::Checker;
use super::load::{Executor, LoadPlan};
use super::staircase::Staircase;
use super::thresholds::ThresholdPlan;
use crate::suite::defaults::Defaults;
use crate::suite::{CapacitySpec, SuiteFile};

/// The name thresholds give the capacity found: `"capacity.rate" = "value > 50"`.
pub const CAPACITY_RATE: &str = "capacity.rate";

/// A capacity search's settings, resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CapacityPlan {
    /// The first step's rate, in iterations a second.
    pub start: f64,
    /// Each step over the one before, until one fails.
    pub growth: f64,
    /// The highest step that held and the lowest that failed are this
    /// close (as a fraction) when the search ends.
    pub resolution: f64,
    pub max_rate: f64,
    pub step: Duration,
    /// Seconds at the start of each step left unjudged.
    pub settle: Duration,
    pub max_time: Duration,
    /// Two-sided confidence of each threshold's interval at a step.
    pub confidence: f64,
    /// The schedule the engine follows and the search steers.
    #[serde(skip)]
    pub staircase: Staircase,
}

/// A judged step needs at least this many seconds (the blocks its
/// intervals resample).
const MIN_JUDGED_SECONDS: u64 = 4;

/// Checks `[capacity]` (or the defaults, when the command line asks for a
/// search) and replaces the load with the steered rate. `None` when the
/// suite runs its own load.
pub(super) fn check_capacity(
    checker: &mut Checker<'_>,
    file: &SuiteFile,
    asked: bool,
    load: Option<&mut LoadPlan>,
    thresholds: &[ThresholdPlan],
    defaults: &Defaults,
) -> Option<CapacityPlan> {
    let spec = match (&file.capacity, asked) {
        (Some(spec), _) => spec.clone(),
        (None, true) => CapacitySpec::default(),
        (None, false) => {
            if let Some(threshold) = thresholds
                .iter()
                .find(|t| t.selector.metric.as_str() == CAPACITY_RATE)
            {
                checker
                    .general(format!(
                        "`{}` judges a capacity, and this suite runs no capacity search",
                        threshold.source
                    ))
                    .hint =
                    Some("add a `[capacity]` section, or run it with `perf --capacity`".into());
            }
            return None;
        }
    };
    let load = load?;
    let d = &defaults.capacity;
    let suite_rate = match &load.executor {
        Executor::ArrivalRate { stages, .. } => {
            stages.iter().map(|s| s.from.max(s.to)).fold(0.0, f64::max)
        }
        _ => 0.0,
    };
    let start = spec.start.unwrap_or(if suite_rate > 0.0 {
        suite_rate
    } else {
        d.start
    });
    let plan = CapacityPlan {
        start,
        growth: spec.growth.unwrap_or(d.growth),
        resolution: spec.resolution.unwrap_or(d.resolution).0,
        max_rate: spec.max_rate.unwrap_or(d.max_rate),
        step: spec.step.unwrap_or(d.step),
        settle: spec.settle.unwrap_or(d.settle),
        max_time: spec.max_time.unwrap_or(d.max_time),
        confidence: spec.confidence.unwrap_or(d.confidence).0,
        staircase: Staircase::default(),
    };
    let pre_allocated_users = spec.pre_allocated_users.unwrap_or(d.pre_allocated_users);
    let max_users = spec.max_users.unwrap_or(d.max_users);
    let span = checker.header_span("[capacity");
    let mut problems = Vec::new();
    if !(plan.start > 0.0 && plan.start.is_finite()) {
        problems.push(format!(
            "`start` must be a rate above 0, not {}",
            plan.start
        ));
    }
    if !(plan.growth > 1.0 && plan.growth.is_finite()) {
        problems.push(format!("`growth` must be above 1, not {}", plan.growth));
    }
    if plan.max_rate < plan.start {
        problems.push(format!(
            "`max-rate` {} is below the first step's rate {}",
            plan.max_rate, plan.start
        ));
    }
    if plan.step.saturating_sub(plan.settle) < Duration::from_secs(MIN_JUDGED_SECONDS) {
        problems.push(format!(
            "a step of {} with {} to settle leaves under {MIN_JUDGED_SECONDS}s to judge",
            humantime::format_duration(plan.step),
            humantime::format_duration(plan.settle)
        ));
    }
    if plan.max_time < plan.step {
        problems.push("`max-time` is shorter than one step".to_owned());
    }
    if max_users < pre_allocated_users.max(1) {
        problems.push(format!(
            "`max-users` {max_users} is below `pre-allocated-users` {pre_allocated_users}"
        ));
    }
    if !file.faults.is_empty() {
        problems.push("[[fault]]s act at instants of a planned load, and a search's steps are not planned: run faults in a suite of their own".to_owned());
    }
    if !file.browsers.is_empty() {
        problems.push(
            "[[browser]] users are not judged step by step: leave them out of a capacity search"
                .to_owned(),
        );
    }
    for problem in problems {
        checker.at(span.clone(), format!("[capacity]: {problem}"));
    }
    load.executor = Executor::Steered {
        staircase: plan.staircase.clone(),
        pre_allocated_users: pre_allocated_users.max(1),
        max_users,
        max_duration: plan.max_time,
    };
    // Each step settles on its own; the whole search is measured.
    load.warm_up = Duration::ZERO;
    Some(plan)
}

#[cfg(test)]
mod tests {
    use crate::suite::plan::{Plan, PlanOptions};

    const SUITE: &str = r#"
[suite]
name = "capacity"
[target]
url = "http://127.0.0.1:9"
[load]
executor = "constant-users"
users = 2
duration = "5s"
[[task]]
name = "/"
get = "/"
[thresholds]
"http.duration" = "p(95) < 200ms"
"#;

    fn options(capacity: bool) -> PlanOptions {
        let mut options = PlanOptions {
            capacity,
            ..PlanOptions::default()
        };
        options
            .extra_metrics
            .insert(super::CAPACITY_RATE.to_owned());
        options
    }

    #[test]
    fn the_command_line_turns_any_suite_into_a_search_with_the_defaults() {
        let plan = Plan::from_source(SUITE, "capacity.toml", &options(true)).unwrap();
        let capacity = plan.capacity.expect("a search");
        assert_eq!(capacity.start, 5.0);
        assert_eq!(capacity.growth, 2.0);
        assert!((capacity.resolution - 0.10).abs() < 1e-12);
        assert!(matches!(
            plan.load.executor,
            crate::suite::plan::Executor::Steered { max_users: 500, .. }
        ));
        let plain = Plan::from_source(SUITE, "capacity.toml", &options(false)).unwrap();
        assert!(plain.capacity.is_none());
    }

    #[test]
    fn a_section_sets_the_search_and_bad_settings_are_named() {
        let suite = format!(
            "{SUITE}\n[capacity]\nstart = 20.0\nresolution = \"5%\"\nstep = \"6s\"\nsettle = \"1s\"\n"
        );
        let capacity = Plan::from_source(&suite, "capacity.toml", &options(false))
            .unwrap()
            .capacity
            .unwrap();
        assert_eq!((capacity.start, capacity.step.as_secs()), (20.0, 6));
        let bad = format!("{SUITE}\n[capacity]\ngrowth = 1.0\nstep = \"4s\"\n");
        let error = Plan::from_source(&bad, "capacity.toml", &options(false))
            .unwrap_err()
            .to_string();
        assert!(error.contains("`growth` must be above 1"), "{error}");
        assert!(error.contains("leaves under 4s to judge"), "{error}");
        let percent = format!("{SUITE}\n[capacity]\nresolution = \"ten\"\n");
        let error = Plan::from_source(&percent, "capacity.toml", &options(false))
            .unwrap_err()
            .to_string();
        assert!(error.contains("not a percentage"), "{error}");
    }

    #[test]
    fn a_capacity_threshold_needs_a_search() {
        let suite = format!("{SUITE}\"capacity.rate\" = \"value > 50\"\n");
        let error = Plan::from_source(&suite, "capacity.toml", &options(false))
            .unwrap_err()
            .to_string();
        assert!(error.contains("runs no capacity search"), "{error}");
        assert!(Plan::from_source(&suite, "capacity.toml", &options(true)).is_ok());
    }
}
