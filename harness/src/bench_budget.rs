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
//! NAME` saved).
//!
//! "No regression" judges runs, not samples. Criterion's intervals describe
//! one run's sampling; between two runs on a shared machine the same code's
//! mean moves far more (the rekap RAB query measured 4.2 ms and 10.4 ms on
//! this machine, unchanged). So a baseline is several runs, each recorded in
//! `runs.json` beside criterion's files by `cargo xtask bench --save-baseline
//! NAME --runs N`, and the rule fails only when the current runs' mean is
//! slower than the saved runs' spread allows (Student's t on the log of each
//! run's mean, one-sided 97.5 %) *and* by more than a tolerance (10 % unless
//! `within N%` says otherwise). A baseline of one run gives no spread and is
//! not judged: the message says how to save more.

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
    /// Not slower than baseline `NAME`'s runs beyond their between-run
    /// spread and by more than `tolerance` (a fraction).
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

/// The runs a saved result stands for, as `cargo xtask bench` records them
/// in `runs.json` beside criterion's `estimates.json` (criterion keeps only
/// the last run's).
#[derive(Debug, Clone, Default, serde::Serialize, Deserialize)]
struct RunHistory {
    runs: Vec<RecordedRun>,
}

/// One `cargo bench` run of one benchmark: its mean, in nanoseconds, and
/// when it was recorded (Unix seconds; absent in histories from before).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, Deserialize)]
struct RecordedRun {
    mean: f64,
    #[serde(default)]
    at: Option<u64>,
}

/// Judged runs further than this from their baseline's newest run get a
/// warning: the machine, the toolchain or the data may have moved since.
pub const STALE_BASELINE: Duration = Duration::from_secs(14 * 24 * 3600);

fn unix_seconds(time: std::time::SystemTime) -> Option<u64> {
    time.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

/// The file a saved result's runs are recorded in.
const RUNS_FILE: &str = "runs.json";

impl CriterionResults {
    /// Records the run criterion just saved as `saved` in its history:
    /// `fresh` starts the history anew (a baseline saved again), otherwise
    /// the run is added to those before it.
    pub fn record_run(&self, benchmark: &str, saved: &str, fresh: bool) -> anyhow::Result<()> {
        let Some(estimates) = self.estimates(benchmark, saved)? else {
            anyhow::bail!("criterion saved no `{saved}` estimates for `{benchmark}`");
        };
        let path = self.benchmarks[benchmark].join(saved).join(RUNS_FILE);
        let mut history = if fresh {
            RunHistory::default()
        } else {
            self.history(&path)?
        };
        history.runs.push(RecordedRun {
            mean: estimates.mean.point_estimate,
            at: unix_seconds(std::time::SystemTime::now()),
        });
        std::fs::write(&path, serde_json::to_vec_pretty(&history)?)
            .with_context(|| format!("writing {}", path.display()))
    }

    /// When the result saved as `saved` was last measured (Unix seconds):
    /// its newest recorded run, else when criterion wrote its estimates.
    pub fn measured_at(&self, benchmark: &str, saved: &str) -> Option<u64> {
        let dir = self.benchmarks.get(benchmark)?.join(saved);
        let recorded = self
            .history(&dir.join(RUNS_FILE))
            .ok()
            .and_then(|history| history.runs.iter().filter_map(|r| r.at).max());
        recorded.or_else(|| {
            std::fs::metadata(dir.join("estimates.json"))
                .and_then(|m| m.modified())
                .ok()
                .and_then(unix_seconds)
        })
    }

    /// The benchmarks whose `saved` estimates were written at or after
    /// `since`: those a `cargo bench` started then measured.
    pub fn saved_since(&self, saved: &str, since: std::time::SystemTime) -> Vec<String> {
        self.benchmarks
            .iter()
            .filter(|(_, dir)| {
                std::fs::metadata(dir.join(saved).join("estimates.json"))
                    .and_then(|m| m.modified())
                    .is_ok_and(|written| written >= since)
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    fn history(&self, path: &Path) -> anyhow::Result<RunHistory> {
        if !path.is_file() {
            return Ok(RunHistory::default());
        }
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
    }

    /// Each run's mean (ns) that the result saved as `saved` stands for:
    /// the recorded runs when the last of them is what criterion holds now,
    /// else (saved by a plain `cargo bench` since) criterion's one run.
    pub fn run_means(&self, benchmark: &str, saved: &str) -> anyhow::Result<Vec<f64>> {
        let Some(estimates) = self.estimates(benchmark, saved)? else {
            return Ok(Vec::new());
        };
        let current = estimates.mean.point_estimate;
        let history = self.history(&self.benchmarks[benchmark].join(saved).join(RUNS_FILE))?;
        Ok(match history.runs.last() {
            Some(last) if last.mean == current => history.runs.iter().map(|r| r.mean).collect(),
            _ => vec![current],
        })
    }
}

/// Runs a baseline needs before a `no-regression` rule can judge against it.
pub const MIN_BASELINE_RUNS: usize = 2;

/// The one-sided confidence a regression must reach (Student's t).
const REGRESSION_CONFIDENCE: f64 = 0.975;

/// Whether runs whose means are `now` are slower than runs whose means are
/// `then` beyond their between-run spread and `tolerance`; `None` when
/// `then` is one run (a baseline's spread is what judges).
pub fn regression(now: &[f64], then: &[f64], tolerance: f64) -> Option<RegressionJudgement> {
    if now.is_empty() || then.len() < MIN_BASELINE_RUNS {
        return None;
    }
    let logs = |means: &[f64]| -> Vec<f64> { means.iter().map(|m| m.ln()).collect() };
    let (now, then) = (logs(now), logs(then));
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
    let squares = |xs: &[f64]| {
        let m = mean(xs);
        xs.iter().map(|x| (x - m).powi(2)).sum::<f64>()
    };
    let df = (now.len() + then.len() - 2) as f64;
    let spread = ((squares(&now) + squares(&then)) / df).sqrt();
    let difference = mean(&now) - mean(&then);
    let standard_error = spread * (1.0 / now.len() as f64 + 1.0 / then.len() as f64).sqrt();
    let bound = crate::baseline::statistics::t_for(REGRESSION_CONFIDENCE, df) * standard_error;
    let change = difference.exp() - 1.0;
    Some(RegressionJudgement {
        change,
        spread: spread.exp() - 1.0,
        judged_beyond: bound.exp() - 1.0,
        beyond_spread: difference > bound,
        beyond_tolerance: change > tolerance,
    })
}

/// What [`regression`] found; changes and spreads are fractions (0.1 = 10 %).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RegressionJudgement {
    /// The current runs' geometric mean against the baseline's.
    pub change: f64,
    /// One run's typical deviation from the runs' mean (one standard deviation, on the log scale).
    pub spread: f64,
    /// The slowdown beyond which the spread cannot explain a change.
    pub judged_beyond: f64,
    pub beyond_spread: bool,
    pub beyond_tolerance: bool,
}

impl RegressionJudgement {
    pub fn regressed(&self) -> bool {
        self.beyond_spread && self.beyond_tolerance
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
            let then = results.run_means(&budget.benchmark, baseline)?;
            if then.is_empty() {
                return Ok(Err(Missing(format!(
                    "no criterion baseline `{baseline}` for `{}`: save one with `cargo xtask bench --save-baseline {baseline} --runs 3`",
                    budget.benchmark
                ))));
            }
            let now = results.run_means(&budget.benchmark, "new")?;
            let Some(judgement) = regression(&now, &then, *tolerance) else {
                return Ok(Err(Missing(format!(
                    "the baseline `{baseline}` of `{}` is one run ({}): how far the same code's mean moves \
                     between runs on this machine is unknown, so no change can be judged; save it with \
                     `cargo xtask bench --save-baseline {baseline} --runs 3`",
                    budget.benchmark,
                    time(then[0])
                ))));
            };
            let passed = !judgement.regressed();
            let runs = |means: &[f64]| -> String {
                let each: Vec<String> = means.iter().map(|m| time(*m)).collect();
                match means.len() {
                    1 => format!("1 run ({})", each[0]),
                    n => format!("{n} runs ({})", each.join(", ")),
                }
            };
            let detail = format!(
                "mean of {} against `{baseline}`'s {}: {:+.1} %; runs of the same code move ±{:.1} % \
                 here, so only a slowdown beyond {:+.1} % is judged; {}",
                runs(&now),
                runs(&then),
                judgement.change * 100.0,
                judgement.spread * 100.0,
                judgement.judged_beyond * 100.0,
                match (judgement.beyond_spread, judgement.beyond_tolerance) {
                    (true, true) => format!(
                        "slower beyond the spread and the {:.0} % tolerance",
                        tolerance * 100.0
                    ),
                    (true, false) => format!(
                        "slower beyond the spread but within the {:.0} % tolerance",
                        tolerance * 100.0
                    ),
                    (false, _) => "within the spread between runs, or faster".to_owned(),
                }
            );
            let apart = results
                .measured_at(&budget.benchmark, baseline)
                .zip(results.measured_at(&budget.benchmark, "new"))
                .map(|(then, now)| now.abs_diff(then));
            let detail = match apart {
                Some(seconds) if seconds > STALE_BASELINE.as_secs() => format!(
                    "{detail}; warning: `{baseline}` was measured {} days apart from these runs \
                     (the machine, toolchain or data may have moved since): save it again",
                    seconds / 86_400
                ),
                _ => detail,
            };
            BudgetOutcome { passed, detail }
        }
    };
    Ok(Ok(outcome))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_regression_is_judged_against_the_spread_between_runs() {
        // The same code measured 4.2, 4.7 and 4.8 ms in three runs; one run at
        // 10.4 ms is beyond what that spread explains, 5.6 ms is not.
        let main = [4.19e6, 4.66e6, 4.79e6];
        let slow = regression(&[10.4e6], &main, 0.10).expect("three runs give a spread");
        assert!(slow.regressed(), "{slow:?}");
        let noise = regression(&[5.6e6], &main, 0.10).expect("a spread");
        assert!(!noise.regressed(), "{noise:?}");
        assert!(noise.beyond_tolerance && !noise.beyond_spread);
        // A tolerance wider than the change passes it however tight the runs.
        let tight = [5.0e6, 5.001e6, 5.002e6];
        assert!(!regression(&[5.4e6], &tight, 0.10).unwrap().regressed());
        assert!(regression(&[5.6e6], &tight, 0.10).unwrap().regressed());
        // One baseline run gives no spread: not judged.
        assert_eq!(regression(&[10.4e6], &[4.2e6], 0.10), None);
    }

    #[test]
    fn recorded_runs_stand_for_a_baseline_until_criterion_saves_over_them() {
        let home = tempfile::tempdir().unwrap();
        let saved = |name: &str, mean: f64| {
            let dir = home.path().join("queries_kurva_s").join(name);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(
                dir.join("benchmark.json"),
                r#"{"full_id":"queries/kurva_s"}"#,
            )
            .unwrap();
            let estimate = format!(
                r#"{{"confidence_interval":{{"confidence_level":0.95,"lower_bound":{mean},"upper_bound":{mean}}},"point_estimate":{mean}}}"#
            );
            std::fs::write(
                dir.join("estimates.json"),
                format!(r#"{{"mean":{estimate},"median":{estimate},"slope":null}}"#),
            )
            .unwrap();
        };
        let results = || CriterionResults::read(home.path()).unwrap();
        saved("main", 1.0e6);
        assert_eq!(
            results().run_means("queries/kurva_s", "main").unwrap(),
            [1.0e6]
        );
        results()
            .record_run("queries/kurva_s", "main", true)
            .unwrap();
        saved("main", 1.2e6);
        results()
            .record_run("queries/kurva_s", "main", false)
            .unwrap();
        assert_eq!(
            results().run_means("queries/kurva_s", "main").unwrap(),
            [1.0e6, 1.2e6]
        );
        // Saved again with a plain `cargo bench`: the history no longer describes it.
        saved("main", 2.0e6);
        assert_eq!(
            results().run_means("queries/kurva_s", "main").unwrap(),
            [2.0e6]
        );
        // Each recorded run says when.
        let history: RunHistory = serde_json::from_slice(
            &std::fs::read(home.path().join("queries_kurva_s/main").join(RUNS_FILE)).unwrap(),
        )
        .unwrap();
        assert!(history.runs.iter().all(|run| run.at.is_some()));
        assert!(results().measured_at("queries/kurva_s", "main").is_some());
        // A fresh record starts over.
        results()
            .record_run("queries/kurva_s", "main", true)
            .unwrap();
        assert_eq!(
            results().run_means("queries/kurva_s", "main").unwrap(),
            [2.0e6]
        );
        assert!(
            results()
                .run_means("queries/kurva_s", "other")
                .unwrap()
                .is_empty()
        );
    }

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
