//! Diagnosis: the likely cause beside each failing threshold, from what the
//! probes, the logs, the histograms and the checks saw. A pure function of
//! the report, like the verdict.
//!
//! The history found its causes by hand, days later: login 500s were
//! PgBouncer's queue wait timeout, visible only in PgBouncer's log; 100-second
//! outliers were a shared timeout; chart-data made 28 queries a request.

use hdrhistogram::Histogram;

use crate::metrics::summary::EndpointSummary;
use crate::report::RunReport;
use crate::suite::metric::Metric;
use crate::suite::threshold::Selector;
use crate::verdict::ThresholdResult;

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

/// Attaches likely causes to every failing threshold.
pub fn diagnose(report: &mut RunReport, context: &Context) {
    let findings = Findings::gather(report, context);
    let mut results = std::mem::take(&mut report.thresholds);
    for result in results.iter_mut().filter(|r| !r.passed) {
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
            | Metric::TasksExecuted => {
                let relevant: Vec<&EndpointSummary> = if metric == Metric::AuthSuccess {
                    report
                        .summary
                        .endpoints
                        .iter()
                        .chain(&report.summary.warm_up)
                        .filter(|e| e.meta.is_auth_flow())
                        .collect()
                } else {
                    selection.clone()
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
            }
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
            Metric::Extra(m) if m.starts_with("redis.") => causes.extend(self.cache.clone()),
            Metric::Extra(m) if m.starts_with("pgbouncer.") => {
                causes.extend(self.pgbouncer.clone());
                causes.extend(self.leak.clone());
            }
            Metric::Extra(m) if m.starts_with("integrity.") => {
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
            Metric::Extra(m) if m.starts_with("correctness.") => {
                if let Some(correctness) = &report.correctness {
                    for mismatch in correctness.examples.iter().take(3) {
                        causes.push(format!(
                            "{} at {:.1}s answered {} where the database says {}",
                            mismatch.task, mismatch.at_second, mismatch.observed, mismatch.expected
                        ));
                    }
                }
            }
            Metric::Extra(m) if m.starts_with("service.") => {
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
            Metric::Extra(m) if m.starts_with("postgres.") => {
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

fn explain_kind(kind: &str, sample: &str) -> String {
    match kind {
        "rate-limited" => format!(
            "the target limits login attempts per IP and answered 200 with its message (`{sample}`)"
        ),
        "csrf-rejected" => {
            format!("the endpoint requires a CSRF token this client does not send (`{sample}`)")
        }
        "login-page-returned" => {
            format!("the login did not take — the form came back (`{sample}`)")
        }
        "timeout" => format!("no answer within the client timeout (`{sample}`)"),
        _ => format!("`{sample}`"),
    }
}

/// Requests piling up just below the slowest: a timeout they all hit.
pub fn shared_timeout(histogram: &Histogram<u64>) -> Option<String> {
    if histogram.len() < 5 {
        return None;
    }
    let max = histogram.max();
    let median = histogram.value_at_quantile(0.5).max(1);
    if max < median * 10 || max < 100_000 {
        return None;
    }
    // A timeout ends requests at one duration, give or take scheduling: a
    // spike in the last 3 % below the maximum, denser than the spread of
    // requests that merely waited a while (which a lock released early).
    let floor = max - max * 3 / 100;
    let clustered: u64 = histogram
        .iter_recorded()
        .filter(|v| v.value_iterated_to() >= floor)
        .map(|v| v.count_at_value())
        .sum();
    let below: u64 = histogram
        .iter_recorded()
        .filter(|v| v.value_iterated_to() >= max / 2 && v.value_iterated_to() < floor)
        .map(|v| v.count_at_value())
        .sum();
    let middle = below;
    (clustered >= 2 && middle <= clustered / 2).then(|| {
        format!(
            "{clustered} requests ended between {:.1}s and {:.1}s while the median was {:.1}ms — a shared timeout they all hit (lock_timeout, statement_timeout, a worker or proxy timeout)",
            floor as f64 / 1e6,
            max as f64 / 1e6,
            median as f64 / 1000.0
        )
    })
}

/// Two separate groups of latencies (a cache hit and a miss, say).
pub fn bimodal(histogram: &Histogram<u64>) -> Option<String> {
    let total = histogram.len();
    if total < 50 {
        return None;
    }
    // Latencies in buckets of a quarter of a power of two.
    let mut buckets = [0u64; 160];
    for v in histogram.iter_recorded() {
        let index = ((v.value_iterated_to().max(1) as f64).log2() * 4.0) as usize;
        buckets[index.min(buckets.len() - 1)] += v.count_at_value();
    }
    let peaks: Vec<usize> = (0..buckets.len())
        .filter(|&i| buckets[i] > 0)
        .filter(|&i| {
            (i == 0 || buckets[i] >= buckets[i - 1])
                && (i + 1 == buckets.len() || buckets[i] > buckets[i + 1])
        })
        .filter(|&i| buckets[i] * 10 >= total)
        .collect();
    for pair in peaks.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if b - a < 8 {
            continue; // less than a fourfold difference
        }
        let valley = buckets[a..=b].iter().min().copied().unwrap_or(0);
        if valley * 5 <= buckets[a].min(buckets[b]) {
            let around = |i: usize| 2f64.powf(i as f64 / 4.0) / 1000.0;
            let share = |from: usize, to: usize| {
                buckets[from..to].iter().sum::<u64>() as f64 / total as f64 * 100.0
            };
            let split = (a + b) / 2;
            return Some(format!(
                "bimodal: one group near {:.1}ms ({:.0}%), another near {:.1}ms ({:.0}%) — two paths, such as a cache hit and a miss",
                around(a),
                share(0, split),
                around(b),
                share(split, buckets.len())
            ));
        }
    }
    None
}

/// Each fault, where it acted and when; for a fault on the target's path to
/// a service, whether the probes (which reach the service directly) kept
/// getting answers — then the time was lost on the path, not in the service.
fn faults(report: &RunReport) -> Vec<String> {
    let end = report
        .summary
        .series
        .last()
        .map_or(0.0, |p| p.second as f64 + 1.0);
    report
        .summary
        .faults
        .iter()
        .map(|fault| {
            let to = fault.to_second.unwrap_or(end);
            let mut text = format!(
                "the suite's fault `{}` acted from {:.1}s to {}",
                fault.fault,
                fault.from_second,
                fault
                    .to_second
                    .map_or("the end of the run".to_owned(), |t| format!("{t:.1}s"))
            );
            if fault.is_network() {
                let service = fault.subject.as_str();
                text.push_str(&format!(" on the target's network path to {service}"));
                let answered = report.probes.as_ref().map(|probes| {
                    let during: Vec<_> = probes
                        .samples
                        .iter()
                        .filter(|s| (s.second as f64) >= fault.from_second && (s.second as f64) < to)
                        .collect();
                    let answered = during
                        .iter()
                        .filter(|s| match service {
                            "redis" => s.redis.is_some(),
                            _ => s.pgbouncer.is_some(),
                        })
                        .count();
                    (answered, during.len())
                });
                if let Some((answered, sampled)) = answered
                    && sampled > 0
                {
                    text.push_str(&format!(
                        "; {service} itself answered {answered} of {sampled} direct probes meanwhile, so the time went on the path, not in a slow statement or a busy service"
                    ));
                }
            }
            text
        })
        .collect()
}

/// The longest stall, and what the probes saw in it: which service stopped
/// answering (it answered before the stall and not during it), and whether
/// the target's process was there.
fn stall(report: &RunReport) -> Option<String> {
    let stalls = &report.summary.stalls;
    let from = stalls.longest_from_second?;
    let until = from + stalls.longest_seconds;
    let in_flight = report
        .summary
        .series
        .iter()
        .filter(|p| p.second >= from && p.second < until)
        .map(|p| p.in_flight)
        .max()
        .unwrap_or(0);
    let mut text = format!(
        "nothing completed for {}s from second {from} while up to {in_flight} requests waited",
        stalls.longest_seconds
    );
    let Some(probes) = &report.probes else {
        return Some(text);
    };
    let before: Vec<_> = probes.samples.iter().filter(|s| s.second < from).collect();
    let during: Vec<_> = probes
        .samples
        .iter()
        .filter(|s| s.second >= from && s.second < until)
        .collect();
    if during.is_empty() {
        return Some(text);
    }
    type Answered = fn(&crate::probe::ProbeSample) -> bool;
    let services: [(&str, Answered); 3] = [
        ("redis", |s| s.redis.is_some()),
        ("pgbouncer", |s| s.pgbouncer.is_some()),
        ("postgres", |s| s.postgres.is_some()),
    ];
    let mut silent = Vec::new();
    for (name, answered) in services {
        let answered_before = before.iter().any(|s| answered(s));
        let silent_during = during.iter().filter(|s| !answered(s)).count();
        if answered_before && silent_during * 2 >= during.len() {
            let last = before
                .iter()
                .rev()
                .find(|s| answered(s))
                .map_or(0, |s| s.second);
            silent.push(format!(
                "{name} (last answered the probes at second {last})"
            ));
        }
    }
    if silent.is_empty() {
        text.push_str("; every service of the stack kept answering the probes");
    } else {
        text.push_str(&format!(
            "; stopped answering the probes: {}",
            silent.join(", ")
        ));
    }
    let target: Vec<_> = during
        .iter()
        .flat_map(|s| s.services.iter().filter(|p| p.name == "app"))
        .collect();
    if !target.is_empty() {
        let stopped = target.iter().filter(|p| p.stopped).count();
        if stopped * 2 >= target.len() {
            text.push_str(&format!(
                "; the target's process was there but stopped (paused: SIGSTOP or a frozen cgroup) in {stopped} of {} probed seconds: the target itself stopped",
                target.len()
            ));
        } else if target.iter().all(|p| p.running) {
            let cpu = target.iter().map(|p| p.cpu_percent).sum::<f64>() / target.len() as f64;
            if silent.is_empty() && cpu < 1.0 {
                text.push_str(&format!(
                    "; the target's process was alive but idle (CPU {cpu:.1}%) while the stack answered: the target itself stopped (paused, or blocked outside the stack)"
                ));
            } else {
                text.push_str(&format!(
                    "; the target's process was alive (CPU {cpu:.0}%): it waited on the stack instead of answering"
                ));
            }
        } else {
            text.push_str("; the target's process was gone");
        }
    }
    Some(text)
}

/// Where a page's browser time went: beside the server time the HTTP tasks
/// measured for the same route (a task named like the page), else the
/// page's own time to first byte; then the long tasks and the slowest
/// resource. The history's "login page p95 2.1 s, server under 200 ms".
fn browser_causes(report: &RunReport, page: Option<&str>, metric: &Metric) -> Vec<String> {
    let Some(browser) = &report.summary.browser else {
        return Vec::new();
    };
    let p95 =
        |h: &Histogram<u64>| (!h.is_empty()).then(|| h.value_at_quantile(0.95) as f64 / 1000.0);
    let mut causes = Vec::new();
    for summary in browser
        .pages
        .iter()
        .filter(|p| page.is_none_or(|name| p.page == name))
        .filter(|p| p.views > 0)
    {
        if *metric == Metric::BrowserFailed || summary.failed > 0 {
            for failure in summary.failures.iter().take(2) {
                causes.push(format!(
                    "{} of {} views of {} failed: {failure}",
                    summary.failed, summary.views, summary.page
                ));
            }
        }
        let Some(browser_ms) = crate::verdict::page_histogram(summary, metric)
            .filter(|_| metric.is_duration())
            .and_then(p95)
        else {
            continue;
        };
        let server = report
            .summary
            .endpoints
            .iter()
            .find(|e| e.meta.name == summary.page && e.requests > 0)
            .map(|e| {
                (
                    e.histogram.0.value_at_quantile(0.95) as f64 / 1000.0,
                    format!(
                        "the HTTP tasks' {} {} p95 over {} requests",
                        e.meta.method, e.meta.name, e.requests
                    ),
                )
            })
            .or_else(|| {
                p95(&summary.ttfb.0)
                    .map(|t| (t, "the page's own time to first byte, p95".to_owned()))
            });
        if let Some((server_ms, what)) = server
            && *metric != Metric::BrowserTtfb
            && browser_ms >= 3.0 * server_ms
            && browser_ms - server_ms >= 300.0
        {
            causes.push(format!(
                "{metric} p95 on {} is {browser_ms:.0}ms while the server answered in {server_ms:.1}ms ({what}): {:.0}% of the wait is in the browser, not the server",
                summary.page,
                (browser_ms - server_ms) / browser_ms * 100.0
            ));
        }
        if let Some(tbt) = p95(&summary.tbt.0).filter(|t| *t >= 0.3 * browser_ms && *t >= 100.0) {
            let longest = summary
                .worst
                .as_ref()
                .and_then(|w| w.long_tasks_ms.iter().copied().reduce(f64::max))
                .map(|l| format!(" (the worst view's longest task: {l:.0}ms)"))
                .unwrap_or_default();
            causes.push(format!(
                "long tasks held the browser's main thread: total blocking time p95 {tbt:.0}ms on {}{longest} — a page script computing before it renders (a slow script)",
                summary.page
            ));
        }
        if let Some(slowest) = &summary.slowest_resource {
            let share = if slowest.duration_ms >= 0.3 * browser_ms {
                "the page waited on it"
            } else {
                "not what the page waited on"
            };
            causes.push(format!(
                "slowest resource of {}: {} ({}) {:.0}ms, {share}",
                summary.page,
                crate::browser::short_url(&slowest.name),
                slowest.kind,
                slowest.duration_ms
            ));
        }
    }
    causes
}

/// The process that used all the CPU it could: the target or PostgreSQL
/// every core (`cores` × 100 %, at 85 % of it), PgBouncer or Redis their one
/// thread. Waiting for CPU looks like waiting for the stack from outside.
fn cpu_saturated(cpu_max: impl Fn(&str) -> Option<f64>, cores: usize) -> Option<String> {
    let cores = cores.max(1);
    [("app", cores), ("postgres", cores), ("pgbouncer", 1), ("redis", 1)]
        .into_iter()
        .filter_map(|(service, usable)| {
            let max = cpu_max(service)?;
            (max >= 85.0 * usable as f64).then_some((service, usable, max))
        })
        .max_by(|a, b| a.2.total_cmp(&b.2))
        .map(|(service, usable, max)| {
            let whole = if usable == 1 {
                "its one thread's worth".to_owned()
            } else {
                format!("all {usable} cores of the machine")
            };
            let name = if service == "app" { "the target" } else { service };
            format!(
                "{name} used up to {max:.0}% CPU, {whole}: requests waited for CPU (a CPU-bound step such as password hashing, or too little CPU for the load), not for a slow statement or a busy pool"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::new_histogram;

    #[test]
    fn names_the_process_that_had_all_the_cpu() {
        // The login storm at the application's PBKDF2 cost, measured.
        let storm = |service: &str| match service {
            "app" => Some(195.9),
            "pgbouncer" => Some(6.5),
            _ => Some(5.0),
        };
        let found = cpu_saturated(storm, 2).expect("the target had both cores");
        assert!(
            found.starts_with("the target used up to 196% CPU, all 2 cores"),
            "{found}"
        );
        assert_eq!(cpu_saturated(storm, 4), None);
        let pgbouncer = |service: &str| (service == "pgbouncer").then_some(99.0);
        assert!(
            cpu_saturated(pgbouncer, 2)
                .unwrap()
                .starts_with("pgbouncer used up to 99% CPU, its one thread")
        );
        assert_eq!(cpu_saturated(|_| None, 2), None);
    }

    #[test]
    fn finds_a_shared_timeout() {
        let mut h = new_histogram();
        for i in 0..500 {
            h.record(20_000 + i * 10).unwrap();
        }
        for i in 0..6 {
            h.record(2_000_000 + i * 1000).unwrap();
        }
        let found = shared_timeout(&h).expect("a cluster at 2 s");
        assert!(
            found.starts_with("6 requests ended between 1.9s and 2.0s"),
            "{found}"
        );
        let mut spread = new_histogram();
        for i in 1..1000 {
            spread.record(i * 2000).unwrap();
        }
        assert_eq!(shared_timeout(&spread), None);
    }

    #[test]
    fn finds_two_modes_and_not_one() {
        let mut h = new_histogram();
        for i in 0..300 {
            h.record(2_000 + i).unwrap();
        }
        for i in 0..200 {
            h.record(80_000 + i * 10).unwrap();
        }
        let found = bimodal(&h).expect("two modes");
        assert!(
            found.contains("(60%)") && found.contains("(40%)"),
            "{found}"
        );
        let mut one = new_histogram();
        for i in 0..500 {
            one.record(10_000 + i * 7).unwrap();
        }
        assert_eq!(bimodal(&one), None);
    }
}
