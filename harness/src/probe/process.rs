//! CPU and memory of a process tree from `/proc`: a service in a container
//! is a process tree on this kernel too, so one reader serves containers,
//! native services and the target alike.

use std::collections::HashMap;
use std::time::Instant;

/// Parent of every process, read once per sample.
#[derive(Debug, Default)]
pub struct ProcessTable {
    parents: Vec<(u32, u32)>,
}

impl ProcessTable {
    pub fn read() -> ProcessTable {
        let mut parents = Vec::new();
        for pid in crate::infra::listener::pids() {
            if let Some(ppid) = stat_fields(pid).and_then(|f| f.get(1).and_then(|p| p.parse().ok()))
            {
                parents.push((pid, ppid));
            }
        }
        ProcessTable { parents }
    }

    /// `root` and all its descendants.
    pub fn tree(&self, root: u32) -> Vec<u32> {
        let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
        for (pid, ppid) in &self.parents {
            children.entry(*ppid).or_default().push(*pid);
        }
        let mut tree = Vec::new();
        let mut stack = vec![root];
        while let Some(pid) = stack.pop() {
            if self.parents.iter().any(|(p, _)| *p == pid) {
                tree.push(pid);
            }
            if let Some(kids) = children.get(&pid) {
                stack.extend(kids);
            }
        }
        tree
    }
}

/// The fields of `/proc/PID/stat` after the command name, starting at state (field 3).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    Some(after.split_whitespace().map(str::to_owned).collect())
}

/// Whether every process in `pids` is stopped by a signal (state `T` or
/// `t`) or frozen by its cgroup (`docker pause` freezes the container's
/// cgroup, and its processes keep state `S` or `D`). False for no processes.
pub fn stopped(pids: &[u32]) -> bool {
    !pids.is_empty()
        && pids.iter().all(|pid| {
            let state = stat_fields(*pid).and_then(|f| f.first().cloned());
            matches!(state.as_deref(), Some("T" | "t")) || cgroup_frozen(*pid)
        })
}

/// `frozen 1` in the `cgroup.events` of the process's cgroup (v2).
fn cgroup_frozen(pid: u32) -> bool {
    let Ok(cgroups) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
        return false;
    };
    let Some(path) = cgroups.lines().find_map(|l| l.strip_prefix("0::")) else {
        return false;
    };
    std::fs::read_to_string(format!("/sys/fs/cgroup{}/cgroup.events", path.trim()))
        .is_ok_and(|events| events.lines().any(|l| l.trim() == "frozen 1"))
}

/// User plus system CPU of a process, in clock ticks (fields 14 and 15).
fn cpu_ticks(pid: u32) -> u64 {
    stat_fields(pid)
        .map(|f| {
            f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
                + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        })
        .unwrap_or(0)
}

/// Proportional set size of a set of processes, in MB: shared pages (such as
/// PostgreSQL's shared buffers) are counted once across the tree.
pub fn pss_mb(pids: &[u32]) -> f64 {
    let kilobytes: u64 = pids
        .iter()
        .filter_map(|pid| {
            let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
            text.lines()
                .find_map(|l| l.strip_prefix("Pss:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .sum();
    kilobytes as f64 / 1024.0
}

/// CPU use per named tree between calls. Ticks of processes that exited
/// in between are lost, which under-reports short-lived children slightly.
#[derive(Debug, Default)]
pub struct CpuMeter {
    last: HashMap<String, (Instant, HashMap<u32, u64>)>,
}

impl CpuMeter {
    /// Percent of one core since the previous call for `name` (0 the first time).
    pub fn percent(&mut self, name: &str, pids: &[u32]) -> f64 {
        let now = Instant::now();
        let ticks: HashMap<u32, u64> = pids.iter().map(|pid| (*pid, cpu_ticks(*pid))).collect();
        let percent = match self.last.get(name) {
            Some((then, before)) => {
                let used: u64 = ticks
                    .iter()
                    .map(|(pid, t)| t.saturating_sub(*before.get(pid).unwrap_or(&0)))
                    .sum();
                let elapsed = now.duration_since(*then).as_secs_f64();
                let hz = clock_ticks_per_second();
                if elapsed > 0.0 {
                    used as f64 / hz / elapsed * 100.0
                } else {
                    0.0
                }
            }
            None => 0.0,
        };
        self.last.insert(name.to_owned(), (now, ticks));
        percent
    }
}

/// `sysconf(_SC_CLK_TCK)`: 100 on every Linux this runs on.
fn clock_ticks_per_second() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100.0, |v| v as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;

    #[test]
    fn a_stopped_process_reads_as_stopped_and_a_resumed_one_does_not() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep runs");
        let pid = child.id();
        let state = |want: bool| {
            // The kernel applies a signal asynchronously: wait for it, boundedly.
            (0..200).any(|_| {
                let now = stopped(&[pid]);
                if now != want {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                now == want
            })
        };
        assert!(state(false), "a sleeping process read as stopped");
        kill(Pid::from_raw(pid as i32), Signal::SIGSTOP).unwrap();
        assert!(state(true), "a SIGSTOPped process did not read as stopped");
        kill(Pid::from_raw(pid as i32), Signal::SIGCONT).unwrap();
        assert!(state(false), "a resumed process still read as stopped");
        assert!(!stopped(&[]), "no process at all is not a stopped one");
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
