//! The calibration's ledger: one JSON line per comparison, appended as soon
//! as the comparison is judged. A calibration at the goals' size (20 pairs a
//! mode, each up to 20 minutes) takes hours of machine time; kept pair by
//! pair, it survives an interrupted session and adds up across sessions,
//! and `gate-calibration --summary` totals it, so that every figure in the
//! README's table comes from lines anyone can read and recount.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use harness::baseline::Row;
use serde::{Deserialize, Serialize};

use super::ModeFigures;

/// What a comparison was run with: the lines that agree on it are one row.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Setting {
    pub app: String,
    pub noisy: bool,
    pub profile: Option<String>,
    pub mode: String,
    /// Runs a side at the first look.
    pub runs: usize,
    pub until_decided: Option<String>,
    /// Confidence and threshold in per mille, so that settings compare exactly.
    pub confidence_permille: u32,
    pub relative_permille: u32,
}

/// One comparison: when, by which build, with what, and what it found.
#[derive(Debug, Serialize, Deserialize)]
pub struct Entry {
    pub at: String,
    pub build: String,
    pub setting: Setting,
    pub figures: ModeFigures,
    /// The rows worth reading again, whole: the slowed endpoint's
    /// quantiles (with what each could detect) and every WORSE.
    #[serde(default)]
    pub rows: Vec<Row>,
}

impl Entry {
    pub fn now(setting: Setting, figures: ModeFigures, rows: Vec<Row>) -> Entry {
        Entry {
            at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            build: env!("AHSP_PERF_BUILD").to_owned(),
            setting,
            figures,
            rows,
        }
    }
}

/// Appends one line and flushes it, so that a killed calibration keeps
/// every comparison it finished.
pub fn append(path: &Path, entry: &Entry) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let mut line = serde_json::to_vec(entry)?;
    line.push(b'\n');
    file.write_all(&line)?;
    file.sync_data()?;
    Ok(())
}

/// A ledger's lines totalled per setting, with the builds and the span of
/// time they came from.
#[derive(Debug, Default)]
pub struct Total {
    pub figures: ModeFigures,
    pub builds: std::collections::BTreeSet<String>,
    pub first: String,
    pub last: String,
}

pub fn read(path: &Path) -> anyhow::Result<BTreeMap<Setting, Total>> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
    let mut totals: BTreeMap<Setting, Total> = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let entry: Entry = serde_json::from_str(line)
            .map_err(|error| anyhow::anyhow!("{}:{}: {error}", path.display(), number + 1))?;
        let total = totals.entry(entry.setting).or_default();
        total.figures.add(&entry.figures);
        total.builds.insert(entry.build);
        if total.first.is_empty() || entry.at < total.first {
            total.first.clone_from(&entry.at);
        }
        if entry.at > total.last {
            total.last = entry.at;
        }
    }
    Ok(totals)
}

/// `gate-calibration --summary`: the table on stdout, where each row's
/// comparisons came from on stderr.
pub fn print_summary(path: &Path) -> anyhow::Result<()> {
    let totals = read(path)?;
    print!("{}", table(&totals));
    for (setting, total) in &totals {
        eprintln!(
            "{} {}: {} pair(s) from {} to {}, build(s) {}",
            setting.app,
            setting.mode,
            total.figures.pairs,
            total.first,
            total.last,
            total.builds.iter().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    Ok(())
}

/// The README's calibration table: one row per setting.
pub fn table(totals: &BTreeMap<Setting, Total>) -> String {
    let mut out = String::from(
        "| target, mode | profile | pairs | runs a side (mean) | false alarms (judged figures; pairs) | held back: machine differs, unclear | slowed p50 / p95 / p99 WORSE | caught when the stated resolution was finer: p95, p99 |\n|---|---|---:|---:|---|---|---|---|\n",
    );
    for (setting, total) in totals {
        let figures = &total.figures;
        let target = match (setting.app.as_str(), setting.noisy) {
            ("reference", true) => "reference `noisy`".to_owned(),
            (app, _) => format!("`{app}`"),
        };
        let budget = setting
            .until_decided
            .as_ref()
            .map(|budget| format!(", until decided ≤ {budget}"))
            .unwrap_or_default();
        let detecting = setting.mode.starts_with("detect");
        let pct = |n: usize, of: usize| {
            if of == 0 {
                "—".to_owned()
            } else {
                format!("{n} of {of} ({:.0} %)", n as f64 / of as f64 * 100.0)
            }
        };
        out.push_str(&format!(
            "| {target}, `{}`{budget} | {} | {} | {:.1} | {} of {}; {} of {} pairs | {}, {} | {} | {} |\n",
            setting.mode,
            setting.profile.as_deref().unwrap_or("base"),
            figures.pairs,
            figures.runs_per_side as f64 / figures.pairs.max(1) as f64,
            figures.false_alarms,
            figures.judged,
            figures.pairs_with_false_alarm,
            figures.pairs,
            figures.machine_differs,
            figures.unclear,
            if detecting {
                format!(
                    "{} / {} / {} of {}",
                    figures.detected_p50, figures.detected_p95, figures.detected_p99, figures.pairs
                )
            } else {
                "—".to_owned()
            },
            if detecting {
                format!(
                    "{}; {}",
                    pct(
                        figures.p95_caught_within_resolution,
                        figures.p95_within_resolution,
                    ),
                    pct(
                        figures.p99_caught_within_resolution,
                        figures.p99_within_resolution,
                    )
                )
            } else {
                "—".to_owned()
            },
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's calibration table sits between these two lines.
    const README_START: &str = "<!-- gate-calibration --summary: start -->";
    const README_END: &str = "<!-- gate-calibration --summary: end -->";

    fn setting(mode: &str) -> Setting {
        Setting {
            app: "reference".into(),
            noisy: true,
            profile: None,
            mode: mode.into(),
            runs: 2,
            until_decided: Some("20m".into()),
            confidence_permille: 990,
            relative_permille: 250,
        }
    }

    fn detected(p95: bool) -> ModeFigures {
        ModeFigures {
            pairs: 1,
            judged: 6,
            detected_p50: 1,
            detected_p95: usize::from(p95),
            p95_within_resolution: 1,
            p95_caught_within_resolution: usize::from(p95),
            runs_per_side: 5,
            ..ModeFigures::default()
        }
    }

    #[test]
    fn comparisons_of_one_setting_add_up_and_others_stay_apart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/ledger.jsonl");
        append(
            &path,
            &Entry::now(setting("detect-50"), detected(true), Vec::new()),
        )
        .unwrap();
        append(
            &path,
            &Entry::now(setting("detect-50"), detected(false), Vec::new()),
        )
        .unwrap();
        let mut alarm = ModeFigures {
            pairs: 1,
            judged: 10,
            false_alarms: 1,
            pairs_with_false_alarm: 1,
            runs_per_side: 2,
            ..ModeFigures::default()
        };
        alarm.by_figure.insert("GET /dashboard/ p95".into(), 1);
        append(
            &path,
            &Entry::now(setting("interleaved"), alarm, Vec::new()),
        )
        .unwrap();

        let totals = read(&path).unwrap();
        assert_eq!(totals.len(), 2);
        let detect = &totals[&setting("detect-50")].figures;
        assert_eq!(
            (detect.pairs, detect.detected_p95, detect.detected_p50),
            (2, 1, 2)
        );
        assert_eq!(detect.runs_per_side, 10);
        let table = table(&totals);
        assert!(
            table.contains("| reference `noisy`, `detect-50`, until decided ≤ 20m | base | 2 | 5.0 | 0 of 12; 0 of 2 pairs | 0, 0 | 2 / 1 / 0 of 2 | 1 of 2 (50 %); — |"),
            "{table}"
        );
        assert!(
            table.contains("| 1 of 10; 1 of 1 pairs | 0, 0 | — | — |"),
            "{table}"
        );
        assert_eq!(
            totals[&setting("interleaved")].figures.by_figure["GET /dashboard/ p95"],
            1
        );
    }

    #[test]
    fn a_line_that_does_not_parse_is_named_by_its_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.jsonl");
        append(
            &path,
            &Entry::now(setting("interleaved"), detected(true), Vec::new()),
        )
        .unwrap();
        std::fs::write(
            &path,
            // Line 2 is blank (skipped), line 3 is not an entry.
            format!(
                "{}\n{{\"at\": 1}}\n",
                std::fs::read_to_string(&path).unwrap()
            ),
        )
        .unwrap();
        let error = read(&path).unwrap_err().to_string();
        assert!(error.contains("ledger.jsonl:3:"), "{error}");
    }

    /// The README's calibration table is the committed ledger, recounted:
    /// no figure in it can drift from the comparisons that produced it.
    #[test]
    fn the_readme_table_is_the_committed_ledger_recounted() {
        let root = crate::project_root();
        let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
        let start = readme
            .find(README_START)
            .expect("README marks the calibration table");
        let end = readme
            .find(README_END)
            .expect("README ends the calibration table");
        let shown = readme[start + README_START.len()..end].trim();
        let totals = read(&root.join("benches/calibration.jsonl")).unwrap();
        assert_eq!(
            shown,
            table(&totals).trim(),
            "the README's calibration table differs from `cargo xtask gate-calibration --summary`"
        );
    }
}
