//! One suite's runs against its baseline's runs, figure by figure.
//!
//! - **Quantiles** of runs that kept their seconds are judged on each
//!   side's runs pooled (`pooled`): the figure over every request, its
//!   variance from the spread of the runs' own figures (Student's t on the
//!   runs' degrees of freedom) and never below what resampling blocks of
//!   seconds says of the pooled figure.
//! - **Error rates, throughput, Locust imports**: each run knows how sure
//!   it is of its own figures (`statistics`), and with several runs on a
//!   side (`--repeat`, a baseline that keeps its last runs, `--ab`) the
//!   comparison is a two-sample t test on the runs' figures (log scale for
//!   throughput), its variance never below what the runs say of themselves.
//! - **Capacity** (a capacity search's rate, the suite's figure): each
//!   run's rate known only within the steps around it, then the same t
//!   test on the runs' rates (log scale). Capacity searches are compared
//!   with capacity searches only, and on their capacity alone.
//! - With one run on each side the spread between runs is unknown: it is
//!   assumed (`GateSettings::assumed_run_spread`) and the table says so.
//!
//! A change is WORSE only when all hold: the test says so at the configured
//! confidence, it exceeds the relative threshold, and it exceeds the floor.
//! Every judged row states its resolution, the smallest change it would
//! catch `power` of the time, and whether it is decided (WORSE, better, or
//! "same" with the whole interval within the threshold). Too little data is
//! "not enough data", never a pass or a WORSE; a slower machine than the
//! baseline's turns a WORSE its slowdown could explain into "machine
//! differs" (one far beyond it stands).

use serde::{Deserialize, Serialize};

use super::evidence::{
    Evidence, MIN_BEYOND, QUANTILES, Sides, capacity_evidence, per_run_evidence, pooled_evidence,
};
use super::figures::{CapacityFigures, EndpointFigures, RunFigures};
use super::machine::{Fingerprint, MachineMargin};
pub use super::statistics::Metric;
use super::statistics::z_for;

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
    /// The figures judged (`gate = [...]`); the others are not in the table.
    pub metrics: Vec<Metric>,
    /// The chance of catching a change as large as a row's stated
    /// resolution (0.90: "could detect ≥ +38 %" is caught nine times in ten).
    pub power: f64,
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
            metrics: Metric::ALL.to_vec(),
            power: 0.90,
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
    /// The smallest change this comparison would catch `power` of the
    /// time (never below the threshold and the floor, which nothing smaller
    /// passes): a fraction of the baseline's figure for latencies and
    /// throughput (0.38 = +38 %, or −38 % for throughput), a share for error
    /// rates (0.02 = 2 points). `None` when the row could not be judged.
    #[serde(default)]
    pub resolution: Option<f64>,
    /// How many runs a side would bring the resolution within the
    /// threshold, when it is not (at least; Student's t on few runs asks
    /// more); for a quantile with too few requests beyond it, how many runs
    /// would gather enough to judge it at all.
    #[serde(default)]
    pub runs_needed: Option<usize>,
    /// Whether the verdict is proven: WORSE or better, or "same" with the
    /// whole interval of the change within the threshold (or the floor).
    #[serde(default)]
    pub decided: bool,
    /// The variance of the change with one run a side, on the judging
    /// scale: what `plan` scales to other run counts.
    #[serde(default)]
    pub per_run_variance: Option<f64>,
}

impl Row {
    /// A figure too little data could judge either way, and why.
    fn not_enough(key: &str, metric: Metric, baseline: Side, current: Side, why: String) -> Row {
        Row {
            endpoint: key.to_owned(),
            metric,
            baseline,
            current,
            verdict: Verdict::NotEnoughData,
            why: Some(why),
            resolution: None,
            runs_needed: None,
            decided: false,
            per_run_variance: None,
        }
    }

    pub fn change_text(&self) -> String {
        let delta = self.current.value - self.baseline.value;
        let relative = if self.baseline.value.abs() > f64::EPSILON {
            format!(" ({:+.0} %)", delta / self.baseline.value * 100.0)
        } else {
            String::new()
        };
        format!("{}{}", signed(self.metric, delta), relative)
    }

    /// The resolution as the table says it: `+38 %`, `−38 %` (throughput),
    /// `2.0 points` (error rate).
    pub fn resolution_text(&self) -> Option<String> {
        self.resolution
            .map(|resolution| resolution_text(self.metric, resolution))
    }

    /// A gated figure the comparison could not settle: not enough data,
    /// unclear, or "same" without the interval within the threshold.
    pub fn undecided(&self) -> bool {
        !self.decided && self.verdict != Verdict::MachineDiffers
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

    /// Whether every gated figure is decided (WORSE, better, or proven the same).
    pub fn decided(&self) -> bool {
        self.rows.iter().all(|row| !row.undecided())
    }

    /// Whether more runs, up to `runs` a side, could decide anything more:
    /// some undecided figure needs no more than that (by its
    /// `runs_needed`), or has too few requests so far and may gather them.
    pub fn decidable_within(&self, runs: usize) -> bool {
        self.rows
            .iter()
            .filter(|row| row.undecided())
            .any(|row| match row.runs_needed {
                Some(needed) => needed <= runs,
                None => row.verdict != Verdict::NotEnoughData,
            })
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
    let mut machine = Allowance {
        faster: false,
        explains: f64::INFINITY,
    };
    if pairing == Pairing::Saved
        && let (Some(then), Some(now)) = (busiest(baseline), busiest(current))
    {
        comparison.machine = then.differences(now, &settings.machine);
        machine.explains = then.slowdown(now) * (1.0 + settings.relative);
        // Faster even at its busiest than the baseline at its quickest.
        if let Some(said) =
            quickest(baseline).and_then(|then| then.much_faster(now, &settings.machine))
        {
            comparison.machine.push(said);
            machine.faster = true;
        }
    }
    if baseline
        .iter()
        .chain(current)
        .any(|run| run.capacity.is_some())
    {
        compare_capacity(&mut comparison, baseline, current, settings, &machine);
        return comparison;
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
        let sides = Sides::of(&then, &now, settings);
        for metric in Metric::ALL {
            // Capacity is the suite's figure, not an endpoint's.
            if metric == Metric::Capacity || !settings.metrics.contains(&metric) {
                continue;
            }
            let row = compare_metric(key, metric, &sides, settings);
            comparison.push(row, &machine);
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

impl Row {
    /// How many times worse the figure is at the least its intervals allow
    /// (current's low over baseline's high for latencies, the reverse for
    /// throughput and capacity); `None` for error rates, which a slower
    /// machine can move by any amount (timeouts).
    fn least_worsening(&self) -> Option<f64> {
        let ratio = |worse: f64, better: f64| (better > 0.0).then(|| worse / better);
        match self.metric {
            Metric::P50 | Metric::P95 | Metric::P99 => ratio(
                self.current.low.unwrap_or(self.current.value),
                self.baseline.high.unwrap_or(self.baseline.value),
            ),
            Metric::Throughput | Metric::Capacity => ratio(
                self.baseline.low.unwrap_or(self.baseline.value),
                self.current.high.unwrap_or(self.current.value),
            ),
            Metric::ErrorRate => None,
        }
    }
}

impl Comparison {
    /// Adds a judged row. A slower machine excuses a WORSE that its
    /// slowdown could explain (`machine.explains`): a CPU probe 1.5× slower
    /// cannot explain a query 40× slower. A much faster machine could mask
    /// a regression, so then only a WORSE stands.
    fn push(&mut self, mut row: Row, machine: &Allowance) {
        let explainable = row
            .least_worsening()
            .is_none_or(|least| least <= machine.explains);
        let excused = match row.verdict {
            Verdict::Worse => !self.machine.is_empty() && !machine.faster && explainable,
            Verdict::NotEnoughData => false,
            _ => machine.faster,
        };
        if excused {
            row.verdict = Verdict::MachineDiffers;
        }
        self.rows.push(row);
    }
}

/// What a machine unlike the baseline's may excuse.
struct Allowance {
    /// Much faster than the baseline's: only a WORSE can be trusted.
    faster: bool,
    /// The largest worsening (a ratio) the slower machine could explain:
    /// its slowdown, beyond the gate's own threshold.
    explains: f64,
}

/// Every run's capacity search, or `None` when some run is not one.
fn searched(runs: &[RunFigures]) -> Option<Vec<&CapacityFigures>> {
    runs.iter().map(|run| run.capacity.as_ref()).collect()
}

/// The row of the suite's capacity: capacity searches are compared on
/// what they found alone (their endpoints' requests mix every step's rate),
/// and only with capacity searches.
fn compare_capacity(
    comparison: &mut Comparison,
    baseline: &[RunFigures],
    current: &[RunFigures],
    settings: &GateSettings,
    machine: &Allowance,
) {
    let (Some(then), Some(now)) = (searched(baseline), searched(current)) else {
        comparison.notes.push(
            "one side is a capacity search (--capacity, [capacity]) and the other is not: \
             their figures are not comparable"
                .to_owned(),
        );
        return;
    };
    if then.is_empty() || now.is_empty() || !settings.metrics.contains(&Metric::Capacity) {
        return;
    }
    let key = "capacity";
    let rough = |runs: &[&CapacityFigures]| Side {
        value: runs.iter().filter_map(|run| run.rate).sum::<f64>() / runs.len() as f64,
        low: None,
        high: None,
        runs: runs.len(),
        beyond: None,
    };
    let row = match capacity_evidence(&then, &now, settings) {
        Ok(evidence) => decide(key, Metric::Capacity, evidence, settings),
        Err(why) => Row::not_enough(key, Metric::Capacity, rough(&then), rough(&now), why),
    };
    comparison.push(row, machine);
}

fn quickest(runs: &[RunFigures]) -> Option<&Fingerprint> {
    runs.iter()
        .filter_map(|run| run.machine.as_ref())
        .min_by(|a, b| a.cpu_probe_ms.total_cmp(&b.cpu_probe_ms))
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

fn compare_metric(key: &str, metric: Metric, sides: &Sides<'_>, settings: &GateSettings) -> Row {
    let not_enough = |why: String| {
        let (baseline, current) = (
            rough_side(metric, sides.then),
            rough_side(metric, sides.now),
        );
        // Runs a side until MIN_BEYOND requests lie beyond the quantile,
        // when the runs are pooled (judged one by one, more runs cannot help).
        let runs_needed = [&baseline, &current]
            .iter()
            .filter(|_| sides.pooled.is_some())
            .map(|side| side.beyond.map(|beyond| beyond / side.runs.max(1) as f64))
            .collect::<Option<Vec<f64>>>()
            .and_then(|per_run| per_run.into_iter().reduce(f64::min))
            .filter(|per_run| *per_run > 0.0)
            .map(|per_run| (MIN_BEYOND / per_run).ceil() as usize);
        Row {
            runs_needed,
            ..Row::not_enough(key, metric, baseline, current, why)
        }
    };
    let evidence = match (metric.quantile(), &sides.pooled) {
        (Some(q), Some((a, b))) => {
            let at = QUANTILES
                .iter()
                .position(|quantile| (quantile - q).abs() < 1e-9)
                .expect("the gate's quantiles");
            pooled_evidence(metric, &a[at], &b[at], settings)
        }
        _ => per_run_evidence(metric, sides.then, sides.now, settings),
    };
    match evidence {
        Ok(evidence) => decide(key, metric, evidence, settings),
        Err(why) => not_enough(why),
    }
}

/// The verdict on a figure's evidence, its resolution and whether it is
/// decided. WORSE needs all three: significant, beyond the relative
/// threshold, beyond the floor.
fn decide(key: &str, metric: Metric, evidence: Evidence, settings: &GateSettings) -> Row {
    let Evidence {
        baseline,
        current,
        difference,
        variance,
        critical,
        per_run,
    } = evidence;
    let delta = current.value - baseline.value;
    let floor = floor_of(metric, settings);
    let large = delta.abs() > settings.relative * baseline.value.abs() && delta.abs() > floor;
    let margin = critical * variance.sqrt();
    let sure = difference.abs() > margin;
    // Higher latency and error rate are worse; lower throughput and capacity are.
    let worse_direction = match metric {
        Metric::Throughput | Metric::Capacity => delta < 0.0,
        _ => delta > 0.0,
    };
    // Whether the worst the interval allows stays within the threshold (or
    // within the floor).
    let threshold = threshold_of(metric, baseline.value, settings);
    let proven_within = match metric {
        Metric::Throughput | Metric::Capacity => difference - margin > -threshold,
        Metric::ErrorRate => difference + margin < threshold,
        _ => {
            difference + margin < threshold
                || baseline.value * ((difference + margin).exp() - 1.0) < floor
        }
    };
    let (resolution, runs_needed) = reach(
        metric,
        baseline.value,
        critical,
        variance,
        per_run,
        settings,
    );
    let (verdict, why) = match (large, sure, worse_direction) {
        (true, true, true) => (Verdict::Worse, None),
        (true, true, false) => (Verdict::Better, None),
        (true, false, true) => (
            Verdict::Unclear,
            Some(format!(
                "the runs differ too much to tell (a real change would need beyond ×{:.2}): \
                 more runs (--repeat, --until-decided) or --ab",
                margin.exp()
            )),
        ),
        _ => (Verdict::Same, None),
    };
    let decided = match verdict {
        Verdict::Worse | Verdict::Better => true,
        Verdict::Same => proven_within,
        _ => false,
    };
    Row {
        endpoint: key.to_owned(),
        metric,
        baseline,
        current,
        verdict,
        why,
        resolution: Some(resolution),
        runs_needed,
        decided,
        per_run_variance: Some(per_run),
    }
}

/// A resolution as tables say it: `+38 %`, `−38 %` (throughput), `2.0
/// points` (error rate).
pub fn resolution_text(metric: Metric, resolution: f64) -> String {
    match metric {
        Metric::ErrorRate => format!("{:.1} points", resolution * 100.0),
        Metric::Throughput | Metric::Capacity => format!("−{:.0} %", resolution * 100.0),
        _ if resolution > 9.99 => format!("+{:.0}×", resolution + 1.0),
        _ => format!("+{:.0} %", resolution * 100.0),
    }
}

/// The smallest change a figure's latency, error rate or throughput must
/// exceed in absolute terms.
fn floor_of(metric: Metric, settings: &GateSettings) -> f64 {
    match metric {
        Metric::P50 | Metric::P95 | Metric::P99 => settings.latency_floor_ms,
        Metric::ErrorRate => settings.error_rate_floor_points / 100.0,
        Metric::Throughput | Metric::Capacity => 0.0,
    }
}

/// The relative threshold on the judging scale (a log ratio; a share for
/// error rates, never below the floor).
fn threshold_of(metric: Metric, baseline: f64, settings: &GateSettings) -> f64 {
    match metric {
        Metric::Throughput | Metric::Capacity => -(1.0 - settings.relative).ln(),
        Metric::ErrorRate => (settings.relative * baseline).max(floor_of(metric, settings)),
        _ => (1.0 + settings.relative).ln(),
    }
}

/// What a comparison with this `variance` of the change (on the judging
/// scale) and this `critical` value can catch `power` of the time, never
/// below what the gate flags at all (the threshold, the floor); and, when
/// that is beyond the threshold, how many runs a side would bring it
/// within, from the variance with one run a side (`per_run`).
pub(crate) fn reach(
    metric: Metric,
    baseline: f64,
    critical: f64,
    variance: f64,
    per_run: f64,
    settings: &GateSettings,
) -> (f64, Option<usize>) {
    let threshold = threshold_of(metric, baseline, settings);
    let detectable = (critical + z_for(settings.power)) * variance.sqrt();
    let resolution = match metric {
        Metric::ErrorRate => detectable.max(threshold),
        Metric::Throughput | Metric::Capacity => (1.0 - (-detectable).exp()).max(settings.relative),
        _ => (detectable.exp() - 1.0)
            .max(settings.relative)
            .max(floor_of(metric, settings) / baseline.max(f64::MIN_POSITIVE)),
    };
    let runs_needed = (detectable > threshold).then(|| {
        let needed = per_run * (z_for(settings.confidence) + z_for(settings.power)).powi(2)
            / threshold.powi(2);
        needed.ceil().max(2.0) as usize
    });
    (resolution, runs_needed)
}

/// A side's figure without an interval, for a row that cannot be judged.
fn rough_side(metric: Metric, runs: &[(&EndpointFigures, f64)]) -> Side {
    let values: Vec<f64> = runs
        .iter()
        .map(|(figures, seconds)| super::statistics::point(figures, metric, *seconds))
        .collect();
    let requests: u64 = runs.iter().map(|(figures, _)| figures.requests).sum();
    Side {
        value: values.iter().sum::<f64>() / values.len().max(1) as f64,
        low: None,
        high: None,
        runs: runs.len(),
        // Every run's requests beyond a quantile, together.
        beyond: metric.quantile().map(|q| requests as f64 * (1.0 - q)),
    }
}

#[cfg(test)]
#[path = "compare_tests.rs"]
pub(crate) mod tests;
