//! Locust-compatible CSV files — `_stats.csv`, `_failures.csv` and
//! `_stats_history.csv` with exactly Locust's columns — so spreadsheets and
//! scripts written for the history's Locust runs keep working.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::{Reporter, RunReport};
use crate::metrics::summary::{EndpointSummary, LOCUST_QUANTILES, RunSummary};

pub const STATS_COLUMNS: [&str; 22] = [
    "Type",
    "Name",
    "Request Count",
    "Failure Count",
    "Median Response Time",
    "Average Response Time",
    "Min Response Time",
    "Max Response Time",
    "Average Content Size",
    "Requests/s",
    "Failures/s",
    "50%",
    "66%",
    "75%",
    "80%",
    "90%",
    "95%",
    "98%",
    "99%",
    "99.9%",
    "99.99%",
    "100%",
];

pub const FAILURES_COLUMNS: [&str; 4] = ["Method", "Name", "Error", "Occurrences"];

pub const HISTORY_COLUMNS: [&str; 24] = [
    "Timestamp",
    "User Count",
    "Type",
    "Name",
    "Requests/s",
    "Failures/s",
    "50%",
    "66%",
    "75%",
    "80%",
    "90%",
    "95%",
    "98%",
    "99%",
    "99.9%",
    "99.99%",
    "100%",
    "Total Request Count",
    "Total Failure Count",
    "Total Median Response Time",
    "Total Average Response Time",
    "Total Min Response Time",
    "Total Max Response Time",
    "Total Average Content Size",
];

/// Locust writes percentiles as whole milliseconds, and `N/A` without requests.
fn percentile_fields(endpoint: &EndpointSummary) -> Vec<String> {
    if endpoint.requests == 0 {
        return vec!["N/A".to_owned(); LOCUST_QUANTILES.len()];
    }
    LOCUST_QUANTILES
        .iter()
        .map(|q| format!("{}", endpoint.histogram.0.value_at_quantile(*q) / 1000))
        .collect()
}

fn stats_row(endpoint: &EndpointSummary) -> Vec<String> {
    let latency = &endpoint.latency_ms;
    let mut row = vec![
        endpoint.meta.method.clone(),
        endpoint.meta.name.clone(),
        endpoint.requests.to_string(),
        endpoint.failures.to_string(),
        format!("{}", latency.p50.round()),
        format!("{}", latency.mean),
        format!("{}", latency.min),
        format!("{}", latency.max),
        format!("{}", endpoint.average_bytes()),
        format!("{}", endpoint.requests_per_second),
        format!("{}", endpoint.failures_per_second),
    ];
    row.extend(percentile_fields(endpoint));
    row
}

/// Writes the three files as `<dir>/<prefix>_stats.csv` and so on.
pub fn write(summary: &RunSummary, dir: &Path, prefix: &str) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let stats_path = dir.join(format!("{prefix}_stats.csv"));
    let mut stats = csv::Writer::from_path(&stats_path)
        .with_context(|| format!("writing {}", stats_path.display()))?;
    stats.write_record(STATS_COLUMNS)?;
    let mut endpoints: Vec<&EndpointSummary> = summary
        .endpoints
        .iter()
        .filter(|e| e.requests > 0)
        .collect();
    // Locust sorts entries by (name, method).
    endpoints.sort_by(|a, b| (&a.meta.name, &a.meta.method).cmp(&(&b.meta.name, &b.meta.method)));
    for endpoint in endpoints {
        stats.write_record(stats_row(endpoint))?;
    }
    stats.write_record(stats_row(&summary.total))?;
    stats.flush()?;

    let failures_path = dir.join(format!("{prefix}_failures.csv"));
    let mut failures = csv::Writer::from_path(&failures_path)?;
    failures.write_record(FAILURES_COLUMNS)?;
    for failure in summary.failures() {
        failures.write_record([
            failure.method.clone(),
            failure.endpoint.clone(),
            format!("{}: {}", failure.record.kind.name(), failure.record.sample),
            failure.record.count.to_string(),
        ])?;
    }
    failures.flush()?;

    let history_path = dir.join(format!("{prefix}_stats_history.csv"));
    let mut history = csv::Writer::from_path(&history_path)?;
    history.write_record(HISTORY_COLUMNS)?;
    let started = humantime::parse_rfc3339(&summary.started_at)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    for point in &summary.series {
        let mut row = vec![
            (started + point.second + 1).to_string(),
            point.users.to_string(),
            String::new(),
            "Aggregated".to_owned(),
            format!("{:.6}", point.requests as f64),
            format!("{:.6}", point.failures as f64),
        ];
        if point.requests == 0 {
            row.extend(std::iter::repeat_n(
                "N/A".to_owned(),
                LOCUST_QUANTILES.len(),
            ));
        } else {
            row.extend(
                point
                    .percentiles_ms
                    .iter()
                    .map(|p| format!("{}", p.floor() as u64)),
            );
        }
        let totals = &point.totals;
        row.extend([
            totals.requests.to_string(),
            totals.failures.to_string(),
            format!("{}", totals.median_ms.round()),
            format!("{}", totals.mean_ms),
            format!("{}", totals.min_ms),
            format!("{}", totals.max_ms),
            format!("{}", totals.average_bytes),
        ]);
        history.write_record(row)?;
    }
    history.flush()?;
    Ok(vec![stats_path, failures_path, history_path])
}

/// Writes the Locust files into a run's folder when the run is over.
#[derive(Debug)]
pub struct LocustCsvReporter {
    pub dir: PathBuf,
    pub prefix: String,
}

impl Reporter for LocustCsvReporter {
    fn finished(&mut self, report: &RunReport) -> anyhow::Result<()> {
        write(&report.summary, &self.dir, &self.prefix).map(drop)
    }
}
