//! What a virtual user keeps for the checks after the run: sampled
//! response values with the SQL that should agree with them (correctness),
//! and the writes the target acknowledged (integrity).

use serde::{Deserialize, Serialize};

use super::VirtualUser;
use super::WorkerShared;
use super::variables::{SqlLiterals, TaskVars, extract_values};
use crate::engine::http::Response;
use crate::suite::plan::{HttpTask, TaskPlan};
use crate::suite::template::Template;

/// A response value to compare with what SQL says, after the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TruthSample {
    pub task: String,
    /// The truth's query with this request's values in it.
    pub sql: String,
    pub observed: String,
    pub tolerance: f64,
    pub at_ms: u64,
}

/// At most this many samples per worker and task: enough to catch silent
/// wrong results, bounded however long the run.
const MAX_TRUTH_SAMPLES: usize = 200;

/// A write the target acknowledged (2xx), for the integrity check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AckedWrite {
    pub task: String,
    pub key: String,
    pub sent_version: String,
    pub fields: Vec<(String, String)>,
    /// Milliseconds since the start of the run, at acknowledgement.
    pub at_ms: u64,
    pub vu: u64,
}

impl VirtualUser {
    pub(super) fn sample_truths(
        &mut self,
        shared: &WorkerShared,
        task: &TaskPlan,
        http_task: &HttpTask,
        response: &Response,
        bound: &[(String, String)],
    ) {
        let seen = self.responses.entry(task.endpoint).or_default();
        *seen += 1;
        let seen = *seen;
        for truth in &http_task.truths {
            if !seen.is_multiple_of(u64::from(truth.every)) {
                continue;
            }
            if shared
                .truths
                .borrow()
                .iter()
                .filter(|t| t.task == task.name)
                .count()
                >= MAX_TRUTH_SAMPLES
            {
                continue;
            }
            let Some(observed) = extract_values(&truth.how, false, response)
                .into_iter()
                .next()
            else {
                continue;
            };
            let mut vars = SqlLiterals(TaskVars {
                vu: self,
                global: &shared.global,
                bound: bound.to_vec(),
            });
            let Ok(sql) = truth.sql.render_to_string(&mut vars) else {
                continue;
            };
            shared.truths.borrow_mut().push(TruthSample {
                task: task.name.clone(),
                sql,
                observed,
                tolerance: truth.tolerance,
                at_ms: shared.elapsed_ms(),
            });
        }
    }

    pub(super) fn remember_write(
        &mut self,
        shared: &WorkerShared,
        task: &TaskPlan,
        writes: &crate::suite::WriteSpec,
        bound: &[(String, String)],
    ) {
        let render = |vu: &mut VirtualUser, text: &str| -> String {
            let Ok(template) = Template::parse(text) else {
                return String::new();
            };
            let mut vars = TaskVars {
                vu,
                global: &shared.global,
                bound: bound.to_vec(),
            };
            template.render_to_string(&mut vars).unwrap_or_default()
        };
        let key = render(self, &writes.key_value);
        let sent_version = render(self, &writes.version_value);
        let fields = writes
            .fields
            .iter()
            .map(|(column, text)| (column.clone(), render(self, text)))
            .collect();
        shared.writes.borrow_mut().push(AckedWrite {
            task: task.name.clone(),
            key,
            sent_version,
            fields,
            at_ms: shared.elapsed_ms(),
            vu: self.id,
        });
    }
}
