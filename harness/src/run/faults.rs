//! The suite's faults, injected on the run's clock beside the load: each
//! waits for its instant, disturbs its service through the stack, and a
//! pause is resumed after its duration — or at once when the run stops
//! early, so no service is left frozen.

use std::time::{Duration, Instant};

use crate::engine::stop::StopSignal;
use crate::infra::{Disturbance, Stack};
use crate::suite::plan::{FaultAction, FaultPlan};

/// Refuses faults the stack cannot carry out, before any load.
pub(super) fn check(stack: Option<&Stack>, faults: &[FaultPlan]) -> anyhow::Result<()> {
    for fault in faults {
        let capabilities = stack.map(|s| s.capabilities(fault.service));
        let allowed = match fault.action {
            FaultAction::Kill => capabilities.is_some_and(|c| c.kill),
            FaultAction::Pause => capabilities.is_some_and(|c| c.pause),
        };
        anyhow::ensure!(
            allowed,
            "[[fault]] {} needs a stack the harness starts (the containers or native provider); this run's stack is {}",
            fault.describe(),
            stack.map_or("absent".to_owned(), |s| format!(
                "{} (only visited)",
                s.provider()
            ))
        );
    }
    Ok(())
}

/// Carries out every fault; returns what happened, one line each.
pub(super) async fn inject(
    stack: Option<&Stack>,
    faults: &[FaultPlan],
    started: Instant,
    stop: &StopSignal,
) -> Vec<String> {
    let Some(stack) = stack else {
        return Vec::new();
    };
    let mut log = Vec::new();
    let mut pending: Vec<&FaultPlan> = faults.iter().collect();
    pending.sort_by_key(|f| f.at);
    // Pauses to resume: when, and which.
    let mut paused: Vec<(Duration, &FaultPlan)> = Vec::new();
    loop {
        let next_fault = pending.first().map(|f| f.at);
        let next_resume = paused.iter().map(|(at, _)| *at).min();
        let Some(next) = next_fault.into_iter().chain(next_resume).min() else {
            break;
        };
        if !sleep_until(started + next, stop).await {
            break;
        }
        let second = started.elapsed().as_secs_f64();
        if next_resume == Some(next) {
            let index = paused
                .iter()
                .position(|(at, _)| *at == next)
                .expect("found");
            let (_, fault) = paused.remove(index);
            log.push(outcome(stack, fault, Disturbance::Resume, second).await);
            continue;
        }
        let fault = pending.remove(0);
        let disturbance = match fault.action {
            FaultAction::Kill => Disturbance::Kill,
            FaultAction::Pause => Disturbance::Pause,
        };
        log.push(outcome(stack, fault, disturbance, second).await);
        if let Some(duration) = fault.duration {
            paused.push((fault.at + duration, fault));
        }
    }
    // Stopped early: nothing stays frozen.
    for (_, fault) in paused {
        let second = started.elapsed().as_secs_f64();
        log.push(outcome(stack, fault, Disturbance::Resume, second).await);
    }
    log
}

async fn outcome(stack: &Stack, fault: &FaultPlan, what: Disturbance, second: f64) -> String {
    match stack.disturb(fault.service, what).await {
        Ok(()) => format!("fault: {what} {} at {second:.1}s", fault.service),
        Err(error) => format!(
            "fault: could not {what} {} at {second:.1}s: {error:#}",
            fault.service
        ),
    }
}

/// Waits until `instant`; false when the run was stopped first.
async fn sleep_until(instant: Instant, stop: &StopSignal) -> bool {
    while Instant::now() < instant {
        if stop.requested() {
            return false;
        }
        let left = instant.saturating_duration_since(Instant::now());
        tokio::time::sleep(left.min(Duration::from_millis(100))).await;
    }
    !stop.requested()
}
