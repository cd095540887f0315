//! Causes the suite put there itself: its faults, where and when each
//! acted, and the longest stall with what the probes saw during it.

use crate::report::RunReport;

/// Each fault, where it acted and when; for a fault on the target's path to
/// a service, whether the probes (which reach the service directly) kept
/// getting answers — then the time was lost on the path, not in the service.
pub(super) fn faults(report: &RunReport) -> Vec<String> {
    let end = report
        .summary
        .series
        .last()
        .map_or(0.0, |p| p.second as f64 + 1.0);
    report
        .summary
        .faults
        .iter()
        .map(|fault| {
            let to = fault.to_second.unwrap_or(end);
            let mut text = format!(
                "the suite's fault `{}` acted from {:.1}s to {}",
                fault.fault,
                fault.from_second,
                fault
                    .to_second
                    .map_or("the end of the run".to_owned(), |t| format!("{t:.1}s"))
            );
            if fault.is_network() {
                let service = fault.subject.as_str();
                text.push_str(&format!(" on the target's network path to {service}"));
                let answered = report.probes.as_ref().map(|probes| {
                    let during: Vec<_> = probes
                        .samples
                        .iter()
                        .filter(|s| (s.second as f64) >= fault.from_second && (s.second as f64) < to)
                        .collect();
                    let answered = during
                        .iter()
                        .filter(|s| match service {
                            "redis" => s.redis.is_some(),
                            _ => s.pgbouncer.is_some(),
                        })
                        .count();
                    (answered, during.len())
                });
                if let Some((answered, sampled)) = answered
                    && sampled > 0
                {
                    text.push_str(&format!(
                        "; {service} itself answered {answered} of {sampled} direct probes meanwhile, so the time went on the path, not in a slow statement or a busy service"
                    ));
                }
            }
            text
        })
        .collect()
}

/// The longest stall, and what the probes saw in it: which service stopped
/// answering (it answered before the stall and not during it), and whether
/// the target's process was there.
pub(super) fn stall(report: &RunReport) -> Option<String> {
    let stalls = &report.summary.stalls;
    let from = stalls.longest_from_second?;
    let until = from + stalls.longest_seconds;
    let in_flight = report
        .summary
        .series
        .iter()
        .filter(|p| p.second >= from && p.second < until)
        .map(|p| p.in_flight)
        .max()
        .unwrap_or(0);
    let mut text = format!(
        "nothing completed for {}s from second {from} while up to {in_flight} requests waited",
        stalls.longest_seconds
    );
    let Some(probes) = &report.probes else {
        return Some(text);
    };
    let before: Vec<_> = probes.samples.iter().filter(|s| s.second < from).collect();
    let during: Vec<_> = probes
        .samples
        .iter()
        .filter(|s| s.second >= from && s.second < until)
        .collect();
    if during.is_empty() {
        return Some(text);
    }
    type Answered = fn(&crate::probe::ProbeSample) -> bool;
    let services: [(&str, Answered); 3] = [
        ("redis", |s| s.redis.is_some()),
        ("pgbouncer", |s| s.pgbouncer.is_some()),
        ("postgres", |s| s.postgres.is_some()),
    ];
    let mut silent = Vec::new();
    for (name, answered) in services {
        let answered_before = before.iter().any(|s| answered(s));
        let silent_during = during.iter().filter(|s| !answered(s)).count();
        if answered_before && silent_during * 2 >= during.len() {
            let last = before
                .iter()
                .rev()
                .find(|s| answered(s))
                .map_or(0, |s| s.second);
            silent.push(format!(
                "{name} (last answered the probes at second {last})"
            ));
        }
    }
    if silent.is_empty() {
        text.push_str("; every service of the stack kept answering the probes");
    } else {
        text.push_str(&format!(
            "; stopped answering the probes: {}",
            silent.join(", ")
        ));
    }
    let target: Vec<_> = during
        .iter()
        .flat_map(|s| s.services.iter().filter(|p| p.name == "app"))
        .collect();
    if !target.is_empty() {
        let stopped = target.iter().filter(|p| p.stopped).count();
        if stopped * 2 >= target.len() {
            text.push_str(&format!(
                "; the target's process was there but stopped (paused: SIGSTOP or a frozen cgroup) in {stopped} of {} probed seconds: the target itself stopped",
                target.len()
            ));
        } else if target.iter().all(|p| p.running) {
            let cpu = target.iter().map(|p| p.cpu_percent).sum::<f64>() / target.len() as f64;
            if silent.is_empty() && cpu < 1.0 {
                text.push_str(&format!(
                    "; the target's process was alive but idle (CPU {cpu:.1}%) while the stack answered: the target itself stopped (paused, or blocked outside the stack)"
                ));
            } else {
                text.push_str(&format!(
                    "; the target's process was alive (CPU {cpu:.0}%): it waited on the stack instead of answering"
                ));
            }
        } else {
            text.push_str("; the target's process was gone");
        }
    }
    Some(text)
}
