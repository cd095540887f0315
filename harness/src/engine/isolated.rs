//! Tasks one at a time, alone: the query-budget phase. One virtual user
//! logs in, then runs each task a number of times while nothing else runs,
//! and a counter read before and after (the database's own statement count)
//! says what each request cost.

use std::cell::RefCell;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::EngineInput;
use super::http::{Client, Origin};
use super::vu::{VirtualUser, WorkerShared};
use crate::metrics::{Phase, Recorder};
use crate::suite::plan::TaskKind;

/// What one task cost per request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct IsolatedMeasure {
    pub task: String,
    pub requests: u64,
    /// Requests that succeeded (a failing task's cost says little).
    pub successes: u64,
    /// The counter's increase divided by the requests sent.
    pub per_request: f64,
}

/// Runs each HTTP task `repetitions` times and reads `counter` around it.
/// Tasks whose variables no value satisfies are skipped (not measured).
pub async fn measure_each<F, Fut>(
    input: EngineInput,
    repetitions: u32,
    mut counter: F,
) -> anyhow::Result<Vec<IsolatedMeasure>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<f64>>,
{
    let plan = input.plan.clone();
    let origin = Arc::new(Origin::resolve(input.base_url.expose_secret()).await?);
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async move {
            let mut recorder = Recorder::new(plan.endpoints.len());
            recorder.set_phase(Phase::Measured);
            let shared = WorkerShared {
                plan: plan.clone(),
                origin: origin.clone(),
                recorder: RefCell::new(recorder),
                writes: RefCell::new(Vec::new()),
                truths: RefCell::new(Vec::new()),
                global: input.global.clone(),
                started: Instant::now(),
            };
            let user = input.users.first().cloned();
            let mut vu =
                VirtualUser::new(0, Client::new(origin, plan.load.timeout), user, input.seed);
            if let Some(auth) = &plan.auth {
                anyhow::ensure!(
                    vu.login(&shared, auth).await,
                    "the query-budget phase could not log in"
                );
            }
            let mut measures = Vec::new();
            for task in plan
                .tasks
                .iter()
                .filter(|t| matches!(t.kind, TaskKind::Http(_)))
            {
                let before_stats = shared.recorder.borrow_mut().take_interval();
                drop(before_stats);
                let start = counter().await?;
                for _ in 0..repetitions {
                    super::task::run_task(&mut vu, &shared, &input.custom_tasks, task, None).await;
                }
                let end = counter().await?;
                let interval = shared.recorder.borrow_mut().take_interval();
                let stats = &interval.endpoints[task.endpoint];
                if stats.requests == 0 {
                    continue;
                }
                measures.push(IsolatedMeasure {
                    task: task.name.clone(),
                    requests: stats.requests,
                    successes: stats.requests - stats.failures,
                    per_request: (end - start) / stats.requests as f64,
                });
            }
            Ok(measures)
        })
        .await
}
