//! `cargo xtask bench`: criterion runs of the benches crate, each run's mean
//! recorded beside criterion's estimates, so a `no-regression` budget judges
//! against how far the same code moves between runs (see
//! `harness::bench_budget`). Criterion keeps one run per saved name; this
//! keeps them all.
//!
//! ```text
//! cargo xtask bench --save-baseline main --runs 3   # on the base branch
//! cargo xtask bench --runs 3                        # on the change
//! ```
//!
//! For runs interleaved between two checkouts (what the machine does during
//! the job then falls on both sides), `--append` adds one run at a time to
//! the runs recorded by the previous `cargo xtask bench` of that name.

use std::collections::BTreeSet;

use harness::bench_budget::{CriterionResults, criterion_home};

use crate::project_root;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Save the runs as baseline NAME (criterion's `--save-baseline`).
    #[arg(long, value_name = "NAME")]
    save_baseline: Option<String>,
    /// How many runs, one after another (each its own stack and seed).
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Add to the runs recorded before instead of starting anew.
    #[arg(long)]
    append: bool,
    /// The short pass `cargo xtask test` runs (0.5 s warm-up, 2 s measurement).
    #[arg(long)]
    short: bool,
    /// Criterion's filter: a regular expression over benchmark ids.
    filter: Option<String>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.runs >= 1, "--runs must be at least 1");
    for run in 0..args.runs {
        let append = args.append || run > 0;
        let pass = Pass {
            save_baseline: args.save_baseline.as_deref(),
            short: args.short,
            filter: args.filter.as_deref(),
        };
        pass.run(&|_| append)?;
    }
    Ok(())
}

/// The criterion settings of the short pass: long enough for a mean inside
/// its interval, short enough for every CI run.
const SHORT_PASS: [&str; 5] = [
    "--warm-up-time",
    "0.5",
    "--measurement-time",
    "2",
    "--noplot",
];

/// One `cargo bench` of the benches crate, in the dev profile (optimised
/// dependencies, already built for the tests; timings only err on the slow
/// side, so a budget that holds here holds in release).
pub struct Pass<'a> {
    pub save_baseline: Option<&'a str>,
    pub short: bool,
    pub filter: Option<&'a str>,
}

impl Pass<'_> {
    /// Runs criterion, then records the run of every benchmark it measured;
    /// `append(id)` says whether that run adds to the runs recorded before
    /// (else it starts them anew).
    pub fn run(&self, append: &dyn Fn(&str) -> bool) -> anyhow::Result<BTreeSet<String>> {
        let root = project_root();
        let started = std::time::SystemTime::now();
        let mut bench = crate::cargo_command();
        bench
            .current_dir(&root)
            // `--workspace`, not `-p benches`: features resolve as for the
            // tests, so the dependencies the tests built are reused rather
            // than built again with another feature set (minutes in CI).
            .args(["bench", "--workspace", "--bench", "queries"])
            .args(["--bench", "harness_hot_paths", "--profile", "dev", "--"]);
        if self.short {
            bench.args(SHORT_PASS);
        }
        if let Some(name) = self.save_baseline {
            bench.args(["--save-baseline", name]);
        }
        bench.args(self.filter);
        let status = bench.status()?;
        anyhow::ensure!(status.success(), "the benchmark run failed ({status})");
        let saved = self.save_baseline.unwrap_or("new");
        let results = CriterionResults::read(&criterion_home(&root))?;
        let measured: BTreeSet<String> = results.saved_since(saved, started).into_iter().collect();
        for id in &measured {
            results.record_run(id, saved, !append(id))?;
        }
        Ok(measured)
    }
}

/// `id` as a regular expression matching itself (criterion filters by regex).
pub fn exactly(ids: &[String]) -> String {
    let escaped: Vec<String> = ids
        .iter()
        .map(|id| {
            id.chars()
                .flat_map(|c| {
                    let special = "\\.+*?()|[]{}^$".contains(c);
                    special
                        .then_some('\\')
                        .into_iter()
                        .chain(std::iter::once(c))
                })
                .collect()
        })
        .collect();
    format!("^({})$", escaped.join("|"))
}
