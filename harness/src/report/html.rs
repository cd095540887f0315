//! The HTML report: one self-contained file — no network, no CDN, no
//! script — with the verdicts and their diagnosis, the endpoint table, and
//! charts drawn as inline SVG: latency percentiles over time, throughput and
//! failures with the user count, latency histograms, and what the probes
//! saw (PgBouncer's waiting clients, Redis's hit ratio, CPU and memory).

mod browser;
mod capacity;
mod charts;
pub mod live;

use std::fmt::Write as _;
use std::path::PathBuf;

use self::charts::{Series, Shade, histogram_chart, line_chart};
use super::{Reporter, RunReport};
use crate::metrics::RunSummary;
use anyhow::Context as _;

fn esc(text: &str) -> String {
    html_escape::encode_text(text).into_owned()
}

/// Renders the whole page.
pub fn render(report: &RunReport) -> String {
    render_in(report, None)
}

/// The report, with the browsers' screenshots from the run folder `dir`
/// embedded where a page failed a view or a threshold: one section after
/// another, each its own function.
pub fn render_in(report: &RunReport, dir: Option<&std::path::Path>) -> String {
    let summary = &report.summary;
    let shades = fault_shades(summary);
    let busiest = busiest_endpoints(summary);
    let browser = summary
        .browser
        .as_ref()
        .map(|browser| browser::section(report, browser, dir));
    let sections = [
        heading(report),
        super::shards::html_section(&report.shards, esc),
        thresholds(report),
        capacity::section(report),
        endpoints(summary),
        browser.unwrap_or_default(),
        failures(summary),
        over_time(summary, &shades, &busiest),
        histograms(summary, &busiest),
        below_http(report, &shades),
        query_budgets(report),
        integrity(report),
        coverage(report),
        logs(report),
        configuration(report),
    ];
    page(report, &sections.concat())
}

/// The suite, its verdict and the run's facts, then its notes.
fn heading(report: &RunReport) -> String {
    let summary = &report.summary;
    let mut body = String::new();
    let verdict = if report.passed { "PASSED" } else { "FAILED" };
    let _ = write!(
        body,
        r#"<h1>{suite} <span class="verdict {cls}">{verdict}</span></h1><p class="meta">profile {profile} · target {target} · started {started} · {measured:.0}s measured after {warm:.0}s warm-up · up to {users} users · {requests} requests</p>"#,
        suite = esc(&summary.suite),
        cls = verdict.to_lowercase(),
        profile = esc(&summary.profile),
        target = esc(&summary.target),
        started = esc(&summary.started_at),
        measured = summary.measured_seconds,
        warm = summary.warm_up_seconds,
        users = summary.max_users,
        requests = summary.total.requests
    );
    if let Some(interruption) = &report.interrupted {
        let _ = write!(
            body,
            r#"<p class="note interrupted" id="interrupted"><strong>Partial run:</strong> {}.</p>"#,
            esc(&interruption.describe())
        );
    }
    if let Some(hang) = summary.hang_note() {
        let _ = write!(
            body,
            r#"<p class="note interrupted" id="hung"><strong>Hung:</strong> {}.</p>"#,
            esc(&hang)
        );
    }
    for note in &report.notes {
        let _ = write!(body, r#"<p class="note">{}</p>"#, esc(note));
    }
    body
}

/// Each threshold, what was observed, and the likely causes.
fn thresholds(report: &RunReport) -> String {
    thresholds_while(report, false)
}

/// The thresholds; `running`: of a run still going, where one without data
/// yet is pending, not failed.
fn thresholds_while(report: &RunReport, running: bool) -> String {
    let mut body = String::new();
    body.push_str(r#"<h2>Thresholds</h2><table id="thresholds"><thead><tr><th></th><th>threshold</th><th>observed</th><th>detail and likely cause</th></tr></thead><tbody>"#);
    for threshold in &report.thresholds {
        let causes: String = threshold
            .diagnosis
            .iter()
            .map(|c| format!("<li>{}</li>", esc(c)))
            .collect();
        let _ = write!(
            body,
            r#"<tr class="{cls}"><td>{mark}</td><td><code>{source}</code></td><td>{observed}</td><td>{detail}{causes}</td></tr>"#,
            cls = match (threshold.passed, running && threshold.observed.is_none()) {
                (_, true) => "pending",
                (true, false) => "pass",
                (false, false) => "fail",
            },
            mark = match (threshold.passed, running && threshold.observed.is_none()) {
                (_, true) => "…",
                (true, false) => "✓",
                (false, false) => "✗",
            },
            source = esc(&threshold.source),
            observed = esc(&threshold.observed_text),
            detail = esc(&threshold.detail),
            causes = if causes.is_empty() {
                String::new()
            } else {
                format!("<ul class=\"causes\">{causes}</ul>")
            }
        );
    }
    body.push_str("</tbody></table>");
    body
}

/// Latency and counts per endpoint, and in total.
fn endpoints(summary: &RunSummary) -> String {
    let mut body = String::new();
    body.push_str(r#"<h2>Endpoints</h2><table id="endpoints"><thead><tr><th>endpoint</th><th>requests</th><th>failures</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>max ms</th><th>req/s</th></tr></thead><tbody>"#);
    for endpoint in summary
        .endpoints
        .iter()
        .chain(std::iter::once(&summary.total))
    {
        let l = &endpoint.latency_ms;
        let _ = write!(
            body,
            "<tr><td><code>{} {}</code></td><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td></tr>",
            esc(&endpoint.meta.method),
            esc(&endpoint.meta.name),
            endpoint.requests,
            endpoint.failures,
            l.p50,
            l.p95,
            l.p99,
            l.p999,
            l.max,
            endpoint.requests_per_second
        );
    }
    body.push_str("</tbody></table>");
    body
}

/// The failures, by endpoint and kind.
fn failures(summary: &RunSummary) -> String {
    let mut body = String::new();
    let failures = summary.failures();
    if !failures.is_empty() {
        body.push_str(r#"<h2>Failures</h2><table id="failures"><thead><tr><th>endpoint</th><th>kind</th><th>count</th><th>first–last (s)</th><th>sample</th></tr></thead><tbody>"#);
        for failure in failures.iter().take(50) {
            let _ = write!(
                body,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{:.1}–{:.1}</td><td>{}</td></tr>",
                esc(&failure.endpoint),
                esc(&failure.record.kind.name()),
                failure.record.count,
                failure.record.first_seen_ms as f64 / 1000.0,
                failure.record.last_seen_ms as f64 / 1000.0,
                esc(&failure.record.sample)
                    + &failure
                        .record
                        .trace_id
                        .as_deref()
                        .map(|trace| format!(" <small>trace <code>{}</code></small>", esc(trace)))
                        .unwrap_or_default()
            );
        }
        body.push_str("</tbody></table>");
    }
    body.push_str(&super::traces::html_section(summary, esc));
    body
}

/// The faults' windows, shaded on every chart over time.
fn fault_shades(summary: &RunSummary) -> Vec<Shade> {
    let series = &summary.series;
    let run_end = series.last().map_or(0.0, |p| p.second as f64 + 1.0);
    summary
        .faults
        .iter()
        .map(|fault| Shade {
            from: fault.from_second,
            to: fault.to_second.unwrap_or(run_end),
            label: fault.fault.clone(),
        })
        .collect()
}

/// The busiest endpoints (at most 8, by requests): the ones charted.
fn busiest_endpoints(summary: &RunSummary) -> Vec<(usize, u64)> {
    let mut busiest: Vec<(usize, u64)> = summary
        .endpoints
        .iter()
        .enumerate()
        .map(|(i, e)| (i, e.requests))
        .filter(|(_, r)| *r > 0)
        .collect();
    busiest.sort_by_key(|entry| std::cmp::Reverse(entry.1));
    busiest.truncate(8);
    busiest
}

/// Charts over time: throughput, users, latency, p95 per busy endpoint.
fn over_time(summary: &RunSummary, shades: &[Shade], busiest: &[(usize, u64)]) -> String {
    let mut body = String::new();
    let series = &summary.series;
    let over_time = |f: &dyn Fn(&crate::metrics::SecondPoint) -> f64| -> Vec<(f64, f64)> {
        series
            .iter()
            .map(|p| (p.second as f64 + 1.0, f(p)))
            .collect()
    };
    body.push_str(r#"<h2>Over time</h2>"#);
    if !summary.faults.is_empty() {
        let windows: Vec<String> = summary
            .faults
            .iter()
            .map(|fault| esc(&fault.line()))
            .collect();
        let _ = write!(
            body,
            r#"<p class="note" id="faults">Shaded on the charts: {}.</p>"#,
            windows.join("; ")
        );
    }
    body.push_str(r#"<div class="charts">"#);
    body.push_str(&line_chart(
        shades,
        "chart-throughput",
        "Requests and failures per second",
        "seconds",
        "per second",
        &[
            Series {
                label: "requests/s".into(),
                points: over_time(&|p| p.requests as f64),
            },
            Series {
                label: "failures/s".into(),
                points: over_time(&|p| p.failures as f64),
            },
        ],
    ));
    body.push_str(&line_chart(
        shades,
        "chart-users",
        "Virtual users",
        "seconds",
        "users",
        &[Series {
            label: "users".into(),
            points: over_time(&|p| p.users as f64),
        }],
    ));
    body.push_str(&line_chart(
        shades,
        "chart-latency",
        "Latency percentiles, all endpoints",
        "seconds",
        "ms",
        &[
            Series {
                label: "p50".into(),
                points: over_time(&|p| p.p50_ms()),
            },
            Series {
                label: "p95".into(),
                points: over_time(&|p| p.p95_ms()),
            },
            Series {
                label: "p99".into(),
                points: over_time(&|p| p.p99_ms()),
            },
            Series {
                label: "max".into(),
                points: over_time(&|p| p.max_ms()),
            },
        ],
    ));
    let per_endpoint: Vec<Series> = busiest
        .iter()
        .map(|(i, _)| Series {
            label: summary.endpoints[*i].meta.name.chars().take(22).collect(),
            points: series
                .iter()
                .filter(|p| p.endpoints.get(*i).is_some_and(|e| e.requests > 0))
                .map(|p| (p.second as f64 + 1.0, p.endpoints[*i].p95_ms))
                .collect(),
        })
        .collect();
    body.push_str(&line_chart(
        shades,
        "chart-endpoint-p95",
        "p95 latency per endpoint",
        "seconds",
        "ms",
        &per_endpoint,
    ));
    body.push_str("</div>");
    body
}

/// The latency histograms of the busiest endpoints.
fn histograms(summary: &RunSummary, busiest: &[(usize, u64)]) -> String {
    let mut body = String::new();
    body.push_str(r#"<h2>Latency histograms</h2><div class="charts">"#);
    for (n, (i, _)) in busiest.iter().take(6).enumerate() {
        let endpoint = &summary.endpoints[*i];
        body.push_str(&histogram_chart(
            &format!("histogram-{n}"),
            &format!("{} {}", endpoint.meta.method, endpoint.meta.name),
            &endpoint.histogram.0,
        ));
    }
    body.push_str("</div>");
    body
}

/// What the probes saw below HTTP: PgBouncer, Redis, each service's CPU and memory.
fn below_http(report: &RunReport, shades: &[Shade]) -> String {
    let mut body = String::new();
    if let Some(probes) = &report.probes
        && !probes.samples.is_empty()
    {
        let at = |s: &crate::probe::ProbeSample| s.second as f64;
        body.push_str(r#"<h2>Below HTTP</h2><div class="charts">"#);
        let pgbouncer = |f: &dyn Fn(&crate::probe::PgBouncerSample) -> f64| -> Vec<(f64, f64)> {
            probes
                .samples
                .iter()
                .filter_map(|s| s.pgbouncer.as_ref().map(|p| (at(s), f(p))))
                .collect()
        };
        body.push_str(&line_chart(
            shades,
            "chart-pgbouncer",
            "PgBouncer: waiting clients and active servers",
            "seconds",
            "connections",
            &[
                Series {
                    label: "clients waiting".into(),
                    points: pgbouncer(&|p| p.cl_waiting),
                },
                Series {
                    label: "servers active".into(),
                    points: pgbouncer(&|p| p.sv_active),
                },
                Series {
                    label: "clients active".into(),
                    points: pgbouncer(&|p| p.cl_active),
                },
            ],
        ));
        let redis: Vec<(f64, f64)> = probes
            .samples
            .windows(2)
            .filter_map(|w| {
                let (a, b) = (w[0].redis.as_ref()?, w[1].redis.as_ref()?);
                let hits = b.keyspace_hits - a.keyspace_hits;
                let misses = b.keyspace_misses - a.keyspace_misses;
                (hits + misses > 0.0).then(|| (at(&w[1]), hits / (hits + misses) * 100.0))
            })
            .collect();
        body.push_str(&line_chart(
            shades,
            "chart-redis",
            "Redis hit ratio per second",
            "seconds",
            "%",
            &[Series {
                label: "hit ratio".into(),
                points: redis,
            }],
        ));
        let names: Vec<String> = probes
            .samples
            .first()
            .map(|s| s.services.iter().map(|x| x.name.clone()).collect())
            .unwrap_or_default();
        let per_service = |f: &dyn Fn(&crate::probe::ServiceSample) -> f64| -> Vec<Series> {
            names
                .iter()
                .map(|name| Series {
                    label: name.clone(),
                    points: probes
                        .samples
                        .iter()
                        .filter_map(|s| {
                            s.services
                                .iter()
                                .find(|x| &x.name == name)
                                .map(|x| (at(s), f(x)))
                        })
                        .collect(),
                })
                .collect()
        };
        body.push_str(&line_chart(
            shades,
            "chart-cpu",
            "CPU per service",
            "seconds",
            "% of a core",
            &per_service(&|x| x.cpu_percent),
        ));
        body.push_str(&line_chart(
            shades,
            "chart-memory",
            "Memory per service (PSS)",
            "seconds",
            "MB",
            &per_service(&|x| x.memory_mb),
        ));
        body.push_str("</div>");
    }
    body
}

/// Statements per request, by task.
fn query_budgets(report: &RunReport) -> String {
    let mut body = String::new();
    if !report.query_budgets.is_empty() {
        body.push_str(r#"<h2>Queries per request</h2><table id="query-budgets"><thead><tr><th>task</th><th>statements per request</th><th>requests</th></tr></thead><tbody>"#);
        for measure in &report.query_budgets {
            let _ = write!(
                body,
                "<tr><td><code>{}</code></td><td>{:.1}</td><td>{}</td></tr>",
                esc(&measure.task),
                measure.per_request,
                measure.requests
            );
        }
        body.push_str("</tbody></table>");
    }
    body
}

/// What the write-integrity check found.
fn integrity(report: &RunReport) -> String {
    let mut body = String::new();
    if let Some(integrity) = &report.integrity {
        let _ = write!(
            body,
            r#"<h2>Write integrity</h2><p>{} acknowledged writes on {} rows: {} lost updates, {} audit mismatches.</p>"#,
            integrity.acknowledged_writes,
            integrity.rows_checked,
            integrity.lost_updates,
            integrity.audit_mismatches
        );
        if !integrity.violations.is_empty() {
            body.push_str(r#"<table id="violations"><thead><tr><th>row</th><th>problem</th><th>expected</th><th>found</th></tr></thead><tbody>"#);
            for v in integrity.violations.iter().take(50) {
                let _ = write!(
                    body,
                    "<tr><td>{} {}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&v.table),
                    esc(&v.key),
                    esc(&v.problem),
                    esc(&v.expected),
                    esc(&v.found)
                );
            }
            body.push_str("</tbody></table>");
        }
    }
    body
}

/// The share of the target's routes the run exercised.
fn coverage(report: &RunReport) -> String {
    let mut body = String::new();
    if let Some(coverage) = &report.coverage {
        let _ = write!(
            body,
            r#"<h2>Route coverage</h2><p>{:.0}% of the target's routes exercised.</p><table id="coverage"><thead><tr><th>category</th><th>routes</th><th>exercised</th><th>share</th></tr></thead><tbody>"#,
            coverage.overall * 100.0
        );
        for c in &coverage.categories {
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.0}%</td></tr>",
                esc(&c.category),
                c.routes,
                c.exercised,
                c.fraction * 100.0
            );
        }
        body.push_str("</tbody></table>");
    }
    body
}

/// Known signatures found in the services' logs.
fn logs(report: &RunReport) -> String {
    let mut body = String::new();
    if !report.log_signatures.is_empty() {
        body.push_str(r#"<h2>In the logs</h2><table id="logs"><thead><tr><th>service</th><th>signature</th><th>count</th><th>seconds</th><th>sample</th></tr></thead><tbody>"#);
        for hit in &report.log_signatures {
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.1}–{:.1}</td><td>{}</td></tr>",
                esc(&hit.service),
                esc(&hit.signature),
                hit.count,
                hit.first_second,
                hit.last_second,
                esc(&hit.sample)
            );
        }
        body.push_str("</tbody></table>");
    }
    body
}

/// Each setting asked for, beside the one in effect.
fn configuration(report: &RunReport) -> String {
    let mut body = String::new();
    if let Some(config) = &report.effective_config {
        body.push_str(r#"<h2>Configuration in effect</h2><table id="config"><thead><tr><th>service</th><th>setting</th><th>asked</th><th>in effect</th></tr></thead><tbody>"#);
        for entry in &config.entries {
            let _ = write!(
                body,
                r#"<tr class="{}"><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
                if entry.matches { "pass" } else { "fail" },
                esc(&entry.service),
                esc(&entry.setting),
                esc(&entry.asked),
                esc(&entry.effective)
            );
        }
        body.push_str("</tbody></table>");
    }
    body
}

/// The page around the sections: title, style, footer.
fn page(report: &RunReport, body: &str) -> String {
    page_with(report, body, "", "")
}

/// The page around `body`, with a script and styles of its own (the live
/// page's; the report has none).
fn page_with(report: &RunReport, body: &str, script: &str, style: &str) -> String {
    let summary = &report.summary;
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>ahsp-perf: {title}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; max-width: 1600px; }}
h1 {{ font-size: 22px; }} h2 {{ font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; }}
.verdict {{ padding: 2px 8px; border-radius: 4px; color: #fff; font-size: 14px; }}
.verdict.passed {{ background: #2a7d2a; }} .verdict.failed {{ background: #b22222; }}
.meta, .note {{ color: #555; }}
.interrupted {{ color: #8a4b00; background: #fff3e0; padding: 0.5em; }}
table {{ border-collapse: collapse; margin: 8px 0; }}
th, td {{ border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }}
td:not(:first-child) {{ font-variant-numeric: tabular-nums; }}
tr.fail td {{ background: #fdecea; }} tr.pass td:first-child {{ color: #2a7d2a; }} tr.fail td:first-child {{ color: #b22222; }}
.causes {{ margin: 4px 0 0 16px; padding: 0; color: #7a2e00; }}
.charts {{ display: flex; flex-wrap: wrap; gap: 12px; }}
.chart {{ margin: 0; border: 1px solid #eee; }}
.title {{ font-weight: 600; font-size: 13px; }} .tick {{ font-size: 10px; fill: #555; }} .axis, .legend {{ font-size: 11px; }}
{style}
</style></head><body>
{body}
<footer><p class="meta">written by ahsp-perf; schema {schema}</p></footer>
{script}</body></html>
"#,
        title = esc(&summary.suite),
        schema = esc(&report.schema)
    )
}

/// Writes `report.html`.
#[derive(Debug)]
pub struct HtmlReporter {
    pub path: PathBuf,
}

impl Reporter for HtmlReporter {
    fn finished(&mut self, report: &RunReport) -> anyhow::Result<()> {
        std::fs::write(&self.path, render_in(report, self.path.parent()))
            .with_context(|| format!("writing {}", self.path.display()))
    }
}
