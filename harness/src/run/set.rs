//! A set of suites, as `cargo xtask perf` runs them: each suite run (once,
//! `--repeat N` times, or as an interleaved A/B pair) and, with a baseline,
//! gated; their figures saved as a baseline when asked; the outcome of the
//! whole mapped to one exit code.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::gate::{Against, FIGURES_FILE, Gate, GateOptions, GateOutcome};
use super::outcome::SetOutcome;
use super::{Domain, RunError, RunOptions, SuiteRun, run_suite};
use crate::baseline::{Fingerprint, RunFigures};

/// Choices for a set of suites.
#[derive(Debug, Clone)]
pub struct SetOptions {
    pub run: RunOptions,
    /// The baseline each suite is judged against or saved into.
    pub gate: GateOptions,
    /// How many times each suite runs (each side, with `ab`).
    pub repeat: usize,
    /// Judge arm B against arm A, run interleaved on this machine.
    pub ab: Option<(Arm, Arm)>,
}

impl SetOptions {
    pub fn new(run: RunOptions, baseline_dir: PathBuf) -> SetOptions {
        SetOptions {
            run,
            gate: GateOptions::new(baseline_dir),
            repeat: 1,
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
    let gate = Gate::open(&options.gate)?;
    let say = |line: &str| {
        if options.run.print_summary {
            eprintln!("{line}");
        }
    };
    let mut outcome = SetOutcome::default();
    let mut saved = Vec::new();
    for path in paths {
        if let Some(signal) = crate::infra::interrupt::interrupted_by() {
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
                let ab_note = options
                    .ab
                    .as_ref()
                    .map(|(a, b)| format!("A is `{a}`, B is `{b}`, run interleaved"));
                let (judged, against) = match &ab_note {
                    Some(note) => (
                        &runs.second,
                        Against::ArmA {
                            runs: &runs.first,
                            note,
                        },
                    ),
                    None => (&runs.first, Against::Saved),
                };
                let gated = gate.judge(&suite, judged, against, &runs.last_dir)?;
                match gated {
                    Some(GateOutcome::NotInBaseline) => say(&gate.not_in_baseline(&suite)),
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
    outcome.interrupted_by = crate::infra::interrupt::interrupted_by();
    say(&outcome.tally());
    if let Some(saved) = gate.save(saved)? {
        say(&saved);
    }
    if !outcome.regressed.is_empty() {
        say(&format!(
            "regressed against {} in: {}",
            match &options.ab {
                Some(_) => "arm A".to_owned(),
                None => format!(
                    "baseline `{}`",
                    options.gate.baseline.as_deref().unwrap_or_default()
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
                if crate::infra::interrupt::interrupted_by().is_some() {
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
