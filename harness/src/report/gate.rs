//! The pull-request gate's table as Markdown (also readable in a terminal).

use crate::baseline::compare::{
    Comparison, GateSettings, Metric, Row, Side, Verdict, resolution_text,
};
use crate::baseline::plan::PlannedRow;

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
        "A change is WORSE only when it is significant at {} % confidence, beyond {:.0} %, \
         and beyond {} ms (latency) or {} points (error rate). Intervals are at the same \
         confidence; `Could detect` is the smallest change this comparison catches {:.0} % \
         of the time; \"undecided\" is a figure within the threshold whose interval is not; \
         `beyond` counts the requests past the quantile; {}.\n",
        percent(settings.confidence),
        settings.relative * 100.0,
        settings.latency_floor_ms,
        settings.error_rate_floor_points,
        settings.power * 100.0,
        comparison.spread
    );
    if !comparison.machine.is_empty() {
        let _ = writeln!(
            out,
            "**The machine differs from the baseline's:** {}. A figure the difference could \
             explain (one that looks worse on a slower machine, by no more than its slowdown; any but a WORSE on a much \
             faster one) is marked \"machine differs\", not judged: compare on one machine \
             with --ab, or save the baseline again here.\n",
            comparison.machine.join("; ")
        );
    }
    let _ = writeln!(
        out,
        "| Endpoint | Metric | Baseline | Current | Change | Could detect | Evidence | Verdict |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---|---|");
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
            "| `{}` | {} | {} | {} | {} | {} | {} | {} |",
            row.endpoint.replace('|', "\\|"),
            row.metric.label(),
            side(row.metric, &row.baseline),
            side(row.metric, &row.current),
            row.change_text(),
            resolution(row),
            evidence(row),
            verdict_label(row)
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
    let undecided: Vec<String> = comparison
        .rows
        .iter()
        .filter(|row| row.undecided())
        .map(|row| {
            let needed = row
                .runs_needed
                .map(|n| {
                    format!(
                        ", ≈ {n} runs a side to reach ±{:.0} %",
                        settings.relative * 100.0
                    )
                })
                .unwrap_or_default();
            match row.resolution_text() {
                Some(r) => format!(
                    "`{}` {} (could detect ≥ {r}{needed})",
                    row.endpoint,
                    row.metric.label()
                ),
                None => format!(
                    "`{}` {} (not enough data)",
                    row.endpoint,
                    row.metric.label()
                ),
            }
        })
        .collect();
    if !undecided.is_empty() {
        let _ = writeln!(
            out,
            "\n- {} gated figure(s) undecided, so not checked: a regression smaller than what \
             they could detect would pass unseen (more runs, --until-decided, or `gate = [...]` \
             to gate fewer figures): {}",
            undecided.len(),
            undecided.join("; ")
        );
    }
    let gated: Vec<&str> = settings.metrics.iter().map(|m| m.label()).collect();
    let _ = writeln!(out, "\n- gated figures: {}", gated.join(", "));
    for note in &comparison.notes {
        let _ = writeln!(out, "\n- {note}");
    }
    out
}

/// `99`, `99.75`: a share as a percentage, without trailing zeros.
pub fn percent(share: f64) -> String {
    let text = format!("{:.2}", share * 100.0);
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
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

/// The verdict; "same" only when the interval of the change is within the
/// threshold, "undecided" when the point is but the interval is not.
fn verdict_label(row: &Row) -> &'static str {
    if row.verdict == Verdict::Same && !row.decided {
        "undecided"
    } else {
        row.verdict.label()
    }
}

/// `≥ +38 %`: the smallest change the row would catch, at the gate's power.
fn resolution(row: &Row) -> String {
    row.resolution_text()
        .map_or_else(|| "–".to_owned(), |text| format!("≥ {text}"))
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

/// `perf plan-gate`'s table: what a gate with `runs` runs a side could
/// detect, per figure, from `baseline_runs` saved runs.
pub fn render_plan(
    suite: &str,
    baseline: &str,
    baseline_runs: usize,
    runs: usize,
    rows: &[PlannedRow],
    settings: &GateSettings,
) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### Gate plan — {suite}, {runs} run(s) a side, from baseline `{baseline}` ({baseline_runs} run(s))\n"
    );
    let _ = writeln!(
        out,
        "`Could detect` is the smallest change caught {} % of the time at {} % confidence \
         (never below the {:.0} % threshold or the floor); the last column is the runs a side \
         that would bring it within the threshold. The spread between runs is the baseline's \
         own{}.\n",
        percent(settings.power),
        percent(settings.confidence),
        settings.relative * 100.0,
        if baseline_runs < 2 {
            " (one run: assumed, save more runs with --repeat to measure it)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "| Endpoint | Metric | Baseline | Could detect | Runs a side for ±{:.0} % |",
        settings.relative * 100.0
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|");
    let mut unreachable = Vec::new();
    for row in rows {
        let needed = match (row.runs_needed, &row.why) {
            (Some(n), _) if n > runs => {
                unreachable.push(format!("`{}` {}", row.endpoint, row.metric.label()));
                format!("{n}")
            }
            (Some(n), Some(_)) => format!("{n} to judge it at all"),
            (None, Some(why)) => why.clone(),
            _ => format!("{runs} (within)"),
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} |",
            row.endpoint.replace('|', "\\|"),
            row.metric.label(),
            row.metric.format(row.value),
            row.resolution.map_or_else(
                || "–".to_owned(),
                |r| format!("≥ {}", resolution_text(row.metric, r))
            ),
            needed
        );
    }
    if !unreachable.is_empty() {
        let _ = writeln!(
            out,
            "\n- {} figure(s) need more than {runs} run(s) a side to see a change of {:.0} %: {}",
            unreachable.len(),
            settings.relative * 100.0,
            unreachable.join(", ")
        );
    }
    out
}
