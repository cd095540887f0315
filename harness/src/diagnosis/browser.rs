//! Causes of a page's browser time: the server's share beside the
//! browser's, long tasks, the slowest resource.

use hdrhistogram::Histogram;

use crate::report::RunReport;
use crate::suite::metric::Metric;

/// Where a page's browser time went: beside the server time the HTTP tasks
/// measured for the same route (a task named like the page), else the
/// page's own time to first byte; then the long tasks and the slowest
/// resource. The history's "login page p95 2.1 s, server under 200 ms".
pub(super) fn browser_causes(
    report: &RunReport,
    page: Option<&str>,
    metric: &Metric,
) -> Vec<String> {
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
