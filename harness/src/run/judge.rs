//! The third phase: what the load left in the database (integrity of
//! acknowledged writes, sampled values against independent SQL), which
//! routes it exercised, then every threshold judged on the summary and the
//! likely cause written beside each failure.

use super::measure::Measured;
use super::prepare::Before;
use crate::infra::{InfraConfig, Stack};
use crate::metrics::RunSummary;
use crate::metrics::summary::FaultWindow;
use crate::report::{InfraReport, Interruption, RunReport};
use crate::suite::metric::Metric;
use crate::suite::plan::Plan;
use crate::verdict::{self, ThresholdResult};

pub(super) async fn judge(
    plan: &Plan,
    infra: &InfraConfig,
    stack: Option<&Stack>,
    before: Before,
    measured: Measured,
) -> anyhow::Result<RunReport> {
    let Before {
        mut notes,
        effective_config,
        direct,
        query_budgets,
        snapshots,
        inventory,
    } = before;
    let Measured {
        mut output,
        probes,
        log_signatures,
        interrupts,
        faults,
        capacity,
        exports,
    } = measured;
    notes.extend(faults.iter().map(FaultWindow::line));
    output.summary.faults = faults;
    notes.extend(output.summary.recoveries().iter().map(|r| r.line()));
    let diagnosis_context = crate::diagnosis::Context {
        pool_size: Some(infra.pgbouncer.default_pool_size.get()),
        query_wait_timeout: Some(infra.pgbouncer.query_wait_timeout.as_secs_f64()),
        postgres_unsynced: !infra.postgres.fsync,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let capacity = capacity_report(plan, capacity, &probes, &diagnosis_context);
    let extra = &mut output.summary.extra;
    extra.extend(probes.values.iter().map(|(k, v)| (k.clone(), *v)));
    if let Some(rate) = capacity.as_ref().and_then(|c| c.rate) {
        extra.insert(crate::suite::plan::CAPACITY_RATE.to_owned(), rate);
    }
    if output.aborted {
        notes.push("the run was aborted early by an abort-on-fail threshold".to_owned());
    }
    for measure in &query_budgets {
        extra.insert(
            Metric::queries_per_request_key(&measure.task),
            measure.per_request,
        );
    }
    let mut integrity = None;
    // A shard's writes are checked by the merge, with every shard's.
    if let Some(db) = &direct
        && !snapshots.is_empty()
        && plan.shard.is_none()
    {
        let mut checked = crate::integrity::IntegrityReport::default();
        for (task, spec, before) in &snapshots {
            let acked: Vec<_> = output
                .writes
                .iter()
                .filter(|w| &w.task == task)
                .cloned()
                .collect();
            crate::integrity::check(db, spec, before, &acked, &mut checked).await?;
        }
        output.summary.extra.extend(checked.values());
        integrity = Some(checked);
    }
    let mut correctness = None;
    if let (Some(db), false) = (&direct, output.truths.is_empty()) {
        let checked = crate::correctness::check(db, &output.truths).await?;
        output.summary.extra.extend(checked.values());
        correctness = Some(checked);
    }
    if let Some(db) = direct {
        db.close().await;
    }
    let coverage = inventory.map(|routes| {
        let endpoints: Vec<_> = output
            .summary
            .endpoints
            .iter()
            .chain(&output.summary.warm_up)
            .collect();
        let coverage = crate::coverage::CoverageReport::compute(&routes, &endpoints);
        output.summary.extra.extend(coverage.values());
        coverage
    });
    // A shard judges nothing: its part of the load is not what the
    // thresholds are about; the merge judges the whole.
    let thresholds = match plan.shard {
        Some(shard) => {
            notes.push(format!(
                "shard {}: not judged here; `cargo xtask perf merge` of every shard's folder judges the whole run",
                shard.shard
            ));
            Vec::new()
        }
        // A capacity search judged every threshold step by step; the run
        // holds when a rate held, and judges what is said of that rate.
        None if capacity.is_some() => {
            let mut thresholds = capacity_thresholds(plan, &output.summary);
            thresholds.extend(capacity.as_ref().map(capacity_found));
            thresholds.push(tasks_ran(&output.summary));
            thresholds
        }
        None => {
            let mut thresholds = verdict::evaluate(&output.summary, &plan.thresholds);
            thresholds.push(tasks_ran(&output.summary));
            thresholds.extend(browsers_lasted(&output.summary));
            thresholds
        }
    };
    let mut report = RunReport::new(output.summary, thresholds);
    if let Some(capacity) = &capacity {
        notes.push(capacity.line());
    }
    report.capacity = capacity;
    notes.extend(exports.iter().filter_map(crate::report::ExportReport::line));
    report.exports = exports;
    report.notes = notes;
    report.probes = Some(probes);
    report.effective_config = effective_config;
    report.log_signatures = log_signatures;
    report.query_budgets = query_budgets;
    report.integrity = integrity;
    report.correctness = correctness;
    report.coverage = coverage;
    if interrupts > 0 {
        report.interrupted = Some(Interruption {
            signal: signal_name(crate::infra::interrupt::interrupted_by()),
            graceful_stop_skipped: interrupts > 1,
        });
    }
    crate::diagnosis::diagnose(&mut report, &diagnosis_context);
    if let Some(stack) = stack {
        report.infra = Some(InfraReport {
            provider: stack.provider().to_string(),
            time_to_ready_seconds: stack.time_to_ready().as_secs_f64(),
            services: stack.services().to_vec(),
        });
        if !stack.manages_services() {
            report
                .notes
                .push("the stack is external: nothing was started or seeded by the harness".into());
        }
    }
    Ok(report)
}

/// A run that executes no task fails: the history's `--tags api,page` ran
/// nothing useful and passed.
pub(super) fn tasks_ran(summary: &RunSummary) -> ThresholdResult {
    let requests: u64 = summary
        .endpoints
        .iter()
        .filter(|e| !e.meta.is_auth_flow())
        .map(|e| e.requests)
        .sum();
    ThresholdResult {
        source: "tasks.executed: count > 0".to_owned(),
        metric: Metric::TasksExecuted.to_string(),
        passed: requests > 0,
        observed: Some(requests as f64),
        observed_text: requests.to_string(),
        detail: if requests > 0 {
            String::new()
        } else {
            format!(
                "no task request was sent ({} skipped for want of data, {} logins of {} succeeded)",
                summary.counters.skipped,
                summary.counters.login_successes,
                summary.counters.login_attempts
            )
        },
        abort_on_fail: false,
        diagnosis: Vec::new(),
    }
}

/// A capacity search's result from its steps, the cause at its first
/// failing step from the probes in that step's window.
fn capacity_report(
    plan: &Plan,
    searched: Option<crate::capacity::Searched>,
    probes: &crate::probe::ProbeReport,
    context: &crate::diagnosis::Context,
) -> Option<crate::capacity::CapacityReport> {
    let (capacity, searched) = plan.capacity.as_ref().zip(searched)?;
    let stack = crate::capacity::cause::Stack {
        pool_size: context.pool_size,
        cores: context.cores,
        max_users: plan.load.executor.max_users(),
    };
    Some(crate::capacity::report(
        capacity,
        &plan.thresholds,
        searched,
        |step| crate::capacity::cause::causes(&probes.samples, step, stack),
    ))
}

/// What a capacity run judges on the whole: what the suite says of the
/// capacity (`capacity.rate`); every other threshold was judged step by step.
fn capacity_thresholds(plan: &Plan, summary: &RunSummary) -> Vec<ThresholdResult> {
    let thresholds: Vec<_> = plan
        .thresholds
        .iter()
        .filter(|t| t.selector.metric.as_str() == crate::suite::plan::CAPACITY_RATE)
        .cloned()
        .collect();
    verdict::evaluate(summary, &thresholds)
}

/// A capacity search fails when no step held: the suite's thresholds fail
/// even at the lowest rate it tried. Its diagnosis is the first failing
/// step's causes.
fn capacity_found(capacity: &crate::capacity::CapacityReport) -> ThresholdResult {
    let broken = capacity.first_broken.as_ref();
    ThresholdResult {
        source: "capacity: a step held".to_owned(),
        metric: crate::suite::plan::CAPACITY_RATE.to_owned(),
        passed: capacity.rate.is_some(),
        observed: capacity.rate,
        observed_text: capacity.rate.map_or("none".to_owned(), |r| {
            format!("{} iterations/s", crate::capacity::number(r))
        }),
        detail: match (capacity.rate, broken) {
            (None, Some(broken)) => format!(
                "every step failed, down to {} iterations/s: {}",
                crate::capacity::number(broken.rate),
                broken.thresholds.join("; ")
            ),
            (None, None) => format!("no step was judged ({})", capacity.ended.text()),
            (Some(_), _) => capacity.line(),
        },
        abort_on_fail: false,
        diagnosis: broken.map(|b| b.causes.clone()).unwrap_or_default(),
    }
}

/// A run with browser users fails when one stopped before the load ended:
/// its pages were judged on the views it made before it died, or on none.
pub(super) fn browsers_lasted(summary: &RunSummary) -> Option<ThresholdResult> {
    let browser = summary.browser.as_ref()?;
    let stopped = browser.stopped.len();
    Some(ThresholdResult {
        source: "browser.stopped: count == 0".to_owned(),
        metric: "browser.stopped".to_owned(),
        passed: stopped == 0,
        observed: Some(stopped as f64),
        observed_text: stopped.to_string(),
        detail: browser.stopped.join("; "),
        abort_on_fail: false,
        diagnosis: Vec::new(),
    })
}

fn signal_name(signal: Option<i32>) -> String {
    match signal {
        Some(signal) => nix::sys::signal::Signal::try_from(signal)
            .map(|s| s.as_str().to_owned())
            .unwrap_or_else(|_| format!("signal {signal}")),
        None => "a signal".to_owned(),
    }
}
