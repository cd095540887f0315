//! `cargo xtask perf`: provision, seed, start the target, run the suites,
//! write the reports under `target/perf/<run>/`, print the summary.
//! Exit codes: 0 every threshold held, 1 a threshold failed, 2 the harness
//! could not produce a verdict (a bad suite file, the stack, the target).

use std::path::PathBuf;

use harness::infra::ProviderChoice;
use suites::runner::{RunError, RunOptions, run_suite};
use suites::target::EmbeddedCommand;

use crate::project_root;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Suites to run: names in suites/ahsp (core, auth, …) or paths; all by default.
    suites: Vec<String>,
    /// ci (short, for pull requests), full, or a profile the suites define.
    #[arg(long)]
    profile: Option<String>,
    /// Run against this URL instead of the embedded reference service.
    #[arg(long)]
    target: Option<String>,
    /// auto, containers, native or external.
    #[arg(long, value_parser = clap::builder::ValueParser::new(|s: &str| s.parse::<ProviderChoice>()))]
    infra: Option<ProviderChoice>,
    /// Only tasks with one of these tags (comma-separated or repeated; each must exist).
    #[arg(long, value_delimiter = ',')]
    tags: Vec<String>,
    /// Leave out tasks with any of these tags.
    #[arg(long = "exclude-tags", value_delimiter = ',')]
    exclude_tags: Vec<String>,
    /// A pathology switch of the reference service (repeatable), e.g. slow-query=rekap-rab:300ms.
    #[arg(long = "switch")]
    switches: Vec<String>,
    /// Where runs are written (default target/perf).
    #[arg(long)]
    output: Option<PathBuf>,
}

pub const EXIT_THRESHOLD_FAILED: i32 = 1;
pub const EXIT_HARNESS_ERROR: i32 = 2;

pub async fn run(args: Args) -> anyhow::Result<()> {
    let paths = if args.suites.is_empty() {
        suites::suite_files()?
    } else {
        let mut paths = Vec::new();
        for name in &args.suites {
            match suites::find_suite(name) {
                Some(path) => paths.push(path),
                None => {
                    eprintln!(
                        "error: no suite `{name}` (suites are in {})",
                        suites::suite_dir().display()
                    );
                    std::process::exit(EXIT_HARNESS_ERROR);
                }
            }
        }
        paths
    };
    let options = RunOptions {
        profile: args.profile.clone(),
        include_tags: args.tags,
        exclude_tags: args.exclude_tags,
        target_url: args.target,
        infra: args.infra,
        switches: args.switches,
        output_root: args
            .output
            .unwrap_or_else(|| project_root().join("target/perf")),
        embedded: EmbeddedCommand {
            program: std::env::current_exe()?,
            args: vec!["serve".into(), "--listen".into(), "127.0.0.1:0".into()],
        },
        progress: true,
        print_summary: true,
    };
    let mut failed = Vec::new();
    let mut broken = Vec::new();
    let mut ran = 0;
    for path in &paths {
        match run_suite(path, &options).await {
            Ok(run) => {
                ran += 1;
                eprintln!("reports: {}\n", run.dir.display());
                if !run.report.passed {
                    failed.push(run.report.summary.suite.clone());
                }
            }
            Err(RunError::NotInProfile { suite, only }) => {
                eprintln!(
                    "skipped {suite}: it runs only under profile {}\n",
                    only.join(", ")
                );
            }
            Err(error) => {
                eprintln!("error: {}: {error:#}\n", path.display());
                broken.push(path.display().to_string());
            }
        }
    }
    eprintln!(
        "{ran} suite(s) ran: {} passed, {} failed{}",
        ran - failed.len(),
        failed.len(),
        if broken.is_empty() {
            String::new()
        } else {
            format!(", {} could not run", broken.len())
        }
    );
    if !broken.is_empty() {
        std::process::exit(EXIT_HARNESS_ERROR);
    }
    if !failed.is_empty() {
        eprintln!("thresholds failed in: {}", failed.join(", "));
        std::process::exit(EXIT_THRESHOLD_FAILED);
    }
    if ran == 0 {
        eprintln!("error: no suite ran");
        std::process::exit(EXIT_HARNESS_ERROR);
    }
    Ok(())
}
