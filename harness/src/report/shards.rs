//! A merged run's shards, one row each: what each sent and failed, when its
//! load began beside the others' (to the millisecond), whether it was late,
//! stopped early by abort-on-fail, or missing. The same rows in every
//! format: the terminal, the Markdown summary, the HTML report and
//! `result.json`.

use serde::{Deserialize, Serialize};

/// One shard of a merged run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ShardRow {
    /// `I/N`.
    pub shard: String,
    /// Its run folder, as the merge was given it.
    pub folder: String,
    /// Whether its result is in the merged figures: a missing shard's
    /// folder had no `shard.json`, or was not given.
    pub merged: bool,
    pub requests: u64,
    pub failures: u64,
    /// When its load began, after the first shard's, in milliseconds.
    pub start_offset_ms: Option<u64>,
    /// How long after the agreed instant its load began, in milliseconds.
    pub late_ms: Option<u64>,
    /// Later than the merge's tolerance (`--start-tolerance`).
    #[serde(default)]
    pub late: bool,
    /// How the shards were started together: `barrier`, `clock` (an
    /// instant on each shard's own clock) or none.
    pub started_by: Option<String>,
    /// An abort-on-fail threshold ended its load early.
    pub aborted: bool,
}

impl ShardRow {
    /// What the row says beyond its figures.
    fn status(&self) -> String {
        if !self.merged {
            return "MISSING".to_owned();
        }
        let mut words = Vec::new();
        if self.late {
            words.push("LATE".to_owned());
        }
        if self.aborted {
            words.push("aborted".to_owned());
        }
        if words.is_empty() {
            "ok".to_owned()
        } else {
            words.join(", ")
        }
    }

    fn offset(&self) -> String {
        self.start_offset_ms
            .map_or_else(|| "-".to_owned(), |ms| format!("+{ms} ms"))
    }

    fn after_instant(&self) -> String {
        self.late_ms
            .map_or_else(|| "-".to_owned(), |ms| format!("+{ms} ms"))
    }
}

/// The rows as a plain-text table, a line each with a header; nothing for
/// a run that is not a merge.
pub fn text_table(rows: &[ShardRow]) -> Vec<String> {
    if rows.is_empty() {
        return Vec::new();
    }
    let mut lines = vec![format!(
        "{:<7} {:>10} {:>9} {:>11} {:>13}  {:<9} status",
        "shard", "requests", "failures", "began", "after instant", "by"
    )];
    for row in rows {
        lines.push(format!(
            "{:<7} {:>10} {:>9} {:>11} {:>13}  {:<9} {}",
            row.shard,
            row.requests,
            row.failures,
            row.offset(),
            row.after_instant(),
            row.started_by.as_deref().unwrap_or("-"),
            row.status()
        ));
    }
    lines
}

/// The rows as a Markdown table.
pub fn markdown_table(rows: &[ShardRow]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let mut table = String::from(
        "| shard | requests | failures | began | after the instant | by | status |\n|---|---:|---:|---:|---:|---|---|\n",
    );
    for row in rows {
        table.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            row.shard,
            row.requests,
            row.failures,
            row.offset(),
            row.after_instant(),
            row.started_by.as_deref().unwrap_or("-"),
            row.status()
        ));
    }
    table
}

/// The rows as an HTML section.
pub fn html_section(rows: &[ShardRow], esc: impl Fn(&str) -> String) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let mut body = String::from(
        r#"<h2 id="shards">Shards</h2><table><tr><th>shard</th><th>requests</th><th>failures</th><th>began</th><th>after the instant</th><th>by</th><th>status</th><th>folder</th></tr>"#,
    );
    for row in rows {
        body.push_str(&format!(
            r#"<tr class="{cls}"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            esc(&row.shard),
            row.requests,
            row.failures,
            esc(&row.offset()),
            esc(&row.after_instant()),
            esc(row.started_by.as_deref().unwrap_or("-")),
            esc(&row.status()),
            esc(&row.folder),
            cls = if row.merged { "" } else { "fail" },
        ));
    }
    body.push_str("</table>");
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(shard: &str, merged: bool, late_ms: Option<u64>, aborted: bool) -> ShardRow {
        ShardRow {
            shard: shard.to_owned(),
            folder: format!("/results/run/{shard}"),
            merged,
            requests: if merged { 1200 } else { 0 },
            failures: 3,
            start_offset_ms: merged.then_some(12),
            late_ms,
            late: late_ms.is_some_and(|ms| ms > 1000),
            started_by: Some("barrier".to_owned()),
            aborted,
        }
    }

    #[test]
    fn each_row_says_whether_its_shard_was_merged_late_or_aborted() {
        let rows = [
            row("0/3", true, Some(0), false),
            row("1/3", true, Some(2300), true),
            row("2/3", false, None, false),
        ];
        let lines = text_table(&rows);
        assert_eq!(lines.len(), 4);
        assert!(lines[1].ends_with(" ok"), "{}", lines[1]);
        assert!(lines[2].ends_with("LATE, aborted"), "{}", lines[2]);
        assert!(lines[2].contains("+2300 ms"), "{}", lines[2]);
        assert!(lines[3].ends_with("MISSING"), "{}", lines[3]);
        assert!(markdown_table(&rows).contains("| 2/3 | 0 | 3 | - | - | barrier | MISSING |"));
        assert!(html_section(&rows, str::to_owned).contains("<td>+12 ms</td>"));
        assert!(text_table(&[]).is_empty());
    }
}
