//! Ground truths: values read from a task's sampled responses and compared,
//! after the run, with what SQL computes from the database, so that silent
//! wrong results are failures.

use std::collections::BTreeSet;

use super::checker::{Checker, check_variables};
use super::task::{TaskKind, TaskPlan, TruthPlan, check_extract};
use crate::metrics::summary::TaskSelection;
use crate::suite::defaults::{Defaults, layered};
use crate::suite::{ExtractSpec, TruthSpec};

/// Each `[[truth]]` checked and attached to its task; a truth of a task the
/// tags left out is dropped with it.
pub(super) fn attach_truths(
    checker: &mut Checker<'_>,
    truths: &[TruthSpec],
    tasks: &mut [TaskPlan],
    selection: &TaskSelection,
    variables: &BTreeSet<String>,
    defaults: &Defaults,
) {
    for truth in truths {
        let name = truth.task.get_ref();
        let Some(task) = tasks.iter_mut().find(|t| &t.name == name) else {
            if !selection.excluded.iter().any(|(task, _)| task == name) {
                checker.at(truth.task.span(), format!("no task is named `{name}`"));
            }
            continue;
        };
        let extract = ExtractSpec {
            var: truth.task.clone(),
            json: truth.json.clone(),
            css: truth.css.clone(),
            attr: truth.attr.clone(),
            regex: truth.regex.clone(),
            all: false,
        };
        let Some(how) = check_extract(checker, &extract).map(|e| e.how) else {
            continue;
        };
        let Some(sql) = checker.template(&truth.sql) else {
            continue;
        };
        check_variables(checker, &truth.sql, sql.variables(), variables);
        if let TaskKind::Http(http) = &mut task.kind {
            http.truths.push(TruthPlan {
                how,
                sql,
                every: layered(defaults.truth.every, truth.every, None, None).max(1),
                tolerance: layered(defaults.truth.tolerance, truth.tolerance, None, None),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::plan::{Plan, PlanOptions};

    const TASKS: &str = r#"
[suite]
name = "t"
[load]
users = 1
duration = "1s"
[[task]]
name = "/rab/"
tags = ["page"]
get = "/rab/"
[[task]]
name = "/other/"
tags = ["slow"]
get = "/other/"
"#;

    #[track_caller]
    fn check(truths: &str, options: &PlanOptions, expect: &str) -> Option<Plan> {
        let source = format!("{TASKS}{truths}\n");
        super::super::check_plan(&source, options, expect, |plan| {
            let got: Vec<String> = plan
                .tasks
                .iter()
                .filter_map(|t| match &t.kind {
                    TaskKind::Http(http) => Some(http.truths.iter().map(move |truth| {
                        format!(
                            "{}: every {} within {}",
                            t.name, truth.every, truth.tolerance
                        )
                    })),
                    TaskKind::Custom => None,
                })
                .flatten()
                .collect();
            got.join(", ")
        })
    }

    #[test]
    fn truths_attach_to_their_task_with_the_defaults() {
        let none = PlanOptions::default();
        check(
            "[[truth]]\ntask = \"/rab/\"\ncss = \"#total\"\nsql = \"select 1\"",
            &none,
            "/rab/: every 5 within 0.005",
        );
        check(
            "[[truth]]\ntask = \"/rab/\"\njson = \"/total\"\nsql = \"select 1\"\nevery = 0\ntolerance = 1.5",
            &none,
            "/rab/: every 1 within 1.5",
        );
    }

    #[test]
    fn a_truth_names_a_task_and_its_variables_exist() {
        let none = PlanOptions::default();
        check(
            "[[truth]]\ntask = \"/nope/\"\njson = \"/x\"\nsql = \"select 1\"",
            &none,
            "16:8 no task is named `/nope/`",
        );
        check(
            "[[truth]]\ntask = \"/rab/\"\njson = \"/x\"\nsql = \"select {nope}\"",
            &none,
            "18:16 no variable `nope`: the catalog does not offer it and no task extracts it",
        );
        // The truth of a task the tags leave out goes with it.
        let exclude_slow = PlanOptions {
            exclude_tags: vec!["slow".into()],
            ..PlanOptions::default()
        };
        check(
            "[[truth]]\ntask = \"/other/\"\njson = \"/x\"\nsql = \"select 1\"",
            &exclude_slow,
            "",
        );
    }
}
