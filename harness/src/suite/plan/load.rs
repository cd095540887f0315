//! The load shape: the executor (closed ramps, iterations, open arrival
//! rates) and the settings around it, from the file's `[load]`, the chosen
//! profile's and the defaults.

use std::time::Duration;

use serde::Serialize;

use super::checker::Checker;
use crate::suite::defaults::{Defaults, layered};
use crate::suite::{ExecutorKind, LoadSpec, ThinkTime};

/// A stage of a closed-model ramp: from `from` users to `to` over `duration`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct UserStage {
    pub from: u32,
    pub to: u32,
    pub duration: Duration,
}

/// A stage of an open-model ramp, in iterations per second.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RateStage {
    pub from: f64,
    pub to: f64,
    pub duration: Duration,
}

/// The executor: one enum, driven by one loop in the engine.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Executor {
    /// Closed model: a number of users over time (ramping-users, constant-users).
    Users { stages: Vec<UserStage> },
    /// Closed model: each user runs a fixed number of iterations.
    Iterations {
        users: u32,
        iterations: u32,
        max_duration: Duration,
    },
    /// Open model: iterations start on a schedule (constant- and ramping-arrival-rate).
    ArrivalRate {
        stages: Vec<RateStage>,
        pre_allocated_users: u32,
        max_users: u32,
    },
    /// Open model, its rate steered while the run runs: a capacity search
    /// appends each step once it has judged the one before.
    Steered {
        staircase: super::staircase::Staircase,
        pre_allocated_users: u32,
        max_users: u32,
        max_duration: Duration,
    },
}

impl Executor {
    /// How long the schedule lasts (before the graceful stop).
    pub fn duration(&self) -> Duration {
        match self {
            Executor::Users { stages } => stages.iter().map(|s| s.duration).sum(),
            Executor::Iterations { max_duration, .. } => *max_duration,
            Executor::ArrivalRate { stages, .. } => stages.iter().map(|s| s.duration).sum(),
            Executor::Steered { max_duration, .. } => *max_duration,
        }
    }

    /// The most virtual users it can have at once.
    pub fn max_users(&self) -> u32 {
        match self {
            Executor::Users { stages } => {
                stages.iter().map(|s| s.from.max(s.to)).max().unwrap_or(0)
            }
            Executor::Iterations { users, .. } => *users,
            Executor::ArrivalRate { max_users, .. } | Executor::Steered { max_users, .. } => {
                *max_users
            }
        }
    }
}

/// The load shape, resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadPlan {
    pub executor: Executor,
    pub think_time: ThinkTime,
    pub warm_up: Duration,
    pub graceful_stop: Duration,
    pub workers: u32,
    pub max_lateness: Duration,
    pub timeout: Duration,
}

/// The load shape: the file's `[load]` with the profile's over it, on the
/// defaults; `None` when it is wrong (the errors are in the checker).
pub(super) fn check_load(
    checker: &mut Checker<'_>,
    file: &LoadSpec,
    profile: Option<&LoadSpec>,
    timeout: Option<Duration>,
    defaults: &Defaults,
) -> Option<LoadPlan> {
    let spec = &match profile {
        Some(profile) => file.overridden_by(profile),
        None => file.clone(),
    };
    // Settings with a default, layered the one way.
    let load_defaults = &defaults.load;
    let setting = |default: Duration, pick: fn(&LoadSpec) -> Option<Duration>| {
        layered(default, pick(file), profile.and_then(pick), None)
    };
    let time_unit = setting(load_defaults.time_unit, |s| s.time_unit);
    let warm_up = setting(load_defaults.warm_up, |s| s.warm_up);
    let graceful_stop = setting(load_defaults.graceful_stop, |s| s.graceful_stop);
    let max_lateness = setting(load_defaults.max_lateness, |s| s.max_lateness);
    let think_time = layered(
        load_defaults.think_time,
        file.think_time,
        profile.and_then(|p| p.think_time),
        None,
    );
    let workers = layered(
        load_defaults.workers,
        file.workers,
        profile.and_then(|p| p.workers),
        None,
    );
    let timeout = layered(defaults.target.timeout, timeout, None, None);

    let span = checker.header_span("[load]");
    let errors_before = checker.errors.len();
    let need = |checker: &mut Checker<'_>, what: &str, executor: &str| {
        checker.at(span.clone(), format!("load: {executor} needs `{what}`"));
    };
    let executor_kind = spec.executor.unwrap_or(if spec.stages.is_some() {
        ExecutorKind::RampingUsers
    } else {
        ExecutorKind::ConstantUsers
    });
    let executor = match executor_kind {
        ExecutorKind::RampingUsers => {
            let mut stages = Vec::new();
            let mut current = 0;
            for stage in spec.stages.iter().flatten() {
                match (stage.to, stage.over, stage.hold) {
                    (Some(to), Some(over), None) => {
                        stages.push(UserStage {
                            from: current,
                            to,
                            duration: over,
                        });
                        current = to;
                    }
                    (None, None, Some(hold)) => stages.push(UserStage {
                        from: current,
                        to: current,
                        duration: hold,
                    }),
                    _ => {
                        checker.at(span.clone(), "load: a ramping-users stage is `{ to = N, over = \"30s\" }` or `{ hold = \"1m\" }`");
                    }
                }
            }
            if stages.is_empty() {
                need(checker, "stages", "ramping-users");
            }
            Executor::Users { stages }
        }
        ExecutorKind::ConstantUsers => {
            let (users, duration) = (spec.users, spec.duration);
            if users.is_none() {
                need(checker, "users", "constant-users");
            }
            if duration.is_none() {
                need(checker, "duration", "constant-users");
            }
            let users = users.unwrap_or(0);
            Executor::Users {
                stages: vec![UserStage {
                    from: users,
                    to: users,
                    duration: duration.unwrap_or_default(),
                }],
            }
        }
        ExecutorKind::PerUserIterations => {
            if spec.users.is_none() {
                need(checker, "users", "per-user-iterations");
            }
            if spec.iterations.is_none() {
                need(checker, "iterations", "per-user-iterations");
            }
            Executor::Iterations {
                users: spec.users.unwrap_or(0),
                iterations: spec.iterations.unwrap_or(0),
                max_duration: spec
                    .duration
                    .unwrap_or(load_defaults.iterations_max_duration),
            }
        }
        ExecutorKind::ConstantArrivalRate | ExecutorKind::RampingArrivalRate => {
            let unit = time_unit.as_secs_f64();
            if unit <= 0.0 {
                checker.at(span.clone(), "load: time-unit must be positive");
            }
            let per_second = |rate: f64| rate / unit.max(f64::MIN_POSITIVE);
            let mut stages = Vec::new();
            if executor_kind == ExecutorKind::ConstantArrivalRate {
                match (spec.rate, spec.duration) {
                    (Some(rate), Some(duration)) => stages.push(RateStage {
                        from: per_second(rate),
                        to: per_second(rate),
                        duration,
                    }),
                    (rate, duration) => {
                        if rate.is_none() {
                            need(checker, "rate", "constant-arrival-rate");
                        }
                        if duration.is_none() {
                            need(checker, "duration", "constant-arrival-rate");
                        }
                    }
                }
            } else {
                let mut current = per_second(spec.start_rate.unwrap_or(0.0));
                for stage in spec.stages.iter().flatten() {
                    match (stage.target, stage.over, stage.hold) {
                        (Some(target), Some(over), None) => {
                            stages.push(RateStage {
                                from: current,
                                to: per_second(target),
                                duration: over,
                            });
                            current = per_second(target);
                        }
                        (None, None, Some(hold)) => stages.push(RateStage {
                            from: current,
                            to: current,
                            duration: hold,
                        }),
                        _ => {
                            checker.at(span.clone(), "load: a ramping-arrival-rate stage is `{ target = N, over = \"30s\" }` or `{ hold = \"1m\" }`");
                        }
                    }
                }
                if stages.is_empty() {
                    need(checker, "stages", "ramping-arrival-rate");
                }
            }
            if stages
                .iter()
                .any(|s| s.from < 0.0 || s.to < 0.0 || !s.from.is_finite() || !s.to.is_finite())
            {
                checker.at(span.clone(), "load: rates must be finite and not negative");
            }
            let peak = stages.iter().map(|s| s.from.max(s.to)).fold(0.0, f64::max);
            let pre_allocated = spec.pre_allocated_users.unwrap_or_else(|| {
                (peak.ceil() as u32).clamp(1, load_defaults.pre_allocated_users_cap)
            });
            let max_users = spec.max_users.unwrap_or(
                pre_allocated
                    .saturating_mul(load_defaults.max_users_per_pre_allocated)
                    .max(pre_allocated),
            );
            if max_users < pre_allocated {
                checker.at(span.clone(), format!("load: max-users ({max_users}) is below pre-allocated-users ({pre_allocated})"));
            }
            Executor::ArrivalRate {
                stages,
                pre_allocated_users: pre_allocated,
                max_users,
            }
        }
    };
    if executor.max_users() == 0 && checker.errors.len() == errors_before {
        checker.at(span.clone(), "load: the run would have no virtual users");
    }
    if workers == 0 {
        checker.at(span.clone(), "load: workers must be at least 1");
    }
    if warm_up >= executor.duration() && !warm_up.is_zero() {
        checker.at(
            span.clone(),
            format!(
                "load: the warm-up ({}) leaves nothing to measure in a run of {}",
                humantime::format_duration(warm_up),
                humantime::format_duration(executor.duration())
            ),
        );
    }
    if checker.errors.len() > errors_before {
        return None;
    }
    Some(LoadPlan {
        executor,
        think_time,
        warm_up,
        graceful_stop,
        workers,
        max_lateness,
        timeout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(load: &str, profile: &str, expect: &str) -> Option<LoadPlan> {
        let source =
            format!("[suite]\nname = \"l\"\n[load]\n{load}\n[profiles.ci.load]\n{profile}\n");
        let file = crate::suite::parse(&source, "l.toml").unwrap();
        let mut checker = Checker::new("l.toml", &source);
        let profile = file.profiles.get("ci").map(|p| &p.load);
        let plan = check_load(
            &mut checker,
            &file.load,
            profile,
            None,
            Defaults::embedded(),
        );
        let got = match &plan {
            Some(plan) => format!("{:?}", plan.executor),
            None => checker
                .errors
                .iter()
                .map(|e| format!("{}:{} {}", e.line, e.column, e.message))
                .collect::<Vec<_>>()
                .join("\n"),
        };
        assert_eq!(got, expect);
        plan
    }

    #[test]
    fn executors_resolve_from_their_settings() {
        check(
            "users = 5\nduration = \"10s\"",
            "",
            "Users { stages: [UserStage { from: 5, to: 5, duration: 10s }] }",
        );
        check(
            "stages = [{ to = 10, over = \"5s\" }, { hold = \"1m\" }]",
            "",
            "Users { stages: [UserStage { from: 0, to: 10, duration: 5s }, UserStage { from: 10, to: 10, duration: 60s }] }",
        );
        check(
            "executor = \"per-user-iterations\"\nusers = 2\niterations = 3",
            "",
            "Iterations { users: 2, iterations: 3, max_duration: 600s }",
        );
        check(
            "executor = \"constant-arrival-rate\"\nrate = 120\ntime-unit = \"1m\"\nduration = \"10s\"",
            "",
            "ArrivalRate { stages: [RateStage { from: 2.0, to: 2.0, duration: 10s }], pre_allocated_users: 2, max_users: 20 }",
        );
        check(
            "executor = \"ramping-arrival-rate\"\nstart-rate = 1\nstages = [{ target = 500, over = \"5s\" }]",
            "",
            "ArrivalRate { stages: [RateStage { from: 1.0, to: 500.0, duration: 5s }], pre_allocated_users: 100, max_users: 1000 }",
        );
    }

    #[test]
    fn missing_or_contradictory_settings_are_refused() {
        check("users = 5", "", "3:1 load: constant-users needs `duration`");
        check(
            "executor = \"ramping-users\"",
            "",
            "3:1 load: ramping-users needs `stages`",
        );
        check(
            "executor = \"constant-arrival-rate\"\nrate = 5\nduration = \"10s\"\npre-allocated-users = 10\nmax-users = 5",
            "",
            "3:1 load: max-users (5) is below pre-allocated-users (10)",
        );
        check(
            "users = 0\nduration = \"10s\"",
            "",
            "3:1 load: the run would have no virtual users",
        );
        check(
            "users = 1\nduration = \"10s\"\nwarm-up = \"10s\"\nworkers = 0",
            "",
            "3:1 load: workers must be at least 1\n3:1 load: the warm-up (10s) leaves nothing to measure in a run of 10s",
        );
    }

    #[test]
    fn the_profile_wins_over_the_file_and_the_file_over_the_defaults() {
        let plan = check(
            "users = 5\nduration = \"10s\"\nworkers = 2\ngraceful-stop = \"3s\"",
            "users = 7\ngraceful-stop = \"4s\"\nthink-time = \"1s..2s\"",
            "Users { stages: [UserStage { from: 7, to: 7, duration: 10s }] }",
        )
        .unwrap();
        assert_eq!(plan.workers, 2);
        assert_eq!(plan.graceful_stop, Duration::from_secs(4));
        assert_eq!(plan.think_time.max, Duration::from_secs(2));
        let defaults = &Defaults::embedded().load;
        assert_eq!(plan.max_lateness, defaults.max_lateness);
        assert_eq!(plan.warm_up, defaults.warm_up);
        assert_eq!(plan.timeout, Defaults::embedded().target.timeout);
    }
}
