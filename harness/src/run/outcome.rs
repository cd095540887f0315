//! How a run ends: what became of each suite of a set (`SetOutcome`) or
//! of a merged run (`Merged`), and the exit code each maps to, the same for
//! `perf`, `perf merge` and `perf compare`.

use std::path::PathBuf;

use super::SuiteRun;
use super::gate::GateOutcome;
use crate::baseline::Comparison;

/// Every threshold held and the gate passed.
pub const EXIT_PASSED: i32 = 0;
/// A threshold failed or a figure regressed against the baseline.
pub const EXIT_THRESHOLD_FAILED: i32 = 1;
/// No verdict: a bad suite file, the stack, the target, a missing baseline,
/// a machine too unlike the baseline's to compare with.
pub const EXIT_HARNESS_ERROR: i32 = 2;

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

impl SetOutcome {
    /// `3 suite(s) ran: 2 passed, 1 failed, 1 could not run`.
    pub(super) fn tally(&self) -> String {
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

/// The merged run, and what the baseline gate said of it.
#[derive(Debug)]
pub struct Merged {
    pub run: SuiteRun,
    pub gate: Option<GateOutcome>,
}

impl Merged {
    /// As `perf` exits: 0 passed, 1 a threshold failed or a figure regressed.
    pub fn exit_code(&self) -> i32 {
        let regressed = self.gate.as_ref().is_some_and(|g| !g.passed());
        if self.run.report.passed && !regressed {
            EXIT_PASSED
        } else {
            EXIT_THRESHOLD_FAILED
        }
    }
}

/// As `perf compare` exits: 0 when B is not worse than A, 1 when it is.
pub fn comparison_exit_code(comparison: &Comparison) -> i32 {
    if comparison.passed() {
        EXIT_PASSED
    } else {
        EXIT_THRESHOLD_FAILED
    }
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
