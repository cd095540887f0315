//! The live page: the report's own sections (thresholds, endpoints, pages
//! in real browsers, the charts over time, what the probes saw) drawn on the run so far, with a
//! status line in place of the verdict; one small script replaces the body
//! with each second's as the server sends it (server-sent events).

use std::fmt::Write as _;

use super::{
    below_http, busiest_endpoints, endpoints, esc, fault_shades, over_time, thresholds_while,
};
use crate::report::RunReport;

/// Where the run stands, for the status line.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Progress {
    /// Whole seconds of load so far.
    pub second: u64,
    /// How long the load is planned to last.
    pub planned_seconds: f64,
    /// Requests completed in those seconds, warm-up included.
    pub requests: u64,
    pub failures: u64,
    pub users: u64,
    /// The load has ended: no more updates.
    pub ended: bool,
}

/// The body of the live page for the run so far.
pub fn body(report: &RunReport, progress: &Progress) -> String {
    let summary = &report.summary;
    let shades = fault_shades(summary);
    let busiest = busiest_endpoints(summary);
    let mut body = String::new();
    let (state, class) = if progress.ended {
        ("ended", "ended")
    } else {
        ("running", "running")
    };
    let _ = write!(
        body,
        r#"<h1>{suite} <span class="verdict {class}">{state}</span></h1><p class="meta" id="live-status" data-second="{second}" data-requests="{requests}">second <span id="live-second">{second}</span> of {planned:.0} · <span id="live-requests">{requests}</span> requests · {failures} failures · {users} users{target}</p>"#,
        suite = esc(&summary.suite),
        second = progress.second,
        planned = progress.planned_seconds,
        requests = progress.requests,
        failures = progress.failures,
        users = progress.users,
        target = if summary.target.is_empty() {
            String::new()
        } else {
            format!(" · target {}", esc(&summary.target))
        },
    );
    for note in &report.notes {
        let _ = write!(body, r#"<p class="note">{}</p>"#, esc(note));
    }
    body.push_str(&thresholds_while(report, !progress.ended));
    body.push_str(&endpoints(summary));
    if let Some(browser) = &summary.browser {
        body.push_str(&super::browser::section(report, browser, None));
    }
    body.push_str(&over_time(summary, &shades, &busiest));
    body.push_str(&below_http(report, &shades));
    body
}

/// The whole page around a first body: the report's styles, and the
/// script that swaps in each body the server sends to `/events`.
pub fn page(report: &RunReport, body: &str) -> String {
    const SCRIPT: &str = r#"<script>
const source = new EventSource("events");
source.onmessage = (event) => { document.getElementById("live").innerHTML = event.data; };
source.addEventListener("end", () => source.close());
</script>"#;
    super::page_with(
        report,
        &format!(r#"<div id="live">{body}</div>"#),
        SCRIPT,
        ".verdict.running { background: #1f5fa8; } .verdict.ended { background: #555; } tr.pending td { color: #777; }",
    )
}
