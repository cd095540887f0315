//! `[[fault]]`: what the harness does to a service of the stack on the run's
//! clock — kill it, or pause it for a while — so that a fault, its impact
//! and the stall it causes are part of one suite and one cargo test.

use std::time::Duration;

use serde::Serialize;
use toml::Spanned;

use super::checker::Checker;
use crate::infra::ServiceName;
use crate::suite::FaultSpec;

/// What a fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultAction {
    /// SIGKILL (`docker kill`): it stays dead for the rest of the run.
    Kill,
    /// SIGSTOP (`docker pause`) for `duration`, then resumed.
    Pause,
}

/// One fault, checked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultPlan {
    pub service: ServiceName,
    pub action: FaultAction,
    /// From the start of the load.
    pub at: Duration,
    /// How long a pause lasts.
    pub duration: Option<Duration>,
}

impl FaultPlan {
    /// `pause redis at 5s for 3s`, as reports name it.
    pub fn describe(&self) -> String {
        let action = match self.action {
            FaultAction::Kill => "kill",
            FaultAction::Pause => "pause",
        };
        let mut text = format!(
            "{action} {} at {}",
            self.service,
            humantime::format_duration(self.at)
        );
        if let Some(duration) = self.duration {
            text.push_str(&format!(" for {}", humantime::format_duration(duration)));
        }
        text
    }
}

/// Every fault of the file; each must end before the load does.
pub(super) fn check_faults(
    checker: &mut Checker<'_>,
    faults: &[FaultSpec],
    load_duration: Duration,
) -> Vec<FaultPlan> {
    let mut plans = Vec::new();
    for fault in faults {
        let service = match fault.service.get_ref().as_str() {
            "postgres" => Some(ServiceName::Postgres),
            "pgbouncer" => Some(ServiceName::Pgbouncer),
            "redis" => Some(ServiceName::Redis),
            other => {
                checker
                    .at(fault.service.span(), format!("unknown service `{other}`"))
                    .hint = Some("use postgres, pgbouncer or redis".into());
                None
            }
        };
        let action = match fault.action.get_ref().as_str() {
            "kill" => Some(FaultAction::Kill),
            "pause" => Some(FaultAction::Pause),
            other => {
                checker
                    .at(
                        fault.action.span(),
                        format!("unknown fault action `{other}`"),
                    )
                    .hint = Some("use kill or pause (with a duration)".into());
                None
            }
        };
        let at = duration(checker, &fault.at);
        let lasts = fault.duration.as_ref().and_then(|d| duration(checker, d));
        let (Some(service), Some(action), Some(at)) = (service, action, at) else {
            continue;
        };
        match (action, &fault.duration) {
            (FaultAction::Pause, None) => {
                checker
                    .at(fault.action.span(), "a pause needs a `duration`")
                    .hint = Some("e.g. duration = \"3s\"; a kill lasts to the end".into());
                continue;
            }
            (FaultAction::Kill, Some(d)) => {
                checker.at(
                    d.span(),
                    "a kill has no `duration`: it lasts to the end of the run",
                );
                continue;
            }
            _ => {}
        }
        let ends = at + lasts.unwrap_or_default();
        if ends >= load_duration {
            checker
                .at(
                    fault.at.span(),
                    format!(
                        "the fault ends at {} but the load lasts {}",
                        humantime::format_duration(ends),
                        humantime::format_duration(load_duration)
                    ),
                )
                .hint =
                Some("a fault must end before the load does, so its impact is measured".into());
            continue;
        }
        plans.push(FaultPlan {
            service,
            action,
            at,
            duration: lasts,
        });
    }
    plans
}

fn duration(checker: &mut Checker<'_>, text: &Spanned<String>) -> Option<Duration> {
    match humantime::parse_duration(text.get_ref()) {
        Ok(duration) => Some(duration),
        Err(error) => {
            checker.at(
                text.span(),
                format!("`{}` is not a duration: {error}", text.get_ref()),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::PlanOptions;

    #[track_caller]
    fn check(faults: &str, expect: &str) {
        let source = format!(
            "[suite]\nname = \"f\"\n[load]\nusers = 1\nduration = \"10s\"\n[[task]]\nname = \"/\"\nget = \"/\"\n{faults}\n"
        );
        super::super::check_plan(&source, &PlanOptions::default(), expect, |plan| {
            let got: Vec<String> = plan.faults.iter().map(|f| f.describe()).collect();
            got.join(", ")
        });
    }

    #[test]
    fn faults_name_a_service_an_action_and_when() {
        check(
            "[[fault]]\nservice = \"redis\"\naction = \"kill\"\nat = \"3s\"\n[[fault]]\nservice = \"pgbouncer\"\naction = \"pause\"\nat = \"2s\"\nduration = \"1s 500ms\"",
            "kill redis at 3s, pause pgbouncer at 2s for 1s 500ms",
        );
    }

    #[test]
    fn bad_faults_are_refused_where_they_are_written() {
        check(
            "[[fault]]\nservice = \"mysql\"\naction = \"kill\"\nat = \"1s\"",
            "10:11 unknown service `mysql`",
        );
        check(
            "[[fault]]\nservice = \"redis\"\naction = \"pause\"\nat = \"1s\"",
            "11:10 a pause needs a `duration`",
        );
        check(
            "[[fault]]\nservice = \"redis\"\naction = \"kill\"\nat = \"12s\"",
            "12:6 the fault ends at 12s but the load lasts 10s",
        );
        check(
            "[[fault]]\nservice = \"redis\"\naction = \"kill\"\nat = \"soon\"",
            "12:6 `soon` is not a duration: expected number at 0",
        );
    }
}
