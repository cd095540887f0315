//! Baselines and the pull-request gate.
//!
//! A baseline is a JSON file (`perf-baselines/NAME.json` by default, meant to
//! be committed) holding, per suite, its last few runs ([`figures`]): per
//! endpoint the request and failure counts and the whole latency
//! distribution, with a fingerprint of the machine ([`machine`]). Each run
//! knows how sure it is of each figure ([`statistics`]); several runs show
//! how much runs differ. A comparison ([`compare`]) calls a change WORSE
//! only when it is significant at the configured confidence, beyond the
//! relative threshold and beyond a floor. [`locust`] turns a Locust run into
//! a baseline. The gate on a finished run is `run::gate`, its table
//! `report::gate`.

pub mod compare;
mod evidence;
pub mod figures;
pub mod locust;
pub mod machine;
pub mod plan;
pub mod pooled;
pub mod statistics;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

pub use self::compare::{Comparison, GateSettings, Metric, Pairing, Row, Verdict, compare};
pub use self::figures::{CapacityFigures, EndpointFigures, RunFigures, Source, endpoint_key};
pub use self::locust::import_locust;
pub use self::machine::Fingerprint;

pub const BASELINE_SCHEMA: &str = "ahsp-perf/baseline/v2";

/// How many runs of a suite a baseline keeps by default.
pub const KEEP_RUNS: usize = 5;

/// One suite in a baseline: its last runs, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuiteBaseline {
    pub runs: Vec<RunFigures>,
}

impl SuiteBaseline {
    /// Adds `runs`, keeping the last `keep`. Runs under another profile
    /// than the new ones are dropped: they measured something else.
    pub fn record(&mut self, runs: Vec<RunFigures>, keep: usize) {
        if let Some(profile) = runs.last().map(|run| run.profile.clone()) {
            self.runs.retain(|run| run.profile == profile);
        }
        self.runs.extend(runs);
        let excess = self.runs.len().saturating_sub(keep.max(1));
        self.runs.drain(..excess);
    }
}

/// A named baseline: one entry per suite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    pub schema: String,
    pub name: String,
    pub suites: BTreeMap<String, SuiteBaseline>,
}

impl Baseline {
    pub fn new(name: &str) -> Baseline {
        Baseline {
            schema: BASELINE_SCHEMA.to_owned(),
            name: name.to_owned(),
            suites: BTreeMap::new(),
        }
    }

    /// `dir/NAME.json`.
    pub fn path(dir: &Path, name: &str) -> PathBuf {
        dir.join(format!("{name}.json"))
    }

    pub fn load(dir: &Path, name: &str) -> anyhow::Result<Baseline> {
        let path = Baseline::path(dir, name);
        let bytes = std::fs::read(&path).with_context(|| {
            format!(
                "no baseline `{name}` ({} does not exist; save one with --save-baseline {name})",
                path.display()
            )
        })?;
        #[derive(Deserialize)]
        struct Schema {
            schema: Option<String>,
        }
        let schema = serde_json::from_slice::<Schema>(&bytes)
            .with_context(|| format!("parsing baseline {}", path.display()))?
            .schema
            .unwrap_or_default();
        if schema != BASELINE_SCHEMA {
            bail!(
                "{} is a `{schema}` baseline; this ahsp-perf reads `{BASELINE_SCHEMA}`, which \
                 keeps whole latency distributions (a v1 baseline kept only p50/p95/p99, too \
                 little to know how sure they are): save it again with --save-baseline {name}",
                path.display(),
            );
        }
        serde_json::from_slice(&bytes)
            .with_context(|| format!("parsing baseline {}", path.display()))
    }

    /// Loads `NAME` if it exists, else an empty baseline of that name.
    pub fn load_or_new(dir: &Path, name: &str) -> anyhow::Result<Baseline> {
        if Baseline::path(dir, name).exists() {
            Baseline::load(dir, name)
        } else {
            Ok(Baseline::new(name))
        }
    }

    /// Writes atomically (a half-written baseline would fail every later gate).
    pub fn save(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = Baseline::path(dir, &self.name);
        let partial = path.with_extension("json.partial");
        let mut json = serde_json::to_vec_pretty(self)?;
        json.push(b'\n');
        std::fs::write(&partial, json).with_context(|| format!("writing {}", partial.display()))?;
        std::fs::rename(&partial, &path)
            .with_context(|| format!("renaming {} to {}", partial.display(), path.display()))?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baselines_round_trip_through_their_directory() {
        let dir = tempfile::tempdir().unwrap();
        let mut baseline = Baseline::new("main");
        let mut suite = SuiteBaseline { runs: Vec::new() };
        suite.record(vec![compare::tests::run_of(20.0, 10, 1)], KEEP_RUNS);
        baseline.suites.insert("core".into(), suite);
        baseline.save(dir.path()).unwrap();
        assert_eq!(Baseline::load(dir.path(), "main").unwrap(), baseline);
        let missing = Baseline::load(dir.path(), "other").unwrap_err();
        assert!(format!("{missing:#}").contains("--save-baseline other"));
    }

    #[test]
    fn a_v1_baseline_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("old.json"),
            r#"{"schema":"ahsp-perf/baseline/v1","name":"old","suites":{}}"#,
        )
        .unwrap();
        let error = format!("{:#}", Baseline::load(dir.path(), "old").unwrap_err());
        assert!(error.contains("--save-baseline old"), "{error}");
    }

    #[test]
    fn a_suite_keeps_its_last_runs_under_one_profile() {
        let mut suite = SuiteBaseline { runs: Vec::new() };
        for seed in 0..7 {
            suite.record(vec![compare::tests::run_of(20.0, 10, seed)], 3);
        }
        assert_eq!(suite.runs.len(), 3);
        let mut full = compare::tests::run_of(20.0, 10, 9);
        full.profile = Some("full".into());
        suite.record(vec![full], 3);
        assert_eq!(suite.runs.len(), 1);
    }
}
