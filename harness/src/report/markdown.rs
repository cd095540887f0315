//! A Markdown summary fit for a pull-request comment and for
//! `$GITHUB_STEP_SUMMARY`: the verdict first, then what failed and why, then
//! the numbers.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;

use super::{Reporter, RunReport};

fn escape(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// Renders one run's summary.
pub fn render(report: &RunReport) -> String {
    let summary = &report.summary;
    let mut out = String::new();
    let failed = report.thresholds.iter().filter(|t| !t.passed).count();
    let _ = writeln!(
        out,
        "### {} `{}` — {}\n",
        if report.thresholds.is_empty() {
            "⏸"
        } else if report.passed {
            "✅"
        } else {
            "❌"
        },
        summary.suite,
        if report.thresholds.is_empty() {
            "not judged (a shard: the merge judges the whole)".to_owned()
        } else if report.passed {
            "every threshold held".to_owned()
        } else {
            format!("{failed} of {} thresholds failed", report.thresholds.len())
        }
    );
    if let Some(interruption) = &report.interrupted {
        let _ = writeln!(out, "> **⚠ Partial run:** {}.\n", interruption.describe());
    }
    let _ = writeln!(
        out,
        "Profile `{}` against `{}`: {:.0}s measured after {:.0}s warm-up, up to {} users, {} requests.\n",
        summary.profile,
        summary.target,
        summary.measured_seconds,
        summary.warm_up_seconds,
        summary.max_users,
        summary.total.requests
    );
    if let Some(hang) = summary.hang_note() {
        let _ = writeln!(out, "> **Hung:** {}.\n", escape(&hang));
    }
    if !report.shards.is_empty() {
        let _ = writeln!(out, "{}", super::shards::markdown_table(&report.shards));
    }
    let _ = writeln!(
        out,
        "| | threshold | observed | detail |\n|---|---|---|---|"
    );
    for threshold in &report.thresholds {
        let mut detail = escape(&threshold.detail);
        for cause in &threshold.diagnosis {
            detail.push_str(&format!("<br>↳ {}", escape(cause)));
        }
        let _ = writeln!(
            out,
            "| {} | `{}` | {} | {} |",
            if threshold.passed { "✅" } else { "❌" },
            escape(&threshold.source),
            escape(&threshold.observed_text),
            detail
        );
    }
    let _ = writeln!(out, "\n<details><summary>Endpoints</summary>\n");
    let _ = writeln!(
        out,
        "| endpoint | requests | failures | p50 ms | p95 ms | p99 ms | max ms | req/s |\n|---|---:|---:|---:|---:|---:|---:|---:|"
    );
    for endpoint in summary
        .endpoints
        .iter()
        .chain(std::iter::once(&summary.total))
    {
        let latency = &endpoint.latency_ms;
        let _ = writeln!(
            out,
            "| `{} {}` | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
            endpoint.meta.method,
            escape(&endpoint.meta.name),
            endpoint.requests,
            endpoint.failures,
            latency.p50,
            latency.p95,
            latency.p99,
            latency.max,
            endpoint.requests_per_second
        );
    }
    let _ = writeln!(out, "\n</details>");
    out.push_str(&super::traces::markdown_table(summary));
    if let Some(browser) = &summary.browser {
        let _ = writeln!(
            out,
            "\n**Pages in real browsers** ({}; ms from the start of the navigation)\n",
            escape(&browser.headline())
        );
        let columns = crate::browser::PAGE_COLUMNS;
        let _ = writeln!(
            out,
            "| {} |\n|---|{}---|",
            columns.join(" | "),
            "---:|".repeat(columns.len() - 2)
        );
        for row in browser.rows() {
            let cells: Vec<String> = row.cells().iter().map(|c| escape(c)).collect();
            let _ = writeln!(out, "| `{}` | {} |", cells[0], cells[1..].join(" | "));
        }
    }
    if let Some(probes) = &report.probes {
        let interesting: Vec<String> = probes
            .values
            .iter()
            .filter(|(k, _)| {
                k.starts_with("pgbouncer.")
                    || k.starts_with("redis.hit")
                    || k.ends_with("memory.max")
                    || k.starts_with("postgres.deadlocks")
            })
            .map(|(k, v)| {
                format!(
                    "`{k}` {}",
                    if k.contains("ratio") {
                        format!("{:.1}%", v * 100.0)
                    } else {
                        format!("{v:.1}")
                    }
                )
            })
            .collect();
        if !interesting.is_empty() {
            let _ = writeln!(out, "\n**Below HTTP:** {}", interesting.join(" · "));
        }
    }
    if let Some(coverage) = &report.coverage {
        let categories: Vec<String> = coverage
            .categories
            .iter()
            .map(|c| format!("{} {:.0}%", c.category, c.fraction * 100.0))
            .collect();
        let _ = writeln!(
            out,
            "\n**Route coverage:** {:.0}% ({})",
            coverage.overall * 100.0,
            categories.join(", ")
        );
    }
    out
}

/// Writes `summary.md`, and appends it to `$GITHUB_STEP_SUMMARY` when set.
#[derive(Debug)]
pub struct MarkdownReporter {
    pub path: PathBuf,
}

impl Reporter for MarkdownReporter {
    fn finished(&mut self, report: &RunReport) -> anyhow::Result<()> {
        let text = render(report);
        std::fs::write(&self.path, &text)
            .with_context(|| format!("writing {}", self.path.display()))?;
        if let Some(step_summary) = std::env::var_os("GITHUB_STEP_SUMMARY") {
            use std::io::Write as _;
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(step_summary)?;
            writeln!(file, "{text}")?;
        }
        Ok(())
    }
}
