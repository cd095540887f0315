//! The suite's faults, injected on the run's clock beside the load: each
//! waits for its instant, then disturbs its service through the stack, the
//! target's process, or the proxy on the target's path to a service. A
//! pause or a network fault is undone after its duration — or at once when
//! the run stops early, so nothing is left frozen; a restart lasts until
//! the service answers again. Each fault's window, as it happened, goes to
//! the summary, where phase selectors and `recovery.time` read it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use nix::sys::signal::Signal;

use crate::engine::stop::StopSignal;
use crate::infra::proxy::{FaultProxy, PathCondition};
use crate::infra::{Disturbance, ServiceName, Stack};
use crate::metrics::summary::FaultWindow;
use crate::suite::plan::{FaultAction, FaultPlan, FaultSubject};

/// The proxies on the target's paths, by the service each leads to.
pub(super) type FaultPaths = BTreeMap<ServiceName, FaultProxy>;

/// What a run offers its faults to act on.
pub(super) struct FaultScope<'a> {
    pub stack: Option<&'a Stack>,
    /// The target's process group, when the harness started it.
    pub target_pid: Option<u32>,
    pub paths: &'a FaultPaths,
}

/// The services whose paths need a proxy for this plan's faults.
pub(super) fn paths_needed(faults: &[FaultPlan]) -> Vec<ServiceName> {
    let mut services: Vec<ServiceName> = faults
        .iter()
        .filter(|f| f.action.is_network())
        .filter_map(|f| match f.subject {
            FaultSubject::Service(service) => Some(service),
            FaultSubject::Target => None,
        })
        .collect();
    services.sort();
    services.dedup();
    services
}

/// Refuses faults the run cannot carry out, before any load.
pub(super) fn check(
    stack: Option<&Stack>,
    target_started: bool,
    faults: &[FaultPlan],
) -> anyhow::Result<()> {
    for fault in faults {
        match (fault.subject, fault.action) {
            (_, action) if action.is_network() => anyhow::ensure!(
                target_started,
                "[[fault]] {} acts on the target's path to the service, through a proxy the harness points the target at: the target must be one the harness starts (the reference service or --target-command), not a URL",
                fault.describe()
            ),
            (FaultSubject::Target, _) => anyhow::ensure!(
                target_started,
                "[[fault]] {} needs a target the harness starts (the reference service or --target-command); a URL target's process is not ours to signal",
                fault.describe()
            ),
            (FaultSubject::Service(service), action) => {
                let capabilities = stack.map(|s| s.capabilities(service));
                let allowed = match action {
                    FaultAction::Kill => capabilities.is_some_and(|c| c.kill),
                    FaultAction::Pause => capabilities.is_some_and(|c| c.pause),
                    _ => capabilities.is_some_and(|c| c.restart),
                };
                anyhow::ensure!(
                    allowed,
                    "[[fault]] {} needs a stack the harness starts (the containers or native provider); this run's stack is {} (on an external stack only network faults are offered)",
                    fault.describe(),
                    stack.map_or("absent".to_owned(), |s| format!(
                        "{} (only visited)",
                        s.provider()
                    ))
                );
            }
        }
    }
    Ok(())
}

/// Carries out every fault; returns each one's window, in the order they
/// began.
pub(super) async fn inject(
    scope: FaultScope<'_>,
    faults: &[FaultPlan],
    started: Instant,
    stop: &StopSignal,
) -> Vec<FaultWindow> {
    let mut windows: Vec<FaultWindow> = Vec::new();
    let mut pending: Vec<&FaultPlan> = faults.iter().collect();
    pending.sort_by_key(|f| f.at);
    // Faults to undo: when, which, and the index of their window.
    let mut active: Vec<(Duration, &FaultPlan, usize)> = Vec::new();
    let second = || started.elapsed().as_secs_f64();
    loop {
        let next_fault = pending.first().map(|f| f.at);
        let next_end = active.iter().map(|(at, _, _)| *at).min();
        let Some(next) = next_fault.into_iter().chain(next_end).min() else {
            break;
        };
        if !sleep_until(started + next, stop).await {
            break;
        }
        if next_end == Some(next) {
            let index = active
                .iter()
                .position(|(at, _, _)| *at == next)
                .expect("found");
            let (_, fault, window) = active.remove(index);
            if let Err(error) = undo(&scope, fault).await {
                windows[window].error = Some(format!("{error:#}"));
            }
            windows[window].to_second = Some(second());
            continue;
        }
        let fault = pending.remove(0);
        let from_second = second();
        let outcome = apply(&scope, fault).await;
        // A restart is over when the service answers again; the others end
        // below, after their duration, or (a kill) never.
        let to_second = (fault.action == FaultAction::Restart).then(second);
        windows.push(FaultWindow {
            fault: fault.describe(),
            subject: fault.subject.to_string(),
            action: fault.action.name().to_owned(),
            from_second,
            to_second,
            error: outcome.err().map(|e| format!("{e:#}")),
        });
        if let Some(duration) = fault.duration {
            active.push((fault.at + duration, fault, windows.len() - 1));
        }
    }
    // Stopped early: nothing stays frozen, slowed or cut.
    for (_, fault, window) in active {
        if let Err(error) = undo(&scope, fault).await {
            windows[window].error = Some(format!("{error:#}"));
        }
        windows[window].to_second = Some(second());
    }
    windows
}

async fn apply(scope: &FaultScope<'_>, fault: &FaultPlan) -> anyhow::Result<()> {
    match (fault.subject, fault.action) {
        (FaultSubject::Service(service), action) if action.is_network() => {
            let condition = match action {
                FaultAction::Delay { latency, jitter } => PathCondition::Delay { latency, jitter },
                FaultAction::Bandwidth { bytes_per_second } => {
                    PathCondition::Bandwidth { bytes_per_second }
                }
                FaultAction::Reset => PathCondition::Reset,
                _ => PathCondition::Blackhole,
            };
            path(scope, service)?.set(condition);
            Ok(())
        }
        (FaultSubject::Service(service), FaultAction::Restart) => {
            stack(scope)?.restart(service).await
        }
        (FaultSubject::Service(service), action) => {
            let what = match action {
                FaultAction::Kill => Disturbance::Kill,
                _ => Disturbance::Pause,
            };
            stack(scope)?.disturb(service, what).await
        }
        (FaultSubject::Target, action) => signal_target(
            scope,
            match action {
                FaultAction::Kill => Signal::SIGKILL,
                _ => Signal::SIGSTOP,
            },
        ),
    }
}

async fn undo(scope: &FaultScope<'_>, fault: &FaultPlan) -> anyhow::Result<()> {
    match (fault.subject, fault.action) {
        (FaultSubject::Service(service), action) if action.is_network() => {
            path(scope, service)?.set(PathCondition::Clear);
            Ok(())
        }
        (FaultSubject::Service(service), _) => {
            stack(scope)?.disturb(service, Disturbance::Resume).await
        }
        (FaultSubject::Target, _) => signal_target(scope, Signal::SIGCONT),
    }
}

fn stack<'a>(scope: &FaultScope<'a>) -> anyhow::Result<&'a Stack> {
    scope
        .stack
        .context("the run has no stack the harness started")
}

fn path<'a>(scope: &FaultScope<'a>, service: ServiceName) -> anyhow::Result<&'a FaultProxy> {
    scope
        .paths
        .get(&service)
        .with_context(|| format!("no proxy on the target's path to {service}"))
}

fn signal_target(scope: &FaultScope<'_>, signal: Signal) -> anyhow::Result<()> {
    let pid = scope
        .target_pid
        .context("the harness did not start the target")?;
    // The target leads its own process group: its workers stop with it.
    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid as i32), signal)
        .with_context(|| format!("sending {signal} to the target"))
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
