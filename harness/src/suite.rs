//! Suite files: TOML, kebab-case keys, deserialised into typed structs with
//! spans, then validated in one pass ([`plan`]) before any load. This file
//! holds the top level; each section's raw types live beside the
//! `plan/<concern>.rs` that validates them, re-exported here. Every
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

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;

use crate::infra::InfraConfig;

pub use self::diagnostic::SuiteError;
pub use self::plan::auth::{
    AuthSpec, CsrfSpec, LoginFields, LoginSuccess, UserPoolSpec, UserSource,
};
pub use self::plan::browser::{BrowserPageSpec, BrowserSpec, PageExtractSpec, PageExtracts};
pub use self::plan::data::DataSpec;
pub use self::plan::faults::FaultSpec;
pub use self::plan::load::{ExecutorKind, LoadSpec, StageSpec, ThinkTime};
pub use self::plan::tags::{TagFilterSpec, TagList};
pub use self::plan::target::TargetSpec;
pub use self::plan::task::{ExpectSpec, ExtractSpec, TaskSpec, WriteSpec};
pub use self::plan::thresholds::ThresholdValue;
pub use self::plan::truths::TruthSpec;
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
}

/// `[secrets]`: regular expressions whose matches every report, log and
/// failure sample of the run shows as `***`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SecretsSpec {
    #[serde(default)]
    pub patterns: Vec<Spanned<String>>,
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
}

/// A named profile's overrides.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ProfileSpec {
    #[serde(default)]
    pub load: LoadSpec,
    pub data: Option<DataSpec>,
}

/// Parses a suite file's text.
pub fn parse(source: &str, path: &str) -> Result<SuiteFile, SuiteError> {
    toml::from_str::<SuiteFile>(source).map_err(|error| SuiteError::from_toml(path, source, &error))
}
