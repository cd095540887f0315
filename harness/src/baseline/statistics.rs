//! How sure one run is of each of its figures.
//!
//! - **Quantiles**: a distribution-free interval from order statistics. How
//!   many of n requests fall below the true q-quantile is binomial(n, q), so
//!   the interval runs between the requests at the ranks whose binomial
//!   tails hold the confidence (exact, not a normal approximation: 100
//!   requests bound a p95 at 99 %, just). `D`, the design effect, corrects
//!   for requests that are not independent: it compares how much the share
//!   of requests below the quantile varies between blocks of seconds with
//!   what independent requests would give (never below 1), and the ranks
//!   are those of n/D requests. When the upper rank falls beyond the slowest
//!   request, the run has too few requests beyond the quantile to bound it:
//!   not enough data.
//! - **Error rates**: Wilson's interval, on the sample size shrunk by the
//!   same kind of design effect.
//! - **Throughput**: the spread of the per-block rates.
//! - **Locust imports**: the same rank interval, bounded by the neighbouring
//!   percentile columns and widened by Locust's own rounding.
//!
//! Latencies and throughput are judged on a log scale (a change is a ratio),
//! error rates on their own scale. This is only what one run says about
//! itself; the spread between runs is `compare`'s business.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use statrs::distribution::{Binomial, ContinuousCDF as _, DiscreteCDF as _, Normal, StudentsT};

use super::figures::{Distribution, EndpointFigures, Second, Window};

/// The figures the gate judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Metric {
    P50,
    P95,
    P99,
    ErrorRate,
    Throughput,
    /// A capacity search's result (`--capacity`, `[capacity]`): the suite's,
    /// not an endpoint's.
    Capacity,
}

impl Metric {
    pub const ALL: [Metric; 6] = [
        Metric::P50,
        Metric::P95,
        Metric::P99,
        Metric::ErrorRate,
        Metric::Throughput,
        Metric::Capacity,
    ];

    /// The figure's name in suites and on the command line.
    pub fn key(self) -> &'static str {
        match self {
            Metric::P50 => "p50",
            Metric::P95 => "p95",
            Metric::P99 => "p99",
            Metric::ErrorRate => "error-rate",
            Metric::Throughput => "throughput",
            Metric::Capacity => "capacity",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Metric::P50 => "p50",
            Metric::P95 => "p95",
            Metric::P99 => "p99",
            Metric::ErrorRate => "error rate",
            Metric::Throughput => "throughput",
            Metric::Capacity => "capacity",
        }
    }

    pub fn format(self, value: f64) -> String {
        match self {
            Metric::P50 | Metric::P95 | Metric::P99 => format!("{value:.1} ms"),
            Metric::ErrorRate => format!("{:.2} %", value * 100.0),
            Metric::Throughput => format!("{value:.1} req/s"),
            Metric::Capacity => format!("{value:.1}/s"),
        }
    }

    pub fn quantile(self) -> Option<f64> {
        match self {
            Metric::P50 => Some(0.50),
            Metric::P95 => Some(0.95),
            Metric::P99 => Some(0.99),
            Metric::ErrorRate | Metric::Throughput | Metric::Capacity => None,
        }
    }

    /// Whether the figure is compared as a ratio (on a log scale).
    pub fn is_ratio(self) -> bool {
        self != Metric::ErrorRate
    }

    /// The figure on the scale it is judged on.
    pub fn to_scale(self, value: f64) -> f64 {
        if self.is_ratio() { value.ln() } else { value }
    }

    pub fn from_scale(self, value: f64) -> f64 {
        if self.is_ratio() { value.exp() } else { value }
    }
}

impl std::str::FromStr for Metric {
    type Err = String;

    /// As suites and `--gate` name them: `p50`, `p95`, `p99`, `error-rate`, `throughput`,
    /// `capacity`.
    fn from_str(text: &str) -> Result<Metric, String> {
        Metric::ALL
            .into_iter()
            .find(|metric| metric.key() == text.trim())
            .ok_or_else(|| {
                format!(
                    "`{text}` is not a gated figure (one of {})",
                    Metric::ALL.map(Metric::key).join(", ")
                )
            })
    }
}

/// One run's figure and how sure the run is of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub value: f64,
    /// The interval at the confidence asked for.
    pub low: f64,
    pub high: f64,
    /// The standard error on the judging scale (log for ratios).
    pub standard_error: f64,
    /// For quantiles: how many requests lie beyond it.
    pub beyond: Option<f64>,
    /// The design effect applied (1 = requests as good as independent).
    pub design_effect: f64,
}

/// The normal quantile for a one-sided `confidence`.
pub fn z_for(confidence: f64) -> f64 {
    Normal::standard().inverse_cdf(confidence)
}

/// Student's t quantile for a one-sided `confidence` with `df` degrees of freedom.
pub fn t_for(confidence: f64, df: f64) -> f64 {
    StudentsT::new(0.0, 1.0, df)
        .expect("positive degrees of freedom")
        .inverse_cdf(confidence)
}

/// What one run says about `metric`, at one-sided normal quantile `z`;
/// `Err` says why it cannot say (too few requests beyond a quantile, none at all).
pub fn estimate(
    figures: &EndpointFigures,
    metric: Metric,
    measured_seconds: f64,
    z: f64,
) -> Result<Estimate, String> {
    if figures.requests == 0 {
        return Err("no requests".to_owned());
    }
    match (metric, &figures.latency) {
        (Metric::Capacity, _) => {
            Err("capacity is the suite's figure, not an endpoint's".to_owned())
        }
        (Metric::ErrorRate, latency) => {
            let design_effect = match latency {
                Distribution::Recorded { seconds, .. } => {
                    proportion_design_effect(&blocks(seconds), figures.error_rate(), |b| {
                        b.failures as f64
                    })
                }
                Distribution::Percentiles { windows, .. } => {
                    let failures: Vec<(f64, f64)> = windows
                        .iter()
                        .map(|w| (w.requests as f64, w.failures as f64))
                        .collect();
                    design_effect_of(&failures, figures.error_rate())
                }
            };
            Ok(wilson(figures.failures, figures.requests, design_effect, z))
        }
        (Metric::Throughput, Distribution::Recorded { seconds, .. }) => {
            throughput(figures.requests, measured_seconds, &blocks(seconds), z)
        }
        (Metric::Throughput, Distribution::Percentiles { .. }) => {
            // No per-second data: Poisson counting noise only.
            let value = figures.requests as f64 / measured_seconds.max(f64::MIN_POSITIVE);
            let standard_error = 1.0 / (figures.requests as f64).sqrt();
            Ok(ratio_estimate(value, standard_error, z, None, 1.0))
        }
        (_, Distribution::Recorded { histogram, seconds }) => {
            let q = metric.quantile().expect("a quantile metric");
            recorded_quantile(&histogram.0, &blocks(seconds), q, z)
        }
        (_, Distribution::Percentiles { columns, windows }) => {
            let q = metric.quantile().expect("a quantile metric");
            locust_quantile(columns, windows, figures.requests, q, z)
        }
    }
}

/// The figure itself, without its interval.
pub fn point(figures: &EndpointFigures, metric: Metric, measured_seconds: f64) -> f64 {
    match (metric.quantile(), &figures.latency) {
        (None, _) if metric == Metric::ErrorRate => figures.error_rate(),
        (None, _) if metric == Metric::Capacity => f64::NAN,
        (None, _) => figures.requests as f64 / measured_seconds.max(f64::MIN_POSITIVE),
        (Some(q), Distribution::Recorded { histogram, .. }) => {
            histogram.0.value_at_quantile(q) as f64 / 1000.0
        }
        (Some(q), Distribution::Percentiles { columns, .. }) => columns
            .iter()
            .find(|(quantile, _)| (quantile - q).abs() < 1e-9)
            .map_or(f64::NAN, |(_, ms)| *ms),
    }
}

/// A block of consecutive seconds, merged.
struct Block {
    requests: u64,
    failures: u64,
    histogram: Histogram<u64>,
}

/// Seconds grouped into about ten blocks (at least one second each): long
/// enough that neighbouring blocks are nearly independent, many enough to
/// see how much they vary.
fn blocks(seconds: &[Second]) -> Vec<Block> {
    let size = (seconds.len() / 10).max(1);
    seconds
        .chunks(size)
        .map(|chunk| {
            let mut histogram = crate::metrics::new_histogram();
            for second in chunk {
                histogram
                    .add(second.histogram.unpack())
                    .expect("same bounds");
            }
            Block {
                requests: chunk.iter().map(|s| s.requests).sum(),
                failures: chunk.iter().map(|s| s.failures).sum(),
                histogram,
            }
        })
        .collect()
}

/// Fewer blocks than this and the design effect is taken as 1.
const MIN_BLOCKS: usize = 4;

/// How much more a proportion varies between blocks than independent
/// requests would make it (cluster sampling's ratio estimator), at least 1.
fn proportion_design_effect(blocks: &[Block], p: f64, hits: impl Fn(&Block) -> f64) -> f64 {
    let counts: Vec<(f64, f64)> = blocks
        .iter()
        .map(|b| (b.requests as f64, hits(b)))
        .collect();
    design_effect_of(&counts, p)
}

/// The design effect of a share `p` from `(requests, hits)` per block: the
/// between-block variance of the share against the binomial one.
fn design_effect_of(blocks: &[(f64, f64)], p: f64) -> f64 {
    let m = blocks.iter().filter(|b| b.0 > 0.0).count();
    let n: f64 = blocks.iter().map(|b| b.0).sum();
    if m < MIN_BLOCKS || n == 0.0 || p <= 0.0 || p >= 1.0 {
        return 1.0;
    }
    let spread: f64 = blocks
        .iter()
        .map(|(requests, hits)| (hits - p * requests).powi(2))
        .sum();
    let clustered = m as f64 / (m as f64 - 1.0) * spread / (n * n);
    let independent = p * (1.0 - p) / n;
    (clustered / independent).max(1.0)
}

/// The order statistics that bound the q-quantile of `n` independent
/// requests at one-sided confidence `confidence` each, as fractions of `n`:
/// the lowest rank `l` with P(Bin(n, q) ≥ l) ≥ confidence … the highest
/// `u` with P(Bin(n, q) ≤ u − 1) ≥ confidence. `None` when either falls
/// outside the requests.
pub fn order_statistic_bounds(n: u64, q: f64, confidence: f64) -> Option<(f64, f64)> {
    if n == 0 {
        return None;
    }
    let binomial = Binomial::new(q, n).expect("0 ≤ q ≤ 1");
    // P(Bin ≤ k) rises with k: the first k where it reaches `confidence`.
    let first = |holds: &dyn Fn(u64) -> bool| -> Option<u64> {
        let (mut low, mut high) = (0u64, n);
        if !holds(high) {
            return None;
        }
        while low < high {
            let middle = low + (high - low) / 2;
            if holds(middle) {
                high = middle;
            } else {
                low = middle + 1;
            }
        }
        Some(low)
    };
    // Upper: u − 1 = the first k with cdf(k) ≥ confidence.
    let upper = first(&|k| binomial.cdf(k) >= confidence)? + 1;
    // Lower: l − 1 = the last k with cdf(k) ≤ 1 − confidence.
    let lower = first(&|k| binomial.cdf(k) > 1.0 - confidence)?;
    if upper > n || lower < 1 {
        return None;
    }
    Some((lower as f64 / n as f64, upper as f64 / n as f64))
}

/// Why a quantile cannot be bounded: too few requests beyond it, and, when
/// `parts` (seconds, windows) moved together, how few they were worth.
fn too_few(beyond: f64, q: f64, effective: u64, design_effect: f64, parts: &str) -> String {
    let together = if design_effect > 1.05 {
        format!(
            ", worth {:.0} independent ones ({parts} moved together, ×{design_effect:.1})",
            effective as f64 * (1.0 - q)
        )
    } else {
        String::new()
    };
    format!(
        "{beyond:.0} requests beyond p{:.0}{together}: too few to bound it",
        q * 100.0
    )
}

fn recorded_quantile(
    histogram: &Histogram<u64>,
    blocks: &[Block],
    q: f64,
    z: f64,
) -> Result<Estimate, String> {
    let n = histogram.len() as f64;
    let value = histogram.value_at_quantile(q);
    let below = |b: &Block| b.histogram.count_between(0, value) as f64;
    let design_effect = proportion_design_effect(blocks, q, below);
    let beyond = n * (1.0 - q);
    let effective = (n / design_effect).floor() as u64;
    let confidence = Normal::standard().cdf(z);
    let Some((low, high)) = order_statistic_bounds(effective, q, confidence) else {
        return Err(too_few(beyond, q, effective, design_effect, "its seconds"));
    };
    let at = |fraction: f64| histogram.value_at_quantile(fraction) as f64 / 1000.0;
    Ok(interval_estimate(
        value as f64 / 1000.0,
        at(low),
        at(high),
        z,
        Some(beyond),
        design_effect,
    ))
}

/// An estimate from its interval, for a ratio figure.
fn interval_estimate(
    value: f64,
    low: f64,
    high: f64,
    z: f64,
    beyond: Option<f64>,
    design_effect: f64,
) -> Estimate {
    let floor = f64::MIN_POSITIVE;
    Estimate {
        value,
        low,
        high,
        standard_error: (high.max(floor).ln() - low.max(floor).ln()) / (2.0 * z),
        beyond,
        design_effect,
    }
}

fn ratio_estimate(
    value: f64,
    standard_error: f64,
    z: f64,
    beyond: Option<f64>,
    design_effect: f64,
) -> Estimate {
    Estimate {
        value,
        low: value * (-z * standard_error).exp(),
        high: value * (z * standard_error).exp(),
        standard_error,
        beyond,
        design_effect,
    }
}

/// Wilson's score interval on `n / design_effect` requests.
fn wilson(failures: u64, requests: u64, design_effect: f64, z: f64) -> Estimate {
    let p = failures as f64 / requests as f64;
    let n = requests as f64 / design_effect;
    let z2 = z * z;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / (1.0 + z2 / n);
    Estimate {
        value: p,
        low: (centre - half).max(0.0),
        high: (centre + half).min(1.0),
        standard_error: half / z,
        beyond: None,
        design_effect,
    }
}

fn throughput(
    requests: u64,
    measured_seconds: f64,
    blocks: &[Block],
    z: f64,
) -> Result<Estimate, String> {
    if blocks.len() < MIN_BLOCKS || measured_seconds <= 0.0 {
        return Err(format!(
            "{} blocks of seconds: too few to judge throughput",
            blocks.len()
        ));
    }
    let value = requests as f64 / measured_seconds;
    let rates: Vec<f64> = blocks.iter().map(|b| b.requests as f64).collect();
    let mean = rates.iter().sum::<f64>() / rates.len() as f64;
    if mean <= 0.0 {
        return Err("no requests".to_owned());
    }
    let variance =
        rates.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (rates.len() as f64 - 1.0);
    // Relative standard error of the mean block count; Poisson's at least.
    let relative = (variance / rates.len() as f64).sqrt() / mean;
    let standard_error = relative.max(1.0 / (requests as f64).sqrt());
    Ok(ratio_estimate(value, standard_error, z, None, 1.0))
}

/// Locust rounds a latency above 100 ms to two significant digits, below
/// to whole milliseconds: the half-width of what a printed figure covers.
pub fn locust_rounding(ms: f64) -> f64 {
    if ms >= 100.0 {
        10f64.powf(ms.log10().floor() - 1.0) / 2.0
    } else {
        0.5
    }
}

/// The share of a window's requests at or below `ms`, read off its
/// percentile columns by linear interpolation.
fn share_below(columns: &[(f64, f64)], ms: f64) -> f64 {
    let mut previous: Option<(f64, f64)> = None;
    for &(quantile, value) in columns {
        if ms < value {
            return match previous {
                None => 0.0,
                Some((q0, v0)) if value > v0 => q0 + (quantile - q0) * (ms - v0) / (value - v0),
                Some((q0, _)) => q0,
            };
        }
        previous = Some((quantile, value));
    }
    previous.map_or(
        0.0,
        |(quantile, _)| if quantile >= 0.99 { 1.0 } else { quantile },
    )
}

fn locust_quantile(
    columns: &[(f64, f64)],
    windows: &[Window],
    requests: u64,
    q: f64,
    z: f64,
) -> Result<Estimate, String> {
    let value = columns
        .iter()
        .find(|(quantile, _)| (quantile - q).abs() < 1e-9)
        .map(|(_, ms)| *ms)
        .ok_or_else(|| format!("no p{:.0} column", q * 100.0))?;
    let beyond = requests as f64 * (1.0 - q);
    // With the history: how the share below the run's quantile varied
    // between windows, as for a recorded run's blocks of seconds.
    let below: Vec<(f64, f64)> = windows
        .iter()
        .filter(|w| !w.columns.is_empty())
        .map(|w| {
            (
                w.requests as f64,
                w.requests as f64 * share_below(&w.columns, value),
            )
        })
        .collect();
    let design_effect = design_effect_of(&below, q);
    let effective = (requests as f64 / design_effect).floor() as u64;
    let confidence = Normal::standard().cdf(z);
    let Some((low_fraction, high_fraction)) = order_statistic_bounds(effective, q, confidence)
    else {
        return Err(too_few(
            beyond,
            q,
            effective,
            design_effect,
            "its history's windows",
        ));
    };
    // The nearest columns outside the rank interval bound it.
    let low = columns
        .iter()
        .rev()
        .find(|(quantile, _)| *quantile <= low_fraction)
        .map(|(_, ms)| *ms)
        .ok_or_else(|| "no percentile column below the interval".to_owned())?;
    let high = columns
        .iter()
        .find(|(quantile, _)| *quantile >= high_fraction)
        .map(|(_, ms)| *ms)
        .ok_or_else(|| "no percentile column above the interval".to_owned())?;
    let low = (low - locust_rounding(low)).max(0.001);
    let high = high + locust_rounding(high);
    Ok(interval_estimate(
        value,
        low,
        high,
        z,
        Some(beyond),
        design_effect,
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::metrics::summary::{HistogramData, PackedHistogram};
    use rand::{Rng as _, SeedableRng as _};

    /// `seconds` seconds of `per_second` requests each, latencies (µs) from
    /// `draw(second)`.
    pub(crate) fn run(
        seconds: usize,
        per_second: usize,
        mut draw: impl FnMut(usize) -> u64,
    ) -> EndpointFigures {
        let mut total = crate::metrics::new_histogram();
        let mut kept = Vec::new();
        for s in 0..seconds {
            let mut second = crate::metrics::new_histogram();
            for _ in 0..per_second {
                second.record(draw(s)).unwrap();
            }
            total.add(&second).unwrap();
            kept.push(Second {
                requests: per_second as u64,
                failures: 0,
                histogram: PackedHistogram::pack(&second),
            });
        }
        EndpointFigures {
            requests: (seconds * per_second) as u64,
            failures: 0,
            latency: Distribution::Recorded {
                histogram: HistogramData(total),
                seconds: kept,
            },
        }
    }

    fn uniform(seed: u64) -> impl FnMut(usize) -> u64 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        move |_| rng.random_range(1_000..=2_000)
    }

    #[test]
    fn a_quantile_interval_brackets_the_quantile_and_narrows_with_more_requests() {
        let z = z_for(0.99);
        let small = estimate(&run(20, 10, uniform(1)), Metric::P95, 20.0, z).unwrap();
        let large = estimate(&run(20, 200, uniform(1)), Metric::P95, 20.0, z).unwrap();
        for e in [&small, &large] {
            assert!(e.low <= e.value && e.value <= e.high, "{e:?}");
        }
        assert!(large.high - large.low < (small.high - small.low) / 2.0);
        // Uniform 1–2 ms: the true p95 is 1.95 ms.
        assert!(large.low <= 1.95 && 1.95 <= large.high, "{large:?}");
    }

    #[test]
    fn order_statistics_bound_a_quantile_exactly() {
        // 100 requests: the slowest is a 99.4 % upper bound of p95 (0.95^100
        // = 0.6 %), so p95 is bounded at 99 % and not at 99.5 %.
        let (_, high) = order_statistic_bounds(100, 0.95, 0.99).unwrap();
        assert_eq!(high, 1.0);
        assert!(order_statistic_bounds(100, 0.95, 0.995).is_none());
        // The median of 1,000: ranks 500 ± ~37 at 99 %.
        let (low, high) = order_statistic_bounds(1000, 0.5, 0.99).unwrap();
        assert!(
            (0.45..0.47).contains(&low) && (0.53..0.55).contains(&high),
            "{low} {high}"
        );
    }

    #[test]
    fn too_few_requests_beyond_a_tail_quantile_is_not_enough_data() {
        let e = estimate(&run(20, 5, uniform(2)), Metric::P99, 20.0, z_for(0.99));
        assert!(e.unwrap_err().contains("requests beyond p99"));
    }

    #[test]
    fn seconds_that_move_together_widen_the_interval() {
        // Every other second is twice as slow: requests within a second are
        // alike, so a run knows its p50 less well than independent requests.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let bursty = run(40, 50, |s| {
            rng.random_range(1_000..=1_200) * if s % 8 < 4 { 1 } else { 2 }
        });
        let e = estimate(&bursty, Metric::P50, 40.0, z_for(0.99)).unwrap();
        assert!(e.design_effect > 2.0, "{e:?}");
        let steady = estimate(&run(40, 50, uniform(3)), Metric::P50, 40.0, z_for(0.99)).unwrap();
        assert!(steady.design_effect < 2.0, "{steady:?}");
    }

    #[test]
    fn error_rates_get_wilson_intervals_that_never_leave_zero_to_one() {
        let mut figures = run(20, 10, uniform(4));
        let clean = estimate(&figures, Metric::ErrorRate, 20.0, z_for(0.99)).unwrap();
        assert_eq!(clean.low, 0.0);
        assert!(clean.high > 0.0 && clean.high < 0.05, "{clean:?}");
        figures.failures = 200;
        let all = estimate(&figures, Metric::ErrorRate, 20.0, z_for(0.99)).unwrap();
        assert!(all.high <= 1.0 && all.low > 0.9, "{all:?}");
    }

    #[test]
    fn locust_figures_are_intervals_bounded_by_their_columns_and_rounding() {
        let columns = vec![
            (0.5, 120.0),
            (0.66, 150.0),
            (0.75, 170.0),
            (0.8, 190.0),
            (0.9, 250.0),
            (0.95, 330.0),
            (0.98, 480.0),
            (0.99, 600.0),
            (1.0, 1300.0),
        ];
        let figures = EndpointFigures {
            requests: 400,
            failures: 0,
            latency: Distribution::Percentiles {
                columns,
                windows: Vec::new(),
            },
        };
        let e = estimate(&figures, Metric::P95, 60.0, z_for(0.99)).unwrap();
        assert_eq!(e.value, 330.0);
        // Ranks 380 ± 10: between the 90 % and 98 % columns, each ±5 ms.
        assert_eq!((e.low, e.high), (245.0, 485.0));
        assert_eq!(locust_rounding(1300.0), 50.0);
        assert_eq!(locust_rounding(42.0), 0.5);
    }
}
