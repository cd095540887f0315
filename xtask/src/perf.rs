//! `cargo xtask perf`: provision, seed, start the target, run the suites,
//! write the reports under `target/perf/<run>/`, print the summary.
//! Exit codes: 0 every threshold held (and the baseline gate passed), 1 a
//! threshold failed or a figure regressed against `--baseline`, 2 the harness
//! could not produce a verdict (a bad suite file, the stack, the target, a
//! missing baseline).
//!
//! `cargo xtask perf import-locust FILE_stats.csv --as NAME` turns a Locust
//! run into a baseline.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use harness::baseline::{self, Baseline, GateSettings, SuiteBaseline};
use harness::infra::ProviderChoice;
use suites::runner::{RunError, RunOptions, run_suite};
use suites::target::EmbeddedCommand;

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

pub const EXIT_THRESHOLD_FAILED: i32 = 1;
pub const EXIT_HARNESS_ERROR: i32 = 2;

pub async fn run(args: Args) -> anyhow::Result<()> {
    if let Some(PerfCommand::ImportLocust {
        file,
        name,
        suite,
        baseline_dir: dir,
    }) = args.command
    {
        return import_locust(&file, &name, &suite, &baseline_dir(dir));
    }
    let dir = baseline_dir(args.baseline_dir.clone());
    let gate = GateSettings {
        relative: args.gate_threshold,
        ..GateSettings::default()
    };
    let against = match &args.baseline {
        Some(name) => match Baseline::load(&dir, name) {
            Ok(baseline) => Some(baseline),
            Err(error) => {
                eprintln!("error: {error:#}");
                std::process::exit(EXIT_HARNESS_ERROR);
            }
        },
        None => None,
    };
    let mut saved = Vec::new();
    let mut regressed = Vec::new();
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
                let figures = SuiteBaseline::from_run(&run.report.summary);
                if let Some(against) = &against
                    && !gate_suite(
                        against,
                        &figures,
                        &run.report.summary.suite,
                        &run.dir,
                        &gate,
                    )?
                {
                    regressed.push(run.report.summary.suite.clone());
                }
                saved.push((run.report.summary.suite.clone(), figures));
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
    if let Some(name) = &args.save_baseline
        && !saved.is_empty()
    {
        let mut baseline = Baseline::load_or_new(&dir, name)?;
        let suites: Vec<String> = saved.iter().map(|(suite, _)| suite.clone()).collect();
        baseline.suites.extend(saved);
        let path = baseline.save(&dir)?;
        eprintln!(
            "baseline `{name}` saved for {}: {}",
            suites.join(", "),
            path.display()
        );
    }
    if !broken.is_empty() {
        std::process::exit(EXIT_HARNESS_ERROR);
    }
    if !regressed.is_empty() {
        eprintln!(
            "regressed against baseline `{}` in: {}",
            args.baseline.as_deref().unwrap_or_default(),
            regressed.join(", ")
        );
    }
    if !failed.is_empty() {
        eprintln!("thresholds failed in: {}", failed.join(", "));
    }
    if !failed.is_empty() || !regressed.is_empty() {
        std::process::exit(EXIT_THRESHOLD_FAILED);
    }
    if ran == 0 {
        eprintln!("error: no suite ran");
        std::process::exit(EXIT_HARNESS_ERROR);
    }
    Ok(())
}

/// Compares one suite's run with the baseline, prints the table, writes it
/// beside the run's reports (and to `$GITHUB_STEP_SUMMARY`). Returns whether
/// the gate passed; a suite the baseline lacks passes with a note.
fn gate_suite(
    against: &Baseline,
    figures: &SuiteBaseline,
    suite: &str,
    run_dir: &Path,
    gate: &GateSettings,
) -> anyhow::Result<bool> {
    let Some(then) = against.suites.get(suite) else {
        eprintln!(
            "baseline `{}` has no figures for suite {suite}: not gated (save them with --save-baseline {})\n",
            against.name, against.name
        );
        return Ok(true);
    };
    let comparison = baseline::compare(&against.name, suite, then, figures, gate);
    let table = baseline::render_markdown(&comparison, gate);
    eprintln!("{table}");
    // Not `with_extension`: a baseline named `v1.2` would lose its `.2`.
    let path = |extension: &str| run_dir.join(format!("baseline-{}.{extension}", against.name));
    std::fs::write(path("md"), &table)?;
    std::fs::write(path("json"), serde_json::to_vec_pretty(&comparison)?)?;
    if let Some(summary) = std::env::var_os("GITHUB_STEP_SUMMARY") {
        use std::io::Write as _;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&summary)
            .with_context(|| format!("appending to {}", PathBuf::from(&summary).display()))?;
        writeln!(file, "{table}")?;
    }
    Ok(comparison.passed())
}

fn import_locust(file: &Path, name: &str, suite: &str, dir: &Path) -> anyhow::Result<()> {
    let imported = baseline::import_locust(file, suite, name)?;
    let mut baseline = Baseline::load_or_new(dir, name)?;
    let endpoints = imported.suites[suite].endpoints.len();
    baseline.suites.extend(imported.suites);
    let path = baseline.save(dir)?;
    eprintln!(
        "baseline `{name}`: {endpoints} endpoint(s) of suite {suite} from {}: {}",
        file.display(),
        path.display()
    );
    Ok(())
}
