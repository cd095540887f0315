//! Locust's `_stats.csv` as a baseline, to compare with historical runs.
//! Each row keeps its counts and every percentile column; Locust rounds
//! latencies above 100 ms to two significant digits before it counts them,
//! so the gate reads each figure as the interval it stands for.
//!
//! A `_stats_history.csv` beside the `_stats.csv` (same prefix) is read too:
//! its rows cut the run into about ten windows, and how much the windows
//! differ says how far the requests moved together — a design effect that
//! widens the quantile and error-rate intervals as a recorded run's blocks
//! of seconds do. Locust writes one `Aggregated` row a tick unless run with
//! `--csv-full-history`; with the aggregate alone, each endpoint's windows
//! follow the aggregate's (a window where everything was 1.5× slower made
//! every endpoint 1.5× slower: the common shocks — a burst of logins, a busy
//! machine — that make requests of one run move together).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context as _, bail};

use super::figures::{Distribution, EndpointFigures, RunFigures, Source, Window, endpoint_key};
use super::{Baseline, SuiteBaseline};

/// A baseline from a Locust `_stats.csv`: every row but `Aggregated`,
/// keyed by its Type (the method) and Name. All rows go under `suite`.
pub fn import_locust(stats_csv: &Path, suite: &str, name: &str) -> anyhow::Result<Baseline> {
    let (mut reader, headers) = open(stats_csv)?;
    let column = |wanted: &str| column_of(&headers, stats_csv, "_stats.csv", wanted);
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
    percentiles.extend(percentile_columns(&headers));
    for wanted in ["50%", "95%", "99%"] {
        column(wanted)?;
    }
    let mut endpoints = BTreeMap::new();
    let mut aggregated: Option<(f64, Vec<(f64, f64)>)> = None;
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
        let columns = percentiles
            .iter()
            .map(|(q, i)| Ok((*q, number(*i)?)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if field(label) == "Aggregated" {
            aggregated = Some((count, columns));
            continue;
        }
        endpoints.insert(
            endpoint_key(field(kind), field(label)),
            EndpointFigures {
                requests: count as u64,
                failures: number(failures)? as u64,
                latency: Distribution::Percentiles {
                    columns,
                    windows: Vec::new(),
                },
            },
        );
    }
    if endpoints.is_empty() {
        bail!("{} has no endpoint rows", stats_csv.display());
    }
    if let Some(history) = history_beside(stats_csv) {
        let windows = read_history(&history)?;
        for (key, figures) in &mut endpoints {
            let chosen = windows.get(key).cloned().or_else(|| {
                let (total, overall) = aggregated.as_ref()?;
                let shared = windows.get("Aggregated")?;
                Some(follow_aggregate(figures, *total, overall, shared))
            });
            if let Distribution::Percentiles { windows, .. } = &mut figures.latency {
                *windows = chosen.unwrap_or_default();
            }
        }
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
                capacity: None,
            }],
        },
    );
    Ok(baseline)
}

fn open(path: &Path) -> anyhow::Result<(csv::Reader<std::fs::File>, csv::StringRecord)> {
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
    let headers = reader.headers()?.clone();
    Ok((reader, headers))
}

/// The index of column `wanted`, or which Locust file `path` seems not to be.
fn column_of(
    headers: &csv::StringRecord,
    path: &Path,
    file: &str,
    wanted: &str,
) -> anyhow::Result<usize> {
    headers.iter().position(|h| h == wanted).with_context(|| {
        format!(
            "{} has no `{wanted}` column: is it a Locust {file}?",
            path.display()
        )
    })
}

/// Every `NN%` column, as (quantile, column index).
fn percentile_columns(headers: &csv::StringRecord) -> Vec<(f64, usize)> {
    headers
        .iter()
        .enumerate()
        .filter_map(|(i, h)| Some((h.strip_suffix('%')?.parse::<f64>().ok()? / 100.0, i)))
        .collect()
}

/// `PREFIX_stats_history.csv` beside `PREFIX_stats.csv`, if it is there.
pub fn history_beside(stats_csv: &Path) -> Option<std::path::PathBuf> {
    let name = stats_csv.file_name()?.to_str()?;
    let prefix = name.strip_suffix("_stats.csv")?;
    let history = stats_csv.with_file_name(format!("{prefix}_stats_history.csv"));
    history.is_file().then_some(history)
}

/// How many windows the history is cut into: long enough that neighbouring
/// windows are nearly independent, many enough to see how they vary.
const WINDOWS: usize = 10;

/// Each history key's windows (`GET /x`, or `Aggregated`): the requests and
/// failures each added (from the cumulative totals) and the percentile
/// columns at its last tick.
fn read_history(path: &Path) -> anyhow::Result<BTreeMap<String, Vec<Window>>> {
    let (mut reader, headers) = open(path)?;
    let column = |wanted: &str| column_of(&headers, path, "_stats_history.csv", wanted);
    let (kind, label) = (column("Type")?, column("Name")?);
    let (total, failed) = (
        column("Total Request Count")?,
        column("Total Failure Count")?,
    );
    let percentiles = percentile_columns(&headers);
    // Per key, a tick each: cumulative requests and failures, and columns.
    type Tick = (u64, u64, Vec<(f64, f64)>);
    let mut ticks: BTreeMap<String, Vec<Tick>> = BTreeMap::new();
    for (line, record) in reader.records().enumerate() {
        let record = record.with_context(|| format!("{}: row {}", path.display(), line + 2))?;
        let field = |i: usize| record.get(i).unwrap_or("").trim();
        let count = |i: usize| field(i).parse::<f64>().map_or(0, |v| v as u64);
        let columns: Vec<(f64, f64)> = percentiles
            .iter()
            .filter_map(|(q, i)| Some((*q, field(*i).parse::<f64>().ok()?)))
            .collect();
        let key = match field(label) {
            "Aggregated" => "Aggregated".to_owned(),
            name => endpoint_key(field(kind), name),
        };
        ticks
            .entry(key)
            .or_default()
            .push((count(total), count(failed), columns));
    }
    Ok(ticks
        .into_iter()
        .map(|(key, ticks)| {
            let size = ticks.len().div_ceil(WINDOWS).max(1);
            let mut windows = Vec::new();
            let (mut requests_before, mut failures_before) = (0, 0);
            for chunk in ticks.chunks(size) {
                let (requests, failures, columns) = chunk.last().expect("a chunk is not empty");
                windows.push(Window {
                    requests: requests.saturating_sub(requests_before),
                    failures: failures.saturating_sub(failures_before),
                    // A tick with no request prints N/A: no columns.
                    columns: if columns.len() == percentiles.len() {
                        columns.clone()
                    } else {
                        Vec::new()
                    },
                });
                (requests_before, failures_before) = (*requests, *failures);
            }
            (key, windows)
        })
        .collect())
}

/// An endpoint's windows when the history has only the aggregate: its
/// requests split as the aggregate's were, and each window's percentiles
/// its own scaled as the aggregate's moved from the run's.
fn follow_aggregate(
    figures: &EndpointFigures,
    total: f64,
    overall: &[(f64, f64)],
    shared: &[Window],
) -> Vec<Window> {
    let Distribution::Percentiles { columns, .. } = &figures.latency else {
        return Vec::new();
    };
    shared
        .iter()
        .map(|window| {
            let share = if total > 0.0 {
                window.requests as f64 / total
            } else {
                0.0
            };
            let scaled: Option<Vec<(f64, f64)>> = columns
                .iter()
                .map(|(q, ms)| {
                    let run = overall.iter().find(|(oq, _)| (oq - q).abs() < 1e-9)?.1;
                    let now = window.columns.iter().find(|(wq, _)| (wq - q).abs() < 1e-9);
                    match now {
                        // The 0 % column (the minimum) is not in the history.
                        None if *q == 0.0 => Some((*q, *ms)),
                        Some((_, now)) if run > 0.0 => Some((*q, ms * now / run)),
                        _ => None,
                    }
                })
                .collect();
            Window {
                requests: (figures.requests as f64 * share).round() as u64,
                failures: (figures.failures as f64 * share).round() as u64,
                columns: scaled.unwrap_or_default(),
            }
        })
        .collect()
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

    /// A run of 20 ticks: `slow(tick)` scales every latency of that tick.
    fn run_with_history(dir: &Path, slow: impl Fn(u64) -> f64) -> std::path::PathBuf {
        let stats = dir.join("run_stats.csv");
        std::fs::write(
            &stats,
            "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%\n\
             GET,/dashboard/,2000,0,45,60.5,3,900,5120,100.0,0.0,45,50,55,60,80,120,200,300,800,900,900\n\
             ,Aggregated,2000,0,45,60.5,3,900,5120,100.0,0.0,45,50,55,60,80,120,200,300,800,900,900\n",
        )
        .unwrap();
        let mut history = String::from(
            "Timestamp,User Count,Type,Name,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%,Total Request Count,Total Failure Count,Total Median Response Time,Total Average Response Time,Total Min Response Time,Total Max Response Time,Total Average Content Size\n",
        );
        let base = [
            45.0, 50.0, 55.0, 60.0, 80.0, 120.0, 200.0, 300.0, 800.0, 900.0, 900.0,
        ];
        for tick in 0..20u64 {
            let columns: Vec<String> = base
                .iter()
                .map(|ms| format!("{:.0}", ms * slow(tick)))
                .collect();
            history.push_str(&format!(
                "{},10,,Aggregated,100,0,{},{},0,45,60,3,900,5120\n",
                1_700_000_000 + tick,
                columns.join(","),
                (tick + 1) * 100
            ));
        }
        std::fs::write(dir.join("run_stats_history.csv"), history).unwrap();
        stats
    }

    #[test]
    fn a_history_beside_the_stats_widens_intervals_when_its_windows_move_together() {
        use super::super::Metric;
        use super::super::statistics::{estimate, z_for};
        let p95 = |stats: &Path| {
            let baseline = import_locust(stats, "core", "locust").unwrap();
            let run = &baseline.suites["core"].runs[0];
            let dashboard = &run.endpoints["GET /dashboard/"];
            match &dashboard.latency {
                Distribution::Percentiles { windows, .. } => assert_eq!(windows.len(), 10),
                other => panic!("{other:?}"),
            }
            estimate(dashboard, Metric::P95, run.measured_seconds, z_for(0.99)).unwrap()
        };
        let steady_dir = tempfile::tempdir().unwrap();
        let steady = p95(&run_with_history(steady_dir.path(), |_| 1.0));
        assert!(steady.design_effect < 1.05, "{steady:?}");
        // Four ticks in the middle twice as slow: the windows disagree.
        let bursty_dir = tempfile::tempdir().unwrap();
        let bursty = p95(&run_with_history(bursty_dir.path(), |tick| {
            if (8..12).contains(&tick) { 2.0 } else { 1.0 }
        }));
        assert!(bursty.design_effect > 2.0, "{bursty:?}");
        assert!(
            bursty.high - bursty.low >= steady.high - steady.low,
            "{bursty:?} against {steady:?}"
        );
    }
}
