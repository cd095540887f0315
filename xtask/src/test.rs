//! `cargo xtask test`: the README's test command. Makes sure what the tests
//! need exists (service images when a Docker daemon answers, the native
//! binaries, the example applications' virtualenvs), runs a short criterion
//! pass so the suites' `[benchmarks]` budgets are judged rather than
//! ignored, and the load engine's cost beside wrk against its budget
//! (`bench-loadgen --check`), then runs the whole test suite (with cargo-nextest when it is
//! installed: `.config/nextest.toml` keeps the load tests apart).

use harness::infra::images::{ImagesOutcome, ensure_local_images};
use harness::infra::native::{self, Binaries};
use harness::infra::ownership::docker_if_answering;

use std::collections::{BTreeMap, BTreeSet};

use harness::bench_budget::{BudgetRule, CriterionResults, MIN_BASELINE_RUNS, criterion_home};

use crate::bench::{Pass, exactly};
use crate::project_root;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Skip the short benchmark pass (the budgets are then judged on
    /// whatever estimates criterion already saved, or ignored).
    #[arg(long)]
    no_bench_pass: bool,
    /// Arguments for the test runner (cargo nextest, else cargo test),
    /// after `--`: a filter, say.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    rest: Vec<String>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    match docker_if_answering().await {
        Some(docker) => {
            match ensure_local_images(&docker, &project_root().join("target/ahsp-perf-images"))
                .await
            {
                Ok(ImagesOutcome::AlreadyPresent(_)) => {}
                Ok(ImagesOutcome::Built { images, seconds }) => {
                    eprintln!("built {} in {seconds:.0}s", images.join(", "))
                }
                Err(error) => eprintln!(
                    "warning: cannot build local images ({error:#}); containers will use public images"
                ),
            }
        }
        None => eprintln!(
            "no Docker daemon answers: the containers-provider tests will fail (start `dockerd`)"
        ),
    }
    if let Err(missing) = Binaries::locate() {
        native::install_with_apt(&missing).await?;
    }
    for example in crate::examples::python_examples() {
        if let Err(error) = crate::examples::ensure_virtualenv(&example) {
            eprintln!(
                "warning: cannot set up {} ({error:#}); its test will fail",
                example.display()
            );
        }
    }
    let mut test = crate::cargo_command();
    test.current_dir(project_root());
    if nextest_available() {
        // A process per test, the load tests one at a time beside the light
        // ones (`.config/nextest.toml`), and the slowest listed at the end.
        test.args([
            "nextest",
            "run",
            "--workspace",
            "--all-targets",
            "--no-fail-fast",
        ]);
        if !args.rest.is_empty() {
            test.arg("--").args(&args.rest);
        }
    } else {
        eprintln!(
            "cargo-nextest is not installed: running `cargo test` (one test binary at a time)"
        );
        test.args(["test", "--workspace", "--all-targets"])
            .args(&args.rest);
    }
    let mut engine_cost = Ok(());
    if !args.no_bench_pass {
        bench_pass()?;
        // Estimates exist now: a budget without one is an error, not a skip.
        test.env("AHSP_PERF_REQUIRE_BENCHES", "1");
        engine_cost = engine_cost_check();
    }
    let status = test.status()?;
    anyhow::ensure!(status.success(), "tests failed ({status})");
    // Judged before the tests, reported after them: a costlier engine does
    // not hide what the tests found.
    engine_cost
}

/// Pairs of the engine and wrk on each path, in this (dev) build, judged
/// against `benches/loadgen-budget.toml`: CI fails when the engine's CPU per
/// request rises beyond its budget.
fn engine_cost_check() -> anyhow::Result<()> {
    eprintln!("engine cost: the load engine beside wrk, judged against its budget");
    let status = std::process::Command::new(std::env::current_exe()?)
        .current_dir(project_root())
        .args(ENGINE_COST_ARGS)
        .status()?;
    anyhow::ensure!(
        status.success(),
        "the engine cost check failed ({status}): see its table above the tests"
    );
    Ok(())
}

/// Five pairs of 2 s on each path: about 45 s.
const ENGINE_COST_ARGS: [&str; 6] = [
    "bench-loadgen",
    "--check",
    "--rounds",
    "5",
    "--duration",
    "2s",
];

/// Whether `cargo nextest` answers.
fn nextest_available() -> bool {
    crate::cargo_command()
        .args(["nextest", "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Rounds of the interleaved A/A a missing baseline is saved with: a
/// baseline run, then a run judged against it, three times (the last judged
/// run is the whole pass).
const BASELINE_ROUNDS: usize = 3;

/// A short `cargo bench` pass, so the suites' budgets are judged. A
/// `no-regression against NAME` rule whose baseline has too few recorded
/// runs gets them first, from this same code, interleaved with runs judged
/// against them: on a fresh clone of main that is an A/A comparison, which
/// proves the rule is judged and does not cry wolf; a pull request's
/// workflow saves `main` from the base branch instead (see
/// `.github/workflows/perf.yml`).
fn bench_pass() -> anyhow::Result<()> {
    let root = project_root();
    let results = CriterionResults::read(&criterion_home(&root))?;
    let mut missing: BTreeMap<String, Vec<String>> = BTreeMap::new();
    // Planned as `cargo xtask perf` plans them, the AHSP domain's catalog
    // and metrics known.
    let domain = suites::ahsp::Ahsp::target_binary(std::env::current_exe()?, &[]);
    let options = harness::run::RunOptions::quiet(root.join("target/perf"));
    for path in suites::suite_files()? {
        let plan = harness::run::plan(&domain, &path, &options)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        for budget in plan.bench_budgets {
            if let BudgetRule::NoRegression { baseline, .. } = &budget.rule
                && results.run_means(&budget.benchmark, baseline)?.len() < MIN_BASELINE_RUNS
            {
                missing
                    .entry(baseline.clone())
                    .or_default()
                    .push(budget.benchmark.clone());
            }
        }
    }
    let mut interleaved = BTreeSet::new();
    for (baseline, benchmarks) in &missing {
        eprintln!(
            "benchmarks: saving baseline `{baseline}` of {} from this code, {BASELINE_ROUNDS} runs \
             interleaved with runs judged against them",
            benchmarks.join(", ")
        );
        let filter = exactly(benchmarks);
        for round in 0..BASELINE_ROUNDS {
            let append = |_: &str| round > 0;
            let pass = |save_baseline| Pass {
                save_baseline,
                short: true,
                filter: Some(&filter),
            };
            pass(Some(baseline)).run(&append)?;
            if round + 1 < BASELINE_ROUNDS {
                pass(None).run(&append)?;
            }
        }
        interleaved.extend(benchmarks.iter().cloned());
    }
    eprintln!("benchmarks: a short pass, so the suites' budgets are judged");
    let whole = Pass {
        save_baseline: None,
        short: true,
        filter: None,
    };
    whole.run(&|id| interleaved.contains(id))?;
    Ok(())
}
