//! One worker thread of the engine: its virtual users, its recorder and
//! its once-a-second ticker, on a current-thread runtime. The worker drives
//! its share of the executor's users, stops them gracefully at the end, and
//! reports its intervals and what it collected to the aggregator.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rand::Rng as _;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::http::Client;
use super::task::run_task;
use super::vu::{self, VirtualUser, WorkerShared};
use super::{Global, Report, schedule};
use crate::metrics::{Gauges, Phase, Recorder};
use crate::suite::plan::{Executor, Plan, TaskPlan};

/// A worker: set up, drive the executor, stop, report.
pub(super) async fn worker_main(
    worker: usize,
    global: Arc<Global>,
    sender: mpsc::UnboundedSender<Report>,
) {
    let plan = global.plan.clone();
    let mut recorder = Recorder::new(plan.endpoints.len());
    recorder.set_phase(if global.warm_up_seconds > 0 {
        Phase::WarmUp
    } else {
        Phase::Measured
    });
    let spawner = Spawner {
        worker,
        shared: Rc::new(WorkerShared {
            plan: plan.clone(),
            origin: global.origin.clone(),
            recorder: RefCell::new(recorder),
            writes: RefCell::new(Vec::new()),
            truths: RefCell::new(Vec::new()),
            global: global.global_scope.clone(),
            started: global.started,
        }),
        state: Rc::new(WorkerState {
            active: Cell::new(0),
            target: Cell::new(0),
            stopping: Cell::new(false),
            max_users: Cell::new(0),
            late: Cell::new(false),
            slots: RefCell::new(Vec::new()),
        }),
        global,
    };
    let ticker = spawner.spawn_ticker(sender.clone());
    let mut handles = Vec::new();
    spawner.drive(&mut handles).await;
    let interrupted = spawner.stop_gracefully(handles).await;
    ticker.abort();
    let _ = ticker.await;
    spawner.report_last(interrupted, &sender);
}

/// What a worker spawns its users with.
struct Spawner {
    worker: usize,
    global: Arc<Global>,
    shared: Rc<WorkerShared>,
    state: Rc<WorkerState>,
}

impl Spawner {
    /// Once a second, hands the interval and the gauges to the aggregator.
    fn spawn_ticker(&self, sender: mpsc::UnboundedSender<Report>) -> JoinHandle<()> {
        let shared = self.shared.clone();
        let state = self.state.clone();
        let global = self.global.clone();
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
    }

    /// Starts one virtual user in the lowest free slot.
    fn spawn_vu(&self, handles: &mut Vec<JoinHandle<()>>, mode: VuMode) {
        let global = &self.global;
        let local_index = self.state.claim_slot();
        let id = self.worker as u64 + global.workers as u64 * u64::from(local_index);
        let user = if global.users.is_empty() {
            None
        } else {
            Some(global.users[(id as usize) % global.users.len()].clone())
        };
        let client = Client::new(global.origin.clone(), global.plan.load.timeout);
        let vu = VirtualUser::new(id, client, user, global.seed);
        handles.push(tokio::task::spawn_local(vu_main(
            vu,
            local_index,
            mode,
            self.shared.clone(),
            self.state.clone(),
            global.clone(),
        )));
    }

    /// This worker's share of the executor, until its duration ends or the
    /// run is stopped.
    async fn drive(&self, handles: &mut Vec<JoinHandle<()>>) {
        let (global, state) = (&self.global, &self.state);
        let (worker, workers) = (self.worker, global.workers);
        let duration = global.plan.load.executor.duration();
        match &global.plan.load.executor {
            Executor::Users { stages } => loop {
                let elapsed = global.started.elapsed();
                if elapsed >= duration || global.stopping() {
                    break;
                }
                let total = schedule::users_at(stages, elapsed).round() as u32;
                let mine = schedule::share(total, worker, workers);
                state.target.set(mine);
                // Users above the target stop after their iteration; new
                // ones start where the target rose.
                handles.retain(|h| !h.is_finished());
                while state.active.get() < mine {
                    self.spawn_vu(handles, VuMode::Closed { iterations: None });
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            },
            Executor::Iterations {
                users,
                iterations,
                max_duration,
            } => {
                let mine = schedule::share(*users, worker, workers);
                state.target.set(mine);
                for _ in 0..mine {
                    let iterations = Some(*iterations);
                    self.spawn_vu(handles, VuMode::Closed { iterations });
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
                let schedule = OpenSchedule::Stages(Rc::new(stages.clone()));
                self.drive_open(
                    handles,
                    schedule,
                    *pre_allocated_users,
                    *max_users,
                    duration,
                )
                .await;
            }
            Executor::Steered {
                staircase,
                pre_allocated_users,
                max_users,
                ..
            } => {
                let schedule = OpenSchedule::Steered(staircase.clone());
                self.drive_open(
                    handles,
                    schedule,
                    *pre_allocated_users,
                    *max_users,
                    duration,
                )
                .await;
            }
        }
    }

    /// An open model's users: the pre-allocated ones, and one more each time
    /// an iteration comes late because every user was busy, up to the maximum.
    async fn drive_open(
        &self,
        handles: &mut Vec<JoinHandle<()>>,
        schedule: OpenSchedule,
        pre_allocated_users: u32,
        max_users: u32,
        duration: Duration,
    ) {
        let (global, state) = (&self.global, &self.state);
        let (worker, workers) = (self.worker, global.workers);
        let pre = schedule::share(pre_allocated_users, worker, workers).max(1);
        let max = schedule::share(max_users, worker, workers).max(pre);
        state.target.set(max);
        let open = || VuMode::Open {
            schedule: schedule.clone(),
        };
        for _ in 0..pre {
            self.spawn_vu(handles, open());
        }
        loop {
            let elapsed = global.started.elapsed();
            if elapsed >= duration || global.stopping() || handles.iter().all(|h| h.is_finished()) {
                break;
            }
            // Late iterations mean every user is busy: add one, up to the maximum.
            if state.late.get() && state.active.get() < max {
                state.late.set(false);
                self.spawn_vu(handles, open());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Graceful stop: no new iterations; in-flight ones may finish until
    /// the plan's graceful stop, then are cut off. Returns how many were.
    async fn stop_gracefully(&self, handles: Vec<JoinHandle<()>>) -> u64 {
        self.state.stopping.set(true);
        let deadline = Instant::now() + self.global.plan.load.graceful_stop;
        while handles.iter().any(|h| !h.is_finished())
            && Instant::now() < deadline
            && !self.global.external_stop.now()
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
        interrupted
    }

    /// The last partial second (with the interrupted requests), then what
    /// the worker collected.
    fn report_last(&self, interrupted: u64, sender: &mpsc::UnboundedSender<Report>) {
        let (global, shared) = (&self.global, &self.shared);
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
            max_users: u64::from(self.state.max_users.get()),
        });
    }
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
    Closed { iterations: Option<u32> },
    Open { schedule: OpenSchedule },
}

/// When an open model's iterations are due: a fixed schedule, or one a
/// capacity search steers while the run runs.
#[derive(Clone)]
enum OpenSchedule {
    Stages(Rc<Vec<crate::suite::plan::RateStage>>),
    Steered(crate::suite::plan::Staircase),
}

impl OpenSchedule {
    async fn due(&self, index: u64) -> Option<Duration> {
        match self {
            OpenSchedule::Stages(stages) => schedule::iteration_time(stages, index),
            OpenSchedule::Steered(staircase) => staircase.due(index).await,
        }
    }
}

impl VuMode {
    /// Whether a user with a fixed number of iterations has done them all.
    fn finished_after(&self, done: u32) -> bool {
        matches!(self, VuMode::Closed { iterations: Some(limit) } if done >= *limit)
    }
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
        if let VuMode::Open { schedule } = &mode {
            let index = global.next_iteration.fetch_add(1, Ordering::Relaxed);
            let Some(due) = schedule.due(index).await else {
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
            if mode.finished_after(done) {
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
        if mode.finished_after(done) {
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
    if plan.auth.as_ref().is_some_and(|auth| auth.every_iteration) {
        vu.log_out();
    }
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
