//! The gate on a finished run: its figures compared with a saved baseline
//! (`baseline`), the table (`report::gate`) written beside the run's
//! reports and appended to `$GITHUB_STEP_SUMMARY` when set.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::baseline::{Baseline, Comparison, GateSettings, Pairing, RunFigures, compare};
use crate::report::gate::render_markdown;

/// What the gate said about one suite.
#[derive(Debug, Clone)]
pub enum GateOutcome {
    /// The baseline has no figures for this suite: not gated.
    NotInBaseline,
    Compared {
        comparison: Box<Comparison>,
        /// The table, as written to `baseline-NAME.md`.
        table: String,
    },
}

impl GateOutcome {
    pub fn passed(&self) -> bool {
        match self {
            GateOutcome::NotInBaseline => true,
            GateOutcome::Compared { comparison, .. } => comparison.passed(),
        }
    }

    pub fn inconclusive(&self) -> bool {
        match self {
            GateOutcome::NotInBaseline => false,
            GateOutcome::Compared { comparison, .. } => comparison.inconclusive(),
        }
    }
}

/// A run's figures, in its folder.
pub const FIGURES_FILE: &str = "figures.json";

/// Reads the figures of a finished run from its folder.
pub fn read_figures(run_dir: &Path) -> anyhow::Result<RunFigures> {
    let path = run_dir.join(FIGURES_FILE);
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "{} has no {FIGURES_FILE} (is it a run folder of this ahsp-perf?)",
            run_dir.display()
        )
    })?;
    serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
}

/// Two finished runs (their folders), B judged against A as `perf compare`
/// does: the same statistics as a saved baseline, one run a side.
pub fn compare_runs(
    run_a: &Path,
    run_b: &Path,
    settings: &GateSettings,
) -> anyhow::Result<Comparison> {
    let (a, b) = (read_figures(run_a)?, read_figures(run_b)?);
    let name = |dir: &Path| {
        dir.file_name().map_or_else(
            || dir.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    };
    Ok(compare(
        &name(run_a),
        &format!("run {}", name(run_b)),
        &[a],
        &[b],
        settings,
        Pairing::Saved,
    ))
}

/// Compares one suite's runs with the baseline's and writes
/// `baseline-NAME.md` and `.json` into `run_dir`.
pub fn check(
    against: &Baseline,
    runs: &[RunFigures],
    suite: &str,
    run_dir: &Path,
    settings: &GateSettings,
) -> anyhow::Result<GateOutcome> {
    let Some(then) = against.suites.get(suite) else {
        return Ok(GateOutcome::NotInBaseline);
    };
    let comparison = compare(
        &against.name,
        suite,
        &then.runs,
        runs,
        settings,
        Pairing::Saved,
    );
    write(comparison, run_dir, settings)
}

/// Writes a comparison's table (`baseline-NAME.md`) and figures (`.json`)
/// into `run_dir`, and to `$GITHUB_STEP_SUMMARY` when set.
pub fn write(
    comparison: Comparison,
    run_dir: &Path,
    settings: &GateSettings,
) -> anyhow::Result<GateOutcome> {
    let against = &comparison.baseline;
    let table = render_markdown(&comparison, settings);
    // Not `with_extension`: a baseline named `v1.2` would lose its `.2`.
    let path = |extension: &str| run_dir.join(format!("baseline-{against}.{extension}"));
    std::fs::write(path("md"), &table)?;
    std::fs::write(path("json"), serde_json::to_vec_pretty(&comparison)?)?;
    if let Some(summary) = std::env::var_os("GITHUB_STEP_SUMMARY") {
        use std::io::Write as _;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&summary)
            .with_context(|| format!("appending to {}", PathBuf::from(&summary).display()))?;
        writeln!(file, "{table}")?;
    }
    Ok(GateOutcome::Compared {
        comparison: Box::new(comparison),
        table,
    })
}
