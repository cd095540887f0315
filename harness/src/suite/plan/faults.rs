//! `[[fault]]`: what the harness does on the run's clock — to a service of
//! the stack or to the target (kill, pause, restart), or to the target's
//! network path to PgBouncer or Redis (delay, bandwidth cap, resets, a black
//! hole, through the harness's proxy) — so that a fault, its impact and the
//! recovery after it are part of one suite and one cargo test.

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use toml::Spanned;

use super::checker::Checker;
use crate::infra::ServiceName;
use crate::suite::FaultSpec;

/// What a fault is done to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultSubject {
    /// A service of the stack; for a network fault, the target's path to it.
    Service(ServiceName),
    /// The application under test, when the harness started it.
    Target,
}

impl fmt::Display for FaultSubject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultSubject::Service(service) => service.fmt(f),
            FaultSubject::Target => f.write_str("target"),
        }
    }
}

/// What a fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum FaultAction {
    /// SIGKILL (`docker kill`): it stays dead for the rest of the run.
    Kill,
    /// SIGSTOP (`docker pause`) for `duration`, then resumed.
    Pause,
    /// Stopped gracefully and started again (`docker restart`, or the same
    /// launch for a native service); the fault lasts until it answers.
    Restart,
    /// Every chunk on the path waits `latency` ± up to `jitter`.
    Delay { latency: Duration, jitter: Duration },
    /// Each direction of the path carries at most this many bytes a second.
    Bandwidth { bytes_per_second: u64 },
    /// Open connections are reset and new ones refused.
    Reset,
    /// Connections are accepted and nothing goes through: a timeout.
    Blackhole,
}

impl FaultAction {
    /// Done on the path to a service, by the proxy, not to the service.
    pub fn is_network(&self) -> bool {
        matches!(
            self,
            FaultAction::Delay { .. }
                | FaultAction::Bandwidth { .. }
                | FaultAction::Reset
                | FaultAction::Blackhole
        )
    }

    pub fn name(&self) -> &'static str {
        match self {
            FaultAction::Kill => "kill",
            FaultAction::Pause => "pause",
            FaultAction::Restart => "restart",
            FaultAction::Delay { .. } => "delay",
            FaultAction::Bandwidth { .. } => "bandwidth",
            FaultAction::Reset => "reset",
            FaultAction::Blackhole => "blackhole",
        }
    }
}

/// One fault, checked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultPlan {
    pub subject: FaultSubject,
    pub action: FaultAction,
    /// From the start of the load.
    pub at: Duration,
    /// How long a pause or a network fault lasts.
    pub duration: Option<Duration>,
}

impl FaultPlan {
    /// `pause redis at 5s for 3s`, `delay pgbouncer 50ms ±10ms at 2s for 4s`,
    /// as reports name it.
    pub fn describe(&self) -> String {
        let what = match self.action {
            FaultAction::Delay { latency, jitter } if jitter.is_zero() => {
                format!(
                    "delay {} {}",
                    self.subject,
                    humantime::format_duration(latency)
                )
            }
            FaultAction::Delay { latency, jitter } => format!(
                "delay {} {} ±{}",
                self.subject,
                humantime::format_duration(latency),
                humantime::format_duration(jitter)
            ),
            FaultAction::Bandwidth { bytes_per_second } => format!(
                "bandwidth {} {}/s",
                self.subject,
                bytesize::ByteSize::b(bytes_per_second).display().iec()
            ),
            action => format!("{} {}", action.name(), self.subject),
        };
        let mut text = format!("{what} at {}", humantime::format_duration(self.at));
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
        let subject = match fault.service.get_ref().as_str() {
            "postgres" => Some(FaultSubject::Service(ServiceName::Postgres)),
            "pgbouncer" => Some(FaultSubject::Service(ServiceName::Pgbouncer)),
            "redis" => Some(FaultSubject::Service(ServiceName::Redis)),
            "target" => Some(FaultSubject::Target),
            other => {
                checker
                    .at(fault.service.span(), format!("unknown service `{other}`"))
                    .hint = Some("use postgres, pgbouncer, redis or target".into());
                None
            }
        };
        let at = checker.duration(&fault.at);
        let lasts = fault.duration.as_ref().and_then(|d| checker.duration(d));
        let action = action(checker, fault);
        let (Some(subject), Some(action), Some(at)) = (subject, action, at) else {
            continue;
        };
        let needs_duration = !matches!(action, FaultAction::Kill | FaultAction::Restart);
        match (needs_duration, &fault.duration) {
            (true, None) => {
                checker
                    .at(
                        fault.action.span(),
                        format!("a {} needs a `duration`", action.name()),
                    )
                    .hint = Some("e.g. duration = \"3s\"".into());
                continue;
            }
            (false, Some(d)) => {
                let message = match action {
                    FaultAction::Kill => "a kill has no `duration`: it lasts to the end of the run",
                    _ => "a restart has no `duration`: it lasts until the service answers again",
                };
                checker.at(d.span(), message);
                continue;
            }
            _ => {}
        }
        if action.is_network()
            && !matches!(
                subject,
                FaultSubject::Service(ServiceName::Pgbouncer | ServiceName::Redis)
            )
        {
            checker
                .at(
                    fault.service.span(),
                    format!("a {} fault is on the target's path to pgbouncer or redis, not to {subject}", action.name()),
                )
                .hint = Some("the target reaches PostgreSQL through PgBouncer: name pgbouncer".into());
            continue;
        }
        if subject == FaultSubject::Target && action == FaultAction::Restart {
            checker
                .at(
                    fault.action.span(),
                    "the target cannot be restarted mid-run",
                )
                .hint = Some("kill or pause the target".into());
            continue;
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
            subject,
            action,
            at,
            duration: lasts,
        });
    }
    plans
}

/// The action and the settings it takes; a setting another action would
/// take is refused, so a typo does not silently do nothing.
fn action(checker: &mut Checker<'_>, fault: &FaultSpec) -> Option<FaultAction> {
    let name = fault.action.get_ref().as_str();
    let refuse_unused = |checker: &mut Checker<'_>, field: &Option<Spanned<String>>, key: &str| {
        if let Some(value) = field {
            checker.at(
                value.span(),
                format!("`{key}` belongs to another action, not to {name}"),
            );
        }
    };
    let action = match name {
        "kill" => Some(FaultAction::Kill),
        "pause" => Some(FaultAction::Pause),
        "restart" => Some(FaultAction::Restart),
        "reset" => Some(FaultAction::Reset),
        "blackhole" => Some(FaultAction::Blackhole),
        "delay" => {
            let latency = match &fault.latency {
                Some(latency) => checker.duration(latency),
                None => {
                    checker
                        .at(fault.action.span(), "a delay needs a `latency`")
                        .hint = Some("e.g. latency = \"50ms\", jitter = \"10ms\"".into());
                    None
                }
            };
            let jitter = match &fault.jitter {
                Some(jitter) => checker.duration(jitter),
                None => Some(Duration::ZERO),
            };
            refuse_unused(checker, &fault.rate, "rate");
            return Some(FaultAction::Delay {
                latency: latency?,
                jitter: jitter?,
            });
        }
        "bandwidth" => {
            let rate = match &fault.rate {
                Some(rate) => bytes_per_second(checker, rate),
                None => {
                    checker
                        .at(fault.action.span(), "a bandwidth cap needs a `rate`")
                        .hint = Some("e.g. rate = \"64KiB/s\"".into());
                    None
                }
            };
            refuse_unused(checker, &fault.latency, "latency");
            refuse_unused(checker, &fault.jitter, "jitter");
            return Some(FaultAction::Bandwidth {
                bytes_per_second: rate?,
            });
        }
        other => {
            checker
                .at(
                    fault.action.span(),
                    format!("unknown fault action `{other}`"),
                )
                .hint = Some(
                "use kill, pause, restart, or on the path to pgbouncer or redis delay, bandwidth, reset, blackhole"
                    .into(),
            );
            return None;
        }
    };
    refuse_unused(checker, &fault.latency, "latency");
    refuse_unused(checker, &fault.jitter, "jitter");
    refuse_unused(checker, &fault.rate, "rate");
    action
}

/// `64KiB/s`, `1 MB/s`: bytes a second, at least one.
fn bytes_per_second(checker: &mut Checker<'_>, text: &Spanned<String>) -> Option<u64> {
    let value = text.get_ref().trim();
    let parsed = value
        .strip_suffix("/s")
        .ok_or_else(|| "a rate ends in `/s`".to_owned())
        .and_then(|size| size.trim().parse::<bytesize::ByteSize>())
        .map(|size| size.as_u64());
    match parsed {
        Ok(bytes) if bytes > 0 => Some(bytes),
        Ok(_) => {
            checker.at(
                text.span(),
                "a rate of zero is a black hole: use action = \"blackhole\"",
            );
            None
        }
        Err(error) => {
            checker
                .at(text.span(), format!("`{value}` is not a rate: {error}"))
                .hint = Some("e.g. \"64KiB/s\" or \"1MB/s\"".into());
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
        check(
            "[[fault]]\nservice = \"pgbouncer\"\naction = \"restart\"\nat = \"3s\"\n[[fault]]\nservice = \"target\"\naction = \"pause\"\nat = \"1s\"\nduration = \"2s\"",
            "restart pgbouncer at 3s, pause target at 1s for 2s",
        );
        check(
            "[[fault]]\nservice = \"pgbouncer\"\naction = \"delay\"\nlatency = \"50ms\"\njitter = \"10ms\"\nat = \"2s\"\nduration = \"3s\"\n[[fault]]\nservice = \"redis\"\naction = \"bandwidth\"\nrate = \"64KiB/s\"\nat = \"1s\"\nduration = \"1s\"\n[[fault]]\nservice = \"redis\"\naction = \"blackhole\"\nat = \"6s\"\nduration = \"1s\"",
            "delay pgbouncer 50ms ±10ms at 2s for 3s, bandwidth redis 64.0 KiB/s at 1s for 1s, blackhole redis at 6s for 1s",
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
        check(
            "[[fault]]\nservice = \"postgres\"\naction = \"delay\"\nlatency = \"5ms\"\nat = \"1s\"\nduration = \"1s\"",
            "10:11 a delay fault is on the target's path to pgbouncer or redis, not to postgres",
        );
        check(
            "[[fault]]\nservice = \"redis\"\naction = \"delay\"\nat = \"1s\"\nduration = \"1s\"",
            "11:10 a delay needs a `latency`",
        );
        check(
            "[[fault]]\nservice = \"redis\"\naction = \"bandwidth\"\nrate = \"fast\"\nat = \"1s\"\nduration = \"1s\"",
            "12:8 `fast` is not a rate: a rate ends in `/s`",
        );
        check(
            "[[fault]]\nservice = \"redis\"\naction = \"kill\"\nlatency = \"5ms\"\nat = \"1s\"",
            "12:11 `latency` belongs to another action, not to kill",
        );
        check(
            "[[fault]]\nservice = \"target\"\naction = \"restart\"\nat = \"1s\"",
            "11:10 the target cannot be restarted mid-run",
        );
    }
}
