//! The gate, in one home: its choices (`GateOptions`, alike for `perf`,
//! `perf merge` and `perf compare`), the saved baseline a set or a merged
//! run is judged against (`Gate::open`), the judging of one suite's runs
//! against it or of arm B against arm A (`Gate::judge`), the saving of runs
//! as a baseline (`Gate::save`), and two finished runs judged after the fact
//! (`compare_runs`). The statistics are in `baseline`; the table is
//! `report::gate`'s, written beside the run's reports and appended to
//! `$GITHUB_STEP_SUMMARY` when set.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::baseline::{
    Baseline, Comparison, GateSettings, KEEP_RUNS, Metric, Pairing, RunFigures, SuiteBaseline,
    compare,
};
use crate::report::gate::render_markdown;

/// The gate's choices: which baseline to judge against or save into, and
/// how sure a regression must be.
#[derive(Debug, Clone)]
pub struct GateOptions {
    /// Where baselines live.
    pub baseline_dir: PathBuf,
    /// Judge each suite against this saved baseline.
    pub baseline: Option<String>,
    /// Save each suite's figures into this baseline.
    pub save_baseline: Option<String>,
    /// How large and how sure a change must be to be a regression.
    pub settings: GateSettings,
    /// How many runs per suite a saved baseline keeps.
    pub keep_runs: usize,
    /// The figures judged, from the command line (`--gate`): over a suite's
    /// own `[suite] gate`, which is over all of them.
    pub metrics: Option<Vec<Metric>>,
    /// Keep adding runs until every gated figure is decided, or this much
    /// time has passed (`--until-decided --budget`).
    pub until_decided: Option<std::time::Duration>,
}

impl GateOptions {
    /// No baseline judged or saved, the default settings.
    pub fn new(baseline_dir: PathBuf) -> GateOptions {
        GateOptions {
            baseline_dir,
            baseline: None,
            save_baseline: None,
            settings: GateSettings::default(),
            keep_runs: KEEP_RUNS,
            metrics: None,
            until_decided: None,
        }
    }
}

/// What a suite's runs are judged against.
#[derive(Debug, Clone, Copy)]
pub enum Against<'a> {
    /// The gate's saved baseline (`--baseline`), if it names one.
    Saved,
    /// Arm A's runs, interleaved on this machine with arm B's (`--ab`); the
    /// note says what the arms are.
    ArmA {
        runs: &'a [RunFigures],
        note: &'a str,
    },
}

/// The gate of a set of suites or a merged run: its baseline loaded once,
/// before anything runs, so a missing one is an error up front.
#[derive(Debug)]
pub struct Gate<'a> {
    options: &'a GateOptions,
    against: Option<Baseline>,
}

impl<'a> Gate<'a> {
    pub fn open(options: &'a GateOptions) -> anyhow::Result<Gate<'a>> {
        let against = match &options.baseline {
            Some(name) => Some(Baseline::load(&options.baseline_dir, name)?),
            None => None,
        };
        Ok(Gate { options, against })
    }

    /// The settings a suite is judged with: the figures `--gate` names, or
    /// else the suite's `[suite] gate`, or else all.
    pub fn settings_for(&self, suite_gate: Option<&[Metric]>) -> GateSettings {
        let mut settings = self.options.settings.clone();
        if let Some(metrics) = self.options.metrics.as_deref().or(suite_gate) {
            settings.metrics = Metric::ALL
                .into_iter()
                .filter(|metric| metrics.contains(metric))
                .collect();
        }
        settings
    }

    /// Whether a saved baseline or arm A is there to judge against.
    pub fn judges(&self, against: Against<'_>) -> bool {
        matches!(against, Against::ArmA { .. }) || self.against.is_some()
    }

    /// Judges one suite's runs, against arm A's or the saved baseline, with
    /// `settings` (`settings_for`), without writing anything. `None`:
    /// nothing to judge against, or the baseline has no such suite.
    pub fn compare(
        &self,
        suite: &str,
        runs: &[RunFigures],
        against: Against<'_>,
        settings: &GateSettings,
    ) -> Option<Comparison> {
        match against {
            Against::ArmA { runs: a, note } => {
                let mut comparison = compare("A", suite, a, runs, settings, Pairing::Interleaved);
                comparison.notes.push(note.to_owned());
                Some(comparison)
            }
            Against::Saved => {
                let baseline = self.against.as_ref()?;
                let then = baseline.suites.get(suite)?;
                Some(compare(
                    &baseline.name,
                    suite,
                    &then.runs,
                    runs,
                    settings,
                    Pairing::Saved,
                ))
            }
        }
    }

    /// Judges one suite's runs, against arm A's or the saved baseline, and
    /// writes the table, with `notes` added, into `run_dir`. `None`: nothing
    /// to judge against.
    pub fn judge(
        &self,
        suite: &str,
        runs: &[RunFigures],
        against: Against<'_>,
        run_dir: &Path,
        settings: &GateSettings,
        notes: &[String],
    ) -> anyhow::Result<Option<GateOutcome>> {
        if let (Against::Saved, Some(baseline)) = (against, &self.against)
            && !baseline.suites.contains_key(suite)
        {
            return Ok(Some(GateOutcome::NotInBaseline));
        }
        match self.compare(suite, runs, against, settings) {
            Some(mut comparison) => {
                comparison.notes.extend_from_slice(notes);
                Ok(Some(write(comparison, run_dir, settings)?))
            }
            None => Ok(None),
        }
    }

    /// What a suite's outcome says when the baseline has none of its figures.
    pub fn not_in_baseline(&self, suite: &str) -> String {
        format!(
            "baseline `{0}` has no figures for suite {suite}: not gated (save them with --save-baseline {0})\n",
            self.options.baseline.as_deref().unwrap_or_default()
        )
    }

    /// Saves each suite's runs into `--save-baseline`'s baseline (merged
    /// into what it holds, its oldest runs dropped beyond `keep_runs`), and
    /// says where.
    pub fn save(&self, runs: Vec<(String, Vec<RunFigures>)>) -> anyhow::Result<Option<String>> {
        let Some(name) = &self.options.save_baseline else {
            return Ok(None);
        };
        if runs.is_empty() {
            return Ok(None);
        }
        let dir = &self.options.baseline_dir;
        let suites: Vec<String> = runs.iter().map(|(suite, _)| suite.clone()).collect();
        let mut baseline = Baseline::load_or_new(dir, name)?;
        for (suite, runs) in runs {
            baseline
                .suites
                .entry(suite)
                .or_insert_with(|| SuiteBaseline { runs: Vec::new() })
                .record(runs, self.options.keep_runs);
        }
        let path = baseline.save(dir)?;
        Ok(Some(format!(
            "baseline `{name}` saved for {}: {}",
            suites.join(", "),
            path.display()
        )))
    }
}

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

/// `perf plan-gate`: what a gate of `suite` with `runs` runs a side could
/// detect, from the saved baseline `options.baseline`, as a table.
pub fn plan_gate(options: &GateOptions, suite: &str, runs: usize) -> anyhow::Result<String> {
    let name = options
        .baseline
        .as_deref()
        .context("plan-gate needs a saved baseline (--baseline NAME)")?;
    let baseline = Baseline::load(&options.baseline_dir, name)?;
    let Some(then) = baseline.suites.get(suite) else {
        anyhow::bail!(
            "baseline `{name}` has no runs of suite `{suite}` (it has: {})",
            baseline
                .suites
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    let gate = Gate {
        options,
        against: None,
    };
    let settings = gate.settings_for(None);
    let rows = crate::baseline::plan::plan(&then.runs, runs, &settings);
    Ok(crate::report::gate::render_plan(
        suite,
        name,
        then.runs.len(),
        runs,
        &rows,
        &settings,
    ))
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

/// Writes a comparison's table (`baseline-NAME.md`) and figures (`.json`)
/// into `run_dir`, and to `$GITHUB_STEP_SUMMARY` when set.
fn write(
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
