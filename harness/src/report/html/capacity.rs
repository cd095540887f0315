//! A capacity search's section: the capacity with its interval, what broke
//! first and why, the curve of each endpoint's latency and errors against
//! the offered rate with the SLO lines, and every step.

use std::fmt::Write as _;

use super::charts::{Series, Shade, line_chart};
use super::esc;
use crate::capacity::{CapacityReport, number};
use crate::report::RunReport;

pub(super) fn section(report: &RunReport) -> String {
    let Some(capacity) = &report.capacity else {
        return String::new();
    };
    let mut body = String::from(r#"<h2 id="capacity">Capacity</h2>"#);
    let _ = write!(body, "<p><strong>{}</strong></p>", esc(&capacity.line()));
    if let Some(broken) = &capacity.first_broken {
        let items = |lines: &[String]| -> String {
            lines
                .iter()
                .map(|l| format!("<li>{}</li>", esc(l)))
                .collect()
        };
        let _ = write!(
            body,
            "<p>What broke first, at {} iterations/s:</p><ul>{}</ul><p>Why:</p><ul class=\"causes\">{}</ul>",
            number(broken.rate),
            items(&broken.thresholds),
            items(&broken.causes)
        );
    }
    body.push_str(&curves(capacity));
    body.push_str(&steps(capacity));
    body
}

/// Latency (p50, p95, p99) and errors per endpoint against the offered
/// rate, the capacity's interval shaded, each latency SLO a flat line.
fn curves(capacity: &CapacityReport) -> String {
    let mut steps: Vec<_> = capacity.steps.iter().collect();
    steps.sort_by(|a, b| a.rate.total_cmp(&b.rate));
    let mut names: Vec<&str> = steps
        .iter()
        .flat_map(|s| s.endpoints.iter().map(|e| e.name.as_str()))
        .collect();
    // The task endpoints: logins happen once per user, not per iteration.
    names.retain(|name| !name.starts_with("[AUTH]"));
    names.sort_unstable();
    names.dedup();
    let point = |name: &str, value: &dyn Fn(&crate::capacity::step::StepEndpoint) -> f64| {
        steps
            .iter()
            .filter_map(|s| {
                let endpoint = s.endpoints.iter().find(|e| e.name == name)?;
                Some((s.rate, value(endpoint)))
            })
            .collect::<Vec<_>>()
    };
    let mut latency = Vec::new();
    let mut errors = Vec::new();
    for name in &names {
        for (label, value) in [
            (
                "p50",
                (|e: &crate::capacity::step::StepEndpoint| e.p50_ms) as fn(&_) -> f64,
            ),
            ("p95", |e| e.p95_ms),
            ("p99", |e| e.p99_ms),
        ] {
            latency.push(Series {
                label: format!("{name} {label}"),
                points: point(name, &value),
            });
        }
        errors.push(Series {
            label: (*name).to_owned(),
            points: point(name, &|e| e.error_rate * 100.0),
        });
    }
    let top = steps.last().map_or(1.0, |s| s.rate);
    for slo in &capacity.slo_lines {
        latency.push(Series {
            label: format!("SLO {}", slo.source),
            points: vec![(0.0, slo.limit_ms), (top, slo.limit_ms)],
        });
    }
    let shade = match (capacity.low, capacity.high) {
        (Some(low), Some(high)) => vec![Shade {
            from: low,
            to: high,
            label: "capacity".to_owned(),
        }],
        _ => Vec::new(),
    };
    [
        line_chart(
            &shade,
            "capacity-latency",
            "Latency against the offered rate",
            "iterations/s",
            "ms",
            &latency,
        ),
        line_chart(
            &shade,
            "capacity-errors",
            "Errors against the offered rate",
            "iterations/s",
            "% failed",
            &errors,
        ),
    ]
    .concat()
}

fn steps(capacity: &CapacityReport) -> String {
    let mut body = String::from(
        r#"<table id="capacity-steps"><thead><tr><th>offered /s</th><th>completed /s</th><th>seconds</th><th>verdict</th><th>thresholds (observed [interval])</th></tr></thead><tbody>"#,
    );
    for step in &capacity.steps {
        let rows: Vec<String> = step
            .thresholds
            .iter()
            .filter(|t| t.observed.is_some())
            .map(|t| {
                let interval = match (t.low, t.high) {
                    (Some(low), Some(high)) => format!(" [{}–{}]", number(low), number(high)),
                    _ => String::new(),
                };
                format!("{}: {}{interval}", esc(&t.source), esc(&t.observed_text))
            })
            .collect();
        let _ = write!(
            body,
            r#"<tr class="{cls}"><td>{}</td><td>{}</td><td>{}–{}</td><td>{:?}</td><td>{}</td></tr>"#,
            number(step.rate),
            number(step.achieved),
            step.judged_from_second,
            step.end_second,
            step.verdict,
            rows.join("<br>"),
            cls = if step.passed { "pass" } else { "fail" },
        );
    }
    body.push_str("</tbody></table>");
    body
}
