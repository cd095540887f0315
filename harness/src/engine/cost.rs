//! What the load engine costs, judged against a committed budget.
//!
//! A load generator's CPU is taken from the application it measures; on a
//! 2-core runner that difference is the result. Absolute CPU per request
//! says more about the machine than about the engine, so the engine is
//! measured beside `wrk` in the same run (`cargo xtask bench-loadgen`),
//! pair by pair, and the budget is a ratio to wrk's CPU per request
//! (`benches/loadgen-budget.toml`), one per path (an instant answer, and one
//! after 20 ms) and build profile.
//!
//! The judgement uses the spread between pairs: each pair gives a ratio,
//! the log ratios' mean gets a one-sided Student's t bound (97.5 %, the
//! confidence of the other gates), and the budget fails only when even the
//! lower bound is above it — a rise beyond the budget, not a noisy pair.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::baseline::statistics::t_for;

/// The paths the engine's cost is measured on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CostPath {
    /// `GET /` answered at once: the engine's own cost per request.
    Fast,
    /// The same answered after 20 ms: what waiting costs (timers, wake-ups,
    /// per-second work over more users in flight).
    Slow,
}

impl CostPath {
    pub fn label(self) -> &'static str {
        match self {
            CostPath::Fast => "fast",
            CostPath::Slow => "slow",
        }
    }

    /// How long the measurement server waits before it answers.
    pub fn server_delay(self) -> std::time::Duration {
        match self {
            CostPath::Fast => std::time::Duration::ZERO,
            CostPath::Slow => std::time::Duration::from_millis(20),
        }
    }
}

/// Ratios to wrk's CPU per request that the engine may not exceed, by build
/// profile (`dev`, what the tests and CI build; `release`) and path.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostBudget {
    /// A note for whoever edits the file (why these figures).
    #[serde(default)]
    pub why: Option<String>,
    pub dev: BTreeMap<CostPath, f64>,
    pub release: BTreeMap<CostPath, f64>,
}

impl CostBudget {
    /// The committed budget file.
    pub const FILE: &'static str = "benches/loadgen-budget.toml";

    pub fn load(path: &Path) -> anyhow::Result<CostBudget> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        let budget: CostBudget =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        for (profile, paths) in [("dev", &budget.dev), ("release", &budget.release)] {
            for (path, ratio) in paths {
                anyhow::ensure!(
                    ratio.is_finite() && *ratio > 0.0,
                    "{profile}.{}: a budget is a positive ratio to wrk, got {ratio}",
                    path.label()
                );
            }
        }
        Ok(budget)
    }

    /// The budget for `path` in the profile this code was built with.
    pub fn for_this_build(&self, path: CostPath) -> Option<f64> {
        let profile = match Self::this_build_profile() {
            "dev" => &self.dev,
            _ => &self.release,
        };
        profile.get(&path).copied()
    }

    pub fn this_build_profile() -> &'static str {
        if cfg!(debug_assertions) {
            "dev"
        } else {
            "release"
        }
    }
}

/// The ratio of the engine's CPU per request to wrk's over several pairs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RatioEstimate {
    pub pairs: usize,
    /// The geometric mean of the pairs' ratios.
    pub ratio: f64,
    /// One-sided 97.5 % bounds on it from the spread between pairs.
    pub low: f64,
    pub high: f64,
}

/// The confidence of the bounds (one-sided), as the other gates use.
pub const CONFIDENCE: f64 = 0.975;

impl RatioEstimate {
    /// `None` with fewer than two pairs: one pair has no spread to judge by.
    pub fn of(ratios: &[f64]) -> Option<RatioEstimate> {
        let logs: Vec<f64> = ratios
            .iter()
            .filter(|r| r.is_finite() && **r > 0.0)
            .map(|r| r.ln())
            .collect();
        let n = logs.len();
        if n < 2 {
            return None;
        }
        let mean = logs.iter().sum::<f64>() / n as f64;
        let variance = logs.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        let margin = t_for(CONFIDENCE, (n - 1) as f64) * (variance / n as f64).sqrt();
        Some(RatioEstimate {
            pairs: n,
            ratio: mean.exp(),
            low: (mean - margin).exp(),
            high: (mean + margin).exp(),
        })
    }

    pub fn judge(&self, budget: f64) -> CostVerdict {
        if self.low > budget {
            CostVerdict::Over
        } else if self.high <= budget {
            CostVerdict::Within
        } else {
            CostVerdict::NotProven
        }
    }
}

/// Where the engine's cost stands against its budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CostVerdict {
    /// Even the upper bound is within the budget.
    Within,
    /// The budget lies inside the bounds: the pairs' spread cannot tell.
    /// Not a failure (a noisy machine is not a regression); the line says so.
    NotProven,
    /// Even the lower bound is above the budget: the engine got costlier.
    Over,
}

impl CostVerdict {
    pub fn failed(self) -> bool {
        self == CostVerdict::Over
    }

    pub fn label(self) -> &'static str {
        match self {
            CostVerdict::Within => "within budget",
            CostVerdict::NotProven => {
                "within budget, not provably (the pairs' spread straddles it)"
            }
            CostVerdict::Over => "OVER BUDGET",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tight_pairs_below_the_budget_are_within_it() {
        let estimate = RatioEstimate::of(&[1.02, 1.05, 0.99, 1.03, 1.01]).unwrap();
        assert!((estimate.ratio - 1.02).abs() < 0.01, "{estimate:?}");
        assert!(estimate.low < estimate.ratio && estimate.ratio < estimate.high);
        assert_eq!(estimate.judge(1.10), CostVerdict::Within);
    }

    #[test]
    fn a_rise_beyond_the_budget_fails_and_a_noisy_pair_does_not() {
        let risen = RatioEstimate::of(&[1.31, 1.28, 1.35, 1.30, 1.29]).unwrap();
        assert_eq!(risen.judge(1.10), CostVerdict::Over);
        assert!(risen.judge(1.10).failed());
        // One pair far off (a busy moment) widens the bounds instead.
        let noisy = RatioEstimate::of(&[1.02, 1.04, 1.60, 1.01, 1.03]).unwrap();
        assert_eq!(noisy.judge(1.10), CostVerdict::NotProven);
        assert!(!noisy.judge(1.10).failed());
    }

    #[test]
    fn one_pair_is_not_judged() {
        assert_eq!(RatioEstimate::of(&[1.5]), None);
        assert_eq!(RatioEstimate::of(&[1.5, f64::NAN]), None);
    }

    #[test]
    fn the_committed_budget_parses_and_covers_both_paths_in_both_profiles() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(CostBudget::FILE);
        let budget = CostBudget::load(&file).unwrap();
        for path in [CostPath::Fast, CostPath::Slow] {
            assert!(budget.dev.contains_key(&path) && budget.release.contains_key(&path));
        }
        assert!(budget.for_this_build(CostPath::Fast).is_some());
    }

    #[test]
    fn a_budget_that_is_not_a_positive_ratio_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("budget.toml");
        std::fs::write(
            &file,
            "[dev]\nfast = 0\nslow = 1.5\n[release]\nfast = 1.1\nslow = 1.6\n",
        )
        .unwrap();
        let error = CostBudget::load(&file).unwrap_err().to_string();
        assert!(error.contains("dev.fast"), "{error}");
    }
}
