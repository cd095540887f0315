//! Locust's `_stats.csv` as a baseline, to compare with historical runs.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context as _, bail};

use super::Baseline;
use super::figures::{EndpointFigures, Source, SuiteBaseline, endpoint_key};

/// A baseline from a Locust `_stats.csv`: every row but `Aggregated`,
/// keyed by its Type (the method) and Name. All rows go under `suite`.
pub fn import_locust(stats_csv: &Path, suite: &str, name: &str) -> anyhow::Result<Baseline> {
    let mut reader = csv::Reader::from_path(stats_csv)
        .with_context(|| format!("reading {}", stats_csv.display()))?;
    let headers = reader.headers()?.clone();
    let column = |wanted: &str| -> anyhow::Result<usize> {
        headers.iter().position(|h| h == wanted).with_context(|| {
            format!(
                "{} has no `{wanted}` column: is it a Locust _stats.csv?",
                stats_csv.display()
            )
        })
    };
    let (kind, label) = (column("Type")?, column("Name")?);
    let (requests, failures) = (column("Request Count")?, column("Failure Count")?);
    let rps = column("Requests/s")?;
    let (p50, p95, p99) = (column("50%")?, column("95%")?, column("99%")?);
    let mut endpoints = BTreeMap::new();
    for (line, record) in reader.records().enumerate() {
        let record =
            record.with_context(|| format!("{}: row {}", stats_csv.display(), line + 2))?;
        let field = |i: usize| record.get(i).unwrap_or("").trim();
        if field(label) == "Aggregated" {
            continue;
        }
        let number = |i: usize| -> anyhow::Result<f64> {
            match field(i) {
                "N/A" | "" => Ok(0.0),
                text => text.parse::<f64>().with_context(|| {
                    format!(
                        "{}: row {}, column `{}`: `{text}` is not a number",
                        stats_csv.display(),
                        line + 2,
                        &headers[i]
                    )
                }),
            }
        };
        endpoints.insert(
            endpoint_key(field(kind), field(label)),
            EndpointFigures {
                requests: number(requests)? as u64,
                failures: number(failures)? as u64,
                p50_ms: number(p50)?,
                p95_ms: number(p95)?,
                p99_ms: number(p99)?,
                requests_per_second: number(rps)?,
                noise: None,
            },
        );
    }
    if endpoints.is_empty() {
        bail!("{} has no endpoint rows", stats_csv.display());
    }
    let mut baseline = Baseline::new(name);
    baseline.suites.insert(
        suite.to_owned(),
        SuiteBaseline {
            profile: None,
            source: Source::Locust {
                file: stats_csv.display().to_string(),
            },
            measured_seconds: 0.0,
            endpoints,
        },
    );
    Ok(baseline)
}

/// Imports a Locust `_stats.csv` into baseline `name` in `dir` (created
/// if new, other suites kept); returns its path and how many endpoints came in.
pub fn import_into(
    stats_csv: &Path,
    suite: &str,
    name: &str,
    dir: &Path,
) -> anyhow::Result<(std::path::PathBuf, usize)> {
    let imported = import_locust(stats_csv, suite, name)?;
    let mut baseline = Baseline::load_or_new(dir, name)?;
    let endpoints = imported.suites[suite].endpoints.len();
    baseline.suites.extend(imported.suites);
    Ok((baseline.save(dir)?, endpoints))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locust_stats_import_keys_rows_by_type_and_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run_stats.csv");
        std::fs::write(
            &path,
            "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%\n\
             GET,/dashboard/,1200,12,45,60.5,3,900,5120,20.0,0.2,45,50,55,60,80,120,200,300,800,900,900\n\
             POST,/accounts/login/,300,0,90,95,40,400,100,5.0,0.0,90,95,100,110,150,200,250,300,400,400,400\n\
             ,Aggregated,1500,12,50,67,3,900,4100,25.0,0.2,50,60,70,80,100,150,220,300,800,900,900\n",
        )
        .unwrap();
        let baseline = import_locust(&path, "core", "locust-2024").unwrap();
        let core = &baseline.suites["core"];
        assert_eq!(core.endpoints.len(), 2);
        let dashboard = &core.endpoints["GET /dashboard/"];
        assert_eq!((dashboard.requests, dashboard.failures), (1200, 12));
        assert_eq!(
            (dashboard.p50_ms, dashboard.p95_ms, dashboard.p99_ms),
            (45.0, 120.0, 300.0)
        );
        assert!(dashboard.noise.is_none());
        let bad = dir.path().join("not_stats.csv");
        std::fs::write(&bad, "a,b\n1,2\n").unwrap();
        let error = import_locust(&bad, "core", "x").unwrap_err();
        assert!(
            format!("{error:#}").contains("no `Type` column"),
            "{error:#}"
        );
    }
}
