//! The JSON result: the whole report, histograms included in a mergeable
//! form, following the committed schema `harness/schema/result.schema.json`.

use std::path::PathBuf;

use anyhow::Context as _;

use super::{Reporter, RunReport};

/// Writes `result.json`.
#[derive(Debug)]
pub struct JsonReporter {
    pub path: PathBuf,
}

impl Reporter for JsonReporter {
    fn finished(&mut self, report: &RunReport) -> anyhow::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let json = serde_json::to_vec_pretty(report)?;
        std::fs::write(&self.path, json).with_context(|| format!("writing {}", self.path.display()))
    }
}

/// Reads a result written by [`JsonReporter`].
pub fn read(path: &std::path::Path) -> anyhow::Result<RunReport> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
}
