//! Budgets for criterion benchmarks, written in suite files and checked by
//! the same cargo-test target that checks SLAs, so one pull-request gate
//! covers load tests and micro-benchmarks:
//!
//! ```toml
//! [benchmarks]
//! "queries/rekap_rab/aggregated" = "mean < 20ms"
//! "queries/kurva_s" = ["median < 10ms", "no-regression against main"]
//! ```
//!
//! A benchmark is named by criterion's full id. Its figures are read from
//! criterion's saved estimates (`target/criterion/…/new/estimates.json`, the
//! last `cargo bench`; a baseline `NAME` is what `cargo bench -- --save-baseline
//! NAME` saved). "No regression" fails only when the current mean's
//! confidence interval lies wholly above the baseline's *and* the mean is
//! slower by more than a tolerance (10 % unless `within N%` says otherwise):
//! criterion's intervals describe one run's sampling, not how much a shared
//! machine drifts between two runs, so intervals alone cry wolf (the load
//! gate learned this in issue 12).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;

/// What a suite file's `[benchmarks]` value is: one rule or a list.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum BudgetValue {
    One(String),
    Many(Vec<String>),
}

impl BudgetValue {
    pub fn rules(&self) -> Vec<&str> {
        match self {
            BudgetValue::One(rule) => vec![rule.as_str()],
            BudgetValue::Many(rules) => rules.iter().map(String::as_str).collect(),
        }
    }
}

/// A criterion statistic a budget can bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Statistic {
    Mean,
    Median,
    /// The slope of the linear regression (criterion's best estimate when present).
    Slope,
}

#[derive(Debug, Clone, PartialEq)]
pub enum BudgetRule {
    /// The statistic's point estimate stays under `limit`.
    Under {
        statistic: Statistic,
        limit: Duration,
        inclusive: bool,
    },
    /// Not slower than baseline `NAME` beyond both confidence intervals
    /// and by more than `tolerance` (a fraction).
    NoRegression { baseline: String, tolerance: f64 },
}

impl FromStr for BudgetRule {
    type Err = String;

    fn from_str(text: &str) -> Result<BudgetRule, String> {
        let text = text.trim();
        let words: Vec<&str> = text.split_whitespace().collect();
        if let ["no-regression" | "no regression", ..] | ["no", "regression", ..] = words.as_slice()
        {
            let rest: Vec<&str> = words
                .iter()
                .skip_while(|w| **w != "against")
                .skip(1)
                .copied()
                .collect();
            let tolerance = |text: &str| -> Option<f64> {
                let percent: f64 = text.strip_suffix('%')?.parse().ok()?;
                (percent >= 0.0 && percent.is_finite()).then_some(percent / 100.0)
            };
            return match rest.as_slice() {
                [baseline] => Ok(BudgetRule::NoRegression {
                    baseline: (*baseline).to_owned(),
                    tolerance: DEFAULT_TOLERANCE,
                }),
                [baseline, "within", percent] if tolerance(percent).is_some() => {
                    Ok(BudgetRule::NoRegression {
                        baseline: (*baseline).to_owned(),
                        tolerance: tolerance(percent).expect("checked"),
                    })
                }
                _ => Err(format!(
                    "`{text}`: write `no-regression against NAME` or `no-regression against NAME within 5%`, \
                     NAME a criterion baseline (cargo bench -- --save-baseline NAME)"
                )),
            };
        }
        let (statistic, operator, limit) = match words.as_slice() {
            [statistic, operator, limit] => (*statistic, *operator, *limit),
            _ => {
                return Err(format!(
                    "`{text}`: expected `mean < 20ms`, `median <= 5ms`, `slope < 1ms` or \
                     `no-regression against NAME`"
                ));
            }
        };
        let statistic = match statistic {
            "mean" => Statistic::Mean,
            "median" => Statistic::Median,
            "slope" => Statistic::Slope,
            other => {
                return Err(format!(
                    "`{other}` is not a statistic criterion estimates: use mean, median or slope"
                ));
            }
        };
        let inclusive = match operator {
            "<" => false,
            "<=" => true,
            other => {
                return Err(format!(
                    "`{other}`: a budget is an upper bound, `<` or `<=`"
                ));
            }
        };
        let limit = humantime::parse_duration(limit)
            .map_err(|e| format!("`{limit}` is not a duration such as 20ms or 150us: {e}"))?;
        Ok(BudgetRule::Under {
            statistic,
            limit,
            inclusive,
        })
    }
}

/// How much slower than its baseline a benchmark may be before a
/// `no-regression` rule fails, unless the rule says `within N%`.
pub const DEFAULT_TOLERANCE: f64 = 0.10;

/// One budget of one benchmark, as planned from a suite file.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchBudget {
    /// Criterion's full id, e.g. `queries/rekap_rab/aggregated`.
    pub benchmark: String,
    pub rule: BudgetRule,
    /// As written, for names and messages.
    pub source: String,
}

/// criterion's `estimates.json` (times in nanoseconds).
#[derive(Debug, Clone, Deserialize)]
pub struct Estimates {
    pub mean: Estimate,
    pub median: Estimate,
    pub slope: Option<Estimate>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Estimate {
    pub confidence_interval: ConfidenceInterval,
    pub point_estimate: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ConfidenceInterval {
    pub confidence_level: f64,
    pub lower_bound: f64,
    pub upper_bound: f64,
}

#[derive(Debug, Deserialize)]
struct BenchmarkId {
    full_id: String,
}

/// Where criterion keeps its results: `$CRITERION_HOME`, else
/// `criterion/` in the cargo target directory.
pub fn criterion_home(workspace: &Path) -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    target.join("criterion")
}

/// Criterion's results by full id: criterion turns ids into directory names
/// (`queries/rekap_rab` becomes `queries_rekap_rab`), so the id is read back
/// from each `benchmark.json` rather than guessed.
#[derive(Debug, Clone, Default)]
pub struct CriterionResults {
    /// Full id → the benchmark's directory (holding `new/`, `base/`, baselines).
    benchmarks: BTreeMap<String, PathBuf>,
}

impl CriterionResults {
    /// Indexes `home`; a missing directory is no result, not an error.
    pub fn read(home: &Path) -> anyhow::Result<CriterionResults> {
        let mut results = CriterionResults::default();
        if home.is_dir() {
            results.walk(home, 0)?;
        }
        Ok(results)
    }

    fn walk(&mut self, dir: &Path, depth: usize) -> anyhow::Result<()> {
        // group/function/value/{new,base,NAME}/benchmark.json at most.
        if depth > 5 {
            return Ok(());
        }
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            if !path.is_dir() || path.file_name().is_some_and(|n| n == "report") {
                continue;
            }
            let id_file = path.join("benchmark.json");
            if id_file.is_file() {
                let bytes = std::fs::read(&id_file)?;
                let id: BenchmarkId = serde_json::from_slice(&bytes)
                    .with_context(|| format!("parsing {}", id_file.display()))?;
                if let Some(benchmark_dir) = path.parent() {
                    self.benchmarks
                        .entry(id.full_id)
                        .or_insert_with(|| benchmark_dir.to_path_buf());
                }
            } else {
                self.walk(&path, depth + 1)?;
            }
        }
        Ok(())
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.benchmarks.keys().map(String::as_str)
    }

    /// The estimates saved as `saved` (`new` for the last run, or a baseline name).
    pub fn estimates(&self, benchmark: &str, saved: &str) -> anyhow::Result<Option<Estimates>> {
        let Some(dir) = self.benchmarks.get(benchmark) else {
            return Ok(None);
        };
        let path = dir.join(saved).join("estimates.json");
        if !path.is_file() {
            return Ok(None);
        }
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("parsing {}", path.display()))
    }
}

/// Why a budget could not be checked: nothing to check it on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing(pub String);

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A checked budget: whether it held, and the numbers either way.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetOutcome {
    pub passed: bool,
    pub detail: String,
}

fn time(nanos: f64) -> String {
    match nanos {
        n if n >= 1e9 => format!("{:.3} s", n / 1e9),
        n if n >= 1e6 => format!("{:.3} ms", n / 1e6),
        n if n >= 1e3 => format!("{:.3} µs", n / 1e3),
        n => format!("{n:.1} ns"),
    }
}

/// Checks `budget` against criterion's saved estimates.
pub fn check(
    budget: &BenchBudget,
    results: &CriterionResults,
) -> anyhow::Result<Result<BudgetOutcome, Missing>> {
    let Some(current) = results.estimates(&budget.benchmark, "new")? else {
        return Ok(Err(Missing(format!(
            "no criterion estimates for `{}`: run `cargo bench` first (known: {})",
            budget.benchmark,
            results.ids().collect::<Vec<_>>().join(", ")
        ))));
    };
    let outcome = match &budget.rule {
        BudgetRule::Under {
            statistic,
            limit,
            inclusive,
        } => {
            let (name, estimate) = match statistic {
                Statistic::Mean => ("mean", &current.mean),
                Statistic::Median => ("median", &current.median),
                Statistic::Slope => match &current.slope {
                    Some(slope) => ("slope", slope),
                    None => {
                        return Ok(Err(Missing(format!(
                            "criterion estimated no slope for `{}` (it does for linear sampling only); bound its mean",
                            budget.benchmark
                        ))));
                    }
                },
            };
            let limit_ns = limit.as_secs_f64() * 1e9;
            let value = estimate.point_estimate;
            let passed = if *inclusive {
                value <= limit_ns
            } else {
                value < limit_ns
            };
            let detail = format!(
                "{name} {} (95 % CI {} – {}), budget {} {}: {}",
                time(value),
                time(estimate.confidence_interval.lower_bound),
                time(estimate.confidence_interval.upper_bound),
                if *inclusive { "<=" } else { "<" },
                time(limit_ns),
                if passed {
                    format!("{} to spare", time(limit_ns - value))
                } else {
                    format!("{} over", time(value - limit_ns))
                }
            );
            BudgetOutcome { passed, detail }
        }
        BudgetRule::NoRegression {
            baseline,
            tolerance,
        } => {
            let Some(then) = results.estimates(&budget.benchmark, baseline)? else {
                return Ok(Err(Missing(format!(
                    "no criterion baseline `{baseline}` for `{}`: save one with `cargo bench -- --save-baseline {baseline}`",
                    budget.benchmark
                ))));
            };
            let (now, then) = (&current.mean, &then.mean);
            let beyond_intervals =
                now.confidence_interval.lower_bound > then.confidence_interval.upper_bound;
            let change = (now.point_estimate / then.point_estimate - 1.0) * 100.0;
            let beyond_tolerance = change > tolerance * 100.0;
            let passed = !(beyond_intervals && beyond_tolerance);
            let detail = format!(
                "mean {} (95 % CI {} – {}) against `{baseline}`'s {} (CI {} – {}): {change:+.1} %, {}",
                time(now.point_estimate),
                time(now.confidence_interval.lower_bound),
                time(now.confidence_interval.upper_bound),
                time(then.point_estimate),
                time(then.confidence_interval.lower_bound),
                time(then.confidence_interval.upper_bound),
                match (beyond_intervals, beyond_tolerance) {
                    (true, true) => format!(
                        "slower beyond both confidence intervals and the {:.0} % tolerance",
                        tolerance * 100.0
                    ),
                    (true, false) => format!(
                        "slower beyond both confidence intervals but within the {:.0} % tolerance",
                        tolerance * 100.0
                    ),
                    (false, _) => "within criterion's confidence intervals or faster".to_owned(),
                }
            );
            BudgetOutcome { passed, detail }
        }
    };
    Ok(Ok(outcome))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_and_refuse_with_a_reason() {
        assert_eq!(
            "mean < 20ms".parse::<BudgetRule>(),
            Ok(BudgetRule::Under {
                statistic: Statistic::Mean,
                limit: Duration::from_millis(20),
                inclusive: false
            })
        );
        assert_eq!(
            "no-regression against main".parse::<BudgetRule>(),
            Ok(BudgetRule::NoRegression {
                baseline: "main".into(),
                tolerance: 0.10
            })
        );
        assert_eq!(
            "no-regression against main within 25%".parse::<BudgetRule>(),
            Ok(BudgetRule::NoRegression {
                baseline: "main".into(),
                tolerance: 0.25
            })
        );
        assert!(
            "no-regression against main within lots"
                .parse::<BudgetRule>()
                .unwrap_err()
                .contains("within 5%")
        );
        assert!(
            "p95 < 3ms"
                .parse::<BudgetRule>()
                .unwrap_err()
                .contains("mean, median or slope")
        );
        assert!(
            "mean > 3ms"
                .parse::<BudgetRule>()
                .unwrap_err()
                .contains("upper bound")
        );
        assert!(
            "mean < fast"
                .parse::<BudgetRule>()
                .unwrap_err()
                .contains("not a duration")
        );
        assert!(
            "no-regression"
                .parse::<BudgetRule>()
                .unwrap_err()
                .contains("against NAME")
        );
    }
}
