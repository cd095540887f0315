//! The pull-request gate's table as Markdown (also readable in a terminal).

use crate::baseline::compare::{Comparison, GateSettings, Metric, Row, Verdict};

/// The comparison as a Markdown table (also readable in a terminal).
pub fn render_markdown(comparison: &Comparison, settings: &GateSettings) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let verdict = if comparison.passed() {
        "passed"
    } else {
        "FAILED"
    };
    let _ = writeln!(
        out,
        "### Baseline `{}` — {}: gate {verdict}\n",
        comparison.baseline, comparison.suite
    );
    let _ = writeln!(
        out,
        "A change is worse only beyond {:.0} %, {} × the noise, and {} ms (latency) or {} points (error rate).\n",
        settings.relative * 100.0,
        settings.noise_factor,
        settings.latency_floor_ms,
        settings.error_rate_floor_points
    );
    let _ = writeln!(
        out,
        "| Endpoint | Metric | Baseline | Current | Change | Noise (±1σ) | Verdict |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---|");
    let mut rows: Vec<&Row> = comparison.rows.iter().collect();
    // Regressions first, so a reader sees them without scrolling; among them
    // latency and errors before throughput, which is often their consequence.
    rows.sort_by_key(|row| {
        (
            row.verdict != Verdict::Worse,
            row.metric == Metric::Throughput,
        )
    });
    for row in rows {
        let noise = row
            .noise
            .map(|n| row.metric.format(n))
            .unwrap_or_else(|| "n/a".to_owned());
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} | {} | {} |",
            row.endpoint.replace('|', "\\|"),
            row.metric.label(),
            row.metric.format(row.baseline),
            row.metric.format(row.current),
            row.change_text(),
            noise,
            row.verdict.label()
        );
    }
    for key in &comparison.missing {
        let _ = writeln!(out, "\n- `{key}` is in the baseline but not in this run");
    }
    for key in &comparison.new {
        let _ = writeln!(out, "\n- `{key}` is new in this run (not judged)");
    }
    let worse = |throughput: bool| {
        comparison
            .worse()
            .any(|row| (row.metric == Metric::Throughput) == throughput)
    };
    if worse(true) && worse(false) {
        let _ = writeln!(
            out,
            "\n- when users wait for each response (a closed model), one slower endpoint lowers \
             every endpoint's throughput: read the latency and error rows first"
        );
    }
    for note in &comparison.notes {
        let _ = writeln!(out, "\n- {note}");
    }
    out
}
