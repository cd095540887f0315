//! Suite files: TOML, kebab-case keys, deserialised into typed structs with
//! spans, then validated in one pass ([`plan`]) before any load. Every
//! refusal points at file:line:col with a hint ([`diagnostic`]).
//!
//! A suite says what to run against (target), on what stack (infra), with
//! which data, how users log in (auth), how load is shaped (load, profiles),
//! what virtual users do (tasks) and what must hold (thresholds).

pub mod defaults;
pub mod diagnostic;
pub mod metric;
pub mod plan;
pub mod template;
pub mod threshold;

use std::time::Duration;

use indexmap::IndexMap;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use toml::Spanned;

use self::defaults::Defaults;
use crate::infra::InfraConfig;

pub use self::diagnostic::SuiteError;
pub use self::plan::{Plan, PlanOptions};

/// A suite file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SuiteFile {
    pub suite: SuiteSection,
    #[serde(default)]
    pub target: TargetSpec,
    #[serde(default)]
    pub infra: InfraConfig,
    #[serde(default)]
    pub data: DataSpec,
    pub auth: Option<AuthSpec>,
    #[serde(default)]
    pub load: LoadSpec,
    /// Named profiles (`ci`, `full`) that override parts of `load` and `data`.
    #[serde(default)]
    pub profiles: IndexMap<String, ProfileSpec>,
    #[serde(default, rename = "task")]
    pub tasks: Vec<TaskSpec>,
    #[serde(default)]
    pub tags: TagFilterSpec,
    #[serde(default)]
    pub thresholds: IndexMap<Spanned<String>, Spanned<ThresholdValue>>,
    /// Ground truth for sampled responses (correctness under load).
    #[serde(default, rename = "truth")]
    pub truths: Vec<TruthSpec>,
    /// Budgets of criterion benchmarks, by criterion's full id.
    #[serde(default)]
    pub benchmarks: IndexMap<Spanned<String>, Spanned<crate::bench_budget::BudgetValue>>,
    /// What the harness does to the stack's services during the load.
    #[serde(default, rename = "fault")]
    pub faults: Vec<FaultSpec>,
    /// What no file the run writes may hold, beyond what it knows is secret.
    #[serde(default)]
    pub secrets: SecretsSpec,
    /// Real browsers beside the HTTP load, timing the pages people wait for.
    #[serde(default, rename = "browser")]
    pub browsers: Vec<BrowserSpec>,
    /// A capacity search instead of the load's own shape: the highest
    /// arrival rate at which every threshold holds.
    pub capacity: Option<CapacitySpec>,
    /// Where the run streams its per-second series while it runs.
    #[serde(default)]
    pub metrics_out: MetricsOutSpec,
}

/// `[metrics-out]`: receivers of the run's series, sent once a second
/// while the load runs (`--metrics-out` adds to them).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MetricsOutSpec {
    /// Prometheus remote-write endpoints (`http://host:9090/api/v1/write`).
    #[serde(default)]
    pub prometheus_rw: Vec<Spanned<String>>,
    /// Static labels on every series (`--metrics-label` adds to them).
    #[serde(default)]
    pub labels: IndexMap<Spanned<String>, String>,
}

/// `[capacity]`: the search's settings, each defaulted in `defaults.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CapacitySpec {
    /// The first step's rate (iterations a second).
    pub start: Option<f64>,
    /// Each step's rate over the one before until one fails (> 1).
    pub growth: Option<f64>,
    /// How close the highest step that held and the lowest that failed
    /// must come: `"10%"`.
    pub resolution: Option<Percent>,
    pub max_rate: Option<f64>,
    #[serde(default, with = "humantime_serde::option")]
    pub step: Option<Duration>,
    #[serde(default, with = "humantime_serde::option")]
    pub settle: Option<Duration>,
    #[serde(default, with = "humantime_serde::option")]
    pub max_time: Option<Duration>,
    pub pre_allocated_users: Option<u32>,
    pub max_users: Option<u32>,
    pub confidence: Option<Percent>,
}

/// A percentage as written, `"10%"`, read as a fraction (0.10).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percent(pub f64);

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Percent, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.trim()
            .strip_suffix('%')
            .and_then(|n| n.trim().parse::<f64>().ok())
            .filter(|n| n.is_finite() && *n > 0.0 && *n < 100.0)
            .map(|n| Percent(n / 100.0))
            .ok_or_else(|| {
                de::Error::custom(format!(
                    "`{text}` is not a percentage between 0 and 100 such as \"10%\""
                ))
            })
    }
}

/// `[[browser]]`: a few users in headless Chromium, each logging in through
/// the suite's `[auth]` form in the page and then opening `page`s in turn
/// until the load ends.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BrowserSpec {
    /// How reports name the group (default `browser`).
    pub name: Option<String>,
    /// Browsers of this group, each its own Chromium (default 1).
    pub users: Option<Spanned<u32>>,
    /// Log in through the `[auth]` form first (default: when the suite has `[auth]`).
    pub login: Option<Spanned<bool>>,
    /// The wait between one page and the next (default 1s).
    pub pause: Option<Spanned<String>>,
    /// How long a page may take to be ready (default 15s).
    pub timeout: Option<Spanned<String>>,
    #[serde(default, rename = "page")]
    pub pages: Vec<BrowserPageSpec>,
}

/// One page a browser user opens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BrowserPageSpec {
    /// A path template like a task's (`/detail_project/{project_id}/rekap-rab/`).
    pub path: Spanned<String>,
    /// The page's name in metrics and reports (default: the path template).
    pub name: Option<String>,
    /// A CSS selector whose element means the page is ready for its user;
    /// a page where it never appears is a failed visit.
    pub ready: Option<Spanned<String>>,
    /// Values the page itself offers to the pages after it (a link's
    /// project id): one table or a list of them.
    pub extract: Option<PageExtracts>,
}

/// `extract` of a `[[browser.page]]`: one or several.
#[derive(Debug, Clone)]
pub enum PageExtracts {
    One(PageExtractSpec),
    Many(Vec<PageExtractSpec>),
}

impl<'de> Deserialize<'de> for PageExtracts {
    /// A table or a list of tables, each read by the same deserializer (an
    /// untagged enum would buffer them and lose their spans and errors).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OneOrMany;
        impl<'de> Visitor<'de> for OneOrMany {
            type Value = PageExtracts;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an extract table, or a list of them")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<PageExtracts, A::Error> {
                PageExtractSpec::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(PageExtracts::One)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<PageExtracts, A::Error> {
                Vec::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(PageExtracts::Many)
            }
        }
        deserializer.deserialize_any(OneOrMany)
    }
}

impl PageExtracts {
    pub fn all(&self) -> &[PageExtractSpec] {
        match self {
            PageExtracts::One(one) => std::slice::from_ref(one),
            PageExtracts::Many(many) => many,
        }
    }
}

/// `extract = { var = "project_id", css = "a[href*=rekap-rab]", attribute =
/// "href", regex = "/(\\d+)/" }`: the first element matching `css`, its
/// attribute (its text without one), the regex's first group (or match).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PageExtractSpec {
    pub var: Spanned<String>,
    pub css: Spanned<String>,
    pub attribute: Option<String>,
    pub regex: Option<Spanned<String>>,
}

/// `[secrets]`: regular expressions whose matches every report, log and
/// failure sample of the run shows as `***`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SecretsSpec {
    #[serde(default)]
    pub patterns: Vec<Spanned<String>>,
}

/// A fault on the run's clock: `service` (postgres, pgbouncer, redis,
/// target), `action` (kill, pause, restart; on the target's path to
/// pgbouncer or redis: delay, bandwidth, reset, blackhole), `at` (from the
/// start of the load), `duration` for all but kill and restart, and the
/// action's settings (`latency` and `jitter` of a delay, `rate` of a
/// bandwidth cap).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FaultSpec {
    pub service: Spanned<String>,
    pub action: Spanned<String>,
    pub at: Spanned<String>,
    pub duration: Option<Spanned<String>>,
    pub latency: Option<Spanned<String>>,
    pub jitter: Option<Spanned<String>>,
    pub rate: Option<Spanned<String>>,
}

/// A value read from a task's responses and compared, after the run, with
/// what SQL computes from the database: silent wrong results are failures.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TruthSpec {
    /// The task whose responses are sampled.
    pub task: Spanned<String>,
    pub json: Option<String>,
    pub css: Option<Spanned<String>>,
    pub attr: Option<String>,
    pub regex: Option<Spanned<String>>,
    /// The truth: a query whose first column of its first row is the value.
    /// Template variables are the request's, quoted as SQL literals.
    pub sql: Spanned<String>,
    /// Sample every n-th response of the task per virtual user.
    pub every: Option<u32>,
    /// Largest absolute difference that still agrees (numbers).
    pub tolerance: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SuiteSection {
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: String,
    /// Profiles this suite runs under (all when empty): a soak runs only in `full`.
    #[serde(default)]
    pub only_profiles: Vec<String>,
    /// The figures the baseline gate judges (`p50`, `p95`, `p99`,
    /// `error-rate`, `throughput`); all when absent. `--gate` overrides it.
    pub gate: Option<Spanned<Vec<crate::baseline::Metric>>>,
}

/// What the load runs against. Default: the embedded reference service.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TargetSpec {
    /// A running application.
    pub url: Option<Spanned<String>>,
    /// A command that starts the application; it receives the stack's URLs
    /// as `DATABASE_URL`, `PGBOUNCER_URL`, `PGBOUNCER_ADMIN_URL`, `REDIS_URL`
    /// and the port to listen on as `PORT`.
    pub command: Option<Spanned<Vec<String>>>,
    /// Polled until it answers 2xx before load begins (with `command`).
    pub ready_url: Option<String>,
    #[serde(default)]
    pub env: IndexMap<String, String>,
    /// Non-loopback hosts the user allows load against.
    #[serde(default)]
    pub allow_hosts: Vec<String>,
    /// Pathology switches of the embedded reference service.
    #[serde(default)]
    pub switches: Vec<String>,
    /// Client timeout; high by default so server-side timeouts show as
    /// outliers, not client aborts.
    #[serde(default, with = "humantime_serde::option")]
    pub timeout: Option<Duration>,
    /// Send a W3C `traceparent` with each request and keep the trace ids
    /// of each endpoint's slowest requests and first failures.
    #[serde(default)]
    pub trace_context: bool,
}

/// Which data the run seeds, or where variables come from when it does not.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DataSpec {
    /// The data set to seed (`ci`, `production`, `large`).
    pub set: Option<String>,
    /// The key's old name, refused with a hint naming `set` ("profile" now
    /// means only the load profile). Read as any value so the refusal is
    /// about the key, whatever was written.
    #[serde(rename = "profile")]
    pub retired_profile: Option<Spanned<toml::Value>>,
    pub seed: Option<u64>,
    /// PBKDF2 iterations of the seeded users' password hashes: the
    /// application's own login cost (`1000000` for the AHSP application),
    /// where a suite is about logins; cheap by default.
    pub password_iterations: Option<u32>,
    /// For targets whose data the harness did not seed: a variable name and
    /// the SQL (against the direct database URL) whose first column lists
    /// its values.
    #[serde(default)]
    pub sql: IndexMap<String, Spanned<String>>,
}

/// How virtual users log in.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AuthSpec {
    pub login_url: Spanned<String>,
    #[serde(default)]
    pub fields: LoginFields,
    #[serde(default)]
    pub csrf: CsrfSpec,
    pub success: LoginSuccess,
    /// Text in a response → the failure kind it means.
    #[serde(default)]
    pub failure_kinds: IndexMap<String, String>,
    pub users: Spanned<UserPoolSpec>,
    /// The endpoint name of the login POST.
    #[serde(default = "default_login_name")]
    pub name: String,
    /// Every iteration logs in afresh (a login storm, as the history's
    /// v17–v40 runs), instead of once per user.
    #[serde(default)]
    pub every_iteration: bool,
}

fn default_login_name() -> String {
    Defaults::embedded().auth.name.clone()
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LoginFields {
    pub user: String,
    pub password: String,
    pub csrf: Option<String>,
}

impl Default for LoginFields {
    fn default() -> Self {
        Defaults::embedded().auth.fields.clone()
    }
}

/// Where the CSRF token lives and how API writes send it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CsrfSpec {
    pub cookie: Option<String>,
    pub header: Option<String>,
}

impl Default for CsrfSpec {
    fn default() -> Self {
        Defaults::embedded().auth.csrf.clone()
    }
}

/// What a successful login is: never the status alone.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LoginSuccess {
    pub status: u16,
    pub location: Option<String>,
    pub cookie: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UserSource {
    Catalog,
    File,
    Env,
}

/// The user pool.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct UserPoolSpec {
    pub from: UserSource,
    /// How many of the catalog's users to use (all by default).
    pub count: Option<u32>,
    /// `from = "file"`: a CSV file with `login,password` lines.
    pub path: Option<String>,
    /// `from = "env"`: a variable holding `login:password` pairs separated by commas.
    pub var: Option<String>,
}

/// The load shape. Every field is optional so a profile can override any.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LoadSpec {
    pub executor: Option<ExecutorKind>,
    pub users: Option<u32>,
    pub stages: Option<Vec<StageSpec>>,
    #[serde(default, with = "humantime_serde::option")]
    pub duration: Option<Duration>,
    pub iterations: Option<u32>,
    /// Iterations per `time-unit` (arrival-rate executors).
    pub rate: Option<f64>,
    pub start_rate: Option<f64>,
    #[serde(default, with = "humantime_serde::option")]
    pub time_unit: Option<Duration>,
    pub pre_allocated_users: Option<u32>,
    pub max_users: Option<u32>,
    pub think_time: Option<ThinkTime>,
    #[serde(default, with = "humantime_serde::option")]
    pub warm_up: Option<Duration>,
    #[serde(default, with = "humantime_serde::option")]
    pub graceful_stop: Option<Duration>,
    /// Worker threads of the load engine (each a current-thread runtime).
    pub workers: Option<u32>,
    /// Iterations an open-model virtual user may be late by before the
    /// iteration counts as dropped.
    #[serde(default, with = "humantime_serde::option")]
    pub max_lateness: Option<Duration>,
}

impl LoadSpec {
    /// This spec with every field `over` sets replaced: a profile's `[load]`
    /// over the file's, in the order [`defaults::layered`] gives every layer.
    pub fn overridden_by(&self, over: &LoadSpec) -> LoadSpec {
        macro_rules! pick {
            ($($field:ident),*) => { LoadSpec { $($field: over.$field.clone().or_else(|| self.$field.clone())),* } };
        }
        pick!(
            executor,
            users,
            stages,
            duration,
            iterations,
            rate,
            start_rate,
            time_unit,
            pre_allocated_users,
            max_users,
            think_time,
            warm_up,
            graceful_stop,
            workers,
            max_lateness
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExecutorKind {
    RampingUsers,
    ConstantUsers,
    PerUserIterations,
    ConstantArrivalRate,
    RampingArrivalRate,
}

/// A ramp stage: `{ to = 50, over = "30s" }`, `{ hold = "3m" }`, or for
/// arrival rates `{ target = 20, over = "30s" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StageSpec {
    pub to: Option<u32>,
    pub target: Option<f64>,
    #[serde(default, with = "humantime_serde::option")]
    pub over: Option<Duration>,
    #[serde(default, with = "humantime_serde::option")]
    pub hold: Option<Duration>,
}

/// Think time between a virtual user's iterations: `"2s"` or `"1s..3s"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ThinkTime {
    pub min: Duration,
    pub max: Duration,
}

impl<'de> Deserialize<'de> for ThinkTime {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

impl std::str::FromStr for ThinkTime {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parse = |part: &str| {
            humantime::parse_duration(part.trim()).map_err(|e| {
                format!("`{part}` is not a duration ({e}); write e.g. \"2s\" or \"1s..3s\"")
            })
        };
        let (min, max) = match text.split_once("..") {
            Some((low, high)) => (parse(low)?, parse(high)?),
            None => {
                let d = parse(text)?;
                (d, d)
            }
        };
        if min > max {
            return Err(format!(
                "think time `{text}` has its minimum above its maximum"
            ));
        }
        Ok(ThinkTime { min, max })
    }
}

/// A named profile's overrides.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ProfileSpec {
    #[serde(default)]
    pub load: LoadSpec,
    pub data: Option<DataSpec>,
}

/// A list of tags. A string is refused: `tags = "api,page"` once silently
/// ran nothing useful.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagList(pub Vec<Spanned<String>>);

impl<'de> Deserialize<'de> for TagList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TagVisitor;
        impl<'de> Visitor<'de> for TagVisitor {
            type Value = TagList;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of tags, e.g. [\"api\", \"page\"]")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<TagList, E> {
                let items: Vec<String> = text
                    .split(',')
                    .map(|t| format!("\"{}\"", t.trim()))
                    .collect();
                Err(E::custom(format!(
                    "tags must be a list, not the string \"{text}\" (write [{}])",
                    items.join(", ")
                )))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TagList, A::Error> {
                let mut tags = Vec::new();
                while let Some(tag) = seq.next_element::<Spanned<String>>()? {
                    tags.push(tag);
                }
                Ok(TagList(tags))
            }
        }
        deserializer.deserialize_any(TagVisitor)
    }
}

/// Which tasks run.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TagFilterSpec {
    #[serde(default)]
    pub include: TagList,
    #[serde(default)]
    pub exclude: TagList,
}

/// One task a virtual user may do.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TaskSpec {
    /// The grouping key of its requests, e.g. `/detail_project/[id]/rekap-rab/`.
    pub name: Spanned<String>,
    #[serde(default = "default_weight")]
    pub weight: u32,
    #[serde(default)]
    pub tags: TagList,
    /// Run once when a virtual user starts (after login), not by weight.
    #[serde(default)]
    pub on_start: bool,
    pub get: Option<Spanned<String>>,
    pub post: Option<Spanned<String>>,
    pub put: Option<Spanned<String>>,
    pub patch: Option<Spanned<String>>,
    pub delete: Option<Spanned<String>>,
    #[serde(default)]
    pub headers: IndexMap<String, Spanned<String>>,
    pub form: Option<IndexMap<String, Spanned<String>>>,
    pub json: Option<Spanned<toml::Value>>,
    pub body: Option<Spanned<String>>,
    /// Send the CSRF header (default: on for every method but GET/HEAD).
    pub csrf: Option<bool>,
    #[serde(default)]
    pub expect: ExpectSpec,
    #[serde(default)]
    pub extract: Vec<ExtractSpec>,
    /// The entity this task writes, for write-integrity checks.
    pub writes: Option<WriteSpec>,
    /// Values drawn once per request before anything else renders, so the
    /// body and the write record agree: `vars = { volume = "{random_decimal(1, 500, 2)}" }`.
    #[serde(default)]
    pub vars: IndexMap<String, Spanned<String>>,
}

fn default_weight() -> u32 {
    Defaults::embedded().task.weight
}

/// What a response must be.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ExpectSpec {
    /// Accepted statuses (default: any 2xx).
    pub status: Option<Vec<u16>>,
    /// Statuses that are expected conflicts, counted apart (default: 409 when accepted).
    pub conflict: Option<Vec<u16>>,
    /// Text the body must contain.
    pub text: Option<String>,
    /// Text the body must not contain.
    pub not_text: Option<String>,
    /// A CSS selector that must match.
    pub css: Option<Spanned<String>>,
    /// A JSON pointer that must exist.
    pub json: Option<String>,
}

/// A value taken from a response into the virtual user's variables.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ExtractSpec {
    pub var: Spanned<String>,
    pub json: Option<String>,
    pub css: Option<Spanned<String>>,
    /// With `css`: the attribute to read (default: the element's text).
    pub attr: Option<String>,
    pub regex: Option<Spanned<String>>,
    /// Keep every match (a list to sample from) rather than the first.
    #[serde(default)]
    pub all: bool,
}

/// The entity a write task changes, so the harness can verify afterwards
/// that no acknowledged write was lost.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WriteSpec {
    pub table: String,
    pub key: String,
    pub version_column: String,
    /// The row's key in the request (a template, e.g. `{pekerjaan_id}`).
    pub key_value: String,
    /// The version sent (a template, e.g. `{version}`).
    pub version_value: String,
    /// Column → the template of the value sent.
    #[serde(default)]
    pub fields: IndexMap<String, String>,
    /// Where the audit rows are: a table and its column holding the entity id.
    pub audit_table: Option<String>,
    pub audit_key: Option<String>,
    /// A condition that picks this entity's audit rows (`entity = 'pekerjaan'`).
    pub audit_where: Option<String>,
}

/// `"p(99) < 2s"`, `["p(99) < 2s", "max < 100s"]`, or
/// `{ threshold = "rate > 99%", abort-on-fail = true }`.
#[derive(Debug, Clone, PartialEq)]
pub struct ThresholdValue {
    pub expressions: Vec<Spanned<String>>,
    pub abort_on_fail: bool,
}

impl<'de> Deserialize<'de> for ThresholdValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ThresholdVisitor;
        impl<'de> Visitor<'de> for ThresholdVisitor {
            type Value = ThresholdValue;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an expression such as \"p(95) < 200ms\", a list of them, or { threshold = …, abort-on-fail = true }")
            }
            fn visit_str<E: de::Error>(self, _text: &str) -> Result<ThresholdValue, E> {
                // The caller re-reads plain strings with their span.
                Err(E::custom(
                    "internal: plain threshold strings are read by the caller",
                ))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ThresholdValue, A::Error> {
                let mut expressions = Vec::new();
                while let Some(expression) = seq.next_element::<Spanned<String>>()? {
                    expressions.push(expression);
                }
                Ok(ThresholdValue {
                    expressions,
                    abort_on_fail: false,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ThresholdValue, A::Error> {
                let mut expressions = None;
                let mut abort_on_fail = false;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "threshold" => expressions = Some(map.next_value::<OneOrMany>()?.0),
                        "abort-on-fail" => abort_on_fail = map.next_value()?,
                        other => {
                            return Err(de::Error::unknown_field(
                                other,
                                &["threshold", "abort-on-fail"],
                            ));
                        }
                    }
                }
                let expressions =
                    expressions.ok_or_else(|| de::Error::missing_field("threshold"))?;
                Ok(ThresholdValue {
                    expressions,
                    abort_on_fail,
                })
            }
        }
        struct OneOrMany(Vec<Spanned<String>>);
        impl<'de> Deserialize<'de> for OneOrMany {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = OneOrMany;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("an expression or a list of expressions")
                    }
                    fn visit_seq<A: SeqAccess<'de>>(
                        self,
                        mut seq: A,
                    ) -> Result<OneOrMany, A::Error> {
                        let mut all = Vec::new();
                        while let Some(e) = seq.next_element::<Spanned<String>>()? {
                            all.push(e);
                        }
                        Ok(OneOrMany(all))
                    }
                    fn visit_str<E: de::Error>(self, text: &str) -> Result<OneOrMany, E> {
                        // Without a span of its own: the table's span is used.
                        Ok(OneOrMany(vec![Spanned::new(0..0, text.to_owned())]))
                    }
                }
                deserializer.deserialize_any(V)
            }
        }
        // A plain string is its own expression; `Spanned<ThresholdValue>`
        // around it gives the span.
        struct Any;
        impl<'de> Visitor<'de> for Any {
            type Value = ThresholdValue;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                ThresholdVisitor.expecting(f)
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<ThresholdValue, E> {
                Ok(ThresholdValue {
                    expressions: vec![Spanned::new(0..0, text.to_owned())],
                    abort_on_fail: false,
                })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<ThresholdValue, A::Error> {
                ThresholdVisitor.visit_seq(seq)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ThresholdValue, A::Error> {
                ThresholdVisitor.visit_map(map)
            }
        }
        deserializer.deserialize_any(Any)
    }
}

/// Parses a suite file's text.
pub fn parse(source: &str, path: &str) -> Result<SuiteFile, SuiteError> {
    toml::from_str::<SuiteFile>(source).map_err(|error| SuiteError::from_toml(path, source, &error))
}
