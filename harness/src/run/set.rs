//! A set of suites, as `cargo xtask perf` runs them: each suite run (once,
//! `--repeat N` times, or as an interleaved A/B pair) and, with a baseline,
//! gated; their figures saved as a baseline when asked; the outcome of the
//! whole mapped to one exit code.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::gate::{self, GateOutcome};
use super::{Domain, RunError, RunOptions, SuiteRun, run_suite};
use crate::baseline::{
    Baseline, Comparison, Fingerprint, GateSettings, KEEP_RUNS, Pairing, RunFigures, SuiteBaseline,
    compare,
};

/// Every threshold held and the gate passed.
pub const EXIT_PASSED: i32 = 0;
/// A threshold failed or a figure regressed against the baseline.
pub const EXIT_THRESHOLD_FAILED: i32 = 1;
/// No verdict: a bad suite file, the stack, the target, a missing baseline,
/// a machine too unlike the baseline's to compare with.
pub const EXIT_HARNESS_ERROR: i32 = 2;

/// Choices for a set of suites.
#[derive(Debug, Clone)]
pub struct SetOptions {
    pub run: RunOptions,
    /// Where baselines live.
    pub baseline_dir: PathBuf,
    /// Save each suite's figures under this baseline name.
    pub save_baseline: Option<String>,
    /// Gate each suite against this baseline.
    pub baseline: Option<String>,
    pub gate: GateSettings,
    /// How many times each suite runs (each side, with `ab`).
    pub repeat: usize,
    /// How many runs per suite a saved baseline keeps.
    pub keep_runs: usize,
    /// Judge arm B against arm A, run interleaved on this machine.
    pub ab: Option<(Arm, Arm)>,
}

impl SetOptions {
    pub fn new(run: RunOptions, baseline_dir: PathBuf) -> SetOptions {
        SetOptions {
            run,
            baseline_dir,
            save_baseline: None,
            baseline: None,
            gate: GateSettings::default(),
            repeat: 1,
            keep_runs: KEEP_RUNS,
            ab: None,
        }
    }
}

/// One side of an A/B comparison: the target it runs against.
#[derive(Debug, Clone, PartialEq)]
pub enum Arm {
    /// An application someone else runs.
    Url(crate::secret::SecretUrl),
    /// The embedded reference service, with these pathology switches.
    Reference { switches: Vec<String> },
    /// A command that starts the application (as a suite's `target.command`).
    Command(Vec<String>),
}

impl std::str::FromStr for Arm {
    type Err = String;

    /// `http://…`, `reference`, `reference+SWITCH+SWITCH…`, or a command line.
    fn from_str(text: &str) -> Result<Arm, String> {
        let text = text.trim();
        if text.starts_with("http://") || text.starts_with("https://") {
            Ok(Arm::Url(text.into()))
        } else if text == "reference" {
            Ok(Arm::Reference {
                switches: Vec::new(),
            })
        } else if let Some(switches) = text.strip_prefix("reference+") {
            Ok(Arm::Reference {
                switches: switches.split('+').map(str::to_owned).collect(),
            })
        } else {
            let words = shell_words::split(text)
                .map_err(|e| format!("`{text}` is not a command line: {e}"))?;
            if words.is_empty() {
                return Err(
                    "an arm is a URL, `reference[+SWITCH…]` or a command that starts the app"
                        .to_owned(),
                );
            }
            Ok(Arm::Command(words))
        }
    }
}

impl std::fmt::Display for Arm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Arm::Url(url) => write!(f, "{url}"),
            Arm::Reference { switches } if switches.is_empty() => write!(f, "reference"),
            Arm::Reference { switches } => write!(f, "reference+{}", switches.join("+")),
            Arm::Command(words) => write!(f, "{}", shell_words::join(words)),
        }
    }
}

impl Arm {
    /// The run options of this arm.
    pub fn apply(&self, run: &RunOptions) -> RunOptions {
        let mut run = run.clone();
        match self {
            Arm::Url(url) => {
                run.target_url = Some(url.clone());
                run.target_command.clear();
            }
            Arm::Reference { switches } => {
                run.target_url = None;
                run.target_command.clear();
                run.switches.extend(switches.iter().cloned());
            }
            Arm::Command(words) => {
                run.target_url = None;
                run.target_command = words.clone();
            }
        }
        run
    }
}

/// What became of each suite of a set.
#[derive(Debug, Clone, Default)]
pub struct SetOutcome {
    /// Suites that ran to a verdict.
    pub ran: Vec<String>,
    /// Suites with a failed threshold.
    pub failed: Vec<String>,
    /// Suites with a figure worse than the baseline.
    pub regressed: Vec<String>,
    /// Suites whose gate could not judge (the machine differs from the baseline's).
    pub inconclusive: Vec<String>,
    /// Suite files that could not run, with why.
    pub broken: Vec<(PathBuf, String)>,
    /// Suites left out by the profile.
    pub skipped: Vec<String>,
    /// The signal that cut the set short (its reports are still written).
    pub interrupted_by: Option<i32>,
    /// Each gated suite's comparison, with the folder its table went to.
    pub comparisons: Vec<(PathBuf, Comparison)>,
}

impl SetOutcome {
    pub fn exit_code(&self) -> i32 {
        if let Some(signal) = self.interrupted_by {
            // As a shell reports a process a signal ended: 130, 143.
            128 + signal
        } else if !self.broken.is_empty() {
            EXIT_HARNESS_ERROR
        } else if !self.failed.is_empty() || !self.regressed.is_empty() {
            EXIT_THRESHOLD_FAILED
        } else if self.ran.is_empty() || !self.inconclusive.is_empty() {
            EXIT_HARNESS_ERROR
        } else {
            EXIT_PASSED
        }
    }
}

/// One suite's runs: what the gate and a saved baseline need.
struct SuiteRuns {
    suite: String,
    /// Arm A's runs with `ab`; otherwise every run.
    first: Vec<RunFigures>,
    /// Arm B's runs with `ab`.
    second: Vec<RunFigures>,
    /// The last run's folder, where the gate's table goes.
    last_dir: PathBuf,
    failed: bool,
}

/// Runs every suite file in turn. A missing baseline is an error before any
/// suite runs; a suite that cannot run is recorded and the next one runs.
pub async fn run_set(
    domain: &dyn Domain,
    paths: &[PathBuf],
    options: &SetOptions,
) -> anyhow::Result<SetOutcome> {
    let against = match &options.baseline {
        Some(name) => Some(Baseline::load(&options.baseline_dir, name)?),
        None => None,
    };
    let say = |line: &str| {
        if options.run.print_summary {
            eprintln!("{line}");
        }
    };
    let mut outcome = SetOutcome::default();
    let mut saved = Vec::new();
    for path in paths {
        if let Some(signal) = crate::infra::ownership::interrupted_by() {
            outcome.interrupted_by = Some(signal);
            say(&format!(
                "interrupted: {} suite(s) not run",
                paths.len() - outcome.ran.len() - outcome.broken.len() - outcome.skipped.len()
            ));
            break;
        }
        match run_repeated(domain, path, options, &say).await {
            Ok(runs) => {
                let suite = runs.suite.clone();
                if runs.failed {
                    outcome.failed.push(suite.clone());
                }
                let gated = match (&options.ab, &against) {
                    (Some((a, b)), _) => {
                        let mut comparison = compare(
                            "A",
                            &suite,
                            &runs.first,
                            &runs.second,
                            &options.gate,
                            Pairing::Interleaved,
                        );
                        comparison
                            .notes
                            .push(format!("A is `{a}`, B is `{b}`, run interleaved"));
                        Some(gate::write(comparison, &runs.last_dir, &options.gate)?)
                    }
                    (None, Some(against)) => Some(gate::check(
                        against,
                        &runs.first,
                        &suite,
                        &runs.last_dir,
                        &options.gate,
                    )?),
                    (None, None) => None,
                };
                match gated {
                    Some(GateOutcome::NotInBaseline) => say(&format!(
                        "baseline `{0}` has no figures for suite {suite}: not gated (save them with --save-baseline {0})\n",
                        options.baseline.as_deref().unwrap_or_default()
                    )),
                    Some(GateOutcome::Compared { comparison, table }) => {
                        say(&table);
                        if !comparison.passed() {
                            outcome.regressed.push(suite.clone());
                        } else if comparison.inconclusive() {
                            outcome.inconclusive.push(suite.clone());
                        }
                        outcome
                            .comparisons
                            .push((runs.last_dir.clone(), *comparison));
                    }
                    None => {}
                }
                saved.push((suite.clone(), runs.first));
                outcome.ran.push(suite);
            }
            Err(RunError::NotInProfile { suite, only }) => {
                say(&format!(
                    "skipped {suite}: it runs only under profile {}\n",
                    only.join(", ")
                ));
                outcome.skipped.push(suite);
            }
            Err(error) => {
                say(&format!("error: {}: {error:#}\n", path.display()));
                outcome.broken.push((path.clone(), format!("{error:#}")));
            }
        }
    }
    outcome.interrupted_by = crate::infra::ownership::interrupted_by();
    say(&outcome.tally());
    if let Some(name) = &options.save_baseline
        && !saved.is_empty()
    {
        let path = save_baseline(&options.baseline_dir, name, saved, options.keep_runs)?;
        say(&format!(
            "baseline `{name}` saved for {}: {}",
            outcome.ran.join(", "),
            path.display()
        ));
    }
    if !outcome.regressed.is_empty() {
        say(&format!(
            "regressed against {} in: {}",
            match &options.ab {
                Some(_) => "arm A".to_owned(),
                None => format!(
                    "baseline `{}`",
                    options.baseline.as_deref().unwrap_or_default()
                ),
            },
            outcome.regressed.join(", ")
        ));
    }
    if !outcome.inconclusive.is_empty() {
        say(&format!(
            "the gate could not judge (the machine differs from the baseline's) in: {}",
            outcome.inconclusive.join(", ")
        ));
    }
    if !outcome.failed.is_empty() {
        say(&format!(
            "thresholds failed in: {}",
            outcome.failed.join(", ")
        ));
    }
    if outcome.ran.is_empty() && outcome.broken.is_empty() {
        say("error: no suite ran");
    }
    Ok(outcome)
}

/// Runs one suite `repeat` times (A then B each time, with `ab`), each run
/// with the machine's fingerprint and its `figures.json`.
async fn run_repeated(
    domain: &dyn Domain,
    path: &Path,
    options: &SetOptions,
    say: &dyn Fn(&str),
) -> Result<SuiteRuns, RunError> {
    let arms: Vec<(Option<&Arm>, RunOptions)> = match &options.ab {
        Some((a, b)) => vec![
            (Some(a), a.apply(&options.run)),
            (Some(b), b.apply(&options.run)),
        ],
        None => vec![(None, options.run.clone())],
    };
    let repeat = options.repeat.max(1);
    let mut runs = SuiteRuns {
        suite: String::new(),
        first: Vec::new(),
        second: Vec::new(),
        last_dir: PathBuf::new(),
        failed: false,
    };
    for round in 0..repeat {
        for (side, (arm, run_options)) in arms.iter().enumerate() {
            if round > 0 || side > 0 {
                if crate::infra::ownership::interrupted_by().is_some() {
                    return Ok(runs);
                }
                let arm = arm.map(|arm| format!(" of `{arm}`")).unwrap_or_default();
                say(&format!("run {} of {repeat}{arm}", round + 1));
            }
            let before = Fingerprint::measure().await.ok();
            let run = run_suite(domain, path, run_options).await?;
            let after = Fingerprint::measure().await.ok();
            let machine = match (before, after) {
                (Some(before), Some(after)) => Some(before.busier(after)),
                (one, other) => one.or(other),
            };
            let figures = RunFigures::from_run(&run.report.summary, machine);
            write_figures(&run, &figures)?;
            say(&format!("reports: {}\n", run.dir.display()));
            runs.suite = run.report.summary.suite.clone();
            runs.failed |= !run.report.passed;
            runs.last_dir = run.dir.clone();
            if side == 0 {
                runs.first.push(figures);
            } else {
                runs.second.push(figures);
            }
        }
    }
    Ok(runs)
}

/// `figures.json` beside a run's reports: what a baseline keeps of it, so
/// that runs can be compared after the fact (`perf compare`).
fn write_figures(run: &SuiteRun, figures: &RunFigures) -> Result<(), RunError> {
    let path = run.dir.join(FIGURES_FILE);
    let json = serde_json::to_vec(figures).map_err(anyhow::Error::from)?;
    std::fs::write(&path, json)
        .with_context(|| format!("writing {}", path.display()))
        .map_err(RunError::from)
}

pub use super::gate::{FIGURES_FILE, read_figures};

impl SetOutcome {
    /// `3 suite(s) ran: 2 passed, 1 failed, 1 could not run`.
    fn tally(&self) -> String {
        format!(
            "{} suite(s) ran: {} passed, {} failed{}",
            self.ran.len(),
            self.ran.len() - self.failed.len(),
            self.failed.len(),
            if self.broken.is_empty() {
                String::new()
            } else {
                format!(", {} could not run", self.broken.len())
            }
        )
    }
}

/// Adds the suites' runs to baseline `name` (created if new), keeping the
/// last `keep` runs of each suite.
pub(super) fn save_baseline(
    dir: &Path,
    name: &str,
    runs: Vec<(String, Vec<RunFigures>)>,
    keep: usize,
) -> anyhow::Result<PathBuf> {
    let mut baseline = Baseline::load_or_new(dir, name)?;
    for (suite, runs) in runs {
        baseline
            .suites
            .entry(suite)
            .or_insert_with(|| SuiteBaseline { runs: Vec::new() })
            .record(runs, keep);
    }
    baseline.save(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(outcome: SetOutcome, expected: i32) {
        assert_eq!(outcome.exit_code(), expected, "{outcome:?}");
    }

    #[test]
    fn exit_codes_follow_the_worst_outcome() {
        let ran = || vec!["core".to_owned()];
        check(
            SetOutcome {
                ran: ran(),
                ..SetOutcome::default()
            },
            EXIT_PASSED,
        );
        check(
            SetOutcome {
                ran: ran(),
                regressed: ran(),
                ..SetOutcome::default()
            },
            EXIT_THRESHOLD_FAILED,
        );
        check(
            SetOutcome {
                ran: ran(),
                failed: ran(),
                ..SetOutcome::default()
            },
            EXIT_THRESHOLD_FAILED,
        );
        check(
            SetOutcome {
                ran: ran(),
                failed: ran(),
                broken: vec![("x.toml".into(), "bad".into())],
                ..SetOutcome::default()
            },
            EXIT_HARNESS_ERROR,
        );
        check(
            SetOutcome {
                skipped: ran(),
                ..SetOutcome::default()
            },
            EXIT_HARNESS_ERROR,
        );
        check(
            SetOutcome {
                ran: ran(),
                failed: ran(),
                interrupted_by: Some(2),
                ..SetOutcome::default()
            },
            130,
        );
    }
}
