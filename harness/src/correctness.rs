//! Correctness under load: sampled response values against what SQL
//! computes from the database after the run. A response that looks fine
//! and is wrong — what prepared statements through PgBouncer 1.18 give —
//! is a failure here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::db::Db;
use crate::engine::vu::TruthSample;

/// One disagreement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Mismatch {
    pub task: String,
    pub observed: String,
    pub expected: String,
    pub at_second: f64,
}

/// The correctness check's outcome.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CorrectnessReport {
    pub samples: u64,
    pub mismatches: u64,
    /// The first few, for the report.
    pub examples: Vec<Mismatch>,
}

pub const METRICS: [&str; 2] = ["correctness.samples", "correctness.mismatches"];

impl CorrectnessReport {
    pub fn values(&self) -> BTreeMap<String, f64> {
        BTreeMap::from([
            ("correctness.samples".to_owned(), self.samples as f64),
            ("correctness.mismatches".to_owned(), self.mismatches as f64),
        ])
    }
}

fn agrees(observed: &str, expected: &str, tolerance: f64) -> bool {
    let number = |text: &str| text.trim().replace(',', "").parse::<f64>();
    match (number(observed), number(expected)) {
        (Ok(a), Ok(b)) => (a - b).abs() <= tolerance,
        _ => observed.trim() == expected.trim(),
    }
}

/// Runs each sample's query on the direct database URL and compares.
pub async fn check(db: &Db, samples: &[TruthSample]) -> anyhow::Result<CorrectnessReport> {
    use sqlx::Row as _;
    let mut report = CorrectnessReport::default();
    for sample in samples {
        // Parameterless (values are quoted literals): the simple protocol,
        // every value as text.
        let rows = sqlx::Executor::fetch_all(db.pool(), sample.sql.as_str()).await?;
        let expected = rows
            .first()
            .and_then(|row| row.try_get_unchecked::<Option<String>, _>(0).ok().flatten())
            .unwrap_or_else(|| "(no row)".to_owned());
        report.samples += 1;
        if !agrees(&sample.observed, &expected, sample.tolerance) {
            report.mismatches += 1;
            if report.examples.len() < 10 {
                report.examples.push(Mismatch {
                    task: sample.task.clone(),
                    observed: sample.observed.clone(),
                    expected,
                    at_second: sample.at_ms as f64 / 1000.0,
                });
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_agree_within_the_tolerance() {
        assert!(agrees("123456.78", "123456.780", 0.005));
        assert!(agrees("1,000.50", "1000.5", 0.005));
        assert!(!agrees("123456.78", "123456.79", 0.005));
        assert!(agrees("abc", "abc", 0.0));
    }
}
