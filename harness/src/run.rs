//! One suite, end to end, as named phases: **prepare** (stack, data, target,
//! what is in effect, queries per request, rows before the load) →
//! **measure** (the load with its probes and log capture) → **judge**
//! (integrity, correctness, coverage, thresholds, diagnosis) → **report**
//! (every sink). The target is stopped on every exit path, the stack too.
//!
//! The application's domain (its data and its embedded service) comes in
//! through [`Domain`]; binaries only parse arguments and map a
//! [`SetOutcome`] to an exit code.

pub mod barrier;
pub mod domain;
mod faults;
pub mod gate;
pub mod gather;
mod judge;
mod measure;
pub mod merge;
pub mod outcome;
mod prepare;
pub mod set;
pub mod shard;
pub mod target;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Context as _;

pub use self::domain::Domain;
pub use self::outcome::SetOutcome;
pub use self::set::{SetOptions, run_set};
pub use self::target::RunningTarget;
use crate::infra::interrupt::InterruptListener;
use crate::infra::{InfraConfig, ProviderChoice, Stack};
use crate::report::json::JsonReporter;
use crate::report::locust::LocustCsvReporter;
use crate::report::terminal::TerminalReporter;
use crate::report::{Reporter, RunReport};
use crate::suite::diagnostic::SuiteErrors;
use crate::suite::plan::{Plan, PlanOptions, TargetPlan};

/// Choices for a run, from the command line or a test.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub profile: Option<String>,
    pub include_tags: Vec<String>,
    pub exclude_tags: Vec<String>,
    pub target_url: Option<crate::secret::SecretUrl>,
    /// Hosts the load may go to besides the suite's `allow-hosts`.
    pub allow_hosts: Vec<String>,
    /// A command that starts the application, instead of the file's target.
    pub target_command: Vec<String>,
    pub infra: Option<ProviderChoice>,
    pub switches: Vec<String>,
    /// Runs go to `<output_root>/<timestamp>-<suite>/`.
    pub output_root: PathBuf,
    pub progress: bool,
    pub print_summary: bool,
    /// This generator's share of a run split across several (`--shard I/N`).
    pub shard: Option<crate::suite::plan::ShardPlan>,
    /// Shards that start together through a folder they share
    /// (`--barrier DIR`), instead of at `--start-at`.
    pub barrier: Option<barrier::BarrierOptions>,
    /// What the shards of one run share (`--run-id`), kept in `shard.json`.
    pub run_id: Option<String>,
    /// A capacity search, whether or not the suite has `[capacity]`.
    pub capacity: bool,
    /// Receivers of the live series beside the suite's `[metrics-out]`
    /// (`--metrics-out prometheus-rw=URL`).
    pub metrics_out: Vec<String>,
    /// Static labels on the live series (`--metrics-label KEY=VALUE`).
    pub metrics_labels: Vec<String>,
    /// Serve the live page here while the load runs (`--live`; loopback).
    pub live: Option<std::net::SocketAddr>,
}

impl RunOptions {
    /// A quiet run of every task under each suite's own settings: what
    /// tests start from.
    pub fn quiet(output_root: PathBuf) -> RunOptions {
        RunOptions {
            profile: None,
            include_tags: Vec::new(),
            exclude_tags: Vec::new(),
            target_url: None,
            allow_hosts: Vec::new(),
            target_command: Vec::new(),
            infra: None,
            switches: Vec::new(),
            output_root,
            progress: false,
            print_summary: false,
            shard: None,
            barrier: None,
            run_id: None,
            capacity: false,
            metrics_out: Vec::new(),
            metrics_labels: Vec::new(),
            live: None,
        }
    }
}

/// A finished run.
#[derive(Debug, Clone)]
pub struct SuiteRun {
    pub report: RunReport,
    pub dir: PathBuf,
    /// The target's output, when the run started it.
    pub target_log: Option<PathBuf>,
    /// The figures the suite asks the gate to judge (`[suite] gate`).
    pub gate: Option<Vec<crate::baseline::Metric>>,
}

/// Why a suite did not produce a verdict.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The suite file is wrong: nothing ran.
    #[error("{0}")]
    Invalid(#[from] SuiteErrors),
    /// The suite does not run under this profile.
    #[error("suite {suite} runs only under profile(s) {only:?}")]
    NotInProfile { suite: String, only: Vec<String> },
    /// Infrastructure, seeding, the target or the engine failed.
    #[error(transparent)]
    Harness(#[from] anyhow::Error),
}

/// Named values beside the engine's that thresholds may use: what the
/// probes, integrity, correctness and coverage put in the summary.
pub fn extra_metrics() -> BTreeSet<String> {
    let mut names: BTreeSet<String> = crate::probe::metric_names(&crate::probe::SERVICE_NAMES)
        .into_iter()
        .collect();
    names.extend(crate::integrity::METRICS.iter().map(|m| m.to_string()));
    names.extend(crate::correctness::METRICS.iter().map(|m| m.to_string()));
    names.extend(crate::coverage::metric_names());
    names.insert(crate::suite::plan::CAPACITY_RATE.to_owned());
    names
}

/// Plans a suite file with the options of a run and the domain's catalog.
pub fn plan(domain: &dyn Domain, path: &Path, options: &RunOptions) -> Result<Plan, SuiteErrors> {
    Plan::from_file(path, &plan_options(domain, options))
}

/// What planning needs from a run's options and its domain.
pub fn plan_options(domain: &dyn Domain, options: &RunOptions) -> PlanOptions {
    PlanOptions {
        profile: options.profile.clone(),
        include_tags: options.include_tags.clone(),
        exclude_tags: options.exclude_tags.clone(),
        target_url: options.target_url.clone(),
        allow_hosts: options.allow_hosts.clone(),
        target_command: options.target_command.clone(),
        catalog_variables: domain.catalog_variables(),
        extra_metrics: extra_metrics(),
        switches: options.switches.clone(),
        custom_tasks: Vec::new(),
        shard: options.shard,
        judging_only: false,
        capacity: options.capacity,
        metrics_out: options.metrics_out.clone(),
        metrics_labels: options.metrics_labels.clone(),
    }
}

/// Runs one suite file.
pub async fn run_suite(
    domain: &dyn Domain,
    path: &Path,
    options: &RunOptions,
) -> Result<SuiteRun, RunError> {
    let plan = plan(domain, path, options)?;
    if !plan.runs_in_profile() {
        return Err(RunError::NotInProfile {
            suite: plan.name.clone(),
            only: plan.only_profiles.clone(),
        });
    }
    let suite = crate::builder::BuiltSuite {
        plan,
        custom_tasks: Default::default(),
    };
    Ok(run_plan(domain, suite, options).await?)
}

/// Runs a validated suite, a file's or one built in Rust with its custom
/// tasks: the four phases (stack, probes, thresholds and reports alike),
/// the stack stopped on every path.
pub async fn run_plan(
    domain: &dyn Domain,
    suite: crate::builder::BuiltSuite,
    options: &RunOptions,
) -> anyhow::Result<SuiteRun> {
    let crate::builder::BuiltSuite { plan, custom_tasks } = suite;
    if !plan.browsers.is_empty() {
        // Before a stack is started and seeded for nothing.
        crate::browser::driver::preflight()?;
    }
    if let (Some(barrier), Some(shard)) = (&options.barrier, plan.shard) {
        barrier::refuse_rejoin(barrier, shard.shard)?;
    }
    let dir = run_dir(&options.output_root, &plan.name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let infra = infra_config(&plan, options)?;
    let mut redactor = known_secrets(&plan, &infra)?;
    let stack = if needs_stack(&plan, &infra) {
        Some(Stack::start(&infra).await.context("starting the stack")?)
    } else {
        None
    };
    // A stack the harness starts has its own throwaway credentials (the
    // native and container stacks' password is the word `ahsp`, which
    // would blank every table name and path); a visited stack's are the
    // user's.
    if let Some(stack) = stack.as_ref().filter(|stack| !stack.manages_services()) {
        for (_, url) in stack.urls().env() {
            redactor.url(url);
        }
    }
    // From here an interrupt stops the load and the reports are still
    // written; only a third one quits at once.
    let mut interrupts = InterruptListener::new();
    let outcome = prepare_measure_judge(
        domain,
        &plan,
        options,
        RunFolder {
            dir: &dir,
            redactor: &mut redactor,
            custom_tasks,
        },
        stack.as_ref(),
        &infra,
        &mut interrupts,
    )
    .await;
    if let Some(stack) = stack {
        stack.stop().await.context("stopping the stack")?;
    }
    let outcome = outcome.and_then(|(mut report, target_log)| {
        if redactor.too_short > 0 {
            report.notes.push(format!(
                "{} secret value(s) shorter than 4 characters could not be redacted from the reports",
                redactor.too_short
            ));
        }
        write_reports(&report, &plan.name, &dir, options.print_summary, &redactor)?;
        Ok((report, target_log))
    });
    // Whatever the outcome, no file of the run keeps a secret: the reports
    // just written, the service logs and the target's output.
    redactor
        .sweep_except(&dir, &[shard::SHARD_FILE])
        .with_context(|| format!("redacting {}", dir.display()))?;
    let (report, target_log) = outcome?;
    drop(interrupts);
    Ok(SuiteRun {
        report,
        dir,
        target_log,
        gate: plan.gate.clone(),
    })
}

/// The secrets a run knows before it starts: passwords in the target's and
/// the external stack's URLs, values of the tasks' sensitive headers and of
/// the target's secret-looking environment, and the suite's own patterns.
fn known_secrets(plan: &Plan, infra: &InfraConfig) -> anyhow::Result<crate::redact::Redactor> {
    let mut redactor = crate::redact::Redactor::default();
    let external = &infra.external;
    for url in [
        &external.database_url,
        &external.pgbouncer_url,
        &external.pgbouncer_admin_url,
        &external.redis_url,
    ]
    .into_iter()
    .flatten()
    {
        redactor.url(url);
    }
    match &plan.target {
        TargetPlan::Url { url } => redactor.url(url.expose_secret()),
        TargetPlan::Command { env, .. } => {
            let secret_name = regex::Regex::new(r"(?i)secret|password|passwd|token|key|credential")
                .expect("a valid pattern");
            for (name, value) in env {
                if secret_name.is_match(name) {
                    redactor.secret(value);
                }
            }
        }
        TargetPlan::Embedded { .. } => {}
    }
    for task in &plan.tasks {
        if let crate::suite::plan::TaskKind::Http(http) = &task.kind {
            for (name, value) in &http.headers {
                if crate::redact::SENSITIVE_HEADERS.contains(&name.as_str()) {
                    for segment in &value.segments {
                        if let crate::suite::template::Segment::Literal(text) = segment {
                            redactor.secret(text.trim());
                        }
                    }
                }
            }
        }
    }
    // A pool from a file or the environment is known now; the catalog's
    // users are added when the data is (`prepare_measure_judge`).
    if let Some(auth) = &plan.auth
        && let crate::suite::plan::UserPool::Fixed(users) = &auth.users
    {
        for user in users {
            redactor.secret(user.password.expose());
        }
    }
    for pattern in &plan.secret_patterns {
        redactor
            .pattern(pattern)
            .with_context(|| format!("`[secrets] patterns`: {pattern}"))?;
    }
    Ok(redactor)
}

/// Where a run writes, and the secrets nothing it writes may hold (the
/// phases add those they learn, such as the user pool's passwords).
struct RunFolder<'a> {
    dir: &'a Path,
    redactor: &'a mut crate::redact::Redactor,
    /// A built suite's tasks written in Rust, for the engine.
    custom_tasks: crate::engine::task::CustomTasks,
}

async fn prepare_measure_judge(
    domain: &dyn Domain,
    plan: &Plan,
    options: &RunOptions,
    folder: RunFolder<'_>,
    stack: Option<&Stack>,
    infra: &InfraConfig,
    interrupts: &mut InterruptListener,
) -> anyhow::Result<(RunReport, Option<PathBuf>)> {
    let RunFolder {
        dir,
        redactor,
        custom_tasks,
    } = folder;
    // From here the target runs: it is stopped inside `measure`, or dropped
    // (and so stopped) on any early return.
    let prepare::Prepared {
        target,
        mut input,
        before,
    } = prepare::prepare(domain, plan, dir, stack, infra, redactor, custom_tasks).await?;
    for user in &input.users {
        redactor.secret(user.password.expose());
    }
    // Ready: a shard with a barrier waits for the others here, and every
    // shard starts at the instant they agree on.
    let agreed;
    let plan = match (&options.barrier, plan.shard) {
        (Some(barrier), Some(shard)) => {
            let me = barrier::Ready::now(
                shard.shard,
                &shard_plan_id(plan, options)?,
                input.base_url.to_string().trim_end_matches('/'),
                options.run_id.as_deref(),
            );
            let joined = barrier::join(barrier, me, interrupts).await?;
            if options.progress {
                eprintln!(
                    "shard {}: every shard ready after {:.1} s (the last was {}), starting together",
                    shard.shard,
                    joined.waited.as_secs_f64(),
                    joined.last
                );
            }
            agreed = Plan {
                shard: Some(crate::suite::plan::ShardPlan {
                    start_at_unix_ms: Some(joined.start_at_unix_ms),
                    ..shard
                }),
                ..plan.clone()
            };
            input.plan = std::sync::Arc::new(agreed.clone());
            &agreed
        }
        _ => plan,
    };
    if let Some(shard) = plan.shard {
        let now = crate::engine::unix_ms(SystemTime::now());
        let lasts = plan.load.executor.duration() + plan.load.graceful_stop + shard::RESULT_MARGIN;
        shard::Begun {
            shard: shard.shard,
            run_id: options.run_id.clone(),
            start_at_unix_ms: shard.start_at_unix_ms,
            due_unix_ms: Some(
                shard.start_at_unix_ms.unwrap_or(now).max(now) + lasts.as_millis() as u64,
            ),
        }
        .write(dir)?;
    }
    let target_log = target.log.clone();
    let mut measured = measure::measure(
        plan,
        target,
        input,
        stack,
        measure::Folder {
            dir,
            redactor: std::sync::Arc::new(redactor.clone()),
        },
        measure::Watchers {
            progress: options.progress,
            run_id: options.run_id.clone().unwrap_or_else(|| {
                dir.file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
            }),
            page: options.live,
        },
        interrupts,
    )
    .await?;
    if let Some(shard) = plan.shard {
        let mut result = shard_result(plan, options, shard.shard, &mut measured, &before)?;
        result.redact(redactor);
        result.write(dir)?;
    }
    let report = judge::judge(plan, infra, stack, before, measured).await?;
    Ok((report, target_log))
}

/// What a shard hands to the merge: its seconds whole, the probes if it
/// owns them, and the suite it ran.
fn shard_result(
    plan: &Plan,
    options: &RunOptions,
    shard: crate::suite::plan::Shard,
    measured: &mut measure::Measured,
    before: &prepare::Before,
) -> anyhow::Result<shard::ShardResult> {
    let path = plan
        .path
        .as_ref()
        .context("a sharded run needs a suite file (the merge plans it again)")?;
    let summary = &measured.output.summary;
    let include = options.include_tags.clone();
    let exclude = options.exclude_tags.clone();
    let start_at_unix_ms = plan.shard.and_then(|shard| shard.start_at_unix_ms);
    let started_unix_ms = measured.output.started_unix_ms;
    Ok(shard::ShardResult {
        schema: shard::SCHEMA.to_owned(),
        harness_version: shard::build().to_owned(),
        shard,
        plan_id: shard_plan_id(plan, options)?,
        run_id: options.run_id.clone(),
        start: options
            .barrier
            .as_ref()
            .map_or(shard::StartedBy::Clock, |_| shard::StartedBy::Barrier),
        suite: plan.name.clone(),
        profile: plan.profile.clone(),
        suite_path: std::path::absolute(path)
            .unwrap_or_else(|_| path.clone())
            .display()
            .to_string(),
        include_tags: include,
        exclude_tags: exclude,
        target: summary.target.clone(),
        start_at_unix_ms,
        late_ms: start_at_unix_ms.map_or(0, |at| started_unix_ms.saturating_sub(at)),
        aborted: measured.output.aborted,
        started_at: summary.started_at.clone(),
        started_unix_ms,
        warm_up_seconds: summary.warm_up_seconds,
        measured_seconds: summary.measured_seconds,
        max_users: summary.max_users,
        selection: summary.selection.clone(),
        endpoints: plan.endpoints.clone(),
        seconds: std::mem::take(&mut measured.output.seconds),
        probes: shard.owns_probes().then(|| measured.probes.clone()),
        notes: before.notes.clone(),
        integrity_before: before
            .snapshots
            .iter()
            .map(|(task, _, snapshot)| (task.clone(), snapshot.clone()))
            .collect(),
        writes: measured.output.writes.clone(),
    })
}

/// What the shards of one run share: the suite file's text, the profile
/// and the tag selection, hashed.
fn shard_plan_id(plan: &Plan, options: &RunOptions) -> anyhow::Result<String> {
    let path = plan
        .path
        .as_ref()
        .context("a sharded run needs a suite file (the merge plans it again)")?;
    let source =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(shard::plan_id(
        &source,
        &plan.profile,
        &options.include_tags,
        &options.exclude_tags,
    ))
}

/// The suite's infrastructure settings, the environment and the command line over them.
fn infra_config(plan: &Plan, options: &RunOptions) -> anyhow::Result<InfraConfig> {
    let mut infra = plan.infra.clone();
    infra.apply_env()?;
    if let Some(choice) = options.infra {
        infra.provider = choice;
    }
    Ok(infra)
}

/// A target the harness starts needs a stack; a URL target needs one only
/// when the user names the stack behind it (to probe and check it).
fn needs_stack(plan: &Plan, infra: &InfraConfig) -> bool {
    match &plan.target {
        TargetPlan::Embedded { .. } | TargetPlan::Command { .. } => true,
        TargetPlan::Url { .. } => infra.names_existing_stack(),
    }
}

/// Every sink, in the run's folder (and the terminal when asked).
fn write_reports(
    report: &RunReport,
    suite: &str,
    dir: &Path,
    print_summary: bool,
    redactor: &crate::redact::Redactor,
) -> anyhow::Result<()> {
    let mut reporters: Vec<Box<dyn Reporter>> = vec![
        Box::new(JsonReporter {
            path: dir.join("result.json"),
        }),
        Box::new(LocustCsvReporter {
            dir: dir.to_path_buf(),
            prefix: suite.to_owned(),
        }),
        Box::new(crate::report::html::HtmlReporter {
            path: dir.join("report.html"),
        }),
        Box::new(crate::report::markdown::MarkdownReporter {
            path: dir.join("summary.md"),
        }),
        Box::new(crate::report::junit::JunitReporter {
            path: dir.join("junit.xml"),
        }),
    ];
    if print_summary {
        reporters.push(Box::new(TerminalReporter {
            redactor: redactor.clone(),
        }));
    }
    for reporter in &mut reporters {
        reporter.finished(report)?;
    }
    Ok(())
}

fn run_dir(root: &Path, suite: &str) -> PathBuf {
    let stamp = humantime::format_rfc3339_seconds(SystemTime::now())
        .to_string()
        .replace([':', '-'], "")
        .replace('T', "-")
        .replace('Z', "");
    root.join(format!("{stamp}-{suite}"))
}
