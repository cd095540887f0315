//! When things happen: how many users a closed-model ramp wants at a given
//! time, and when the i-th iteration of an open-model schedule is due.

use std::time::Duration;

use crate::suite::plan::{RateStage, UserStage};

/// Users a ramp wants `at` into the run (linear within a stage).
pub fn users_at(stages: &[UserStage], at: Duration) -> f64 {
    let mut start = Duration::ZERO;
    for stage in stages {
        let end = start + stage.duration;
        if at < end {
            let fraction = if stage.duration.is_zero() {
                1.0
            } else {
                (at - start).as_secs_f64() / stage.duration.as_secs_f64()
            };
            return f64::from(stage.from)
                + (f64::from(stage.to) - f64::from(stage.from)) * fraction;
        }
        start = end;
    }
    stages.last().map_or(0.0, |s| f64::from(s.to))
}

/// This worker's share of `total` users, spread evenly over `workers`.
pub fn share(total: u32, worker: usize, workers: usize) -> u32 {
    let workers = workers as u32;
    let worker = worker as u32;
    total / workers + u32::from(worker < total % workers)
}

/// The time iteration `index` (0-based) of an arrival-rate schedule is due,
/// or `None` when the schedule ends first. Within a stage the rate moves
/// linearly from `from` to `to` per second, so the count of iterations due
/// by τ is `from·τ + (to − from)·τ²/(2D)`; iteration i is due when it
/// reaches i.
pub fn iteration_time(stages: &[RateStage], index: u64) -> Option<Duration> {
    let mut remaining = index as f64;
    let mut start = 0.0;
    for stage in stages {
        let length = stage.duration.as_secs_f64();
        let in_stage = (stage.from + stage.to) / 2.0 * length;
        if remaining < in_stage {
            let slope = (stage.to - stage.from) / length.max(f64::MIN_POSITIVE);
            let tau = if slope.abs() < 1e-12 {
                remaining / stage.from
            } else {
                // from·τ + slope·τ²/2 = remaining
                let discriminant = stage.from * stage.from + 2.0 * slope * remaining;
                (-stage.from + discriminant.max(0.0).sqrt()) / slope
            };
            return Some(Duration::from_secs_f64(start + tau.clamp(0.0, length)));
        }
        remaining -= in_stage;
        start += length;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn ramps_interpolate_and_hold() {
        let stages = [
            UserStage {
                from: 0,
                to: 10,
                duration: secs(10.0),
            },
            UserStage {
                from: 10,
                to: 10,
                duration: secs(5.0),
            },
        ];
        assert_eq!(users_at(&stages, secs(0.0)), 0.0);
        assert_eq!(users_at(&stages, secs(5.0)), 5.0);
        assert_eq!(users_at(&stages, secs(12.0)), 10.0);
        assert_eq!(users_at(&stages, secs(99.0)), 10.0);
    }

    #[test]
    fn shares_add_up() {
        for total in 0..20 {
            for workers in 1..5 {
                assert_eq!(
                    (0..workers).map(|w| share(total, w, workers)).sum::<u32>(),
                    total
                );
            }
        }
    }

    #[test]
    fn constant_rate_is_evenly_spaced() {
        let stages = [RateStage {
            from: 10.0,
            to: 10.0,
            duration: secs(2.0),
        }];
        assert_eq!(iteration_time(&stages, 0), Some(secs(0.0)));
        assert_eq!(iteration_time(&stages, 5), Some(secs(0.5)));
        assert_eq!(iteration_time(&stages, 19), Some(secs(1.9)));
        assert_eq!(iteration_time(&stages, 20), None);
    }

    #[test]
    fn ramping_rate_accelerates() {
        // 0 → 10 per second over 2 s: 10 iterations in all, the last ones closest together.
        let stages = [RateStage {
            from: 0.0,
            to: 10.0,
            duration: secs(2.0),
        }];
        let times: Vec<f64> = (0..10)
            .map(|i| iteration_time(&stages, i).unwrap().as_secs_f64())
            .collect();
        assert!(times.windows(2).all(|w| w[1] > w[0]));
        assert!((times[9] - times[8]) < (times[2] - times[1]));
        assert_eq!(iteration_time(&stages, 10), None);
        // N(τ) = 2.5 τ²: the 5th iteration is due at √2 s.
        assert!((times[5] - 2f64.sqrt()).abs() < 1e-9);
    }
}
