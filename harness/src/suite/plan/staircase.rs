//! The arrival rate of a capacity search, steered while the run runs: the
//! plan carries the [`Staircase`], the search appends its steps, and the
//! engine's users follow it.

use std::time::Duration;

/// One step of a steered arrival rate: `rate` iterations a second from
/// `start` to `end` (from the engine's start).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Stair {
    pub start: Duration,
    pub end: Duration,
    pub rate: f64,
}

/// The steps known so far, and whether more may come.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stairs {
    pub steps: Vec<Stair>,
    /// No step will be added: iterations past the last one never come.
    pub closed: bool,
}

/// When an iteration of a steered schedule is due.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Due {
    At(Duration),
    /// Past the last step, and none will come.
    Ended,
    /// Past the last step so far: wait for the next.
    NotYet,
}

impl Stairs {
    /// When iteration `index` (0-based, over the whole run) is due: the
    /// steps follow each other with gaps between them, each evenly spaced.
    pub fn due(&self, index: u64) -> Due {
        let mut remaining = index as f64;
        for step in &self.steps {
            let length = step.end.saturating_sub(step.start).as_secs_f64();
            let in_step = (step.rate * length).floor();
            if remaining < in_step {
                return Due::At(step.start + Duration::from_secs_f64(remaining / step.rate));
            }
            remaining -= in_step;
        }
        if self.closed { Due::Ended } else { Due::NotYet }
    }
}

/// An open-model schedule steered while the run runs (a capacity search):
/// the controller appends a step once it has judged the one before, and
/// users asking for an iteration past the last step wait for it. Shared by
/// every worker; cheap to clone.
#[derive(Clone)]
pub struct Staircase {
    stairs: std::sync::Arc<tokio::sync::watch::Sender<Stairs>>,
    /// When the engine started: the steps' times count from it.
    origin: std::sync::Arc<std::sync::OnceLock<std::time::Instant>>,
}

impl Default for Staircase {
    fn default() -> Staircase {
        Staircase {
            stairs: std::sync::Arc::new(tokio::sync::watch::Sender::new(Stairs::default())),
            origin: Default::default(),
        }
    }
}

impl std::fmt::Debug for Staircase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Staircase")
            .field(&*self.stairs.borrow())
            .finish()
    }
}

/// Two staircases are equal when they are the same one.
impl PartialEq for Staircase {
    fn eq(&self, other: &Staircase) -> bool {
        std::sync::Arc::ptr_eq(&self.stairs, &other.stairs)
    }
}

impl serde::Serialize for Staircase {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.stairs.borrow().steps.serialize(serializer)
    }
}

impl Staircase {
    /// Adds a step (after the last one).
    pub fn push(&self, stair: Stair) {
        self.stairs.send_modify(|stairs| stairs.steps.push(stair));
    }

    /// No more steps: users waiting for one end.
    pub fn close(&self) {
        self.stairs.send_modify(|stairs| stairs.closed = true);
    }

    /// The engine starts its clock: the steps count from `at`.
    pub fn set_origin(&self, at: std::time::Instant) {
        let _ = self.origin.set(at);
    }

    /// Time since the engine started, once it has.
    pub fn elapsed(&self) -> Option<Duration> {
        self.origin.get().map(std::time::Instant::elapsed)
    }

    pub fn steps(&self) -> Vec<Stair> {
        self.stairs.borrow().steps.clone()
    }

    /// When iteration `index` is due, waiting for its step; `None` once the
    /// staircase is closed before it.
    pub async fn due(&self, index: u64) -> Option<Duration> {
        let mut receiver = self.stairs.subscribe();
        loop {
            match receiver.borrow_and_update().due(index) {
                Due::At(at) => return Some(at),
                Due::Ended => return None,
                Due::NotYet => {}
            }
            receiver.changed().await.ok()?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn steered_steps_follow_each_other_and_wait_for_the_next() {
        let mut stairs = Stairs::default();
        stairs.steps.push(Stair {
            start: secs(0.0),
            end: secs(2.0),
            rate: 5.0,
        });
        assert_eq!(stairs.due(0), Due::At(secs(0.0)));
        assert_eq!(stairs.due(9), Due::At(secs(1.8)));
        assert_eq!(stairs.due(10), Due::NotYet);
        stairs.steps.push(Stair {
            start: secs(3.0),
            end: secs(4.0),
            rate: 10.0,
        });
        assert_eq!(stairs.due(10), Due::At(secs(3.0)));
        assert_eq!(stairs.due(15), Due::At(secs(3.5)));
        assert_eq!(stairs.due(20), Due::NotYet);
        stairs.closed = true;
        assert_eq!(stairs.due(20), Due::Ended);
    }

    #[tokio::test]
    async fn a_user_waits_for_the_step_it_needs() {
        let staircase = Staircase::default();
        let waiting = tokio::spawn({
            let staircase = staircase.clone();
            async move { staircase.due(3).await }
        });
        tokio::task::yield_now().await;
        staircase.push(Stair {
            start: secs(1.0),
            end: secs(2.0),
            rate: 4.0,
        });
        assert_eq!(waiting.await.unwrap(), Some(secs(1.75)));
        let ended = tokio::spawn({
            let staircase = staircase.clone();
            async move { staircase.due(4).await }
        });
        tokio::task::yield_now().await;
        staircase.close();
        assert_eq!(ended.await.unwrap(), None);
    }
}
