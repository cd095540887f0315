//! Tasks written in Rust, for what a suite file cannot say. A custom task
//! gets a [`TaskContext`]: the virtual user's client, variables and random
//! source, with every request recorded under the task's endpoint.
//!
//! The plan knows a custom task only by its declaration (name, weight,
//! tags); the implementations come to the engine beside the plan, in
//! [`CustomTasks`], keyed by the task's name.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::future::LocalBoxFuture;
use http::HeaderValue;

use super::http::{Response, TransportError, snippet};
use super::vu::{VirtualUser, WorkerShared};
use crate::metrics::{FailureKind, Outcome};
use crate::suite::plan::{TaskKind, TaskPlan};

/// A task implemented in Rust. It runs on the virtual user's worker thread,
/// so its future need not be `Send`.
pub trait CustomTask: Send + Sync {
    fn run<'a>(&'a self, context: &'a mut TaskContext<'_>) -> LocalBoxFuture<'a, ()>;
}

impl<F> CustomTask for F
where
    F: for<'a, 'b> Fn(&'a mut TaskContext<'b>) -> LocalBoxFuture<'a, ()> + Send + Sync,
{
    fn run<'a>(&'a self, context: &'a mut TaskContext<'_>) -> LocalBoxFuture<'a, ()> {
        self(context)
    }
}

/// The implementations of a suite's custom tasks, by task name.
#[derive(Clone, Default)]
pub struct CustomTasks {
    by_name: BTreeMap<String, Arc<dyn CustomTask>>,
}

impl CustomTasks {
    /// Adds (or replaces) the implementation of the task `name`.
    pub fn insert(&mut self, name: &str, task: Arc<dyn CustomTask>) {
        self.by_name.insert(name.to_owned(), task);
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn CustomTask>> {
        self.by_name.get(name)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

impl std::fmt::Debug for CustomTasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.by_name.keys()).finish()
    }
}

/// Runs one task of the plan for a virtual user: an HTTP task by the user
/// itself, a custom task by its implementation. `scheduled` is when an
/// open-model iteration was due (latency counts from then: coordinated
/// omission corrected).
pub(crate) async fn run_task(
    vu: &mut VirtualUser,
    shared: &WorkerShared,
    custom_tasks: &CustomTasks,
    task: &TaskPlan,
    scheduled: Option<Instant>,
) {
    match &task.kind {
        TaskKind::Http(http_task) => vu.run_http_task(shared, task, http_task, scheduled).await,
        TaskKind::Custom => {
            // The engine checks at the start of a run that every custom task
            // of the plan has its implementation.
            let custom = custom_tasks
                .get(&task.name)
                .expect("checked when the run started")
                .clone();
            let mut context = TaskContext {
                vu,
                shared,
                endpoint: task.endpoint,
            };
            custom.run(&mut context).await;
        }
    }
}

/// What a custom task may do.
pub struct TaskContext<'a> {
    pub(crate) vu: &'a mut VirtualUser,
    pub(crate) shared: &'a WorkerShared,
    pub(crate) endpoint: usize,
}

impl std::fmt::Debug for TaskContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskContext")
            .field("vu", &self.vu.id)
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

impl TaskContext<'_> {
    /// Sends a request and records it under the task's endpoint: 2xx is a
    /// success, anything else a failure of its status.
    pub async fn request(
        &mut self,
        method: http::Method,
        path: &str,
        headers: &[(http::HeaderName, HeaderValue)],
        body: Bytes,
    ) -> Result<Response, TransportError> {
        let started = Instant::now();
        let flight = self.shared.take_off(self.endpoint);
        let result = self.vu.client.send(method, path, headers, body, true).await;
        flight.land();
        let latency = started.elapsed();
        let at = self.shared.elapsed_ms();
        let mut recorder = self.shared.recorder.borrow_mut();
        match &result {
            Ok(response) if response.status.is_success() => recorder.record(
                self.endpoint,
                latency.as_micros() as u64,
                response.body_len,
                Outcome::Success,
                at,
            ),
            Ok(response) => {
                let kind = FailureKind::Status(response.status.as_u16());
                let message = format!("{} {path}: {}", response.status, snippet(&response.text()));
                recorder.record(
                    self.endpoint,
                    latency.as_micros() as u64,
                    response.body_len,
                    Outcome::Failure {
                        kind: &kind,
                        message: &message,
                    },
                    at,
                )
            }
            Err(error) => recorder.record(
                self.endpoint,
                latency.as_micros() as u64,
                0,
                Outcome::Failure {
                    kind: &error.kind,
                    message: &error.message,
                },
                at,
            ),
        }
        result
    }

    /// `GET path`, recorded like [`TaskContext::request`].
    pub async fn get(&mut self, path: &str) -> Result<Response, TransportError> {
        self.request(http::Method::GET, path, &[], Bytes::new())
            .await
    }

    /// Counts a check (they feed the `checks` metric).
    pub fn check(&mut self, passed: bool) {
        let mut recorder = self.shared.recorder.borrow_mut();
        if passed {
            recorder.counters().checks_passed += 1;
        } else {
            recorder.counters().checks_failed += 1;
        }
    }

    /// A variable of the virtual user (extracted, or a single value).
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vu.var(name)
    }

    pub fn set_var(&mut self, name: &str, value: impl Into<String>) {
        self.vu.set_var(name, value.into());
    }

    /// The virtual user's number.
    pub fn vu(&self) -> u64 {
        self.vu.id
    }

    /// The value of a CSRF cookie, for API writes.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.vu.client.cookie(name)
    }

    pub fn random(&mut self) -> &mut impl rand::Rng {
        &mut self.vu.rng
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_tasks_are_found_by_name() {
        let mut tasks = CustomTasks::default();
        assert!(tasks.is_empty());
        fn nothing<'a>(_: &'a mut TaskContext<'_>) -> LocalBoxFuture<'a, ()> {
            Box::pin(async {})
        }
        tasks.insert("checkout", Arc::new(nothing));
        assert!(tasks.contains("checkout"));
        assert!(tasks.get("checkout").is_some());
        assert!(tasks.get("other").is_none());
        assert_eq!(tasks.names().collect::<Vec<_>>(), ["checkout"]);
        assert_eq!(format!("{tasks:?}"), r#"{"checkout"}"#);
    }
}
