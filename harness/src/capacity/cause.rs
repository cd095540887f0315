//! Why the first failing step failed, from what the probes saw in its
//! window: a PgBouncer pool with clients waiting on it, a process (or the
//! machine) out of CPU, PostgreSQL backends waiting on locks, connections
//! the target refused, users all busy. Beside the verdict's diagnosis of a
//! whole run, this one reads only the seconds of one step.

use std::ops::Range;

use super::StepReport;
use crate::probe::ProbeSample;

/// Facts about the stack the causes need.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stack {
    /// PgBouncer's default_pool_size.
    pub pool_size: Option<u32>,
    /// The machine's cores.
    pub cores: usize,
    /// The most users the open model could have.
    pub max_users: u32,
}

/// The likely causes at `step`, most telling first; never empty.
pub fn causes(samples: &[ProbeSample], step: &StepReport, stack: Stack) -> Vec<String> {
    let window: Range<u64> = step.judged_from_second..step.end_second;
    let seen: Vec<&ProbeSample> = samples
        .iter()
        .filter(|s| window.contains(&s.second))
        .collect();
    let max = |value: &dyn Fn(&ProbeSample) -> Option<f64>| {
        seen.iter().filter_map(|s| value(s)).reduce(f64::max)
    };
    let mut causes = Vec::new();
    let waiting = max(&|s| s.pgbouncer.as_ref().map(|p| p.cl_waiting)).unwrap_or(0.0);
    if waiting > 0.0 {
        let busy = max(&|s| s.pgbouncer.as_ref().map(|p| p.sv_active)).unwrap_or(0.0);
        let wait = max(&|s| s.pgbouncer.as_ref().map(|p| p.maxwait_seconds)).unwrap_or(0.0);
        let pool = stack
            .pool_size
            .map_or("its pool".to_owned(), |p| format!("a pool of {p}"));
        let full = if stack.pool_size.is_some_and(|p| busy >= f64::from(p)) {
            " (every server connection busy: the pool is the limit)"
        } else {
            ""
        };
        causes.push(format!(
            "PgBouncer had up to {waiting:.0} clients waiting for a server connection on {pool}, {busy:.0} busy{full}; the longest wait {wait:.1}s"
        ));
    }
    let cpu = |service: &str| {
        max(&|s| {
            s.services
                .iter()
                .find(|p| p.name == service)
                .map(|p| p.cpu_percent)
        })
    };
    if let Some(saturated) = crate::diagnosis::machine::cpu_saturated(cpu, stack.cores) {
        causes.push(saturated);
    } else {
        // Every probed process together: the load generator shares the
        // machine, so the services alone rarely reach every core.
        let total = seen
            .iter()
            .map(|s| s.services.iter().map(|p| p.cpu_percent).sum::<f64>())
            .reduce(f64::max)
            .unwrap_or(0.0);
        let cores = stack.cores.max(1) as f64;
        if total >= 65.0 * cores {
            let each: Vec<String> = ["app", "postgres", "pgbouncer", "redis"]
                .iter()
                .filter_map(|name| {
                    let value = cpu(name)?;
                    let name = if *name == "app" { "the target" } else { name };
                    Some(format!("{name} {value:.0}%"))
                })
                .collect();
            causes.push(format!(
                "the machine's CPU: the stack used up to {total:.0}% of {cores:.0} cores' 100% each ({}), and the load generator the rest: requests waited for CPU",
                each.join(", ")
            ));
        }
    }
    if let Some(waits) = max(&|s| s.postgres.as_ref().map(|p| p.lock_waits)).filter(|w| *w > 0.0) {
        causes.push(format!(
            "up to {waits:.0} PostgreSQL backends waited on a lock"
        ));
    }
    for (kind, count) in &step.failures {
        if kind == "connection-refused" || kind == "connection-reset" || kind == "timeout" {
            causes.push(format!(
                "{count} request(s) failed with {kind}: the target's listen queue or its workers were full"
            ));
        }
    }
    if step.dropped_iterations > 0 {
        let due = step.iterations + step.dropped_iterations;
        causes.push(format!(
            "{:.1}% of the iterations could not start on time: every one of the users (at most {}) was busy",
            step.dropped_iterations as f64 * 100.0 / due.max(1) as f64,
            stack.max_users
        ));
    }
    if causes.is_empty() {
        causes.push(if seen.is_empty() {
            "no probe sample in the step's window: nothing below HTTP to name".to_owned()
        } else {
            "no probe saw a waiting pool, a process out of CPU or a lock wait: the limit is inside the application (a sleep, a lock of its own, an external call)".to_owned()
        });
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{PgBouncerSample, ServiceSample};

    fn step() -> StepReport {
        StepReport {
            rate: 40.0,
            achieved: 30.0,
            start_second: 10,
            end_second: 20,
            judged_from_second: 12,
            passed: false,
            verdict: super::super::step::Verdict::Breaks,
            iterations: 300,
            dropped_iterations: 0,
            thresholds: Vec::new(),
            endpoints: Vec::new(),
            failures: Vec::new(),
        }
    }

    fn sample(second: u64, waiting: f64, app_cpu: f64) -> ProbeSample {
        ProbeSample {
            second,
            pgbouncer: Some(PgBouncerSample {
                cl_waiting: waiting,
                sv_active: 2.0,
                maxwait_seconds: 1.5,
                ..Default::default()
            }),
            services: vec![ServiceSample {
                name: "app".into(),
                cpu_percent: app_cpu,
                running: true,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn names_the_pool_only_from_the_steps_own_window() {
        let stack = Stack {
            pool_size: Some(2),
            cores: 2,
            max_users: 100,
        };
        // Waiting clients before the window do not count.
        let quiet = causes(
            &[sample(5, 9.0, 10.0), sample(13, 0.0, 10.0)],
            &step(),
            stack,
        );
        assert!(quiet[0].starts_with("no probe saw"), "{quiet:?}");
        let pool = causes(&[sample(13, 7.0, 10.0)], &step(), stack);
        assert!(
            pool[0].contains("7 clients waiting for a server connection on a pool of 2")
                && pool[0].contains("the pool is the limit"),
            "{pool:?}"
        );
    }

    #[test]
    fn names_the_cpu_when_the_target_had_the_machine() {
        let stack = Stack {
            pool_size: Some(20),
            cores: 2,
            max_users: 100,
        };
        let cpu = causes(&[sample(15, 0.0, 190.0)], &step(), stack);
        assert!(
            cpu[0].starts_with("the target used up to 190% CPU"),
            "{cpu:?}"
        );
        let shared = causes(&[sample(15, 0.0, 140.0)], &step(), stack);
        assert!(shared[0].starts_with("the machine's CPU"), "{shared:?}");
    }
}
