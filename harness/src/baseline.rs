//! Baselines and the pull-request gate.
//!
//! A baseline is a JSON file (`perf-baselines/NAME.json` by default, meant to
//! be committed) holding, per suite and endpoint, p50/p95/p99, error rate and
//! throughput ([`figures`]), each with an estimate of its own noise
//! ([`statistics`]). A comparison ([`compare`]) calls a change *worse* only
//! when it exceeds all of: the relative threshold, an absolute floor, and `k`
//! times the combined noise of both runs — so a noisy CI machine does not
//! fail pull requests, and a real regression still does. [`locust`] turns a
//! Locust run into a baseline. The gate on a finished run is
//! `run::gate`, its table `report::gate`.

pub mod compare;
pub mod figures;
pub mod locust;
pub mod statistics;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

pub use self::compare::{Comparison, GateSettings, Metric, Row, Verdict, compare};
pub use self::figures::{EndpointFigures, Noise, Source, SuiteBaseline, endpoint_key};
pub use self::locust::import_locust;

pub const BASELINE_SCHEMA: &str = "ahsp-perf/baseline/v1";

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
        let baseline: Baseline = serde_json::from_slice(&bytes)
            .with_context(|| format!("parsing baseline {}", path.display()))?;
        if baseline.schema != BASELINE_SCHEMA {
            bail!(
                "{} is a `{}` baseline; this ahsp-perf reads `{BASELINE_SCHEMA}`",
                path.display(),
                baseline.schema
            );
        }
        Ok(baseline)
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
        let figures = EndpointFigures {
            requests: 2000,
            failures: 0,
            p50_ms: 1.0,
            p95_ms: 2.0,
            p99_ms: 3.0,
            requests_per_second: 3.0,
            noise: None,
        };
        baseline
            .suites
            .insert("core".into(), compare::tests::suite(figures));
        baseline.save(dir.path()).unwrap();
        assert_eq!(Baseline::load(dir.path(), "main").unwrap(), baseline);
        let missing = Baseline::load(dir.path(), "other").unwrap_err();
        assert!(format!("{missing:#}").contains("--save-baseline other"));
    }
}
