//! Validation: a [`SuiteFile`] and the command line become a [`Plan`], or
//! every problem is reported at once with file:line:col. Nothing that can be
//! checked before load is left to be discovered during it.
//!
//! This file holds the plan and the order of the checks; each concern has a
//! file of its own under `plan/`: the [`target`], the [`data`] set, the
//! [`auth`] flow, the [`load`] shape, the [`task`]s and their [`tags`], the
//! ground [`truths`], the [`thresholds`] and the criterion [`benchmarks`]
//! budgets. [`checker`] collects the errors.

mod auth;
mod benchmarks;
mod browser;
mod capacity;
mod checker;
mod data;
mod faults;
mod load;
mod metrics_out;
mod shard;
mod staircase;
mod tags;
mod target;
mod task;
mod thresholds;
mod truths;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use self::checker::Checker;
use super::defaults::Defaults;
use super::diagnostic::{SuiteError, SuiteErrors};
use super::template::BUILTIN_VARIABLES;
use super::{ProfileSpec, SuiteFile};
use crate::infra::InfraConfig;
use crate::metrics::summary::{EndpointMeta, TaskSelection};

pub use self::auth::{AuthPlan, PoolUser, UserPool};
pub use self::browser::{BrowserPagePlan, BrowserPlan, PageExtract};
pub use self::capacity::{CAPACITY_RATE, CapacityPlan};
pub use self::faults::{FaultAction, FaultPlan, FaultSubject};
pub use self::load::{Executor, LoadPlan, RateStage, UserStage};
pub use self::metrics_out::{MetricsOutPlan, RESERVED_LABELS};
pub use self::shard::{START_TOLERANCE, Shard, ShardPlan};
pub use self::staircase::{Stair, Staircase};
pub use self::target::{TargetPlan, is_loopback};
pub use self::task::{
    BodyPlan, ExpectPlan, ExtractHow, ExtractPlan, HttpTask, Method, TaskKind, TaskPlan, TruthPlan,
};
pub use self::thresholds::{BUILTIN_FAILURE_KINDS, ThresholdPlan};

/// Choices from outside the file: the command line and the data set.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// `ci`, `full`, or a profile the file defines; `None` runs the base load.
    pub profile: Option<String>,
    pub include_tags: Vec<String>,
    pub exclude_tags: Vec<String>,
    /// Overrides the file's target with a URL.
    pub target_url: Option<crate::secret::SecretUrl>,
    /// Hosts the load may go to besides loopback and the file's
    /// `allow-hosts` (`--allow-host`).
    pub allow_hosts: Vec<String>,
    /// Overrides the file's target with a command that starts the
    /// application (program and arguments; empty: none).
    pub target_command: Vec<String>,
    /// Variables the data set's catalog offers (known before seeding).
    pub catalog_variables: BTreeSet<String>,
    /// Named values later layers put in the summary (probe peaks, budgets…)
    /// that thresholds may use.
    pub extra_metrics: BTreeSet<String>,
    /// Pathology switches added on the command line.
    pub switches: Vec<String>,
    /// Tasks written in Rust ([`crate::builder::SuiteBuilder::custom_task`]),
    /// planned beside the file's tasks so thresholds and tags may name them;
    /// their implementations go to the engine, not into the plan.
    pub custom_tasks: Vec<CustomTaskDecl>,
    /// One generator's share of a run across several (`--shard I/N`).
    pub shard: Option<ShardPlan>,
    /// Planning a finished run again only to judge it (`perf merge`): the
    /// user pool's file or variable is not read.
    pub judging_only: bool,
    /// A capacity search with the defaults when the file has no `[capacity]`
    /// (`perf --capacity`).
    pub capacity: bool,
    /// Receivers beside the file's `[metrics-out]`, as `KIND=URL`
    /// (`--metrics-out prometheus-rw=URL`).
    pub metrics_out: Vec<String>,
    /// Static labels beside the file's, as `KEY=VALUE` (`--metrics-label`).
    pub metrics_labels: Vec<String>,
}

/// A task written in Rust, as the builder declares it: what the plan needs
/// to select it and to let thresholds and tags name it. Its implementation
/// goes to the engine beside the plan ([`crate::engine::EngineInput::custom_tasks`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomTaskDecl {
    pub name: String,
    /// The label its requests are reported under (Locust's Type column).
    pub method: String,
    pub weight: u32,
    pub tags: Vec<String>,
    pub on_start: bool,
}

/// Profiles every suite accepts, whether or not it overrides anything for them.
pub const STANDARD_PROFILES: [&str; 2] = ["ci", "full"];

/// A validated suite, ready to run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub name: String,
    pub description: String,
    pub path: Option<PathBuf>,
    /// The profile chosen (`base` when none).
    pub profile: String,
    pub target: TargetPlan,
    pub allow_hosts: Vec<String>,
    pub infra: InfraConfig,
    /// The service settings the suite's `[infra]` names itself, as
    /// `service.setting` (`postgres.max-connections`, `redis.maxmemory`,
    /// a `postgres.extra` key as `postgres.work-mem`): on a stack the harness
    /// only visits, these are the settings compared, not the defaults it
    /// applies to stacks it starts.
    pub infra_asked: BTreeSet<String>,
    /// `[secrets] patterns`: checked regular expressions.
    pub secret_patterns: Vec<String>,
    /// The data set to seed (`[data] set`; the embedded target's default
    /// when the suite names none), or `None`: nothing is seeded.
    pub data_set: Option<String>,
    pub data_seed: u64,
    /// This generator's share when the run is split across several.
    pub shard: Option<ShardPlan>,
    /// PBKDF2 iterations of the seeded users' passwords (`None`: the domain's cheap default).
    pub data_password_iterations: Option<u32>,
    /// Variables from SQL, for targets the harness did not seed.
    pub data_sql: Vec<(String, String)>,
    pub auth: Option<AuthPlan>,
    pub load: LoadPlan,
    pub tasks: Vec<TaskPlan>,
    pub endpoints: Vec<EndpointMeta>,
    pub thresholds: Vec<ThresholdPlan>,
    /// Budgets of criterion benchmarks, checked beside the SLAs.
    pub bench_budgets: Vec<crate::bench_budget::BenchBudget>,
    /// What the harness does to the stack during the load.
    pub faults: Vec<FaultPlan>,
    /// Real browsers beside the load.
    pub browsers: Vec<BrowserPlan>,
    pub selection: TaskSelection,
    /// Profiles the suite runs under (all when empty).
    pub only_profiles: Vec<String>,
    /// The figures the baseline gate judges (`[suite] gate`); `None`: all.
    pub gate: Option<Vec<crate::baseline::Metric>>,
    /// A capacity search instead of the load's own shape (`[capacity]`).
    pub capacity: Option<CapacityPlan>,
    /// Where the run streams its series while it runs (`[metrics-out]`).
    pub metrics_out: MetricsOutPlan,
    /// Each request carries a W3C `traceparent` (`[target] trace-context`).
    pub trace_context: bool,
}

impl Plan {
    /// Whether the suite runs under its chosen profile.
    pub fn runs_in_profile(&self) -> bool {
        self.only_profiles.is_empty() || self.only_profiles.contains(&self.profile)
    }
}

impl Plan {
    /// Reads, parses and validates a suite file.
    pub fn from_file(path: &Path, options: &PlanOptions) -> Result<Plan, SuiteErrors> {
        let display = path.display().to_string();
        let source = std::fs::read_to_string(path).map_err(|e| {
            SuiteError::general(&display, format!("cannot read the suite file: {e}"))
        })?;
        let mut plan = Plan::from_source(&source, &display, options)?;
        plan.path = Some(path.to_path_buf());
        Ok(plan)
    }

    /// Parses and validates a suite's text; `path` names it in errors.
    pub fn from_source(
        source: &str,
        path: &str,
        options: &PlanOptions,
    ) -> Result<Plan, SuiteErrors> {
        let file = super::parse(source, path)?;
        plan(file, source, path, options)
    }
}

fn plan(
    file: SuiteFile,
    source: &str,
    path: &str,
    options: &PlanOptions,
) -> Result<Plan, SuiteErrors> {
    let defaults = Defaults::embedded();
    let mut checker = Checker::new(path, source);
    let name = file.suite.name.get_ref().trim().to_owned();
    if name.is_empty() {
        checker.at(file.suite.name.span(), "the suite needs a name");
    }
    let profile = chosen_profile(&mut checker, &file, options.profile.as_deref());
    let (target, allow_hosts) = target::check_target(&mut checker, &file.target, options, defaults);
    if let Err(error) = file.infra.validate() {
        let span = checker.header_span("[infra");
        checker.at(span, format!("invalid infrastructure settings: {error}"));
    }
    let data = data::check_data(
        &mut checker,
        &file.data,
        profile.and_then(|p| p.data.as_ref()),
        &target,
        defaults,
    );
    let tags = tags::choose_tags(&mut checker, &file, options);

    // Variables a template may use: the catalog's only when the run seeds
    // it (a user's own app has no catalog), `[data.sql]`'s, the builtins.
    let mut page_variables: BTreeSet<String> = BTreeSet::new();
    if data.set.is_some() {
        page_variables.extend(options.catalog_variables.iter().cloned());
    } else {
        for variable in &options.catalog_variables {
            checker.unfillable.insert(
                variable.clone(),
                (
                    "it comes from the seeded catalog, and this suite seeds no data (its target is not the reference service)".to_owned(),
                    "list its values with `[data.sql]` (a query on your database), extract it from a response, or seed with `[data] set`".to_owned(),
                ),
            );
        }
    }
    page_variables.extend(data.sql.iter().map(|(name, _)| name.clone()));
    page_variables.extend(BUILTIN_VARIABLES.iter().map(|v| v.to_string()));
    // Tasks may use what other tasks extract; browser users run no task.
    let mut variables = page_variables.clone();
    variables.extend(
        file.tasks
            .iter()
            .flat_map(|t| t.extract.iter().map(|e| e.var.get_ref().clone())),
    );

    let task::CompiledTasks {
        mut tasks,
        mut endpoints,
        mut selection,
    } = task::compile_tasks(&mut checker, &file, options, &tags, &variables);
    truths::attach_truths(
        &mut checker,
        &file.truths,
        &mut tasks,
        &selection,
        &variables,
        defaults,
    );
    let auth = file.auth.as_ref().and_then(|spec| {
        auth::check_auth(&mut checker, spec, &mut endpoints, !options.judging_only)
    });
    let mut load = load::check_load(
        &mut checker,
        &file.load,
        profile.map(|p| &p.load),
        file.target.timeout,
        defaults,
    );
    let thresholds = thresholds::check_thresholds(
        &mut checker,
        &file,
        &endpoints,
        &tags.known,
        &mut selection,
        options,
    );
    let capacity = capacity::check_capacity(
        &mut checker,
        &file,
        options.capacity,
        load.as_mut(),
        &thresholds,
        defaults,
    );
    let bench_budgets = benchmarks::check_benchmarks(&mut checker, &file.benchmarks);
    let browsers = if options.judging_only {
        Vec::new()
    } else {
        for extracted in variables.difference(&page_variables) {
            checker.unfillable.entry(extracted.clone()).or_insert((
                "a task extracts it, and a browser user runs no task".to_owned(),
                "extract it from an earlier page: `extract = { var, css, attribute, regex }` on a [[browser.page]]".to_owned(),
            ));
        }
        browser::check_browsers(&mut checker, &file, &page_variables)
    };
    let faults = match &load {
        Some(load) => faults::check_faults(&mut checker, &file.faults, load.executor.duration()),
        None => Vec::new(),
    };

    let metrics_out = metrics_out::check_metrics_out(&mut checker, &file.metrics_out, options);
    let mut secret_patterns = Vec::new();
    for pattern in &file.secrets.patterns {
        match regex::Regex::new(pattern.get_ref()) {
            Ok(_) => secret_patterns.push(pattern.get_ref().clone()),
            Err(error) => {
                checker.at(
                    pattern.span(),
                    format!("`[secrets] patterns`: not a regular expression: {error}"),
                );
            }
        }
    }

    if let Some(gate) = &file.suite.gate
        && gate.get_ref().is_empty()
    {
        checker.at(
            gate.span(),
            "`[suite] gate` names no figure: the gate would judge nothing and pass every change",
        )
        .hint = Some("name the figures to gate, e.g. `gate = [\"p50\", \"p95\", \"error-rate\"]`, or leave the key out to gate them all".into());
    }
    if let Some(shard) = &options.shard {
        if capacity.is_some() {
            checker.general(format!(
                "shard {}: a capacity search steers one generator's rate step by step, and is not split across shards",
                shard.shard
            ));
        }
        if !matches!(target, TargetPlan::Url { .. }) {
            checker.general(format!(
                "shard {}: a sharded run drives one application that is already running; give the target as a URL",
                shard.shard
            )).hint = Some("N generators each starting the target would load N applications".into());
        }
        if !file.browsers.is_empty() {
            checker.general(format!(
                "shard {}: [[browser]] users run beside one generator's load, not split across shards",
                shard.shard
            )).hint = Some("run the browsers in an unsharded run beside the shards, or drop [[browser]] from the sharded suite".into());
        }
        if data.set.is_some() {
            checker.general(format!(
                "shard {}: the data is seeded once, before the shards start, not by each",
                shard.shard
            )).hint = Some("seed with `cargo xtask seed`, then take variables from `[data.sql]` and users from a file or the environment".into());
        }
    }
    checker.finish()?;
    Ok(Plan {
        name,
        description: file.suite.description.clone(),
        path: None,
        profile: options.profile.clone().unwrap_or_else(|| "base".to_owned()),
        target,
        allow_hosts,
        infra: file.infra.clone(),
        infra_asked: asked_settings(source),
        secret_patterns,
        data_set: data.set,
        data_seed: data.seed,
        shard: options.shard,
        data_password_iterations: data.password_iterations,
        data_sql: data.sql,
        auth,
        load: {
            let mut load = load.expect("errors were reported");
            if let Some(shard) = &options.shard {
                shard.shard.split(&mut load);
            }
            load
        },
        tasks,
        endpoints,
        thresholds,
        bench_budgets,
        faults,
        browsers,
        selection,
        only_profiles: file.suite.only_profiles.clone(),
        gate: file.suite.gate.as_ref().map(|gate| gate.get_ref().clone()),
        capacity,
        metrics_out,
        trace_context: file.target.trace_context,
    })
}

/// The profile chosen on the command line, as the file defines it; `None`
/// for the base load, or a standard profile the file does not override.
fn chosen_profile<'a>(
    checker: &mut Checker<'_>,
    file: &'a SuiteFile,
    profile: Option<&str>,
) -> Option<&'a ProfileSpec> {
    let profile = profile?;
    if let Some(spec) = file.profiles.get(profile) {
        return Some(spec);
    }
    if !STANDARD_PROFILES.contains(&profile) {
        let mut known: Vec<&str> = STANDARD_PROFILES.to_vec();
        known.extend(
            file.profiles
                .keys()
                .map(String::as_str)
                .filter(|p| !STANDARD_PROFILES.contains(p)),
        );
        checker.general(format!("unknown profile `{profile}`")).hint =
            Some(format!("use one of: {}", known.join(", ")));
    }
    None
}

impl Plan {
    /// Tasks that run by weight (not on-start), for sampling.
    pub fn weighted_tasks(&self) -> impl Iterator<Item = &TaskPlan> {
        self.tasks.iter().filter(|t| !t.on_start && t.weight > 0)
    }
}

/// Plans `source` and compares what `describe` says of the plan, or the
/// errors one `line:col message` a line, with `expect`: the check of the
/// parts' tests.
#[cfg(test)]
#[track_caller]
pub(crate) fn check_plan(
    source: &str,
    options: &PlanOptions,
    expect: &str,
    describe: impl Fn(&Plan) -> String,
) -> Option<Plan> {
    match Plan::from_source(source, "t.toml", options) {
        Ok(plan) => {
            assert_eq!(describe(&plan), expect);
            Some(plan)
        }
        Err(errors) => {
            let got: Vec<String> = errors
                .0
                .iter()
                .map(|e| format!("{}:{} {}", e.line, e.column, e.message))
                .collect();
            assert_eq!(got.join("\n"), expect);
            None
        }
    }
}

/// The service settings a suite's `[infra]` writes, in the form
/// [`crate::probe::config::setting_key`] gives them.
fn asked_settings(source: &str) -> BTreeSet<String> {
    let mut asked = BTreeSet::new();
    let Ok(file) = source.parse::<toml::Table>() else {
        return asked;
    };
    let Some(infra) = file.get("infra").and_then(toml::Value::as_table) else {
        return asked;
    };
    for service in ["postgres", "pgbouncer", "redis"] {
        let Some(settings) = infra.get(service).and_then(toml::Value::as_table) else {
            continue;
        };
        for (key, value) in settings {
            match (key.as_str(), value.as_table()) {
                ("extra", Some(extra)) => {
                    for name in extra.keys() {
                        asked.insert(crate::probe::config::setting_key(service, name));
                    }
                }
                _ => {
                    asked.insert(crate::probe::config::setting_key(service, key));
                }
            }
        }
    }
    asked
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_profile_sets_the_password_cost_over_the_file() {
        let suite = r#"
[suite]
name = "auth"
[data]
set = "ci"
password-iterations = 1000000
[profiles.ci.data]
password-iterations = 1000
[load]
users = 1
duration = "1s"
[[task]]
name = "/"
get = "/"
"#;
        let plan = |profile: Option<&str>| {
            let options = PlanOptions {
                profile: profile.map(str::to_owned),
                ..PlanOptions::default()
            };
            Plan::from_source(suite, "auth.toml", &options).unwrap()
        };
        assert_eq!(plan(None).data_password_iterations, Some(1_000_000));
        assert_eq!(plan(Some("ci")).data_password_iterations, Some(1_000));
        let zero = suite.replace("= 1000\n", "= 0\n");
        let options = PlanOptions {
            profile: Some("ci".into()),
            ..PlanOptions::default()
        };
        let errors = Plan::from_source(&zero, "auth.toml", &options).unwrap_err();
        assert!(errors.to_string().contains("at least 1"), "{errors}");
    }

    #[test]
    fn the_settings_a_suite_asks_for_are_its_own_infra_keys() {
        let asked = asked_settings(
            r#"
[suite]
name = "own"
[infra]
provider = "external"
[infra.postgres]
max-connections = 50
[infra.postgres.extra]
work_mem = "8MB"
[infra.redis]
maxmemory-policy = "allkeys-lru"
[infra.external]
database-url = "postgres://app@db/app"
"#,
        );
        let asked: Vec<&str> = asked.iter().map(String::as_str).collect();
        assert_eq!(
            asked,
            [
                "postgres.max-connections",
                "postgres.work-mem",
                "redis.maxmemory-policy"
            ]
        );
    }

    const SUITE: &str = r#"
[suite]
name = "  core  "
description = "the core pages"
only-profiles = ["full"]

[load]
users = 5
duration = "10s"

[profiles.full.load]
users = 50

[profiles.heavy.load]
duration = "1m"

[[task]]
name = "/a/"
get = "/a/"

[[task]]
name = "/b/"
get = "/b/"
on-start = true
"#;

    #[track_caller]
    fn check(profile: Option<&str>, expect: &str) -> Option<Plan> {
        let options = PlanOptions {
            profile: profile.map(str::to_owned),
            ..PlanOptions::default()
        };
        match Plan::from_source(SUITE, "core.toml", &options) {
            Ok(plan) => {
                let summary = format!(
                    "{} {} users={} {}s runs={}",
                    plan.name,
                    plan.profile,
                    plan.load.executor.max_users(),
                    plan.load.executor.duration().as_secs(),
                    plan.runs_in_profile()
                );
                assert_eq!(summary, expect);
                Some(plan)
            }
            Err(errors) => {
                assert_eq!(errors.to_string(), expect);
                None
            }
        }
    }

    #[test]
    fn a_profile_overrides_the_base_load() {
        check(None, "core base users=5 10s runs=false");
        check(Some("full"), "core full users=50 10s runs=true");
        check(Some("heavy"), "core heavy users=5 60s runs=false");
        // A standard profile the file does not override runs the base load.
        check(Some("ci"), "core ci users=5 10s runs=false");
    }

    #[test]
    fn an_unknown_profile_lists_the_known_ones() {
        check(
            Some("fast"),
            "error: core.toml: unknown profile `fast`\n  = hint: use one of: ci, full, heavy",
        );
    }

    #[test]
    fn the_plan_takes_its_defaults_from_the_embedded_file() {
        let plan = check(None, "core base users=5 10s runs=false").unwrap();
        let defaults = Defaults::embedded();
        assert_eq!(plan.data_seed, defaults.data.seed);
        assert_eq!(plan.load.timeout, defaults.target.timeout);
        assert_eq!(plan.load.graceful_stop, Duration::from_secs(10));
        assert_eq!(plan.description, "the core pages");
        assert_eq!(plan.path, None);
        // The on-start task is planned but not weighted.
        assert_eq!(plan.tasks.len(), 2);
        let weighted: Vec<&str> = plan.weighted_tasks().map(|t| t.name.as_str()).collect();
        assert_eq!(weighted, ["/a/"]);
    }

    #[test]
    fn a_suite_names_the_figures_its_gate_judges_and_never_none() {
        use crate::baseline::Metric;
        let gated = SUITE.replace(
            "only-profiles = [\"full\"]",
            "gate = [\"p95\", \"error-rate\"]",
        );
        let plan = Plan::from_source(&gated, "core.toml", &PlanOptions::default()).unwrap();
        assert_eq!(plan.gate, Some(vec![Metric::P95, Metric::ErrorRate]));
        let none = SUITE.replace("only-profiles = [\"full\"]", "gate = []");
        let errors = Plan::from_source(&none, "core.toml", &PlanOptions::default())
            .unwrap_err()
            .to_string();
        assert!(errors.contains("names no figure"), "{errors}");
        let unknown = SUITE.replace("only-profiles = [\"full\"]", "gate = [\"p90\"]");
        let errors = Plan::from_source(&unknown, "core.toml", &PlanOptions::default())
            .unwrap_err()
            .to_string();
        assert!(errors.contains("p90") && errors.contains("p95"), "{errors}");
    }

    #[test]
    fn a_file_is_read_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("core.toml");
        std::fs::write(&path, SUITE).unwrap();
        let plan = Plan::from_file(&path, &PlanOptions::default()).unwrap();
        assert_eq!(plan.path.as_deref(), Some(path.as_path()));
        let missing = Plan::from_file(&dir.path().join("none.toml"), &PlanOptions::default())
            .unwrap_err()
            .to_string();
        assert!(missing.contains("cannot read the suite file"), "{missing}");
    }
}
