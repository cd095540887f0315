//! What a comparison of one figure rests on: the two sides' figures, the
//! difference on the judging scale, its variance and critical value, from
//! the pooled runs (`pooled`) or from each run's own estimate (`statistics`).

use super::compare::{GateSettings, Side};
use super::figures::{CapacityFigures, Distribution, EndpointFigures, Second};
use super::pooled::{Spread, pooled};
use super::statistics::{Estimate, Metric, estimate, t_for, z_for};

/// What one side's runs say about a figure.
pub(super) struct Runs {
    pub(super) estimates: Vec<Estimate>,
    /// The runs' figures on the judging scale.
    pub(super) scaled: Vec<f64>,
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

/// What a comparison of one figure rests on, on its judging scale.
pub(super) struct Evidence {
    pub(super) baseline: Side,
    pub(super) current: Side,
    /// B − A on the judging scale.
    pub(super) difference: f64,
    /// Its variance.
    pub(super) variance: f64,
    /// The one-sided critical value at the gate's confidence.
    pub(super) critical: f64,
    /// The variance of the difference with one run a side (to plan runs).
    pub(super) per_run: f64,
}

/// The runs of each side, for an endpoint: the pooled quantiles when every
/// run kept its seconds.
pub(super) struct Sides<'a> {
    pub(super) then: &'a [(&'a EndpointFigures, f64)],
    pub(super) now: &'a [(&'a EndpointFigures, f64)],
    pub(super) pooled: Option<(Vec<Spread>, Vec<Spread>)>,
}

pub(super) const QUANTILES: [f64; 3] = [0.50, 0.95, 0.99];

/// Fewer requests than this beyond a quantile, on a side with all its runs
/// together, and the quantile is not judged.
pub(super) const MIN_BEYOND: f64 = 5.0;

impl<'a> Sides<'a> {
    pub(super) fn of(
        then: &'a [(&'a EndpointFigures, f64)],
        now: &'a [(&'a EndpointFigures, f64)],
        settings: &GateSettings,
    ) -> Sides<'a> {
        let seconds = |runs: &'a [(&'a EndpointFigures, f64)]| -> Option<Vec<&'a [Second]>> {
            runs.iter()
                .map(|(figures, _)| match &figures.latency {
                    Distribution::Recorded { seconds, .. } if !seconds.is_empty() => {
                        Some(seconds.as_slice())
                    }
                    _ => None,
                })
                .collect()
        };
        let wanted = settings.metrics.iter().any(|m| m.quantile().is_some());
        let pooled = if wanted {
            match (seconds(then), seconds(now)) {
                (Some(a), Some(b)) => pooled(&a, &QUANTILES).zip(pooled(&b, &QUANTILES)),
                _ => None,
            }
        } else {
            None
        };
        Sides { then, now, pooled }
    }
}

/// A quantile on the pooled runs of each side: the between-run variance by
/// moments from the runs' own figures (pooled over both sides, as in a
/// two-sample t test), the within-run variance from resampling blocks of
/// seconds, and Satterthwaite's degrees of freedom for their sum.
pub(super) fn pooled_evidence(
    metric: Metric,
    a: &Spread,
    b: &Spread,
    settings: &GateSettings,
) -> Result<Evidence, String> {
    let q = metric.quantile().expect("a quantile metric");
    for (side, spread) in [("baseline", a), ("this run", b)] {
        if spread.beyond < MIN_BEYOND {
            return Err(format!(
                "{side}: {:.0} request(s) beyond p{:.0} in {} run(s) together: too few to bound it",
                spread.beyond,
                q * 100.0,
                spread.runs.len()
            ));
        }
    }
    let (k_a, k_b) = (a.runs.len() as f64, b.runs.len() as f64);
    let runs_df = (k_a - 1.0) + (k_b - 1.0);
    let squares = |spread: &Spread| {
        let mean = spread.runs.iter().map(|r| r.0).sum::<f64>() / spread.runs.len() as f64;
        spread
            .runs
            .iter()
            .map(|r| (r.0 - mean).powi(2))
            .sum::<f64>()
    };
    // The variance of one run's figure, its within-run noise included:
    // unbiased for k runs' pooled figure times k, whatever part of it lies
    // between runs. Never below what the blocks say of the pooled figures.
    let (per_run, critical) = if runs_df >= 1.0 {
        (
            (squares(a) + squares(b)) / runs_df,
            t_for(settings.confidence, runs_df),
        )
    } else {
        let run_noise = (a.runs[0].1 + b.runs[0].1) / 2.0;
        (
            settings.assumed_run_spread.powi(2) + run_noise,
            z_for(settings.confidence),
        )
    };
    let variance = (per_run * (1.0 / k_a + 1.0 / k_b)).max(a.within + b.within);
    let side_variance = |spread: &Spread| (per_run / spread.runs.len() as f64).max(spread.within);
    let side = |spread: &Spread| {
        let half = critical * side_variance(spread).sqrt();
        Side {
            value: spread.value,
            low: Some(spread.value * (-half).exp()),
            high: Some(spread.value * half.exp()),
            runs: spread.runs.len(),
            beyond: Some(spread.beyond),
        }
    };
    Ok(Evidence {
        baseline: side(a),
        current: side(b),
        difference: b.value.ln() - a.value.ln(),
        variance,
        critical,
        per_run: 2.0 * per_run,
    })
}

/// Each run's own figure and interval, then a t test on the runs' figures.
pub(super) fn per_run_evidence(
    metric: Metric,
    then: &[(&EndpointFigures, f64)],
    now: &[(&EndpointFigures, f64)],
    settings: &GateSettings,
) -> Result<Evidence, String> {
    let z = z_for(settings.confidence);
    let judge = |runs: &[(&EndpointFigures, f64)]| -> Result<Runs, String> {
        let estimates = runs
            .iter()
            .map(|(figures, seconds)| estimate(figures, metric, *seconds, z))
            .collect::<Result<Vec<_>, _>>()?;
        let scaled = estimates.iter().map(|e| metric.to_scale(e.value)).collect();
        Ok(Runs { estimates, scaled })
    };
    let (a, b) = both(judge(then), judge(now))?;
    Ok(runs_evidence(metric, &a, &b, settings))
}

/// Both sides' runs, or why one side cannot be judged.
fn both(then: Result<Runs, String>, now: Result<Runs, String>) -> Result<(Runs, Runs), String> {
    match (then, now) {
        (Ok(a), Ok(b)) => Ok((a, b)),
        (Err(why), _) => Err(format!("baseline: {why}")),
        (_, Err(why)) => Err(format!("this run: {why}")),
    }
}

/// A capacity search's rate on each side: each run's rate known within the
/// steps around it (the true capacity anywhere between the highest step
/// that held and the lowest that failed, so a uniform spread on the log
/// scale between them), then the same t test on the runs' rates.
pub(super) fn capacity_evidence(
    then: &[&CapacityFigures],
    now: &[&CapacityFigures],
    settings: &GateSettings,
) -> Result<Evidence, String> {
    let judge = |runs: &[&CapacityFigures]| -> Result<Runs, String> {
        let estimates = runs
            .iter()
            .enumerate()
            .map(|(index, run)| {
                let rate = run
                    .rate
                    .ok_or_else(|| format!("no step held in run {}", index + 1))?;
                let low = run.low.unwrap_or(rate).min(rate);
                let high = run.high.unwrap_or(rate).max(rate);
                Ok(Estimate {
                    value: rate,
                    low,
                    high,
                    standard_error: (high / low).ln() / 12f64.sqrt(),
                    beyond: None,
                    design_effect: 1.0,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let scaled = estimates.iter().map(|e| e.value.ln()).collect();
        Ok(Runs { estimates, scaled })
    };
    let (a, b) = both(judge(then), judge(now))?;
    Ok(runs_evidence(Metric::Capacity, &a, &b, settings))
}

/// Each side's runs' figures on the judging scale, compared with a t test
/// on the runs (the between-run variance pooled over both sides, never
/// below what the runs say of themselves), or with one run a side with the
/// spread between runs assumed.
fn runs_evidence(metric: Metric, a: &Runs, b: &Runs, settings: &GateSettings) -> Evidence {
    let z = z_for(settings.confidence);
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
    let variance = side_variance(a) + side_variance(b);
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
    Evidence {
        baseline: side(a),
        current: side(b),
        difference: b.mean() - a.mean(),
        variance,
        critical,
        per_run: 2.0 * variance / (1.0 / k_a + 1.0 / k_b),
    }
}
