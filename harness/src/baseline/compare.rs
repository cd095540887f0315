//! One suite's runs against its baseline's runs, figure by figure.
//!
//! Each run knows how sure it is of its own figures (`statistics`). With
//! several runs on a side (`--repeat`, a baseline that keeps its last runs,
//! `--ab`), the spread *between* runs is measured and the comparison is a
//! two-sample t test on the runs' figures (log scale for latencies and
//! throughput), its variance never below what the runs say about
//! themselves. With one run on each side that spread is unknown: it is
//! assumed (`GateSettings::assumed_run_spread`) and the table says so.
//!
//! A change is WORSE only when all hold: the test says so at the configured
//! confidence, it exceeds the relative threshold, and it exceeds the floor.
//! Too little data is "not enough data", never a pass or a WORSE; a machine
//! that differs from the baseline's turns a WORSE into "machine differs".

use serde::{Deserialize, Serialize};

use super::figures::{EndpointFigures, RunFigures};
use super::machine::{Fingerprint, MachineMargin};
pub use super::statistics::Metric;
use super::statistics::{Estimate, estimate, t_for, z_for};

/// How strict the gate is.
#[derive(Debug, Clone, PartialEq)]
pub struct GateSettings {
    /// A change must exceed this fraction of the baseline value (0.25 = 25 %) …
    pub relative: f64,
    /// … be significant at this one-sided confidence …
    pub confidence: f64,
    /// … and, for latencies, exceed this many milliseconds …
    pub latency_floor_ms: f64,
    /// … and, for error rates, this many percentage points.
    pub error_rate_floor_points: f64,
    /// The standard deviation between runs assumed, on a log scale, when no
    /// side has repeated runs (0.10 ≈ ±10 %).
    pub assumed_run_spread: f64,
    /// How far the machine may differ from the baseline's.
    pub machine: MachineMargin,
}

impl Default for GateSettings {
    fn default() -> GateSettings {
        GateSettings {
            relative: 0.25,
            confidence: 0.99,
            latency_floor_ms: 5.0,
            error_rate_floor_points: 1.0,
            assumed_run_spread: 0.10,
            machine: MachineMargin::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Better,
    Same,
    Worse,
    /// Too few requests (or runs) to judge this figure either way.
    NotEnoughData,
    /// It moved beyond the threshold in the worse direction, but the runs
    /// differ too much to tell whether that is real (not a failure; said).
    Unclear,
    /// It looks worse, but the machine differs from the baseline's.
    MachineDiffers,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Better => "better",
            Verdict::Same => "same",
            Verdict::Worse => "WORSE",
            Verdict::NotEnoughData => "not enough data",
            Verdict::Unclear => "unclear",
            Verdict::MachineDiffers => "machine differs",
        }
    }
}

/// One side of a comparison: its figure over its runs, and the interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Side {
    pub value: f64,
    /// The interval at the gate's confidence; `None` when it cannot be bounded.
    pub low: Option<f64>,
    pub high: Option<f64>,
    pub runs: usize,
    /// For quantiles: the fewest requests beyond it in any of the runs.
    pub beyond: Option<f64>,
}

/// One figure of one endpoint, compared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub endpoint: String,
    pub metric: Metric,
    pub baseline: Side,
    pub current: Side,
    pub verdict: Verdict,
    /// Why there is not enough data, when there is not.
    pub why: Option<String>,
}

impl Row {
    pub fn change_text(&self) -> String {
        let delta = self.current.value - self.baseline.value;
        let relative = if self.baseline.value.abs() > f64::EPSILON {
            format!(" ({:+.0} %)", delta / self.baseline.value * 100.0)
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

/// A suite's runs against its baseline's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub baseline: String,
    pub suite: String,
    pub rows: Vec<Row>,
    /// Endpoints only in the baseline, or only in this run (not judged).
    pub missing: Vec<String>,
    pub new: Vec<String>,
    /// How the machine differs from the baseline's, in words (empty: alike).
    pub machine: Vec<String>,
    /// How the spread between runs was known.
    pub spread: String,
    /// Things a reader should know (a different profile, a Locust import).
    pub notes: Vec<String>,
}

impl Comparison {
    pub fn passed(&self) -> bool {
        self.rows.iter().all(|row| row.verdict != Verdict::Worse)
    }

    pub fn worse(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|row| row.verdict == Verdict::Worse)
    }

    /// Figures that moved beyond the threshold, worse, without the runs
    /// being sure of it.
    pub fn unclear(&self) -> impl Iterator<Item = &Row> {
        self.rows
            .iter()
            .filter(|row| row.verdict == Verdict::Unclear)
    }

    /// Figures that looked worse on a machine unlike the baseline's: the
    /// gate can say neither pass nor fail about them.
    pub fn inconclusive(&self) -> bool {
        self.rows
            .iter()
            .any(|row| row.verdict == Verdict::MachineDiffers)
    }
}

/// Where the two sides were measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pairing {
    /// Against a saved baseline: the machines may differ, and are checked.
    Saved,
    /// A and B interleaved on one machine: drift falls on both sides.
    Interleaved,
}

/// Compares `current` runs with `baseline` runs for one suite.
pub fn compare(
    baseline_name: &str,
    suite: &str,
    baseline: &[RunFigures],
    current: &[RunFigures],
    settings: &GateSettings,
    pairing: Pairing,
) -> Comparison {
    let mut comparison = Comparison {
        baseline: baseline_name.to_owned(),
        suite: suite.to_owned(),
        rows: Vec::new(),
        missing: Vec::new(),
        new: Vec::new(),
        machine: Vec::new(),
        spread: spread_text(baseline.len(), current.len(), settings),
        notes: Vec::new(),
    };
    let profiles = |runs: &[RunFigures]| {
        let mut profiles: Vec<_> = runs.iter().filter_map(|r| r.profile.clone()).collect();
        profiles.dedup();
        profiles
    };
    let (then, now) = (profiles(baseline), profiles(current));
    if !then.is_empty() && !now.is_empty() && then != now {
        comparison.notes.push(format!(
            "the baseline was measured under profile `{}`, this run under `{}`",
            then.join("`, `"),
            now.join("`, `")
        ));
    }
    if baseline
        .iter()
        .any(|r| matches!(r.source, super::figures::Source::Locust { .. }))
    {
        comparison.notes.push(
            "the baseline is a Locust import: its figures are bounded by Locust's percentile \
             columns and rounding, and it knows nothing of its seconds"
                .to_owned(),
        );
    }
    if pairing == Pairing::Saved
        && let (Some(then), Some(now)) = (busiest(baseline), busiest(current))
    {
        comparison.machine = then.differences(now, &settings.machine);
    }
    let Some(first) = baseline.first() else {
        comparison
            .notes
            .push("the baseline has no run of this suite".to_owned());
        return comparison;
    };
    if current.is_empty() {
        comparison
            .notes
            .push("no run to compare (interrupted?)".to_owned());
        return comparison;
    }
    fn sides<'a>(runs: &'a [RunFigures], key: &str) -> Option<Vec<(&'a EndpointFigures, f64)>> {
        runs.iter()
            .map(|run| Some((run.endpoints.get(key)?, run.measured_seconds)))
            .collect()
    }
    for key in first.endpoints.keys() {
        let (Some(then), Some(now)) = (sides(baseline, key), sides(current, key)) else {
            comparison.missing.push(key.clone());
            continue;
        };
        for metric in Metric::ALL {
            let mut row = compare_metric(key, metric, &then, &now, settings);
            if row.verdict == Verdict::Worse && !comparison.machine.is_empty() {
                row.verdict = Verdict::MachineDiffers;
            }
            comparison.rows.push(row);
        }
    }
    if let Some(last) = current.last() {
        comparison.new = last
            .endpoints
            .keys()
            .filter(|key| !first.endpoints.contains_key(*key))
            .cloned()
            .collect();
    }
    comparison
}

fn busiest(runs: &[RunFigures]) -> Option<&Fingerprint> {
    runs.iter()
        .filter_map(|run| run.machine.as_ref())
        .max_by(|a, b| a.cpu_probe_ms.total_cmp(&b.cpu_probe_ms))
}

fn spread_text(baseline: usize, current: usize, settings: &GateSettings) -> String {
    if baseline < 2 && current < 2 {
        format!(
            "one run on each side: the spread between runs is unknown and assumed ±{:.0} % \
             (--repeat N or --ab measures it)",
            settings.assumed_run_spread * 100.0
        )
    } else {
        format!("the spread between runs is measured: {baseline} baseline run(s), {current} run(s)")
    }
}

/// What one side's runs say about a figure.
struct Runs {
    estimates: Vec<Estimate>,
    /// The runs' figures on the judging scale.
    scaled: Vec<f64>,
}

impl Runs {
    fn mean(&self) -> f64 {
        self.scaled.iter().sum::<f64>() / self.scaled.len() as f64
    }

    fn squares(&self) -> f64 {
        let mean = self.mean();
        self.scaled.iter().map(|y| (y - mean).powi(2)).sum()
    }

    fn within(&self) -> f64 {
        self.estimates
            .iter()
            .map(|e| e.standard_error.powi(2))
            .sum::<f64>()
            / self.estimates.len() as f64
    }

    fn beyond(&self) -> Option<f64> {
        self.estimates
            .iter()
            .filter_map(|e| e.beyond)
            .min_by(f64::total_cmp)
    }
}

fn compare_metric(
    key: &str,
    metric: Metric,
    then: &[(&EndpointFigures, f64)],
    now: &[(&EndpointFigures, f64)],
    settings: &GateSettings,
) -> Row {
    let z = z_for(settings.confidence);
    let judge = |runs: &[(&EndpointFigures, f64)]| -> Result<Runs, String> {
        let estimates = runs
            .iter()
            .map(|(figures, seconds)| estimate(figures, metric, *seconds, z))
            .collect::<Result<Vec<_>, _>>()?;
        let scaled = estimates.iter().map(|e| metric.to_scale(e.value)).collect();
        Ok(Runs { estimates, scaled })
    };
    let not_enough = |why: String| Row {
        endpoint: key.to_owned(),
        metric,
        baseline: rough_side(metric, then),
        current: rough_side(metric, now),
        verdict: Verdict::NotEnoughData,
        why: Some(why),
    };
    let (a, b) = match (judge(then), judge(now)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(why), _) => return not_enough(format!("baseline: {why}")),
        (_, Err(why)) => return not_enough(format!("this run: {why}")),
    };
    let (k_a, k_b) = (a.scaled.len() as f64, b.scaled.len() as f64);
    let df = (k_a - 1.0) + (k_b - 1.0);
    // Between-run variance on the judging scale: pooled over the sides'
    // runs when some side has several (never below what the runs say of
    // themselves), else assumed on top of what each run says.
    let (critical, pooled, assumed) = if df >= 1.0 {
        let within = (a.within() * k_a + b.within() * k_b) / (k_a + k_b);
        let pooled = ((a.squares() + b.squares()) / df).max(within);
        (t_for(settings.confidence, df), Some(pooled), 0.0)
    } else if metric.is_ratio() {
        (z, None, settings.assumed_run_spread.powi(2))
    } else {
        (z, None, 0.0)
    };
    let side_variance = |runs: &Runs| match pooled {
        Some(pooled) => pooled / runs.scaled.len() as f64,
        None => runs.within() + assumed,
    };
    let difference_variance = side_variance(&a) + side_variance(&b);
    let side = |runs: &Runs| {
        let mean = runs.mean();
        let half = critical * side_variance(runs).sqrt();
        let (low, high) = (
            metric.from_scale(mean - half),
            metric.from_scale(mean + half),
        );
        Side {
            value: metric.from_scale(mean),
            low: Some(if metric.is_ratio() { low } else { low.max(0.0) }),
            high: Some(high),
            runs: runs.scaled.len(),
            beyond: runs.beyond(),
        }
    };
    let (baseline, current) = (side(&a), side(&b));
    let scaled_difference = b.mean() - a.mean();
    let delta = current.value - baseline.value;
    let floor = match metric {
        Metric::P50 | Metric::P95 | Metric::P99 => settings.latency_floor_ms,
        Metric::ErrorRate => settings.error_rate_floor_points / 100.0,
        Metric::Throughput => 0.0,
    };
    let large = delta.abs() > settings.relative * baseline.value.abs() && delta.abs() > floor;
    let sure = scaled_difference.abs() > critical * difference_variance.sqrt();
    // Higher latency and error rate are worse; lower throughput is.
    let worse_direction = match metric {
        Metric::Throughput => delta < 0.0,
        _ => delta > 0.0,
    };
    let (verdict, why) = match (large, sure, worse_direction) {
        (true, true, true) => (Verdict::Worse, None),
        (true, true, false) => (Verdict::Better, None),
        (true, false, true) => (
            Verdict::Unclear,
            Some(format!(
                "the runs differ too much to tell (a real change would need beyond ×{:.2}): \
                 more runs (--repeat) or --ab",
                (critical * difference_variance.sqrt()).exp()
            )),
        ),
        _ => (Verdict::Same, None),
    };
    Row {
        endpoint: key.to_owned(),
        metric,
        baseline,
        current,
        verdict,
        why,
    }
}

/// A side's figure without an interval, for a row that cannot be judged.
fn rough_side(metric: Metric, runs: &[(&EndpointFigures, f64)]) -> Side {
    let values: Vec<f64> = runs
        .iter()
        .map(|(figures, seconds)| super::statistics::point(figures, metric, *seconds))
        .collect();
    Side {
        value: values.iter().sum::<f64>() / values.len().max(1) as f64,
        low: None,
        high: None,
        runs: runs.len(),
        beyond: None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::baseline::figures::{Distribution, Source};
    use rand::{Rng as _, SeedableRng as _};

    /// A run of `GET /a`: 30 seconds of `per_second` requests, latencies
    /// uniform in `ms ± 20 %`, seeded.
    pub(crate) fn run_of(ms: f64, per_second: usize, seed: u64) -> RunFigures {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let figures = crate::baseline::statistics::tests::run(30, per_second, |_| {
            (ms * 1000.0 * rng.random_range(0.8..1.2)) as u64
        });
        RunFigures {
            profile: Some("ci".into()),
            source: Source::Run {
                started_at: "t".into(),
                target: "x".into(),
            },
            measured_seconds: 30.0,
            machine: None,
            endpoints: [("GET /a".to_owned(), figures)].into(),
        }
    }

    fn verdict(then: &[RunFigures], now: &[RunFigures], metric: Metric) -> Verdict {
        let c = compare(
            "b",
            "s",
            then,
            now,
            &GateSettings::default(),
            Pairing::Saved,
        );
        c.rows.iter().find(|r| r.metric == metric).unwrap().verdict
    }

    #[test]
    fn an_unchanged_rerun_is_the_same_and_a_slower_one_is_worse() {
        let then = [run_of(20.0, 20, 1)];
        assert_eq!(
            verdict(&then, &[run_of(20.0, 20, 2)], Metric::P95),
            Verdict::Same
        );
        assert_eq!(
            verdict(&then, &[run_of(60.0, 20, 3)], Metric::P95),
            Verdict::Worse
        );
        assert_eq!(
            verdict(&then, &[run_of(8.0, 20, 4)], Metric::P50),
            Verdict::Better
        );
    }

    #[test]
    fn a_change_below_the_relative_threshold_is_the_same_however_sure() {
        let then = [run_of(100.0, 200, 1)];
        assert_eq!(
            verdict(&then, &[run_of(115.0, 200, 2)], Metric::P50),
            Verdict::Same
        );
    }

    #[test]
    fn tiny_absolute_changes_never_fail_the_gate() {
        // 1 ms → 3 ms is +200 % and certain, but below the 5 ms floor.
        let then = [run_of(1.0, 50, 1)];
        assert_eq!(
            verdict(&then, &[run_of(3.0, 50, 2)], Metric::P95),
            Verdict::Same
        );
    }

    #[test]
    fn tails_need_enough_requests_beyond_them() {
        // 3 requests a second for 30 s: ~1 beyond p99.
        let then = [run_of(20.0, 3, 1)];
        assert_eq!(
            verdict(&then, &[run_of(200.0, 3, 2)], Metric::P99),
            Verdict::NotEnoughData
        );
    }

    #[test]
    fn runs_that_vary_between_themselves_widen_the_gate() {
        // Within each run the p95 is sharp, but main's own runs differ by
        // ±35 %: a candidate 50 % above the first run is within that spread.
        let main: Vec<_> = [20.0, 35.0, 14.0, 28.0]
            .iter()
            .enumerate()
            .map(|(i, ms)| run_of(*ms, 50, i as u64))
            .collect();
        // +34 % on their geometric mean: beyond the threshold, not provably.
        assert_eq!(
            verdict(&main, &[run_of(30.0, 50, 9)], Metric::P95),
            Verdict::Unclear
        );
        // Steady runs, and the same +50 %: worse.
        let steady: Vec<_> = (0..4).map(|i| run_of(20.0, 50, i)).collect();
        assert_eq!(
            verdict(&steady, &[run_of(30.0, 50, 9)], Metric::P95),
            Verdict::Worse
        );
    }

    #[test]
    fn a_busier_machine_makes_a_worse_figure_inconclusive() {
        let machine = |cpu: f64| Fingerprint {
            cores: 2,
            kernel: "6.1".into(),
            load_average: 0.1,
            cpu_probe_ms: cpu,
            loopback_probe_us: 30.0,
        };
        let mut then = run_of(20.0, 20, 1);
        then.machine = Some(machine(10.0));
        let mut now = run_of(60.0, 20, 2);
        now.machine = Some(machine(25.0));
        let c = compare(
            "b",
            "s",
            &[then],
            &[now],
            &GateSettings::default(),
            Pairing::Saved,
        );
        assert!(c.passed() && c.inconclusive(), "{c:#?}");
        assert!(c.machine[0].contains("CPU probe"), "{:?}", c.machine);
    }

    #[test]
    fn error_rates_compare_as_proportions() {
        let then = [run_of(20.0, 20, 1)];
        let failing = |seed: u64, seconds: usize, each: u64| {
            let mut run = run_of(20.0, 20, seed);
            let figures = run.endpoints.get_mut("GET /a").unwrap();
            figures.failures = seconds as u64 * each;
            if let Distribution::Recorded { seconds: kept, .. } = &mut figures.latency {
                for second in kept.iter_mut().take(seconds) {
                    second.failures = each;
                }
            }
            run
        };
        // 10 %, spread over the run.
        assert_eq!(
            verdict(&then, &[failing(2, 30, 2)], Metric::ErrorRate),
            Verdict::Worse
        );
        // 0.5 %: below the floor.
        assert_eq!(
            verdict(&then, &[failing(3, 3, 1)], Metric::ErrorRate),
            Verdict::Same
        );
    }
}
