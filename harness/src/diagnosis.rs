//! Diagnosis: the likely cause beside each failing threshold, from what the
//! probes, the logs, the histograms and the checks saw. A pure function of
//! the report, like the verdict.
//!
//! The history found its causes by hand, days later: login 500s were
//! PgBouncer's queue wait timeout, visible only in PgBouncer's log; 100-second
//! outliers were a shared timeout; chart-data made 28 queries a request.

use crate::metrics::summary::EndpointSummary;
use crate::report::RunReport;
use crate::suite::metric::Metric;
use crate::suite::threshold::Selector;
use crate::verdict::ThresholdResult;

mod browser;
mod failures;
mod faults;
mod histogram;
pub(crate) mod machine;

use self::browser::browser_causes;
use self::failures::explain_kind;
use self::faults::{faults, stall};
pub use self::histogram::{bimodal, shared_timeout};
use self::machine::cpu_saturated;

/// Facts about the stack the diagnosis needs to explain numbers.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// PgBouncer's default_pool_size.
    pub pool_size: Option<u32>,
    /// PgBouncer's query_wait_timeout, in seconds.
    pub query_wait_timeout: Option<f64>,
    /// PostgreSQL ran without fsync (and so with synchronous_commit off).
    pub postgres_unsynced: bool,
    /// The machine's cores (a process at `100 × cores` % has them all).
    pub cores: usize,
}

/// Attaches likely causes to every failing threshold that has none yet
/// (a capacity search names the causes at its first failing step).
pub fn diagnose(report: &mut RunReport, context: &Context) {
    let findings = Findings::gather(report, context);
    let mut results = std::mem::take(&mut report.thresholds);
    for result in results
        .iter_mut()
        .filter(|r| !r.passed && r.diagnosis.is_empty())
    {
        result.diagnosis = findings.for_threshold(report, result);
    }
    report.thresholds = results;
}

struct Findings {
    /// A process that had all the CPU it could use.
    cpu: Option<String>,
    pgbouncer: Option<String>,
    leak: Option<String>,
    lock_waits: Option<String>,
    slow_statement: Option<String>,
    logs: Vec<(String, String)>,
    cache: Option<String>,
    /// The longest stall and what the probes saw during it.
    stall: Option<String>,
    /// The suite's faults, each with where it acted.
    faults: Vec<String>,
    postgres_unsynced: bool,
}

fn value(report: &RunReport, name: &str) -> Option<f64> {
    report.summary.extra.get(name).copied()
}

impl Findings {
    fn gather(report: &RunReport, context: &Context) -> Findings {
        let waiting = value(report, "pgbouncer.cl_waiting.max").unwrap_or(0.0);
        let maxwait = value(report, "pgbouncer.maxwait.max").unwrap_or(0.0);
        let timeouts = report
            .log_signatures
            .iter()
            .find(|h| h.signature == "query_wait_timeout");
        let pgbouncer = (waiting > 0.0 || timeouts.is_some()).then(|| {
            let mut text = format!(
                "PgBouncer had up to {waiting:.0} clients waiting for a server connection on a pool of {}; the longest wait was {maxwait:.1}s",
                context.pool_size.map_or("?".to_owned(), |p| p.to_string())
            );
            if let Some(timeout) = context.query_wait_timeout {
                text.push_str(&format!(" (query_wait_timeout {timeout:.0}s)"));
            }
            if let Some(hit) = timeouts {
                text.push_str(&format!(
                    "; pgbouncer.log: `query_wait_timeout` ×{} between {:.1}s and {:.1}s — clients dropped after waiting, which the application answers with 500",
                    hit.count, hit.first_second, hit.last_second
                ));
            }
            text
        });
        let cpu = cpu_saturated(
            |service| value(report, &format!("service.{service}.cpu.max")),
            context.cores,
        );
        let idle_in_transaction = value(report, "postgres.idle_in_transaction.max").unwrap_or(0.0);
        let servers_active = value(report, "pgbouncer.sv_active.max").unwrap_or(0.0);
        // A fault on the database's path or service holds transactions open
        // too: then an idle transaction is the fault's doing, not a leak.
        let database_fault = report
            .summary
            .faults
            .iter()
            .any(|f| f.subject == "pgbouncer" || f.subject == "postgres");
        let leak = (!database_fault && (idle_in_transaction >= 2.0 || (context.pool_size.is_some_and(|p| servers_active >= f64::from(p)) && waiting > 0.0)))
            .then(|| {
                format!(
                    "connections are taken and not given back: PostgreSQL had up to {idle_in_transaction:.0} sessions idle in a transaction while PgBouncer's servers were {servers_active:.0} busy and {waiting:.0} clients waited"
                )
            });
        let lock_waits = value(report, "postgres.lock_waits.max")
            .filter(|w| *w > 0.0)
            .map(|w| {
                let log = report
                    .log_signatures
                    .iter()
                    .find(|h| {
                        h.signature == "lock timeout" || h.signature == "lock wait (log_lock_waits)"
                    })
                    .map(|h| format!("; postgres.log: {} ×{}", h.signature, h.count))
                    .unwrap_or_default();
                format!("up to {w:.0} PostgreSQL backends waited on a lock{log}")
            });
        let slow_statement = report
            .probes
            .as_ref()
            .and_then(|p| p.top_statements.first())
            .filter(|s| s.mean_ms >= 50.0)
            .map(|s| {
                format!(
                    "the slowest statement took {:.0}ms on average over {:.0} calls: `{}`",
                    s.mean_ms, s.calls, s.query
                )
            });
        let logs = report
            .log_signatures
            .iter()
            .filter(|h| h.signature != "query_wait_timeout")
            .map(|h| {
                (
                    h.signature.clone(),
                    format!(
                        "{}.log: {} ×{} between {:.1}s and {:.1}s (`{}`)",
                        h.service, h.signature, h.count, h.first_second, h.last_second, h.sample
                    ),
                )
            })
            .collect();
        let cache = match (value(report, "redis.hits"), value(report, "redis.misses")) {
            (Some(hits), Some(misses)) if hits + misses > 0.0 => Some(format!(
                "Redis answered {hits:.0} hits and {misses:.0} misses ({:.1}% hits){}",
                hits / (hits + misses) * 100.0,
                if hits == 0.0 {
                    ": nothing was served from the cache"
                } else {
                    ""
                }
            )),
            (Some(0.0), Some(_)) => {
                Some("Redis saw no cache reads at all: the cache is not used".to_owned())
            }
            _ => None,
        };
        Findings {
            cpu,
            pgbouncer,
            leak,
            lock_waits,
            slow_statement,
            logs,
            cache,
            stall: stall(report),
            faults: faults(report),
            postgres_unsynced: context.postgres_unsynced,
        }
    }

    fn for_threshold(&self, report: &RunReport, result: &ThresholdResult) -> Vec<String> {
        let selector: Option<Selector> = result
            .source
            .split_once(": ")
            .and_then(|(s, _)| s.parse().ok());
        let metric: Metric = result
            .metric
            .parse()
            .unwrap_or_else(|never: std::convert::Infallible| match never {});
        let mut causes = Vec::new();
        let selection: Vec<&EndpointSummary> = match &selector {
            Some(selector) => report
                .summary
                .endpoints
                .iter()
                .filter(|e| selector.filter("name").is_none_or(|n| e.meta.name == n))
                .filter(|e| {
                    selector
                        .filter("tag")
                        .is_none_or(|t| e.meta.tags.iter().any(|x| x == t))
                })
                .collect(),
            None => report.summary.endpoints.iter().collect(),
        };
        // A fault the suite injected comes first: it is the cause the run
        // was built to show.
        if matches!(
            metric,
            Metric::HttpDuration
                | Metric::HttpFailed
                | Metric::HttpSucceeded
                | Metric::Failures
                | Metric::AuthSuccess
                | Metric::Checks
                | Metric::HttpLongestStall
                | Metric::HttpStalledSeconds
                | Metric::HttpInflightAge
                | Metric::RecoveryTime
        ) {
            causes.extend(self.faults.iter().cloned());
        }
        match &metric {
            metric if metric.is_browser() => {
                let page = selector.as_ref().and_then(|s| s.filter("page"));
                causes.extend(browser_causes(report, page, metric));
                if *metric == Metric::BrowserTtfb {
                    causes.extend(self.slow_statement.clone());
                    causes.extend(self.pgbouncer.clone());
                }
            }
            Metric::HttpDuration | Metric::AuthDuration => {
                let combined = report.summary.combined(selection.iter().copied());
                causes.extend(self.cpu.clone());
                causes.extend(shared_timeout(&combined.histogram.0));
                causes.extend(bimodal(&combined.histogram.0));
                causes.extend(self.lock_waits.clone());
                causes.extend(self.slow_statement.clone());
                causes.extend(self.pgbouncer.clone());
                causes.extend(self.leak.clone());
                causes.extend(
                    self.logs
                        .iter()
                        .filter(|(s, _)| s.contains("timeout") || s.contains("lock"))
                        .map(|(_, t)| t.clone()),
                );
            }
            Metric::HttpFailed
            | Metric::HttpSucceeded
            | Metric::Failures
            | Metric::AuthSuccess
            | Metric::Checks
            | Metric::TasksExecuted => causes.extend(self.failures(report, &metric, &selection)),
            Metric::HttpLongestStall | Metric::HttpStalledSeconds | Metric::HttpInflightAge => {
                causes.extend(self.stall.clone());
                causes.extend(self.cpu.clone());
                causes.extend(self.pgbouncer.clone());
                causes.extend(self.logs.iter().map(|(_, t)| t.clone()));
            }
            Metric::QueriesPerRequest => {
                match result.observed {
                    Some(observed) if observed >= 10.0 => causes.push(format!(
                        "{observed:.1} SQL statements per request: a query per row (N+1) where one aggregated query would do"
                    )),
                    Some(observed) => causes.push(format!(
                        "{observed:.1} SQL statements per request, measured alone over repeated requests: a page that should come from the cache went to the database"
                    )),
                    None => {}
                }
                causes.extend(self.cache.clone());
                causes.extend(self.slow_statement.clone());
            }
            Metric::Extra(m) => causes.extend(self.for_extra(report, m)),
            _ => {}
        }
        causes
    }
    /// Causes of a failed request, a failed login or a failed check: the
    /// commonest kinds of failure explained, then what starved the target.
    fn failures(
        &self,
        report: &RunReport,
        metric: &Metric,
        selection: &[&EndpointSummary],
    ) -> Vec<String> {
        let mut causes = Vec::new();
        let relevant: Vec<&EndpointSummary> = if *metric == Metric::AuthSuccess {
            report
                .summary
                .endpoints
                .iter()
                .chain(&report.summary.warm_up)
                .filter(|e| e.meta.is_auth_flow())
                .collect()
        } else {
            selection.to_vec()
        };
        let mut kinds: Vec<(String, String, u64, String)> = relevant
            .iter()
            .flat_map(|e| {
                e.failure_kinds.iter().map(|f| {
                    (
                        e.meta.name.clone(),
                        f.kind.name(),
                        f.count,
                        f.sample.clone(),
                    )
                })
            })
            .collect();
        kinds.sort_by_key(|kind| std::cmp::Reverse(kind.2));
        for (endpoint, kind, count, sample) in kinds.iter().take(2) {
            causes.push(format!(
                "{count}× {kind} on {endpoint}: {}",
                explain_kind(kind, sample)
            ));
        }
        if kinds
            .iter()
            .any(|k| k.1 == "interrupted" || k.1 == "timeout")
        {
            causes.extend(self.stall.clone());
        }
        causes.extend(self.pgbouncer.clone());
        causes.extend(self.leak.clone());
        causes.extend(
            self.logs
                .iter()
                .filter(|(s, _)| {
                    s.contains("5xx")
                        || s == "panic"
                        || s.contains("slots")
                        || s.contains("clients")
                })
                .map(|(_, t)| t.clone()),
        );
        causes
    }

    /// Causes of a figure the probes or the checks measured, by its name.
    fn for_extra(&self, report: &RunReport, m: &str) -> Vec<String> {
        let mut causes = Vec::new();
        match m {
            m if m.starts_with("redis.") => causes.extend(self.cache.clone()),
            m if m.starts_with("pgbouncer.") => {
                causes.extend(self.pgbouncer.clone());
                causes.extend(self.leak.clone());
            }
            m if m.starts_with("integrity.") => {
                let crashed = report.summary.faults.iter().any(|f| {
                    f.subject == "postgres" && matches!(f.action.as_str(), "kill" | "restart")
                });
                if crashed && self.postgres_unsynced {
                    causes.push("PostgreSQL ran with fsync and synchronous_commit off (the harness's fast default) and a fault stopped it: a commit acknowledged just before a crash is lost by design; set `[infra.postgres] fsync = true` to test durability".to_owned());
                }
                if let Some(integrity) = &report.integrity {
                    for violation in integrity.violations.iter().take(3) {
                        causes.push(format!(
                            "{} {}: {} — expected {}, found {}",
                            violation.table,
                            violation.key,
                            violation.problem,
                            violation.expected,
                            violation.found
                        ));
                    }
                }
            }
            m if m.starts_with("correctness.") => {
                if let Some(correctness) = &report.correctness {
                    for mismatch in correctness.examples.iter().take(3) {
                        causes.push(format!(
                            "{} at {:.1}s answered {} where the database says {}",
                            mismatch.task, mismatch.at_second, mismatch.observed, mismatch.expected
                        ));
                    }
                }
            }
            m if m.starts_with("service.") => {
                let service = m.split('.').nth(1).unwrap_or_default();
                if let (Some(max), Some(growth)) = (
                    value(report, &format!("service.{service}.memory.max")),
                    value(report, &format!("service.{service}.memory.growth")),
                ) {
                    causes.push(format!(
                        "{service}'s memory grew by {growth:.1} MB during the run, to {max:.1} MB"
                    ));
                }
            }
            m if m.starts_with("postgres.") => {
                causes.extend(self.lock_waits.clone());
                causes.extend(
                    self.logs
                        .iter()
                        .filter(|(s, _)| s.contains("deadlock"))
                        .map(|(_, t)| t.clone()),
                );
            }
            _ => {}
        }
        causes
    }
}
