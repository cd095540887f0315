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

    /// The row's cells in the order of [`HEADER`], as every format shows them.
    fn cells(&self) -> [String; 7] {
        [
            self.shard.clone(),
            self.requests.to_string(),
            self.failures.to_string(),
            self.offset(),
            self.after_instant(),
            self.started_by.clone().unwrap_or_else(|| "-".to_owned()),
            self.status(),
        ]
    }
}

/// The columns of every format's table.
const HEADER: [&str; 7] = [
    "shard",
    "requests",
    "failures",
    "began",
    "after the instant",
    "by",
    "status",
];

impl ShardRow {
    /// The cells as a terminal line, aligned under [`text_table`]'s header.
    fn line(cells: &[String; 7]) -> String {
        format!(
            "{:<7} {:>10} {:>9} {:>11} {:>17}  {:<9} {}",
            cells[0], cells[1], cells[2], cells[3], cells[4], cells[5], cells[6]
        )
    }
}

/// The rows as a plain-text table, a line each with a header; nothing for
/// a run that is not a merge.
pub fn text_table(rows: &[ShardRow]) -> Vec<String> {
    if rows.is_empty() {
        return Vec::new();
    }
    std::iter::once(ShardRow::line(&HEADER.map(str::to_owned)))
        .chain(rows.iter().map(|row| ShardRow::line(&row.cells())))
        .collect()
}

/// The rows as a Markdown table.
pub fn markdown_table(rows: &[ShardRow]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let mut table = format!(
        "| {} |\n|---|---:|---:|---:|---:|---|---|\n",
        HEADER.join(" | ")
    );
    for row in rows {
        table.push_str(&format!("| {} |\n", row.cells().join(" | ")));
    }
    table
}

/// The rows as an HTML section.
pub fn html_section(rows: &[ShardRow], esc: impl Fn(&str) -> String) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let mut body = String::from(r#"<h2 id="shards">Shards</h2><table><tr>"#);
    for name in HEADER.iter().chain(["folder"].iter()) {
        body.push_str(&format!("<th>{name}</th>"));
    }
    body.push_str("</tr>");
    for row in rows {
        let cls = if row.merged { "" } else { "fail" };
        body.push_str(&format!(r#"<tr class="{cls}">"#));
        for cell in row.cells().iter().chain([&row.folder]) {
            body.push_str(&format!("<td>{}</td>", esc(cell)));
        }
        body.push_str("</tr>");
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
