//! One suite, end to end: validate, provision, seed, start the target, run
//! the load, judge, report — and leave nothing behind.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context as _;
use harness::catalog::{Catalog, Choice, Scope};
use harness::engine::vu::EngineUser;
use harness::engine::{self, EngineInput, LiveStatus};
use harness::infra::{InfraConfig, Provider, ProviderChoice, Stack};
use harness::report::json::JsonReporter;
use harness::report::locust::LocustCsvReporter;
use harness::report::progress::ProgressReporter;
use harness::report::terminal::TerminalReporter;
use harness::report::{InfraReport, Reporter, RunReport};
use harness::suite::diagnostic::SuiteErrors;
use harness::suite::plan::{Plan, PlanOptions, TargetPlan, UserPool};
use harness::verdict::{self, ThresholdResult};

use crate::target::{EmbeddedCommand, RunningTarget};
use harness::infra::ServiceLocation;
use harness::probe::logs::{LogCapture, LogSource};
use harness::probe::{ProbeTargets, Sampler};
use std::time::Instant;

/// Choices for a run, from the command line or a test.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub profile: Option<String>,
    pub include_tags: Vec<String>,
    pub exclude_tags: Vec<String>,
    pub target_url: Option<String>,
    pub infra: Option<ProviderChoice>,
    pub switches: Vec<String>,
    /// Runs go to `<output_root>/<timestamp>-<suite>/`.
    pub output_root: PathBuf,
    /// How to start the embedded reference service.
    pub embedded: EmbeddedCommand,
    pub progress: bool,
    pub print_summary: bool,
}

impl RunOptions {
    /// A quiet run of every task under each suite's own settings, the
    /// embedded service started by `embedded`: what tests start from.
    pub fn quiet(output_root: PathBuf, embedded: EmbeddedCommand) -> RunOptions {
        RunOptions {
            profile: None,
            include_tags: Vec::new(),
            exclude_tags: Vec::new(),
            target_url: None,
            infra: None,
            switches: Vec::new(),
            output_root,
            embedded,
            progress: false,
            print_summary: false,
        }
    }
}

/// A finished run.
#[derive(Debug, Clone)]
pub struct SuiteRun {
    pub report: RunReport,
    pub dir: PathBuf,
    /// The target's output, when the runner started it.
    pub target_log: Option<PathBuf>,
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

/// Variables the AHSP catalog offers, known before seeding.
pub fn catalog_variables() -> BTreeSet<String> {
    [
        "project_id",
        "pekerjaan_id",
        "harga_item_id",
        "sub_klasifikasi_id",
        "template_id",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect()
}

/// Named values beside the engine's that thresholds may use.
pub fn extra_metrics() -> BTreeSet<String> {
    let mut names: BTreeSet<String> = harness::probe::metric_names(&harness::probe::SERVICE_NAMES)
        .into_iter()
        .collect();
    names.extend(harness::integrity::METRICS.iter().map(|m| m.to_string()));
    names.extend(harness::correctness::METRICS.iter().map(|m| m.to_string()));
    names.extend(harness::coverage::metric_names());
    names
}

/// How often each task runs alone to measure its queries per request.
const BUDGET_REPETITIONS: u32 = 5;

/// Statements PostgreSQL has run, the harness's own left out.
async fn statement_count(db: &harness::db::Db) -> anyhow::Result<f64> {
    use sqlx::Row as _;
    let sql = format!(
        "SELECT coalesce(sum(calls), 0)::text FROM pg_stat_statements WHERE {}",
        harness::probe::OWN_STATEMENTS
    );
    let row = sqlx::Executor::fetch_one(db.pool(), sql.as_str()).await?;
    Ok(row.try_get_unchecked::<String, _>(0)?.parse()?)
}

/// Plans a suite with the options of a run.
pub fn plan(path: &Path, options: &RunOptions) -> Result<Plan, SuiteErrors> {
    let plan_options = PlanOptions {
        profile: options.profile.clone(),
        include_tags: options.include_tags.clone(),
        exclude_tags: options.exclude_tags.clone(),
        target_url: options.target_url.clone(),
        catalog_variables: catalog_variables(),
        extra_metrics: extra_metrics(),
        switches: options.switches.clone(),
        custom_tasks: Vec::new(),
    };
    Plan::from_file(path, &plan_options)
}

/// Runs one suite file.
pub async fn run_suite(path: &Path, options: &RunOptions) -> Result<SuiteRun, RunError> {
    let plan = plan(path, options)?;
    if !plan.runs_in_profile() {
        return Err(RunError::NotInProfile {
            suite: plan.name.clone(),
            only: plan.only_profiles.clone(),
        });
    }
    Ok(run_plan(plan, options).await?)
}

/// Runs a validated plan.
pub async fn run_plan(plan: Plan, options: &RunOptions) -> anyhow::Result<SuiteRun> {
    let dir = run_dir(&options.output_root, &plan.name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut infra = plan.infra.clone();
    infra.apply_env()?;
    if let Some(choice) = options.infra {
        infra.provider = choice;
    }
    let needs_stack = match &plan.target {
        TargetPlan::Embedded { .. } | TargetPlan::Command { .. } => true,
        TargetPlan::Url { .. } => infra.provider == ProviderChoice::External,
    };
    let stack = if needs_stack {
        Some(Stack::start(&infra).await.context("starting the stack")?)
    } else {
        None
    };
    let outcome = run_on_stack(&plan, options, &dir, stack.as_ref(), &infra).await;
    if let Some(stack) = stack {
        stack.stop().await.context("stopping the stack")?;
    }
    let (report, target_log) = outcome?;
    let mut reporters: Vec<Box<dyn Reporter>> = vec![
        Box::new(JsonReporter {
            path: dir.join("result.json"),
        }),
        Box::new(LocustCsvReporter {
            dir: dir.clone(),
            prefix: plan.name.clone(),
        }),
        Box::new(harness::report::html::HtmlReporter {
            path: dir.join("report.html"),
        }),
        Box::new(harness::report::markdown::MarkdownReporter {
            path: dir.join("summary.md"),
        }),
        Box::new(harness::report::junit::JunitReporter {
            path: dir.join("junit.xml"),
        }),
    ];
    if options.print_summary {
        reporters.push(Box::new(TerminalReporter));
    }
    for reporter in &mut reporters {
        reporter.finished(&report)?;
    }
    Ok(SuiteRun {
        report,
        dir,
        target_log,
    })
}

async fn run_on_stack(
    plan: &Plan,
    options: &RunOptions,
    dir: &Path,
    stack: Option<&Stack>,
    infra: &InfraConfig,
) -> anyhow::Result<(RunReport, Option<PathBuf>)> {
    let mut notes = Vec::new();
    // Data: the set the plan says to seed (the embedded target always has one).
    let seed_profile = plan.data_set.clone();
    let mut catalog = Catalog::default();
    if let (Some(profile), Some(stack)) = (&seed_profile, stack) {
        let options = fixtures::SeedOptions {
            profile: profile.parse().map_err(|e| anyhow::anyhow!("{e}"))?,
            seed: plan.data_seed,
            ..fixtures::SeedOptions::default()
        };
        let outcome = fixtures::seed(&stack.urls().database_url, &options)
            .await
            .context("seeding")?;
        tracing::info!(
            rows = outcome.total_rows(),
            seconds = outcome.total_seconds,
            "seeded"
        );
        catalog = outcome.catalog;
    }
    if !plan.data_sql.is_empty() {
        let stack = stack.context(
            "`data.sql` needs a database: run with the external provider and DATABASE_URL",
        )?;
        catalog.global = sql_variables(&stack.urls().database_url, &plan.data_sql).await?;
    }

    let target = match &plan.target {
        TargetPlan::Embedded { switches } => {
            let stack = stack.context("the embedded target needs a stack")?;
            RunningTarget::embedded(&options.embedded, stack.urls(), switches, dir).await?
        }
        TargetPlan::Command {
            program,
            args,
            ready_path,
            env,
        } => {
            RunningTarget::command(program, args, env, ready_path, stack.map(Stack::urls), dir)
                .await?
        }
        TargetPlan::Url { url } => RunningTarget::external(url),
    };

    // What is in effect must be what the suite asked for.
    let mut effective_config = None;
    if let Some(stack) = stack {
        let effective = match harness::probe::config::read(stack.urls(), infra).await {
            Ok(effective) => effective,
            Err(error) => {
                target.stop().await;
                return Err(error.context("reading back the effective configuration"));
            }
        };
        let mismatches: Vec<String> = effective
            .mismatches()
            .iter()
            .map(|e| {
                format!(
                    "{} {}: asked {}, in effect {}",
                    e.service, e.setting, e.asked, e.effective
                )
            })
            .collect();
        if !mismatches.is_empty() {
            if stack.provider() == Provider::External {
                notes.push(format!(
                    "the external stack differs from the suite's settings: {}",
                    mismatches.join("; ")
                ));
            } else {
                target.stop().await;
                anyhow::bail!(
                    "the stack does not run with the suite's settings:\n  {}",
                    mismatches.join("\n  ")
                );
            }
        }
        effective_config = Some(effective);
    }
    let mut processes = match stack {
        Some(stack) => service_processes(stack).await,
        None => Vec::new(),
    };
    if let Some(pid) = target.pid {
        processes.push(("app".to_owned(), pid));
    }
    let users = engine_users(plan, &catalog)?;
    let input = EngineInput {
        plan: Arc::new(plan.clone()),
        base_url: target.base_url.clone(),
        users,
        global: Arc::new(catalog.global.clone()),
        seed: plan.data_seed,
        custom_tasks: Default::default(),
    };

    // Queries per request, each task alone, before the load and its probes.
    let mut query_budgets = Vec::new();
    let direct = match stack {
        Some(stack) => Some(harness::db::Db::connect(&stack.urls().database_url, 2).await?),
        None => None,
    };
    if let Some(db) = &direct
        && infra.postgres.loads_pg_stat_statements()
        && !matches!(plan.target, TargetPlan::Url { .. })
    {
        match engine::isolated::measure_each(input.clone(), BUDGET_REPETITIONS, || {
            statement_count(db)
        })
        .await
        {
            Ok(measures) => query_budgets = measures,
            Err(error) => notes.push(format!("queries per request not measured: {error:#}")),
        }
    }
    // The rows the suite writes, before the load.
    let mut snapshots = Vec::new();
    if let Some(db) = &direct {
        for task in &plan.tasks {
            if let harness::suite::plan::TaskKind::Http(http) = &task.kind
                && let Some(spec) = &http.writes
            {
                snapshots.push((
                    task.name.clone(),
                    spec.clone(),
                    harness::integrity::snapshot(db, spec).await?,
                ));
            }
        }
    }
    let inventory = match &plan.target {
        TargetPlan::Embedded { .. } => harness::coverage::fetch_inventory(&target.base_url)
            .await
            .ok(),
        _ => None,
    };

    let logs = LogCapture::start(log_sources(stack, &target, dir), dir, Instant::now())?;
    let sampler = Sampler::start(
        ProbeTargets {
            urls: stack.map(|s| s.urls().clone()),
            processes,
        },
        Instant::now(),
    );

    let (live_sender, mut live_receiver) = tokio::sync::watch::channel(LiveStatus::default());
    let progress_task = options.progress.then(|| {
        let label = plan.name.clone();
        tokio::spawn(async move {
            let mut progress = ProgressReporter::new(&label);
            while live_receiver.changed().await.is_ok() {
                let status = live_receiver.borrow().clone();
                progress.progress(&status);
            }
            progress.clear();
        })
    });
    let abort = abort_check(plan);
    let result = engine::run(input, Some(live_sender), abort).await;
    if let Some(task) = progress_task {
        let _ = task.await;
    }
    let probes = sampler.stop().await;
    let target_log = target.log.clone();
    target.stop().await;
    let log_files = logs.stop().await;
    let log_signatures = harness::probe::logs::scan(&log_files);
    let mut output = result?;
    output
        .summary
        .extra
        .extend(probes.values.iter().map(|(k, v)| (k.clone(), *v)));
    if output.aborted {
        notes.push("the run was aborted early by an abort-on-fail threshold".to_owned());
    }
    for measure in &query_budgets {
        output.summary.extra.insert(
            harness::suite::metric::Metric::queries_per_request_key(&measure.task),
            measure.per_request,
        );
    }
    let mut integrity = None;
    if let Some(db) = &direct
        && !snapshots.is_empty()
    {
        let mut checked = harness::integrity::IntegrityReport::default();
        for (task, spec, before) in &snapshots {
            let acked: Vec<_> = output
                .writes
                .iter()
                .filter(|w| &w.task == task)
                .cloned()
                .collect();
            harness::integrity::check(db, spec, before, &acked, &mut checked).await?;
        }
        output.summary.extra.extend(checked.values());
        integrity = Some(checked);
    }
    let mut correctness = None;
    if let (Some(db), false) = (&direct, output.truths.is_empty()) {
        let checked = harness::correctness::check(db, &output.truths).await?;
        output.summary.extra.extend(checked.values());
        correctness = Some(checked);
    }
    if let Some(db) = direct {
        db.close().await;
    }
    let coverage = inventory.map(|routes| {
        let endpoints: Vec<_> = output
            .summary
            .endpoints
            .iter()
            .chain(&output.summary.warm_up)
            .collect();
        let coverage = harness::coverage::CoverageReport::compute(&routes, &endpoints);
        output.summary.extra.extend(coverage.values());
        coverage
    });
    let mut thresholds = verdict::evaluate(&output.summary, &plan.thresholds);
    thresholds.push(tasks_ran(&output.summary));
    let mut report = RunReport::new(output.summary, thresholds);
    report.notes = notes;
    report.probes = Some(probes);
    report.effective_config = effective_config;
    report.log_signatures = log_signatures;
    report.query_budgets = query_budgets;
    report.integrity = integrity;
    report.correctness = correctness;
    report.coverage = coverage;
    harness::diagnosis::diagnose(
        &mut report,
        &harness::diagnosis::Context {
            pool_size: Some(infra.pgbouncer.default_pool_size.get()),
            query_wait_timeout: Some(infra.pgbouncer.query_wait_timeout.as_secs_f64()),
        },
    );
    if let Some(stack) = stack {
        report.infra = Some(InfraReport {
            provider: stack.provider().to_string(),
            time_to_ready_seconds: stack.time_to_ready().as_secs_f64(),
            services: stack.services().to_vec(),
        });
    }
    if stack.is_some_and(|s| s.provider() == Provider::External) {
        report
            .notes
            .push("the stack is external: nothing was started or seeded by the harness".into());
    }
    Ok((report, target_log))
}

/// A run that executes no task fails: the history's `--tags api,page` ran nothing useful and passed.
fn tasks_ran(summary: &harness::metrics::RunSummary) -> ThresholdResult {
    let requests: u64 = summary
        .endpoints
        .iter()
        .filter(|e| !e.meta.is_auth_flow())
        .map(|e| e.requests)
        .sum();
    ThresholdResult {
        source: "tasks.executed: count > 0".to_owned(),
        metric: harness::suite::metric::Metric::TasksExecuted.to_string(),
        passed: requests > 0,
        observed: Some(requests as f64),
        observed_text: requests.to_string(),
        detail: if requests > 0 {
            String::new()
        } else {
            format!(
                "no task request was sent ({} skipped for want of data, {} logins of {} succeeded)",
                summary.counters.skipped,
                summary.counters.login_successes,
                summary.counters.login_attempts
            )
        },
        abort_on_fail: false,
        diagnosis: Vec::new(),
    }
}

fn abort_check(plan: &Plan) -> Option<engine::AbortCheck> {
    let thresholds: Vec<_> = plan
        .thresholds
        .iter()
        .filter(|t| t.abort_on_fail)
        .cloned()
        .collect();
    if thresholds.is_empty() {
        return None;
    }
    let endpoints = plan.endpoints.clone();
    let warm_up = plan.load.warm_up;
    Some(Box::new(move |aggregator, elapsed| {
        // Judge only with some measured data behind the verdict.
        if elapsed < warm_up + std::time::Duration::from_secs(5) {
            return false;
        }
        let header = harness::metrics::summary::RunHeader {
            suite: String::new(),
            profile: String::new(),
            target: String::new(),
            started_at: String::new(),
            warm_up_seconds: warm_up.as_secs_f64(),
            measured_seconds: (elapsed - warm_up).as_secs_f64(),
            max_users: 0,
            selection: Default::default(),
        };
        let summary = harness::metrics::RunSummary::build(
            header,
            &endpoints,
            aggregator.warm_up(),
            aggregator.measured(),
            Vec::new(),
        );
        verdict::evaluate(&summary, &thresholds)
            .iter()
            .any(|r| !r.passed && r.observed.is_some())
    }))
}

fn engine_users(plan: &Plan, catalog: &Catalog) -> anyhow::Result<Vec<EngineUser>> {
    let from_catalog = |take: usize| -> Vec<EngineUser> {
        catalog
            .users
            .iter()
            .take(take)
            .map(|u| EngineUser {
                login: u.login.clone(),
                password: u.password.clone(),
                scope: Arc::new(u.scope.clone()),
            })
            .collect()
    };
    let Some(auth) = &plan.auth else {
        // Without a login, virtual users still draw variables from what
        // catalog users can see; nobody logs in.
        return Ok(from_catalog(catalog.users.len()));
    };
    let users: Vec<EngineUser> = match &auth.users {
        UserPool::Catalog { count } => {
            from_catalog(count.map_or(catalog.users.len(), |c| c as usize))
        }
        UserPool::Fixed(list) => list
            .iter()
            .map(|u| EngineUser {
                login: u.login.clone(),
                password: u.password.clone(),
                scope: Arc::new(Scope::default()),
            })
            .collect(),
    };
    anyhow::ensure!(
        !users.is_empty(),
        "the user pool is empty: the catalog has no users (was the data seeded?)"
    );
    if let UserPool::Catalog { count: Some(count) } = auth.users
        && (count as usize) > users.len()
    {
        tracing::warn!(
            asked = count,
            available = users.len(),
            "fewer catalog users than asked; users are shared"
        );
    }
    Ok(users)
}

/// Variables from SQL: the first column of each query's rows. The simple
/// protocol returns every value as text, whatever the column's type.
async fn sql_variables(database_url: &str, queries: &[(String, String)]) -> anyhow::Result<Scope> {
    use sqlx::Row as _;
    let db = harness::db::Db::connect(database_url, 1).await?;
    let mut vars = BTreeMap::new();
    for (name, sql) in queries {
        let rows = sqlx::raw_sql(sql)
            .fetch_all(db.pool())
            .await
            .with_context(|| format!("data.sql.{name}"))?;
        let values: Vec<Choice> = rows
            .iter()
            .filter_map(|row| row.try_get_unchecked::<Option<String>, _>(0).ok().flatten())
            .map(Choice::leaf)
            .collect();
        anyhow::ensure!(!values.is_empty(), "data.sql.{name} returned no rows");
        vars.insert(name.clone(), values);
    }
    db.close().await;
    Ok(Scope { vars })
}

fn run_dir(root: &Path, suite: &str) -> PathBuf {
    let stamp = humantime::format_rfc3339_seconds(SystemTime::now())
        .to_string()
        .replace([':', '-'], "")
        .replace('T', "-")
        .replace('Z', "");
    root.join(format!("{stamp}-{suite}"))
}

/// The root process of each service: a container's main process is a
/// process on this kernel too.
async fn service_processes(stack: &Stack) -> Vec<(String, u32)> {
    let mut processes = Vec::new();
    for service in stack.services() {
        let pid = match &service.location {
            ServiceLocation::Process { pid, .. } => Some(*pid),
            ServiceLocation::Container { id, .. } => match stack.docker() {
                Some(docker) => docker
                    .inspect_container(id, None)
                    .await
                    .ok()
                    .and_then(|c| c.state)
                    .and_then(|s| s.pid)
                    .and_then(|p| u32::try_from(p).ok())
                    .filter(|p| *p > 0),
                None => None,
            },
            ServiceLocation::External => None,
        };
        if let Some(pid) = pid {
            processes.push((service.name.to_string(), pid));
        }
    }
    processes
}

fn log_sources(
    stack: Option<&Stack>,
    target: &RunningTarget,
    dir: &Path,
) -> Vec<(String, LogSource)> {
    let mut sources = Vec::new();
    for service in stack.map(Stack::services).unwrap_or_default() {
        let source = match (&service.location, stack.and_then(Stack::docker)) {
            (ServiceLocation::Container { id, .. }, Some(docker)) => LogSource::Container {
                docker: docker.clone(),
                id: id.clone(),
            },
            (ServiceLocation::Process { log, .. }, _) => LogSource::File(log.clone()),
            _ => continue,
        };
        sources.push((service.name.to_string(), source));
    }
    if let Some(log) = &target.log {
        sources.push(("app".to_owned(), LogSource::File(log.clone())));
        sources.push((
            "app-stderr".to_owned(),
            LogSource::File(dir.join("target.stderr.log")),
        ));
    }
    sources
}
