//! Validation: a [`SuiteFile`] and the command line become a [`Plan`], or
//! every problem is reported at once with file:line:col. Nothing that can be
//! checked before load is left to be discovered during it.

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use toml::Spanned;

use super::diagnostic::{SuiteError, SuiteErrors};
use super::template::{BUILTIN_VARIABLES, JsonTemplate, Template, TemplateError};
use super::threshold::{Aggregate, Expression, FILTER_KEYS, Selector};
use super::{
    AuthSpec, DataSpec, ExecutorKind, ExtractSpec, LoadSpec, SuiteFile, TagList, TaskSpec,
    ThinkTime, UserSource, WriteSpec,
};
use crate::catalog::Secret;
use crate::infra::InfraConfig;
use crate::metrics::summary::{AUTH_TAG, EndpointMeta, TaskSelection};

/// Choices from outside the file: the command line and the data set.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// `ci`, `full`, or a profile the file defines; `None` runs the base load.
    pub profile: Option<String>,
    pub include_tags: Vec<String>,
    pub exclude_tags: Vec<String>,
    /// Overrides the file's target with a URL.
    pub target_url: Option<String>,
    /// Variables the data set's catalog offers (known before seeding).
    pub catalog_variables: BTreeSet<String>,
    /// Named values later layers put in the summary (probe peaks, budgets…)
    /// that thresholds may use.
    pub extra_metrics: BTreeSet<String>,
    /// Pathology switches added on the command line.
    pub switches: Vec<String>,
    /// Tasks written in Rust ([`super::builder::SuiteBuilder::custom_task`]),
    /// planned beside the file's tasks so thresholds and tags may name them;
    /// their implementations go to the engine, not into the plan.
    pub custom_tasks: Vec<CustomTaskDecl>,
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

/// What the load runs against.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum TargetPlan {
    /// The reference service of this workspace, started by the runner.
    Embedded {
        switches: Vec<String>,
    },
    Url {
        url: String,
    },
    Command {
        program: String,
        args: Vec<String>,
        ready_path: String,
        env: Vec<(String, String)>,
    },
}

/// A user a virtual user logs in as, when not drawn from a catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolUser {
    pub login: String,
    pub password: Secret,
}

/// Where the user pool comes from, resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum UserPool {
    /// The first `count` users of the catalog (all when `None`).
    Catalog {
        count: Option<u32>,
    },
    Fixed(Vec<PoolUser>),
}

/// The login flow, checked.
#[derive(Debug, Clone)]
pub struct AuthPlan {
    pub login_url: Template,
    pub user_field: String,
    pub password_field: String,
    pub csrf_field: Option<String>,
    pub csrf_cookie: Option<String>,
    pub csrf_header: Option<String>,
    pub success_status: u16,
    pub success_location: Option<String>,
    pub success_cookie: Option<String>,
    /// Marker text → failure kind name.
    pub failure_kinds: Vec<(String, Arc<str>)>,
    pub users: UserPool,
    /// Endpoints of the login form (GET) and the login itself (POST).
    pub form_endpoint: usize,
    pub login_endpoint: usize,
}

/// A stage of a closed-model ramp: from `from` users to `to` over `duration`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct UserStage {
    pub from: u32,
    pub to: u32,
    pub duration: Duration,
}

/// A stage of an open-model ramp, in iterations per second.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RateStage {
    pub from: f64,
    pub to: f64,
    pub duration: Duration,
}

/// The executor: one enum, driven by one loop in the engine.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Executor {
    /// Closed model: a number of users over time (ramping-users, constant-users).
    Users { stages: Vec<UserStage> },
    /// Closed model: each user runs a fixed number of iterations.
    Iterations {
        users: u32,
        iterations: u32,
        max_duration: Duration,
    },
    /// Open model: iterations start on a schedule (constant- and ramping-arrival-rate).
    ArrivalRate {
        stages: Vec<RateStage>,
        pre_allocated_users: u32,
        max_users: u32,
    },
}

impl Executor {
    /// How long the schedule lasts (before the graceful stop).
    pub fn duration(&self) -> Duration {
        match self {
            Executor::Users { stages } => stages.iter().map(|s| s.duration).sum(),
            Executor::Iterations { max_duration, .. } => *max_duration,
            Executor::ArrivalRate { stages, .. } => stages.iter().map(|s| s.duration).sum(),
        }
    }

    /// The most virtual users it can have at once.
    pub fn max_users(&self) -> u32 {
        match self {
            Executor::Users { stages } => {
                stages.iter().map(|s| s.from.max(s.to)).max().unwrap_or(0)
            }
            Executor::Iterations { users, .. } => *users,
            Executor::ArrivalRate { max_users, .. } => *max_users,
        }
    }
}

/// The load shape, resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadPlan {
    pub executor: Executor,
    pub think_time: ThinkTime,
    pub warm_up: Duration,
    pub graceful_stop: Duration,
    pub workers: u32,
    pub max_lateness: Duration,
    pub timeout: Duration,
}

/// The HTTP method of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

/// A request body.
#[derive(Debug, Clone)]
pub enum BodyPlan {
    None,
    Form(Vec<(String, Template)>),
    Json(JsonTemplate),
    Raw(Template),
}

/// Checks on a response.
#[derive(Debug, Clone)]
pub struct ExpectPlan {
    /// `None`: any 2xx.
    pub status: Option<Vec<u16>>,
    pub conflict: Vec<u16>,
    pub text: Option<String>,
    pub not_text: Option<String>,
    pub css: Option<(String, scraper::Selector)>,
    pub json_pointer: Option<String>,
}

/// How a value is extracted.
#[derive(Debug, Clone)]
pub enum ExtractHow {
    JsonPointer(String),
    Css {
        selector: scraper::Selector,
        attr: Option<String>,
    },
    Regex(regex::Regex),
}

#[derive(Debug, Clone)]
pub struct ExtractPlan {
    pub var: String,
    pub how: ExtractHow,
    pub all: bool,
}

/// What a task does.
#[derive(Debug, Clone)]
pub enum TaskKind {
    Http(Box<HttpTask>),
    /// Written in Rust with [`super::builder`]; the engine runs the
    /// implementation registered under the task's name.
    Custom,
}

/// A declarative HTTP task.
#[derive(Debug, Clone)]
pub struct HttpTask {
    pub method: Method,
    pub path: Template,
    pub headers: Vec<(http::HeaderName, Template)>,
    pub body: BodyPlan,
    pub csrf: bool,
    pub expect: ExpectPlan,
    pub extract: Vec<ExtractPlan>,
    pub writes: Option<WriteSpec>,
    /// Rendered first, in order, and bound for the rest of the request.
    pub vars: Vec<(String, Template)>,
    /// Ground truths checked on sampled responses.
    pub truths: Vec<TruthPlan>,
}

/// A ground truth for a task's responses.
#[derive(Debug, Clone)]
pub struct TruthPlan {
    pub how: ExtractHow,
    pub sql: Template,
    pub every: u32,
    pub tolerance: f64,
}

/// A task, checked and compiled.
#[derive(Debug, Clone)]
pub struct TaskPlan {
    pub name: String,
    pub endpoint: usize,
    pub weight: u32,
    pub tags: Vec<String>,
    pub on_start: bool,
    pub kind: TaskKind,
}

/// One threshold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThresholdPlan {
    pub selector: Selector,
    pub expression: Expression,
    /// As written: `http.duration{name:/dashboard/}: p(95) < 200ms`.
    pub source: String,
    pub abort_on_fail: bool,
}

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
    /// The data profile to seed, when the suite or its target asks for seeding.
    pub data_profile: Option<String>,
    pub data_seed: u64,
    /// Variables from SQL, for targets the harness did not seed.
    pub data_sql: Vec<(String, String)>,
    pub auth: Option<AuthPlan>,
    pub load: LoadPlan,
    pub tasks: Vec<TaskPlan>,
    pub endpoints: Vec<EndpointMeta>,
    pub thresholds: Vec<ThresholdPlan>,
    /// Budgets of criterion benchmarks, checked beside the SLAs.
    pub bench_budgets: Vec<crate::bench_budget::BenchBudget>,
    pub selection: TaskSelection,
    /// Profiles the suite runs under (all when empty).
    pub only_profiles: Vec<String>,
}

impl Plan {
    /// Whether the suite runs under its chosen profile.
    pub fn runs_in_profile(&self) -> bool {
        self.only_profiles.is_empty() || self.only_profiles.contains(&self.profile)
    }
}

/// Metrics thresholds may use, beside the extra ones later layers add.
pub const BUILTIN_METRICS: [&str; 9] = [
    "queries_per_request",
    "http.duration",
    "http.failed",
    "http.requests",
    "http.conflicts",
    "auth.success",
    "auth.duration",
    "failures",
    "checks",
];

/// Metrics of the engine that are single values.
pub const ENGINE_VALUES: [&str; 2] = ["iterations.dropped", "iterations.completed"];

/// Failure kinds the engine itself reports (besides `http-NNN` and the auth markers).
pub const BUILTIN_FAILURE_KINDS: [&str; 7] = [
    "connection-refused",
    "connection-reset",
    "timeout",
    "check-failed",
    "login-page-returned",
    "csrf-rejected",
    "transport",
];

struct Checker<'a> {
    path: &'a str,
    source: &'a str,
    errors: Vec<SuiteError>,
}

impl Checker<'_> {
    fn at(&mut self, span: Range<usize>, message: impl Into<String>) -> &mut SuiteError {
        self.errors
            .push(SuiteError::at(self.path, self.source, span, message));
        self.errors.last_mut().expect("just pushed")
    }

    fn general(&mut self, message: impl Into<String>) -> &mut SuiteError {
        self.errors.push(SuiteError::general(self.path, message));
        self.errors.last_mut().expect("just pushed")
    }

    /// The span of a table header such as `[load]`, for errors about tables
    /// whose fields carry no span of their own.
    fn header_span(&self, header: &str) -> Range<usize> {
        match self.source.find(header) {
            Some(start) => start..start + header.len(),
            None => 0..0,
        }
    }

    /// A byte position inside a spanned string value, when the source holds
    /// it verbatim between quotes (no escapes); else the value's start.
    fn inside(&self, span: &Range<usize>, value: &str, offset: usize) -> Range<usize> {
        let raw = &self.source[span.clone()];
        for quote in ["\"\"\"", "'''", "\"", "'"] {
            if raw.starts_with(quote)
                && raw.len() >= 2 * quote.len()
                && &raw[quote.len()..raw.len() - quote.len()] == value
            {
                let at = span.start + quote.len() + offset;
                return at..at + 1;
            }
        }
        span.clone()
    }

    fn template(&mut self, text: &Spanned<String>) -> Option<Template> {
        match Template::parse(text.get_ref()) {
            Ok(template) => Some(template),
            Err(TemplateError { offset, message }) => {
                let span = self.inside(&text.span(), text.get_ref(), offset);
                self.at(span, message);
                None
            }
        }
    }

    fn finish(self) -> Result<(), SuiteErrors> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(SuiteErrors(self.errors))
        }
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
    let mut checker = Checker {
        path,
        source,
        errors: Vec::new(),
    };
    let name = file.suite.name.get_ref().trim().to_owned();
    if name.is_empty() {
        checker.at(file.suite.name.span(), "the suite needs a name");
    }

    // Profile: its load and data override the base.
    let profile = options.profile.clone();
    let mut load_spec = file.load.clone();
    let mut data_spec = file.data.clone();
    if let Some(profile) = &profile {
        match file.profiles.get(profile) {
            Some(spec) => {
                load_spec = load_spec.overridden_by(&spec.load);
                if let Some(data) = &spec.data {
                    data_spec = DataSpec {
                        profile: data.profile.clone().or(data_spec.profile),
                        seed: data.seed.or(data_spec.seed),
                        sql: if data.sql.is_empty() {
                            data_spec.sql
                        } else {
                            data.sql.clone()
                        },
                    };
                }
            }
            None if STANDARD_PROFILES.contains(&profile.as_str()) => {}
            None => {
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
        }
    }

    // Target.
    let mut allow_hosts = file.target.allow_hosts.clone();
    let target = match (&options.target_url, &file.target.url, &file.target.command) {
        (Some(url), _, _) => {
            check_target_url(&mut checker, url, None, &allow_hosts);
            TargetPlan::Url {
                url: url.trim_end_matches('/').to_owned(),
            }
        }
        (None, Some(_), Some(command)) => {
            checker.at(
                command.span(),
                "a target has a `url` or a `command`, not both",
            );
            TargetPlan::Embedded {
                switches: Vec::new(),
            }
        }
        (None, Some(url), None) => {
            check_target_url(&mut checker, url.get_ref(), Some(url.span()), &allow_hosts);
            TargetPlan::Url {
                url: url.get_ref().trim_end_matches('/').to_owned(),
            }
        }
        (None, None, Some(command)) => match command.get_ref().split_first() {
            Some((program, args)) => TargetPlan::Command {
                program: program.clone(),
                args: args.to_vec(),
                ready_path: file
                    .target
                    .ready_url
                    .clone()
                    .unwrap_or_else(|| "/".to_owned()),
                env: file
                    .target
                    .env
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            },
            None => {
                checker.at(command.span(), "the target command is empty");
                TargetPlan::Embedded {
                    switches: Vec::new(),
                }
            }
        },
        (None, None, None) => {
            let mut switches = file.target.switches.clone();
            switches.extend(options.switches.iter().cloned());
            TargetPlan::Embedded { switches }
        }
    };
    if !matches!(target, TargetPlan::Embedded { .. })
        && (!file.target.switches.is_empty() || !options.switches.is_empty())
    {
        checker
            .general("pathology switches apply to the embedded reference service only")
            .hint = Some("remove target.switches, or drop target.url/command".into());
    }
    allow_hosts.dedup();

    if let Err(error) = file.infra.validate() {
        let span = checker.header_span("[infra");
        checker.at(span, format!("invalid infrastructure settings: {error}"));
    }

    // Tags: every tag any task carries.
    let known_tags: BTreeSet<String> = file
        .tasks
        .iter()
        .flat_map(|t| t.tags.0.iter().map(|tag| tag.get_ref().clone()))
        .chain(
            options
                .custom_tasks
                .iter()
                .flat_map(|t| t.tags.iter().cloned()),
        )
        .collect();
    let check_tags = |checker: &mut Checker<'_>, list: &TagList| {
        for tag in &list.0 {
            if !known_tags.contains(tag.get_ref()) {
                unknown_tag(checker, Some(tag.span()), tag.get_ref(), &known_tags);
            }
        }
    };
    check_tags(&mut checker, &file.tags.include);
    check_tags(&mut checker, &file.tags.exclude);
    let mut include: Vec<String> = file
        .tags
        .include
        .0
        .iter()
        .map(|t| t.get_ref().clone())
        .collect();
    let mut exclude: Vec<String> = file
        .tags
        .exclude
        .0
        .iter()
        .map(|t| t.get_ref().clone())
        .collect();
    for tag in &options.include_tags {
        if !known_tags.contains(tag) {
            unknown_tag(&mut checker, None, tag, &known_tags);
        }
        include.push(tag.clone());
    }
    for tag in &options.exclude_tags {
        if !known_tags.contains(tag) {
            unknown_tag(&mut checker, None, tag, &known_tags);
        }
        exclude.push(tag.clone());
    }

    // Variables a template may use.
    let extracted: BTreeSet<String> = file
        .tasks
        .iter()
        .flat_map(|t| t.extract.iter().map(|e| e.var.get_ref().clone()))
        .collect();
    let mut variables: BTreeSet<String> = options.catalog_variables.clone();
    variables.extend(data_spec.sql.keys().cloned());
    variables.extend(extracted.iter().cloned());
    variables.extend(BUILTIN_VARIABLES.iter().map(|v| v.to_string()));
    let data_sql: Vec<(String, String)> = data_spec
        .sql
        .iter()
        .map(|(k, v)| (k.clone(), v.get_ref().clone()))
        .collect();

    // Tasks, and the endpoint table (tasks with one name share an endpoint).
    let mut endpoints: Vec<EndpointMeta> = Vec::new();
    let mut tasks = Vec::new();
    let mut selection = TaskSelection::default();
    for task in &file.tasks {
        let tags: Vec<String> = task.tags.0.iter().map(|t| t.get_ref().clone()).collect();
        if let Some(reason) = excluded_by(&tags, &include, &exclude) {
            selection
                .excluded
                .push((task.name.get_ref().clone(), reason));
            continue;
        }
        if let Some(compiled) = compile_task(&mut checker, task, &variables, &mut endpoints) {
            selection.included.push(compiled.name.clone());
            tasks.push(compiled);
        }
    }
    for custom in &options.custom_tasks {
        if let Some(reason) = excluded_by(&custom.tags, &include, &exclude) {
            selection.excluded.push((custom.name.clone(), reason));
            continue;
        }
        if custom.name.trim().is_empty() {
            checker.general("a custom task needs a name");
            continue;
        }
        let endpoint = endpoint_for(&mut endpoints, &custom.name, &custom.method, &custom.tags);
        selection.included.push(custom.name.clone());
        tasks.push(TaskPlan {
            name: custom.name.clone(),
            endpoint,
            weight: custom.weight,
            tags: custom.tags.clone(),
            on_start: custom.on_start,
            kind: TaskKind::Custom,
        });
    }
    if file.tasks.is_empty() && options.custom_tasks.is_empty() {
        checker.general("the suite has no [[task]]").hint = Some("add at least one task".into());
    } else if tasks.iter().all(|t| t.on_start || t.weight == 0) && checker.errors.is_empty() {
        checker
            .general(
                "no task would run: every task is excluded by tags, on-start only, or of weight 0",
            )
            .hint = Some(format!(
            "selected tags: include {include:?}, exclude {exclude:?}"
        ));
    }

    // Ground truths, attached to their tasks.
    for truth in &file.truths {
        let name = truth.task.get_ref();
        let Some(task) = tasks.iter_mut().find(|t| &t.name == name) else {
            if !selection.excluded.iter().any(|(task, _)| task == name) {
                checker.at(truth.task.span(), format!("no task is named `{name}`"));
            }
            continue;
        };
        let extract = ExtractSpec {
            var: truth.task.clone(),
            json: truth.json.clone(),
            css: truth.css.clone(),
            attr: truth.attr.clone(),
            regex: truth.regex.clone(),
            all: false,
        };
        let Some(how) = check_extract(&mut checker, &extract).map(|e| e.how) else {
            continue;
        };
        let Some(sql) = checker.template(&truth.sql) else {
            continue;
        };
        check_variables(&mut checker, &truth.sql, sql.variables(), &variables);
        if let TaskKind::Http(http) = &mut task.kind {
            http.truths.push(TruthPlan {
                how,
                sql,
                every: truth.every.unwrap_or(5).max(1),
                tolerance: truth.tolerance.unwrap_or(0.005),
            });
        }
    }

    // Auth.
    let auth = file
        .auth
        .as_ref()
        .and_then(|spec| check_auth(&mut checker, spec, &mut endpoints));
    if auth.is_none()
        && file.auth.is_none()
        && options.catalog_variables.is_empty()
        && data_sql.is_empty()
    {
        // Nothing to do: a public target needs no login.
    }

    // Load.
    let load = check_load(&mut checker, &load_spec, file.target.timeout);

    // Thresholds.
    let mut failure_kinds: BTreeSet<String> = BUILTIN_FAILURE_KINDS
        .iter()
        .map(|s| s.to_string())
        .collect();
    if let Some(auth) = &file.auth {
        failure_kinds.extend(auth.failure_kinds.keys().cloned());
    }
    let mut thresholds = Vec::new();
    for (key, value) in &file.thresholds {
        let selector = match key.get_ref().parse::<Selector>() {
            Ok(selector) => selector,
            Err(error) => {
                let span = checker.inside(&key.span(), key.get_ref(), error.offset);
                checker.at(span, error.message);
                continue;
            }
        };
        if let Some(name) = selector.filter("name")
            && !endpoints.iter().any(|e| e.name == name)
            && selection.excluded.iter().any(|(task, _)| task == name)
        {
            selection
                .skipped_thresholds
                .push(format!("{} (its task is excluded)", key.get_ref()));
            continue;
        }
        let metric_ok = check_selector(
            &mut checker,
            key,
            &selector,
            &endpoints,
            &known_tags,
            &failure_kinds,
            options,
        );
        for expression_text in &value.get_ref().expressions {
            let span = if expression_text.span().is_empty() {
                value.span()
            } else {
                expression_text.span()
            };
            match expression_text.get_ref().parse::<Expression>() {
                Ok(expression) => {
                    if metric_ok {
                        check_aggregate(&mut checker, span.clone(), &selector, &expression);
                    }
                    thresholds.push(ThresholdPlan {
                        source: format!("{}: {}", selector, expression),
                        selector: selector.clone(),
                        expression,
                        abort_on_fail: value.get_ref().abort_on_fail,
                    });
                }
                Err(error) => {
                    let at = checker.inside(&span, expression_text.get_ref(), error.offset);
                    checker.at(
                        at,
                        format!(
                            "in threshold `{}`: {}",
                            expression_text.get_ref(),
                            error.message
                        ),
                    );
                }
            }
        }
    }

    let mut bench_budgets = Vec::new();
    for (key, value) in &file.benchmarks {
        let benchmark = key.get_ref().trim();
        if benchmark.is_empty() {
            checker.at(
                key.span(),
                "a benchmark budget needs criterion's full id, e.g. \"queries/kurva_s\"",
            );
            continue;
        }
        for rule in value.get_ref().rules() {
            match rule.parse::<crate::bench_budget::BudgetRule>() {
                Ok(parsed) => bench_budgets.push(crate::bench_budget::BenchBudget {
                    benchmark: benchmark.to_owned(),
                    rule: parsed,
                    source: format!("{benchmark}: {}", rule.trim()),
                }),
                Err(message) => {
                    checker.at(
                        value.span(),
                        format!("in the budget of benchmark `{benchmark}`: {message}"),
                    );
                }
            }
        }
    }

    checker.finish()?;
    Ok(Plan {
        name,
        description: file.suite.description.clone(),
        path: None,
        profile: profile.unwrap_or_else(|| "base".to_owned()),
        target,
        allow_hosts,
        infra: file.infra.clone(),
        data_profile: data_spec.profile.clone(),
        data_seed: data_spec.seed.unwrap_or(42),
        data_sql,
        auth,
        load: load.expect("errors were reported"),
        tasks,
        endpoints,
        thresholds,
        bench_budgets,
        selection,
        only_profiles: file.suite.only_profiles.clone(),
    })
}

fn unknown_tag(
    checker: &mut Checker<'_>,
    span: Option<Range<usize>>,
    tag: &str,
    known: &BTreeSet<String>,
) {
    let message = if tag.contains(',') {
        format!("unknown tag `{tag}` (one tag with a comma in it)")
    } else {
        format!("unknown tag `{tag}`")
    };
    let hint = if tag.contains(',') {
        format!(
            "give tags one by one: {}",
            tag.split(',')
                .map(|t| format!("`{}`", t.trim()))
                .collect::<Vec<_>>()
                .join(", ")
        )
    } else {
        format!(
            "tags used by tasks: {}",
            known.iter().cloned().collect::<Vec<_>>().join(", ")
        )
    };
    let error = match span {
        Some(span) => checker.at(span, message),
        None => checker.general(format!("{message} (from the command line)")),
    };
    error.hint = Some(hint);
}

fn excluded_by(tags: &[String], include: &[String], exclude: &[String]) -> Option<String> {
    if let Some(tag) = tags.iter().find(|t| exclude.contains(t)) {
        return Some(format!("tag `{tag}` is excluded"));
    }
    if !include.is_empty() && !tags.iter().any(|t| include.contains(t)) {
        return Some(format!("has none of the included tags {include:?}"));
    }
    None
}

fn check_target_url(
    checker: &mut Checker<'_>,
    url: &str,
    span: Option<Range<usize>>,
    allow_hosts: &[String],
) {
    let report = |checker: &mut Checker<'_>, message: String, hint: Option<String>| {
        let error = match &span {
            Some(span) => checker.at(span.clone(), message),
            None => checker.general(message),
        };
        error.hint = hint;
    };
    match url::Url::parse(url) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {
            let host = parsed
                .host_str()
                .unwrap_or_default()
                .trim_matches(['[', ']'])
                .to_owned();
            if !is_loopback(&host) && !allow_hosts.iter().any(|h| h == &host) {
                report(
                    checker,
                    format!("target host `{host}` is not loopback"),
                    Some(format!(
                        "load goes only to 127.0.0.0/8, ::1, localhost or hosts in target.allow-hosts; add \"{host}\" there if you mean it"
                    )),
                );
            }
        }
        Ok(parsed) => report(
            checker,
            format!(
                "target URL scheme `{}` is not http or https",
                parsed.scheme()
            ),
            None,
        ),
        Err(error) => report(checker, format!("`{url}` is not a URL ({error})"), None),
    }
}

/// Loopback: 127.0.0.0/8, ::1 and localhost.
pub fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn compile_task(
    checker: &mut Checker<'_>,
    task: &TaskSpec,
    variables: &BTreeSet<String>,
    endpoints: &mut Vec<EndpointMeta>,
) -> Option<TaskPlan> {
    let errors_before = checker.errors.len();
    let mut local_vars = Vec::new();
    let mut with_locals = variables.clone();
    for (name, text) in &task.vars {
        if let Some(template) = checker.template(text) {
            check_variables(checker, text, template.variables(), &with_locals);
            local_vars.push((name.clone(), template));
        }
        with_locals.insert(name.clone());
    }
    let variables = &with_locals;
    let name = task.name.get_ref().trim().to_owned();
    if name.is_empty() {
        checker.at(
            task.name.span(),
            "a task needs a name (its requests' grouping key)",
        );
    }
    let methods: Vec<(Method, &Spanned<String>)> = [
        (Method::Get, &task.get),
        (Method::Post, &task.post),
        (Method::Put, &task.put),
        (Method::Patch, &task.patch),
        (Method::Delete, &task.delete),
    ]
    .into_iter()
    .filter_map(|(m, p)| p.as_ref().map(|p| (m, p)))
    .collect();
    let (method, path_text) = match methods.as_slice() {
        [(method, path)] => (*method, *path),
        [] => {
            checker
                .at(task.name.span(), format!("task `{name}` has no request"))
                .hint = Some("give one of get, post, put, patch or delete with a path".into());
            return None;
        }
        [_, (_, second), ..] => {
            checker
                .at(
                    second.span(),
                    format!("task `{name}` has more than one method"),
                )
                .hint = Some("one request per task; split it into two tasks".into());
            return None;
        }
    };
    let path = checker.template(path_text);
    if let Some(path) = &path {
        if !path_text.get_ref().starts_with('/') {
            checker.at(
                path_text.span(),
                "a task's path starts with `/` (the target's base URL is prepended)",
            );
        }
        check_variables(checker, path_text, path.variables(), variables);
    }
    let mut headers = Vec::new();
    for (header, value) in &task.headers {
        let Ok(header_name) = http::HeaderName::from_bytes(header.as_bytes()) else {
            checker.at(value.span(), format!("`{header}` is not a header name"));
            continue;
        };
        if let Some(template) = checker.template(value) {
            check_variables(checker, value, template.variables(), variables);
            headers.push((header_name, template));
        }
    }
    let bodies = [
        task.form.is_some(),
        task.json.is_some(),
        task.body.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if bodies > 1 {
        checker.at(
            task.name.span(),
            format!("task `{name}` has more than one body (form, json, body)"),
        );
    }
    let body = if let Some(form) = &task.form {
        let mut fields = Vec::new();
        for (field, value) in form {
            if let Some(template) = checker.template(value) {
                check_variables(checker, value, template.variables(), variables);
                fields.push((field.clone(), template));
            }
        }
        BodyPlan::Form(fields)
    } else if let Some(json) = &task.json {
        match JsonTemplate::compile(json.get_ref()) {
            Ok(template) => {
                for variable in template.variables() {
                    if !variables.contains(variable) {
                        unknown_variable(checker, json.span(), variable, variables);
                    }
                }
                BodyPlan::Json(template)
            }
            Err(error) => {
                checker.at(json.span(), format!("in the JSON body: {}", error.message));
                BodyPlan::None
            }
        }
    } else if let Some(body) = &task.body {
        match checker.template(body) {
            Some(template) => {
                check_variables(checker, body, template.variables(), variables);
                BodyPlan::Raw(template)
            }
            None => BodyPlan::None,
        }
    } else {
        BodyPlan::None
    };
    if method == Method::Get && !matches!(body, BodyPlan::None) {
        checker.at(
            path_text.span(),
            format!("task `{name}` sends a body with GET"),
        );
    }
    let expect = &task.expect;
    let conflict = expect.conflict.clone().unwrap_or_else(|| {
        expect
            .status
            .as_ref()
            .map(|s| s.iter().copied().filter(|c| *c == 409).collect())
            .unwrap_or_default()
    });
    let css = expect
        .css
        .as_ref()
        .and_then(|css| match scraper::Selector::parse(css.get_ref()) {
            Ok(selector) => Some((css.get_ref().clone(), selector)),
            Err(error) => {
                checker.at(
                    css.span(),
                    format!("`{}` is not a CSS selector ({error})", css.get_ref()),
                );
                None
            }
        });
    if let Some(pointer) = &expect.json
        && !pointer.is_empty()
        && !pointer.starts_with('/')
    {
        checker.at(
            task.name.span(),
            format!("expect.json `{pointer}` is not a JSON pointer (they start with `/`)"),
        );
    }
    let extract = task
        .extract
        .iter()
        .filter_map(|e| check_extract(checker, e))
        .collect();
    if checker.errors.len() > errors_before {
        return None;
    }
    let endpoint = endpoint_for(
        endpoints,
        &name,
        method.as_str(),
        &task
            .tags
            .0
            .iter()
            .map(|t| t.get_ref().clone())
            .collect::<Vec<_>>(),
    );
    Some(TaskPlan {
        name,
        endpoint,
        weight: task.weight,
        tags: task.tags.0.iter().map(|t| t.get_ref().clone()).collect(),
        on_start: task.on_start,
        kind: TaskKind::Http(Box::new(HttpTask {
            method,
            path: path?,
            headers,
            body,
            csrf: task.csrf.unwrap_or(method != Method::Get),
            expect: ExpectPlan {
                status: expect.status.clone(),
                conflict,
                text: expect.text.clone(),
                not_text: expect.not_text.clone(),
                css,
                json_pointer: expect.json.clone(),
            },
            extract,
            writes: task.writes.clone(),
            vars: local_vars,
            truths: Vec::new(),
        })),
    })
}

/// The endpoint of a name, creating it the first time.
pub(crate) fn endpoint_for(
    endpoints: &mut Vec<EndpointMeta>,
    name: &str,
    method: &str,
    tags: &[String],
) -> usize {
    match endpoints.iter().position(|e| e.name == name) {
        Some(index) => {
            for tag in tags {
                if !endpoints[index].tags.contains(tag) {
                    endpoints[index].tags.push(tag.clone());
                }
            }
            index
        }
        None => {
            endpoints.push(EndpointMeta {
                name: name.to_owned(),
                method: method.to_owned(),
                tags: tags.to_vec(),
            });
            endpoints.len() - 1
        }
    }
}

fn check_variables<'a>(
    checker: &mut Checker<'_>,
    text: &Spanned<String>,
    used: impl Iterator<Item = &'a str>,
    variables: &BTreeSet<String>,
) {
    for variable in used {
        if !variables.contains(variable) {
            let offset = text
                .get_ref()
                .find(&format!("{{{variable}"))
                .map_or(0, |i| i + 1);
            let span = checker.inside(&text.span(), text.get_ref(), offset);
            let span = span.start..span.start + variable.len();
            unknown_variable(checker, span, variable, variables);
        }
    }
}

fn unknown_variable(
    checker: &mut Checker<'_>,
    span: Range<usize>,
    variable: &str,
    variables: &BTreeSet<String>,
) {
    checker
        .at(
            span,
            format!(
                "no variable `{variable}`: the catalog does not offer it and no task extracts it"
            ),
        )
        .hint = Some(format!(
        "available: {}",
        variables.iter().cloned().collect::<Vec<_>>().join(", ")
    ));
}

fn check_extract(checker: &mut Checker<'_>, spec: &ExtractSpec) -> Option<ExtractPlan> {
    let var = spec.var.get_ref().clone();
    let given = [
        spec.json.is_some(),
        spec.css.is_some(),
        spec.regex.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if given != 1 {
        checker.at(
            spec.var.span(),
            format!("extract `{var}` needs exactly one of json, css or regex"),
        );
        return None;
    }
    let how = if let Some(pointer) = &spec.json {
        if !pointer.is_empty() && !pointer.starts_with('/') {
            checker.at(
                spec.var.span(),
                format!("`{pointer}` is not a JSON pointer (they start with `/`)"),
            );
            return None;
        }
        ExtractHow::JsonPointer(pointer.clone())
    } else if let Some(css) = &spec.css {
        match scraper::Selector::parse(css.get_ref()) {
            Ok(selector) => ExtractHow::Css {
                selector,
                attr: spec.attr.clone(),
            },
            Err(error) => {
                checker.at(
                    css.span(),
                    format!("`{}` is not a CSS selector ({error})", css.get_ref()),
                );
                return None;
            }
        }
    } else {
        let regex = spec.regex.as_ref().expect("one of three");
        match regex::Regex::new(regex.get_ref()) {
            Ok(compiled) => ExtractHow::Regex(compiled),
            Err(error) => {
                checker.at(regex.span(), format!("invalid regex: {error}"));
                return None;
            }
        }
    };
    Some(ExtractPlan {
        var,
        how,
        all: spec.all,
    })
}

fn check_auth(
    checker: &mut Checker<'_>,
    spec: &AuthSpec,
    endpoints: &mut Vec<EndpointMeta>,
) -> Option<AuthPlan> {
    let login_url = checker.template(&spec.login_url)?;
    let users_span = spec.users.span();
    let users_spec = spec.users.get_ref();
    let users = match users_spec.from {
        UserSource::Catalog => {
            if users_spec.count == Some(0) {
                checker.at(users_span, "the user pool is empty (count = 0)");
                return None;
            }
            UserPool::Catalog {
                count: users_spec.count,
            }
        }
        UserSource::File => {
            let Some(path) = &users_spec.path else {
                checker.at(users_span, "users from a file need `path`").hint =
                    Some("a CSV of login,password lines".into());
                return None;
            };
            let base = Path::new(checker.path).parent().unwrap_or(Path::new("."));
            match std::fs::read_to_string(base.join(path)) {
                Ok(text) => match parse_user_lines(text.lines().map(|l| l.split_once(','))) {
                    Ok(users) => UserPool::Fixed(users),
                    Err(problem) => {
                        checker.at(users_span, format!("user file `{path}`: {problem}"));
                        return None;
                    }
                },
                Err(error) => {
                    checker.at(
                        users_span,
                        format!("cannot read user file `{path}`: {error}"),
                    );
                    return None;
                }
            }
        }
        UserSource::Env => {
            let Some(var) = &users_spec.var else {
                checker.at(users_span, "users from the environment need `var`");
                return None;
            };
            match std::env::var(var) {
                Ok(text) => {
                    match parse_user_lines(text.split(',').map(|pair| pair.split_once(':'))) {
                        Ok(users) => UserPool::Fixed(users),
                        Err(problem) => {
                            checker.at(users_span, format!("${var}: {problem}")).hint =
                                Some("write login:password pairs separated by commas".into());
                            return None;
                        }
                    }
                }
                Err(_) => {
                    checker.at(users_span, format!("${var} is not set")).hint =
                        Some("set it to login:password pairs separated by commas".into());
                    return None;
                }
            }
        }
    };
    if spec.success.location.is_none() && spec.success.cookie.is_none() {
        let span = checker.header_span("[auth");
        checker.at(span, "a login's success needs a redirect `location` or a session `cookie`, not the status alone").hint =
            Some("a failed login that answers 200 with the form must not count as a success".into());
    }
    let path = spec.login_url.get_ref().clone();
    let form_endpoint = endpoint_for(
        endpoints,
        &format!("[AUTH] login form {path}"),
        "GET",
        &[AUTH_TAG.to_owned()],
    );
    let login_endpoint = endpoint_for(endpoints, &spec.name, "POST", &[AUTH_TAG.to_owned()]);
    Some(AuthPlan {
        login_url,
        user_field: spec.fields.user.clone(),
        password_field: spec.fields.password.clone(),
        csrf_field: spec.fields.csrf.clone(),
        csrf_cookie: spec.csrf.cookie.clone(),
        csrf_header: spec.csrf.header.clone(),
        success_status: spec.success.status,
        success_location: spec.success.location.clone(),
        success_cookie: spec.success.cookie.clone(),
        failure_kinds: spec
            .failure_kinds
            .iter()
            .map(|(kind, marker)| (marker.clone(), Arc::from(kind.as_str())))
            .collect(),
        users,
        form_endpoint,
        login_endpoint,
    })
}

fn parse_user_lines<'a>(
    pairs: impl Iterator<Item = Option<(&'a str, &'a str)>>,
) -> Result<Vec<PoolUser>, String> {
    let mut users = Vec::new();
    for (i, pair) in pairs.enumerate() {
        match pair {
            Some((login, password)) if !login.trim().is_empty() && !password.is_empty() => {
                users.push(PoolUser {
                    login: login.trim().to_owned(),
                    password: Secret::new(password.trim()),
                });
            }
            _ => return Err(format!("entry {} is not login and password", i + 1)),
        }
    }
    if users.is_empty() {
        return Err("the user pool is empty".into());
    }
    Ok(users)
}

fn check_load(
    checker: &mut Checker<'_>,
    spec: &LoadSpec,
    timeout: Option<Duration>,
) -> Option<LoadPlan> {
    let span = checker.header_span("[load]");
    let errors_before = checker.errors.len();
    let need = |checker: &mut Checker<'_>, what: &str, executor: &str| {
        checker.at(span.clone(), format!("load: {executor} needs `{what}`"));
    };
    let executor_kind = spec.executor.unwrap_or(if spec.stages.is_some() {
        ExecutorKind::RampingUsers
    } else {
        ExecutorKind::ConstantUsers
    });
    let executor = match executor_kind {
        ExecutorKind::RampingUsers => {
            let mut stages = Vec::new();
            let mut current = 0;
            for stage in spec.stages.iter().flatten() {
                match (stage.to, stage.over, stage.hold) {
                    (Some(to), Some(over), None) => {
                        stages.push(UserStage {
                            from: current,
                            to,
                            duration: over,
                        });
                        current = to;
                    }
                    (None, None, Some(hold)) => stages.push(UserStage {
                        from: current,
                        to: current,
                        duration: hold,
                    }),
                    _ => {
                        checker.at(span.clone(), "load: a ramping-users stage is `{ to = N, over = \"30s\" }` or `{ hold = \"1m\" }`");
                    }
                }
            }
            if stages.is_empty() {
                need(checker, "stages", "ramping-users");
            }
            Executor::Users { stages }
        }
        ExecutorKind::ConstantUsers => {
            let (users, duration) = (spec.users, spec.duration);
            if users.is_none() {
                need(checker, "users", "constant-users");
            }
            if duration.is_none() {
                need(checker, "duration", "constant-users");
            }
            let users = users.unwrap_or(0);
            Executor::Users {
                stages: vec![UserStage {
                    from: users,
                    to: users,
                    duration: duration.unwrap_or_default(),
                }],
            }
        }
        ExecutorKind::PerUserIterations => {
            if spec.users.is_none() {
                need(checker, "users", "per-user-iterations");
            }
            if spec.iterations.is_none() {
                need(checker, "iterations", "per-user-iterations");
            }
            Executor::Iterations {
                users: spec.users.unwrap_or(0),
                iterations: spec.iterations.unwrap_or(0),
                max_duration: spec.duration.unwrap_or(Duration::from_secs(600)),
            }
        }
        ExecutorKind::ConstantArrivalRate | ExecutorKind::RampingArrivalRate => {
            let unit = spec
                .time_unit
                .unwrap_or(Duration::from_secs(1))
                .as_secs_f64();
            if unit <= 0.0 {
                checker.at(span.clone(), "load: time-unit must be positive");
            }
            let per_second = |rate: f64| rate / unit.max(f64::MIN_POSITIVE);
            let mut stages = Vec::new();
            if executor_kind == ExecutorKind::ConstantArrivalRate {
                match (spec.rate, spec.duration) {
                    (Some(rate), Some(duration)) => stages.push(RateStage {
                        from: per_second(rate),
                        to: per_second(rate),
                        duration,
                    }),
                    (rate, duration) => {
                        if rate.is_none() {
                            need(checker, "rate", "constant-arrival-rate");
                        }
                        if duration.is_none() {
                            need(checker, "duration", "constant-arrival-rate");
                        }
                    }
                }
            } else {
                let mut current = per_second(spec.start_rate.unwrap_or(0.0));
                for stage in spec.stages.iter().flatten() {
                    match (stage.target, stage.over, stage.hold) {
                        (Some(target), Some(over), None) => {
                            stages.push(RateStage {
                                from: current,
                                to: per_second(target),
                                duration: over,
                            });
                            current = per_second(target);
                        }
                        (None, None, Some(hold)) => stages.push(RateStage {
                            from: current,
                            to: current,
                            duration: hold,
                        }),
                        _ => {
                            checker.at(span.clone(), "load: a ramping-arrival-rate stage is `{ target = N, over = \"30s\" }` or `{ hold = \"1m\" }`");
                        }
                    }
                }
                if stages.is_empty() {
                    need(checker, "stages", "ramping-arrival-rate");
                }
            }
            if stages
                .iter()
                .any(|s| s.from < 0.0 || s.to < 0.0 || !s.from.is_finite() || !s.to.is_finite())
            {
                checker.at(span.clone(), "load: rates must be finite and not negative");
            }
            let peak = stages.iter().map(|s| s.from.max(s.to)).fold(0.0, f64::max);
            let pre_allocated = spec
                .pre_allocated_users
                .unwrap_or_else(|| (peak.ceil() as u32).clamp(1, 100));
            let max_users = spec
                .max_users
                .unwrap_or(pre_allocated.saturating_mul(10).max(pre_allocated));
            if max_users < pre_allocated {
                checker.at(span.clone(), format!("load: max-users ({max_users}) is below pre-allocated-users ({pre_allocated})"));
            }
            Executor::ArrivalRate {
                stages,
                pre_allocated_users: pre_allocated,
                max_users,
            }
        }
    };
    if executor.max_users() == 0 && checker.errors.len() == errors_before {
        checker.at(span.clone(), "load: the run would have no virtual users");
    }
    let workers = spec.workers.unwrap_or(1);
    if workers == 0 {
        checker.at(span.clone(), "load: workers must be at least 1");
    }
    let warm_up = spec.warm_up.unwrap_or_default();
    if warm_up >= executor.duration() && !warm_up.is_zero() {
        checker.at(
            span.clone(),
            format!(
                "load: the warm-up ({}) leaves nothing to measure in a run of {}",
                humantime::format_duration(warm_up),
                humantime::format_duration(executor.duration())
            ),
        );
    }
    let timeout = timeout.unwrap_or(Duration::from_secs(120));
    if checker.errors.len() > errors_before {
        return None;
    }
    Some(LoadPlan {
        executor,
        think_time: spec.think_time.unwrap_or(ThinkTime {
            min: Duration::ZERO,
            max: Duration::ZERO,
        }),
        warm_up,
        graceful_stop: spec.graceful_stop.unwrap_or(Duration::from_secs(10)),
        workers,
        max_lateness: spec.max_lateness.unwrap_or(Duration::from_secs(1)),
        timeout,
    })
}

fn check_selector(
    checker: &mut Checker<'_>,
    key: &Spanned<String>,
    selector: &Selector,
    endpoints: &[EndpointMeta],
    known_tags: &BTreeSet<String>,
    failure_kinds: &BTreeSet<String>,
    options: &PlanOptions,
) -> bool {
    let metric = selector.metric.as_str();
    let known = BUILTIN_METRICS.contains(&metric)
        || ENGINE_VALUES.contains(&metric)
        || options.extra_metrics.contains(metric);
    if !known {
        let mut all: Vec<&str> = BUILTIN_METRICS
            .iter()
            .chain(ENGINE_VALUES.iter())
            .copied()
            .collect();
        all.extend(options.extra_metrics.iter().map(String::as_str));
        checker
            .at(key.span(), format!("unknown metric `{metric}`"))
            .hint = Some(format!("metrics: {}", all.join(", ")));
        return false;
    }
    let mut ok = true;
    if metric == "queries_per_request" && selector.filter("name").is_none() {
        checker.at(
            key.span(),
            "queries_per_request names its task: queries_per_request(\"/dashboard/\")",
        );
        ok = false;
    }
    for (filter, value) in &selector.filters {
        let offset = key.get_ref().find(&format!("{filter}:")).unwrap_or(0);
        let span = checker.inside(&key.span(), key.get_ref(), offset);
        let span = span.start..span.start + filter.len() + 1 + value.len();
        match filter.as_str() {
            "name" if !endpoints.iter().any(|e| &e.name == value) => {
                let names: Vec<&str> = endpoints.iter().map(|e| e.name.as_str()).collect();
                checker.at(span, format!("no task is named `{value}`")).hint =
                    Some(format!("task names: {}", names.join(", ")));
                ok = false;
            }
            "tag" if !known_tags.contains(value) && value != AUTH_TAG => {
                unknown_tag(checker, Some(span), value, known_tags);
                ok = false;
            }
            "kind" if !failure_kinds.contains(value) && !is_status_kind(value) => {
                checker
                    .at(span, format!("unknown failure kind `{value}`"))
                    .hint = Some(format!(
                    "kinds: {}, http-NNN, and the auth failure-kinds",
                    failure_kinds.iter().cloned().collect::<Vec<_>>().join(", ")
                ));
                ok = false;
            }
            "kind" if metric != "failures" => {
                checker.at(span, "the `kind` filter applies to the `failures` metric");
                ok = false;
            }
            "method" if !matches!(value.as_str(), "GET" | "POST" | "PUT" | "PATCH" | "DELETE") => {
                checker.at(span, format!("`{value}` is not an HTTP method"));
                ok = false;
            }
            other if !FILTER_KEYS.contains(&other) => {
                checker.at(
                    span,
                    format!("unknown filter `{other}` (use name, tag, method or kind)"),
                );
                ok = false;
            }
            _ => {}
        }
    }
    if (ENGINE_VALUES.contains(&metric) || options.extra_metrics.contains(metric))
        && !selector.filters.is_empty()
    {
        checker.at(key.span(), format!("`{metric}` takes no filters"));
        ok = false;
    }
    ok
}

fn is_status_kind(kind: &str) -> bool {
    kind.strip_prefix("http-")
        .is_some_and(|code| code.len() == 3 && code.chars().all(|c| c.is_ascii_digit()))
}

fn check_aggregate(
    checker: &mut Checker<'_>,
    span: Range<usize>,
    selector: &Selector,
    expression: &Expression,
) {
    let metric = selector.metric.as_str();
    let allowed: &[&str] = match metric {
        "http.duration" | "auth.duration" => &["p(N)", "avg", "min", "max", "med", "count"],
        "http.failed" | "auth.success" | "checks" | "failures" | "http.conflicts" => {
            &["rate", "count"]
        }
        "http.requests" => &["count", "rate"],
        _ => &["value"],
    };
    let name = match expression.aggregate {
        Aggregate::Percentile(_) => "p(N)",
        Aggregate::Avg => "avg",
        Aggregate::Min => "min",
        Aggregate::Max => "max",
        Aggregate::Med => "med",
        Aggregate::Rate => "rate",
        Aggregate::Count => "count",
        Aggregate::Value => "value",
    };
    let value_like =
        allowed == ["value"] && matches!(expression.aggregate, Aggregate::Max | Aggregate::Count);
    if !allowed.contains(&name) && !value_like {
        checker.at(span, format!("`{metric}` has no `{name}`")).hint =
            Some(format!("use {}", allowed.join(", ")));
    }
}

impl Plan {
    /// Tasks that run by weight (not on-start), for sampling.
    pub fn weighted_tasks(&self) -> impl Iterator<Item = &TaskPlan> {
        self.tasks.iter().filter(|t| !t.on_start && t.weight > 0)
    }
}
