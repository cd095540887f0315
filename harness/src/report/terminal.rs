//! The end-of-test summary, k6-like: each threshold ✓/✗ with its observed
//! value, a per-endpoint table with max and p99.9 beside the percentiles
//! (100-second outliers must not hide behind a fine p95), failures by kind,
//! and the warm-up apart.

#![allow(clippy::print_stdout)]

use std::fmt::Write as _;

use super::{Reporter, RunReport};
use crate::metrics::summary::EndpointSummary;

/// Renders the summary as text: one section after another, each its own
/// function.
pub fn render(report: &RunReport) -> String {
    let mut out = String::new();
    let sections: [fn(&RunReport, &mut String); 9] = [
        heading, thresholds, endpoints, failures, below_http, checks, logs, counters, verdict,
    ];
    for section in sections {
        section(report, &mut out);
    }
    out
}

/// The suite, the target, the stack and the run's notes.
fn heading(report: &RunReport, out: &mut String) {
    let summary = &report.summary;
    let _ = writeln!(
        out,
        "suite {} (profile {}) against {}",
        summary.suite, summary.profile, summary.target
    );
    let _ = writeln!(
        out,
        "  {:.1}s measured after {:.1}s warm-up, up to {} users",
        summary.measured_seconds, summary.warm_up_seconds, summary.max_users
    );
    if let Some(infra) = &report.infra {
        let _ = writeln!(
            out,
            "  stack: {} (ready in {:.1}s)",
            infra.provider, infra.time_to_ready_seconds
        );
    }
    if let Some(interruption) = &report.interrupted {
        let _ = writeln!(out, "  PARTIAL RUN: {}", interruption.describe());
    }
    for note in &report.notes {
        let _ = writeln!(out, "  note: {note}");
    }
    for line in super::shards::text_table(&report.shards) {
        let _ = writeln!(out, "  {line}");
    }
}

/// Each threshold ✓/✗ with its observed value and likely causes.
fn thresholds(report: &RunReport, out: &mut String) {
    if !report.thresholds.is_empty() {
        let _ = writeln!(out, "\nthresholds");
        let width = report
            .thresholds
            .iter()
            .map(|t| t.source.chars().count())
            .max()
            .unwrap_or(0);
        for threshold in &report.thresholds {
            let mark = if threshold.passed { "✓" } else { "✗" };
            let dots = ".".repeat(width.saturating_sub(threshold.source.chars().count()) + 2);
            let _ = write!(
                out,
                "  {mark} {} {dots} {}",
                threshold.source, threshold.observed_text
            );
            if !threshold.passed && !threshold.detail.is_empty() {
                let _ = write!(out, "  ({})", threshold.detail);
            }
            out.push('\n');
            for cause in &threshold.diagnosis {
                let _ = writeln!(out, "      ↳ {cause}");
            }
        }
    }
}

/// The measured endpoints, then the browser pages.
fn endpoints(report: &RunReport, out: &mut String) {
    let summary = &report.summary;
    let _ = writeln!(out, "\nendpoints (measured)");
    endpoint_table(out, &summary.endpoints, Some(&summary.total));

    if let Some(browser) = &summary.browser {
        let _ = writeln!(out, "\npages in real browsers (measured)");
        let _ = writeln!(out, "  {}", browser.headline());
        let header: Vec<String> = crate::browser::PAGE_COLUMNS
            .iter()
            .map(|c| c.to_string())
            .collect();
        page_line(out, &header);
        for row in browser.rows() {
            page_line(out, &row.cells());
        }
        let _ = writeln!(
            out,
            "  (times in ms from the start of the navigation; requests and KB: the median view)"
        );
        for error in &browser.errors {
            let _ = writeln!(out, "  browser: {error}");
        }
    }
}

/// Failures by endpoint and kind, the commonest first.
fn failures(report: &RunReport, out: &mut String) {
    let summary = &report.summary;
    let failures = summary.failures();
    if !failures.is_empty() {
        let _ = writeln!(out, "\nfailures");
        for failure in failures.iter().take(20) {
            let record = &failure.record;
            let _ = writeln!(
                out,
                "  {:<44} {:<22} {:>6}×  {:>7.1}s–{:.1}s  {}",
                clip(&failure.endpoint, 44),
                record.kind.name(),
                record.count,
                record.first_seen_ms as f64 / 1000.0,
                record.last_seen_ms as f64 / 1000.0,
                clip(&record.sample, 90)
            );
            if let Some(trace) = &record.trace_id {
                let _ = writeln!(out, "  {:<44} first one's trace {trace}", "");
            }
        }
        if failures.len() > 20 {
            let _ = writeln!(
                out,
                "  … and {} more kinds (see result.json)",
                failures.len() - 20
            );
        }
    }
    for line in super::traces::text_lines(summary) {
        let _ = writeln!(out, "{line}");
    }
}

/// What the probes saw below HTTP.
fn below_http(report: &RunReport, out: &mut String) {
    if let Some(probes) = &report.probes
        && !probes.values.is_empty()
    {
        let _ = writeln!(out, "\nbelow HTTP (probes, once a second)");
        let value = |name: &str| probes.values.get(name).copied();
        let mut line = |label: &str, text: Option<String>| {
            if let Some(text) = text {
                let _ = writeln!(out, "  {label:<22} {text}");
            }
        };
        line(
            "pgbouncer",
            value("pgbouncer.cl_waiting.max").map(|w| {
                format!(
                    "clients waiting max {w:.0}, servers active max {:.0}, longest wait {:.1}s",
                    value("pgbouncer.sv_active.max").unwrap_or(0.0),
                    value("pgbouncer.maxwait.max").unwrap_or(0.0)
                )
            }),
        );
        line(
            "postgres",
            value("postgres.deadlocks").map(|d| {
                format!(
                    "deadlocks {d:.0}, rollbacks {:.0}, lock waits max {:.0}, cache hit {:.1}%",
                    value("postgres.rollbacks").unwrap_or(0.0),
                    value("postgres.lock_waits.max").unwrap_or(0.0),
                    value("postgres.cache_hit_ratio").unwrap_or(0.0) * 100.0
                )
            }),
        );
        line(
            "redis",
            value("redis.hits").map(|h| {
                format!(
                    "hit ratio {}, {h:.0} hits, {:.0} misses, {:.0} evictions, memory max {:.1} MB",
                    value("redis.hit_ratio")
                        .map_or("n/a".to_owned(), |r| format!("{:.1}%", r * 100.0)),
                    value("redis.misses").unwrap_or(0.0),
                    value("redis.evicted_keys").unwrap_or(0.0),
                    value("redis.memory.max").unwrap_or(0.0)
                )
            }),
        );
        for service in crate::probe::SERVICE_NAMES {
            line(
                &format!("{service} process"),
                value(&format!("service.{service}.memory.max")).map(|m| {
                    let growth = value(&format!("service.{service}.memory.growth")).unwrap_or(0.0);
                    // A browser that frees what a page took shrinks: "grew
                    // -354.1 MB" reads as a typo.
                    let change = if growth < -0.05 {
                        format!("shrank {:.1} MB", -growth)
                    } else {
                        format!("grew {:.1} MB", growth.max(0.0))
                    };
                    format!(
                        "memory max {m:.1} MB ({change}), CPU avg {:.0}% max {:.0}%",
                        value(&format!("service.{service}.cpu.avg")).unwrap_or(0.0),
                        value(&format!("service.{service}.cpu.max")).unwrap_or(0.0)
                    )
                }),
            );
        }
    }
}

/// Queries per request, write integrity, correctness and route coverage.
fn checks(report: &RunReport, out: &mut String) {
    let summary = &report.summary;
    if !report.query_budgets.is_empty() {
        let _ = writeln!(out, "\nqueries per request (each task alone)");
        for measure in &report.query_budgets {
            let _ = writeln!(
                out,
                "  {:<52} {:>6.1}{}",
                clip(&measure.task, 52),
                measure.per_request,
                if measure.successes < measure.requests {
                    format!(
                        "  ({} of {} failed)",
                        measure.requests - measure.successes,
                        measure.requests
                    )
                } else {
                    String::new()
                }
            );
        }
    }
    if let Some(integrity) = &report.integrity {
        let _ = writeln!(
            out,
            "\nwrite integrity: {} acknowledged writes on {} rows, {} lost updates, {} audit mismatches, {} conflicts (409) counted apart",
            integrity.acknowledged_writes,
            integrity.rows_checked,
            integrity.lost_updates,
            integrity.audit_mismatches,
            summary.endpoints.iter().map(|e| e.conflicts).sum::<u64>()
        );
        for violation in integrity.violations.iter().take(5) {
            let _ = writeln!(
                out,
                "  {} {}: {} — expected {}, found {}",
                violation.table,
                violation.key,
                violation.problem,
                violation.expected,
                violation.found
            );
        }
    }
    if let Some(correctness) = &report.correctness {
        let _ = writeln!(
            out,
            "\ncorrectness under load: {} sampled responses, {} disagree with the database",
            correctness.samples, correctness.mismatches
        );
        for mismatch in correctness.examples.iter().take(3) {
            let _ = writeln!(
                out,
                "  {} at {:.1}s: answered {}, database {}",
                mismatch.task, mismatch.at_second, mismatch.observed, mismatch.expected
            );
        }
    }
    if let Some(coverage) = &report.coverage {
        let categories: Vec<String> = coverage
            .categories
            .iter()
            .map(|c| {
                format!(
                    "{} {}/{} ({:.0}%)",
                    c.category,
                    c.exercised,
                    c.routes,
                    c.fraction * 100.0
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "\ncoverage of the target's routes: {:.0}% overall; {}",
            coverage.overall * 100.0,
            categories.join(", ")
        );
    }
}

/// Known signatures in the services' logs.
fn logs(report: &RunReport, out: &mut String) {
    if !report.log_signatures.is_empty() {
        let _ = writeln!(out, "\nin the logs");
        for hit in &report.log_signatures {
            let _ = writeln!(
                out,
                "  {:<10} {:<28} {:>6}×  {:.1}s–{:.1}s  {}",
                hit.service,
                hit.signature,
                hit.count,
                hit.first_second,
                hit.last_second,
                clip(&hit.sample, 80)
            );
        }
    }
}

/// Iterations, checks and logins; the hang, the warm-up and what the selection left out.
fn counters(report: &RunReport, out: &mut String) {
    let summary = &report.summary;
    let counters = &summary.counters;
    let checks = counters.checks_passed + counters.checks_failed;
    let _ = writeln!(
        out,
        "\niterations {} ({} dropped, {} skipped for want of data, {} interrupted), checks {}, logins {}/{}",
        counters.iterations,
        counters.dropped_iterations,
        counters.skipped,
        counters.interrupted,
        if checks == 0 {
            "none".to_owned()
        } else {
            format!("{}/{}", counters.checks_passed, checks)
        },
        counters.login_successes,
        counters.login_attempts
    );
    if let Some(hang) = summary.hang_note() {
        let _ = writeln!(out, "HUNG: {hang}");
    }
    let warm_requests: u64 = summary.warm_up.iter().map(|e| e.requests).sum();
    let warm_failures: u64 = summary.warm_up.iter().map(|e| e.failures).sum();
    if summary.warm_up_seconds > 0.0 {
        let _ = writeln!(
            out,
            "warm-up (not judged): {warm_requests} requests, {warm_failures} failures, {} logins",
            summary.warm_up_counters.login_successes
        );
    }
    if !summary.selection.excluded.is_empty() {
        let excluded: Vec<String> = summary
            .selection
            .excluded
            .iter()
            .map(|(task, why)| format!("{task} ({why})"))
            .collect();
        let _ = writeln!(out, "not run: {}", excluded.join(", "));
    }
    if !summary.selection.skipped_thresholds.is_empty() {
        let _ = writeln!(
            out,
            "not judged: {}",
            summary.selection.skipped_thresholds.join(", ")
        );
    }
}

/// The verdict, last.
fn verdict(report: &RunReport, out: &mut String) {
    let verdict = match (&report.interrupted, report.passed) {
        // Only a shard judges nothing (every other run counts its tasks).
        (_, true) if report.thresholds.is_empty() => {
            "NOT JUDGED: a shard's part of the load; `cargo xtask perf merge` of every shard judges the whole"
        }
        (Some(_), true) => "PARTIAL: interrupted; every threshold held on what was measured",
        (Some(_), false) => "PARTIAL: interrupted; a threshold did not hold on what was measured",
        (None, true) => "PASSED: every threshold held",
        (None, false) => "FAILED: a threshold did not hold",
    };
    let _ = writeln!(out, "\n{verdict}");
}

/// Count, failures, percentiles, max and rate per endpoint.
pub fn endpoint_table(
    out: &mut String,
    endpoints: &[EndpointSummary],
    total: Option<&EndpointSummary>,
) {
    let _ = writeln!(
        out,
        "  {:<44} {:>7} {:>6} {:>8} {:>8} {:>8} {:>9} {:>9} {:>7}",
        "name", "reqs", "fails", "p50 ms", "p95 ms", "p99 ms", "p99.9 ms", "max ms", "rps"
    );
    for endpoint in endpoints.iter().chain(total) {
        let latency = &endpoint.latency_ms;
        let label = if endpoint.meta.method.is_empty() {
            endpoint.meta.name.clone()
        } else {
            format!("{} {}", endpoint.meta.method, endpoint.meta.name)
        };
        if endpoint.requests == 0 {
            let _ = writeln!(
                out,
                "  {:<44} {:>7} {:>6}   (no requests)",
                clip(&label, 44),
                0,
                0
            );
            continue;
        }
        let _ = writeln!(
            out,
            "  {:<44} {:>7} {:>6} {:>8.1} {:>8.1} {:>8.1} {:>9.1} {:>9.1} {:>7.1}",
            clip(&label, 44),
            endpoint.requests,
            endpoint.failures,
            latency.p50,
            latency.p95,
            latency.p99,
            latency.p999,
            latency.max,
            endpoint.requests_per_second
        );
    }
}

/// One line of the browser pages' table: a name, ten figures, the slowest resource.
fn page_line(out: &mut String, c: &[String]) {
    let _ = writeln!(
        out,
        "  {:<36} {:>5} {:>5} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>6}  {}",
        clip(&c[0], 36),
        c[1],
        c[2],
        c[3],
        c[4],
        c[5],
        c[6],
        c[7],
        c[8],
        c[9],
        c[10],
        c[11]
    );
}

fn clip(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_owned()
    } else {
        let mut clipped: String = text.chars().take(width - 1).collect();
        clipped.push('…');
        clipped
    }
}

/// Prints the summary to standard output.
/// The summary on standard output, with the run's secrets masked.
#[derive(Debug, Default)]
pub struct TerminalReporter {
    pub redactor: crate::redact::Redactor,
}

impl Reporter for TerminalReporter {
    fn finished(&mut self, report: &RunReport) -> anyhow::Result<()> {
        println!("{}", self.redactor.text(&render(report)));
        Ok(())
    }
}
