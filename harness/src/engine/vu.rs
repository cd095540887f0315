//! A virtual user: its HTTP client and cookies, its variables, its random
//! source, and what it does — log in, then run tasks, checking and
//! extracting from every response.
//!
//! The concerns live beside it: [`login`] (the CSRF login and why one
//! failed), [`checks`] (judging a response), [`variables`] (template
//! variables, extraction, preparing a request) and [`samples`] (truth
//! samples and acknowledged writes for the checks after the run).

mod checks;
mod login;
mod samples;
mod variables;

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderValue;
use http::header::REFERER;
use rand::Rng as _;

use self::checks::Judgement;
use self::variables::{TaskVars, VarValue, prepare};
use super::http::Client;
use crate::catalog::{Scope, Secret};
use crate::metrics::{FailureKind, FlightId, Outcome, Recorder};
use crate::suite::plan::{HttpTask, Plan, TaskPlan};
use crate::suite::template::RenderError;

pub use self::login::extract_hidden_field;
pub use self::samples::{AckedWrite, TruthSample};

/// A user to log in as, with what they can see.
#[derive(Debug, Clone)]
pub struct EngineUser {
    pub login: String,
    pub password: Secret,
    pub scope: Arc<Scope>,
}

/// What every virtual user of one worker shares. Workers run on
/// current-thread runtimes, so a `RefCell` is enough: nothing holds a borrow
/// across an await.
#[derive(Debug)]
pub struct WorkerShared {
    pub(crate) plan: Arc<Plan>,
    pub(crate) origin: Arc<super::http::Origin>,
    pub(crate) recorder: RefCell<Recorder>,
    pub(crate) writes: RefCell<Vec<AckedWrite>>,
    pub(crate) truths: RefCell<Vec<TruthSample>>,
    pub(crate) global: Arc<Scope>,
    pub(crate) started: Instant,
}

impl WorkerShared {
    pub(crate) fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Notes a request to `endpoint` as in flight until the returned guard
    /// lands. A guard dropped without landing (the run cut its request off)
    /// records a failure with the time the request had waited.
    pub(crate) fn take_off(&self, endpoint: usize) -> Flight<'_> {
        let started = Instant::now();
        let id = self.recorder.borrow_mut().take_off(started);
        Flight {
            shared: self,
            id,
            endpoint,
            started,
            landed: false,
        }
    }
}

/// A request in flight; see [`WorkerShared::take_off`].
#[derive(Debug)]
pub(crate) struct Flight<'a> {
    shared: &'a WorkerShared,
    id: FlightId,
    endpoint: usize,
    started: Instant,
    landed: bool,
}

impl Flight<'_> {
    /// The request ended (answered or failed): its caller records it.
    pub(crate) fn land(mut self) {
        self.landed = true;
    }
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        // A future is dropped at an await point, where no borrow of the
        // recorder is held; `try_` keeps a panic's unwinding from aborting.
        let Ok(mut recorder) = self.shared.recorder.try_borrow_mut() else {
            return;
        };
        recorder.land(self.id);
        if self.landed {
            return;
        }
        let waited = self.started.elapsed();
        let kind = if waited >= self.shared.plan.load.timeout {
            FailureKind::Timeout
        } else {
            FailureKind::Interrupted
        };
        let message = format!(
            "still in flight after {:.1}s when the run ended (its latency is a lower bound)",
            waited.as_secs_f64()
        );
        let at = self.shared.elapsed_ms();
        recorder.record(
            self.endpoint,
            micros(waited),
            0,
            Outcome::Failure {
                kind: &kind,
                message: &message,
            },
            at,
        );
        let counters = recorder.counters();
        counters.interrupted_requests += 1;
        counters.interrupted_longest_ms = counters
            .interrupted_longest_ms
            .max(waited.as_millis() as u64);
    }
}

/// One virtual user.
#[derive(Debug)]
pub struct VirtualUser {
    pub id: u64,
    pub(crate) client: Client,
    user: Option<EngineUser>,
    logged_in: bool,
    vars: HashMap<String, VarValue>,
    pub(crate) rng: rand_chacha::ChaCha8Rng,
    iteration: u64,
    /// Catalog paths to each variable, found once: in the user's scope
    /// (`[0]`) and in the global one (`[1]`, data from `[data.sql]`). One
    /// map for both answered "not in the user's scope" for the global too.
    paths: [HashMap<String, Option<Vec<String>>>; 2],
    path_buffer: String,
    /// Successful responses per task, for truth sampling.
    responses: HashMap<usize, u64>,
}

impl VirtualUser {
    pub fn new(id: u64, client: Client, user: Option<EngineUser>, seed: u64) -> VirtualUser {
        use rand::SeedableRng as _;
        VirtualUser {
            id,
            client,
            user,
            logged_in: false,
            vars: HashMap::new(),
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(
                seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            ),
            iteration: 0,
            paths: [HashMap::new(), HashMap::new()],
            path_buffer: String::new(),
            responses: HashMap::new(),
        }
    }

    pub fn var(&self, name: &str) -> Option<&str> {
        match self.vars.get(name)? {
            VarValue::One(value) => Some(value),
            VarValue::Many(values) => values.first().map(String::as_str),
        }
    }

    pub fn set_var(&mut self, name: &str, value: String) {
        self.vars.insert(name.to_owned(), VarValue::One(value));
    }

    pub fn needs_login(&self, plan: &Plan) -> bool {
        plan.auth.is_some() && !self.logged_in
    }

    pub fn next_iteration(&mut self) {
        self.iteration += 1;
    }

    /// The next iteration logs in again (`[auth] every-iteration`).
    pub fn log_out(&mut self) {
        self.logged_in = false;
    }

    /// Runs one HTTP task; `scheduled` is when an open-model iteration was
    /// due (latency counts from then: coordinated omission corrected).
    pub(crate) async fn run_http_task(
        &mut self,
        shared: &WorkerShared,
        task: &TaskPlan,
        http_task: &HttpTask,
        scheduled: Option<Instant>,
    ) {
        let plan = &shared.plan;
        let mut path = std::mem::take(&mut self.path_buffer);
        let mut vars = TaskVars::new(self, &shared.global);
        let prepared = prepare(http_task, &mut vars, &mut path, plan.auth.as_ref());
        let bound = vars.bound;
        let (headers, body) = match prepared {
            Ok(prepared) => prepared,
            Err(RenderError::Missing(variable)) => {
                let mut recorder = shared.recorder.borrow_mut();
                recorder.counters().skipped += 1;
                tracing::debug!(task = %task.name, %variable, "skipped: no value");
                self.path_buffer = path;
                return;
            }
        };
        let keep_body = http_task.expect.text.is_some()
            || http_task.expect.not_text.is_some()
            || http_task.expect.css.is_some()
            || http_task.expect.json_pointer.is_some()
            || !http_task.extract.is_empty()
            || !http_task.truths.is_empty();
        let mut headers = headers;
        if http_task.csrf {
            if let Some(auth) = &plan.auth
                && let (Some(cookie), Some(header)) = (&auth.csrf_cookie, &auth.csrf_header)
                && let (Some(token), Ok(name)) = (
                    self.client.cookie(cookie),
                    http::HeaderName::from_bytes(header.as_bytes()),
                )
                && let Ok(value) = HeaderValue::from_str(token)
            {
                headers.push((name, value));
            }
            let referer = format!(
                "{}{}",
                shared.origin.base.as_str().trim_end_matches('/'),
                "/"
            );
            if let Ok(value) = HeaderValue::from_str(&referer) {
                headers.push((REFERER, value));
            }
        }
        // W3C trace context: a new trace per request, sampled, so that the
        // application's tracing keeps it and its slowest can be looked up.
        let trace = plan.trace_context.then(|| {
            let trace: u128 = self.rng.random::<u128>() | 1;
            let span: u64 = self.rng.random::<u64>() | 1;
            if let Ok(value) = HeaderValue::from_str(&format!("00-{trace:032x}-{span:016x}-01")) {
                headers.push((http::HeaderName::from_static("traceparent"), value));
            }
            trace
        });
        let method = match http_task.method {
            crate::suite::plan::Method::Get => http::Method::GET,
            crate::suite::plan::Method::Post => http::Method::POST,
            crate::suite::plan::Method::Put => http::Method::PUT,
            crate::suite::plan::Method::Patch => http::Method::PATCH,
            crate::suite::plan::Method::Delete => http::Method::DELETE,
        };
        let started = scheduled.unwrap_or_else(Instant::now);
        let flight = shared.take_off(task.endpoint);
        let result = self
            .client
            .send(method, &path, &headers, body, keep_body)
            .await;
        flight.land();
        let latency = micros(started.elapsed());
        let at = shared.elapsed_ms();
        let response = match result {
            Ok(response) => response,
            Err(error) => {
                let mut recorder = shared.recorder.borrow_mut();
                if let Some(trace) = trace {
                    recorder.traced(trace);
                }
                recorder.record(
                    task.endpoint,
                    latency,
                    0,
                    Outcome::Failure {
                        kind: &error.kind,
                        message: &format!(
                            "{} {path}: {}",
                            http_task.method.as_str(),
                            error.message
                        ),
                    },
                    at,
                );
                self.path_buffer = path;
                return;
            }
        };
        let verdict = self.judge(plan.auth.as_ref(), http_task, &response, &path);
        let mut recorder = shared.recorder.borrow_mut();
        if let Some(trace) = trace {
            recorder.traced(trace);
        }
        match &verdict {
            Judgement::Ok => {
                let extracted = self.extract(http_task, &response);
                match extracted {
                    Ok(()) => {
                        recorder.record(
                            task.endpoint,
                            latency,
                            response.body_len,
                            Outcome::Success,
                            at,
                        );
                        if http_task.expect.css.is_some()
                            || http_task.expect.text.is_some()
                            || http_task.expect.json_pointer.is_some()
                        {
                            recorder.counters().checks_passed += 1;
                        }
                        drop(recorder);
                        if let Some(writes) = &http_task.writes {
                            self.remember_write(shared, task, writes, &bound);
                        }
                        if !http_task.truths.is_empty() {
                            self.sample_truths(shared, task, http_task, &response, &bound);
                        }
                    }
                    Err(message) => {
                        recorder.counters().checks_failed += 1;
                        recorder.record(
                            task.endpoint,
                            latency,
                            response.body_len,
                            Outcome::Failure {
                                kind: &FailureKind::CheckFailed,
                                message: &message,
                            },
                            at,
                        );
                    }
                }
            }
            Judgement::Conflict => recorder.record(
                task.endpoint,
                latency,
                response.body_len,
                Outcome::Conflict,
                at,
            ),
            Judgement::Failed(kind, message) => {
                if matches!(kind, FailureKind::CheckFailed) {
                    recorder.counters().checks_failed += 1;
                }
                if matches!(kind, FailureKind::LoginPageReturned) {
                    self.logged_in = false;
                }
                let message = format!("{} {path}: {message}", http_task.method.as_str());
                recorder.record(
                    task.endpoint,
                    latency,
                    response.body_len,
                    Outcome::Failure {
                        kind,
                        message: &message,
                    },
                    at,
                );
            }
        }
        self.path_buffer = path;
    }
}

pub(super) fn micros(duration: Duration) -> u64 {
    duration.as_micros() as u64
}

/// A think time drawn uniformly from the plan's range.
pub fn think_time(vu: &mut VirtualUser, min: Duration, max: Duration) -> Duration {
    if max <= min {
        return min;
    }
    let span = (max - min).as_micros() as u64;
    min + Duration::from_micros(vu.rng.random_range(0..=span))
}
