//! `cargo xtask perf`: provision, seed, start the target, run the suites,
//! write the reports under `target/perf/<run>/`, print the summary.
//! Exit codes: 0 every threshold held (and the baseline gate passed), 1 a
//! threshold failed or a figure regressed against `--baseline`, 2 the harness
//! could not produce a verdict (a bad suite file, the stack, the target, a
//! missing baseline).
//!
//! `cargo xtask perf import-locust FILE_stats.csv --as NAME` turns a Locust
//! run into a baseline.

use std::path::PathBuf;

use harness::baseline::GateSettings;
use harness::infra::ProviderChoice;
use harness::run::set::EXIT_HARNESS_ERROR;
use harness::run::{RunOptions, SetOptions, run_set};
use suites::ahsp::{Ahsp, EmbeddedCommand};

use crate::project_root;

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<PerfCommand>,
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
    /// Save each suite's figures as baseline NAME (merged into an existing one).
    #[arg(long, value_name = "NAME")]
    save_baseline: Option<String>,
    /// Compare each suite with baseline NAME; a regression fails the run (exit 1).
    #[arg(long, value_name = "NAME")]
    baseline: Option<String>,
    /// Where baselines live (default perf-baselines/, meant to be committed).
    #[arg(long, value_name = "DIR")]
    baseline_dir: Option<PathBuf>,
    /// A change is a regression only beyond this relative change (and the noise).
    #[arg(long, value_name = "PERCENT", default_value = "25%", value_parser = parse_percent)]
    gate_threshold: f64,
}

#[derive(Debug, clap::Subcommand)]
enum PerfCommand {
    /// Turn a Locust `_stats.csv` into a baseline, to compare historical runs.
    ImportLocust {
        /// The Locust `--csv` prefix's `_stats.csv`.
        file: PathBuf,
        /// The baseline's name.
        #[arg(long = "as", value_name = "NAME")]
        name: String,
        /// The suite whose endpoints the rows are (default core).
        #[arg(long, default_value = "core")]
        suite: String,
        /// Where baselines live (default perf-baselines/).
        #[arg(long, value_name = "DIR")]
        baseline_dir: Option<PathBuf>,
    },
}

fn parse_percent(text: &str) -> Result<f64, String> {
    let number = text.trim().trim_end_matches('%');
    match number.parse::<f64>() {
        Ok(value) if value > 0.0 && value.is_finite() => Ok(value / 100.0),
        _ => Err(format!("`{text}` is not a positive percentage such as 25%")),
    }
}

fn baseline_dir(dir: Option<PathBuf>) -> PathBuf {
    dir.unwrap_or_else(|| project_root().join("perf-baselines"))
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    if let Some(PerfCommand::ImportLocust {
        file,
        name,
        suite,
        baseline_dir: dir,
    }) = args.command
    {
        let (path, endpoints) =
            harness::baseline::locust::import_into(&file, &suite, &name, &baseline_dir(dir))?;
        eprintln!(
            "baseline `{name}`: {endpoints} endpoint(s) of suite {suite} from {}: {}",
            file.display(),
            path.display()
        );
        return Ok(());
    }
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
    let options = SetOptions {
        run: RunOptions {
            profile: args.profile,
            include_tags: args.tags,
            exclude_tags: args.exclude_tags,
            target_url: args.target,
            infra: args.infra,
            switches: args.switches,
            output_root: args
                .output
                .unwrap_or_else(|| project_root().join("target/perf")),
            progress: true,
            print_summary: true,
        },
        baseline_dir: baseline_dir(args.baseline_dir),
        save_baseline: args.save_baseline,
        baseline: args.baseline,
        gate: GateSettings {
            relative: args.gate_threshold,
            ..GateSettings::default()
        },
    };
    // The reference service is this binary's `serve`.
    let domain = Ahsp {
        embedded: EmbeddedCommand {
            program: std::env::current_exe()?,
            args: vec!["serve".into(), "--listen".into(), "127.0.0.1:0".into()],
        },
    };
    match run_set(&domain, &paths, &options).await {
        Ok(outcome) => std::process::exit(outcome.exit_code()),
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::exit(EXIT_HARNESS_ERROR);
        }
    }
}
