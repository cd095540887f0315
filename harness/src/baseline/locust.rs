//! Locust's `_stats.csv` as a baseline, to compare with historical runs.
//! Each row keeps its counts and every percentile column; Locust rounds
//! latencies above 100 ms to two significant digits before it counts them,
//! so the gate reads each figure as the interval it stands for.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context as _, bail};

use super::figures::{Distribution, EndpointFigures, RunFigures, Source, endpoint_key};
use super::{Baseline, SuiteBaseline};

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
    // Every `NN%` column, as (quantile, column index); the minimum is the
    // 0 % column, so a median's interval has a lower bound.
    let mut percentiles: Vec<(f64, usize)> = headers
        .iter()
        .position(|h| h == "Min Response Time")
        .map(|i| (0.0, i))
        .into_iter()
        .collect();
    percentiles.extend(
        headers
            .iter()
            .enumerate()
            .filter_map(|(i, h)| Some((h.strip_suffix('%')?.parse::<f64>().ok()? / 100.0, i))),
    );
    for wanted in ["50%", "95%", "99%"] {
        column(wanted)?;
    }
    let mut endpoints = BTreeMap::new();
    let mut measured_seconds = 0.0f64;
    for (line, record) in reader.records().enumerate() {
        let record =
            record.with_context(|| format!("{}: row {}", stats_csv.display(), line + 2))?;
        let field = |i: usize| record.get(i).unwrap_or("").trim();
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
        let (count, per_second) = (number(requests)?, number(rps)?);
        if per_second > 0.0 {
            measured_seconds = measured_seconds.max(count / per_second);
        }
        if field(label) == "Aggregated" {
            continue;
        }
        let columns = percentiles
            .iter()
            .map(|(q, i)| Ok((*q, number(*i)?)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        endpoints.insert(
            endpoint_key(field(kind), field(label)),
            EndpointFigures {
                requests: count as u64,
                failures: number(failures)? as u64,
                latency: Distribution::Percentiles { columns },
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
            runs: vec![RunFigures {
                profile: None,
                source: Source::Locust {
                    file: stats_csv.display().to_string(),
                },
                measured_seconds,
                machine: None,
                endpoints,
            }],
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
    let endpoints = imported.suites[suite].runs[0].endpoints.len();
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
        let core = &baseline.suites["core"].runs[0];
        assert_eq!(core.endpoints.len(), 2);
        assert_eq!(core.measured_seconds, 60.0);
        let dashboard = &core.endpoints["GET /dashboard/"];
        assert_eq!((dashboard.requests, dashboard.failures), (1200, 12));
        let point = |metric| super::super::statistics::point(dashboard, metric, 60.0);
        use super::super::Metric;
        assert_eq!(
            (point(Metric::P50), point(Metric::P95), point(Metric::P99)),
            (45.0, 120.0, 300.0)
        );
        let bad = dir.path().join("not_stats.csv");
        std::fs::write(&bad, "a,b\n1,2\n").unwrap();
        let error = import_locust(&bad, "core", "x").unwrap_err();
        assert!(
            format!("{error:#}").contains("no `Type` column"),
            "{error:#}"
        );
    }
}
