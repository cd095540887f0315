//! The pull-request gate's table as Markdown (also readable in a terminal).

use crate::baseline::compare::{Comparison, GateSettings, Metric, Row, Side, Verdict};

/// The comparison as a Markdown table (also readable in a terminal).
pub fn render_markdown(comparison: &Comparison, settings: &GateSettings) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let verdict = if !comparison.passed() {
        "FAILED"
    } else if comparison.inconclusive() {
        "INCONCLUSIVE"
    } else if comparison.unclear().next().is_some() {
        "passed, with figures unclear"
    } else {
        "passed"
    };
    let _ = writeln!(
        out,
        "### Baseline `{}` — {}: gate {verdict}\n",
        comparison.baseline, comparison.suite
    );
    let _ = writeln!(
        out,
        "A change is WORSE only when it is significant at {:.0} % confidence, beyond {:.0} %, \
         and beyond {} ms (latency) or {} points (error rate). Intervals are at the same \
         confidence; `beyond` counts the requests past the quantile (fewest in a run); {}.\n",
        settings.confidence * 100.0,
        settings.relative * 100.0,
        settings.latency_floor_ms,
        settings.error_rate_floor_points,
        comparison.spread
    );
    if !comparison.machine.is_empty() {
        let _ = writeln!(
            out,
            "**The machine differs from the baseline's:** {}. A figure that looks worse is \
             marked \"machine differs\", not WORSE: compare on one machine with --ab, or save \
             the baseline again here.\n",
            comparison.machine.join("; ")
        );
    }
    let _ = writeln!(
        out,
        "| Endpoint | Metric | Baseline | Current | Change | Evidence | Verdict |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---|---|");
    let mut rows: Vec<&Row> = comparison.rows.iter().collect();
    // Regressions first, so a reader sees them without scrolling; among them
    // latency and errors before throughput, which is often their consequence.
    rows.sort_by_key(|row| {
        (
            !matches!(row.verdict, Verdict::Worse | Verdict::MachineDiffers),
            row.metric == Metric::Throughput,
        )
    });
    for row in rows {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} | {} | {} |",
            row.endpoint.replace('|', "\\|"),
            row.metric.label(),
            side(row.metric, &row.baseline),
            side(row.metric, &row.current),
            row.change_text(),
            evidence(row),
            row.verdict.label()
        );
    }
    for key in &comparison.missing {
        let _ = writeln!(out, "\n- `{key}` is in the baseline but not in this run");
    }
    for key in &comparison.new {
        let _ = writeln!(out, "\n- `{key}` is new in this run (not judged)");
    }
    let unclear = comparison.unclear().count();
    if unclear > 0 {
        let _ = writeln!(
            out,
            "\n- {unclear} figure(s) moved beyond the threshold, worse, but the runs differ too much \
             to tell whether it is real (\"unclear\"): they do not fail the gate; more runs \
             (--repeat N) or an interleaved comparison (--ab) would decide"
        );
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

/// `12.0 ms [10.1–14.2]`: the figure and its interval.
fn side(metric: Metric, side: &Side) -> String {
    let value = metric.format(side.value);
    match (side.low, side.high) {
        (Some(low), Some(high)) => {
            let bare = |v: f64| {
                let text = metric.format(v);
                text.split(' ').next().unwrap_or_default().to_owned()
            };
            format!("{value} [{}–{}]", bare(low), bare(high))
        }
        _ => value,
    }
}

/// What the verdict rests on: requests beyond the quantile and runs, or
/// why there is not enough data.
fn evidence(row: &Row) -> String {
    if let Some(why) = &row.why {
        return why.clone();
    }
    let runs = format!("runs {}/{}", row.baseline.runs, row.current.runs);
    match (row.baseline.beyond, row.current.beyond) {
        (Some(then), Some(now)) => format!("beyond {then:.0}/{now:.0}, {runs}"),
        _ => runs,
    }
}
