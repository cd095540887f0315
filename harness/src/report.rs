//! Reports for people and tools. Every sink implements [`Reporter`], whose
//! hooks default to nothing, so adding a sink touches nothing upstream.
//!
//! Architecture invariant: reporters only write; they compute nothing the
//! verdict depends on.

pub mod gate;
pub mod html;
pub mod json;
pub mod junit;
pub mod locust;
pub mod markdown;
pub mod progress;
pub mod shards;
pub mod terminal;
pub mod traces;

use serde::{Deserialize, Serialize};

use crate::engine::LiveStatus;
use crate::infra::ServiceInfo;
use crate::metrics::RunSummary;
use crate::verdict::ThresholdResult;

/// The identifier of the JSON result format (see `harness/schema/result.schema.json`).
pub const RESULT_SCHEMA: &str = "ahsp-perf/result/v1";

/// How the stack ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct InfraReport {
    pub provider: String,
    pub time_to_ready_seconds: f64,
    pub services: Vec<ServiceInfo>,
}

/// Everything a reporter may write about a finished run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RunReport {
    pub schema: String,
    pub summary: RunSummary,
    pub thresholds: Vec<ThresholdResult>,
    pub passed: bool,
    pub infra: Option<InfraReport>,
    /// Things a reader should know (a profile the suite does not define, an aborted run).
    pub notes: Vec<String>,
    /// What the probes saw during the run.
    #[serde(default)]
    pub probes: Option<crate::probe::ProbeReport>,
    /// The configuration in effect, read back before load.
    #[serde(default)]
    pub effective_config: Option<crate::probe::config::EffectiveConfig>,
    /// Known failure signatures found in the services' logs.
    #[serde(default)]
    pub log_signatures: Vec<crate::probe::logs::SignatureHit>,
    /// SQL statements per request of each task, measured alone.
    #[serde(default)]
    pub query_budgets: Vec<crate::engine::isolated::IsolatedMeasure>,
    #[serde(default)]
    pub integrity: Option<crate::integrity::IntegrityReport>,
    #[serde(default)]
    pub correctness: Option<crate::correctness::CorrectnessReport>,
    #[serde(default)]
    pub coverage: Option<crate::coverage::CoverageReport>,
    /// Set when a signal ended the run early: every figure covers only what
    /// was measured until then.
    #[serde(default)]
    pub interrupted: Option<Interruption>,
    /// A capacity search's result: the rate, its interval, the steps and
    /// what broke first.
    #[serde(default)]
    pub capacity: Option<crate::capacity::CapacityReport>,
    /// A merged run's shards, one row each (empty for one generator's run).
    #[serde(default)]
    pub shards: Vec<shards::ShardRow>,
    /// What each receiver of the live series got (`--metrics-out`).
    #[serde(default)]
    pub exports: Vec<ExportReport>,
}

/// How a run was cut short.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Interruption {
    /// `SIGINT` or `SIGTERM`.
    pub signal: String,
    /// A second signal skipped the graceful stop: requests in flight were cut.
    pub graceful_stop_skipped: bool,
}

impl Interruption {
    /// One line for every format: what happened and what the figures cover.
    pub fn describe(&self) -> String {
        format!(
            "interrupted by {}{}: the figures cover only what was measured until then",
            self.signal,
            if self.graceful_stop_skipped {
                " (again: the graceful stop was skipped)"
            } else {
                ""
            }
        )
    }
}

impl RunReport {
    pub fn new(summary: RunSummary, thresholds: Vec<ThresholdResult>) -> RunReport {
        let passed = crate::verdict::all_passed(&thresholds);
        RunReport {
            schema: RESULT_SCHEMA.to_owned(),
            summary,
            thresholds,
            passed,
            infra: None,
            notes: Vec::new(),
            probes: None,
            effective_config: None,
            log_signatures: Vec::new(),
            query_budgets: Vec::new(),
            integrity: None,
            correctness: None,
            coverage: None,
            interrupted: None,
            capacity: None,
            shards: Vec::new(),
            exports: Vec::new(),
        }
    }
}

/// A sink for run reports.
pub trait Reporter {
    /// Once a second while the run goes on.
    fn progress(&mut self, _status: &LiveStatus) {}
    /// When the run is over and judged.
    fn finished(&mut self, _report: &RunReport) -> anyhow::Result<()> {
        Ok(())
    }
}

/// The JSON schema of `result.json`, as committed in `harness/schema/result.schema.json`.
pub fn result_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(RunReport)).expect("a schema serialises")
}

/// What one receiver got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ExportReport {
    /// `prometheus-rw`.
    pub kind: String,
    /// Masked of any password.
    pub url: String,
    /// Samples the run offered it.
    pub samples: u64,
    /// Samples it accepted.
    pub sent: u64,
    /// Samples lost: a full queue, a backlog past its bound, a refusal, or
    /// still unsent when the run ended.
    pub dropped: u64,
    /// The last failure, if any.
    pub error: Option<String>,
}

impl ExportReport {
    /// The report's note, when something was lost.
    pub fn line(&self) -> Option<String> {
        (self.dropped > 0).then(|| {
            format!(
                "{} {}: {} of {} samples dropped ({}); the run's own results are whole",
                self.kind,
                self.url,
                self.dropped,
                self.samples,
                self.error
                    .as_deref()
                    .unwrap_or("no answer before the run ended")
            )
        })
    }
}
