//! A set of suites, as `cargo xtask perf` runs them: each suite run and,
//! with a baseline, gated; their figures saved as a baseline when asked;
//! the outcome of the whole mapped to one exit code.

use std::path::{Path, PathBuf};

use super::gate::{self, GateOutcome};
use super::{Domain, RunError, RunOptions, run_suite};
use crate::baseline::{Baseline, GateSettings, SuiteBaseline};

/// Every threshold held and the gate passed.
pub const EXIT_PASSED: i32 = 0;
/// A threshold failed or a figure regressed against the baseline.
pub const EXIT_THRESHOLD_FAILED: i32 = 1;
/// No verdict: a bad suite file, the stack, the target, a missing baseline.
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
    /// Suite files that could not run, with why.
    pub broken: Vec<(PathBuf, String)>,
    /// Suites left out by the profile.
    pub skipped: Vec<String>,
    /// The signal that cut the set short (its reports are still written).
    pub interrupted_by: Option<i32>,
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
        } else if self.ran.is_empty() {
            EXIT_HARNESS_ERROR
        } else {
            EXIT_PASSED
        }
    }
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
        match run_suite(domain, path, &options.run).await {
            Ok(run) => {
                let suite = run.report.summary.suite.clone();
                say(&format!("reports: {}\n", run.dir.display()));
                if !run.report.passed {
                    outcome.failed.push(suite.clone());
                }
                let figures = SuiteBaseline::from_run(&run.report.summary);
                if let Some(against) = &against {
                    match gate::check(against, &figures, &suite, &run.dir, &options.gate)? {
                        GateOutcome::NotInBaseline => say(&format!(
                            "baseline `{0}` has no figures for suite {suite}: not gated (save them with --save-baseline {0})\n",
                            against.name
                        )),
                        GateOutcome::Compared { comparison, table } => {
                            say(&table);
                            if !comparison.passed() {
                                outcome.regressed.push(suite.clone());
                            }
                        }
                    }
                }
                saved.push((suite.clone(), figures));
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
        let path = save_baseline(&options.baseline_dir, name, saved)?;
        say(&format!(
            "baseline `{name}` saved for {}: {}",
            outcome.ran.join(", "),
            path.display()
        ));
    }
    if !outcome.regressed.is_empty() {
        say(&format!(
            "regressed against baseline `{}` in: {}",
            options.baseline.as_deref().unwrap_or_default(),
            outcome.regressed.join(", ")
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

/// Adds the suites' figures to baseline `name` (created if new).
fn save_baseline(
    dir: &Path,
    name: &str,
    figures: Vec<(String, SuiteBaseline)>,
) -> anyhow::Result<PathBuf> {
    let mut baseline = Baseline::load_or_new(dir, name)?;
    baseline.suites.extend(figures);
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
