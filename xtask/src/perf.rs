//! `cargo xtask perf`: provision, seed, start the target, run the suites,
//! write the reports under `target/perf/<run>/`, print the summary.
//! Exit codes: 0 every threshold held (and the baseline gate passed), 1 a
//! threshold failed or a figure regressed against `--baseline`, 2 the harness
//! could not produce a verdict (a bad suite file, the stack, the target, a
//! missing baseline).
//!
//! `--repeat N` runs each suite N times (the gate then knows how much runs
//! differ); `--ab A B` runs two targets interleaved on this machine and
//! judges B against A: the recommended gate for a pull request.
//!
//! `cargo xtask perf import-locust FILE_stats.csv --as NAME` turns a Locust
//! run into a baseline; `cargo xtask perf compare RUN_A RUN_B` judges one
//! finished run against another.
//!
//! `--capacity` searches the highest arrival rate at which every threshold
//! holds (a suite's `[capacity]` does the same without the flag).
//!
//! `--shard I/N` runs one generator's share of a suite (not judged) and
//! `cargo xtask perf merge DIR... --output DIR` merges the shards' folders
//! into one run judged on the whole.

use std::path::PathBuf;
use std::time::Duration;

use harness::baseline::{GateSettings, KEEP_RUNS, Metric};
use harness::infra::ProviderChoice;
use harness::run::barrier::BarrierOptions;
use harness::run::gate::GateOptions;
use harness::run::outcome::{EXIT_HARNESS_ERROR, comparison_exit_code};
use harness::run::set::Arm;
use harness::run::{RunOptions, SetOptions, run_set};
use harness::secret::SecretUrl;
use harness::suite::plan::{Shard, ShardPlan};
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
    /// Run against this URL instead of the embedded reference service
    /// (a password in it is masked wherever it is shown or written).
    #[arg(long, value_parser = |url: &str| Ok::<_, String>(SecretUrl::new(url)))]
    target: Option<SecretUrl>,
    /// A host the load may go to besides loopback and the suite's
    /// `allow-hosts` (repeatable): for a --target the suite does not name.
    #[arg(long = "allow-host", value_name = "HOST")]
    allow_hosts: Vec<String>,
    /// Start the application with this command (one string, split as a
    /// shell would) and run against it, as `[target] command` does; it runs
    /// in the current directory and must answer on 127.0.0.1.
    #[arg(long, value_name = "COMMAND", conflicts_with = "target")]
    target_command: Option<String>,
    /// Stream the run's series once a second while it runs (repeatable):
    /// prometheus-rw=URL sends Prometheus remote write to URL.
    #[arg(long = "metrics-out", value_name = "KIND=URL")]
    metrics_out: Vec<String>,
    /// A static label on every streamed series (repeatable).
    #[arg(long = "metrics-label", value_name = "KEY=VALUE")]
    metrics_labels: Vec<String>,
    /// Serve a live page of the run while it runs (charts, thresholds and
    /// probes, updated each second), on ADDR or a free loopback port.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:0")]
    live: Option<std::net::SocketAddr>,
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
    #[command(flatten)]
    gate: GateArgs,
    /// Run each suite N times (each arm N times with --ab).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    repeat: u32,
    /// How many runs per suite a saved baseline keeps (oldest dropped).
    #[arg(long, value_name = "K", default_value_t = KEEP_RUNS as u32, value_parser = clap::value_parser!(u32).range(1..=100))]
    keep_runs: u32,
    /// Judge B against A, run interleaved on this machine: each a URL,
    /// `reference`, `reference+SWITCH+…` or a command that starts the app.
    #[arg(long, num_args = 2, value_names = ["A", "B"], conflicts_with_all = ["baseline", "save_baseline", "target"])]
    ab: Vec<String>,
    /// With --ab or --baseline: add runs until every gated figure is
    /// decided (WORSE, better, or proven within the threshold), or the
    /// budget is spent; --repeat is then the first look's run count.
    #[arg(long)]
    until_decided: bool,
    /// How long --until-decided may run each suite.
    #[arg(long, value_name = "DURATION", default_value = "20m", value_parser = humantime::parse_duration, requires = "until_decided")]
    budget: Duration,
    /// Run shard I of N: this generator's share of the load, not judged;
    /// `perf merge` of every shard's folder judges the whole.
    #[arg(long, value_name = "I/N", conflicts_with_all = ["ab", "baseline", "save_baseline"])]
    shard: Option<Shard>,
    /// When the shards' load starts, on the wall clock (RFC 3339, or Unix
    /// seconds); the orchestrator sets it for every shard alike.
    #[arg(long, value_name = "TIME", env = "AHSP_PERF_START_AT", value_parser = parse_start_at, requires = "shard")]
    start_at: Option<u64>,
    /// Start together with the other shards through this folder, which
    /// they all share: each says when it is ready and waits for all N,
    /// then all start at one instant; a shard that waits past
    /// --barrier-timeout fails the run for every shard.
    #[arg(
        long,
        value_name = "DIR",
        env = "AHSP_PERF_BARRIER",
        requires = "shard",
        conflicts_with = "start_at"
    )]
    barrier: Option<PathBuf>,
    /// How long a shard waits at the barrier for the others.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = humantime::parse_duration, requires = "barrier")]
    barrier_timeout: Duration,
    /// The run's name: the `run_id` label of its live series (default: its
    /// folder's name) and, the same for every shard of a sharded run (a CI
    /// run's id, a Kubernetes run's folder), recorded in shard.json; the
    /// merge refuses shards of different runs.
    #[arg(long, value_name = "ID", env = "AHSP_PERF_RUN_ID")]
    run_id: Option<String>,
    /// Search the highest arrival rate at which every threshold holds
    /// (open model, steps judged with intervals), with the suite's
    /// `[capacity]` settings or the defaults; report what breaks first.
    /// With `--ab` or a baseline the gate compares the capacities found.
    #[arg(long, conflicts_with = "shard")]
    capacity: bool,
}

/// Baselines and the gate: of a run, and of a merged one.
#[derive(Debug, clap::Args)]
struct GateArgs {
    /// Save each suite's figures as baseline NAME (merged into an existing one).
    #[arg(long, value_name = "NAME")]
    save_baseline: Option<String>,
    /// Compare each suite with baseline NAME; a regression fails the run (exit 1).
    #[arg(long, value_name = "NAME")]
    baseline: Option<String>,
    /// Where baselines live (default perf-baselines/, meant to be committed).
    #[arg(long, value_name = "DIR")]
    baseline_dir: Option<PathBuf>,
    #[command(flatten)]
    settings: GateSettingsArgs,
}

/// How large and how sure a change must be to fail the gate: of a run, a
/// merged run, and `perf compare`.
#[derive(Debug, clap::Args)]
struct GateSettingsArgs {
    /// A change is a regression only beyond this relative change (and the noise).
    #[arg(long, value_name = "PERCENT", default_value = "25%", value_parser = parse_percent)]
    gate_threshold: f64,
    /// … and only when significant at this one-sided confidence.
    #[arg(long, value_name = "PERCENT", default_value = "99%", value_parser = parse_confidence)]
    gate_confidence: f64,
    /// The figures judged (comma-separated: p50, p95, p99, error-rate,
    /// throughput); over a suite's `[suite] gate`; all by default.
    #[arg(long, value_name = "FIGURES", value_delimiter = ',', value_parser = |s: &str| s.parse::<Metric>())]
    gate: Option<Vec<Metric>>,
}

impl GateSettingsArgs {
    fn settings(&self) -> GateSettings {
        GateSettings {
            relative: self.gate_threshold,
            confidence: self.gate_confidence,
            metrics: self.gate.clone().unwrap_or_else(|| Metric::ALL.to_vec()),
            ..GateSettings::default()
        }
    }
}

impl GateArgs {
    /// The gate's options, keeping `keep_runs` runs per suite, adding runs
    /// until decided within `until_decided` when given.
    fn options(self, keep_runs: usize, until_decided: Option<Duration>) -> GateOptions {
        GateOptions {
            baseline_dir: baseline_dir(self.baseline_dir),
            baseline: self.baseline,
            save_baseline: self.save_baseline,
            settings: self.settings.settings(),
            keep_runs,
            metrics: self.settings.gate,
            until_decided,
        }
    }
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
    /// Merge the folders of a sharded run's shards into one run, judged on the whole.
    Merge(MergeArgs),
    /// What a gate with N runs a side could detect, per figure, worked
    /// out from a saved baseline's runs of a suite.
    PlanGate {
        /// The suite's name (as `[suite] name` and the baseline say it).
        suite: String,
        /// Runs a side the gate would have.
        #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
        runs: u32,
        #[command(flatten)]
        gate: GateArgs,
    },
    /// Judge one finished run against another (their folders under target/perf).
    Compare {
        /// The run taken as the baseline.
        run_a: PathBuf,
        /// The run judged against it.
        run_b: PathBuf,
        #[command(flatten)]
        settings: GateSettingsArgs,
    },
}

/// `perf merge`'s arguments.
#[derive(Debug, clap::Args)]
struct MergeArgs {
    /// Each shard's run folder (with its shard.json).
    #[arg(required_unless_present = "find")]
    shards: Vec<PathBuf>,
    /// Merge the shards' folders found under DIR (a run's folder on a
    /// shared volume): each folder with a shard.json, or where a shard
    /// began and wrote none.
    #[arg(long, value_name = "DIR")]
    find: Option<PathBuf>,
    /// With --find: first wait, at most this long, until every shard
    /// has written its shard.json or is past the time it was due (a
    /// killed shard never writes one); stop at once when the shards
    /// failed together at their barrier.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, requires = "find")]
    wait: Option<Duration>,
    /// Where the merged run's reports go.
    #[arg(long, value_name = "DIR", alias = "out")]
    output: PathBuf,
    /// Merge even when shards are missing, or their folders have no
    /// shard.json (the report names them).
    #[arg(long)]
    allow_partial: bool,
    /// Merge shards told another target, start instant or run id (the report says MIXED).
    #[arg(long)]
    allow_mixed: bool,
    /// How late after the agreed instant a shard's load may begin.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = humantime::parse_duration)]
    start_tolerance: Duration,
    /// Merge shards that began later than --start-tolerance (the report says LATE).
    #[arg(long)]
    allow_late: bool,
    /// The suite file the shards ran, when it is not where they recorded it.
    #[arg(long, value_name = "FILE")]
    suite: Option<PathBuf>,
    #[command(flatten)]
    gate: GateArgs,
}

/// `perf merge`: the merged run's verdict, or the error; exits.
async fn merge(args: MergeArgs) -> ! {
    let MergeArgs {
        mut shards,
        find,
        wait,
        output,
        allow_partial,
        allow_mixed,
        start_tolerance,
        allow_late,
        suite,
        gate,
    } = args;
    if let Some(root) = find {
        let poll = Duration::from_secs(1);
        match harness::run::gather::gather(&root, wait, poll).await {
            Ok(found) => shards.extend(found),
            Err(error) => {
                eprintln!("error: {error:#}");
                std::process::exit(EXIT_HARNESS_ERROR);
            }
        }
    }
    let options = harness::run::merge::MergeOptions {
        suite,
        allow_partial,
        allow_mixed,
        start_tolerance,
        allow_late,
        print_summary: true,
        gate: gate.options(KEEP_RUNS, None),
    };
    match harness::run::merge::merge(&reference(), &shards, &output, &options).await {
        Ok(merged) => {
            eprintln!("\nmerged run: {}", merged.run.dir.display());
            std::process::exit(merged.exit_code())
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::exit(EXIT_HARNESS_ERROR);
        }
    }
}

/// `perf plan-gate`: the table, or the error; exits.
fn plan_gate(suite: &str, runs: u32, gate: GateArgs) -> ! {
    match harness::run::gate::plan_gate(&gate.options(KEEP_RUNS, None), suite, runs as usize) {
        Ok(table) => {
            println!("{table}");
            std::process::exit(0)
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::exit(EXIT_HARNESS_ERROR);
        }
    }
}

/// `--target-command`'s words, split as a shell would split them.
fn target_command(command: Option<&str>) -> anyhow::Result<Vec<String>> {
    let Some(command) = command else {
        return Ok(Vec::new());
    };
    let words = shell_words::split(command)
        .map_err(|error| anyhow::anyhow!("--target-command `{command}`: {error}"))?;
    anyhow::ensure!(!words.is_empty(), "--target-command is empty");
    Ok(words)
}

/// Milliseconds since the Unix epoch, from RFC 3339 or Unix seconds.
fn parse_start_at(text: &str) -> Result<u64, String> {
    if let Ok(seconds) = text.trim().parse::<f64>() {
        return Ok((seconds * 1000.0) as u64);
    }
    humantime::parse_rfc3339_weak(text.trim())
        .map_err(|e| format!("`{text}` is neither RFC 3339 nor Unix seconds: {e}"))?
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .map_err(|_| format!("`{text}` is before 1970"))
}

fn parse_confidence(text: &str) -> Result<f64, String> {
    match parse_percent(text) {
        Ok(value) if (0.5..1.0).contains(&value) => Ok(value),
        _ => Err(format!(
            "`{text}` is not a confidence between 50% and 100% (exclusive)"
        )),
    }
}

/// `perf compare RUN_A RUN_B`: exit 0 when B is not worse, 1 when it is.
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
    match args.command {
        Some(PerfCommand::ImportLocust {
            file,
            name,
            suite,
            baseline_dir: dir,
        }) => {
            let (path, endpoints) =
                harness::baseline::locust::import_into(&file, &suite, &name, &baseline_dir(dir))?;
            eprintln!(
                "baseline `{name}`: {endpoints} endpoint(s) of suite {suite} from {}: {}",
                file.display(),
                path.display()
            );
            match harness::baseline::locust::history_beside(&file) {
                Some(history) => eprintln!(
                    "  with its history {}: how its windows differ widens the intervals",
                    history.display()
                ),
                None => eprintln!(
                    "  no _stats_history.csv beside it: the intervals assume independent requests"
                ),
            }
            return Ok(());
        }
        Some(PerfCommand::Merge(args)) => merge(args).await,
        Some(PerfCommand::PlanGate { suite, runs, gate }) => plan_gate(&suite, runs, gate),
        Some(PerfCommand::Compare {
            run_a,
            run_b,
            settings,
        }) => {
            let settings = settings.settings();
            match harness::run::gate::compare_runs(&run_a, &run_b, &settings) {
                Ok(comparison) => {
                    println!(
                        "{}",
                        harness::report::gate::render_markdown(&comparison, &settings)
                    );
                    std::process::exit(comparison_exit_code(&comparison))
                }
                Err(error) => {
                    eprintln!("error: {error:#}");
                    std::process::exit(EXIT_HARNESS_ERROR);
                }
            }
        }
        None => {}
    }
    let ab = match args.ab.as_slice() {
        [] => None,
        [a, b] => match (a.parse::<Arm>(), b.parse::<Arm>()) {
            (Ok(a), Ok(b)) => Some((a, b)),
            (Err(error), _) | (_, Err(error)) => {
                eprintln!("error: --ab: {error}");
                std::process::exit(EXIT_HARNESS_ERROR);
            }
        },
        _ => unreachable!("clap takes two values"),
    };
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
            allow_hosts: args.allow_hosts,
            target_command: target_command(args.target_command.as_deref())?,
            infra: args.infra,
            switches: args.switches,
            output_root: args
                .output
                .unwrap_or_else(|| project_root().join("target/perf")),
            progress: true,
            print_summary: true,
            shard: args.shard.map(|shard| ShardPlan {
                shard,
                start_at_unix_ms: args.start_at,
            }),
            barrier: args.barrier.map(|dir| BarrierOptions {
                dir,
                timeout: args.barrier_timeout,
            }),
            run_id: args.run_id,
            capacity: args.capacity,
            metrics_out: args.metrics_out,
            metrics_labels: args.metrics_labels,
            live: args.live,
        },
        gate: args.gate.options(
            args.keep_runs as usize,
            args.until_decided.then_some(args.budget),
        ),
        repeat: args.repeat as usize,
        ab,
    };
    match run_set(&reference(), &paths, &options).await {
        Ok(outcome) => std::process::exit(outcome.exit_code()),
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::exit(EXIT_HARNESS_ERROR);
        }
    }
}

/// The AHSP domain, its reference service this binary's `serve`.
fn reference() -> Ahsp {
    Ahsp {
        embedded: EmbeddedCommand {
            program: std::env::current_exe().unwrap_or_else(|_| "xtask".into()),
            args: vec!["serve".into(), "--listen".into(), "127.0.0.1:0".into()],
        },
    }
}
