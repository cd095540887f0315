//! `cargo xtask test`: the README's test command. Makes sure what the tests
//! need exists (service images when a Docker daemon answers, the native
//! binaries), runs a short criterion pass so the suites' `[benchmarks]`
//! budgets are judged rather than ignored, then runs the whole test suite.

use harness::infra::images::{ImagesOutcome, ensure_local_images};
use harness::infra::native::{self, Binaries};
use harness::infra::ownership::docker_if_answering;

use crate::{cargo, project_root};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Skip the short benchmark pass (the budgets are then judged on
    /// whatever estimates criterion already saved, or ignored).
    #[arg(long)]
    no_bench_pass: bool,
    /// Arguments for `cargo test` (after `--`).
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
    let mut test = std::process::Command::new(cargo());
    test.current_dir(project_root())
        .args(["test", "--workspace", "--all-targets"])
        .args(&args.rest);
    if !args.no_bench_pass {
        bench_pass()?;
        // Estimates exist now: a budget without one is an error, not a skip.
        test.env("AHSP_PERF_REQUIRE_BENCHES", "1");
    }
    let status = test.status()?;
    anyhow::ensure!(status.success(), "tests failed ({status})");
    Ok(())
}

/// Criterion's settings for the short pass: long enough for a mean and
/// its interval, short enough for every CI run (about a minute in all).
const SHORT_PASS: [&str; 5] = [
    "--warm-up-time",
    "0.5",
    "--measurement-time",
    "2",
    "--noplot",
];

/// A short `cargo bench` pass of the benches crate, in the dev profile
/// (optimised dependencies, already built for the tests; timings only err
/// on the slow side, so a budget that holds here holds in release). A
/// `no-regression against NAME` rule whose baseline criterion has not saved
/// gets one first, from this same code: on a fresh clone of main that is an
/// A/A comparison, which proves the rule is judged and does not cry wolf; a
/// pull request's workflow saves `main` from the base branch instead (see
/// `.github/workflows/perf.yml`).
fn bench_pass() -> anyhow::Result<()> {
    let root = project_root();
    let results = harness::bench_budget::CriterionResults::read(
        &harness::bench_budget::criterion_home(&root),
    )?;
    let mut missing: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    // Planned as `cargo xtask perf` plans them, the AHSP domain's catalog
    // and metrics known.
    let domain = suites::ahsp::Ahsp::target_binary(std::env::current_exe()?, &[]);
    let options = harness::run::RunOptions::quiet(root.join("target/perf"));
    for path in suites::suite_files()? {
        let plan = harness::run::plan(&domain, &path, &options)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        for budget in plan.bench_budgets {
            if let harness::bench_budget::BudgetRule::NoRegression { baseline, .. } = &budget.rule
                && results.estimates(&budget.benchmark, baseline)?.is_none()
            {
                missing
                    .entry(baseline.clone())
                    .or_default()
                    .push(budget.benchmark.clone());
            }
        }
    }
    let bench = |extra: &[&str]| -> anyhow::Result<()> {
        let status = std::process::Command::new(cargo())
            .current_dir(&root)
            .args([
                "bench",
                "-p",
                "benches",
                "--bench",
                "queries",
                "--bench",
                "harness_hot_paths",
            ])
            .args(["--profile", "dev", "--"])
            .args(SHORT_PASS)
            .args(extra)
            .status()?;
        anyhow::ensure!(status.success(), "the benchmark pass failed ({status})");
        Ok(())
    };
    for (baseline, benchmarks) in &missing {
        let filter = format!(
            "^({})$",
            benchmarks
                .iter()
                .map(|b| regex_escape(b))
                .collect::<Vec<_>>()
                .join("|")
        );
        eprintln!(
            "benchmarks: saving baseline `{baseline}` of {} from this code",
            benchmarks.join(", ")
        );
        bench(&["--save-baseline", baseline, &filter])?;
    }
    eprintln!("benchmarks: a short pass, so the suites' budgets are judged");
    bench(&[])
}

/// `id` as a regular expression matching itself (criterion filters by regex).
fn regex_escape(id: &str) -> String {
    id.chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$".contains(c);
            special
                .then_some('\\')
                .into_iter()
                .chain(std::iter::once(c))
        })
        .collect()
}
