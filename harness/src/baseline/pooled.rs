//! A quantile over every request of a side's runs, and how sure it is, in
//! the two levels of a random-effects model (Kalibera and Jones, "Rigorous
//! Benchmarking in Reasonable Time", ISMM 2013): runs above, blocks of
//! seconds within a run below.
//!
//! - **The figure** is the quantile of all the runs' requests pooled: a p95
//!   over three runs of 200 requests rests on about 30 requests beyond it,
//!   not 10, and no run has to bound its tail alone.
//! - **Within runs** (`within`): a bootstrap that resamples each run's
//!   blocks of seconds (about ten a run) with replacement, runs held fixed,
//!   and takes the pooled quantile of each resample. Seconds that move
//!   together move together in a block, so no design effect is needed, and
//!   nothing is assumed of the latencies' distribution.
//! - **Between runs**: each run's own quantile (`runs`). `compare` takes
//!   the variance of these figures as the variance of one run's, its
//!   within-run noise included, and judges with Student's t on the runs'
//!   degrees of freedom: the interval widens when runs disagree. A full
//!   hierarchical bootstrap (resampling the runs too) understates that
//!   spread by (k − 1)/k and has only a handful of distinct resamples with
//!   the two to five runs a gate has; subtracting the within-run noise
//!   from it (moments) is unbiased but, clipped at zero on few runs, it
//!   made an A/A simulation cry wolf at 2.3 % instead of 1 %.
//!
//! The resamples are seeded: the same runs give the same figures.

use rand::{Rng as _, SeedableRng as _};

use super::figures::Second;

/// Resamples of the pooled quantile (runs fixed, blocks resampled).
const POOLED_RESAMPLES: usize = 400;
/// Resamples of each run's own quantile.
const RUN_RESAMPLES: usize = 200;
/// A run with fewer blocks of seconds than this cannot say how its
/// seconds vary.
pub const MIN_BLOCKS: usize = 4;

/// One quantile of one side.
#[derive(Debug, Clone, PartialEq)]
pub struct Spread {
    /// The pooled quantile, in milliseconds.
    pub value: f64,
    /// The variance of its logarithm from resampling blocks within runs.
    pub within: f64,
    /// Each run's own quantile (log milliseconds) and that figure's
    /// variance within its run.
    pub runs: Vec<(f64, f64)>,
    /// Requests beyond the quantile, all runs together.
    pub beyond: f64,
    /// Blocks of seconds, all runs together.
    pub blocks: usize,
}

/// The latencies of a side's runs as blocks, ready to resample: each
/// block's cumulative count at each distinct latency of the side.
struct Blocks {
    /// Distinct latencies (µs, the histogram bucket's highest value), ascending.
    values: Vec<u64>,
    /// Per block, how many of its requests are at or below `values[j]`.
    cumulative: Vec<Vec<u32>>,
    /// Per run, its blocks' indices.
    runs: Vec<std::ops::Range<usize>>,
}

impl Blocks {
    fn of(runs: &[&[Second]]) -> Option<Blocks> {
        let mut blocks: Vec<Vec<(u64, u64)>> = Vec::new();
        let mut ranges = Vec::new();
        for seconds in runs {
            let start = blocks.len();
            let size = (seconds.len() / 10).max(1);
            for chunk in seconds.chunks(size) {
                let mut histogram = crate::metrics::new_histogram();
                for second in chunk {
                    histogram.add(second.histogram.unpack()).ok()?;
                }
                blocks.push(
                    histogram
                        .iter_recorded()
                        .map(|v| (v.value_iterated_to(), v.count_at_value()))
                        .collect(),
                );
            }
            if blocks.len() - start < MIN_BLOCKS {
                return None;
            }
            ranges.push(start..blocks.len());
        }
        let mut values: Vec<u64> = blocks.iter().flatten().map(|(v, _)| *v).collect();
        values.sort_unstable();
        values.dedup();
        let cumulative = blocks
            .iter()
            .map(|entries| {
                let mut counts = vec![0u32; values.len()];
                for (value, count) in entries {
                    let at = values.binary_search(value).expect("collected above");
                    counts[at] += u32::try_from(*count).unwrap_or(u32::MAX);
                }
                let mut running = 0u32;
                for count in &mut counts {
                    running = running.saturating_add(*count);
                    *count = running;
                }
                counts
            })
            .collect();
        Some(Blocks {
            values,
            cumulative,
            runs: ranges,
        })
    }

    /// The q-quantile (µs) of the blocks in `among` taken `weights[b]`
    /// times each, as `Histogram::value_at_quantile` reads it; `None`
    /// without requests.
    fn quantile(&self, weights: &[u32], among: std::ops::Range<usize>, q: f64) -> Option<u64> {
        let last = self.values.len().checked_sub(1)?;
        let (weights, cumulative) = (&weights[among.clone()], &self.cumulative[among]);
        let below = |j: usize| -> u64 {
            weights
                .iter()
                .zip(cumulative)
                .filter(|(w, _)| **w > 0)
                .map(|(w, c)| u64::from(*w) * u64::from(c[j]))
                .sum()
        };
        let total = below(last);
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let (mut low, mut high) = (0, last);
        while low < high {
            let middle = low + (high - low) / 2;
            if below(middle) >= rank {
                high = middle;
            } else {
                low = middle + 1;
            }
        }
        Some(self.values[low])
    }
}

/// The `quantiles` of a side's runs (each run's measured seconds), pooled,
/// with their spread within and between runs. `None` when a run has too
/// few blocks of seconds (or none: a summary read back from `result.json`,
/// a Locust import).
pub fn pooled(runs: &[&[Second]], quantiles: &[f64]) -> Option<Vec<Spread>> {
    if runs.is_empty() {
        return None;
    }
    let blocks = Blocks::of(runs)?;
    let count = blocks.cumulative.len();
    let log_ms = |micros: u64| (micros.max(1) as f64 / 1000.0).ln();
    let all = vec![1u32; count];
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x5eed_b10c);
    // One resample: each run's blocks drawn with replacement, as many as it has.
    let mut draw = |weights: &mut Vec<u32>, runs: &[std::ops::Range<usize>]| {
        weights.iter_mut().for_each(|w| *w = 0);
        for range in runs {
            for _ in range.clone() {
                weights[rng.random_range(range.clone())] += 1;
            }
        }
    };
    let variance = |values: &[f64]| {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
    };
    let mut weights = vec![0u32; count];
    let mut pooled_resamples = vec![Vec::with_capacity(POOLED_RESAMPLES); quantiles.len()];
    for _ in 0..POOLED_RESAMPLES {
        draw(&mut weights, &blocks.runs);
        for (q, resamples) in quantiles.iter().zip(&mut pooled_resamples) {
            resamples.push(log_ms(blocks.quantile(&weights, 0..count, *q)?));
        }
    }
    let mut per_run = vec![Vec::new(); quantiles.len()];
    for range in &blocks.runs {
        let mut own = vec![0u32; count];
        own[range.clone()].iter_mut().for_each(|w| *w = 1);
        let mut resamples = vec![Vec::with_capacity(RUN_RESAMPLES); quantiles.len()];
        for _ in 0..RUN_RESAMPLES {
            draw(&mut weights, std::slice::from_ref(range));
            for (q, resamples) in quantiles.iter().zip(&mut resamples) {
                resamples.push(log_ms(blocks.quantile(&weights, range.clone(), *q)?));
            }
        }
        for ((q, runs), resamples) in quantiles.iter().zip(&mut per_run).zip(&resamples) {
            runs.push((
                log_ms(blocks.quantile(&own, range.clone(), *q)?),
                variance(resamples),
            ));
        }
    }
    let requests = blocks
        .cumulative
        .iter()
        .map(|c| u64::from(*c.last().unwrap_or(&0)))
        .sum::<u64>() as f64;
    quantiles
        .iter()
        .zip(pooled_resamples)
        .zip(per_run)
        .map(|((q, resamples), runs)| {
            Some(Spread {
                value: blocks.quantile(&all, 0..count, *q)? as f64 / 1000.0,
                within: variance(&resamples),
                runs,
                beyond: requests * (1.0 - q),
                blocks: count,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baseline::figures::{Distribution, EndpointFigures};
    use crate::baseline::statistics::tests::run;

    fn seconds(figures: &EndpointFigures) -> &[Second] {
        match &figures.latency {
            Distribution::Recorded { seconds, .. } => seconds,
            Distribution::Percentiles { .. } => unreachable!(),
        }
    }

    fn uniform_run(ms: f64, per_second: usize, seed: u64) -> EndpointFigures {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        run(30, per_second, |_| {
            (ms * 1000.0 * rng.random_range(0.5..1.5)) as u64
        })
    }

    #[test]
    fn the_pooled_quantile_is_the_quantile_of_every_request() {
        let runs = [uniform_run(20.0, 20, 1), uniform_run(30.0, 20, 2)];
        let spreads = pooled(&[seconds(&runs[0]), seconds(&runs[1])], &[0.5, 0.95]).unwrap();
        let mut all = crate::metrics::new_histogram();
        for figures in &runs {
            if let Distribution::Recorded { histogram, .. } = &figures.latency {
                all.add(&histogram.0).unwrap();
            }
        }
        for (spread, q) in spreads.iter().zip([0.5, 0.95]) {
            let expected = all.value_at_quantile(q) as f64 / 1000.0;
            assert!(
                (spread.value - expected).abs() <= expected * 0.002,
                "{q}: {} vs {expected}",
                spread.value
            );
        }
        assert_eq!(spreads[1].beyond.round(), 60.0);
        assert_eq!(spreads[0].runs.len(), 2);
    }

    #[test]
    fn pooling_more_runs_narrows_the_within_run_spread() {
        let runs: Vec<_> = (0..4).map(|i| uniform_run(20.0, 10, i)).collect();
        let one = pooled(&[seconds(&runs[0])], &[0.95]).unwrap();
        let all: Vec<&[Second]> = runs.iter().map(seconds).collect();
        let four = pooled(&all, &[0.95]).unwrap();
        assert!(
            four[0].within < one[0].within / 2.0,
            "{} vs {}",
            four[0].within,
            one[0].within
        );
    }

    #[test]
    fn runs_without_seconds_cannot_be_pooled() {
        assert!(pooled(&[&[]], &[0.5]).is_none());
        assert!(pooled(&[], &[0.5]).is_none());
    }
}
