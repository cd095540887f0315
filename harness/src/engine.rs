//! The load engine: worker threads, each a current-thread tokio runtime that
//! owns its virtual users and its recorder; one executor loop for every
//! executor kind; once a second each worker hands its interval to the
//! aggregator. Open-model latency counts from the scheduled start.
//!
//! Architecture invariant: the engine knows nothing about Docker, seeding or
//! reports. It gets a plan, a base URL and users, and returns measurements.

pub mod cost;
pub mod http;
pub mod isolated;
pub mod schedule;
pub mod stop;
pub mod task;
pub mod vu;
mod worker;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;

use self::http::Origin;
use self::stop::StopSignal;
use self::task::CustomTasks;
use self::vu::{AckedWrite, EngineUser, TruthSample};
use crate::catalog::Scope;
use crate::metrics::summary::{RunHeader, RunSummary};
use crate::metrics::{Aggregator, Gauges, Interval};
use crate::suite::plan::{Plan, TaskKind};

/// What a run needs beside the plan.
#[derive(Debug, Clone)]
pub struct EngineInput {
    pub plan: Arc<Plan>,
    /// `http://host:port` of the target.
    /// Where the load goes; its password (if any) only ever leaves masked.
    pub base_url: crate::secret::SecretUrl,
    /// Users to log in as (empty without auth).
    pub users: Vec<EngineUser>,
    /// Variables shared by all users.
    pub global: Arc<Scope>,
    /// Seeds each virtual user's random source.
    pub seed: u64,
    /// The implementations of the plan's custom tasks, by task name.
    pub custom_tasks: CustomTasks,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct EngineOutput {
    pub summary: RunSummary,
    /// Every write the target acknowledged.
    pub writes: Vec<AckedWrite>,
    /// Sampled response values, for the correctness check.
    pub truths: Vec<TruthSample>,
    pub aborted: bool,
    /// When the load began, in milliseconds since the Unix epoch: what a
    /// merge aligns shards' seconds by.
    pub started_unix_ms: u64,
    /// Every second whole, for a shard's result (empty when the run is not
    /// a shard).
    pub seconds: Vec<crate::metrics::kept::KeptSecond>,
}

/// Once a second, for progress displays.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveStatus {
    pub elapsed: Duration,
    pub planned: Duration,
    pub users: u64,
    pub requests: u64,
    pub failures: u64,
    pub requests_last_second: u64,
    pub warm_up: bool,
}

/// Decides, once a second, whether to stop early (abort-on-fail thresholds).
pub type AbortCheck = Box<dyn FnMut(&Aggregator, Duration) -> bool + Send>;

struct Global {
    plan: Arc<Plan>,
    custom_tasks: CustomTasks,
    origin: Arc<Origin>,
    users: Vec<EngineUser>,
    global_scope: Arc<Scope>,
    seed: u64,
    started: Instant,
    workers: usize,
    warm_up_seconds: u64,
    /// Set to end the run early. Relaxed is enough: it is a hint polled by
    /// loops that also wake on timers, and nothing else is published with it.
    stop: AtomicBool,
    /// A stop asked for from outside the run (an interrupt).
    external_stop: StopSignal,
    /// Next open-model iteration; workers draw from it concurrently, and
    /// `fetch_add` hands each index out exactly once whatever the ordering.
    next_iteration: AtomicU64,
    cumulative_weights: Vec<(u32, usize)>,
}

impl Global {
    /// Whether the run is to end early, from inside (abort-on-fail) or outside.
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.external_stop.requested()
    }
}

enum Report {
    Interval {
        second: usize,
        gauges: Gauges,
        interval: Interval,
    },
    Done {
        writes: Vec<AckedWrite>,
        truths: Vec<TruthSample>,
        max_users: u64,
    },
}

/// Every virtual user holds a connection: lift the soft limit on open files
/// to the hard one (often 1024 against 500,000), as a load generator must.
pub fn raise_open_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
        && let Err(error) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
    {
        tracing::warn!("cannot raise the open-file limit from {soft} to {hard}: {error}");
    }
}

/// Runs the plan's load against `input.base_url` and measures it.
pub async fn run(
    input: EngineInput,
    live: Option<tokio::sync::watch::Sender<LiveStatus>>,
    abort: Option<AbortCheck>,
) -> anyhow::Result<EngineOutput> {
    run_until(input, live, abort, StopSignal::default()).await
}

/// [`run`], which `stop` can end early from outside.
pub async fn run_until(
    input: EngineInput,
    live: Option<tokio::sync::watch::Sender<LiveStatus>>,
    mut abort: Option<AbortCheck>,
    stop: StopSignal,
) -> anyhow::Result<EngineOutput> {
    let plan = input.plan.clone();
    check_runnable(&input)?;
    raise_open_file_limit();
    let origin = Arc::new(Origin::resolve(input.base_url.expose_secret()).await?);
    let workers = plan.load.workers.max(1) as usize;
    // Shards start together at an instant on the wall clock.
    let start_at = plan.shard.and_then(|shard| shard.start_at_unix_ms);
    if let Some(at) = start_at {
        wait_until(at, &stop).await;
    }
    let started_unix_ms = unix_ms(SystemTime::now());
    if let Some(at) = start_at
        && started_unix_ms > at + crate::suite::plan::START_TOLERANCE.as_millis() as u64
    {
        tracing::warn!(
            "this shard's load begins {} ms after the agreed instant: it is late, and the merge refuses it unless told --allow-late",
            started_unix_ms - at
        );
    }
    let global = Arc::new(Global {
        plan: plan.clone(),
        custom_tasks: input.custom_tasks,
        origin,
        users: input.users,
        global_scope: input.global,
        seed: input.seed,
        started: Instant::now(),
        workers,
        warm_up_seconds: plan.load.warm_up.as_secs_f64().ceil() as u64,
        stop: AtomicBool::new(false),
        external_stop: stop,
        next_iteration: AtomicU64::new(0),
        cumulative_weights: cumulative_weights(&plan),
    });
    let started_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let (sender, mut receiver) = mpsc::unbounded_channel();
    let threads = spawn_workers(&global, sender)?;

    let n_endpoints = plan.endpoints.len();
    let mut aggregator = Aggregator::new(n_endpoints, workers);
    // A shard hands its seconds to the merge; a capacity search judges
    // each step on its own seconds.
    if let crate::suite::plan::Executor::Steered { staircase, .. } = &plan.load.executor {
        staircase.set_origin(global.started);
        aggregator.keep_seconds();
    }
    if plan.shard.is_some() {
        aggregator.keep_seconds();
    }
    let mut writes = Vec::new();
    let mut truths: Vec<TruthSample> = Vec::new();
    let mut max_users = 0;
    let mut completed_seconds = 0;
    let mut aborted = false;
    let planned = plan.load.executor.duration();
    while let Some(report) = receiver.recv().await {
        match report {
            Report::Interval {
                second,
                gauges,
                interval,
            } => {
                let complete = aggregator.add(second, gauges, &interval);
                while completed_seconds < complete {
                    completed_seconds += 1;
                    let elapsed = Duration::from_secs(completed_seconds as u64);
                    if let Some(live) = &live {
                        let warm_up = (completed_seconds as u64) <= global.warm_up_seconds;
                        let _ = live.send(LiveStatus::of(&aggregator, elapsed, planned, warm_up));
                    }
                    if let Some(check) = abort.as_mut()
                        && !aborted
                        && check(&aggregator, elapsed)
                    {
                        aborted = true;
                        global.stop.store(true, Ordering::Relaxed);
                    }
                }
            }
            Report::Done {
                writes: worker_writes,
                truths: worker_truths,
                max_users: worker_max,
            } => {
                writes.extend(worker_writes);
                truths.extend(worker_truths);
                max_users += worker_max;
            }
        }
    }
    for thread in threads {
        if thread.join().is_err() {
            anyhow::bail!("a load worker panicked");
        }
    }
    let elapsed = global.started.elapsed().as_secs_f64();
    let warm_up_seconds = (global.warm_up_seconds as f64).min(elapsed);
    let header = RunHeader {
        suite: plan.name.clone(),
        profile: plan.profile.clone(),
        // Masked: the header goes into every report, baseline and shard file.
        target: crate::secret::mask_password(global.origin.base.as_str().trim_end_matches('/')),
        started_at,
        warm_up_seconds,
        measured_seconds: (elapsed - warm_up_seconds).max(0.0),
        max_users,
        selection: plan.selection.clone(),
    };
    aggregator.finish();
    let summary = RunSummary::build(
        header,
        &plan.endpoints,
        aggregator.warm_up(),
        aggregator.measured(),
        aggregator.series().to_vec(),
    );
    Ok(EngineOutput {
        summary,
        writes,
        truths,
        aborted,
        started_unix_ms,
        seconds: aggregator.take_kept(),
    })
}

/// Refuses a plan the engine cannot run: no task, a custom task without
/// its implementation, a login without users.
fn check_runnable(input: &EngineInput) -> anyhow::Result<()> {
    let plan = &input.plan;
    anyhow::ensure!(
        plan.weighted_tasks().next().is_some(),
        "the plan has no task to run"
    );
    let missing: Vec<&str> = plan
        .tasks
        .iter()
        .filter(|t| matches!(t.kind, TaskKind::Custom) && !input.custom_tasks.contains(&t.name))
        .map(|t| t.name.as_str())
        .collect();
    anyhow::ensure!(
        missing.is_empty(),
        "custom tasks without an implementation: {}",
        missing.join(", ")
    );
    if plan.auth.is_some() {
        anyhow::ensure!(
            !input.users.is_empty(),
            "the suite logs in, but the user pool is empty"
        );
    }
    Ok(())
}

/// The weighted tasks' running sums of weight, with each task's index: a
/// draw below a sum picks its task.
fn cumulative_weights(plan: &Plan) -> Vec<(u32, usize)> {
    let mut cumulative = 0;
    plan.tasks
        .iter()
        .enumerate()
        .filter(|(_, t)| !t.on_start && t.weight > 0)
        .map(|(i, t)| {
            cumulative += t.weight;
            (cumulative, i)
        })
        .collect()
}

/// Waits until `at` (milliseconds since the Unix epoch), in short steps so
/// that an interrupt while waiting is heard.
async fn wait_until(at: u64, stop: &StopSignal) {
    while !stop.requested() {
        let left = at.saturating_sub(unix_ms(SystemTime::now()));
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(left.min(100))).await;
    }
}

/// One thread per worker, each with its current-thread runtime.
fn spawn_workers(
    global: &Arc<Global>,
    sender: mpsc::UnboundedSender<Report>,
) -> anyhow::Result<Vec<std::thread::JoinHandle<()>>> {
    let mut threads = Vec::new();
    for worker in 0..global.workers {
        let global = global.clone();
        let sender = sender.clone();
        threads.push(
            std::thread::Builder::new()
                .name(format!("ahsp-perf-worker-{worker}"))
                .spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("a runtime");
                    let local = tokio::task::LocalSet::new();
                    local.block_on(&runtime, worker::worker_main(worker, global, sender));
                })?,
        );
    }
    Ok(threads)
}

impl LiveStatus {
    /// The status after `elapsed` of the `planned` duration.
    fn of(aggregator: &Aggregator, elapsed: Duration, planned: Duration, warm_up: bool) -> Self {
        let series_point = aggregator.series().last();
        let sum = |i: &Interval| {
            i.endpoints
                .iter()
                .map(|e| (e.requests, e.failures))
                .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
        };
        let (mr, mf) = sum(aggregator.measured());
        let (wr, wf) = sum(aggregator.warm_up());
        LiveStatus {
            elapsed,
            planned,
            users: series_point.map_or(0, |p| p.users),
            requests: mr + wr,
            failures: mf + wf,
            requests_last_second: series_point.map_or(0, |p| p.requests),
            warm_up,
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
