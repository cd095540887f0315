//! The requests to look up in the application's traces (`[target]
//! trace-context`): each endpoint's slowest, with the trace id its
//! `traceparent` carried, as a table in every report format. The failures'
//! first occurrences carry theirs in the failures table.

use std::fmt::Write as _;

use crate::metrics::RunSummary;

/// How many of an endpoint's slowest requests each report lists.
const SHOWN: usize = 3;

/// One row: the endpoint, the request's latency, when it completed, its trace id.
fn rows(summary: &RunSummary) -> Vec<[String; 4]> {
    summary
        .endpoints
        .iter()
        .flat_map(|endpoint| {
            endpoint.slowest.iter().take(SHOWN).map(|request| {
                [
                    format!("{} {}", endpoint.meta.method, endpoint.meta.name),
                    format!("{:.1} ms", request.latency_ms),
                    format!("{:.1}s", request.at_seconds),
                    request.trace_id.clone(),
                ]
            })
        })
        .collect()
}

/// The terminal's lines (none when no request carried a trace id).
pub fn text_lines(summary: &RunSummary) -> Vec<String> {
    let rows = rows(summary);
    if rows.is_empty() {
        return Vec::new();
    }
    let mut lines =
        vec!["\nslowest requests, by trace id (look them up in your tracing)".to_owned()];
    for [endpoint, latency, at, trace] in rows {
        lines.push(format!(
            "  {endpoint:<44} {latency:>11}  at {at:>7}  trace {trace}"
        ));
    }
    lines
}

pub fn markdown_table(summary: &RunSummary) -> String {
    let rows = rows(summary);
    if rows.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "\n### Slowest requests, by trace id\n\n| endpoint | latency | at | trace id |\n|---|---:|---:|---|\n",
    );
    for [endpoint, latency, at, trace] in rows {
        let _ = writeln!(out, "| `{endpoint}` | {latency} | {at} | `{trace}` |");
    }
    out
}

pub fn html_section(summary: &RunSummary, esc: fn(&str) -> String) -> String {
    let rows = rows(summary);
    if rows.is_empty() {
        return String::new();
    }
    let mut body = String::from(
        r#"<h2>Slowest requests, by trace id</h2><table id="traces"><thead><tr><th>endpoint</th><th>latency</th><th>at</th><th>trace id</th></tr></thead><tbody>"#,
    );
    for [endpoint, latency, at, trace] in rows {
        let _ = write!(
            body,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            esc(&endpoint),
            esc(&latency),
            esc(&at),
            esc(&trace)
        );
    }
    body.push_str("</tbody></table>");
    body
}
