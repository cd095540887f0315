//! SLAs as cargo tests: each AHSP suite runs once, and each of its
//! thresholds is one test (`core::http.duration{name:/dashboard/}: p(95) < 500ms`)
//! that fails with the observed value and by how much.
//!
//! Under `cargo test` the suites run once per process. Under `cargo nextest`
//! every test is a process of its own, so a suite's result is cached on disk
//! for the nextest run (`NEXTEST_RUN_ID`), behind a lock that also keeps two
//! suites from loading the machine at once.
//!
//! `AHSP_PERF_PROFILE` picks the profile (default `ci`).
//!
//! Benchmark budgets (`[benchmarks]` in a suite file) are tests here too,
//! checked on criterion's saved estimates. Without estimates (no `cargo bench`
//! yet) they are ignored, or fail with `AHSP_PERF_REQUIRE_BENCHES=1`, which a
//! pull-request gate that ran `cargo bench` sets.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use harness::report::RunReport;
use harness::run::{RunError, RunOptions, plan, run_suite};
use libtest_mimic::{Arguments, Failed, Trial};
use suites::ahsp::Ahsp;

/// The AHSP domain with the reference service from this crate's binary.
fn domain() -> Ahsp {
    Ahsp::target_binary(
        PathBuf::from(env!("CARGO_BIN_EXE_ahsp-target")),
        &["--quiet"],
    )
}

fn options() -> RunOptions {
    let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/perf/sla");
    RunOptions {
        profile: Some(std::env::var("AHSP_PERF_PROFILE").unwrap_or_else(|_| "ci".to_owned())),
        ..RunOptions::quiet(target)
    }
}

/// A suite's outcome, as the tests need it: the report, or why there is none.
type Outcome = Result<Arc<RunReport>, String>;

fn outcome(suite: &str, path: &Path) -> Outcome {
    static DONE: OnceLock<Mutex<HashMap<String, Outcome>>> = OnceLock::new();
    let done = DONE.get_or_init(Default::default);
    // Holding the lock while a suite runs keeps suites from overlapping.
    let mut done = done.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(outcome) = done.get(suite) {
        return outcome.clone();
    }
    let outcome = match std::env::var("NEXTEST_RUN_ID") {
        Ok(run_id) => cached_across_processes(suite, path, &run_id),
        Err(_) => run(path),
    };
    done.insert(suite.to_owned(), outcome.clone());
    outcome
}

fn run(path: &Path) -> Outcome {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    match runtime.block_on(run_suite(&domain(), path, &options())) {
        Ok(run) => {
            eprintln!("{}", harness::report::terminal::render(&run.report));
            eprintln!("reports in {}", run.dir.display());
            Ok(Arc::new(run.report))
        }
        Err(RunError::Harness(error)) => Err(format!("the suite did not run: {error:#}")),
        Err(error) => Err(error.to_string()),
    }
}

/// One process runs the suite; the others of the same nextest run read its result.
fn cached_across_processes(suite: &str, path: &Path, run_id: &str) -> Outcome {
    use std::io::Write as _;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/perf/sla-cache")
        .join(run_id);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(".lock"))
        .map_err(|e| e.to_string())?;
    let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e.to_string())?;
    let cached = dir.join(format!("{suite}.json"));
    if let Ok(bytes) = std::fs::read(&cached) {
        let stored: Result<RunReport, String> =
            serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        return stored.map(Arc::new);
    }
    let outcome = run(path);
    let stored: Result<&RunReport, &String> = outcome.as_ref().map(|r| r.as_ref());
    let mut file = std::fs::File::create(&cached).map_err(|e| e.to_string())?;
    file.write_all(&serde_json::to_vec(&stored).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    outcome
}

/// One test per benchmark budget of a suite.
fn budget_trials(
    suite: &str,
    budgets: &[harness::bench_budget::BenchBudget],
    results: &harness::bench_budget::CriterionResults,
) -> Vec<Trial> {
    let require = std::env::var_os("AHSP_PERF_REQUIRE_BENCHES").is_some_and(|v| v == "1");
    budgets
        .iter()
        .map(|budget| {
            let name = format!("{suite}::bench {}", budget.source);
            match harness::bench_budget::check(budget, results) {
                Ok(Ok(outcome)) if outcome.passed => Trial::test(name, || Ok(())),
                Ok(Ok(outcome)) => {
                    let message = format!("{}: {}", budget.source, outcome.detail);
                    Trial::test(name, move || Err(Failed::from(message)))
                }
                Ok(Err(missing)) if !require => Trial::test(name, || Ok(()))
                    .with_ignored_flag(true)
                    .with_kind(format!("no estimates ({missing})")),
                Ok(Err(missing)) => {
                    let message = missing.to_string();
                    Trial::test(name, move || Err(Failed::from(message)))
                }
                Err(error) => {
                    let message = format!("{error:#}");
                    Trial::test(name, move || Err(Failed::from(message)))
                }
            }
        })
        .collect()
}

fn main() {
    let mut arguments = Arguments::from_args();
    // Load tests in parallel would measure each other.
    arguments.test_threads = Some(1);
    let options = options();
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let criterion = harness::bench_budget::CriterionResults::read(
        &harness::bench_budget::criterion_home(&workspace),
    )
    .expect("criterion's results are readable");
    let mut trials = Vec::new();
    for path in suites::suite_files().expect("the suites folder") {
        let file_name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("suite")
            .to_owned();
        let planned = match plan(&domain(), &path, &options) {
            Ok(planned) => planned,
            Err(errors) => {
                let message = errors.to_string();
                trials.push(Trial::test(format!("{file_name}::valid"), move || {
                    Err(Failed::from(message))
                }));
                continue;
            }
        };
        let suite = planned.name.clone();
        trials.extend(budget_trials(&suite, &planned.bench_budgets, &criterion));
        if !planned.runs_in_profile() {
            trials.push(
                Trial::test(format!("{suite}::runs"), || Ok(()))
                    .with_ignored_flag(true)
                    .with_kind(format!("only in {}", planned.only_profiles.join(","))),
            );
            continue;
        }
        let runs = {
            let (suite, path) = (suite.clone(), path.clone());
            Trial::test(format!("{suite}::runs"), move || {
                outcome(&suite, &path).map(drop).map_err(Failed::from)
            })
        };
        trials.push(runs);
        let mut sources: Vec<String> = planned
            .thresholds
            .iter()
            .map(|t| t.source.clone())
            .collect();
        sources.push("tasks.executed: count > 0".to_owned());
        for source in sources {
            let (suite, path) = (suite.clone(), path.clone());
            trials.push(Trial::test(format!("{suite}::{source}"), move || {
                let report =
                    outcome(&suite, &path).map_err(|e| Failed::from(format!("no verdict: {e}")))?;
                let result = report
                    .thresholds
                    .iter()
                    .find(|t| t.source == source)
                    .ok_or_else(|| {
                        Failed::from(format!("the report has no threshold `{source}`"))
                    })?;
                if result.passed {
                    return Ok(());
                }
                let mut message = format!("{source}: {}", result.detail);
                for cause in &result.diagnosis {
                    message.push_str(&format!("\n  likely cause: {cause}"));
                }
                Err(Failed::from(message))
            }));
        }
    }
    libtest_mimic::run(&arguments, trials).exit();
}
