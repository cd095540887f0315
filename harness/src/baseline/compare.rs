//! One suite's run against its baseline, figure by figure: worse only
//! beyond the relative threshold, the floor and the combined noise.

use serde::{Deserialize, Serialize};

use super::figures::{EndpointFigures, SuiteBaseline};

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

    pub fn format(self, value: f64) -> String {
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::baseline::figures::{Noise, Source};

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

    /// A suite of one endpoint, `GET /a`.
    pub(crate) fn suite(figures: EndpointFigures) -> SuiteBaseline {
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
}
