//! The HTML report's section on pages in real browsers: the table, LCP per
//! second, each page's worst view as a waterfall, and the screenshots of
//! failed views and of pages whose threshold failed, embedded.

use std::fmt::Write as _;

use super::{Series, esc, line_chart};
use crate::report::RunReport;

/// Pages in real browsers: the table, LCP per second, the worst view's
/// waterfall, and screenshots of failed views and of pages whose
/// threshold failed.
pub(super) fn section(
    report: &RunReport,
    browser: &crate::browser::BrowserSummary,
    dir: Option<&std::path::Path>,
) -> String {
    let mut body = String::new();
    let _ = write!(
        body,
        r#"<h2>Pages in real browsers</h2><p class="meta">{} · times in ms from the start of the navigation; requests and KB of the median view</p><table id="browser-pages"><thead><tr>"#,
        esc(&browser.headline())
    );
    for column in crate::browser::PAGE_COLUMNS {
        let _ = write!(body, "<th>{}</th>", esc(column));
    }
    body.push_str("</tr></thead><tbody>");
    for row in browser.rows() {
        body.push_str("<tr>");
        for (i, cell) in row.cells().iter().enumerate() {
            if i == 0 {
                let _ = write!(body, "<td><code>{}</code></td>", esc(cell));
            } else {
                let _ = write!(body, "<td>{}</td>", esc(cell));
            }
        }
        body.push_str("</tr>");
    }
    body.push_str("</tbody></table>");
    for error in &browser.errors {
        let _ = write!(body, r#"<p class="note">browser: {}</p>"#, esc(error));
    }
    let series: Vec<Series> = browser
        .pages
        .iter()
        .map(|p| Series {
            label: format!("LCP max {}", p.page),
            points: p
                .series
                .iter()
                .filter(|s| s.lcp_max_ms > 0.0)
                .map(|s| (s.second as f64, s.lcp_max_ms))
                .collect(),
        })
        .collect();
    body.push_str(r#"<div class="charts">"#);
    body.push_str(&line_chart(
        &[],
        "chart-browser-lcp",
        "Largest Contentful Paint per second (worst view)",
        "seconds",
        "ms",
        &series,
    ));
    body.push_str("</div>");
    let failed_threshold = |page: &str| {
        report.thresholds.iter().any(|t| {
            !t.passed
                && t.metric.starts_with("browser.")
                && t.source
                    .split_once(": ")
                    .and_then(|(s, _)| s.parse::<crate::suite::threshold::Selector>().ok())
                    .is_some_and(|s| s.filter("page").is_none_or(|p| p == page))
        })
    };
    for (n, page) in browser.pages.iter().enumerate() {
        let Some(worst) = &page.worst else {
            continue;
        };
        let _ = write!(
            body,
            r#"<h3 id="browser-page-{n}">{page} — the worst view</h3><p class="meta">{url} · TTFB {ttfb:.0} ms · DCL {dcl:.0} ms · load {load:.0} ms · LCP {lcp:.0} ms · TBT {tbt:.0} ms (long tasks: {tasks}) · {requests} requests, {kb:.0} KB</p>"#,
            page = esc(&page.page),
            url = esc(crate::browser::short_url(&worst.url)),
            ttfb = worst.ttfb_ms,
            dcl = worst.dcl_ms,
            load = worst.load_ms,
            lcp = worst.lcp_ms,
            tbt = worst.tbt_ms,
            tasks = if worst.long_tasks_ms.is_empty() {
                "none".to_owned()
            } else {
                worst
                    .long_tasks_ms
                    .iter()
                    .map(|t| format!("{t:.0} ms"))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            requests = worst.requests,
            kb = worst.bytes as f64 / 1024.0
        );
        // The waterfall: each resource from its start, on the view's time line.
        let end = worst
            .resources
            .iter()
            .map(|r| r.start_ms + r.duration_ms)
            .fold(worst.load_ms.max(worst.lcp_ms), f64::max)
            .max(1.0);
        let _ = write!(
            body,
            r#"<table class="waterfall" id="waterfall-{n}"><thead><tr><th>resource (slowest first)</th><th>kind</th><th>start ms</th><th>ms</th><th>KB</th><th style="width:40%">0 – {end:.0} ms</th></tr></thead><tbody>"#
        );
        for resource in &worst.resources {
            let _ = write!(
                body,
                r##"<tr><td><code>{name}</code></td><td>{kind}</td><td>{start:.0}</td><td>{duration:.0}</td><td>{kb:.1}</td><td><div style="margin-left:{left:.1}%;width:{width:.1}%;min-width:2px;height:10px;background:#4a78b5"></div></td></tr>"##,
                name = esc(crate::browser::short_url(&resource.name)),
                kind = esc(&resource.kind),
                start = resource.start_ms,
                duration = resource.duration_ms,
                kb = resource.bytes as f64 / 1024.0,
                left = resource.start_ms / end * 100.0,
                width = resource.duration_ms / end * 100.0
            );
        }
        body.push_str("</tbody></table>");
        let mut shots = Vec::new();
        if page.failed > 0 {
            shots.extend(
                page.failed_screenshot
                    .as_ref()
                    .map(|f| ("a failed view", f)),
            );
        }
        if failed_threshold(&page.page) {
            shots.extend(
                page.worst_screenshot
                    .as_ref()
                    .map(|f| ("the worst view", f)),
            );
        }
        for (what, file) in shots {
            let Some(png) = dir.and_then(|d| std::fs::read(d.join(file)).ok()) else {
                let _ = write!(
                    body,
                    r#"<p class="note">Screenshot of {what}: <code>{}</code></p>"#,
                    esc(file)
                );
                continue;
            };
            use base64::Engine as _;
            let _ = write!(
                body,
                r#"<figure class="screenshot"><img alt="{page}: {what}" style="max-width:100%;border:1px solid #ccc" src="data:image/png;base64,{data}"><figcaption>{page}: {what} (<code>{file}</code>)</figcaption></figure>"#,
                page = esc(&page.page),
                file = esc(file),
                data = base64::engine::general_purpose::STANDARD.encode(png)
            );
        }
    }
    body
}
