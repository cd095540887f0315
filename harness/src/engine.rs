//! The load engine: worker threads, each a current-thread tokio runtime that
//! owns its virtual users and its recorder; one executor loop for every
//! executor kind; once a second each worker hands its interval to the
//! aggregator. Open-model latency counts from the scheduled start.
//!
//! Architecture invariant: the engine knows nothing about Docker, seeding or
//! reports. It gets a plan, a base URL and users, and returns measurements.

pub mod http;
pub mod isolated;
pub mod schedule;
pub mod stop;
pub mod task;
pub mod vu;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use rand::Rng as _;
use tokio::sync::mpsc;

use self::http::{Client, Origin};
use self::stop::StopSignal;
use self::task::{CustomTasks, run_task};
use self::vu::{AckedWrite, EngineUser, TruthSample, VirtualUser, WorkerShared};
use crate::catalog::Scope;
use crate::metrics::summary::{RunHeader, RunSummary};
use crate::metrics::{Aggregator, Gauges, Interval, Phase, Recorder};
use crate::suite::plan::{Executor, Plan, TaskKind, TaskPlan};

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
    raise_open_file_limit();
    let origin = Arc::new(Origin::resolve(input.base_url.expose_secret()).await?);
    let mut cumulative = 0;
    let cumulative_weights: Vec<(u32, usize)> = plan
        .tasks
        .iter()
        .enumerate()
        .filter(|(_, t)| !t.on_start && t.weight > 0)
        .map(|(i, t)| {
            cumulative += t.weight;
            (cumulative, i)
        })
        .collect();
    let workers = plan.load.workers.max(1) as usize;
    // Shards start together at an instant on the wall clock.
    if let Some(at) = plan.shard.and_then(|shard| shard.start_at_unix_ms) {
        // In short steps, so an interrupt while waiting is heard.
        while !stop.requested() {
            let left = at.saturating_sub(unix_ms(SystemTime::now()));
            if left == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(left.min(100))).await;
        }
    }
    let started_unix_ms = unix_ms(SystemTime::now());
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
        cumulative_weights,
    });
    let started_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let (sender, mut receiver) = mpsc::unbounded_channel();
    let mut threads = Vec::new();
    for worker in 0..workers {
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
                    local.block_on(&runtime, worker_main(worker, global, sender));
                })?,
        );
    }
    drop(sender);

    let n_endpoints = plan.endpoints.len();
    let mut aggregator = Aggregator::new(n_endpoints, workers);
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
                        let series_point = aggregator.series().last().cloned();
                        let measured = aggregator.measured();
                        let warm = aggregator.warm_up();
                        let sum = |i: &Interval| {
                            i.endpoints
                                .iter()
                                .map(|e| (e.requests, e.failures))
                                .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
                        };
                        let (mr, mf) = sum(measured);
                        let (wr, wf) = sum(warm);
                        let _ = live.send(LiveStatus {
                            elapsed,
                            planned,
                            users: series_point.as_ref().map_or(0, |p| p.users),
                            requests: mr + wr,
                            failures: mf + wf,
                            requests_last_second: series_point.as_ref().map_or(0, |p| p.requests),
                            warm_up: (completed_seconds as u64) <= global.warm_up_seconds,
                        });
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

fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

async fn worker_main(worker: usize, global: Arc<Global>, sender: mpsc::UnboundedSender<Report>) {
    let plan = global.plan.clone();
    let mut recorder = Recorder::new(plan.endpoints.len());
    recorder.set_phase(if global.warm_up_seconds > 0 {
        Phase::WarmUp
    } else {
        Phase::Measured
    });
    let shared = Rc::new(WorkerShared {
        plan: plan.clone(),
        origin: global.origin.clone(),
        recorder: RefCell::new(recorder),
        writes: RefCell::new(Vec::new()),
        truths: RefCell::new(Vec::new()),
        global: global.global_scope.clone(),
        started: global.started,
    });
    let state = Rc::new(WorkerState {
        active: Cell::new(0),
        target: Cell::new(0),
        stopping: Cell::new(false),
        max_users: Cell::new(0),
        late: Cell::new(false),
        slots: RefCell::new(Vec::new()),
    });

    // The ticker: once a second, hand the interval over.
    let ticker = {
        let shared = shared.clone();
        let state = state.clone();
        let sender = sender.clone();
        let global = global.clone();
        tokio::task::spawn_local(async move {
            let mut second = 0usize;
            loop {
                tokio::time::sleep_until(
                    (global.started + Duration::from_secs(second as u64 + 1)).into(),
                )
                .await;
                let (interval, gauges) = {
                    let mut recorder = shared.recorder.borrow_mut();
                    let (in_flight, oldest) = recorder.in_flight_at(Instant::now());
                    let gauges = Gauges {
                        users: u64::from(state.active.get()),
                        in_flight,
                        oldest_in_flight_ms: oldest.as_millis() as u64,
                    };
                    let interval = recorder.take_interval();
                    if second as u64 + 1 >= global.warm_up_seconds {
                        recorder.set_phase(Phase::Measured);
                    }
                    (interval, gauges)
                };
                if sender
                    .send(Report::Interval {
                        second,
                        gauges,
                        interval,
                    })
                    .is_err()
                {
                    return;
                }
                second += 1;
            }
        })
    };

    let mut handles: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    let duration = plan.load.executor.duration();
    let spawn_vu = |handles: &mut Vec<tokio::task::JoinHandle<()>>, mode: VuMode| {
        let local_index = state.claim_slot();
        let id = worker as u64 + global.workers as u64 * u64::from(local_index);
        let user = if global.users.is_empty() {
            None
        } else {
            Some(global.users[(id as usize) % global.users.len()].clone())
        };
        let client = Client::new(global.origin.clone(), plan.load.timeout);
        let vu = VirtualUser::new(id, client, user, global.seed);
        handles.push(tokio::task::spawn_local(vu_main(
            vu,
            local_index,
            mode,
            shared.clone(),
            state.clone(),
            global.clone(),
        )));
    };

    match &plan.load.executor {
        Executor::Users { stages } => {
            loop {
                let elapsed = global.started.elapsed();
                if elapsed >= duration || global.stopping() {
                    break;
                }
                let total = schedule::users_at(stages, elapsed).round() as u32;
                let mine = schedule::share(total, worker, global.workers);
                state.target.set(mine);
                // Users above the target stop after their iteration; new
                // ones start where the target rose.
                handles.retain(|h| !h.is_finished());
                while state.active.get() < mine {
                    spawn_vu(&mut handles, VuMode::Closed { iterations: None });
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Executor::Iterations {
            users,
            iterations,
            max_duration,
        } => {
            let mine = schedule::share(*users, worker, global.workers);
            state.target.set(mine);
            for _ in 0..mine {
                spawn_vu(
                    &mut handles,
                    VuMode::Closed {
                        iterations: Some(*iterations),
                    },
                );
            }
            let deadline = global.started + *max_duration;
            while Instant::now() < deadline
                && !global.stopping()
                && handles.iter().any(|h| !h.is_finished())
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Executor::ArrivalRate {
            stages,
            pre_allocated_users,
            max_users,
        } => {
            let pre = schedule::share(*pre_allocated_users, worker, global.workers).max(1);
            let max = schedule::share(*max_users, worker, global.workers).max(pre);
            state.target.set(max);
            let stages = Rc::new(stages.clone());
            for _ in 0..pre {
                spawn_vu(
                    &mut handles,
                    VuMode::Open {
                        stages: stages.clone(),
                    },
                );
            }
            loop {
                let elapsed = global.started.elapsed();
                if elapsed >= duration
                    || global.stopping()
                    || handles.iter().all(|h| h.is_finished())
                {
                    break;
                }
                // Late iterations mean every user is busy: add one, up to the maximum.
                if state.late.get() && state.active.get() < max {
                    state.late.set(false);
                    spawn_vu(
                        &mut handles,
                        VuMode::Open {
                            stages: stages.clone(),
                        },
                    );
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    // Graceful stop: no new iterations; in-flight ones may finish.
    state.stopping.set(true);
    let deadline = Instant::now() + plan.load.graceful_stop;
    while handles.iter().any(|h| !h.is_finished())
        && Instant::now() < deadline
        && !global.external_stop.now()
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut interrupted = 0;
    for handle in &handles {
        if !handle.is_finished() {
            handle.abort();
            interrupted += 1;
        }
    }
    for handle in handles {
        let _ = handle.await;
    }
    ticker.abort();
    let _ = ticker.await;
    let mut final_interval = {
        let mut recorder = shared.recorder.borrow_mut();
        recorder.counters().interrupted += interrupted;
        recorder.take_interval()
    };
    let second = global.started.elapsed().as_secs() as usize;
    if final_interval.endpoints.iter().any(|e| e.requests > 0)
        || final_interval.counters != Default::default()
    {
        final_interval.phase = if (second as u64) < global.warm_up_seconds {
            Phase::WarmUp
        } else {
            Phase::Measured
        };
        let _ = sender.send(Report::Interval {
            second,
            gauges: Gauges::default(),
            interval: final_interval,
        });
    }
    let writes = std::mem::take(&mut *shared.writes.borrow_mut());
    let truths = std::mem::take(&mut *shared.truths.borrow_mut());
    let _ = sender.send(Report::Done {
        writes,
        truths,
        max_users: u64::from(state.max_users.get()),
    });
}

struct WorkerState {
    active: Cell<u32>,
    target: Cell<u32>,
    stopping: Cell<bool>,
    max_users: Cell<u32>,
    /// An open-model iteration started late: every user was busy.
    late: Cell<bool>,
    /// Which local indices running users hold. Users above the target stop
    /// after their iteration, and new ones take the lowest free index, so
    /// running users always hold indices below the target.
    slots: RefCell<Vec<bool>>,
}

impl WorkerState {
    fn wants(&self, local_index: u32) -> bool {
        !self.stopping.get() && local_index < self.target.get()
    }

    fn claim_slot(&self) -> u32 {
        let mut slots = self.slots.borrow_mut();
        let index = match slots.iter().position(|used| !used) {
            Some(free) => free,
            None => {
                slots.push(false);
                slots.len() - 1
            }
        };
        slots[index] = true;
        self.active.set(self.active.get() + 1);
        self.max_users
            .set(self.max_users.get().max(self.active.get()));
        index as u32
    }

    fn release_slot(&self, index: u32) {
        if let Some(slot) = self.slots.borrow_mut().get_mut(index as usize) {
            *slot = false;
        }
        self.active.set(self.active.get().saturating_sub(1));
    }
}

enum VuMode {
    Closed {
        iterations: Option<u32>,
    },
    Open {
        stages: Rc<Vec<crate::suite::plan::RateStage>>,
    },
}

async fn vu_main(
    mut vu: VirtualUser,
    local_index: u32,
    mode: VuMode,
    shared: Rc<WorkerShared>,
    state: Rc<WorkerState>,
    global: Arc<Global>,
) {
    let _slot = SlotGuard(state.clone(), local_index);
    let plan = shared.plan.clone();
    let mut started_tasks = false;
    let mut done = 0u32;
    loop {
        if global.stopping() || !state.wants(local_index) {
            return;
        }
        let mut scheduled = None;
        if let VuMode::Open { stages } = &mode {
            let index = global.next_iteration.fetch_add(1, Ordering::Relaxed);
            let Some(due) = schedule::iteration_time(stages, index) else {
                return;
            };
            let due = global.started + due;
            // A user that comes back for an iteration already due was busy
            // past it: every user is taken, so the pool should grow. (Timer
            // wake-ups a millisecond late say nothing of the kind.)
            if Instant::now() > due + Duration::from_millis(2) {
                state.late.set(true);
            }
            tokio::time::sleep_until(due.into()).await;
            let lateness = Instant::now().saturating_duration_since(due);
            if lateness > plan.load.max_lateness {
                shared.recorder.borrow_mut().counters().dropped_iterations += 1;
                continue;
            }
            scheduled = Some(due);
        }
        if let Some(auth) = &plan.auth
            && vu.needs_login(&plan)
            && !vu.login(&shared, auth).await
        {
            // A failed login uses up the iteration: the user tries again
            // next time, as a person would.
            done += 1;
            end_iteration(&mut vu, &shared, &plan, &mode, &state).await;
            if let VuMode::Closed {
                iterations: Some(limit),
            } = mode
                && done >= limit
            {
                return;
            }
            continue;
        }
        if !started_tasks {
            started_tasks = true;
            for task in plan.tasks.iter().filter(|t| t.on_start) {
                run_task(&mut vu, &shared, &global.custom_tasks, task, None).await;
            }
        }
        let task = pick_task(&mut vu, &global);
        run_task(&mut vu, &shared, &global.custom_tasks, task, scheduled).await;
        done += 1;
        end_iteration(&mut vu, &shared, &plan, &mode, &state).await;
        if let VuMode::Closed {
            iterations: Some(limit),
        } = mode
            && done >= limit
        {
            return;
        }
    }
}

async fn end_iteration(
    vu: &mut VirtualUser,
    shared: &WorkerShared,
    plan: &Plan,
    mode: &VuMode,
    state: &WorkerState,
) {
    shared.recorder.borrow_mut().counters().iterations += 1;
    vu.next_iteration();
    if matches!(mode, VuMode::Closed { .. }) && !state.stopping.get() {
        let pause = vu::think_time(vu, plan.load.think_time.min, plan.load.think_time.max);
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
}

fn pick_task<'a>(vu: &mut VirtualUser, global: &'a Global) -> &'a TaskPlan {
    let total = global.cumulative_weights.last().map_or(1, |(w, _)| *w);
    let draw = vu.rng.random_range(0..total);
    let index = global
        .cumulative_weights
        .iter()
        .find(|(w, _)| draw < *w)
        .map_or(0, |(_, i)| *i);
    &global.plan.tasks[index]
}

/// Holds a user's slot from spawn until its task ends, however it ends.
struct SlotGuard(Rc<WorkerState>, u32);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.0.release_slot(self.1);
    }
}
