//! Baselines and the pull-request gate.
//!
//! A baseline is a JSON file (`perf-baselines/NAME.json` by default, meant to
//! be committed) holding, per suite and endpoint, p50/p95/p99, error rate and
//! throughput, each with an estimate of its own noise taken from the run's
//! per-second windows. A comparison calls a change *worse* only when it
//! exceeds all of: the relative threshold, an absolute floor, and `k` times
//! the combined noise of both runs — so a noisy CI machine does not fail
//! pull requests, and a real regression still does.
//!
//! Quantiles are judged only where both runs saw enough requests for them to
//! mean something: at least [`GateSettings::min_tail_samples`] requests
//! beyond the quantile (a p99 of 80 requests is their maximum).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

use crate::metrics::summary::{EndpointSummary, RunSummary, SecondPoint};

pub const BASELINE_SCHEMA: &str = "ahsp-perf/baseline/v1";

/// A named baseline: one entry per suite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    pub schema: String,
    pub name: String,
    pub suites: BTreeMap<String, SuiteBaseline>,
}

/// Where a suite's figures came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Source {
    /// An ahsp-perf run.
    Run { started_at: String, target: String },
    /// A Locust `_stats.csv` (no per-second data: noise unknown).
    Locust { file: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuiteBaseline {
    /// The profile the figures were measured under; `None` when unknown (Locust).
    pub profile: Option<String>,
    pub source: Source,
    pub measured_seconds: f64,
    /// Keyed by `METHOD name`.
    pub endpoints: BTreeMap<String, EndpointFigures>,
}

/// One endpoint's figures and their noise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointFigures {
    pub requests: u64,
    pub failures: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub requests_per_second: f64,
    /// Standard errors of the whole-run figures, from per-second windows.
    pub noise: Option<Noise>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Noise {
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub requests_per_second: f64,
    /// How many per-second windows the estimate rests on.
    pub windows: usize,
}

impl EndpointFigures {
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.failures as f64 / self.requests as f64
        }
    }
}

pub fn endpoint_key(method: &str, name: &str) -> String {
    format!("{method} {name}")
}

impl SuiteBaseline {
    /// The figures of a finished run (measured phase only).
    pub fn from_run(summary: &RunSummary) -> SuiteBaseline {
        let endpoints = summary
            .endpoints
            .iter()
            .enumerate()
            .map(|(index, endpoint)| {
                (
                    endpoint_key(&endpoint.meta.method, &endpoint.meta.name),
                    figures(endpoint, per_second_noise(&summary.series, index)),
                )
            })
            .collect();
        SuiteBaseline {
            profile: Some(summary.profile.clone()),
            source: Source::Run {
                started_at: summary.started_at.clone(),
                target: summary.target.clone(),
            },
            measured_seconds: summary.measured_seconds,
            endpoints,
        }
    }
}

fn figures(endpoint: &EndpointSummary, noise: Option<Noise>) -> EndpointFigures {
    EndpointFigures {
        requests: endpoint.requests,
        failures: endpoint.failures,
        p50_ms: endpoint.latency_ms.p50,
        p95_ms: endpoint.latency_ms.p95,
        p99_ms: endpoint.latency_ms.p99,
        requests_per_second: endpoint.requests_per_second,
        noise,
    }
}

/// The standard error of each whole-run figure, estimated from how much the
/// figure varies between the measured seconds: a robust standard deviation
/// (1.4826 × the median absolute deviation) over √windows. Seconds in which
/// the endpoint saw no request count for throughput, not for latency.
fn per_second_noise(series: &[SecondPoint], index: usize) -> Option<Noise> {
    let measured: Vec<_> = series
        .iter()
        .filter(|s| !s.warm_up)
        .filter_map(|s| s.endpoints.get(index))
        .collect();
    if measured.len() < 3 {
        return None;
    }
    let active: Vec<_> = measured.iter().filter(|e| e.requests > 0).collect();
    let latency = |pick: fn(&crate::metrics::summary::EndpointSecond) -> f64| {
        let values: Vec<f64> = active.iter().map(|e| pick(e)).collect();
        standard_error(&values)
    };
    let throughput: Vec<f64> = measured.iter().map(|e| e.requests as f64).collect();
    Some(Noise {
        p50_ms: latency(|e| e.p50_ms),
        p95_ms: latency(|e| e.p95_ms),
        p99_ms: latency(|e| e.p99_ms),
        requests_per_second: standard_error(&throughput),
        windows: measured.len(),
    })
}

fn standard_error(values: &[f64]) -> f64 {
    if values.len() < 2 {
        return 0.0;
    }
    let median = median(values);
    let deviations: Vec<f64> = values.iter().map(|v| (v - median).abs()).collect();
    1.4826 * median_of(deviations) / (values.len() as f64).sqrt()
}

fn median(values: &[f64]) -> f64 {
    median_of(values.to_vec())
}

fn median_of(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
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

/// How strict the gate is.
#[derive(Debug, Clone, PartialEq)]
pub struct GateSettings {
    /// A change must exceed this fraction of the baseline value (0.25 = 25 %).
    pub relative: f64,
    /// … and this many standard errors of the two runs combined …
    pub noise_factor: f64,
    /// … and, for latencies, this many milliseconds …
    pub latency_floor_ms: f64,
    /// … and, for error rates, this many percentage points.
    pub error_rate_floor_points: f64,
    /// A quantile is judged only with this many requests beyond it in both runs.
    pub min_tail_samples: f64,
}

impl Default for GateSettings {
    fn default() -> GateSettings {
        GateSettings {
            relative: 0.25,
            noise_factor: 3.0,
            latency_floor_ms: 5.0,
            error_rate_floor_points: 1.0,
            min_tail_samples: 5.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Better,
    Same,
    Worse,
    /// Too few requests in one of the runs to judge this figure.
    TooFewSamples,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Better => "better",
            Verdict::Same => "same",
            Verdict::Worse => "WORSE",
            Verdict::TooFewSamples => "too few samples",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Metric {
    P50,
    P95,
    P99,
    ErrorRate,
    Throughput,
}

impl Metric {
    pub fn label(self) -> &'static str {
        match self {
            Metric::P50 => "p50",
            Metric::P95 => "p95",
            Metric::P99 => "p99",
            Metric::ErrorRate => "error rate",
            Metric::Throughput => "throughput",
        }
    }

    fn format(self, value: f64) -> String {
        match self {
            Metric::P50 | Metric::P95 | Metric::P99 => format!("{value:.1} ms"),
            Metric::ErrorRate => format!("{:.2} %", value * 100.0),
            Metric::Throughput => format!("{value:.1} req/s"),
        }
    }
}

/// One figure of one endpoint, compared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub endpoint: String,
    pub metric: Metric,
    pub baseline: f64,
    pub current: f64,
    /// Combined standard error of the two runs; `None` when unknown.
    pub noise: Option<f64>,
    pub verdict: Verdict,
}

impl Row {
    pub fn change_text(&self) -> String {
        let delta = self.current - self.baseline;
        let relative = if self.baseline.abs() > f64::EPSILON {
            format!(" ({:+.0} %)", delta / self.baseline * 100.0)
        } else {
            String::new()
        };
        format!("{}{}", signed(self.metric, delta), relative)
    }
}

fn signed(metric: Metric, delta: f64) -> String {
    let text = metric.format(delta.abs());
    if delta < 0.0 {
        format!("-{text}")
    } else {
        format!("+{text}")
    }
}

/// A suite's run against its baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub baseline: String,
    pub suite: String,
    pub rows: Vec<Row>,
    /// Endpoints only in the baseline, or only in this run (not judged).
    pub missing: Vec<String>,
    pub new: Vec<String>,
    /// Things a reader should know (a different profile, no noise estimate).
    pub notes: Vec<String>,
}

impl Comparison {
    pub fn passed(&self) -> bool {
        self.rows.iter().all(|row| row.verdict != Verdict::Worse)
    }

    pub fn worse(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|row| row.verdict == Verdict::Worse)
    }
}

/// Compares `current` with `baseline` for one suite.
pub fn compare(
    baseline_name: &str,
    suite: &str,
    baseline: &SuiteBaseline,
    current: &SuiteBaseline,
    settings: &GateSettings,
) -> Comparison {
    let mut comparison = Comparison {
        baseline: baseline_name.to_owned(),
        suite: suite.to_owned(),
        rows: Vec::new(),
        missing: Vec::new(),
        new: Vec::new(),
        notes: Vec::new(),
    };
    match (&baseline.profile, &current.profile) {
        (Some(then), Some(now)) if then != now => comparison.notes.push(format!(
            "the baseline was measured under profile `{then}`, this run under `{now}`"
        )),
        (None, _) => comparison.notes.push(
            "the baseline has no per-second data (imported from Locust): only the relative \
             threshold and the floors apply"
                .to_owned(),
        ),
        _ => {}
    }
    for (key, then) in &baseline.endpoints {
        let Some(now) = current.endpoints.get(key) else {
            comparison.missing.push(key.clone());
            continue;
        };
        for metric in [
            Metric::P50,
            Metric::P95,
            Metric::P99,
            Metric::ErrorRate,
            Metric::Throughput,
        ] {
            comparison
                .rows
                .push(compare_metric(key, metric, then, now, settings));
        }
    }
    comparison.new = current
        .endpoints
        .keys()
        .filter(|key| !baseline.endpoints.contains_key(*key))
        .cloned()
        .collect();
    comparison
}

fn compare_metric(
    key: &str,
    metric: Metric,
    then: &EndpointFigures,
    now: &EndpointFigures,
    settings: &GateSettings,
) -> Row {
    let pick = |figures: &EndpointFigures| match metric {
        Metric::P50 => figures.p50_ms,
        Metric::P95 => figures.p95_ms,
        Metric::P99 => figures.p99_ms,
        Metric::ErrorRate => figures.error_rate(),
        Metric::Throughput => figures.requests_per_second,
    };
    let noise_of = |figures: &EndpointFigures| -> Option<f64> {
        match metric {
            Metric::ErrorRate => {
                let p = figures.error_rate();
                // A proportion's standard error; with no failure seen, that of
                // one failure, so a clean baseline is not infinitely precise.
                let n = figures.requests.max(1) as f64;
                let p = if figures.failures == 0 { 1.0 / n } else { p };
                Some((p * (1.0 - p) / n).sqrt())
            }
            _ => figures.noise.as_ref().map(|noise| match metric {
                Metric::P50 => noise.p50_ms,
                Metric::P95 => noise.p95_ms,
                Metric::P99 => noise.p99_ms,
                _ => noise.requests_per_second,
            }),
        }
    };
    let (baseline, current) = (pick(then), pick(now));
    let noise = match (noise_of(then), noise_of(now)) {
        (Some(a), Some(b)) => Some((a * a + b * b).sqrt()),
        (Some(a), None) | (None, Some(a)) => Some(a * std::f64::consts::SQRT_2),
        (None, None) => None,
    };
    let tail = match metric {
        Metric::P50 => Some(0.50),
        Metric::P95 => Some(0.95),
        Metric::P99 => Some(0.99),
        _ => None,
    };
    let enough = |figures: &EndpointFigures| {
        tail.is_none_or(|q| figures.requests as f64 * (1.0 - q) >= settings.min_tail_samples)
    };
    let verdict = if !enough(then) || !enough(now) {
        Verdict::TooFewSamples
    } else {
        let delta = current - baseline;
        let floor = match metric {
            Metric::P50 | Metric::P95 | Metric::P99 => settings.latency_floor_ms,
            Metric::ErrorRate => settings.error_rate_floor_points / 100.0,
            Metric::Throughput => 0.0,
        };
        let significant = delta.abs() > settings.relative * baseline.abs()
            && delta.abs() > floor
            && noise.is_none_or(|noise| delta.abs() > settings.noise_factor * noise);
        // Higher latency and error rate are worse; lower throughput is.
        let worse_direction = match metric {
            Metric::Throughput => delta < 0.0,
            _ => delta > 0.0,
        };
        match (significant, worse_direction) {
            (false, _) => Verdict::Same,
            (true, true) => Verdict::Worse,
            (true, false) => Verdict::Better,
        }
    };
    Row {
        endpoint: key.to_owned(),
        metric,
        baseline,
        current,
        noise,
        verdict,
    }
}

/// The comparison as a Markdown table (also readable in a terminal).
pub fn render_markdown(comparison: &Comparison, settings: &GateSettings) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let verdict = if comparison.passed() {
        "passed"
    } else {
        "FAILED"
    };
    let _ = writeln!(
        out,
        "### Baseline `{}` — {}: gate {verdict}\n",
        comparison.baseline, comparison.suite
    );
    let _ = writeln!(
        out,
        "A change is worse only beyond {:.0} %, {} × the noise, and {} ms (latency) or {} points (error rate).\n",
        settings.relative * 100.0,
        settings.noise_factor,
        settings.latency_floor_ms,
        settings.error_rate_floor_points
    );
    let _ = writeln!(
        out,
        "| Endpoint | Metric | Baseline | Current | Change | Noise (±1σ) | Verdict |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---|");
    let mut rows: Vec<&Row> = comparison.rows.iter().collect();
    // Regressions first, so a reader sees them without scrolling; among them
    // latency and errors before throughput, which is often their consequence.
    rows.sort_by_key(|row| {
        (
            row.verdict != Verdict::Worse,
            row.metric == Metric::Throughput,
        )
    });
    for row in rows {
        let noise = row
            .noise
            .map(|n| row.metric.format(n))
            .unwrap_or_else(|| "n/a".to_owned());
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} | {} | {} |",
            row.endpoint.replace('|', "\\|"),
            row.metric.label(),
            row.metric.format(row.baseline),
            row.metric.format(row.current),
            row.change_text(),
            noise,
            row.verdict.label()
        );
    }
    for key in &comparison.missing {
        let _ = writeln!(out, "\n- `{key}` is in the baseline but not in this run");
    }
    for key in &comparison.new {
        let _ = writeln!(out, "\n- `{key}` is new in this run (not judged)");
    }
    let worse = |throughput: bool| {
        comparison
            .worse()
            .any(|row| (row.metric == Metric::Throughput) == throughput)
    };
    if worse(true) && worse(false) {
        let _ = writeln!(
            out,
            "\n- when users wait for each response (a closed model), one slower endpoint lowers \
             every endpoint's throughput: read the latency and error rows first"
        );
    }
    for note in &comparison.notes {
        let _ = writeln!(out, "\n- {note}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(p50: f64, p95: f64, rps: f64, noise: f64) -> EndpointFigures {
        EndpointFigures {
            requests: 2000,
            failures: 0,
            p50_ms: p50,
            p95_ms: p95,
            p99_ms: p95 * 1.5,
            requests_per_second: rps,
            noise: Some(Noise {
                p50_ms: noise,
                p95_ms: noise,
                p99_ms: noise,
                requests_per_second: noise,
                windows: 30,
            }),
        }
    }

    fn suite(figures: EndpointFigures) -> SuiteBaseline {
        SuiteBaseline {
            profile: Some("ci".into()),
            source: Source::Run {
                started_at: "t".into(),
                target: "x".into(),
            },
            measured_seconds: 30.0,
            endpoints: [("GET /a".to_owned(), figures)].into(),
        }
    }

    fn verdict(then: EndpointFigures, now: EndpointFigures, metric: Metric) -> Verdict {
        let c = compare(
            "b",
            "s",
            &suite(then),
            &suite(now),
            &GateSettings::default(),
        );
        c.rows.iter().find(|r| r.metric == metric).unwrap().verdict
    }

    #[test]
    fn a_change_within_the_noise_is_the_same() {
        // +40 % but the runs themselves vary by ±4 ms.
        let then = figures(10.0, 20.0, 50.0, 4.0);
        let now = figures(14.0, 28.0, 50.0, 4.0);
        assert_eq!(verdict(then, now, Metric::P95), Verdict::Same);
    }

    #[test]
    fn a_change_below_the_relative_threshold_is_the_same_however_quiet() {
        let then = figures(100.0, 200.0, 50.0, 0.01);
        let now = figures(110.0, 220.0, 50.0, 0.01);
        assert_eq!(verdict(then, now, Metric::P95), Verdict::Same);
    }

    #[test]
    fn a_change_beyond_threshold_floor_and_noise_is_worse_or_better() {
        let then = figures(10.0, 20.0, 50.0, 0.5);
        let slow = figures(10.0, 320.0, 50.0, 0.5);
        assert_eq!(verdict(then.clone(), slow, Metric::P95), Verdict::Worse);
        let fast = figures(10.0, 8.0, 50.0, 0.5);
        assert_eq!(verdict(then.clone(), fast, Metric::P95), Verdict::Better);
        let starved = figures(10.0, 20.0, 20.0, 0.5);
        assert_eq!(verdict(then, starved, Metric::Throughput), Verdict::Worse);
    }

    #[test]
    fn tiny_absolute_changes_never_fail_the_gate() {
        // 1 ms → 3 ms is +200 % and far outside the noise, but below the floor.
        let then = figures(1.0, 1.0, 50.0, 0.01);
        let now = figures(3.0, 3.0, 50.0, 0.01);
        assert_eq!(verdict(then, now, Metric::P95), Verdict::Same);
    }

    #[test]
    fn tails_need_enough_requests() {
        let mut then = figures(10.0, 20.0, 50.0, 0.5);
        then.requests = 200; // 2 requests beyond p99
        let now = figures(10.0, 20.0, 50.0, 0.5);
        assert_eq!(
            verdict(then.clone(), now.clone(), Metric::P99),
            Verdict::TooFewSamples
        );
        assert_eq!(verdict(then, now, Metric::P95), Verdict::Same);
    }

    #[test]
    fn error_rates_compare_as_proportions() {
        let then = figures(10.0, 20.0, 50.0, 0.5);
        let mut now = then.clone();
        now.failures = 100; // 5 %
        assert_eq!(
            verdict(then.clone(), now, Metric::ErrorRate),
            Verdict::Worse
        );
        let mut few = then.clone();
        few.failures = 4; // 0.2 %: below the 1-point floor
        assert_eq!(verdict(then, few, Metric::ErrorRate), Verdict::Same);
    }

    #[test]
    fn baselines_round_trip_through_their_directory() {
        let dir = tempfile::tempdir().unwrap();
        let mut baseline = Baseline::new("main");
        baseline
            .suites
            .insert("core".into(), suite(figures(1.0, 2.0, 3.0, 0.1)));
        baseline.save(dir.path()).unwrap();
        assert_eq!(Baseline::load(dir.path(), "main").unwrap(), baseline);
        let missing = Baseline::load(dir.path(), "other").unwrap_err();
        assert!(format!("{missing:#}").contains("--save-baseline other"));
    }

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
