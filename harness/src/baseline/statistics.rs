//! How much a whole-run figure would vary from run to run, estimated from
//! the run's own per-second windows.

use serde::{Deserialize, Serialize};

use crate::metrics::summary::SecondPoint;

/// The standard errors of a run's whole-run figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Noise {
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub requests_per_second: f64,
    /// How many per-second windows the estimate rests on.
    pub windows: usize,
}

/// The standard error of each whole-run figure, estimated from how much the
/// figure varies between the measured seconds: a robust standard deviation
/// (1.4826 × the median absolute deviation) over √windows. Seconds in which
/// the endpoint saw no request count for throughput, not for latency.
pub(super) fn per_second_noise(series: &[SecondPoint], index: usize) -> Option<Noise> {
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
