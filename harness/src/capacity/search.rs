//! Where the next step goes: up by `growth` until a step fails, then
//! bisection (geometric) between the highest step that held below the
//! lowest that failed, until they are within `resolution`. Never a step at
//! or above one that failed, so the search overloads past the first broken
//! step for no longer than that one step. A pure state machine: a test can
//! drive it with a known system.

use serde::{Deserialize, Serialize};

use crate::suite::plan::CapacityPlan;

/// Why a search ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Ended {
    /// The highest step that held and the lowest that failed are within the resolution.
    Converged,
    /// The highest rate allowed held: the capacity is at least that.
    MaxRate,
    /// Steps down to a small fraction of the first failed too.
    NothingHeld,
    /// The time allowed would not hold another step.
    OutOfTime,
    /// The run was stopped from outside (an interrupt) or ended before the search.
    Stopped,
}

impl Ended {
    pub fn text(self) -> &'static str {
        match self {
            Ended::Converged => "the steps around the capacity came within the resolution",
            Ended::MaxRate => "the highest rate allowed (`max-rate`) held",
            Ended::NothingHeld => "even the lowest step failed",
            Ended::OutOfTime => "the time allowed (`max-time`) would not hold another step",
            Ended::Stopped => "the run was stopped before the search ended",
        }
    }
}

/// The next step, or the end.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Next {
    Step(f64),
    Done(Ended),
}

/// The search so far: each step's rate and whether it held.
#[derive(Debug, Clone)]
pub struct Search {
    start: f64,
    growth: f64,
    resolution: f64,
    max_rate: f64,
    steps: Vec<(f64, bool)>,
}

impl Search {
    pub fn new(plan: &CapacityPlan) -> Search {
        Search {
            start: plan.start.min(plan.max_rate),
            growth: plan.growth,
            resolution: plan.resolution,
            max_rate: plan.max_rate,
            steps: Vec::new(),
        }
    }

    pub fn first(&self) -> f64 {
        self.start
    }

    /// The lowest rate that failed.
    pub fn lowest_failed(&self) -> Option<f64> {
        self.steps
            .iter()
            .filter(|(_, held)| !held)
            .map(|(rate, _)| *rate)
            .reduce(f64::min)
    }

    /// The highest rate that held below the lowest that failed: the capacity.
    pub fn highest_held(&self) -> Option<f64> {
        let ceiling = self.lowest_failed().unwrap_or(f64::INFINITY);
        self.steps
            .iter()
            .filter(|(rate, held)| *held && *rate < ceiling)
            .map(|(rate, _)| *rate)
            .reduce(f64::max)
    }

    /// Records a step and says where the next goes; `room` is whether the
    /// time left holds another step.
    pub fn record(&mut self, rate: f64, held: bool, room: bool) -> Next {
        self.steps.push((rate, held));
        let next = match (self.highest_held(), self.lowest_failed()) {
            (_, None) if rate >= self.max_rate => return Next::Done(Ended::MaxRate),
            (_, None) => (rate * self.growth).min(self.max_rate),
            (None, Some(failed)) => {
                let lower = failed / self.growth;
                if lower < self.start / self.growth.powi(4) {
                    return Next::Done(Ended::NothingHeld);
                }
                lower
            }
            (Some(held), Some(failed)) => {
                if failed <= held * (1.0 + self.resolution) {
                    return Next::Done(Ended::Converged);
                }
                (held * failed).sqrt()
            }
        };
        if room {
            Next::Step(next)
        } else {
            Next::Done(Ended::OutOfTime)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(start: f64, max_rate: f64) -> CapacityPlan {
        CapacityPlan {
            start,
            growth: 2.0,
            resolution: 0.10,
            max_rate,
            step: std::time::Duration::from_secs(10),
            settle: std::time::Duration::from_secs(2),
            max_time: std::time::Duration::from_secs(600),
            confidence: 0.9,
            staircase: Default::default(),
        }
    }

    /// Drives a search against a system that holds up to `capacity`.
    fn search(start: f64, max_rate: f64, capacity: f64) -> (Vec<f64>, Next, Search) {
        let mut search = Search::new(&plan(start, max_rate));
        let mut rate = search.first();
        let mut rates = Vec::new();
        loop {
            rates.push(rate);
            match search.record(rate, rate <= capacity, rates.len() < 30) {
                Next::Step(next) => rate = next,
                done => return (rates, done, search),
            }
        }
    }

    #[test]
    fn grows_then_bisects_to_within_the_resolution() {
        let (rates, end, search) = search(5.0, 2000.0, 43.0);
        assert_eq!(end, Next::Done(Ended::Converged));
        assert_eq!(&rates[..5], &[5.0, 10.0, 20.0, 40.0, 80.0]);
        let (held, failed) = (
            search.highest_held().unwrap(),
            search.lowest_failed().unwrap(),
        );
        assert!(
            held <= 43.0 && failed > 43.0 && failed <= held * 1.1,
            "{held} {failed}"
        );
        // Nothing at or above the first failed step after it.
        assert!(rates[5..].iter().all(|r| *r < 80.0), "{rates:?}");
    }

    #[test]
    fn goes_down_when_the_first_step_fails_and_gives_up_far_below() {
        let (rates, end, search) = search(40.0, 2000.0, 7.0);
        assert_eq!(end, Next::Done(Ended::Converged));
        assert_eq!(&rates[..4], &[40.0, 20.0, 10.0, 5.0]);
        assert!(search.highest_held().unwrap() <= 7.0);
        let (_, end, search) = search_nothing();
        assert_eq!(end, Next::Done(Ended::NothingHeld));
        assert_eq!(search.highest_held(), None);
    }

    fn search_nothing() -> (Vec<f64>, Next, Search) {
        search(40.0, 2000.0, 0.1)
    }

    #[test]
    fn stops_at_the_highest_rate_allowed_and_when_time_runs_out() {
        let (rates, end, _) = search(5.0, 30.0, 1000.0);
        assert_eq!(end, Next::Done(Ended::MaxRate));
        assert_eq!(rates, vec![5.0, 10.0, 20.0, 30.0]);
        let mut search = Search::new(&plan(5.0, 100.0));
        assert_eq!(
            search.record(5.0, true, false),
            Next::Done(Ended::OutOfTime)
        );
    }

    #[test]
    fn a_lucky_step_above_a_failed_one_is_not_the_capacity() {
        let mut search = Search::new(&plan(5.0, 100.0));
        search.record(20.0, false, true);
        search.record(40.0, true, true);
        search.record(10.0, true, true);
        assert_eq!(search.highest_held(), Some(10.0));
    }
}
